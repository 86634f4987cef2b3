//! `index`, `search` and `delete`: the vector modes, on the collection of
//! (workspace, model, the mode's collection, scope).

use aimp_embed::EncoderHandle;
use aimp_store::{
    CollectionKey, CollectionParams, Filter, Metric, NewItem, Precision, SearchOptions, StoreError,
    UpsertOutcome,
};
use serde_json::{Map, Value, json};

use super::inputs;
use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::state::AppState;
use crate::validate::ValidRun;

/// The collection a vector-mode run reads or writes.
fn collection_key(caller: &Caller, run: &ValidRun) -> Result<CollectionKey, ApiError> {
    let contract = run.manifest.modes.get(&run.mode);
    let (Some(collection), Some(scope)) = (
        contract.and_then(|c| c.collection.as_deref()),
        run.scope.as_deref(),
    ) else {
        return Err(ApiError::internal(
            "contract",
            std::io::Error::other(format!(
                "{}/{} has no collection or the run no scope",
                run.manifest.slug, run.mode
            )),
        ));
    };
    Ok(CollectionKey::new(
        &caller.workspace,
        &run.manifest.slug,
        collection,
        scope,
    ))
}

/// A new collection's parameters: the model's dimension, distance and precision, default
/// graph settings.
fn collection_params(state: &AppState, run: &ValidRun) -> Result<CollectionParams, ApiError> {
    let metric: Metric = run.manifest.distance.parse().map_err(|reason: String| {
        ApiError::internal("manifest distance", std::io::Error::other(reason))
    })?;
    let mut params = CollectionParams::new(run.manifest.dimensions, metric);
    params.precision = precision(run);
    params.exact_below = state.config.exact_below;
    Ok(params)
}

/// The precision the run's model encodes at, as the store records it.
fn precision(run: &ValidRun) -> Precision {
    match run.manifest.precision {
        aimp_embed::Precision::Fp32 => Precision::Fp32,
        aimp_embed::Precision::Int8 => Precision::Int8,
    }
}

/// What the gateway records for an indexed picture: its content's hash, size and type, and
/// what its EXIF block says.
fn system_of(media: &aimp_store::MediaRecord) -> Value {
    let mut system = json!({
        "sha256": media.sha256,
        "width": media.width,
        "height": media.height,
        "content_type": media.content_type,
    });
    if let (Some(Value::Object(exif)), Value::Object(out)) = (&media.exif, &mut system) {
        for (k, v) in exif {
            out.insert(k.clone(), v.clone());
        }
    }
    system
}

/// `index`: embed everything first, then one durable upsert: all or nothing.
pub async fn index(
    state: &AppState,
    caller: &Caller,
    encoder: &EncoderHandle,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let key = collection_key(caller, run)?;
    let params = collection_params(state, run)?;
    let pictures = inputs::media(run, "images");
    let ids_field = if pictures.is_empty() {
        "text_ids"
    } else {
        "image_ids"
    };
    let items: Vec<NewItem> = if !pictures.is_empty() {
        let ids = inputs::strings(run, "image_ids");
        same_length(ids.len(), pictures.len(), "image_ids", "images")?;
        let metadata = inputs::metadata(run, ids.len(), ids_field)?;
        let (records, vectors) = inputs::embed_media(state, caller, encoder, &pictures).await?;
        ids.into_iter()
            .zip(pictures)
            .zip(records.into_iter().zip(vectors))
            .zip(metadata)
            .map(|(((id, input), (media, vector)), metadata)| NewItem {
                id,
                vector,
                filename: Some(input.filename.unwrap_or_else(|| media.filename.clone())),
                media_ref: Some(media.media_ref.clone()),
                system: Some(system_of(&media)),
                metadata,
            })
            .collect()
    } else {
        let texts = inputs::strings(run, "texts");
        let ids = inputs::strings(run, "text_ids");
        same_length(ids.len(), texts.len(), "text_ids", "texts")?;
        let metadata = inputs::metadata(run, ids.len(), ids_field)?;
        let vectors = encoder
            .embed_texts(&caller.workspace, texts.clone())
            .await?;
        ids.into_iter()
            .zip(texts)
            .zip(vectors)
            .zip(metadata)
            .map(|(((id, text), vector), metadata)| NewItem {
                id,
                vector,
                filename: None,
                media_ref: None,
                system: Some(json!({ "text": text })),
                metadata,
            })
            .collect()
    };
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    let store = state.store.clone();
    let k = key.clone();
    let outcome = tokio::task::spawn_blocking(move || store.upsert(&k, params, items))
        .await
        .map_err(|join| ApiError::internal("blocking task", join))?
        .map_err(|e| upsert_error(e, ids_field))?;
    Ok(indexed(&key, ids, &outcome))
}

/// The answer of an `index` run: what it wrote, and the collection's count afterwards.
fn indexed(key: &CollectionKey, ids: Vec<String>, outcome: &UpsertOutcome) -> (Value, usize) {
    let n = ids.len();
    let output = json!({
        "indexed": outcome.written,
        "ids": ids,
        "replaced": outcome.replaced,
        "collection": key.collection,
        "scope": key.scope,
        "count": outcome.count,
    });
    (output, n)
}

