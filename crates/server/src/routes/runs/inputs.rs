//! Reading a validated run's input: texts, ids, and uploaded pictures resolved to their
//! bytes and embedded. The schema has already checked shapes; these check what it cannot
//! (that media exist in the caller's workspace, that pictures decode).

use std::collections::HashMap;
use std::sync::Arc;

use aimp_embed::{EmbedError, EncoderHandle, Kind};
use aimp_store::{Filter, FilterLimits, MediaRecord};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::media::{find_media, read_media};
use crate::state::AppState;
use crate::validate::ValidRun;
use crate::workspace_slots::Slot as WorkspaceSlot;

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
    // A place in the encoder's queue comes first: a refused run reads nothing.
    let admission = encoder.admit(&caller.workspace, Kind::Pictures, inputs.len())?;
    let mut records = Vec::with_capacity(inputs.len());
    for input in inputs {
        let param = format!("{}.media_ref", input.param);
        records.push(find_media(state, &caller.workspace, &input.media_ref, &param).await?);
    }
    // Each distinct content is read once, however often the run names it, and only once the
    // server-wide budget for picture bytes in memory has room for all of the run's.
    let mut distinct: HashMap<&str, u64> = HashMap::new();
    for r in &records {
        distinct.insert(r.sha256.as_str(), r.size_bytes);
    }
    let total: u64 = distinct.values().sum();
    let _budget = media_budget(state, &caller.workspace, total)?;
    let mut contents: HashMap<String, Arc<[u8]>> = HashMap::with_capacity(distinct.len());
    let mut bytes = Vec::with_capacity(records.len());
    for record in &records {
        let content = match contents.get(&record.sha256) {
            Some(c) => c.clone(),
            None => {
                let c = read_media(state, record).await?;
                contents.insert(record.sha256.clone(), c.clone());
                c
            }
        };
        bytes.push(content);
    }
    drop(contents);
    // Decoding is the workspace's CPU: it takes one of its places, as a search does, and
    // gives it back before the model runs (the encoder shares its batches by itself).
    let prepared = {
        let _turn = state.store_turns.turn(&caller.workspace).await?;
        encoder.prepare_images(bytes, state.config.decode).await
    };
    let embedded = match prepared {
        Ok(prepared) => encoder.embed_prepared(admission, prepared).await,
        Err(e) => Err(e),
    };
    let vectors = embedded.map_err(|e| match e {
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

/// Room for `bytes` of pictures in the server-wide budget, held until the run ends, within
/// `workspace`'s share of it (half), so one workspace's runs cannot hold all of it while
/// another's wait. A run larger than the whole budget is the client's 400; a budget or a
/// share busy with other runs is 503.
fn media_budget(
    state: &AppState,
    workspace: &str,
    bytes: u64,
) -> Result<(WorkspaceSlot, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let limit = state.config.media_bytes_in_flight;
    if bytes > limit {
        return Err(ApiError::bad_request(
            "too_much_media",
            format!(
                "the run's pictures total {bytes} bytes; one run may use at most {limit} (AIMP_MEDIA_IN_FLIGHT)"
            ),
            "input",
        ));
    }
    let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    // A run larger than a share still runs when its workspace holds nothing else.
    let share = state.media_shares.limit();
    let Some(slot) = state
        .media_shares
        .take_many(workspace, (kib as usize).min(share))
    else {
        return Err(ApiError::Unavailable {
            code: "overloaded",
            message: format!(
                "this workspace's other runs hold its share of the memory for pictures (half of \
                 the {limit} bytes of AIMP_MEDIA_IN_FLIGHT); retry in 1 s"
            ),
            retry_after_secs: 1,
        });
    };
    let permit = state
        .media_budget
        .clone()
        .try_acquire_many_owned(kib)
        .map_err(|_| ApiError::Unavailable {
            code: "overloaded",
            message: format!(
                "other runs hold the memory for pictures ({limit} bytes); retry in 1 s"
            ),
            retry_after_secs: 1,
        })?;
    Ok((slot, permit))
}

/// `input.metadata`: one object per item, checked, or none for every item when absent.
pub fn metadata(
    run: &ValidRun,
    items: usize,
    ids_field: &str,
) -> Result<Vec<Option<Value>>, ApiError> {
    let Some(Value::Array(list)) = run.input.get("metadata") else {
        return Ok(vec![None; items]);
    };
    if list.len() != items {
        return Err(ApiError::bad_request(
            "length_mismatch",
            format!(
                "input.metadata has {} objects but input.{ids_field} has {items} ids; give one \
                 object per item",
                list.len()
            ),
            "input.metadata",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, meta)| {
            aimp_store::metadata::check(meta).map_err(|e| {
                let param = if e.path.is_empty() {
                    format!("input.metadata[{i}]")
                } else {
                    format!("input.metadata[{i}].{}", e.path)
                };
                ApiError::bad_request("invalid_input", format!("{param} {}", e.reason), &param)
            })?;
            Ok(Some(meta.clone()))
        })
        .collect()
}

/// `params.filter`, read; a refusal names its path (`params.filter.must[1].range`).
pub fn filter(run: &ValidRun, limits: FilterLimits) -> Result<Option<Filter>, ApiError> {
    run.params
        .get("filter")
        .map(|value| {
            crate::validate::parse_filter(value, "params.filter", "invalid_params", limits)
        })
        .transpose()
}

/// `input.<field>` as vectors: an array of number arrays (`vectors`), or one number array
/// (`vector`). A number that is not finite as a 32-bit float is refused, naming it.
pub fn vectors(run: &ValidRun, field: &str) -> Result<Vec<Vec<f32>>, ApiError> {
    let one = |v: &Value, param: String| -> Result<Vec<f32>, ApiError> {
        let numbers = v.as_array().map(Vec::as_slice).unwrap_or_default();
        numbers
            .iter()
            .enumerate()
            .map(|(j, x)| {
                let value = x.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
                value.ok_or_else(|| {
                    let at = format!("{param}[{j}]");
                    ApiError::bad_request(
                        "invalid_input",
                        format!("{at} is not a finite 32-bit number"),
                        &at,
                    )
                })
            })
            .collect()
    };
    match run.input.get(field) {
        Some(Value::Array(items)) if items.first().is_some_and(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, v)| one(v, format!("input.{field}[{i}]")))
            .collect(),
        Some(v @ Value::Array(_)) => Ok(vec![one(v, format!("input.{field}"))?]),
        _ => Ok(Vec::new()),
    }
}
