//! Opening the redb database that holds everything acknowledged, and opening it again after a
//! failed write.
//!
//! redb latches an I/O failure: once a write or fsync fails, every later operation on that
//! `Database` (reads included) answers `PreviousIo` until it is closed. A full disk would then
//! stop searches too, and nothing would recover without a restart. So a failed write marks the
//! database for reopening; the next operation closes it and opens the file again (redb's
//! repair puts it back at its last commit), and reads work again while writes keep failing
//! with a clear error until there is room.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use aimp_store::{StorageFault, StoreError};

use crate::Error;

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "aimp.redb";

/// The most memory redb's page cache (reads and the write buffer together) takes unless told
/// otherwise: the database's own default is 1 GiB, which on a store smaller than that means
/// resident memory grows with the file.
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// How often a database that cannot be opened again is retried.
const REOPEN_EVERY: Duration = Duration::from_millis(200);

/// A handle on the database; cheap to clone, safe to share between threads.
#[derive(Clone, Debug)]
pub struct Redb {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// None while the file cannot be opened again.
    db: RwLock<Option<Arc<Database>>>,
    /// Set by a failed write: the next operation opens the file again.
    failed: AtomicBool,
    last_reopen: Mutex<Option<Instant>>,
    /// The page cache's size, for every (re)opening.
    cache_bytes: usize,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    faults: FaultHook,
    /// Write transactions begun, for tests that count them.
    #[cfg(test)]
    writes_begun: std::sync::atomic::AtomicU64,
}

/// What stands between redb and the file: the plain file, or a fault point in test builds.
#[cfg(feature = "fault-injection")]
type FaultHook = Option<Arc<crate::faults::Faults>>;
#[cfg(not(feature = "fault-injection"))]
type FaultHook = ();

