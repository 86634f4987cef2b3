//! `GET /api/media/{media_ref}` and `GET /api/media/{media_ref}/thumbnail?size=N`: an
//! uploaded picture's bytes, and a small upright JPEG of it, for the key's workspace only
//! (another workspace's `media_ref` is as unknown as a missing one).
//!
//! Content never changes under a `media_ref`, so both carry an ETag (the content's sha256,
//! with the thumbnail's side) and a revalidation with `If-None-Match` is answered 304 without
//! reading anything but the record. The bytes are the store's, read a chunk at a time as
//! the response goes out. Thumbnails are made once per content and side and kept under
//! `thumbnails/` in this gateway's data folder, a cache it may rebuild at any time.

use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aimp_embed::{DEFAULT_THUMBNAIL_SIDE, THUMBNAIL_SIDES};
use std::sync::Arc;

use aimp_store::{MediaRecord, Store};

use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::extract::{Path, Query};
use crate::routes::media::find_media;
use crate::state::AppState;

/// A browser may keep a picture, but asks again (with the key, an `If-None-Match`, and a 304
/// answer without a body) before each reuse: once the console's tab forgets the key, nothing
/// cached is shown without it. Never a shared cache's: it is the caller's own data, and
/// `Vary: X-API-Key` keeps one key's copy from answering another's request.
const CACHE_CONTROL: &str = "private, no-cache";
/// How much of a picture's file one chunk of its response body holds.
const CHUNK: usize = 64 * 1024;
/// Longest a thumbnail waits for memory to decode its picture before it is answered 503.
const WAIT_FOR_MEMORY: Duration = Duration::from_secs(5);

/// `GET /api/media/{media_ref}`
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(media_ref): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = lookup(&state, &caller, &media_ref).await?;
    let etag = format!("\"{}\"", record.sha256);
    if revalidated(&headers, &etag) {
        return Ok(not_modified(&etag));
    }
    let (head, len) = open_content(&state, &record).await?;
    // What the bytes are, whatever the upload declared.
    let content_type = aimp_embed::sniff_content_type(&head).unwrap_or("application/octet-stream");
    let body = stream_content(state.store.clone(), record.sha256.clone(), head, len);
    let mut response = picture(content_type, &etag, body);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

/// The first bytes of `record`'s content (to sniff its type) and its length. The rest is
/// read from the store as the response is sent, a chunk at a time, so serving a picture
/// holds [`CHUNK`] bytes of it, not all of it.
async fn open_content(state: &AppState, record: &MediaRecord) -> Result<(Vec<u8>, u64), ApiError> {
    let (store, sha) = (state.store.clone(), record.sha256.clone());
    let media_ref = record.media_ref.clone();
    let opened = blocking(move || {
        let len = store.content_len(&sha)?;
        let head = store.read_content(&sha, 0, CHUNK)?;
        Ok(len.map(|len| (head, len)))
    })
    .await?;
    opened.ok_or_else(|| {
        ApiError::internal(
            "media content",
            std::io::Error::other(format!(
                "media {media_ref} names content that is not stored"
            )),
        )
    })
}

/// A body of `head` and then the rest of content `sha256` (`len` bytes in all), [`CHUNK`]
/// bytes a frame, each read from the store off the async threads.
fn stream_content(store: Arc<dyn Store>, sha256: String, head: Vec<u8>, len: u64) -> Body {
    let start = head.len() as u64;
    let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
    let rest = futures_util::stream::try_unfold(start, move |offset| {
        let (store, sha) = (store.clone(), sha256.clone());
        async move {
            if offset >= len {
                return Ok(None);
            }
            let chunk =
                tokio::task::spawn_blocking(move || store.read_content(&sha, offset, CHUNK))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(std::io::Error::other)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let next = offset + chunk.len() as u64;
            Ok(Some((chunk, next)))
        }
    });
    Body::from_stream(futures_util::StreamExt::chain(first, rest))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailQuery {
    size: Option<u32>,
}

/// `GET /api/media/{media_ref}/thumbnail?size=N`
pub async fn thumbnail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(media_ref): Path<String>,
    Query(query): Query<ThumbnailQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let side = query.size.unwrap_or(DEFAULT_THUMBNAIL_SIDE);
    if !THUMBNAIL_SIDES.contains(&side) {
        return Err(ApiError::bad_request(
            "invalid_size",
            format!("size {side} is not one of the thumbnail sizes {THUMBNAIL_SIDES:?}"),
            "size",
        ));
    }
    let record = lookup(&state, &caller, &media_ref).await?;
    let etag = format!("\"{}-{side}\"", record.sha256);
    if revalidated(&headers, &etag) {
        return Ok(not_modified(&etag));
    }
    let max_pixels = state.config.decode.max_pixels;
    let pixels = u64::from(record.width) * u64::from(record.height);
    if pixels > max_pixels {
        return Err(ApiError::Unprocessable {
            code: "image_too_large",
            message: format!(
                "media {media_ref} is {}x{} ({pixels} pixels), more than the {max_pixels} this \
                 gateway decodes; it has no thumbnail (GET /api/media/{media_ref} gives its bytes)",
                record.width, record.height
            ),
            param: Some("media_ref".into()),
        });
    }
    let files = state.media.clone();
    let sha = record.sha256.clone();
    let workspace = caller.workspace.clone();
    let cached = tokio::task::spawn_blocking(move || files.read_thumbnail(&workspace, &sha, side))
        .await
        .map_err(|e| ApiError::internal("thumbnail read task", e))?
        .map_err(|e| ApiError::internal("thumbnail cache", e))?;
    let jpeg = match cached {
        Some(jpeg) => jpeg,
        None => make_thumbnail(&state, &record, side).await?,
    };
    Ok(picture("image/jpeg", &etag, Body::from(jpeg)))
}

