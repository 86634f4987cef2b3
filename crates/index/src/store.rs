//! Opening the redb database that holds everything acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, WriteTransaction};

use crate::StoreError;

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "aimp.redb";

/// A handle on the database; cheap to clone, safe to share between threads.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `aimp.redb` inside `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: e.into(),
        })?;
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.init_tables()?;
        Ok(store)
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a read transaction can be started: the readiness probe.
    pub fn is_readable(&self) -> bool {
        self.db.begin_read().is_ok()
    }

    /// Starts a write transaction that is durable when `commit` returns. Quick-repair keeps
    /// reopening after a crash fast (two-phase commit instead of a full scan).
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        crate::keys::init_tables(&txn)?;
        crate::collection::init_tables(&txn)?;
        crate::media::init_tables(&txn)?;
        txn.commit()?;
        Ok(())
    }
}
