//! The upload flow: `init` → `PUT upload_url` → `complete` → `media_ref`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use aimp_store::{MediaRecord, Transition, UploadRecord, UploadState};

use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::extract::JsonObject;
use crate::keys::timestamp;
use crate::media::Signed;
use crate::state::AppState;
use crate::validate::json_type;

/// The content types an upload may declare.
pub const CONTENT_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/gif"];
const INIT_FIELDS: &[&str] = &["filename", "content_type", "media_type", "size_bytes"];

fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// `POST /api/media/upload/init`
pub async fn init(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let max = state.config.max_upload_bytes;
    for field in body.keys() {
        if !INIT_FIELDS.contains(&field.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!(
                    "unknown field `{field}`; init takes: {}",
                    INIT_FIELDS.join(", ")
                ),
                field,
            ));
        }
    }
    let filename = check_filename(string_field(&body, "filename")?)?;
    let content_type = string_field(&body, "content_type")?;
    if !CONTENT_TYPES.contains(&content_type) {
        return Err(ApiError::bad_request(
            "unsupported_content_type",
            format!(
                "content_type {content_type:?} is not accepted; use one of {}",
                CONTENT_TYPES.join(", ")
            ),
            "content_type",
        ));
    }
    let media_type = string_field(&body, "media_type")?;
    if media_type != "image" {
        return Err(ApiError::bad_request(
            "unsupported_media_type",
            format!("media_type {media_type:?} is not accepted; only \"image\" is"),
            "media_type",
        ));
    }
    let size_bytes = match body.get("size_bytes") {
        None => return Err(missing("size_bytes")),
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_field",
                format!(
                    "`size_bytes` must be a whole number of bytes, not {}",
                    describe(v)
                ),
                "size_bytes",
            )
        })?,
    };
    if size_bytes == 0 || size_bytes > max {
        return Err(ApiError::bad_request(
            "invalid_size",
            format!("size_bytes must be between 1 and {max} (the upload limit), not {size_bytes}"),
            "size_bytes",
        ));
    }

    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.config.upload_ttl)
        .unwrap_or_else(|_| chrono::Duration::minutes(15));
    let expires_at = trim_to_seconds(now + ttl);
    let record = UploadRecord {
        id: random_id("studio_upload_"),
        workspace: caller.workspace.clone(),
        filename: filename.to_string(),
        content_type: content_type.to_string(),
        size_bytes,
        created_at: now,
        expires_at,
        state: UploadState::Pending,
    };
    let signature = state.media.sign(&signed(&record));
    let url = format!(
        "{}/api/media/upload/{}?expires={}&signature={signature}",
        base_url(&state, &headers)?,
        record.id,
        expires_at.timestamp(),
    );
    let store = state.store.clone();
    let saved = record.clone();
    blocking(move || store.insert_upload(&saved)).await?;
    Ok(Json(json!({
        "upload_id": record.id,
        "upload_url": url,
        "method": "PUT",
        "headers": {"Content-Type": record.content_type},
        "expires_at": timestamp(expires_at),
        "size_bytes": size_bytes,
    })))
}

#[derive(Debug, Deserialize)]
pub struct PutQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

