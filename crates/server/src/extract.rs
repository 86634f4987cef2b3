//! A JSON body extractor whose every failure has the API's error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The request body as a JSON object. Malformed JSON, a non-object body and an over-limit
/// body all answer in the API's error shape.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
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
