//! API key records. Only a hash of each key is stored; the key itself is never written.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// SHA-256 of the full key.
pub type KeyHash = [u8; 32];

/// id → JSON-encoded [`ApiKeyRecord`].
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// key hash → id; the lookup path of every authenticated request.
const KEY_HASHES: TableDefinition<&[u8; 32], &str> = TableDefinition::new("api_key_hashes");

/// One API key as stored: everything but the key itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub workspace: String,
    /// The first 12 characters of the key, so an operator can tell keys apart.
    pub prefix: String,
    #[serde(with = "hex_hash")]
    pub hash: KeyHash,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(D::Error::custom("key hash must be 64 hex digits"));
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(D::Error::custom)?;
        }
        Ok(out)
    }
}

pub(crate) fn init_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(KEYS)?;
    txn.open_table(KEY_HASHES)?;
    Ok(())
}

fn decode(id: &str, bytes: &[u8]) -> Result<ApiKeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: format!("api_keys/{id}"),
        source,
    })
}

fn encode(record: &ApiKeyRecord) -> Vec<u8> {
    // Serialising a struct of strings and dates cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

impl Store {
    /// Stores a new key record; refuses a hash that is already registered.
    pub fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut hashes = txn.open_table(KEY_HASHES)?;
            if let Some(existing) = hashes.get(&record.hash)? {
                return Err(StoreError::KeyExists {
                    id: existing.value().to_string(),
                });
            }
            hashes.insert(&record.hash, record.id.as_str())?;
            let mut keys = txn.open_table(KEYS)?;
            keys.insert(record.id.as_str(), encode(record).as_slice())?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// The record whose hash is `hash`, revoked or not.
    pub fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let txn = self.begin_read()?;
        let hashes = txn.open_table(KEY_HASHES)?;
        let Some(id) = hashes.get(hash)? else {
            return Ok(None);
        };
        let id = id.value().to_string();
        let keys = txn.open_table(KEYS)?;
        match keys.get(id.as_str())? {
            Some(bytes) => decode(&id, bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The record with this id.
    pub fn get_key(&self, id: &str) -> Result<ApiKeyRecord, StoreError> {
        let txn = self.begin_read()?;
        let keys = txn.open_table(KEYS)?;
        match keys.get(id)? {
            Some(bytes) => decode(id, bytes.value()),
            None => Err(StoreError::KeyNotFound { id: id.to_string() }),
        }
    }

    /// Every key record, oldest first.
    pub fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let txn = self.begin_read()?;
        let keys = txn.open_table(KEYS)?;
        let mut out = Vec::new();
        for entry in keys.iter()? {
            let (id, bytes) = entry?;
            out.push(decode(id.value(), bytes.value())?);
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Renames a key; returns the updated record.
    pub fn rename_key(&self, id: &str, name: &str) -> Result<ApiKeyRecord, StoreError> {
        self.update_key(id, |r| r.name = name.to_string())
    }

    /// Revokes a key (idempotent: the first revocation time is kept). The record stays.
    pub fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        self.update_key(id, |r| {
            r.revoked_at.get_or_insert(at);
        })
    }

    /// Records that a key was used.
    pub fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, StoreError> {
        self.update_key(id, |r| r.last_used_at = Some(at))
    }

    fn update_key(
        &self,
        id: &str,
        change: impl FnOnce(&mut ApiKeyRecord),
    ) -> Result<ApiKeyRecord, StoreError> {
        let txn = self.begin_write()?;
        let record = {
            let mut keys = txn.open_table(KEYS)?;
            let mut record = match keys.get(id)? {
                Some(bytes) => decode(id, bytes.value())?,
                None => return Err(StoreError::KeyNotFound { id: id.to_string() }),
            };
            change(&mut record);
            keys.insert(id, encode(&record).as_slice())?;
            record
        };
        self.commit(txn)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, hash_byte: u8) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.to_string(),
            name: "ci".to_string(),
            workspace: "default".to_string(),
            prefix: "aimp_abcdefg".to_string(),
            hash: [hash_byte; 32],
            created_at: Utc::now(),
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn keys_and_revocations_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.insert_key(&record("key_a", 1)).expect("insert a");
            store.insert_key(&record("key_b", 2)).expect("insert b");
            store.revoke_key("key_b", Utc::now()).expect("revoke");
            store.rename_key("key_a", "renamed").expect("rename");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let a = store.find_key_by_hash(&[1; 32]).expect("find").expect("a");
        assert_eq!(a.name, "renamed");
        assert!(!a.is_revoked());
        let b = store.find_key_by_hash(&[2; 32]).expect("find").expect("b");
        assert!(b.is_revoked());
        assert_eq!(store.list_keys().expect("list").len(), 2);
        assert!(store.find_key_by_hash(&[3; 32]).expect("find").is_none());
    }

    #[test]
    fn duplicate_hash_is_refused_and_unknown_id_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.insert_key(&record("key_a", 1)).expect("insert");
        assert!(matches!(
            store.insert_key(&record("key_c", 1)),
            Err(StoreError::KeyExists { id }) if id == "key_a"
        ));
        assert!(matches!(
            store.revoke_key("nope", Utc::now()),
            Err(StoreError::KeyNotFound { .. })
        ));
    }

    #[test]
    fn revocation_keeps_first_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.insert_key(&record("key_a", 1)).expect("insert");
        let first = store.revoke_key("key_a", Utc::now()).expect("revoke");
        let later = Utc::now() + chrono::Duration::seconds(60);
        let second = store.revoke_key("key_a", later).expect("revoke again");
        assert_eq!(first.revoked_at, second.revoked_at);
    }
}
