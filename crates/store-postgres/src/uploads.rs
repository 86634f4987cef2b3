//! Uploads and media records: one row each, the record as jsonb. Every change of an upload's
//! state reads it `FOR UPDATE` first, so two gateways claiming the same upload cannot both
//! win.

use aimp_store::{MediaRecord, Transition, UploadRecord, UploadState};
use chrono::{DateTime, Utc};
use postgres::Client;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::json::encode;

fn decode<T: DeserializeOwned>(table: &str, key: &str, value: serde_json::Value) -> Result<T> {
    crate::json::decode(format_args!("{table}/{key}"), value)
}

pub fn insert(client: &mut Client, record: &UploadRecord) -> Result<()> {
    client.execute(
        "INSERT INTO uploads (id, record) VALUES ($1, $2)",
        &[&record.id, &encode(record)],
    )?;
    Ok(())
}

pub fn get(client: &mut Client, id: &str) -> Result<Option<UploadRecord>> {
    client
        .query_opt("SELECT record FROM uploads WHERE id = $1", &[&id])?
        .map(|row| decode("uploads", id, row.get(0)))
        .transpose()
}

fn locked(txn: &mut postgres::Transaction<'_>, id: &str) -> Result<Option<UploadRecord>> {
    txn.query_opt(
        "SELECT record FROM uploads WHERE id = $1 FOR UPDATE",
        &[&id],
    )?
    .map(|row| decode("uploads", id, row.get(0)))
    .transpose()
}

pub fn transition(
    client: &mut Client,
    id: &str,
    from: &dyn Fn(&UploadState) -> bool,
    to: UploadState,
) -> Result<Transition> {
    let mut txn = client.transaction()?;
    let Some(mut record) = locked(&mut txn, id)? else {
        return Ok(Transition::NotFound);
    };
    if !from(&record.state) {
        return Ok(Transition::Refused(record));
    }
    record.state = to;
    txn.execute(
        "UPDATE uploads SET record = $2 WHERE id = $1",
        &[&id, &encode(&record)],
    )?;
    txn.commit()?;
    Ok(Transition::Done(record))
}

pub fn complete(
    client: &mut Client,
    id: &str,
    proposed: &MediaRecord,
) -> Result<Transition<MediaRecord, UploadRecord>> {
    let mut txn = client.transaction()?;
    let Some(mut record) = locked(&mut txn, id)? else {
        return Ok(Transition::NotFound);
    };
    match &record.state {
        UploadState::Completed { media_ref } => {
            let media_ref = media_ref.clone();
            match txn.query_opt(
                "SELECT record FROM media WHERE media_ref = $1",
                &[&media_ref],
            )? {
                Some(row) => Ok(Transition::Done(decode("media", &media_ref, row.get(0))?)),
                None => Ok(Transition::NotFound),
            }
        }
        UploadState::Received { .. } => {
            txn.execute(
                "INSERT INTO media (media_ref, record) VALUES ($1, $2) \
                 ON CONFLICT (media_ref) DO UPDATE SET record = EXCLUDED.record",
                &[&proposed.media_ref, &encode(proposed)],
            )?;
            record.state = UploadState::Completed {
                media_ref: proposed.media_ref.clone(),
            };
            txn.execute(
                "UPDATE uploads SET record = $2 WHERE id = $1",
                &[&id, &encode(&record)],
            )?;
            txn.commit()?;
            Ok(Transition::Done(proposed.clone()))
        }
        UploadState::Pending | UploadState::Receiving | UploadState::Failed { .. } => {
            Ok(Transition::Refused(record))
        }
    }
}

pub fn stale(
    client: &mut Client,
    now: DateTime<Utc>,
    keep_completed: chrono::Duration,
) -> Result<Vec<UploadRecord>> {
    let mut out = Vec::new();
    for row in client.query("SELECT id, record FROM uploads ORDER BY id", &[])? {
        let id: &str = row.get(0);
        let record: UploadRecord = decode("uploads", id, row.get(1))?;
        if record.is_stale(now, keep_completed) {
            out.push(record);
        }
    }
    Ok(out)
}

pub fn remove(client: &mut Client, id: &str) -> Result<()> {
    client.execute("DELETE FROM uploads WHERE id = $1", &[&id])?;
    Ok(())
}

pub fn media(client: &mut Client, media_ref: &str) -> Result<Option<MediaRecord>> {
    client
        .query_opt(
            "SELECT record FROM media WHERE media_ref = $1",
            &[&media_ref],
        )?
        .map(|row| decode("media", media_ref, row.get(0)))
        .transpose()
}

pub fn list_media(
    client: &mut Client,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<MediaRecord>> {
    client
        .query(
            "SELECT media_ref, record FROM media WHERE media_ref > $1 ORDER BY media_ref LIMIT $2",
            &[&after.unwrap_or(""), &(limit as i64)],
        )?
        .into_iter()
        .map(|row| decode("media", row.get(0), row.get(1)))
        .collect()
}

pub fn put_media(client: &mut Client, record: &MediaRecord) -> Result<()> {
    client.execute(
        "INSERT INTO media (media_ref, record) VALUES ($1, $2) \
         ON CONFLICT (media_ref) DO UPDATE SET record = EXCLUDED.record",
        &[&record.media_ref, &encode(record)],
    )?;
    Ok(())
}
