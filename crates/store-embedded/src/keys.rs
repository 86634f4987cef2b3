//! API key records. Only a hash of each key is stored; the key itself is never written.

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use aimp_store::StoreError;
pub use aimp_store::{ApiKeyRecord, KeyHash};

use crate::{Error, Redb};

/// id → JSON-encoded [`ApiKeyRecord`].
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// key hash → id; the lookup path of every authenticated request.
const KEY_HASHES: TableDefinition<&[u8; 32], &str> = TableDefinition::new("api_key_hashes");

pub(crate) fn init_tables(txn: &WriteTransaction) -> Result<(), Error> {
    txn.open_table(KEYS)?;
    txn.open_table(KEY_HASHES)?;
    Ok(())
}

fn decode(id: &str, bytes: &[u8]) -> Result<ApiKeyRecord, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        Error::from(StoreError::Corrupt {
            key: format!("api_keys/{id}"),
            source,
        })
    })
}

fn encode(record: &ApiKeyRecord) -> Vec<u8> {
    // Serialising a struct of strings and dates cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Every key record `txn` sees, oldest first.
pub(crate) fn list_in(txn: &ReadTransaction) -> Result<Vec<ApiKeyRecord>, Error> {
    let keys = txn.open_table(KEYS)?;
    let mut out = Vec::new();
    for entry in keys.iter()? {
        let (id, bytes) = entry?;
        out.push(decode(id.value(), bytes.value())?);
    }
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

impl Redb {
    /// Stores a new key record; refuses a hash that is already registered.
    pub fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), Error> {
        let txn = self.begin_write()?;
        {
            let mut hashes = txn.open_table(KEY_HASHES)?;
            if let Some(existing) = hashes.get(&record.hash)? {
                return Err(StoreError::KeyExists {
                    id: existing.value().to_string(),
                }
                .into());
            }
            hashes.insert(&record.hash, record.id.as_str())?;
            let mut keys = txn.open_table(KEYS)?;
            keys.insert(record.id.as_str(), encode(record).as_slice())?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// The record whose hash is `hash`, revoked or not.
    pub fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, Error> {
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
    pub fn get_key(&self, id: &str) -> Result<ApiKeyRecord, Error> {
        let txn = self.begin_read()?;
        let keys = txn.open_table(KEYS)?;
        match keys.get(id)? {
            Some(bytes) => decode(id, bytes.value()),
            None => Err(StoreError::KeyNotFound { id: id.to_string() }.into()),
        }
    }

    /// Every key record, oldest first.
    pub fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, Error> {
        list_in(&self.begin_read()?)
    }

    /// Renames a key; returns the updated record.
    pub fn rename_key(&self, id: &str, name: &str) -> Result<ApiKeyRecord, Error> {
        self.update_key(id, |r| r.name = name.to_string())
    }

    /// Revokes a key (idempotent: the first revocation time is kept). The record stays.
    pub fn revoke_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, Error> {
        self.update_key(id, |r| {
            r.revoked_at.get_or_insert(at);
        })
    }

    /// Records that a key was used.
    pub fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<ApiKeyRecord, Error> {
        self.update_key(id, |r| r.last_used_at = Some(at))
    }

    fn update_key(
        &self,
        id: &str,
        change: impl FnOnce(&mut ApiKeyRecord),
    ) -> Result<ApiKeyRecord, Error> {
        let txn = self.begin_write()?;
        let record = {
            let mut keys = txn.open_table(KEYS)?;
            let mut record = match keys.get(id)? {
                Some(bytes) => decode(id, bytes.value())?,
                None => return Err(StoreError::KeyNotFound { id: id.to_string() }.into()),
            };
            change(&mut record);
            keys.insert(id, encode(&record).as_slice())?;
            record
        };
        self.commit(txn)?;
        Ok(record)
    }
}