/// Decodes, shrinks and caches one thumbnail, holding the memory its decoding takes from the
/// thumbnails' own budget (`--thumbnail-memory`); one that needs more than all of it is
/// refused at once.
async fn make_thumbnail(
    state: &AppState,
    record: &MediaRecord,
    side: u32,
) -> Result<Vec<u8>, ApiError> {
    let bytes_needed = aimp_embed::thumbnail_memory(
        record.content_type == "image/jpeg",
        record.width,
        record.height,
        record.size_bytes,
        side,
    );
    let limit = state.config.thumbnail_memory;
    if bytes_needed > limit {
        return Err(ApiError::Unprocessable {
            code: "image_too_large",
            message: format!(
                "media {} ({}x{}) needs {bytes_needed} bytes to make its thumbnail, more than \
                 the {limit} thumbnails may use (AIMP_THUMBNAIL_MEMORY); GET /api/media/{} \
                 gives its bytes",
                record.media_ref, record.width, record.height, record.media_ref
            ),
            param: Some("media_ref".into()),
        });
    }
    // Decoding is the workspace's CPU: it takes one of its store places, as a search does.
    let _turn = state.store_turns.turn(&record.workspace).await?;
    let kib = u32::try_from(bytes_needed.div_ceil(1024)).unwrap_or(u32::MAX);
    let budget = state.thumbnail_budget.clone();
    let permit = match tokio::time::timeout(WAIT_FOR_MEMORY, budget.acquire_many_owned(kib)).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            return Err(ApiError::Unavailable {
                code: "overloaded",
                message: "the gateway's memory for thumbnails is in use; retry the thumbnail \
                          shortly"
                    .into(),
                retry_after_secs: 2,
            });
        }
    };
    let content = crate::routes::media::read_media(state, record).await?;
    let max_pixels = state.config.decode.max_pixels;
    let files = state.media.clone();
    let sha = record.sha256.clone();
    let workspace = record.workspace.clone();
    let made = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let jpeg = aimp_embed::thumbnail(&content, side, max_pixels)?;
        // A cache: failing to keep it costs the next request a decode, nothing else.
        if let Err(e) = files.write_thumbnail(&workspace, &sha, side, &jpeg) {
            tracing::warn!(error = %e, "cannot cache a thumbnail");
        }
        Ok::<_, aimp_embed::EmbedError>(jpeg)
    })
    .await
    .map_err(|e| ApiError::internal("thumbnail task", e))?;
    made.map_err(|e| ApiError::Unprocessable {
        code: "invalid_image",
        message: format!("media {}: {e}", record.media_ref),
        param: Some("media_ref".into()),
    })
}

/// The record of `media_ref` in the caller's workspace; a malformed reference is a 400.
async fn lookup(
    state: &AppState,
    caller: &Caller,
    media_ref: &str,
) -> Result<MediaRecord, ApiError> {
    let well_formed = !media_ref.is_empty()
        && media_ref.len() <= 128
        && media_ref
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_media_ref",
            "media_ref must be 1 to 128 letters, digits, `_` or `-` (as upload/complete gave it)",
            "media_ref",
        ));
    }
    find_media(state, &caller.workspace, media_ref, "media_ref").await
}

/// Whether `If-None-Match` names `etag` (or is `*`), weak or strong.
fn revalidated(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

fn not_modified(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    cache_headers(response.headers_mut(), etag);
    response
}

fn picture(content_type: &'static str, etag: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Opened on its own, a picture runs nothing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    cache_headers(h, etag);
    response
}

fn cache_headers(h: &mut HeaderMap, etag: &str) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(header::VARY, HeaderValue::from_static("X-API-Key"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(v).expect("header"),
            );
            h
        };
        let tag = "\"abc-256\"";
        assert!(revalidated(&with("\"abc-256\""), tag));
        assert!(revalidated(&with("\"x\", W/\"abc-256\""), tag));
        assert!(revalidated(&with("*"), tag));
        assert!(!revalidated(&with("\"abc-128\""), tag));
        assert!(!revalidated(&HeaderMap::new(), tag));
    }
}
