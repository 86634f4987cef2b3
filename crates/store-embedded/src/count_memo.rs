//! What the planner remembers of one collection's payload indexes between two changes to it.
//!
//! Deciding how to answer a filtered search reads the counts of the filter's values (one row
//! per value, one per distinct value for a range) before the search starts: 10–40 µs of redb
//! reads a query, paid again for the same values by every query. Answering it from the
//! indexes reads their rows, one per matching item (some 0.3 µs each). The memo keeps what
//! those reads found, counts and item lists, beside the graph of the collection as of one
//! record; the graph's next change starts an empty one, so the memo never outlives the
//! indexes it copied by more than the graph outlives the vectors. Item lists remembered are
//! therefore what the graph searched with them holds: an item added since is in neither, and
//! one deleted since is in both until the graph takes the change, and is then left out of
//! the answer when its row is read (as for a search without a filter). A search that reads
//! the store just after a commit, while the graph has not yet taken it, may plan with the
//! counts from just before: slower at worst, never less exact.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Bytes one memo may hold: its keys, its counts, its item lists (8 bytes an item), and
/// [`ENTRY_BYTES`] for each thing it remembers, an empty list or a zero count included
/// (16 MiB). Past it, what is new is read from the store each time.
const MEMO_BYTES: usize = 16 << 20;
/// Bytes all memos of the process may hold together (256 MiB): a workspace with many small
/// collections cannot multiply [`MEMO_BYTES`] by their number.
const ALL_MEMOS_BYTES: usize = 256 << 20;
/// What remembering one thing costs beyond its key and items: the map's slot, the key's and
/// the list's headers, the allocator's rounding.
const ENTRY_BYTES: usize = 64;

/// Bytes that a set of memos may hold together, and hold now.
#[derive(Debug)]
struct Pool {
    held: AtomicUsize,
    limit: usize,
}

/// The pool of every memo of the process.
static ALL_MEMOS: Pool = Pool {
    held: AtomicUsize::new(0),
    limit: ALL_MEMOS_BYTES,
};

/// Which kind of item list a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Entry,
    Range,
}

#[derive(Debug)]
pub(crate) struct CountMemo {
    known: Mutex<Known>,
    pool: &'static Pool,
}

impl Default for CountMemo {
    fn default() -> Self {
        CountMemo {
            known: Mutex::default(),
            pool: &ALL_MEMOS,
        }
    }
}

#[derive(Debug, Default)]
struct Known {
    /// An entry (a field and one of its values) → how many items hold it.
    entries: HashMap<Vec<u8>, u64>,
    /// A range's scan (its bounds and the limit) → the items its values hold, `None` past the
    /// limit.
    ranges: HashMap<Vec<u8>, Option<u64>>,
    /// An entry → the items holding it (ascending).
    entry_items: HashMap<Vec<u8>, Arc<[u64]>>,
    /// A range's scan → the items its values hold (ascending).
    range_items: HashMap<Vec<u8>, Arc<[u64]>>,
    /// Bytes charged for all of the above, against [`MEMO_BYTES`] and the pool.
    bytes: usize,
}

impl Known {
    /// Charges `bytes` to this memo and its pool if both have room.
    fn charge(&mut self, pool: &Pool, bytes: usize) -> bool {
        if self.bytes + bytes > MEMO_BYTES {
            return false;
        }
        let taken = pool
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + bytes <= pool.limit).then_some(held + bytes)
            });
        if taken.is_err() {
            return false;
        }
        self.bytes += bytes;
        true
    }
}

