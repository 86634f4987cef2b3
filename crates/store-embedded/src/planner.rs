//! How a filtered search is answered: the planner, which picks exact search over the
//! filter's matches or the filtered graph walk for each query, and what it remembers of the
//! walks it tried.

use std::collections::HashMap;

use crate::collection::{self, ITEMS};
use crate::count_memo::CountMemo;
use crate::{Error, Filter, Plan, payload};

/// Filter checks after which the planner's probe decides whether to go on walking: the first
/// two nodes' neighbours at the bottom level (2M = 32 each at the default M). At 64, a filter
/// passing a tenth of the items at random (the probe's threshold is then 0.4) goes on with a
/// chance under 10⁻⁹, and one passing 70 % of the nodes near the query is stopped with a
/// chance under 10⁻³ (then answered exactly: slower, never less exact).
const PROBE_CHECKS: usize = 64;

/// Probes of one filter failed this many times in a row: the filter's matches are not near
/// the queries, and it is answered exactly without probing...
const FAILURES_REMEMBERED: u8 = 8;
/// ...except one query in this many, which probes again, so that a filter whose matches come
/// to lie near the queries is walked again.
const REPROBE_EVERY: u8 = 16;
/// Past the exact limit, a filter passing at least this share of the items is answered by the
/// walk without it at `ef / share` (at most four times as wide), then checked nearest first.
const WIDE_SHARE: f64 = 0.25;
/// Filters remembered per collection; past it, that collection's memory starts again (its
/// own only: one tenant's many filters never clear another's).
const FILTERS_PER_COLLECTION: usize = 256;
/// Collections whose filters are remembered; past it, a collection not yet remembered goes
/// without (it probes every query) until a remembered one is dropped.
const COLLECTIONS_REMEMBERED: usize = 4096;

/// How one filtered search is answered. The payload indexes narrow the filter to its
/// candidate items when they can do so within a quarter of [`exact_limit`] items; those
/// (checked against the filter where the indexes alone cannot say) are compared exactly. Up
/// to the limit, a short probe of the walk decides between walking and comparing the
/// matches; where the indexes answer the filter exactly, its matches are read first and the
/// walk tests nodes against them instead of reading items. A filter that passes more than a
/// quarter of the items is asked only about the nearest nodes of a wider walk without it.
/// Any other filter, or one the indexes cannot narrow, is applied inside the graph walk,
/// item by item; a walk that computes more distances than twice the limit (a restrictive
/// filter the indexes could not narrow) gives up for an exact search over every item the
/// filter passes.
pub(crate) struct Planner<'a> {
    pub txn: &'a redb::ReadTransaction,
    pub coll: u64,
    pub filter: &'a Filter,
    pub graph: &'a crate::Hnsw,
    pub query: &'a [f32],
    pub k: usize,
    pub ef: usize,
    pub m: usize,
    pub memory: &'a ProbeMemory,
    /// The collection's counts remembered since its last change.
    pub counts: std::sync::Arc<CountMemo>,
}

