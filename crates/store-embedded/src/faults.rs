//! A fault point at the storage boundary, for test builds (`--features fault-injection`): the
//! database file behind a backend that fails the writes or fsyncs a test asks it to, as a
//! full or failing disk would.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use redb::StorageBackend;
use redb::backends::FileBackend;

/// Which operations fail next. Counts go down as failures are dealt out.
#[derive(Debug, Default)]
pub struct Faults {
    syncs: AtomicU64,
    writes: AtomicU64,
    /// While set, a full disk: a write that needs new blocks fails with ENOSPC.
    full: std::sync::atomic::AtomicBool,
    failed: AtomicU64,
}

impl Faults {
    /// The next `n` fsyncs fail with EIO.
    pub fn fail_syncs(&self, n: u64) {
        self.syncs.store(n, Ordering::SeqCst);
    }

    /// The next `n` writes fail with EIO.
    pub fn fail_writes(&self, n: u64) {
        self.writes.store(n, Ordering::SeqCst);
    }

    /// A full disk until `false`: writes into blocks of the file never written before fail
    /// with ENOSPC, as on a file system with no free blocks (growing the file is sparse and
    /// succeeds; overwriting blocks it already holds succeeds too).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// How many operations have been failed so far.
    pub fn injected(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    fn take(&self, counter: &AtomicU64) -> bool {
        let took = counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        took
    }

    fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }
}

/// The block size of the emulated file system.
const BLOCK: u64 = 4096;

/// redb's own file backend with [`Faults`] in front of its writes.
#[derive(Debug)]
pub(crate) struct FaultyFile {
    file: FileBackend,
    faults: Arc<Faults>,
    /// Blocks that hold data (a full disk still lets them be overwritten).
    held: Mutex<HashSet<u64>>,
}

impl FaultyFile {
    pub(crate) fn new(file: File, faults: Arc<Faults>) -> io::Result<FaultyFile> {
        let len = file.metadata()?.len();
        Ok(FaultyFile {
            file: FileBackend::new(file).map_err(io::Error::other)?,
            faults,
            held: Mutex::new((0..len.div_ceil(BLOCK)).collect()),
        })
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.held.lock().retain(|b| b * BLOCK < len);
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self.faults.take(&self.faults.syncs) {
            return Err(eio());
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let blocks = offset / BLOCK..(offset + data.len() as u64).div_ceil(BLOCK);
        {
            let mut held = self.held.lock();
            if self.faults.is_full() && blocks.clone().any(|b| !held.contains(&b)) {
                self.faults.failed.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            held.extend(blocks);
        }
        if self.faults.take(&self.faults.writes) {
            return Err(eio());
        }
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}
