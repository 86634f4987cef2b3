//! The shared state every handler receives.

use std::sync::Arc;
use std::time::Duration;

use aimp_embed::{DecodeOptions, Registry};
use aimp_store::Store;

use crate::media::MediaFiles;
use crate::metrics::Metrics;
use crate::models::ModelSet;
use crate::ratelimit::RateLimiter;
use crate::validate::Contracts;
use crate::workspace_gate::WorkspaceGate;
use crate::workspace_slots::WorkspaceSlots;

/// The gateway's settings that handlers need.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Requests per minute per API key; 0 turns rate limiting off.
    pub rate_limit_per_minute: u32,
    /// The operator's bearer token for key management; `None` disables it.
    pub admin_token: Option<String>,
    /// Largest upload in bytes.
    pub max_upload_bytes: u64,
    /// How long an upload URL stays valid.
    pub upload_ttl: Duration,
    /// The gateway's URL as clients reach it, for upload URLs; `None`: `http://` + the
    /// request's `Host`.
    pub public_url: Option<String>,
    /// How pictures are decoded (pixel limit, EXIF orientation).
    pub decode: DecodeOptions,
    /// Most bytes of uploaded pictures that runs may hold in memory at once, server-wide.
    pub media_bytes_in_flight: u64,
    /// Collections created from now on are searched exactly (every item compared) while they
    /// hold at most this many items, and through their graph above it.
    pub exact_below: usize,
    /// Longest an upload PUT may go without a byte arriving (408 after it).
    pub upload_idle_timeout: Duration,
    /// Longest a JSON request body may take to arrive in full (408 after it).
    pub body_read_timeout: Duration,
    /// Whether `/console/` serves the web console.
    pub console: bool,
    /// What one filter may list (values in all, and each value's length).
    pub filter_limits: aimp_store::FilterLimits,
    /// Least average rate of an upload PUT, in bytes per second: a PUT must end within the
    /// idle timeout plus `size_bytes / upload_min_rate`, and before its URL expires.
    pub upload_min_rate: u64,
    /// Most upload PUTs one workspace may stream at once (429 past it).
    pub uploads_per_workspace: usize,
    /// Store calls that read (searches, listings, delete-by-filter) one workspace runs at
    /// once; more wait.
    pub store_calls_per_workspace: usize,
    /// Store calls of one workspace that may wait for a place (429 past it).
    pub store_queue_per_workspace: usize,
    /// Most vector comparisons one recall check may make (its queries x the scope's items).
    pub recall_max_work: u64,
    /// Most bytes that making thumbnails may hold at once, server-wide, apart from the runs'
    /// [`ServerConfig::media_bytes_in_flight`].
    pub thumbnail_memory: u64,
}

impl ServerConfig {
    /// The defaults API.md states (20 MiB uploads, 15-minute URLs, 40-megapixel pictures).
    pub fn new(body_limit: usize, rate_limit_per_minute: u32, admin_token: Option<String>) -> Self {
        ServerConfig {
            body_limit,
            rate_limit_per_minute,
            admin_token,
            max_upload_bytes: 20 * 1024 * 1024,
            upload_ttl: Duration::from_secs(15 * 60),
            public_url: None,
            decode: DecodeOptions::default(),
            media_bytes_in_flight: 512 * 1024 * 1024,
            exact_below: 10_000,
            upload_idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            console: true,
            filter_limits: aimp_store::FilterLimits::default(),
            thumbnail_memory: 128 * 1024 * 1024,
            upload_min_rate: 32 * 1024,
            uploads_per_workspace: 16,
            store_calls_per_workspace: std::thread::available_parallelism().map_or(2, |n| n.get()),
            store_queue_per_workspace: 64,
            recall_max_work: 50_000_000,
        }
    }
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
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("upload_ttl", &self.upload_ttl)
            .field("public_url", &self.public_url)
            .field("decode", &self.decode)
            .field("media_bytes_in_flight", &self.media_bytes_in_flight)
            .field("exact_below", &self.exact_below)
            .field("upload_idle_timeout", &self.upload_idle_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("console", &self.console)
            .field("filter_limits", &self.filter_limits)
            .field("thumbnail_memory", &self.thumbnail_memory)
            .field("upload_min_rate", &self.upload_min_rate)
            .field("uploads_per_workspace", &self.uploads_per_workspace)
            .field("store_calls_per_workspace", &self.store_calls_per_workspace)
            .field("store_queue_per_workspace", &self.store_queue_per_workspace)
            .field("recall_max_work", &self.recall_max_work)
            .finish()
    }
}

