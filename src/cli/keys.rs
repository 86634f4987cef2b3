//! `aimp keys create|list|revoke`.

use anyhow::Context;
use clap::Subcommand;

use aimp_server::keys::{self, DEFAULT_WORKSPACE, KeyView};

use crate::settings::StoreSettings;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// A name to tell the key apart.
        #[arg(long)]
        name: String,
        /// The workspace everything the key does belongs to.
        #[arg(long, default_value = DEFAULT_WORKSPACE)]
        workspace: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id; it stops working at once and its record stays.
    Revoke { id: String },
}

pub fn run(settings: &StoreSettings, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = super::open_store(settings)?;
    match cmd {
        KeysCommand::Create { name, workspace } => {
            anyhow::ensure!(
                aimp_server::valid_scope(&workspace),
                "--workspace must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$"
            );
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let created = keys::create_key(&*store, name.trim(), &workspace)?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("Store this key now: it is not shown again.");
        }
        KeysCommand::List => {
            let views: Vec<KeyView> = store.list_keys()?.iter().map(KeyView::from).collect();
            println!("{}", serde_json::to_string_pretty(&views)?);
        }
        KeysCommand::Revoke { id } => {
            let record = store
                .revoke_key(&id, chrono::Utc::now())
                .with_context(|| format!("cannot revoke {id}"))?;
            println!("{}", serde_json::to_string_pretty(&KeyView::from(&record))?);
        }
    }
    Ok(())
}