impl Planner<'_> {
    /// The hits (item numbers and distances) and how they were found.
    /// `walk`: filter inside the walk, without narrowing and without giving up.
    pub fn search(
        &self,
        must_be_exact: bool,
        walk: bool,
    ) -> Result<(Vec<crate::hnsw::Neighbour>, Plan), Error> {
        if walk {
            return Ok(match self.walk(usize::MAX, None)? {
                Some(found) => (found, Plan::Walk),
                None => (self.exact(payload::Narrowed::Broad)?, Plan::Exact),
            });
        }
        let reader = payload::Reader::open(self.txn, self.coll)?.remembering(self.counts.clone());
        if must_be_exact {
            return Ok((
                self.exact(reader.narrow(self.filter, usize::MAX)?)?,
                Plan::Exact,
            ));
        }
        let limit = exact_limit(self.graph.live(), self.ef, self.m);
        // Up to a quarter of the limit, the matches are read from the indexes and compared
        // at once: the same work as exact search, and no decision before it.
        if let narrowed @ payload::Narrowed::Among { .. } = reader.narrow(self.filter, limit / 4)? {
            return Ok((self.exact(narrowed)?, Plan::Exact));
        }
        // How many items the filter may pass, bounded from the indexes' counts alone (no
        // item rows read); `None` past the limit or where the indexes cannot say.
        if let Some(m) = reader.estimate(self.filter, limit)? {
            let in_band = m > (limit / 4) as u64;
            // Between a quarter of the limit and the limit, reading every match costs about
            // as much as a walk that meets one in `live / matches` nodes. A filter that
            // follows the vectors (most nodes near the query pass) makes the walk far
            // cheaper. Where the indexes answer the filter exactly, its matches are read (from
            // the memo, mostly) and the walk tests nodes against them, reading no item; else
            // a short probe of the walk, asking the items, tells which before any is read.
            if in_band && !payload::answered_by_indexes(self.filter) {
                let remembered = (self.coll, self.filter.fingerprint());
                if self.memory.should_probe(remembered) {
                    let share = m as f64 / self.graph.live().max(1) as f64;
                    let probe = crate::hnsw::Probe {
                        after: PROBE_CHECKS,
                        min_share: (4.0 * share).min(0.5),
                    };
                    let walked = self.walk(limit.saturating_mul(2), Some(probe))?;
                    self.memory.record(remembered, walked.is_some());
                    if let Some(found) = walked {
                        return Ok((found, Plan::Walk));
                    }
                }
            }
            match reader.narrow(self.filter, limit)? {
                payload::Narrowed::Among { items, exact: true } if in_band => {
                    return Ok(self.walk_among(&items));
                }
                narrowed @ payload::Narrowed::Among { .. } => {
                    return Ok((self.exact(narrowed)?, Plan::Exact));
                }
                payload::Narrowed::Broad => {}
            }
        }
        // Past the limit, a filter the counts say passes a good share of the items: the walk
        // without it, as wide as the filtered walk would explore, then the filter asked about
        // the nearest found until `k` passed. Where fewer pass (the matches lie away from the
        // query), the filtered walk after all.
        if let Some(share) = reader.share(self.filter, self.graph.live())?
            && share >= WIDE_SHARE
        {
            let wide = (self.ef as f64 / share).ceil() as usize;
            if let Some(found) = self.walk_then_filter(wide)? {
                return Ok((found, Plan::WalkThenFilter));
            }
        }
        // Past the limit, or where the indexes cannot bound the matches: the walk, unprobed,
        // giving up after twice the limit's distances for exact search over the matches.
        if let Some(found) = self.walk(limit.saturating_mul(2), None)? {
            return Ok((found, Plan::Walk));
        }
        Ok((self.exact(payload::Narrowed::Broad)?, Plan::Exact))
    }

    /// Exact search over the filter's matches: the narrowed items (checked against the
    /// filter where the indexes alone cannot say), or every item it passes.
    fn exact(&self, narrowed: payload::Narrowed) -> Result<Vec<crate::hnsw::Neighbour>, Error> {
        let matches = match narrowed {
            payload::Narrowed::Among { items, exact: true } => items,
            payload::Narrowed::Among {
                items,
                exact: false,
            } => payload::verify(self.txn, self.coll, &items, self.filter)?,
            payload::Narrowed::Broad => collection::matching(self.txn, self.coll, self.filter)?,
        };
        Ok(self.graph.exact_among(self.query, self.k, &matches))
    }

    /// The filtered walk, evaluating the filter on each node it keeps as a candidate (reading
    /// the item); `None` when it gave up (past `budget` distances, or on the probe).
    fn walk(
        &self,
        budget: usize,
        probe: Option<crate::hnsw::Probe>,
    ) -> Result<Option<Vec<crate::hnsw::Neighbour>>, Error> {
        self.asking(|pass| {
            self.graph
                .search_within(self.query, self.k, self.ef, Some(pass), budget, probe)
        })
    }

    /// The filtered walk with the filter's matches in hand (ascending): each node is tested
    /// against them instead of reading its item. A probe gives up for exact search over the
    /// matches when the nodes near the query rarely pass, as does a walk that computes more
    /// distances than there are matches (what exact search over them computes).
    fn walk_among(&self, matches: &[u64]) -> (Vec<crate::hnsw::Neighbour>, Plan) {
        let pass = |n: u64| matches.binary_search(&n).is_ok();
        let probe = crate::hnsw::Probe {
            after: PROBE_CHECKS,
            min_share: walk_share(self.ef, self.m, matches.len()),
        };
        match self.graph.search_within(
            self.query,
            self.k,
            self.ef,
            Some(&pass),
            matches.len(),
            Some(probe),
        ) {
            Some(found) => (found, Plan::Walk),
            None => (
                self.graph.exact_among(self.query, self.k, matches),
                Plan::Exact,
            ),
        }
    }

    /// The walk without the filter at breadth `wide`, then the filter asked about the nodes
    /// found, nearest first; `None` when fewer than `k` of them pass.
    fn walk_then_filter(&self, wide: usize) -> Result<Option<Vec<crate::hnsw::Neighbour>>, Error> {
        self.asking(|pass| {
            self.graph
                .search_then_filter(self.query, self.k, wide, pass)
        })
    }

    /// Runs `search` with the filter as a test of item numbers (reading each item), and
    /// returns the first error a read met, if any.
    fn asking<T>(
        &self,
        search: impl FnOnce(&(dyn Fn(u64) -> bool + Sync)) -> T,
    ) -> Result<T, Error> {
        let items = self.txn.open_table(ITEMS)?;
        let failed: parking_lot::Mutex<Option<Error>> = parking_lot::Mutex::new(None);
        let pass = |n: u64| match payload::passes(&items, self.coll, n, self.filter) {
            Ok(yes) => yes,
            Err(e) => {
                failed.lock().get_or_insert(e);
                false
            }
        };
        let found = search(&pass);
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }
}