impl Drop for CountMemo {
    fn drop(&mut self) {
        let bytes = self.known.get_mut().bytes;
        self.pool.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl CountMemo {
    /// How many items hold `entry`, if remembered.
    pub fn entry(&self, entry: &[u8]) -> Option<u64> {
        self.known.lock().entries.get(entry).copied()
    }

    pub fn remember_entry(&self, entry: &[u8], count: u64) {
        let mut known = self.known.lock();
        if !known.entries.contains_key(entry) && known.charge(self.pool, entry.len() + ENTRY_BYTES)
        {
            known.entries.insert(entry.to_vec(), count);
        }
    }

    /// A range's total, if remembered: `Some(None)` when it was past its limit.
    pub fn range(&self, scan: &[u8]) -> Option<Option<u64>> {
        self.known.lock().ranges.get(scan).copied()
    }

    pub fn remember_range(&self, scan: Vec<u8>, total: Option<u64>) {
        let mut known = self.known.lock();
        if !known.ranges.contains_key(&scan) && known.charge(self.pool, scan.len() + ENTRY_BYTES) {
            known.ranges.insert(scan, total);
        }
    }

    /// The items holding an entry (`List::Entry`) or a range's values (`List::Range`, by its
    /// scan key), if remembered.
    pub fn items(&self, list: List, key: &[u8]) -> Option<Arc<[u64]>> {
        let known = self.known.lock();
        match list {
            List::Entry => known.entry_items.get(key).cloned(),
            List::Range => known.range_items.get(key).cloned(),
        }
    }

    pub fn remember_items(&self, list: List, key: &[u8], items: Arc<[u64]>) {
        let mut known = self.known.lock();
        let lists = match list {
            List::Entry => &known.entry_items,
            List::Range => &known.range_items,
        };
        if lists.contains_key(key)
            || !known.charge(self.pool, key.len() + ENTRY_BYTES + 8 * items.len())
        {
            return;
        }
        match list {
            List::Entry => known.entry_items.insert(key.to_vec(), items),
            List::Range => known.range_items.insert(key.to_vec(), items),
        };
    }

    /// Bytes it holds, as charged.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.known.lock().bytes
    }

    /// How many item numbers its lists hold, all together.
    #[cfg(test)]
    pub fn known_items(&self) -> usize {
        let known = self.known.lock();
        known
            .entry_items
            .values()
            .chain(known.range_items.values())
            .map(|l| l.len())
            .sum()
    }

    /// How many counts it holds (single values and ranges).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let known = self.known.lock();
        known.entries.len() + known.ranges.len()
    }

    /// How many things it remembers: counts and lists, empty ones included.
    #[cfg(test)]
    pub fn things(&self) -> usize {
        let known = self.known.lock();
        known.entries.len() + known.ranges.len() + known.entry_items.len() + known.range_items.len()
    }
}

