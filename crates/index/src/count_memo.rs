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

use parking_lot::Mutex;

/// Counts of single values kept per memo; past it, new ones are read from the store each time.
const ENTRIES_REMEMBERED: usize = 1 << 16;
/// Range totals kept per memo.
const RANGES_REMEMBERED: usize = 4096;
/// Item numbers kept per memo, in all its lists together (16 MiB); past it, lists are read
/// from the store each time.
const ITEMS_REMEMBERED: usize = 1 << 21;

/// Which kind of item list a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Entry,
    Range,
}

#[derive(Debug, Default)]
pub(crate) struct CountMemo {
    known: Mutex<Known>,
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
    /// Item numbers in both, all lists together.
    items_held: usize,
}

impl CountMemo {
    /// How many items hold `entry`, if remembered.
    pub fn entry(&self, entry: &[u8]) -> Option<u64> {
        self.known.lock().entries.get(entry).copied()
    }

    pub fn remember_entry(&self, entry: &[u8], count: u64) {
        let mut known = self.known.lock();
        if known.entries.len() < ENTRIES_REMEMBERED {
            known.entries.insert(entry.to_vec(), count);
        }
    }

    /// A range's total, if remembered: `Some(None)` when it was past its limit.
    pub fn range(&self, scan: &[u8]) -> Option<Option<u64>> {
        self.known.lock().ranges.get(scan).copied()
    }

    pub fn remember_range(&self, scan: Vec<u8>, total: Option<u64>) {
        let mut known = self.known.lock();
        if known.ranges.len() < RANGES_REMEMBERED {
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
        let held = known.items_held + items.len();
        let lists = match list {
            List::Entry => &mut known.entry_items,
            List::Range => &mut known.range_items,
        };
        if held <= ITEMS_REMEMBERED && !lists.contains_key(key) {
            lists.insert(key.to_vec(), items);
            known.items_held = held;
        }
    }

    /// How many item numbers its lists hold, all together.
    #[cfg(test)]
    pub fn known_items(&self) -> usize {
        self.known.lock().items_held
    }

    /// How many counts it holds (single values and ranges).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let known = self.known.lock();
        known.entries.len() + known.ranges.len()
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
        for i in 0..ENTRIES_REMEMBERED as u32 + 5 {
            memo.remember_entry(&i.to_be_bytes(), 1);
        }
        assert!(memo.len() <= ENTRIES_REMEMBERED + 1);
    }

    #[test]
    fn remembers_item_lists_up_to_a_bound_on_their_items() {
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
        let big: Arc<[u64]> = Arc::from(vec![7u64; ITEMS_REMEMBERED - 3]);
        memo.remember_items(List::Range, b"b", big.clone());
        assert_eq!(
            memo.items(List::Range, b"b").map(|l| l.len()),
            Some(ITEMS_REMEMBERED - 3)
        );
        memo.remember_items(List::Entry, b"c", Arc::from(vec![2u64]));
        assert!(
            memo.items(List::Entry, b"c").is_none(),
            "past the bound: not kept"
        );
        // A list remembered again is counted once.
        memo.remember_items(List::Entry, b"a", Arc::from(vec![1u64, 5, 9]));
        assert_eq!(memo.known.lock().items_held, ITEMS_REMEMBERED);
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