/// `State<AppState>`: cheap to clone, all `Arc`s.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    /// Everything acknowledged: keys, uploads, media records, collections and items.
    pub store: Arc<dyn Store>,
    /// Thumbnails cached on this gateway, and the signatures of upload URLs.
    pub media: Arc<MediaFiles>,
    pub registry: Arc<Registry>,
    pub contracts: Arc<Contracts>,
    pub models: Arc<ModelSet>,
    pub metrics: Arc<Metrics>,
    pub(crate) limiter: Arc<RateLimiter>,
    /// Permits of one KiB each for picture bytes runs hold in memory.
    pub(crate) media_budget: Arc<tokio::sync::Semaphore>,
    /// KiB of that budget each workspace's runs hold: at most half of it, so one workspace
    /// cannot hold all of it while another's picture run waits.
    pub(crate) media_shares: Arc<WorkspaceSlots>,
    /// Permits of one KiB each for the memory thumbnails being made hold: a budget of their
    /// own, so a thumbnail waiting for room never holds up a run (the semaphore is FIFO).
    pub(crate) thumbnail_budget: Arc<tokio::sync::Semaphore>,
    /// Upload PUTs streaming, per workspace.
    pub(crate) upload_slots: Arc<WorkspaceSlots>,
    /// Store calls running and waiting, per workspace.
    pub(crate) store_turns: Arc<WorkspaceGate>,
    /// Recall checks running, per workspace (one at a time each).
    pub(crate) recall_turns: Arc<WorkspaceSlots>,
    /// Recall checks running, server-wide.
    pub(crate) recall_places: Arc<tokio::sync::Semaphore>,
}

/// Recall checks that run at once, server-wide: each is an exact scan per query, and a
/// machine serving searches keeps its other cores for them.
const RECALL_CHECKS_AT_ONCE: usize = 1;

impl AppState {
    /// KiB of the runs' picture budget free now.
    pub fn media_budget_available(&self) -> usize {
        self.media_budget.available_permits()
    }

    /// The state over `store`, with this gateway's thumbnails under `data_dir`. Reads the
    /// store's upload signing secret: it blocks, so call it off the async threads.
    pub fn new(
        config: ServerConfig,
        store: Arc<dyn Store>,
        data_dir: &std::path::Path,
        registry: Arc<Registry>,
        models: Arc<ModelSet>,
    ) -> Result<AppState, String> {
        let contracts = Contracts::compile(registry.clone())?;
        let secret = store
            .upload_secret()
            .map_err(|e| format!("the upload signing secret: {e}"))?;
        let media = MediaFiles::new(data_dir, secret);
        Ok(AppState {
            media: Arc::new(media),
            limiter: Arc::new(RateLimiter::new(config.rate_limit_per_minute)),
            media_budget: Arc::new(tokio::sync::Semaphore::new(
                config.media_bytes_in_flight.div_ceil(1024) as usize,
            )),
            media_shares: WorkspaceSlots::new(
                (config.media_bytes_in_flight.div_ceil(1024) as usize / 2).max(1),
            ),
            thumbnail_budget: Arc::new(tokio::sync::Semaphore::new(
                config.thumbnail_memory.div_ceil(1024) as usize,
            )),
            upload_slots: WorkspaceSlots::new(config.uploads_per_workspace),
            store_turns: WorkspaceGate::new(
                config.store_calls_per_workspace,
                config.store_queue_per_workspace,
            ),
            recall_turns: WorkspaceSlots::new(1),
            recall_places: Arc::new(tokio::sync::Semaphore::new(RECALL_CHECKS_AT_ONCE)),
            config: Arc::new(config),
            store,
            registry,
            contracts: Arc::new(contracts),
            models,
            metrics: Arc::new(Metrics::new()),
        })
    }
}
