//! `/api/api-keys/`: key management for the operator (admin bearer token).

use axum::Json;
use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, blocking};
use crate::extract::JsonObject;
use crate::keys::{self, DEFAULT_WORKSPACE, KeyView};
use crate::state::AppState;
use crate::validate::valid_scope;

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let records = blocking(move || store.list_keys()).await?;
    let data: Vec<KeyView> = records.iter().map(KeyView::from).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// Reads a required key name: a string of 1 to 100 characters.
fn name_field(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("name") {
        None => Err(ApiError::bad_request(
            "missing_field",
            "`name` is required",
            "name",
        )),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 100 => {
            Ok(s.trim().to_string())
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_field",
            "`name` must be a string of 1 to 100 characters",
            "name",
        )),
    }
}

fn only_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown field `{k}`; allowed: {}", allowed.join(", ")),
            k,
        )),
        None => Ok(()),
    }
}

pub async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    only_fields(&body, &["name", "workspace"])?;
    let name = name_field(&body)?;
    let workspace = match body.get("workspace") {
        None => DEFAULT_WORKSPACE.to_string(),
        Some(Value::String(w)) if valid_scope(w) => w.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "`workspace` must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                "workspace",
            ));
        }
    };
    let store = state.store.clone();
    let created = blocking(move || keys::create_key(&*store, &name, &workspace)).await?;
    tracing::info!(key_id = %created.view.id, workspace = %created.view.workspace, "API key created");
    let body = serde_json::to_value(&created).map_err(|e| ApiError::internal("encode key", e))?;
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<KeyView>, ApiError> {
    only_fields(&body, &["name"])?;
    let name = name_field(&body)?;
    let store = state.store.clone();
    let record = blocking(move || store.rename_key(&id, &name)).await?;
    Ok(Json(KeyView::from(&record)))
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let store = state.store.clone();
    let record = blocking(move || store.revoke_key(&id, Utc::now())).await?;
    tracing::info!(key_id = %record.id, "API key revoked");
    Ok(Json(KeyView::from(&record)))
}
