//! API keys: one row each, the record as jsonb beside its hash (the lookup of every
//! authenticated request).

use aimp_store::{ApiKeyRecord, KeyHash, StoreError};
use postgres::Client;

use crate::error::Result;
use crate::json::encode;

fn decode(id: &str, value: serde_json::Value) -> Result<ApiKeyRecord> {
    crate::json::decode(format_args!("api_keys/{id}"), value)
}

pub fn insert(client: &mut Client, record: &ApiKeyRecord) -> Result<()> {
    let mut txn = client.transaction()?;
    if let Some(row) = txn.query_opt(
        "SELECT id FROM api_keys WHERE hash = $1",
        &[&record.hash.as_slice()],
    )? {
        return Err(StoreError::KeyExists { id: row.get(0) }.into());
    }
    txn.execute(
        "INSERT INTO api_keys (id, hash, record) VALUES ($1, $2, $3)",
        &[&record.id, &record.hash.as_slice(), &encode(record)],
    )?;
    txn.commit()?;
    Ok(())
}

pub fn find_by_hash(client: &mut Client, hash: &KeyHash) -> Result<Option<ApiKeyRecord>> {
    client
        .query_opt(
            "SELECT id, record FROM api_keys WHERE hash = $1",
            &[&hash.as_slice()],
        )?
        .map(|row| decode(row.get(0), row.get(1)))
        .transpose()
}

pub fn get(client: &mut Client, id: &str) -> Result<ApiKeyRecord> {
    match client.query_opt("SELECT record FROM api_keys WHERE id = $1", &[&id])? {
        Some(row) => decode(id, row.get(0)),
        None => Err(StoreError::KeyNotFound { id: id.to_string() }.into()),
    }
}

pub fn list(client: &mut Client) -> Result<Vec<ApiKeyRecord>> {
    client
        .query(
            "SELECT id, record FROM api_keys ORDER BY record ->> 'created_at', id",
            &[],
        )?
        .into_iter()
        .map(|row| decode(row.get(0), row.get(1)))
        .collect()
}

/// Changes the key's record with `change`, in one transaction.
pub fn update(
    client: &mut Client,
    id: &str,
    change: impl FnOnce(&mut ApiKeyRecord),
) -> Result<ApiKeyRecord> {
    let mut txn = client.transaction()?;
    let Some(row) = txn.query_opt(
        "SELECT record FROM api_keys WHERE id = $1 FOR UPDATE",
        &[&id],
    )?
    else {
        return Err(StoreError::KeyNotFound { id: id.to_string() }.into());
    };
    let mut record = decode(id, row.get(0))?;
    change(&mut record);
    txn.execute(
        "UPDATE api_keys SET record = $2 WHERE id = $1",
        &[&id, &encode(&record)],
    )?;
    txn.commit()?;
    Ok(record)
}
