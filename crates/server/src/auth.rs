//! Who is calling: API keys in `X-API-Key` for integrations, the operator's bearer token for
//! key management. Keys are looked up by hash and compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use subtle::ConstantTimeEq;

use crate::error::{ApiError, blocking};
use crate::keys::{KEY_PREFIX, hash_key};
use crate::state::AppState;

/// The authenticated caller of an integration endpoint.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: String,
    pub workspace: String,
}

/// How often `last_used_at` is written for a busy key: once a minute is precise enough and
/// keeps an fsync off most requests.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn use_x_api_key() -> ApiError {
    ApiError::Unauthorized {
        code: "use_x_api_key",
        message: "API keys are sent in the X-API-Key header, not as Authorization: Bearer (bearer tokens are for signed-in operator sessions)".into(),
    }
}

/// Whether a bearer token is really an API key (by its form, or because it is registered).
async fn bearer_is_api_key(state: &AppState, token: &str) -> Result<bool, ApiError> {
    if token.starts_with(KEY_PREFIX) {
        return Ok(true);
    }
    let store = state.store.clone();
    let hash = hash_key(token);
    Ok(blocking(move || store.find_key_by_hash(&hash))
        .await?
        .is_some())
}

/// Resolves `X-API-Key` to a live key; answers 401 otherwise.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(key) = headers.get("x-api-key") else {
        if let Some(token) = bearer(headers)
            && bearer_is_api_key(state, token).await?
        {
            return Err(use_x_api_key());
        }
        return Err(ApiError::Unauthorized {
            code: "missing_api_key",
            message: "send your API key in the X-API-Key header".into(),
        });
    };
    let invalid = || ApiError::Unauthorized {
        code: "invalid_api_key",
        message: "the API key is unknown or revoked".into(),
    };
    let key = key.to_str().map_err(|_| invalid())?.trim().to_string();
    let hash = hash_key(&key);
    let store = state.store.clone();
    let record = blocking(move || store.find_key_by_hash(&hash))
        .await?
        .ok_or_else(invalid)?;
    // The lookup was by hash; compare the stored hash in constant time all the same, so
    // nothing about a near-miss leaks through timing.
    if !bool::from(record.hash.ct_eq(&hash)) || record.is_revoked() {
        return Err(invalid());
    }
    let now = Utc::now();
    if record.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY) {
        let store = state.store.clone();
        let id = record.id.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.touch_key(&id, now) {
                tracing::warn!(key_id = %id, error = %e, "cannot record key use");
            }
        });
    }
    Ok(Caller {
        key_id: record.id,
        workspace: record.workspace,
    })
}

/// Middleware for integration endpoints: authenticate, spend one request of the key's quota,
/// and put the quota headers on whatever the handler answers.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match authenticate(&state, req.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let allowance = match state.limiter.check(&caller.key_id) {
        Ok(a) => a,
        Err(refused) => {
            let mut response = ApiError::from(refused).into_response();
            refused.allowance().write_headers(response.headers_mut());
            return response;
        }
    };
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(a) = allowance {
        a.write_headers(response.headers_mut());
    }
    response
}

/// Middleware for key management: the operator's bearer token, compared in constant time.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check_admin(&state, req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Whether `given` is `expected`, in time that depends on neither's content nor length:
/// both are hashed to 32 bytes first, and the digests compared in constant time (comparing
/// the strings themselves returns at once when their lengths differ, which tells a prober
/// the token's length).
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

async fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(ApiError::Unauthorized {
            code: "admin_disabled",
            message:
                "key management is disabled: start the server with --admin-token (AIMP_ADMIN_TOKEN)"
                    .into(),
        });
    };
    match bearer(headers) {
        Some(token) if same_secret(token, expected) => Ok(()),
        Some(token) if bearer_is_api_key(state, token).await? => Err(use_x_api_key()),
        Some(_) => Err(ApiError::Unauthorized {
            code: "invalid_admin_token",
            message: "the bearer token is not the operator's admin token".into(),
        }),
        None if headers.contains_key("x-api-key") => Err(ApiError::Forbidden {
            code: "admin_required",
            message: "API keys cannot manage keys; use the operator's admin token as Authorization: Bearer".into(),
        }),
        None => Err(ApiError::Unauthorized {
            code: "missing_admin_token",
            message: "key management needs the operator's admin token as Authorization: Bearer".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_equal_only_when_equal_whatever_their_lengths() {
        let token = "a-token-of-thirty-two-characters";
        assert!(same_secret(token, token));
        assert!(!same_secret("", token));
        assert!(!same_secret(&token[..31], token), "a prefix");
        assert!(!same_secret(&format!("{token}x"), token), "longer");
        assert!(!same_secret("a-token-of-thirty-two-characterZ", token));
    }
}
