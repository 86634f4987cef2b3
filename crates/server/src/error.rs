//! The one place where errors become HTTP responses.
//!
//! Every error body is `{"error": {"code", "message", "param"?}}`. Errors from the lower
//! layers are mapped here by exhaustive matches (no catch-all arm), so a new variant cannot
//! ship unclassified. Internal details are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use aimp_embed::EmbedError;
use aimp_store::{StorageFault, StoreError};

/// An error as the client sees it.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request's shape or input is wrong.
    BadRequest {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 401: no credential, or a bad one.
    Unauthorized { code: &'static str, message: String },
    /// 403: a valid credential without permission for this.
    Forbidden { code: &'static str, message: String },
    /// 404: unknown model, upload or resource.
    NotFound {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 405: a known path with a method it does not take.
    MethodNotAllowed,
    /// 408: the client stopped sending the request before it was complete.
    Timeout { code: &'static str, message: String },
    /// 409: the request conflicts with the current state.
    Conflict {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 422: the request is well formed, but what it names cannot be processed (a stored
    /// picture too large to decode).
    Unprocessable {
        code: &'static str,
        message: String,
        param: Option<String>,
    },
    /// 413: the body is over the configured limit.
    PayloadTooLarge { limit: usize },
    /// 429: the key spent its quota.
    RateLimited { retry_after_secs: u64, limit: u32 },
    /// 429: the caller has as many of something in flight as it may (uploads streaming).
    TooMany {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// 501: the mode is part of the contract but this build does not run it yet.
    NotImplemented { message: String },
    /// 503: overloaded or not ready; the client should retry later.
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// 507: the data folder's file system is full; nothing of the request was stored.
    InsufficientStorage { message: String },
    /// 499 (nginx's "client closed request"): the client went away and its work was stopped;
    /// nobody reads the answer, but logs and metrics show it.
    ClientGone,
    /// 500: logged in full, answered with a generic message.
    Internal {
        context: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>, param: &str) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn internal(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ApiError {
        ApiError::Internal {
            context,
            source: Box::new(source),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::TooMany { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::ClientGone => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT)
            }
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message as sent to the client.
    pub fn message(&self) -> String {
        self.parts().1
    }

    /// (code, message, param) as sent to the client.
    fn parts(&self) -> (&'static str, String, Option<&str>) {
        match self {
            ApiError::BadRequest {
                code,
                message,
                param,
            }
            | ApiError::NotFound {
                code,
                message,
                param,
            }
            | ApiError::Conflict {
                code,
                message,
                param,
            }
            | ApiError::Unprocessable {
                code,
                message,
                param,
            } => (code, message.clone(), param.as_deref()),
            ApiError::Unauthorized { code, message }
            | ApiError::Forbidden { code, message }
            | ApiError::Timeout { code, message } => (code, message.clone(), None),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                "this endpoint does not take that method".to_string(),
                None,
            ),
            ApiError::PayloadTooLarge { limit } => (
                "payload_too_large",
                format!("request body is larger than the limit of {limit} bytes"),
                None,
            ),
            ApiError::RateLimited {
                retry_after_secs,
                limit,
            } => (
                "rate_limited",
                format!(
                    "rate limit of {limit} requests per minute exceeded; retry in {retry_after_secs} s"
                ),
                None,
            ),
            ApiError::NotImplemented { message } => ("not_implemented", message.clone(), None),
            ApiError::Unavailable { code, message, .. }
            | ApiError::TooMany { code, message, .. } => (code, message.clone(), None),
            ApiError::InsufficientStorage { message } => {
                ("insufficient_storage", message.clone(), None)
            }
            ApiError::ClientGone => (
                "client_gone",
                "the client went away; its work was stopped".to_string(),
                None,
            ),
            ApiError::Internal { .. } => (
                "internal_error",
                "internal error; the details are in the server log".to_string(),
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal { context, source } = &self {
            tracing::error!(context, error = %source, source_chain = ?source, "internal error");
        }
        let status = self.status();
        let (code, message, param) = self.parts();
        let mut error = json!({"code": code, "message": message});
        if let Some(param) = param {
            error["param"] = param.into();
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::Unavailable {
                retry_after_secs, ..
            }
            | ApiError::TooMany {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body was never read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> ApiError {
        match e {
            EmbedError::Image { .. } => {
                ApiError::bad_request("invalid_image", e.to_string(), "input")
            }
            EmbedError::ImageItem { index, .. } => {
                let param = format!("input.images[{index}]");
                ApiError::bad_request("invalid_image", e.to_string(), &param)
            }
            EmbedError::UnknownModel { slug } => ApiError::NotFound {
                code: "model_not_found",
                message: format!("no model named {slug:?}; GET /api/marketplace/models lists them"),
                param: Some("model".into()),
            },
            EmbedError::NotInstalled {
                slug,
                install_command,
            } => ApiError::Conflict {
                code: "model_not_installed",
                message: format!(
                    "model {slug} is not installed; install it with `{install_command}`"
                ),
                param: Some("model".into()),
            },
            EmbedError::Overloaded {
                slug,
                why,
                retry_after_secs,
            } => ApiError::Unavailable {
                code: "overloaded",
                message: format!(
                    "the encoder of {slug} is busy ({why}); retry in {retry_after_secs} s"
                ),
                retry_after_secs,
            },
            EmbedError::WorkerStopped { .. } => ApiError::Unavailable {
                code: "model_unavailable",
                message: e.to_string(),
                retry_after_secs: 5,
            },
            EmbedError::Panicked { .. }
            | EmbedError::NoEncoder { .. }
            | EmbedError::NoImageTower { .. }
            | EmbedError::Model { .. }
            | EmbedError::Tokenizer { .. }
            | EmbedError::ManifestInvalid { .. }
            | EmbedError::CheckpointInvalid { .. }
            | EmbedError::ChecksumMismatch { .. }
            | EmbedError::Io { .. }
            | EmbedError::MissingFile { .. }
            | EmbedError::Download { .. }
            | EmbedError::Offline { .. }
            | EmbedError::Pip { .. }
            | EmbedError::Archive { .. }
            | EmbedError::NoSource { .. }
            | EmbedError::PrecisionUnsupported { .. }
            | EmbedError::Device { .. } => ApiError::internal("model", e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::KeyNotFound { id } => ApiError::NotFound {
                code: "api_key_not_found",
                message: format!("no API key with id {id:?}"),
                param: Some("id".into()),
            },
            StoreError::KeyExists { .. } => ApiError::Conflict {
                code: "api_key_exists",
                message: "an API key with this secret is already registered".into(),
                param: None,
            },
            StoreError::InvalidInput { ref field, .. } => {
                let param = format!("input.{field}");
                ApiError::bad_request("invalid_input", e.to_string(), &param)
            }
            StoreError::ParamsMismatch { .. } => ApiError::Conflict {
                code: "collection_mismatch",
                message: e.to_string(),
                param: None,
            },
            StoreError::Storage {
                fault: StorageFault::Full,
                ..
            } => ApiError::InsufficientStorage {
                message: format!(
                    "{e}; nothing of this request was stored (searches keep working; free \
                     space in the data folder and retry)"
                ),
            },
            StoreError::Storage {
                fault: StorageFault::Io,
                ..
            } => {
                tracing::error!(error = %e, "storage failure");
                ApiError::Unavailable {
                    code: "storage_unavailable",
                    message: format!("{e}; nothing of this request was stored; retry"),
                    retry_after_secs: 1,
                }
            }
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "the store cannot be reached");
                ApiError::Unavailable {
                    code: "store_unavailable",
                    message: format!("{e}; nothing of this request was stored; retry"),
                    retry_after_secs: 1,
                }
            }
            StoreError::Cancelled => ApiError::ClientGone,
            StoreError::Corrupt { .. }
            | StoreError::CommitFailed { .. }
            | StoreError::Backend { .. } => ApiError::internal("store", e),
        }
    }
}

/// Runs blocking store work off the async threads. When the request is dropped while it
/// runs (its client went away), the work is asked to stop ([`aimp_store::Cancel`]): reading
/// code (walks, scans, listings, recall checks) gives up within milliseconds and frees its
/// core; a write goes on to its commit.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let cancel = aimp_store::Cancel::new();
    let armed = CancelOnDrop(Some(cancel.clone()));
    let joined = tokio::task::spawn_blocking(move || cancel.scope(f)).await;
    armed.disarm();
    match joined {
        Ok(result) => result.map_err(ApiError::from),
        Err(join) => Err(ApiError::internal("blocking task", join)),
    }
}

/// Cancels its flag when dropped before [`CancelOnDrop::disarm`]: a request future dropped
/// mid-await.
struct CancelOnDrop(Option<aimp_store::Cancel>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel();
        }
    }
}
