//! Uploads and media records: who uploaded what, in which state an upload is, and which
//! content (by sha256) a `media_ref` names. An upload is acknowledged only once its record
//! commits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

impl UploadRecord {
    /// Whether its time is over at `now`: expired without completing, or completed and
    /// expired `keep_completed` ago (kept that long so a repeated `complete` still answers).
    pub fn is_stale(&self, now: DateTime<Utc>, keep_completed: chrono::Duration) -> bool {
        let deadline = match self.state {
            UploadState::Completed { .. } => self.expires_at + keep_completed,
            _ => self.expires_at,
        };
        deadline <= now
    }
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

/// The outcome of a conditional change of an upload.
#[derive(Debug)]
pub enum Transition<T = UploadRecord, R = UploadRecord> {
    Done(T),
    /// The upload exists but is in another state; here it is, unchanged.
    Refused(R),
    NotFound,
}

/// A listing of media records read a page at a time in `media_ref` order, each page after
/// the last one's end: `while let Some(page) = pages.next(|after| view.list_media(after, n))?`.
#[derive(Debug, Default)]
pub struct MediaPages {
    after: Option<String>,
    done: bool,
}

impl MediaPages {
    /// The next page `list` gives (it is asked for the records after `after`), or `None` at
    /// the end.
    pub fn next<E>(
        &mut self,
        list: impl FnOnce(Option<&str>) -> Result<Vec<MediaRecord>, E>,
    ) -> Result<Option<Vec<MediaRecord>>, E> {
        if self.done {
            return Ok(None);
        }
        let page = list(self.after.as_deref())?;
        match page.last() {
            Some(last) => {
                self.after = Some(last.media_ref.clone());
                Ok(Some(page))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}
