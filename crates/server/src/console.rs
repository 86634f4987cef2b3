//! The web console at `/console/`: plain HTML, CSS and JavaScript modules from
//! `crates/server/console/`, embedded in the binary at build time and served with a strict
//! Content-Security-Policy (nothing but this gateway: no inline script, no other origin).
//! Every URL in the console is relative, so it works under a sub-path behind a proxy; it
//! signs in with an API key kept for the tab's session and calls the same API as any client.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

static FILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/console");

/// Only this gateway, and pictures the console made itself (`blob:` thumbnails).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Each file's ETag, from its bytes.
static TAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    files()
        .into_iter()
        .map(|(path, bytes)| {
            let digest = Sha256::digest(bytes);
            (path, format!("\"{}\"", hex::encode(&digest[..12])))
        })
        .collect()
});

/// Every embedded file: its path under `console/` and its bytes.
pub fn files() -> Vec<(&'static str, &'static [u8])> {
    let mut out = Vec::new();
    let mut stack = vec![&FILES];
    while let Some(dir) = stack.pop() {
        for file in dir.files() {
            if let Some(path) = file.path().to_str() {
                out.push((path, file.contents()));
            }
        }
        stack.extend(dir.dirs());
    }
    out
}

/// `GET /console`: to `/console/`, relatively, so a proxy's prefix is kept.
pub async fn redirect(State(state): State<AppState>) -> Result<Response, ApiError> {
    enabled(&state)?;
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("console/"));
    Ok(response)
}

/// `GET /console/`
pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    enabled(&state)?;
    serve("index.html", &headers)
}

/// `GET /console/{*path}`
pub async fn file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    enabled(&state)?;
    serve(&path, &headers)
}

fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.config.console {
        Ok(())
    } else {
        Err(ApiError::NotFound {
            code: "not_found",
            message: "the console is turned off on this gateway (AIMP_CONSOLE)".into(),
            param: None,
        })
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let (Some(file), Some(tag)) = (FILES.get_file(path), TAGS.get(path)) else {
        return Err(ApiError::NotFound {
            code: "not_found",
            message: format!("the console has no file {path:?}"),
            param: None,
        });
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.contents()))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Asked again each time (an upgraded gateway serves new files), answered 304 when equal.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