/// What an upsert refused, in the API's terms: an id is the client's (named as the input
/// field it came from); a vector is our model's output, so a fault in one is ours (500).
fn upsert_error(e: StoreError, ids_field: &str) -> ApiError {
    match e {
        StoreError::InvalidInput {
            ref field,
            ref reason,
        } => {
            let item = field
                .strip_prefix("items[")
                .and_then(|rest| rest.split_once("]."));
            match item {
                Some((i, path)) if path == "metadata" || path.starts_with("metadata.") => {
                    let param =
                        format!("input.{path}").replacen("metadata", &format!("metadata[{i}]"), 1);
                    ApiError::bad_request("invalid_input", format!("{param} {reason}"), &param)
                }
                Some((i, "id")) => {
                    let name = |s: &str| {
                        s.replace("items[", &format!("input.{ids_field}["))
                            .replace("].id", "]")
                    };
                    ApiError::bad_request(
                        "invalid_input",
                        format!("input.{ids_field}[{i}] {}", name(reason)),
                        &format!("input.{ids_field}[{i}]"),
                    )
                }
                _ => ApiError::internal("model output", e),
            }
        }
        other => ApiError::from(other),
    }
}

fn same_length(
    ids: usize,
    items: usize,
    ids_field: &str,
    items_field: &str,
) -> Result<(), ApiError> {
    if ids == items {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "length_mismatch",
        format!(
            "input.{ids_field} has {ids} ids but input.{items_field} has {items} items; give one id per item"
        ),
        &format!("input.{ids_field}"),
    ))
}

/// `search`: by text, or by an uploaded picture.
pub async fn search(
    state: &AppState,
    caller: &Caller,
    encoder: &EncoderHandle,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let key = collection_key(caller, run)?;
    // A bad filter is refused before any model time is spent.
    let filter = inputs::filter(run, state.config.filter_limits)?;
    let pictures = inputs::media(run, "image");
    let query = if pictures.is_empty() {
        encoder
            .embed_texts(&caller.workspace, inputs::strings(run, "text"))
            .await?
            .pop()
    } else {
        inputs::embed_media(state, caller, encoder, &pictures)
            .await?
            .1
            .pop()
    }
    .ok_or_else(|| ApiError::internal("search", std::io::Error::other("no query vector")))?;
    let options = search_options(&run.params, Some(precision(run)), filter);
    nearest(state, key, query, options).await
}

/// The search itself and its answer, whatever made the query vector.
async fn nearest(
    state: &AppState,
    key: CollectionKey,
    query: Vec<f32>,
    options: SearchOptions,
) -> Result<(Value, usize), ApiError> {
    let store = state.store.clone();
    let k = key.clone();
    let _turn = state.store_turns.turn(&key.workspace).await?;
    let outcome = blocking(move || store.search(&k, &query, options)).await?;
    let results: Vec<Value> = outcome
        .hits
        .iter()
        .map(|hit| {
            let mut r = json!({
                "id": hit.item.id,
                "score": hit.score,
                "filename": hit.item.filename,
                "media_ref": hit.item.media_ref,
                "metadata": hit.item.metadata,
            });
            if let Some(text) = hit.item.system.as_ref().and_then(|m| m.get("text")) {
                r["text"] = text.clone();
            }
            r
        })
        .collect();
    Ok((
        json!({
            "results": results,
            "collection": key.collection,
            "scope": key.scope,
            "exhaustive": outcome.exhaustive(),
        }),
        1,
    ))
}

/// `top_k`, `ef` and `exact` from the (schema-checked, defaults filled) params, for a query
/// encoded at `precision` (`None` for a caller's own vector), among what `filter` passes.
fn search_options(
    params: &Map<String, Value>,
    precision: Option<Precision>,
    filter: Option<Filter>,
) -> SearchOptions {
    let number = |name: &str| params.get(name).and_then(Value::as_u64).map(|n| n as usize);
    SearchOptions {
        top_k: number("top_k").unwrap_or(10),
        ef: number("ef"),
        exact: params
            .get("exact")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        precision,
        filter: filter.map(std::sync::Arc::new),
        walk: false,
    }
}

