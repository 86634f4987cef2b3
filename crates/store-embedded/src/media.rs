//! Uploads and media records. The bytes themselves live in files (see the server's media
//! folder); redb records who uploaded what, in which state an upload is, and which content
//! (by sha256) a `media_ref` names, so an upload is acknowledged only once its record commits.

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use aimp_store::StoreError;
pub use aimp_store::{MediaRecord, Transition, UploadRecord, UploadState};

use crate::{Error, Redb};

/// upload id → JSON-encoded [`UploadRecord`].
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// media_ref → JSON-encoded [`MediaRecord`].
const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");

pub(crate) fn init_tables(txn: &WriteTransaction) -> Result<(), Error> {
    txn.open_table(UPLOADS)?;
    txn.open_table(MEDIA)?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(table: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        Error::from(StoreError::Corrupt {
            key: format!("{table}/{key}"),
            source,
        })
    })
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records of strings, numbers and dates always serialise.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Up to `limit` media records `txn` sees, in `media_ref` order after `after`.
pub(crate) fn list_media_in(
    txn: &ReadTransaction,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<MediaRecord>, Error> {
    let table = txn.open_table(MEDIA)?;
    let mut out = Vec::new();
    for entry in table.range(after.unwrap_or("")..)? {
        let (media_ref, bytes) = entry?;
        if out.len() >= limit {
            break;
        }
        if Some(media_ref.value()) == after {
            continue;
        }
        out.push(decode("media", media_ref.value(), bytes.value())?);
    }
    Ok(out)
}

impl Redb {
    /// Records a new upload (state `Pending`).
    pub fn insert_upload(&self, record: &UploadRecord) -> Result<(), Error> {
        let txn = self.begin_write()?;
        txn.open_table(UPLOADS)?
            .insert(record.id.as_str(), encode(record).as_slice())?;
        self.commit(txn)?;
        Ok(())
    }

    /// The upload with this id, whatever its state.
    pub fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, Error> {
        let txn = self.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        table
            .get(id)?
            .map(|v| decode("uploads", id, v.value()))
            .transpose()
    }

    /// Moves an upload from `from` to `to` in one transaction; answers the record as it was
    /// when the state did not match (so the caller can say why), or `None` when there is no
    /// such upload.
    pub fn transition_upload(
        &self,
        id: &str,
        from: &dyn Fn(&UploadState) -> bool,
        to: UploadState,
    ) -> Result<Transition, Error> {
        let txn = self.begin_write()?;
        let outcome = {
            let mut table = txn.open_table(UPLOADS)?;
            let current: Option<UploadRecord> = table
                .get(id)?
                .map(|v| decode("uploads", id, v.value()))
                .transpose()?;
            match current {
                None => Transition::NotFound,
                Some(record) if !from(&record.state) => Transition::Refused(record),
                Some(mut record) => {
                    record.state = to;
                    table.insert(id, encode(&record).as_slice())?;
                    Transition::Done(record)
                }
            }
        };
        self.commit(txn)?;
        Ok(outcome)
    }

    /// Completes a `Received` upload: stores `media` and marks the upload `Completed`, in one
    /// transaction. Completing again answers the media of the first completion.
    pub fn complete_upload(
        &self,
        id: &str,
        media: &MediaRecord,
    ) -> Result<Transition<MediaRecord, UploadRecord>, Error> {
        let txn = self.begin_write()?;
        let outcome = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let mut all_media = txn.open_table(MEDIA)?;
            let current: Option<UploadRecord> = uploads
                .get(id)?
                .map(|v| decode("uploads", id, v.value()))
                .transpose()?;
            match current {
                None => Transition::NotFound,
                Some(UploadRecord {
                    state: UploadState::Completed { media_ref },
                    ..
                }) => match all_media.get(media_ref.as_str())? {
                    Some(v) => Transition::Done(decode("media", &media_ref, v.value())?),
                    None => Transition::NotFound,
                },
                Some(record) if !matches!(record.state, UploadState::Received { .. }) => {
                    Transition::Refused(record)
                }
                Some(mut record) => {
                    all_media.insert(media.media_ref.as_str(), encode(media).as_slice())?;
                    record.state = UploadState::Completed {
                        media_ref: media.media_ref.clone(),
                    };
                    uploads.insert(id, encode(&record).as_slice())?;
                    Transition::Done(media.clone())
                }
            }
        };
        self.commit(txn)?;
        Ok(outcome)
    }

    /// Uploads whose time is over: those that never completed once they expire, completed
    /// ones `keep_completed` after they expire (so a repeated `complete` still answers).
    pub fn stale_uploads(
        &self,
        now: DateTime<Utc>,
        keep_completed: chrono::Duration,
    ) -> Result<Vec<UploadRecord>, Error> {
        let txn = self.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            let record: UploadRecord = decode("uploads", id.value(), bytes.value())?;
            if record.is_stale(now, keep_completed) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Forgets an upload record (its media, if any, stays).
    pub fn remove_upload(&self, id: &str) -> Result<(), Error> {
        let txn = self.begin_write()?;
        txn.open_table(UPLOADS)?.remove(id)?;
        self.commit(txn)?;
        Ok(())
    }

    /// The media record of `media_ref`, in any workspace (the caller checks whose it is).
    pub fn get_media(&self, media_ref: &str) -> Result<Option<MediaRecord>, Error> {
        let txn = self.begin_read()?;
        let table = txn.open_table(MEDIA)?;
        table
            .get(media_ref)?
            .map(|v| decode("media", media_ref, v.value()))
            .transpose()
    }

    /// Up to `limit` media records in `media_ref` order after `after`.
    pub fn list_media(&self, after: Option<&str>, limit: usize) -> Result<Vec<MediaRecord>, Error> {
        list_media_in(&self.begin_read()?, after, limit)
    }

    /// Stores a media record as given, replacing one with its `media_ref`.
    pub fn put_media(&self, record: &MediaRecord) -> Result<(), Error> {
        let txn = self.begin_write()?;
        txn.open_table(MEDIA)?
            .insert(record.media_ref.as_str(), encode(record).as_slice())?;
        self.commit(txn)?;
        Ok(())
    }
}
