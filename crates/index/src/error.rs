//! Errors of the store layer.

use std::path::PathBuf;

/// Everything that can go wrong in the store. User mistakes (an unknown id) are separate
/// variants from service failures (I/O, a corrupt file), so the server can map them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("database operation failed")]
    Database(#[source] redb::Error),
    #[error("stored record {key} cannot be decoded")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no API key with id {id}")]
    KeyNotFound { id: String },
    #[error("an API key with the same secret is already registered (id {id})")]
    KeyExists { id: String },
    #[error("{field} {reason}")]
    InvalidInput { field: String, reason: String },
    #[error("collection {collection}: {reason}")]
    ParamsMismatch { collection: String, reason: String },
    #[error("the write was not committed: {reason}")]
    CommitFailed { reason: String },
    #[error("the writer stopped before answering")]
    WriterGone,
    /// The data folder's file system refused a write or an fsync (full, or failing): nothing
    /// of that write was committed.
    #[error("{}: {reason}", fault.describe())]
    Storage { fault: StorageFault, reason: String },
    /// The work's asker went away ([`crate::Cancel`]); nothing was changed.
    #[error("cancelled: its client went away")]
    Cancelled,
    #[error("graph file {path}")]
    GraphIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    /// The fault behind a redb error, if it is one of the file's.
    pub(crate) fn of(e: &redb::Error) -> Option<StorageFault> {
        match e {
            redb::Error::Io(io) if is_full(io) => Some(StorageFault::Full),
            redb::Error::Io(_) | redb::Error::PreviousIo => Some(StorageFault::Io),
            _ => None,
        }
    }

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

impl StoreError {
    /// A redb error, with the file's faults told apart from the rest.
    pub(crate) fn from_redb(e: redb::Error) -> StoreError {
        match StorageFault::of(&e) {
            Some(fault) => StoreError::Storage {
                fault,
                reason: e.to_string(),
            },
            None => StoreError::Database(e),
        }
    }

    /// The error each writer of a failed group commit is answered: the same fault for a
    /// storage failure, otherwise the reason in words.
    pub(crate) fn for_each_writer(&self) -> StoreError {
        match self {
            StoreError::Storage { fault, reason } => StoreError::Storage {
                fault: *fault,
                reason: reason.clone(),
            },
            other => StoreError::CommitFailed {
                reason: other.to_string(),
            },
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::from_redb(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from_redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