/// `PUT /api/media/upload/{upload_id}?expires=…&signature=…`: the signature is the
/// credential. The body streams to a part file, counted and hashed as it comes; any mismatch
/// removes the file and fails the upload.
pub async fn put(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    Query(query): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let bad_signature = || {
        ApiError::Forbidden {
        code: "invalid_signature",
        message: "the upload URL's signature does not match; use the upload_url returned by init exactly as given".into(),
    }
    };
    let (Some(expires), Some(signature)) = (query.expires, query.signature) else {
        return Err(bad_signature());
    };
    let store = state.store.clone();
    let id = upload_id.clone();
    let Some(record) = blocking(move || store.get_upload(&id)).await? else {
        return Err(upload_not_found(&upload_id));
    };
    if record.expires_at.timestamp() != expires || !state.media.verify(&signed(&record), &signature)
    {
        return Err(bad_signature());
    }
    if record.expires_at <= Utc::now() {
        return Err(upload_expired(&upload_id));
    }
    if let Some(declared) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        // curl sends form-urlencoded by default; only a different image type is a conflict.
        let declared = declared.split(';').next().unwrap_or("").trim();
        if declared.starts_with("image/") && declared != record.content_type {
            return Err(ApiError::bad_request(
                "content_type_mismatch",
                format!(
                    "the PUT says Content-Type {declared}, but init declared {}",
                    record.content_type
                ),
                "Content-Type",
            ));
        }
    }
    // Taken before the URL is claimed: a PUT refused here leaves its URL usable.
    let Some(_slot) = state.upload_slots.take(&record.workspace) else {
        return Err(ApiError::TooMany {
            code: "too_many_uploads",
            message: format!(
                "this workspace already has {} uploads streaming (AIMP_UPLOADS_PER_WORKSPACE); \
                 retry this PUT once one has finished",
                state.upload_slots.limit()
            ),
            retry_after_secs: 1,
        });
    };
    let store = state.store.clone();
    let id = upload_id.clone();
    let claimed = blocking(move || {
        store.transition_upload(&id, &|s| *s == UploadState::Pending, UploadState::Receiving)
    })
    .await?;
    match claimed {
        Transition::Done(_) => {}
        Transition::NotFound => return Err(upload_not_found(&upload_id)),
        Transition::Refused(_) => {
            return Err(ApiError::Conflict {
                code: "upload_url_used",
                message: format!(
                    "upload {upload_id} already received its bytes (or a failed attempt); an upload URL is single-use, start a new upload"
                ),
                param: None,
            });
        }
    }
    let mut outcome = receive(&state, &record, body).await;
    if outcome.is_ok() && record.expires_at <= Utc::now() {
        // Complete would refuse it: say so now rather than 204 for bytes that cannot be used.
        outcome = Err(upload_expired(&upload_id));
    }
    let next = match &outcome {
        Ok(sha256) => UploadState::Received {
            sha256: sha256.clone(),
        },
        Err(e) => UploadState::Failed {
            reason: e.message(),
        },
    };
    if outcome.is_err() {
        let _ = drop_part(&state, &upload_id).await;
    }
    let store = state.store.clone();
    let id = upload_id.clone();
    let stored =
        blocking(move || store.transition_upload(&id, &|s| *s == UploadState::Receiving, next))
            .await?;
    match stored {
        Transition::Done(_) => outcome.map(|_| StatusCode::NO_CONTENT),
        // Expired and swept while the bytes arrived: nothing is kept.
        Transition::NotFound => {
            let _ = drop_part(&state, &upload_id).await;
            Err(outcome.err().unwrap_or_else(|| upload_expired(&upload_id)))
        }
        Transition::Refused(r) => Err(ApiError::internal(
            "upload state",
            std::io::Error::other(format!(
                "upload {upload_id} left receiving as {:?}",
                r.state
            )),
        )),
    }
}

/// Drops the part an upload's PUT left, if any.
async fn drop_part(state: &AppState, upload_id: &str) -> Result<(), ApiError> {
    let (store, id) = (state.store.clone(), upload_id.to_string());
    blocking(move || store.remove_part(&id)).await
}

/// Bytes of a PUT gathered before they go to the store together: a write to the store per
/// chunk, not per frame, and never the whole upload held.
const PART_CHUNK: usize = 256 * 1024;

