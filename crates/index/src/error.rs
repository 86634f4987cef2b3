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
    Database(#[from] redb::Error),
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
    #[error("graph file {path}")]
    GraphIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
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
