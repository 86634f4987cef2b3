//! `GET /api/marketplace/models[/{slug}]`: the installed models and their contracts.

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use serde_json::{Value, json};

use aimp_embed::Manifest;

use crate::error::ApiError;
use crate::models::ModelState;
use crate::state::AppState;

fn describe(state: &AppState, m: &Manifest) -> Value {
    let status = state.registry.status(&m.slug);
    let loaded = match state.models.get(&m.slug) {
        Some(ModelState::Ready(_)) => "ready",
        Some(ModelState::Loading) => "loading",
        Some(ModelState::Failed(_)) => "failed",
        None => "not_loaded",
    };
    let modes: serde_json::Map<String, Value> = m
        .modes
        .iter()
        .map(|(name, c)| {
            let mut mode = json!({
                "description": c.description,
                "requires_scope": c.requires_scope,
                "input_schema": c.input_schema,
                "params_schema": c.params_schema,
                "dimensions": m.dimensions,
                "distance": m.distance,
            });
            if let Some(collection) = &c.collection {
                mode["collection"] = collection.clone().into();
            }
            (name.clone(), mode)
        })
        .collect();
    json!({
        "slug": m.slug,
        "object": "model",
        "name": m.name,
        "description": m.description,
        "architecture": m.architecture.as_str(),
        "dimensions": m.dimensions,
        "distance": m.distance,
        "max_tokens": m.max_tokens,
        "precision": m.precision.as_str(),
        "revision": status.revision.clone().unwrap_or_else(|| m.revision.clone()),
        "installed": status.installed,
        "verified": status.verified,
        "size_bytes": status.size_bytes,
        "status": loaded,
        "install_command": m.install_command(),
        "modes": modes,
    })
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .registry
        .manifests()
        .map(|m| describe(&state, m))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let manifest = state.registry.get(&slug)?;
    Ok(Json(describe(&state, manifest)))
}