impl Redb {
    /// Opens (or creates) `aimp.redb` inside `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<Redb, Error> {
        Redb::open_with_cache(data_dir, DEFAULT_CACHE_BYTES)
    }

    /// [`Redb::open`] with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> Result<Redb, Error> {
        Redb::open_inner(data_dir, FaultHook::default(), cache_bytes)
    }

    /// Opens the store with its file behind a fault point: `faults` makes chosen writes and
    /// fsyncs fail. Test builds only.
    #[cfg(feature = "fault-injection")]
    pub fn open_with_faults(
        data_dir: &Path,
        faults: Arc<crate::faults::Faults>,
    ) -> Result<Redb, Error> {
        Redb::open_inner(data_dir, Some(faults), DEFAULT_CACHE_BYTES)
    }

    fn open_inner(data_dir: &Path, faults: FaultHook, cache_bytes: usize) -> Result<Redb, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let store = Redb {
            shared: Arc::new(Shared {
                path,
                db: RwLock::new(None),
                failed: AtomicBool::new(false),
                last_reopen: Mutex::new(None),
                cache_bytes,
                faults,
                #[cfg(test)]
                writes_begun: Default::default(),
            }),
        };
        let db = store.open_file().map_err(|e| Error::Open {
            path: store.shared.path.clone(),
            source: e.into(),
        })?;
        *store.shared.db.write() = Some(Arc::new(db));
        store.init_tables()?;
        Ok(store)
    }

    fn builder(&self) -> redb::Builder {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(self.shared.cache_bytes);
        builder
    }

    #[cfg(not(feature = "fault-injection"))]
    fn open_file(&self) -> Result<Database, redb::DatabaseError> {
        self.builder().create(&self.shared.path)
    }

    #[cfg(feature = "fault-injection")]
    fn open_file(&self) -> Result<Database, redb::DatabaseError> {
        let Some(faults) = &self.shared.faults else {
            return self.builder().create(&self.shared.path);
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.shared.path)?;
        let backend = crate::faults::FaultyFile::new(file, faults.clone())?;
        self.builder().create_with_backend(backend)
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether a read transaction can be started: the readiness probe.
    pub fn is_readable(&self) -> bool {
        self.begin_read().is_ok()
    }

    /// A read transaction on the database as last committed.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, Error> {
        self.begin(|db| db.begin_read())
    }

    /// Starts a write transaction that is durable when [`Redb::commit`] returns.
    /// Quick-repair keeps reopening after a crash fast (two-phase commit instead of a full
    /// scan).
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, Error> {
        #[cfg(test)]
        self.shared.writes_begun.fetch_add(1, Ordering::SeqCst);
        let mut txn = self.begin(|db| db.begin_write())?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// Write transactions begun so far.
    #[cfg(test)]
    pub(crate) fn writes_begun(&self) -> u64 {
        self.shared.writes_begun.load(Ordering::SeqCst)
    }

    /// Commits durably. A failure is the caller's error, and marks the database to be opened
    /// again: redb refuses every later operation on it.
    pub(crate) fn commit(&self, txn: WriteTransaction) -> Result<(), Error> {
        txn.commit().map_err(|e| self.failure(e.into()))
    }

    /// Classifies an error; a storage fault marks the database to be opened again.
    fn failure(&self, e: redb::Error) -> Error {
        let e = Error::from_redb(e);
        if let Error::Store(StoreError::Storage { reason, .. }) = &e
            && !self.shared.failed.swap(true, Ordering::AcqRel)
        {
            tracing::error!(error = %reason, "the store failed to write; it will be opened again");
        }
        e
    }

    /// Starts a transaction on the open database; a storage fault (the latch of an earlier
    /// failure) opens the file again and tries once more.
    fn begin<T>(
        &self,
        start: impl Fn(&Database) -> Result<T, redb::TransactionError>,
    ) -> Result<T, Error> {
        let mut retried = false;
        loop {
            let db = self.database()?;
            match start(&db) {
                Ok(txn) => return Ok(txn),
                Err(e) => {
                    let e = self.failure(e.into());
                    if retried || !e.is_storage() {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    /// The database, opened again first when a write failed since.
    fn database(&self) -> Result<Arc<Database>, Error> {
        if !self.shared.failed.load(Ordering::Acquire)
            && let Some(db) = self.shared.db.read().as_ref()
        {
            return Ok(db.clone());
        }
        self.reopen()
    }

    fn reopen(&self) -> Result<Arc<Database>, Error> {
        let mut slot = self.shared.db.write();
        if !self.shared.failed.load(Ordering::Acquire)
            && let Some(db) = slot.as_ref()
        {
            return Ok(db.clone()); // another thread opened it meanwhile
        }
        let unavailable = |reason: String| {
            Error::Store(StoreError::Storage {
                fault: StorageFault::Io,
                reason,
            })
        };
        {
            let mut last = self.shared.last_reopen.lock();
            if last.is_some_and(|t| t.elapsed() < REOPEN_EVERY) && slot.is_none() {
                return Err(unavailable(
                    "the database is being opened again after a failed write".into(),
                ));
            }
            *last = Some(Instant::now());
        }
        // Closes the latched database (its file lock goes with the last handle).
        *slot = None;
        match self.open_file() {
            Ok(db) => {
                let db = Arc::new(db);
                *slot = Some(db.clone());
                self.shared.failed.store(false, Ordering::Release);
                tracing::warn!(path = %self.shared.path.display(), "the store is open again");
                Ok(db)
            }
            Err(e) => {
                tracing::error!(error = %e, "the store cannot be opened again yet");
                let e = Error::from_redb(e.into());
                Err(if e.is_storage() {
                    e
                } else {
                    unavailable(e.to_string())
                })
            }
        }
    }

    fn init_tables(&self) -> Result<(), Error> {
        let txn = self.begin_write()?;
        crate::keys::init_tables(&txn)?;
        crate::collection::init_tables(&txn)?;
        crate::media::init_tables(&txn)?;
        self.commit(txn)
    }
}