/// The key of one range scan: its pieces, each length-prefixed, then the limit.
pub(crate) fn range_scan_key(pieces: &[Option<&[u8]>], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for piece in pieces {
        match piece {
            Some(bytes) => {
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&(limit as u64).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_counts_and_ranges_up_to_a_bound() {
        let memo = CountMemo::default();
        assert_eq!(memo.entry(b"a"), None);
        memo.remember_entry(b"a", 3);
        assert_eq!(memo.entry(b"a"), Some(3));
        let scan = range_scan_key(&[Some(b"lo"), None, Some(b"hi")], 10);
        assert_eq!(memo.range(&scan), None);
        memo.remember_range(scan.clone(), None);
        assert_eq!(memo.range(&scan), Some(None));
        let per_count = 4 + ENTRY_BYTES;
        for i in 0..(MEMO_BYTES / per_count) as u32 + 5 {
            memo.remember_entry(&i.to_be_bytes(), 1);
        }
        assert!(memo.len() <= MEMO_BYTES / per_count + 2);
        assert!(memo.bytes() <= MEMO_BYTES);
    }

    #[test]
    fn remembers_item_lists_up_to_a_bound_on_their_bytes() {
        let memo = CountMemo::default();
        assert!(memo.items(List::Entry, b"a").is_none());
        memo.remember_items(List::Entry, b"a", Arc::from(vec![1u64, 5, 9]));
        assert_eq!(
            memo.items(List::Entry, b"a").as_deref(),
            Some(&[1u64, 5, 9][..])
        );
        assert!(
            memo.items(List::Range, b"a").is_none(),
            "a range's key is another key"
        );
        let room = (MEMO_BYTES - memo.bytes() - 1 - ENTRY_BYTES) / 8;
        let big: Arc<[u64]> = Arc::from(vec![7u64; room]);
        memo.remember_items(List::Range, b"b", big.clone());
        assert_eq!(memo.items(List::Range, b"b").map(|l| l.len()), Some(room));
        memo.remember_items(List::Entry, b"c", Arc::from(vec![2u64]));
        assert!(
            memo.items(List::Entry, b"c").is_none(),
            "past the bound: not kept"
        );
        // A list remembered again is charged once.
        let bytes = memo.bytes();
        memo.remember_items(List::Entry, b"a", Arc::from(vec![1u64, 5, 9]));
        assert_eq!(memo.bytes(), bytes);
        assert_eq!(memo.known_items(), room + 3);
    }

    /// Searches for values no item holds leave only zero counts and empty lists: they cost no
    /// item numbers, but their keys (up to a filter's longest value) and the maps' slots are
    /// memory all the same.
    #[test]
    fn empty_lists_and_zero_counts_with_long_keys_are_bounded_too() {
        let memo = CountMemo::default();
        let key = |i: usize| {
            let mut k = format!("tag={i}=").into_bytes();
            k.resize(1024, b'x');
            k
        };
        let per_thing = 1024 + ENTRY_BYTES;
        for i in 0..2 * MEMO_BYTES / per_thing {
            memo.remember_entry(&key(i), 0);
            memo.remember_items(List::Entry, &key(i), Arc::from(Vec::<u64>::new()));
            memo.remember_range(key(i), Some(0));
            memo.remember_items(List::Range, &key(i), Arc::from(Vec::<u64>::new()));
        }
        assert!(memo.bytes() <= MEMO_BYTES, "{}", memo.bytes());
        assert!(
            memo.things() <= MEMO_BYTES / per_thing,
            "{} things remembered",
            memo.things()
        );
        // The keys' own bytes: at most the bound's worth are held.
        assert!(memo.things() * 1024 <= MEMO_BYTES);
    }

    #[test]
    fn all_memos_together_are_bounded_and_give_back_what_they_held() {
        // A pool of its own, so that this test does not starve the others' memos.
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            held: AtomicUsize::new(0),
            limit: 4 * MEMO_BYTES,
        }));
        let memos: Vec<CountMemo> = (0..8)
            .map(|_| {
                let memo = CountMemo {
                    known: Mutex::default(),
                    pool,
                };
                memo.remember_items(
                    List::Entry,
                    b"k",
                    Arc::from(vec![0u64; MEMO_BYTES / 8 - 64]),
                );
                memo
            })
            .collect();
        let held: usize = memos.iter().map(|m| m.bytes()).sum();
        assert!(held <= pool.limit, "{held}");
        assert_eq!(pool.held.load(Ordering::Acquire), held);
        assert_eq!(
            memos.iter().filter(|m| m.bytes() == 0).count(),
            4,
            "the last ones found no room"
        );
        drop(memos);
        assert_eq!(
            pool.held.load(Ordering::Acquire),
            0,
            "dropped memos give their bytes back"
        );
        let memo = CountMemo {
            known: Mutex::default(),
            pool,
        };
        memo.remember_entry(b"k", 1);
        assert_eq!(memo.entry(b"k"), Some(1), "room again");
    }

    #[test]
    fn range_keys_tell_their_pieces_apart() {
        let a = range_scan_key(&[Some(b"ab"), Some(b"c")], 10);
        let b = range_scan_key(&[Some(b"a"), Some(b"bc")], 10);
        let c = range_scan_key(&[Some(b"ab"), None, Some(b"c")], 10);
        let d = range_scan_key(&[Some(b"ab"), Some(b"c")], 11);
        assert!(a != b && a != c && a != d && b != c);
    }
}