/// The most matches for which comparing every one costs less than a filtered walk of a graph
/// of `live` nodes. A walk at breadth `ef` looks at about `ef × 2m` neighbours to collect
/// `ef` candidates when every node passes; with a share `s = matches / live` passing it looks
/// at about `1/s` times as many. Exact costs `matches` comparisons: so exact wins while
/// `matches² < ef × 2m × live`.
fn exact_limit(live: usize, ef: usize, m: usize) -> usize {
    ((ef * 2 * m) as f64 * live as f64).sqrt() as usize
}

/// The least share of the nodes near the query that must pass for the filtered walk to cost
/// less than comparing all `matches`: the walk at breadth `ef` computes some `ef × 2m`
/// distances when every node passes, and about `1 / share` times as many otherwise.
fn walk_share(ef: usize, m: usize, matches: usize) -> f64 {
    ((ef * 2 * m) as f64 / matches.max(1) as f64).min(0.5)
}

/// What the planner remembers of its probes, per collection and filter (by
/// [`Filter::fingerprint`]): a filter asked again and again (a tenant, a team, a date range)
/// whose matches are not near the queries pays for the probe a few times, not on every query.
/// Forgetting is always safe: it only costs a probe.
#[derive(Debug, Default)]
pub(crate) struct ProbeMemory {
    /// Collection → filter fingerprint → outcome.
    outcomes: parking_lot::Mutex<HashMap<u64, HashMap<u64, Outcome>>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    /// Probes failed in a row.
    failed: u8,
    /// Queries answered without probing since the last probe.
    skipped: u8,
}