/// Streams the body into the upload's part in the store; answers the sha256 of exactly
/// `size_bytes` bytes of the declared type.
async fn receive(
    state: &AppState,
    record: &UploadRecord,
    mut body: Body,
) -> Result<String, ApiError> {
    let (store, id) = (state.store.clone(), record.id.clone());
    blocking(move || store.begin_part(&id)).await?;
    let mut pending: Vec<u8> = Vec::with_capacity(PART_CHUNK);
    let flush = |bytes: Vec<u8>| {
        let (store, id) = (state.store.clone(), record.id.clone());
        blocking(move || store.append_part(&id, &bytes))
    };
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let too_long = || {
        ApiError::bad_request(
            "size_mismatch",
            format!(
                "the body is longer than the {} bytes declared in size_bytes; nothing was kept",
                record.size_bytes
            ),
            "size_bytes",
        )
    };
    let idle = state.config.upload_idle_timeout;
    let deadline = Deadline::of(record, idle, state.config.upload_min_rate);
    loop {
        let wait = idle.min(deadline.left());
        let Ok(next) = tokio::time::timeout(wait, body.frame()).await else {
            if deadline.left().is_zero() {
                return Err(deadline.missed(record, received));
            }
            return Err(ApiError::Timeout {
                code: "upload_stalled",
                message: format!(
                    "no bytes arrived for {} s after {received} of {}; nothing was kept, start a new upload",
                    idle.as_secs(),
                    record.size_bytes
                ),
            });
        };
        let Some(frame) = next else {
            break;
        };
        let frame = frame.map_err(|e| ApiError::BadRequest {
            code: "invalid_body",
            message: format!("the upload body could not be read: {e}"),
            param: None,
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        received += chunk.len() as u64;
        if received > record.size_bytes {
            return Err(too_long());
        }
        if head.len() < 16 {
            let take = (16 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() == 16 {
                check_magic(&head, &record.content_type)?;
            }
        }
        hasher.update(&chunk);
        pending.extend_from_slice(&chunk);
        if pending.len() >= PART_CHUNK {
            flush(std::mem::replace(
                &mut pending,
                Vec::with_capacity(PART_CHUNK),
            ))
            .await?;
        }
    }
    if received != record.size_bytes {
        return Err(ApiError::bad_request(
            "size_mismatch",
            format!(
                "the body has {received} bytes but size_bytes declared {}; nothing was kept",
                record.size_bytes
            ),
            "size_bytes",
        ));
    }
    if head.len() < 16 {
        check_magic(&head, &record.content_type)?;
    }
    if !pending.is_empty() {
        flush(pending).await?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// When a PUT's body must have arrived: before its URL expires, and within the idle timeout
/// plus the time `size_bytes` takes at the least rate, so a client trickling bytes (never
/// idle long enough to time out) still cannot hold a connection and a part file for long.
struct Deadline {
    at: tokio::time::Instant,
    /// Whether the URL's expiry comes first (else the rate's allowance).
    expiry: bool,
    allowance: std::time::Duration,
}

impl Deadline {
    fn of(record: &UploadRecord, idle: std::time::Duration, min_rate: u64) -> Deadline {
        let now = tokio::time::Instant::now();
        let until_expiry = (record.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        let allowance = idle
            + std::time::Duration::from_secs_f64(record.size_bytes as f64 / min_rate.max(1) as f64);
        Deadline {
            at: now + until_expiry.min(allowance),
            expiry: until_expiry <= allowance,
            allowance,
        }
    }

    fn left(&self) -> std::time::Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    fn missed(&self, record: &UploadRecord, received: u64) -> ApiError {
        if self.expiry {
            return upload_expired(&record.id);
        }
        ApiError::Timeout {
            code: "upload_too_slow",
            message: format!(
                "{received} of {} bytes arrived in {:.1} s, the most an upload of that size may \
                 take (AIMP_UPLOAD_MIN_RATE); nothing was kept, start a new upload",
                record.size_bytes,
                self.allowance.as_secs_f64()
            ),
        }
    }
}

fn check_magic(head: &[u8], declared: &str) -> Result<(), ApiError> {
    match aimp_embed::sniff_content_type(head) {
        Some(actual) if actual == declared => Ok(()),
        actual => Err(ApiError::bad_request(
            "content_type_mismatch",
            format!(
                "the bytes are {}, but content_type declared {declared}; nothing was kept",
                actual.unwrap_or("not a JPEG, PNG, WebP or GIF image")
            ),
            "content_type",
        )),
    }
}

/// `POST /api/media/upload/complete`
pub async fn complete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    for field in body.keys() {
        if field != "upload_id" {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!("unknown field `{field}`; complete takes: upload_id"),
                field,
            ));
        }
    }
    let upload_id = string_field(&body, "upload_id")?.to_string();
    let store = state.store.clone();
    let id = upload_id.clone();
    let record = blocking(move || store.get_upload(&id)).await?;
    // Another workspace's upload is as unknown as a missing one.
    let Some(record) = record.filter(|r| r.workspace == caller.workspace) else {
        return Err(upload_not_found(&upload_id));
    };
    let sha256 = match &record.state {
        UploadState::Completed { media_ref } => {
            return media_json(&state, media_ref).await;
        }
        _ if record.expires_at <= Utc::now() => return Err(upload_expired(&upload_id)),
        UploadState::Pending | UploadState::Receiving => {
            return Err(ApiError::Conflict {
                code: "upload_incomplete",
                message: format!(
                    "upload {upload_id} has not received its bytes yet; PUT them to the upload_url first"
                ),
                param: Some("upload_id".into()),
            });
        }
        UploadState::Failed { reason } => {
            return Err(ApiError::Conflict {
                code: "upload_failed",
                message: format!(
                    "upload {upload_id} failed and kept nothing ({reason}); start a new upload"
                ),
                param: Some("upload_id".into()),
            });
        }
        UploadState::Received { sha256 } => sha256.clone(),
    };

    // Read the header from the part (or from stored content, when a previous complete got as
    // far as moving it), then make the bytes durable, then record them.
    let store = state.store.clone();
    let (id, sha) = (upload_id.clone(), sha256.clone());
    let info = blocking(move || {
        let bytes = match store.read_part(&id)? {
            Some(bytes) => bytes,
            None => store.read_content(&sha, 0, usize::MAX)?,
        };
        let info = aimp_embed::image_info(&bytes)
            .map(|info| (info, aimp_embed::exif_fields::fields(&bytes)));
        if info.is_ok() {
            store.commit_content(&id, &sha)?;
        }
        Ok(info)
    })
    .await?;
    let (info, exif) = match info {
        Ok(found) => found,
        Err(e) => {
            let _ = drop_part(&state, &upload_id).await;
            let store = state.store.clone();
            let id = upload_id.clone();
            let reason = e.to_string();
            blocking(move || {
                store.transition_upload(
                    &id,
                    &|s| matches!(s, UploadState::Received { .. }),
                    UploadState::Failed { reason },
                )
            })
            .await?;
            return Err(ApiError::bad_request(
                "invalid_image",
                format!("{e}; nothing was kept"),
                "upload_id",
            ));
        }
    };
    let proposed = MediaRecord {
        media_ref: random_id("media_"),
        workspace: record.workspace.clone(),
        filename: record.filename.clone(),
        content_type: record.content_type.clone(),
        size_bytes: record.size_bytes,
        sha256,
        width: info.width,
        height: info.height,
        exif: (!exif.is_empty()).then_some(serde_json::Value::Object(exif)),
        created_at: Utc::now(),
    };
    let store = state.store.clone();
    let id = upload_id.clone();
    match blocking(move || store.complete_upload(&id, &proposed)).await? {
        Transition::Done(media) => Ok(Json(media_view(&media))),
        Transition::NotFound => Err(upload_not_found(&upload_id)),
        Transition::Refused(r) => Err(ApiError::Conflict {
            code: "upload_incomplete",
            message: format!(
                "upload {upload_id} changed state while completing ({:?})",
                r.state
            ),
            param: Some("upload_id".into()),
        }),
    }
}

async fn media_json(state: &AppState, media_ref: &str) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let r = media_ref.to_string();
    match blocking(move || store.get_media(&r)).await? {
        Some(media) => Ok(Json(media_view(&media))),
        None => Err(ApiError::internal(
            "media record",
            std::io::Error::other(format!("completed upload names missing media {media_ref}")),
        )),
    }
}

fn media_view(m: &MediaRecord) -> Value {
    json!({
        "media_ref": m.media_ref,
        "filename": m.filename,
        "content_type": m.content_type,
        "size_bytes": m.size_bytes,
        "sha256": m.sha256,
        "width": m.width,
        "height": m.height,
        "exif": m.exif,
        "created_at": timestamp(m.created_at),
    })
}

/// Removes uploads whose time is over, with their part files, and part files that no upload
/// names (left by a crash). Completed uploads are kept a day past their expiry, so a repeated
/// `complete` still answers. Returns how many uploads were removed.
pub fn sweep(state: &AppState) -> Result<usize, ApiError> {
    let now = Utc::now();
    let stale = state
        .store
        .stale_uploads(now, chrono::Duration::hours(24))
        .map_err(ApiError::from)?;
    for upload in &stale {
        state
            .store
            .remove_part(&upload.id)
            .map_err(ApiError::from)?;
        state
            .store
            .remove_upload(&upload.id)
            .map_err(ApiError::from)?;
    }
    for id in state.store.part_ids().map_err(ApiError::from)? {
        if state
            .store
            .get_upload(&id)
            .map_err(ApiError::from)?
            .is_none()
        {
            state.store.remove_part(&id).map_err(ApiError::from)?;
        }
    }
    Ok(stale.len())
}

/// Runs [`sweep`] every `every` until the process ends.
pub async fn sweep_forever(state: AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let s = state.clone();
        match tokio::task::spawn_blocking(move || sweep(&s)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "removed expired uploads"),
            Ok(Err(e)) => tracing::warn!(error = ?e, "upload sweep failed"),
            Err(e) => tracing::warn!(error = %e, "upload sweep task failed"),
        }
    }
}

