//! The errors every store answers with. User mistakes (an unknown id, a mismatched
//! collection) are separate variants from service failures (a full disk, a database that
//! cannot be reached), so the gateway maps them apart; a store's own failures keep their
//! typed source.

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no API key with id {id}")]
    KeyNotFound { id: String },
    #[error("an API key with the same secret is already registered (id {id})")]
    KeyExists { id: String },
    #[error("{field} {reason}")]
    InvalidInput { field: String, reason: String },
    #[error("collection {collection}: {reason}")]
    ParamsMismatch { collection: String, reason: String },
    /// The store's file system refused a write or an fsync (full, or failing): nothing of
    /// that write was committed.
    #[error("{}: {reason}", fault.describe())]
    Storage { fault: StorageFault, reason: String },
    /// The store cannot be reached now (a database restarting or failing over); nothing of
    /// the request was committed, and the same request may succeed later.
    #[error("the store cannot be reached: {reason}")]
    Unavailable { reason: String },
    /// The work's asker went away ([`aimp_index::Cancel`]); nothing was changed.
    #[error("cancelled: its client went away")]
    Cancelled,
    #[error("stored record {key} cannot be decoded")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The write was not committed, for a reason that is the store's, not the caller's.
    #[error("the write was not committed: {reason}")]
    CommitFailed { reason: String },
    /// Any other failure of the store itself: opening it, its database, its files.
    #[error("{store} store: {context}")]
    Backend {
        store: &'static str,
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why the file system failed a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// No space left (or over quota).
    Full,
    /// Any other I/O failure, or the latch of an earlier one.
    Io,
}

impl StorageFault {
    fn describe(self) -> &'static str {
        match self {
            StorageFault::Full => "the data folder's file system is full",
            StorageFault::Io => "the data folder's file system failed a write",
        }
    }
}

/// ENOSPC and EDQUOT.
pub fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// [`StoreError::Cancelled`] when the work running on this thread was asked to stop
/// ([`aimp_index::Cancel::scope`]).
pub fn check_cancelled() -> Result<(), StoreError> {
    if aimp_index::cancel_requested() {
        Err(StoreError::Cancelled)
    } else {
        Ok(())
    }
}
