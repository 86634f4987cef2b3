//! The shared state every handler receives.

use std::sync::Arc;

use aimp_embed::Registry;
use aimp_index::Store;

use crate::metrics::Metrics;
use crate::models::ModelSet;
use crate::ratelimit::RateLimiter;
use crate::validate::Contracts;

/// The gateway's settings that handlers need.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Requests per minute per API key; 0 turns rate limiting off.
    pub rate_limit_per_minute: u32,
    /// The operator's bearer token for key management; `None` disables it.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("body_limit", &self.body_limit)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// `State<AppState>`: cheap to clone, all `Arc`s.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub contracts: Arc<Contracts>,
    pub models: Arc<ModelSet>,
    pub metrics: Arc<Metrics>,
    pub(crate) limiter: Arc<RateLimiter>,
}

impl AppState {
    pub fn new(
        config: ServerConfig,
        store: Store,
        registry: Arc<Registry>,
        models: Arc<ModelSet>,
    ) -> Result<AppState, String> {
        let contracts = Contracts::compile(registry.clone())?;
        Ok(AppState {
            limiter: Arc::new(RateLimiter::new(config.rate_limit_per_minute)),
            config: Arc::new(config),
            store,
            registry,
            contracts: Arc::new(contracts),
            models,
            metrics: Arc::new(Metrics::new()),
        })
    }
}
