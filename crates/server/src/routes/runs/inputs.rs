//! Reading a validated run's input: texts, ids, and uploaded pictures resolved to their
//! bytes and embedded. The schema has already checked shapes; these check what it cannot
//! (that media exist in the caller's workspace, that pictures decode).

use aimp_embed::{EmbedError, EncoderHandle};
use aimp_index::MediaRecord;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::media::load_media;
use crate::state::AppState;
use crate::validate::ValidRun;

/// The strings of `input.<field>` (an array of strings, or one string).
pub fn strings(run: &ValidRun, field: &str) -> Vec<String> {
    match run.input.get(field) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// An uploaded picture named in the input.
#[derive(Debug)]
pub struct MediaInput {
    pub media_ref: String,
    /// The name the request gives it, if any.
    pub filename: Option<String>,
    /// Where it sits in the request, for messages: `input.images[2]`.
    pub param: String,
}

/// The pictures of `input.<field>`: one object (`image`) or an array (`images`).
pub fn media(run: &ValidRun, field: &str) -> Vec<MediaInput> {
    let one = |v: &Value, param: String| {
        Some(MediaInput {
            media_ref: v.get("media_ref")?.as_str()?.to_string(),
            filename: v
                .get("filename")
                .and_then(Value::as_str)
                .map(str::to_string),
            param,
        })
    };
    match run.input.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| one(v, format!("input.{field}[{i}]")))
            .collect(),
        Some(v @ Value::Object(_)) => one(v, format!("input.{field}")).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Resolves every picture (404 naming the first unknown one), then embeds them all (400
/// naming the first that cannot be decoded). Nothing is embedded unless all resolve.
pub async fn embed_media(
    state: &AppState,
    caller: &Caller,
    encoder: &EncoderHandle,
    inputs: &[MediaInput],
) -> Result<(Vec<MediaRecord>, Vec<Vec<f32>>), ApiError> {
    let mut records = Vec::with_capacity(inputs.len());
    let mut bytes = Vec::with_capacity(inputs.len());
    for input in inputs {
        let param = format!("{}.media_ref", input.param);
        let (record, content) =
            load_media(state, &caller.workspace, &input.media_ref, &param).await?;
        records.push(record);
        bytes.push(content);
    }
    let vectors = encoder
        .embed_images(bytes, state.config.decode)
        .await
        .map_err(|e| match e {
            EmbedError::ImageItem { index, reason } => {
                let param = inputs
                    .get(index)
                    .map_or_else(|| "input".to_string(), |i| i.param.clone());
                let name = records
                    .get(index)
                    .map(|m| format!(" ({})", m.filename))
                    .unwrap_or_default();
                ApiError::bad_request(
                    "invalid_image",
                    format!("{param}{name} cannot be used: {reason}"),
                    &param,
                )
            }
            other => ApiError::from(other),
        })?;
    Ok((records, vectors))
}
