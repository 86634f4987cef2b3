//! `aimp snapshot create --out FILE` and `aimp snapshot restore FILE`: a store's archive
//! ([`aimp_store::snapshot`]) written from one instant of it, and restored so that the data
//! folder is either the old one or the whole restored one, never a mixture.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::settings::StoreSettings;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Write the store's archive (one instant of it: keys, media and their bytes,
    /// collections and items) to FILE; prints its manifest's counts and its SHA-256. Reads
    /// while writes go on (a PostgreSQL store), or a stopped embedded store.
    Create {
        /// The archive to write (replaced only once it is complete).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore an archive into the store: verified whole first; into the embedded store it is
    /// restored into a folder beside the data folder and swapped in with a rename, so on any
    /// failure the current data is untouched. Stop the gateway first.
    Restore {
        /// The archive to restore.
        file: PathBuf,
        /// Replace a data folder that holds data (it stays in place until the swap).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(settings: &StoreSettings, cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create { out } => create(settings, &out),
        SnapshotCommand::Restore { file, force } => restore(settings, &file, force),
    }
}

fn create(settings: &StoreSettings, out: &Path) -> anyhow::Result<()> {
    let store = super::open_store(settings)?;
    let partial = out.with_extension("partial");
    let written = (|| -> anyhow::Result<_> {
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut writer = BufWriter::new(file);
        let mut view = store.view()?;
        let written =
            aimp_store::snapshot::write(&mut *view, &mut writer, env!("CARGO_PKG_VERSION"))?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(written)
    })();
    let (manifest, sha256) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e.context(format!("the snapshot {} was not written", out.display())));
        }
    };
    fs::rename(&partial, out).with_context(|| format!("cannot move it to {}", out.display()))?;
    let size = fs::metadata(out)?.len();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "file": out,
            "size_bytes": size,
            "sha256": sha256,
            "format_version": manifest.format_version,
            "created_at": manifest.created_at,
            "keys": manifest.keys,
            "media": manifest.media,
            "collections": manifest.collections.iter().map(|c| json!({
                "workspace": c.key.workspace, "model": c.key.model,
                "collection": c.key.collection, "scope": c.key.scope,
                "count": c.count, "dimensions": c.dim,
            })).collect::<Vec<_>>(),
        }))?
    );
    Ok(())
}

fn restore(settings: &StoreSettings, file: &Path, force: bool) -> anyhow::Result<()> {
    let open = || File::open(file).map(BufReader::new);
    open().with_context(|| format!("cannot open {}", file.display()))?;
    if settings.store.is_some() {
        // PostgreSQL: into an empty database only (the restore checks), no swap.
        let store = super::open_store(settings)?;
        let manifest = aimp_store::snapshot::restore(open, &*store)
            .with_context(|| format!("{} was not restored", file.display()))?;
        return report(file, &manifest);
    }
    let data = settings.data_dir.clone();
    let holds_data = data.join(aimp_store_embedded::DB_FILE).exists();
    if holds_data && !force {
        bail!(
            "{} holds a store already; pass --force to replace it (it stays in place until the \
             restored one is complete)",
            data.display()
        );
    }
    // Verified and restored beside the data folder, then swapped in with renames.
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let restored = (|| -> anyhow::Result<_> {
        let store = super::open_embedded(&staging, settings)?;
        let manifest = aimp_store::snapshot::restore(open, &*store)?;
        store.checkpoint()?;
        drop(store);
        Ok(manifest)
    })();
    let manifest = match restored {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e.context(format!(
                "{} was not restored; {} is untouched",
                file.display(),
                data.display()
            )));
        }
    };
    let old = parent.join(format!(".{name}.replaced-{}", std::process::id()));
    if data.exists() {
        fs::rename(&data, &old).with_context(|| format!("moving {} aside", data.display()))?;
    }
    if let Err(e) = fs::rename(&staging, &data) {
        let _ = fs::rename(&old, &data);
        return Err(anyhow::Error::new(e).context("swapping the restored store in"));
    }
    sync_dir(parent);
    let _ = fs::remove_dir_all(&old);
    report(file, &manifest)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn report(file: &Path, manifest: &aimp_store::snapshot::Manifest) -> anyhow::Result<()> {
    let items: u64 = manifest.collections.iter().map(|c| c.count).sum();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "restored": file,
            "format_version": manifest.format_version,
            "written_by": manifest.aimp_version,
            "created_at": manifest.created_at,
            "keys": manifest.keys,
            "media": manifest.media,
            "collections": manifest.collections.len(),
            "items": items,
        }))?
    );
    std::io::stdout().flush()?;
    Ok(())
}
