//! `aimp serve`: open the store, register keys, load models in the background, serve until
//! SIGINT/SIGTERM, then finish in-flight requests and close the store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use aimp_embed::{DecodeOptions, EmbedError, Registry, ensure_installed, load_encoder};
use aimp_server::keys::{self, DEFAULT_WORKSPACE, EnvKey};
use aimp_server::{AppState, ModelSet, ModelState, ServerConfig};

use crate::settings::ServeSettings;

pub fn run(settings: ServeSettings) -> anyhow::Result<()> {
    tracing::info!(?settings, "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(settings));
    // A model still installing in the background must not hold the process open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// A secret given as `--NAME` (or its variable) or in `--NAME-file`, not both; a flag on
/// the command line is visible to every user in `ps`, which a warning says.
fn secret(
    name: &str,
    given: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    let flag = format!("--{name}");
    let on_command_line = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if on_command_line {
        eprintln!(
            "warning: {flag} on the command line shows in `ps` to every user of this machine; \
             use AIMP_{} or {flag}-file",
            name.replace('-', "_").to_uppercase()
        );
    }
    match (given, file) {
        (Some(_), Some(_)) => anyhow::bail!("give {flag} or {flag}-file, not both"),
        (given, None) => Ok(given),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{flag}-file {}", path.display()))?;
            let value = text.trim_end_matches(['\r', '\n']).to_string();
            anyhow::ensure!(!value.is_empty(), "{flag}-file {} is empty", path.display());
            Ok(Some(value))
        }
    }
}

async fn serve(mut settings: ServeSettings) -> anyhow::Result<()> {
    let gateway = &mut settings.gateway;
    gateway.admin_token = secret(
        "admin-token",
        gateway.admin_token.take(),
        gateway.admin_token_file.as_deref(),
    )?;
    gateway.api_key = secret(
        "api-key",
        gateway.api_key.take(),
        gateway.api_key_file.as_deref(),
    )?;
    if let Some(token) = &settings.gateway.admin_token {
        keys::check_admin_token(token).map_err(anyhow::Error::msg)?;
    }
    // Store calls block (a database client runs a runtime of its own): never on the async
    // threads.
    let store = {
        let (store_settings, api_key) = (settings.store.clone(), settings.gateway.api_key.clone());
        tokio::task::spawn_blocking(move || {
            let store = super::open_store(&store_settings)?;
            if let Some(key) = &api_key {
                register_env_key(&*store, key)?;
            }
            anyhow::Ok(store)
        })
        .await??
    };
    let registry = Arc::new(super::registry(&settings.registry)?);
    for slug in &settings.gateway.models {
        registry
            .get(slug)
            .with_context(|| format!("--models names {slug}"))?;
    }
    let models = Arc::new(ModelSet::default());
    let to_load = models_to_load(&settings, &registry);
    for slug in &to_load {
        models.set(slug, ModelState::Loading);
    }
    let mut config = ServerConfig::new(
        settings.gateway.body_limit,
        settings.gateway.rate_limit,
        settings.gateway.admin_token.clone(),
    );
    config.max_upload_bytes = settings.gateway.max_upload_bytes;
    config.upload_ttl = Duration::from_secs(settings.gateway.upload_ttl);
    config.media_bytes_in_flight = settings.gateway.media_in_flight;
    config.exact_below = settings.gateway.exact_below;
    config.upload_idle_timeout = Duration::from_secs(settings.gateway.upload_idle_timeout);
    config.body_read_timeout = Duration::from_secs(settings.gateway.body_read_timeout);
    config.console = settings.gateway.console;
    config.thumbnail_memory = settings.gateway.thumbnail_memory;
    config.upload_min_rate = settings.gateway.upload_min_rate;
    config.recall_max_work = settings.gateway.recall_max_work;
    config.uploads_per_workspace = settings.gateway.uploads_per_workspace as usize;
    if settings.gateway.store_calls_per_workspace > 0 {
        config.store_calls_per_workspace = settings.gateway.store_calls_per_workspace as usize;
    }
    config.store_queue_per_workspace = settings.gateway.store_queue_per_workspace as usize;
    config.filter_limits = aimp_store::FilterLimits {
        values: settings.gateway.filter_max_values as usize,
        value_bytes: settings.gateway.filter_max_value_bytes as usize,
    };
    config.public_url = settings.gateway.public_url.clone();
    config.decode = DecodeOptions {
        max_pixels: settings.gateway.max_image_pixels,
        apply_orientation: true,
    };
    // Reads the store's upload signing secret: off the async threads too.
    let state = {
        let (store, data_dir) = (store.clone(), settings.store.data_dir.clone());
        let (registry, models) = (registry.clone(), models.clone());
        tokio::task::spawn_blocking(move || {
            AppState::new(config, store, &data_dir, registry, models)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("cannot start the gateway: {e}"))?
    };
    let sweeper = tokio::spawn(aimp_server::sweep_uploads_forever(
        state.clone(),
        Duration::from_secs(60),
    ));
    let saver = (settings.gateway.graph_save_interval > 0).then(|| {
        tokio::spawn(save_graphs_every(
            store.clone(),
            Duration::from_secs(settings.gateway.graph_save_interval),
        ))
    });
    let app = aimp_server::router(state);

    let listener = tokio::net::TcpListener::bind(settings.gateway.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.gateway.addr))?;
    let addr = listener.local_addr()?;
    let listener = aimp_server::LimitedListener::new(listener, settings.gateway.max_connections)
        .with_write_timeout(Duration::from_secs(settings.gateway.write_timeout));
    // One plain line on stdout, for people and for the scripts that start us on port 0.
    println!("aimp listening on http://{addr}");
    tracing::info!(%addr, store = store.kind(), "listening");

    let loader = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || load_models(&settings, &registry, &models, &to_load))
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let header_read_timeout = Duration::from_secs(settings.gateway.header_read_timeout);
    let server = tokio::spawn(aimp_server::serve(listener, app, header_read_timeout, {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(
        Duration::from_secs(settings.gateway.shutdown_timeout),
        server,
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(
            seconds = settings.gateway.shutdown_timeout,
            "in-flight requests did not finish in time"
        ),
    }
    loader.abort();
    sweeper.abort();
    if let Some(saver) = saver {
        saver.abort();
    }
    // Saved graphs make the next start fast; one that is not saved is rebuilt from redb.
    match tokio::task::spawn_blocking(move || store.checkpoint()).await {
        Ok(Ok(n)) => tracing::info!(graphs = n, "saved the vector graphs"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not save the vector graphs; they will be rebuilt from the store")
        }
        Err(e) => tracing::warn!(error = %e, "graph saving task failed"),
    }
    // The router (and with it the last handle on the store) is gone: redb closes here.
    tracing::info!("stopped");
    Ok(())
}

/// Saves the graphs that changed every `every`, so a crash costs at most that much catching
/// up at the next start instead of a rebuild from the store; writes and searches go on.
async fn save_graphs_every(store: Arc<dyn aimp_store::Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(graphs = n, "saved the vector graphs"),
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic graph save failed"),
            Err(e) => tracing::warn!(error = %e, "periodic graph save task failed"),
        }
    }
}

fn register_env_key(store: &dyn aimp_store::Store, key: &str) -> anyhow::Result<()> {
    keys::check_external_key(key).map_err(anyhow::Error::msg)?;
    match keys::register_env_key(store, key, DEFAULT_WORKSPACE)? {
        EnvKey::Registered { id } => tracing::info!(key_id = %id, "registered AIMP_API_KEY"),
        EnvKey::AlreadyRegistered { id } => {
            tracing::info!(key_id = %id, "AIMP_API_KEY already registered")
        }
        EnvKey::Revoked { id } => tracing::warn!(
            key_id = %id,
            "AIMP_API_KEY was revoked earlier and stays revoked"
        ),
    }
    Ok(())
}

/// The default models, then every other installed one; never a model without an encoder
/// (`vectors`), which has nothing to load and is always ready.
fn models_to_load(settings: &ServeSettings, registry: &Registry) -> Vec<String> {
    let mut slugs = settings.gateway.models.clone();
    for m in registry.manifests() {
        if !slugs.contains(&m.slug) && registry.status(&m.slug).installed {
            slugs.push(m.slug.clone());
        }
    }
    slugs.retain(|slug| {
        registry
            .get(slug)
            .is_ok_and(|m| m.architecture.has_encoder())
    });
    slugs
}

/// Installs (unless offline) and loads each model; one failing model never stops the others.
fn load_models(settings: &ServeSettings, registry: &Registry, models: &ModelSet, slugs: &[String]) {
    let options = settings.registry.install_options();
    for slug in slugs {
        let result = registry.get(slug).and_then(|manifest| {
            let installed = registry.status(slug).installed;
            if !installed {
                if settings.registry.offline {
                    return Err(EmbedError::NotInstalled {
                        slug: slug.clone(),
                        install_command: format!("aimp models import {slug} --from DIR"),
                    });
                }
                tracing::info!(model = %slug, "installing on first start");
                ensure_installed(manifest, &settings.registry.models_dir, &options)?;
            }
            load_encoder(
                manifest,
                &settings.registry.models_dir,
                settings.encoders.device,
                settings.encoders.worker_options(),
            )
        });
        match result {
            Ok(handle) => {
                let status = registry.status(slug);
                if !status.verified {
                    tracing::warn!(
                        model = %slug,
                        revision = status.revision.as_deref().unwrap_or(""),
                        "serving an UNVERIFIED checkpoint (installed with --unverified); its files are not the manifest's pinned ones"
                    );
                }
                tracing::info!(model = %slug, dimensions = handle.dimensions(), "model ready");
                models.set(slug, ModelState::Ready(handle));
            }
            Err(e) => {
                tracing::error!(model = %slug, error = %e, "model unavailable");
                models.set(slug, ModelState::Failed(e.to_string()));
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
