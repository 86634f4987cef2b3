//! `POST /api/knowledge-bases/{model}/{collection}/{scope}/recall`: how well a scope's graph
//! finds what exact search finds, on the scope's own data. Stored vectors drawn at random are
//! the queries; each is answered by the graph (as searches are) and by comparing every item,
//! and the answer gives recall@k and both latencies, so users can check the index on what
//! they indexed rather than trust a benchmark of someone else's data.
//!
//! A check is heavy (each query an exact scan of the scope), so it is bounded every way: its
//! comparisons in all (`queries` x items, `--recall-max-work`), one at a time per workspace,
//! a few at a time server-wide, charged to the key's rate limit by its queries (one request
//! per [`QUERIES_PER_REQUEST`]), and stopped between queries when its client goes away.

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use aimp_store::{CollectionKey, SearchOptions};

use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::extract::{JsonObject, Path};
use crate::ratelimit::Charge;
use crate::state::AppState;

const MAX_QUERIES: usize = 1000;
const MAX_K: usize = 100;
const MAX_EF: usize = 4096;
/// A check costs one request of the key's rate limit for this many of its queries (the
/// request itself paid the first).
pub const QUERIES_PER_REQUEST: usize = 10;

pub async fn recall(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((model, collection, scope)): Path<(String, String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    for field in body.keys() {
        if !["queries", "k", "ef", "seed"].contains(&field.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_field",
                format!("unknown field `{field}`; recall takes: queries, k, ef, seed"),
                field,
            ));
        }
    }
    let queries = number(&body, "queries", 1, MAX_QUERIES)?.unwrap_or(100);
    let k = number(&body, "k", 1, MAX_K)?.unwrap_or(10);
    let ef = number(&body, "ef", 1, MAX_EF)?;
    let seed = number(&body, "seed", 0, usize::MAX)?.unwrap_or(42) as u64;
    let key = CollectionKey::new(&caller.workspace, &model, &collection, &scope);
    let store = state.store.clone();
    let record = {
        let (store, key) = (store.clone(), key.clone());
        blocking(move || store.record(&key)).await?
    };
    let Some(record) = record else {
        return Err(crate::routes::knowledge::not_found(
            &model,
            &collection,
            &scope,
        ));
    };
    let work = queries as u64 * record.count;
    let max_work = state.config.recall_max_work;
    if work > max_work {
        return Err(ApiError::bad_request(
            "too_much_work",
            format!(
                "queries x the scope's {} items = {work} comparisons, more than the {max_work} \
                 a recall check may make (AIMP_RECALL_MAX_WORK); ask for at most {} queries",
                record.count,
                max_work / record.count.max(1)
            ),
            "queries",
        ));
    }
    let charge = (queries / QUERIES_PER_REQUEST) as u32;
    match state.limiter.charge(&caller.key_id, charge) {
        Ok(()) => {}
        Err(Charge::Later(refused)) => return Err(refused.into()),
        Err(Charge::PastQuota { limit }) => {
            return Err(ApiError::bad_request(
                "too_much_work",
                format!(
                    "a recall check of {queries} queries costs {} requests of the key's rate \
                     limit, more than its whole {limit} a minute; ask for fewer queries",
                    charge + 1
                ),
                "queries",
            ));
        }
    }
    // Both places are held by the work itself, not this request: a check whose client left
    // keeps them until it has stopped.
    let Some(turn) = state.recall_turns.take(&caller.workspace) else {
        return Err(ApiError::TooMany {
            code: "recall_in_progress",
            message: "this workspace's previous recall check is still running; one runs at a \
                      time"
                .into(),
            retry_after_secs: 1,
        });
    };
    let Ok(place) = state.recall_places.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable {
            code: "overloaded",
            message: "other workspaces' recall checks are running; retry shortly".into(),
            retry_after_secs: 2,
        });
    };
    let measured = blocking(move || {
        let _held = (turn, place);
        let sample = store.sample_vectors(&key, queries, seed)?;
        let options = |exact| SearchOptions {
            top_k: k,
            ef,
            exact,
            precision: None,
            filter: None,
            walk: false,
        };
        let (mut graph_ms, mut exact_ms) = (Vec::new(), Vec::new());
        let (mut found, mut exhaustive) = (0usize, 0usize);
        let mut wanted = 0usize;
        for q in &sample {
            // Each search looks too; this also stops between two cheap ones.
            if aimp_store::Cancel::requested() {
                return Err(aimp_store::StoreError::Cancelled);
            }
            let t = Instant::now();
            let graph = store.search(&key, q, options(false))?;
            graph_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let truth = store.search(&key, q, options(true))?;
            exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            exhaustive += usize::from(graph.exhaustive());
            wanted += truth.hits.len();
            found += graph
                .hits
                .iter()
                .filter(|h| truth.hits.iter().any(|t| t.item.id == h.item.id))
                .count();
        }
        Ok((sample.len(), found, wanted, exhaustive, graph_ms, exact_ms))
    })
    .await?;
    let (asked, found, wanted, exhaustive, mut graph_ms, mut exact_ms) = measured;
    Ok(Json(json!({
        "object": "recall_check",
        "model": model,
        "collection": collection,
        "scope": scope,
        "count": record.count,
        "queries": asked,
        "k": k,
        "ef": ef.unwrap_or(record.params.ef_search).max(k),
        "recall": if wanted == 0 { 1.0 } else { found as f64 / wanted as f64 },
        // Small scopes are searched exactly whatever is asked (recall 1 by construction).
        "graph_exhaustive": if asked == 0 { 0.0 } else { exhaustive as f64 / asked as f64 },
        "graph_ms": latencies(&mut graph_ms),
        "exact_ms": latencies(&mut exact_ms),
    })))
}

/// An optional whole number field within `min..=max`.
fn number(
    body: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(v) = body.get(field) else {
        return Ok(None);
    };
    match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid_field",
            format!("`{field}` must be a whole number from {min} to {max}, not {v}"),
            field,
        )),
    }
}

fn latencies(ms: &mut [f64]) -> Value {
    if ms.is_empty() {
        return json!({"p50": null, "p95": null});
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    json!({"p50": at(0.5), "p95": at(0.95)})
}