/// `index` of the `vectors` model: the caller's vectors, upserted as given. The scope's first
/// run fixes its dimension (`params.dimensions`, else the first vector's length) and metric
/// (`params.metric`, default cosine); a later run that disagrees is a 400 naming the field.
pub async fn index_vectors(
    state: &AppState,
    caller: &Caller,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let key = collection_key(caller, run)?;
    let ids = inputs::strings(run, "ids");
    let vectors = inputs::vectors(run, "vectors")?;
    same_length(ids.len(), vectors.len(), "ids", "vectors")?;
    let metadata = inputs::metadata(run, ids.len(), "ids")?;
    let metric = match run.params.get("metric").and_then(Value::as_str) {
        Some(name) => Some(name.parse::<Metric>().map_err(|reason| {
            ApiError::bad_request(
                "invalid_params",
                format!("params.metric: {reason}"),
                "params.metric",
            )
        })?),
        None => None,
    };
    let asked_dim = run
        .params
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|d| d as usize);
    let store = state.store.clone();
    let k = key.clone();
    let stored = blocking(move || store.record(&k)).await?.map(|r| r.params);
    // The scope's dimension and metric: as stored, else as this first run sets them.
    let (dim, metric) = match stored {
        Some(p) => {
            if let Some(m) = metric.filter(|m| *m != p.metric) {
                return Err(ApiError::bad_request(
                    "invalid_params",
                    format!(
                        "params.metric is {} but scope {} compares by {}, fixed by its first run",
                        m.as_str(),
                        key.scope,
                        p.metric.as_str()
                    ),
                    "params.metric",
                ));
            }
            if let Some(d) = asked_dim.filter(|d| *d != p.dim) {
                return Err(ApiError::bad_request(
                    "invalid_params",
                    format!(
                        "params.dimensions is {d} but scope {} holds {}-dimensional vectors",
                        key.scope, p.dim
                    ),
                    "params.dimensions",
                ));
            }
            (p.dim, p.metric)
        }
        None => (
            asked_dim.unwrap_or_else(|| vectors.first().map_or(0, Vec::len)),
            metric.unwrap_or(Metric::Cosine),
        ),
    };
    if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != dim) {
        let param = format!("input.vectors[{i}]");
        return Err(ApiError::bad_request(
            "invalid_input",
            format!(
                "{param} has {} numbers but scope {} holds {dim}-dimensional vectors",
                v.len(),
                key.scope
            ),
            &param,
        ));
    }
    let mut params = CollectionParams::new(dim, metric);
    params.exact_below = state.config.exact_below;
    let items: Vec<NewItem> = ids
        .iter()
        .zip(vectors)
        .zip(metadata)
        .map(|((id, vector), metadata)| NewItem {
            id: id.clone(),
            vector,
            filename: None,
            media_ref: None,
            system: None,
            metadata,
        })
        .collect();
    let store = state.store.clone();
    let k = key.clone();
    let outcome = blocking(move || store.upsert(&k, params, items)).await?;
    Ok(indexed(&key, ids, &outcome))
}

/// `search` of the `vectors` model: by the caller's query vector.
pub async fn search_vectors(
    state: &AppState,
    caller: &Caller,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let key = collection_key(caller, run)?;
    let filter = inputs::filter(run, state.config.filter_limits)?;
    let query = inputs::vectors(run, "vector")?.pop().unwrap_or_default();
    let options = search_options(&run.params, None, filter);
    nearest(state, key, query, options).await
}

/// Most deleted ids a delete answer lists; a delete by filter may remove more.
const MAX_LISTED_IDS: usize = 1000;

/// `delete`: by ids, by filter, or the ids the filter passes; ids that are not there are
/// listed, not an error.
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    run: &ValidRun,
) -> Result<(Value, usize), ApiError> {
    let key = collection_key(caller, run)?;
    let filter = inputs::filter(run, state.config.filter_limits)?;
    let ids = run
        .input
        .contains_key("ids")
        .then(|| inputs::strings(run, "ids"));
    if ids.is_none() && filter.is_none() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "input.ids is required unless params.filter says what to delete",
            "input.ids",
        ));
    }
    let with_filter = filter.is_some();
    let asked = ids.as_ref().map(Vec::len);
    let store = state.store.clone();
    let k = key.clone();
    let _turn = state.store_turns.turn(&caller.workspace).await?;
    let outcome = blocking(move || store.delete_where(&k, ids, filter)).await?;
    let mut output = json!({
        "deleted": outcome.deleted,
        "ids": outcome.ids.iter().take(MAX_LISTED_IDS).collect::<Vec<_>>(),
        "not_found": outcome.not_found,
        "collection": key.collection,
        "scope": key.scope,
        "count": outcome.count,
    });
    if outcome.ids.len() > MAX_LISTED_IDS {
        output["ids_truncated"] = true.into();
    }
    if with_filter {
        output["kept"] = json!(outcome.kept);
    }
    Ok((output, asked.unwrap_or(outcome.deleted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_vector_from_our_model_is_ours_and_a_bad_id_is_the_clients() {
        let vector = StoreError::InvalidInput {
            field: "items[2].vector".into(),
            reason: "holds a value that is not a finite number".into(),
        };
        let e = upsert_error(vector, "text_ids");
        assert_eq!(e.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message().contains("items["), "{}", e.message());
        let id = StoreError::InvalidInput {
            field: "items[1].id".into(),
            reason: "\"a\" is also items[0].id".into(),
        };
        let e = upsert_error(id, "image_ids");
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message(),
            "input.image_ids[1] \"a\" is also input.image_ids[0]"
        );
    }
}