fn signed(r: &UploadRecord) -> Signed<'_> {
    Signed {
        upload_id: &r.id,
        size_bytes: r.size_bytes,
        content_type: &r.content_type,
        workspace: &r.workspace,
        expires: r.expires_at.timestamp(),
    }
}

fn trim_to_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// `public_url`, or `http://` + the `Host` the client used.
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &state.config.public_url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_host",
                "the request has no usable Host header, so no upload URL can be made (set --public-url)",
                "Host",
            )
        })?;
    Ok(format!("http://{host}"))
}

fn string_field<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        None => Err(missing(field)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(other) => Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "`{field}` must be a non-empty string, not {}",
                describe(other)
            ),
            field,
        )),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "an empty string".into(),
        Value::Number(n) => format!("{n}"),
        other => json_type(other).to_string(),
    }
}

fn check_filename(name: &str) -> Result<&str, ApiError> {
    let reason = if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name == "." || name == ".." {
        Some("is not a file name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ApiError::bad_request(
            "invalid_filename",
            format!("filename {name:?} {reason}"),
            "filename",
        )),
        None => Ok(name),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_request("missing_field", format!("`{field}` is required"), field)
}

fn upload_not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        code: "upload_not_found",
        message: format!("no upload {id:?} in this workspace"),
        param: Some("upload_id".into()),
    }
}

fn upload_expired(id: &str) -> ApiError {
    ApiError::NotFound {
        code: "upload_expired",
        message: format!("upload {id} has expired; start a new upload"),
        param: Some("upload_id".into()),
    }
}

/// Resolves a `media_ref` of the caller's workspace to its record; another workspace's
/// reference is as unknown as a missing one.
pub async fn find_media(
    state: &AppState,
    workspace: &str,
    media_ref: &str,
    param: &str,
) -> Result<MediaRecord, ApiError> {
    let store = state.store.clone();
    let r = media_ref.to_string();
    let record = blocking(move || store.get_media(&r)).await?;
    record
        .filter(|m| m.workspace == workspace)
        .ok_or_else(|| ApiError::NotFound {
            code: "media_not_found",
            message: format!("{param}: no media {media_ref:?} in this workspace; upload it first"),
            param: Some(param.to_string()),
        })
}

/// The stored bytes of a media record.
pub async fn read_media(state: &AppState, record: &MediaRecord) -> Result<Arc<[u8]>, ApiError> {
    let store = state.store.clone();
    let sha = record.sha256.clone();
    let bytes = blocking(move || store.read_content(&sha, 0, usize::MAX)).await?;
    Ok(Arc::from(bytes))
}
