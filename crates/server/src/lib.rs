//! The AIMP gateway: the axum router, its handlers, authentication, rate limiting, metrics,
//! and the one mapping of errors to HTTP.
//!
//! [`router`] builds the whole app from an [`AppState`]; tests call it in-process and the
//! binary serves it.

mod auth;
mod connections;
pub mod console;
mod error;
mod extract;
pub mod keys;
mod media;
mod metrics;
mod models;
mod ratelimit;
mod routes;
mod state;
mod validate;
mod workspace_gate;
mod workspace_slots;

pub use connections::{LimitedListener, serve};
pub use error::ApiError;
pub use metrics::Metrics;
pub use models::{ModelSet, ModelState};
pub use routes::media::{sweep as sweep_uploads, sweep_forever as sweep_uploads_forever};
pub use state::{AppState, ServerConfig};
pub use validate::{Contracts, valid_scope};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, patch, post, put};

/// The whole gateway.
pub fn router(state: AppState) -> Router {
    let integration = Router::new()
        .route("/api/runs", post(routes::runs::create))
        .route("/api/marketplace/models", get(routes::models::list))
        .route(
            "/api/marketplace/models/{slug}",
            get(routes::models::get_one),
        )
        .route("/api/media/upload/init", post(routes::media::init))
        .route("/api/media/upload/complete", post(routes::media::complete))
        .route("/api/media/{media_ref}", get(routes::media_bytes::get))
        .route(
            "/api/media/{media_ref}/thumbnail",
            get(routes::media_bytes::thumbnail),
        )
        .route("/api/knowledge-bases", get(routes::knowledge::list))
        .route(
            "/api/knowledge-bases/{model}/{collection}/{scope}",
            delete(routes::knowledge::delete),
        )
        .route(
            "/api/knowledge-bases/{model}/{collection}/{scope}/items",
            get(routes::knowledge::items),
        )
        .route(
            "/api/knowledge-bases/{model}/{collection}/{scope}/recall",
            post(routes::recall::recall),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    // The upload URL carries its own signature and expiry instead of a key.
    let signed = Router::new().route("/api/media/upload/{upload_id}", put(routes::media::put));
    let admin = Router::new()
        .route(
            "/api/api-keys/",
            get(routes::keys::list).post(routes::keys::create),
        )
        .route(
            "/api/api-keys/{id}/",
            patch(routes::keys::rename).delete(routes::keys::revoke),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let operations = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics));
    // The console's files take no credential; the page signs in to the API.
    let console = Router::new()
        .route("/console", get(console::redirect))
        .route("/console/", get(console::index))
        .route("/console/{*path}", get(console::file));
    Router::new()
        .merge(integration)
        .merge(signed)
        .merge(admin)
        .merge(operations)
        .merge(console)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        .with_state(state)
}
