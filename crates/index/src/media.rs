//! Uploads and media records. The bytes themselves live in files (see the server's media
//! folder); redb records who uploaded what, in which state an upload is, and which content
//! (by sha256) a `media_ref` names, so an upload is acknowledged only once its record commits.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// upload id → JSON-encoded [`UploadRecord`].
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// media_ref → JSON-encoded [`MediaRecord`].
const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media");

/// Where an upload stands. Each state is entered once, in this order (or `Failed`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    /// Waiting for its bytes.
    Pending,
    /// A PUT holds the upload URL and is writing the bytes (the URL is single-use).
    Receiving,
    /// The bytes arrived whole and matched what `init` declared.
    Received { sha256: String },
    /// `complete` made the bytes durable and named them.
    Completed { media_ref: String },
    /// The bytes did not match what `init` declared; nothing was kept.
    Failed { reason: String },
}

/// One upload, from `init` on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub workspace: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(flatten)]
    pub state: UploadState,
}

/// Uploaded bytes under a name, in one workspace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MediaRecord {
    pub media_ref: String,
    pub workspace: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Lowercase hex; also the name of the content file, so equal bytes are stored once.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// What the picture's EXIF block says (taken_at, camera_make, camera_model,
    /// orientation, gps_latitude, gps_longitude), those it has; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exif: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn init_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(UPLOADS)?;
    txn.open_table(MEDIA)?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(
    table: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: format!("{table}/{key}"),
        source,
    })
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records of strings, numbers and dates always serialise.
    serde_json::to_vec(record).unwrap_or_default()
}

impl Store {
    /// Records a new upload (state `Pending`).
    pub fn insert_upload(&self, record: &UploadRecord) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.open_table(UPLOADS)?
            .insert(record.id.as_str(), encode(record).as_slice())?;
        self.commit(txn)?;
        Ok(())
    }

    /// The upload with this id, whatever its state.
    pub fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
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
        from: impl Fn(&UploadState) -> bool,
        to: UploadState,
    ) -> Result<Transition, StoreError> {
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
    ) -> Result<Transition<MediaRecord, UploadRecord>, StoreError> {
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
    ) -> Result<Vec<UploadRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, bytes) = entry?;
            let record: UploadRecord = decode("uploads", id.value(), bytes.value())?;
            let deadline = match record.state {
                UploadState::Completed { .. } => record.expires_at + keep_completed,
                _ => record.expires_at,
            };
            if deadline <= now {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Forgets an upload record (its media, if any, stays).
    pub fn remove_upload(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        txn.open_table(UPLOADS)?.remove(id)?;
        self.commit(txn)?;
        Ok(())
    }

    /// The media record of `media_ref`, in any workspace (the caller checks whose it is).
    pub fn get_media(&self, media_ref: &str) -> Result<Option<MediaRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(MEDIA)?;
        table
            .get(media_ref)?
            .map(|v| decode("media", media_ref, v.value()))
            .transpose()
    }
}

/// The outcome of a conditional change of an upload.
#[derive(Debug)]
pub enum Transition<T = UploadRecord, R = UploadRecord> {
    Done(T),
    /// The upload exists but is in another state; here it is, unchanged.
    Refused(R),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(id: &str, expires_in: i64) -> UploadRecord {
        let now = Utc::now();
        UploadRecord {
            id: id.into(),
            workspace: "default".into(),
            filename: "image.png".into(),
            content_type: "image/png".into(),
            size_bytes: 10,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
            state: UploadState::Pending,
        }
    }

    fn media(r: &str) -> MediaRecord {
        MediaRecord {
            media_ref: r.into(),
            workspace: "default".into(),
            filename: "image.png".into(),
            content_type: "image/png".into(),
            size_bytes: 10,
            sha256: "ab".repeat(32),
            width: 1,
            height: 1,
            exif: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn an_upload_moves_forward_once_and_completes_idempotently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.insert_upload(&upload("u1", 60)).expect("insert");
        let pending = |s: &UploadState| *s == UploadState::Pending;
        assert!(matches!(
            store.transition_upload("u1", pending, UploadState::Receiving),
            Ok(Transition::Done(_))
        ));
        // Single use: a second claim is refused and says what state the upload is in.
        match store.transition_upload("u1", pending, UploadState::Receiving) {
            Ok(Transition::Refused(r)) => assert_eq!(r.state, UploadState::Receiving),
            other => panic!("{other:?}"),
        }
        // Not received yet: complete is refused.
        assert!(matches!(
            store.complete_upload("u1", &media("media_a")),
            Ok(Transition::Refused(_))
        ));
        let received = UploadState::Received {
            sha256: "ab".repeat(32),
        };
        store
            .transition_upload("u1", |s| *s == UploadState::Receiving, received)
            .expect("received");
        let first = match store.complete_upload("u1", &media("media_a")) {
            Ok(Transition::Done(m)) => m,
            other => panic!("{other:?}"),
        };
        // A second complete (even with another proposed name) answers the first media.
        let again = match store.complete_upload("u1", &media("media_b")) {
            Ok(Transition::Done(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(first, again);
        assert!(store.get_media("media_b").expect("get").is_none());
        assert!(matches!(
            store.complete_upload("nope", &media("media_c")),
            Ok(Transition::NotFound)
        ));
    }

    #[test]
    fn stale_uploads_are_the_expired_and_long_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.insert_upload(&upload("fresh", 60)).expect("insert");
        store.insert_upload(&upload("old", -1)).expect("insert");
        let mut done = upload("done", -1);
        done.state = UploadState::Completed {
            media_ref: "media_x".into(),
        };
        store.insert_upload(&done).expect("insert");
        let stale = store
            .stale_uploads(Utc::now(), chrono::Duration::hours(24))
            .expect("stale");
        let ids: Vec<&str> = stale.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, vec!["old"]);
        store.remove_upload("old").expect("remove");
        assert!(store.get_upload("old").expect("get").is_none());
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get_upload("done").expect("get"), Some(done));
    }
}
