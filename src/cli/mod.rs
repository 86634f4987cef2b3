//! The subcommands.

pub mod bench;
pub mod bench_filter;
pub mod client;
pub mod index;
pub mod index_texts;
pub mod keys;
pub mod models;
pub mod search;
pub mod serve;
pub mod sidecar;

use anyhow::Context;

use crate::settings::Settings;

/// Opens the store of the data directory, explaining the usual reason it is locked.
pub fn open_store(settings: &Settings) -> anyhow::Result<aimp_index::Store> {
    let cache =
        usize::try_from(settings.store_cache_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    aimp_index::Store::open_with_cache(&settings.data_dir, cache).with_context(|| {
        format!(
            "cannot open the store in {} (if `aimp serve` is running on it, stop it first or use the HTTP API)",
            settings.data_dir.display()
        )
    })
}

/// The registry of built-in and folder manifests, at the precisions `--precision` sets.
pub fn registry(settings: &Settings) -> anyhow::Result<aimp_embed::Registry> {
    let mut registry =
        aimp_embed::Registry::load(Some(&settings.manifests_dir), &settings.models_dir)?;
    for (slug, precision) in &settings.precision {
        registry
            .set_precision(slug, *precision)
            .with_context(|| format!("--precision {slug}={precision}"))?;
    }
    Ok(registry)
}

/// A client of the running gateway: `--gateway-url` (else the `--addr` it listens on) and
/// the API key of `AIMP_API_KEY` / `--api-key`.
pub fn client(settings: &Settings) -> anyhow::Result<client::Client> {
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
