//! Knowledge Bases: the model/collection/scope triples of the caller's workspace that hold
//! data, and dropping one.

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::{Extension, Json};
use serde_json::{Value, json};

use aimp_store::CollectionKey;

use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::keys::timestamp;
use crate::state::AppState;

/// `GET /api/knowledge-bases`
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let mut records = blocking(move || store.collections()).await?;
    records.retain(|r| r.key.workspace == caller.workspace && r.count > 0);
    records.sort_by(|a, b| {
        (&a.key.model, &a.key.collection, &a.key.scope).cmp(&(
            &b.key.model,
            &b.key.collection,
            &b.key.scope,
        ))
    });
    let data: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "model": r.key.model,
                "collection": r.key.collection,
                "scope": r.key.scope,
                "count": r.count,
                "dimensions": r.params.dim,
                "precision": r.params.precision.as_str(),
                "metric": r.params.metric.as_str(),
                "created_at": timestamp(r.created_at),
                "updated_at": timestamp(r.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `DELETE /api/knowledge-bases/{model}/{collection}/{scope}`
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((model, collection, scope)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = CollectionKey::new(&caller.workspace, &model, &collection, &scope);
    let store = state.store.clone();
    let k = key.clone();
    let _turn = state.store_turns.turn(&caller.workspace).await?;
    let count = blocking(move || {
        // The stored count: dropping a collection never needs its graph in memory.
        let count = store.record(&k)?.map_or(0, |r| r.count);
        let existed = store.drop_collection(&k)?;
        Ok(existed.then_some(count))
    })
    .await?;
    match count {
        Some(count) => Ok(Json(json!({
            "deleted": true,
            "model": model,
            "collection": collection,
            "scope": scope,
            "count": count,
        }))),
        None => Err(ApiError::NotFound {
            code: "knowledge_base_not_found",
            message: format!(
                "no knowledge base {model}/{collection}/{scope} in this workspace; GET /api/knowledge-bases lists them"
            ),
            param: None,
        }),
    }
}

/// The page size of an item listing when the request gives none, and its maximum.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Debug, serde::Deserialize)]
pub struct ItemsQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// A filter as JSON (README: Filters).
    filter: Option<String>,
}

/// `GET /api/knowledge-bases/{model}/{collection}/{scope}/items?after=ID&limit=N&filter=F`:
/// the live items in id order (those `filter` passes), a page at a time (what `aimp index`
/// reads to skip content it already indexed). The first page (no `after`) also gives `count`,
/// the exact number of items the whole listing holds.
pub async fn items(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((model, collection, scope)): Path<(String, String, String)>,
    Query(query): Query<ItemsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}, not {limit}"),
            "limit",
        ));
    }
    let filter = query
        .filter
        .as_deref()
        .map(|text| {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("filter is not valid JSON: {e}"),
                    "filter",
                )
            })?;
            crate::validate::parse_filter(
                &value,
                "filter",
                "invalid_query",
                state.config.filter_limits,
            )
        })
        .transpose()?;
    let key = CollectionKey::new(&caller.workspace, &model, &collection, &scope);
    let store = state.store.clone();
    let after = query.after.clone();
    let _turn = state.store_turns.turn(&caller.workspace).await?;
    let (page, count) = blocking(move || {
        let Some(record) = store.record(&key)? else {
            return Ok((Vec::new(), None));
        };
        // One more than asked tells whether another page follows.
        let page = store.list_items(&key, after.as_deref(), limit + 1, filter.as_ref())?;
        // The first page says how many items the whole listing holds, exactly.
        let count = match (&after, &filter) {
            (Some(_), _) => None,
            (None, None) => Some(record.count),
            (None, Some(f)) => store.count_matching(&key, f)?,
        };
        Ok((page, Some(count)))
    })
    .await?;
    let Some(count) = count else {
        return Err(not_found(&model, &collection, &scope));
    };
    let has_more = page.len() > limit;
    let data: Vec<Value> = page
        .iter()
        .take(limit)
        .map(|item| {
            let meta = item.system.as_ref();
            json!({
                "id": item.id,
                "filename": item.filename,
                "media_ref": item.media_ref,
                "sha256": meta.and_then(|m| m.get("sha256")),
                "text": meta.and_then(|m| m.get("text")),
                "system": item.system,
                "metadata": item.metadata,
                "updated_at": timestamp(item.updated_at),
            })
        })
        .collect();
    let mut body = json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
    });
    if let Some(count) = count {
        body["count"] = json!(count);
    }
    Ok(Json(body))
}

/// A knowledge base the caller's workspace does not hold.
pub(crate) fn not_found(model: &str, collection: &str, scope: &str) -> ApiError {
    ApiError::NotFound {
        code: "knowledge_base_not_found",
        message: format!("no knowledge base {model}/{collection}/{scope} in this workspace"),
        param: None,
    }
}
