//! API keys: how they are made, hashed and shown. Shared by the HTTP API and the CLI.

use aimp_store::{ApiKeyRecord, KeyHash, Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Every generated key starts with this.
pub const KEY_PREFIX: &str = "aimp_";
/// How many characters of a key are kept to tell keys apart.
const SHOWN_PREFIX_LEN: usize = 12;
/// The workspace of a key created without one.
pub const DEFAULT_WORKSPACE: &str = "default";

/// SHA-256 of a key. Keys carry 240 random bits, so a fast hash is enough: there is nothing
/// to brute-force.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// `aimp_` + 40 URL-safe characters (30 random bytes).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 30];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

fn record_for(key: &str, name: &str, workspace: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: new_id(),
        name: name.to_string(),
        workspace: workspace.to_string(),
        prefix: key.chars().take(SHOWN_PREFIX_LEN).collect(),
        hash: hash_key(key),
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    }
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub workspace: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The API's timestamp format: RFC 3339, whole seconds, `Z`.
pub(crate) fn timestamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl From<&ApiKeyRecord> for KeyView {
    fn from(r: &ApiKeyRecord) -> KeyView {
        KeyView {
            id: r.id.clone(),
            name: r.name.clone(),
            workspace: r.workspace.clone(),
            prefix: r.prefix.clone(),
            created_at: timestamp(r.created_at),
            last_used_at: r.last_used_at.map(timestamp),
            revoked_at: r.revoked_at.map(timestamp),
        }
    }
}

/// A newly created key: the only time the full key is shown.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    pub key: String,
}

/// Creates and stores a new key.
pub fn create_key(
    store: &dyn Store,
    name: &str,
    workspace: &str,
) -> Result<CreatedKey, StoreError> {
    let key = generate_key();
    let record = record_for(&key, name, workspace);
    store.insert_key(&record)?;
    Ok(CreatedKey {
        view: KeyView::from(&record),
        key,
    })
}

/// The outcome of registering the `AIMP_API_KEY` of the environment.
#[derive(Debug, PartialEq, Eq)]
pub enum EnvKey {
    Registered {
        id: String,
    },
    AlreadyRegistered {
        id: String,
    },
    /// The key was revoked earlier; it stays revoked.
    Revoked {
        id: String,
    },
}

/// Fewest characters of a secret given from outside (an operator's API key, the admin
/// token): with the 12 characters of a key's shown prefix known, 20 are left unknown.
pub const MIN_SECRET_CHARS: usize = 32;

/// Checks a secret given from outside, named `name` in the message: printable ASCII without
/// spaces, 32 to 256 characters. An empty value is refused too (unset the variable instead).
fn check_secret(name: &str, secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err(format!(
            "{name} is set but empty; unset it, or set it to {MIN_SECRET_CHARS} or more random characters"
        ));
    }
    if !(MIN_SECRET_CHARS..=256).contains(&secret.len()) {
        return Err(format!(
            "{name} must be {MIN_SECRET_CHARS} to 256 characters long (it has {}); \
             e.g. aimp_$(head -c 30 /dev/urandom | base64 | tr '+/' '-_')",
            secret.len()
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{name} must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Checks that an API key given from outside (`AIMP_API_KEY`) is usable.
pub fn check_external_key(key: &str) -> Result<(), String> {
    check_secret("AIMP_API_KEY", key)
}

/// Checks the operator's admin token (`AIMP_ADMIN_TOKEN`), when one is set.
pub fn check_admin_token(token: &str) -> Result<(), String> {
    check_secret("AIMP_ADMIN_TOKEN", token)
}

/// Registers a key supplied by the operator (the `AIMP_API_KEY` that the API page's snippets
/// send), so client and server can share one variable. A revoked key is not revived.
pub fn register_env_key(
    store: &dyn Store,
    key: &str,
    workspace: &str,
) -> Result<EnvKey, StoreError> {
    if let Some(existing) = store.find_key_by_hash(&hash_key(key))? {
        return Ok(if existing.is_revoked() {
            EnvKey::Revoked { id: existing.id }
        } else {
            EnvKey::AlreadyRegistered { id: existing.id }
        });
    }
    let record = record_for(key, "AIMP_API_KEY", workspace);
    store.insert_key(&record)?;
    Ok(EnvKey::Registered { id: record.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("aimp_"));
        assert_eq!(a.len(), 5 + 40);
        assert!(
            a[5..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn only_the_hash_is_stored_and_env_key_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = aimp_store_embedded::EmbeddedStore::open(
            dir.path(),
            aimp_store_embedded::DEFAULT_CACHE_BYTES,
        )
        .expect("open");
        let created = create_key(&store, "ci", "default").expect("create");
        let record = store.get_key(&created.view.id).expect("get");
        assert_eq!(record.hash, hash_key(&created.key));
        assert_eq!(record.prefix, created.key[..12]);
        let raw = std::fs::read(store.redb().path()).expect("read db");
        assert!(
            !raw.windows(created.key.len())
                .any(|w| w == created.key.as_bytes()),
            "the key itself must never be written"
        );

        let env = "aimp_env_key_for_the_api_page_snippets";
        let first = register_env_key(&store, env, "default").expect("register");
        let EnvKey::Registered { id } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            register_env_key(&store, env, "default").expect("again"),
            EnvKey::AlreadyRegistered { id: id.clone() }
        );
        store.revoke_key(&id, Utc::now()).expect("revoke");
        assert_eq!(
            register_env_key(&store, env, "default").expect("revoked"),
            EnvKey::Revoked { id }
        );
    }

    #[test]
    fn external_secrets_are_checked() {
        for check in [check_external_key, check_admin_token] {
            for bad in [
                "",
                "short",
                "aimp_0123456789abcdef",
                "has a space in the middle of it, see?!",
            ] {
                let err = check(bad).expect_err(bad);
                assert!(err.starts_with("AIMP_"), "{err}");
            }
            assert!(check(&"x".repeat(257)).is_err());
            assert!(check("aimp_0123456789abcdefghijklmnopqrstuv").is_ok());
        }
        assert!(check_admin_token("").expect_err("empty").contains("empty"));
        // A shown prefix leaves at least 20 characters of any accepted secret unknown.
        const { assert!(MIN_SECRET_CHARS - SHOWN_PREFIX_LEN >= 20) };
    }
}
