//! Extractors whose every failure has the API's error shape: the JSON body, the path and the
//! query string (axum's own answer plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The request body as a JSON object. Malformed JSON, a non-object body and an over-limit
/// body all answer in the API's error shape; a body that has not arrived in full within
/// [`ServerConfig::body_read_timeout`](crate::ServerConfig) is 408 `body_timeout`.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let deadline = state.config.body_read_timeout;
        let read = tokio::time::timeout(deadline, Bytes::from_request(req, state));
        let bytes = read.await.map_err(|_| ApiError::Timeout {
            code: "body_timeout",
            message: format!(
                "the request body did not arrive in full within {deadline:?}; send it again"
            ),
        })?;
        let bytes = bytes.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.config.body_limit,
                }
            } else {
                ApiError::BadRequest {
                    code: "invalid_body",
                    message: format!("cannot read the request body: {rejection}"),
                    param: None,
                }
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            code: "invalid_json",
            message: format!("request body is not valid JSON: {e}"),
            param: None,
        })?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            other => Err(ApiError::BadRequest {
                code: "invalid_body",
                message: format!(
                    "request body must be a JSON object, not {}",
                    crate::validate::json_type(&other)
                ),
                param: None,
            }),
        }
    }
}

/// Path parameters; one that does not parse is 400 `invalid_path`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::BadRequest {
                code: "invalid_path",
                message: format!("the request path is not valid: {}", rejection.body_text()),
                param: None,
            }),
        }
    }
}

/// Query-string parameters; one that does not parse is 400 `invalid_query` naming it.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => {
                // axum says "Failed to deserialize query string: <field>: <why>".
                let text = rejection.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
                let param = detail
                    .split_once(": ")
                    .map(|(field, _)| field)
                    .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: format!("the query string is not valid: {detail}"),
                    param: param.map(str::to_string),
                })
            }
        }
    }
}