impl ProbeMemory {
    /// Whether the query with this filter should probe the walk (else it goes exact).
    pub fn should_probe(&self, (coll, filter): (u64, u64)) -> bool {
        let mut outcomes = self.outcomes.lock();
        let Some(o) = outcomes.get_mut(&coll).and_then(|c| c.get_mut(&filter)) else {
            return true;
        };
        if o.failed < FAILURES_REMEMBERED || o.skipped + 1 >= REPROBE_EVERY {
            return true;
        }
        o.skipped += 1;
        false
    }

    /// How the probe went: `walked` when the walk answered.
    pub fn record(&self, (coll, filter): (u64, u64), walked: bool) {
        let mut outcomes = self.outcomes.lock();
        if outcomes.len() >= COLLECTIONS_REMEMBERED && !outcomes.contains_key(&coll) {
            return;
        }
        let filters = outcomes.entry(coll).or_default();
        if filters.len() >= FILTERS_PER_COLLECTION && !filters.contains_key(&filter) {
            filters.clear();
        }
        let o = filters.entry(filter).or_default();
        o.skipped = 0;
        o.failed = if walked {
            0
        } else {
            o.failed.saturating_add(1)
        };
    }

    /// Forgets a dropped collection's filters.
    pub fn forget(&self, coll: u64) {
        self.outcomes.lock().remove(&coll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_keeps_failing_is_probed_one_query_in_sixteen() {
        let memory = ProbeMemory::default();
        let f = (1, 42);
        for _ in 0..FAILURES_REMEMBERED {
            assert!(memory.should_probe(f));
            memory.record(f, false);
        }
        let probed: Vec<bool> = (0..3 * REPROBE_EVERY as usize)
            .map(|_| {
                let yes = memory.should_probe(f);
                if yes {
                    memory.record(f, false);
                }
                yes
            })
            .collect();
        assert_eq!(probed.iter().filter(|p| **p).count(), 3, "{probed:?}");
        assert!(probed[REPROBE_EVERY as usize - 1] && !probed[0]);
        // Another filter, and the same filter in another collection, still probe.
        assert!(memory.should_probe((1, 43)));
        assert!(memory.should_probe((2, 42)));
    }

    #[test]
    fn one_walk_that_pays_makes_the_filter_probed_again() {
        let memory = ProbeMemory::default();
        let f = (1, 7);
        for _ in 0..FAILURES_REMEMBERED {
            memory.record(f, false);
        }
        assert!(!memory.should_probe(f));
        memory.record(f, true);
        assert!((0..REPROBE_EVERY).all(|_| memory.should_probe(f)));
        memory.record(f, false);
        memory.forget(1);
        for _ in 0..FAILURES_REMEMBERED - 1 {
            memory.record(f, false);
        }
        assert!(memory.should_probe(f), "forgotten with its collection");
    }

    #[test]
    fn the_memory_is_bounded_per_collection_and_one_cannot_clear_anothers() {
        let memory = ProbeMemory::default();
        // Collection 1's filter is remembered as failing: it is not probed every query.
        for _ in 0..FAILURES_REMEMBERED {
            memory.record((1, 7), false);
        }
        assert!(!memory.should_probe((1, 7)));
        // Another collection (another tenant) floods the memory with filters of its own.
        for f in 0..100_000u64 {
            memory.record((2, f), false);
        }
        assert!(
            !memory.should_probe((1, 7)),
            "collection 1's memory was cleared"
        );
        let held: usize = memory.outcomes.lock().values().map(HashMap::len).sum();
        assert!(held <= 2 * FILTERS_PER_COLLECTION, "{held}");
        // And many collections: bounded, the remembered ones kept.
        for c in 3..(COLLECTIONS_REMEMBERED as u64 + 100) {
            memory.record((c, 1), false);
        }
        assert!(memory.outcomes.lock().len() <= COLLECTIONS_REMEMBERED);
        assert!(!memory.should_probe((1, 7)));
        memory.forget(1);
        assert!(memory.should_probe((1, 7)));
    }
}
