//! `POST /api/runs`: validate against the model's contract, then run the mode.

mod embed;
mod inputs;
mod vector;

use std::time::Instant;

use axum::extract::State;
use axum::{Extension, Json};
use chrono::Utc;
use rand::RngCore;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonObject;
use crate::keys::timestamp;
use crate::models::ModelState;
use crate::state::AppState;
use crate::validate::ValidRun;
use aimp_embed::EncoderHandle;

fn run_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("run_{}", hex::encode(bytes))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let run = state.contracts.validate(body)?;
    let model = run.manifest.slug.clone();
    let mode = run.mode.clone();
    let result = execute(&state, &caller, run, started).await;
    let status = match &result {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    state
        .metrics
        .record_run(&model, &mode, status, started.elapsed().as_secs_f64());
    result.map(Json)
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    run: ValidRun,
    started: Instant,
) -> Result<Value, ApiError> {
    let slug = run.manifest.slug.clone();
    let raw = !run.manifest.architecture.has_encoder();
    let (output, items) = match run.mode.as_str() {
        // The `vectors` model: the caller's own vectors, no encoder.
        "index" if raw => vector::index_vectors(state, caller, &run).await?,
        "search" if raw => vector::search_vectors(state, caller, &run).await?,
        "execute" => {
            let encoder = ready_encoder(state, &run)?;
            embed::execute(state, caller, &encoder, &run).await?
        }
        "index" => {
            let encoder = ready_encoder(state, &run)?;
            vector::index(state, caller, &encoder, &run).await?
        }
        "search" => {
            let encoder = ready_encoder(state, &run)?;
            vector::search(state, caller, &encoder, &run).await?
        }
        // Deleting needs no model: only the index is touched.
        "delete" => vector::delete(state, caller, &run).await?,
        other => {
            return Err(ApiError::NotImplemented {
                message: format!(
                    "mode {other} is part of {slug}'s contract but this gateway does not run it"
                ),
            });
        }
    };
    tracing::info!(
        workspace = %caller.workspace,
        key_id = %caller.key_id,
        model = %slug,
        mode = %run.mode,
        scope = run.scope.as_deref().unwrap_or(""),
        items,
        "run succeeded"
    );
    Ok(json!({
        "id": run_id(),
        "object": "run",
        "model": slug,
        "mode": run.mode,
        "scope": run.scope,
        "status": "succeeded",
        "created_at": timestamp(Utc::now()),
        "output": output,
        "usage": {"items": items, "duration_ms": started.elapsed().as_millis() as u64},
    }))
}

/// The model's encoder, or why it cannot run now (503 loading, 409 failed or not installed).
fn ready_encoder(state: &AppState, run: &ValidRun) -> Result<EncoderHandle, ApiError> {
    let slug = run.manifest.slug.as_str();
    match state.models.get(slug) {
        Some(ModelState::Ready(handle)) => Ok(handle),
        Some(ModelState::Loading) => Err(ApiError::Unavailable {
            code: "model_loading",
            message: format!("model {slug} is still loading; retry shortly"),
            retry_after_secs: 5,
        }),
        Some(ModelState::Failed(reason)) => Err(ApiError::Conflict {
            code: "model_unavailable",
            message: format!(
                "model {slug} could not be loaded ({reason}); reinstall it with `{}`",
                run.manifest.install_command()
            ),
            param: Some("model".into()),
        }),
        None => {
            let status = state.registry.status(slug);
            Err(if status.installed {
                ApiError::Conflict {
                    code: "model_unavailable",
                    message: format!(
                        "model {slug} is installed but not loaded by this server; restart it to load the model"
                    ),
                    param: Some("model".into()),
                }
            } else {
                ApiError::from(aimp_embed::EmbedError::NotInstalled {
                    slug: slug.to_string(),
                    install_command: run.manifest.install_command(),
                })
            })
        }
    }
}
