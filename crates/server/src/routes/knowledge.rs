//! Knowledge Bases: the model/collection/scope triples of the caller's workspace that hold
//! data, and dropping one.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use aimp_index::CollectionKey;

use crate::auth::Caller;
use crate::error::{ApiError, blocking};
use crate::keys::timestamp;
use crate::state::AppState;

/// `GET /api/knowledge-bases`
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let index = state.index.clone();
    let mut records = blocking(move || index.collections()).await?;
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
    let index = state.index.clone();
    let k = key.clone();
    let count = blocking(move || {
        let count = index.count(&k)?;
        let existed = index.drop_collection(&k)?;
        Ok(existed.then_some(count.unwrap_or(0)))
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
