//! The PostgreSQL store's own failures, and how they reach the gateway: a database that cannot
//! be reached (down, restarting, failing over, or no free connection in time) is
//! [`StoreError::Unavailable`], so the caller answers 503 with `Retry-After` and the next
//! request tries again; a full disk is [`StoreError::Storage`]; the rest keep their source.

use aimp_store::{StorageFault, StoreError};
use postgres::error::SqlState;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong inside the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure every store may answer (a caller's mistake, a cancelled read).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database operation failed")]
    Database(#[from] postgres::Error),
    /// No connection could be had from the pool in time.
    #[error("no database connection in time")]
    Pool(#[from] r2d2::Error),
    #[error(
        "the database's schema is at version {database}, newer than this build's {build}; \
         upgrade aimp, or point it at another database"
    )]
    NewerSchema { database: i32, build: i32 },
    #[error("the store URL is not a PostgreSQL connection string")]
    Url(#[source] postgres::Error),
}

impl Error {
    /// Whether the database cannot be reached now, as opposed to refusing this request.
    fn is_unreachable(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Database(e) => match e.code() {
                None => true, // the connection itself failed or was closed
                Some(code) => {
                    code.code().starts_with("08") // connection exceptions
                        || [
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CRASH_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::READ_ONLY_SQL_TRANSACTION, // a standby, during failover
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                            SqlState::TOO_MANY_CONNECTIONS,
                        ]
                        .contains(code)
                }
            },
            Error::Store(_) | Error::NewerSchema { .. } | Error::Url(_) => false,
        }
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        if e.is_unreachable() {
            return StoreError::Unavailable {
                reason: match &e {
                    Error::Database(db) => db.to_string(),
                    other => other.to_string(),
                },
            };
        }
        match e {
            Error::Store(e) => e,
            Error::Database(db) if db.code() == Some(&SqlState::DISK_FULL) => StoreError::Storage {
                fault: StorageFault::Full,
                reason: db.to_string(),
            },
            Error::Database(db) => StoreError::Backend {
                store: "postgres",
                context: db.to_string(),
                source: db.into(),
            },
            other => StoreError::Backend {
                store: "postgres",
                context: other.to_string(),
                source: other.into(),
            },
        }
    }
}
