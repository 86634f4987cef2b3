//! Operations endpoints: liveness, readiness, metrics. None takes a credential.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::models::ModelState;
use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store is open and every model this process was asked to load is ready.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.store.clone();
    let store_ok = tokio::task::spawn_blocking(move || store.is_ready())
        .await
        .unwrap_or(false);
    let mut models = serde_json::Map::new();
    let mut models_ok = true;
    for (slug, model) in state.models.all() {
        let (status, error) = match model {
            ModelState::Ready(_) => ("ready", None),
            ModelState::Loading => ("loading", None),
            ModelState::Failed(reason) => ("failed", Some(reason)),
        };
        models_ok &= status == "ready";
        let mut entry = json!({"status": status});
        if let Some(error) = error {
            entry["error"] = error.into();
        }
        models.insert(slug, entry);
    }
    let ready = store_ok && models_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": if store_ok { "open" } else { "unavailable" },
        "models": models,
    });
    (status, Json(body))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.models.all());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
