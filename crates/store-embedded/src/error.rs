//! The embedded store's own failures: redb's, its files', and its writer's. Everything a
//! caller did wrong is an [`aimp_store::StoreError`] already, carried in [`Error::Store`].

use std::path::PathBuf;

use aimp_index::GraphFileError;
use aimp_store::{StorageFault, StoreError, is_full};

/// What can go wrong inside the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure every store may answer (a caller's mistake, a full disk, a cancelled read).
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error(transparent)]
    GraphIo(#[from] GraphFileError),
    #[error("the writer stopped before answering")]
    WriterGone,
    /// A media file (an upload's part, stored content, the signing secret).
    #[error("{context}")]
    Media {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The fault behind a redb error, if it is one of the file's.
fn fault_of(e: &redb::Error) -> Option<StorageFault> {
    match e {
        redb::Error::Io(io) if is_full(io) => Some(StorageFault::Full),
        redb::Error::Io(_) | redb::Error::PreviousIo => Some(StorageFault::Io),
        _ => None,
    }
}

impl Error {
    /// A redb error, with the file's faults told apart from the rest.
    pub(crate) fn from_redb(e: redb::Error) -> Error {
        match fault_of(&e) {
            Some(fault) => Error::Store(StoreError::Storage {
                fault,
                reason: e.to_string(),
            }),
            None => Error::Database(e),
        }
    }

    /// Whether the data folder's file system failed this (full, or failing).
    pub(crate) fn is_storage(&self) -> bool {
        matches!(self, Error::Store(StoreError::Storage { .. }))
    }

    /// The error each writer of a failed group commit is answered: the same fault for a
    /// storage failure, otherwise the reason in words.
    pub(crate) fn for_each_writer(&self) -> Error {
        match self {
            Error::Store(StoreError::Storage { fault, reason }) => {
                Error::Store(StoreError::Storage {
                    fault: *fault,
                    reason: reason.clone(),
                })
            }
            other => Error::Store(StoreError::CommitFailed {
                reason: other.to_string(),
            }),
        }
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        let backend = |context: String, source: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::Backend {
                store: "embedded",
                context,
                source,
            }
        };
        match e {
            Error::Store(e) => e,
            Error::CreateDir { path, source } => backend(
                format!("cannot create the data directory {}", path.display()),
                source.into(),
            ),
            Error::Open { path, source } => backend(
                format!("cannot open the database at {}", path.display()),
                source.into(),
            ),
            Error::Database(source) => backend("database operation failed".into(), source.into()),
            Error::GraphIo(source) => backend(source.to_string(), source.source.into()),
            Error::WriterGone => StoreError::CommitFailed {
                reason: "the writer stopped before answering".into(),
            },
            Error::Media { context, source } if is_full(&source) => StoreError::Storage {
                fault: StorageFault::Full,
                reason: format!("{context}: {source}"),
            },
            Error::Media { context, source } => backend(context.to_string(), source.into()),
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::from_redb(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::from_redb(e.into())
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
