//! The subcommands.

pub mod bench;
pub mod bench_filter;
pub mod bench_gateway;
pub mod client;
pub mod index;
pub mod index_texts;
pub mod keys;
pub mod models;
pub mod search;
pub mod serve;
pub mod sidecar;
pub mod snapshot;
pub mod store;

use std::sync::Arc;

use aimp_store::Store;
use aimp_store_embedded::EmbeddedStore;
use anyhow::Context;

use crate::settings::{ClientSettings, ModelSettings, StoreSettings};

/// Opens the store `--store` names: PostgreSQL for a `postgres://` URL, otherwise the
/// embedded store of the data directory (explaining the usual reason it is locked).
pub fn open_store(settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    match &settings.store {
        Some(url) if !is_postgres_url(url) => anyhow::bail!(
            "--store (AIMP_STORE) must be a postgres:// URL, or unset for the embedded store \
             under --data-dir"
        ),
        Some(url) => open_postgres(url, settings),
        None => open_embedded(&settings.data_dir, settings),
    }
}

pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The PostgreSQL store at `url`, its pool sized by `--store-connections`.
pub fn open_postgres(url: &str, settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    let options = aimp_store_postgres::PoolOptions {
        max_connections: settings.store_connections,
        ..aimp_store_postgres::PoolOptions::default()
    };
    let store = aimp_store_postgres::PostgresStore::open(url, options).with_context(|| {
        format!(
            "cannot open the PostgreSQL store at {}",
            crate::settings::redact_password(url)
        )
    })?;
    Ok(Arc::new(store))
}

/// The embedded store in `dir` (made there when it has none), its page cache sized by
/// `--store-cache-mb`.
pub fn open_embedded(
    dir: &std::path::Path,
    settings: &StoreSettings,
) -> anyhow::Result<Arc<dyn Store>> {
    let cache =
        usize::try_from(settings.store_cache_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    let store = EmbeddedStore::open(dir, cache).with_context(|| {
        format!(
            "cannot open the store in {} (if `aimp serve` is running on it, stop it first or use the HTTP API)",
            dir.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// The registry of built-in and folder manifests, at the precisions `--precision` sets.
pub fn registry(settings: &ModelSettings) -> anyhow::Result<aimp_embed::Registry> {
    let mut registry =
        aimp_embed::Registry::load(Some(&settings.manifests_dir), &settings.models_dir)?;
    for (slug, precision) in &settings.precision {
        registry
            .set_precision(slug, *precision)
            .with_context(|| format!("--precision {slug}={precision}"))?;
    }
    Ok(registry)
}

/// A client of the running gateway: `--gateway-url` (else the `AIMP_ADDR` it listens on) and
/// the API key of `AIMP_API_KEY` / `--api-key`.
pub fn client(settings: &ClientSettings) -> anyhow::Result<client::Client> {
    let base = settings
        .gateway_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.addr));
    let Some(key) = &settings.api_key else {
        anyhow::bail!(
            "no API key: set AIMP_API_KEY (or --api-key) to a key of the gateway at {base}"
        );
    };
    Ok(client::Client::new(&base, key))
}

/// A failed command's message for stderr: the error and its causes on one line
/// (`error: cannot open the store in ./data: …`). `RUST_BACKTRACE=1` asks for the whole
/// chain, one cause a line, with the backtrace.
pub fn one_line(e: &anyhow::Error) -> String {
    let asked = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    if asked {
        return format!("error: {e:?}");
    }
    let text = format!("{e:#}");
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("error: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_and_its_causes_are_one_line() {
        let e = anyhow::anyhow!("permission denied\n(os error 13)")
            .context("cannot open the store in ./data (stop `aimp serve` first)");
        let line = one_line(&e);
        if std::env::var_os("RUST_BACKTRACE").is_none_or(|v| v == "0") {
            assert_eq!(
                line,
                "error: cannot open the store in ./data (stop `aimp serve` first): \
                 permission denied; (os error 13)"
            );
        }
        assert!(line.starts_with("error: cannot open the store"));
    }
}
