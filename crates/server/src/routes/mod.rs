//! Handlers, one file per resource.

pub mod health;
pub mod keys;
pub mod knowledge;
pub mod media;
pub mod media_bytes;
pub mod models;
pub mod recall;
pub mod runs;

use crate::error::ApiError;

/// Any path the gateway does not serve.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint".into(),
        param: None,
    }
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
