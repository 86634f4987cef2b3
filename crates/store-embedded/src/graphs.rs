//! The in-memory graphs of loaded collections: structures derived from the store, which stays
//! the only truth.
//!
//! A collection's graph is read back from its file or built from the store the first time a
//! read needs it, on that thread, holding no lock that a write takes. Commits that land
//! meanwhile are queued on the loading collection and applied before its graph is published,
//! so no write (to it or to any other collection) waits for a build; reads of the collection
//! being built wait for it. Each loaded collection has its own lock for taking changes, so a
//! rebuild swapping in or a save capturing its graph holds up that collection's writes only,
//! and only briefly.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

use crate::collection::{CollectionRecord, Effects};
use crate::count_memo::CountMemo;
use crate::group_commit::panic_message;
use crate::hnsw::Extent;
use crate::vectors::GraphOrigin;
use crate::{Error, Hnsw};

/// Tombstones trigger a rebuild once they are this share of a graph's nodes (and at least
/// [`REBUILD_MIN_TOMBSTONES`]).
pub const REBUILD_TOMBSTONE_SHARE: f64 = 0.2;
pub const REBUILD_MIN_TOMBSTONES: usize = 256;

/// A committed change to one collection, as its graph takes it.
pub(crate) struct Change {
    pub record: CollectionRecord,
    pub effects: Effects,
}

/// What a loaded collection holds.
pub(crate) struct State {
    /// The record as of the last change the graph took.
    pub record: CollectionRecord,
    pub graph: Arc<Hnsw>,
    pub origin: GraphOrigin,
    /// The payload counts the planner read since the record's change; a new one with each.
    pub counts: Arc<CountMemo>,
    /// A background rebuild is running.
    rebuilding: bool,
}

impl State {
    pub fn new(record: CollectionRecord, graph: Hnsw, origin: GraphOrigin) -> State {
        State {
            record,
            graph: Arc::new(graph),
            origin,
            counts: Arc::default(),
            rebuilding: false,
        }
    }

    /// Takes a change committed while the graph was being built. Its effects may already be
    /// in the graph (it committed before the build read the store): adds at or below the
    /// graph's last key are skipped, deletes are idempotent, and an older record is ignored.
    fn catch_up(&mut self, change: Change) {
        take_effects(&self.graph, &change.effects);
        let (r, new) = (&self.record, &change.record);
        if new.next_item >= r.next_item && new.deletion_seq >= r.deletion_seq {
            self.record = change.record;
        }
        self.counts = Arc::default();
    }
}

/// A loaded collection.
pub(crate) struct Loaded {
    state: RwLock<State>,
    /// Held while the graph takes a change, while a rebuild swaps its graph in, and while a
    /// save captures the graph with the record it matches.
    changes: Mutex<()>,
    /// Changes committed and not yet in the graph, in commit order, each with its number.
    /// The group-commit leader only queues them (it never waits on a graph); each writer then
    /// has the graph take the queue up to its own change before it is answered, so one
    /// collection whose graph is busy (a long walk holds its nodes) holds up only its own
    /// writers, never the leader or another collection's writes.
    queued: Mutex<VecDeque<(u64, Change)>>,
    /// The number the next queued change gets.
    next_change: AtomicU64,
    /// The number of the last change the graph took (0: none yet).
    taken: AtomicU64,
    /// Tests make the next rebuild fail part-way.
    #[cfg(test)]
    fail_next_rebuild: std::sync::atomic::AtomicBool,
}

impl Loaded {
    fn new(state: State) -> Arc<Loaded> {
        Arc::new(Loaded {
            state: RwLock::new(state),
            changes: Mutex::new(()),
            queued: Mutex::new(VecDeque::new()),
            next_change: AtomicU64::new(1),
            taken: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_rebuild: Default::default(),
        })
    }

    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// The graph, the record it matches, and its node count and entry point as of that
    /// record: every node below the count is fully linked (changes take this lock while they
    /// insert), so a save writes exactly those while later changes go on.
    pub fn capture(self: &Arc<Self>) -> (Arc<Hnsw>, CollectionRecord, Extent) {
        let _changes = self.changes.lock();
        self.take_queued(u64::MAX);
        let s = self.state.read();
        let extent = s.graph.extent();
        (s.graph.clone(), s.record.clone(), extent)
    }

    /// Queues a change committed after the graph was published; the graph takes it at the
    /// latest when [`Loaded::take_until`] is called with the number answered.
    pub fn queue(&self, change: Change) -> u64 {
        let mut queued = self.queued.lock();
        let number = self.next_change.fetch_add(1, Ordering::AcqRel);
        queued.push_back((number, change));
        number
    }

    /// Has the graph take every queued change up to number `number` (those before it too).
    pub fn take_until(self: &Arc<Self>, number: u64) {
        if self.taken.load(Ordering::Acquire) >= number {
            return;
        }
        let _changes = self.changes.lock();
        self.take_queued(number);
    }

    /// [`Loaded::take_until`] with the change lock held.
    fn take_queued(self: &Arc<Self>, number: u64) {
        while self.taken.load(Ordering::Acquire) < number {
            let Some((n, change)) = self.queued.lock().pop_front() else {
                break;
            };
            self.take_locked(change);
            self.taken.store(n, Ordering::Release);
        }
    }

    /// Takes a change committed after the graph was published, now.
    #[cfg(test)]
    fn take(self: &Arc<Self>, change: Change) {
        let n = self.queue(change);
        self.take_until(n);
    }

    /// Takes one change; the caller holds the change lock.
    fn take_locked(self: &Arc<Self>, change: Change) {
        // The graph takes inserts and deletes while searches run; only the record swap needs
        // the state's write lock.
        let graph = self.state.read().graph.clone();
        take_effects(&graph, &change.effects);
        let mut s = self.state.write();
        s.record = change.record;
        s.counts = Arc::default();
        let tombstones = graph.deleted();
        if !s.rebuilding
            && tombstones >= REBUILD_MIN_TOMBSTONES
            && tombstones as f64 >= REBUILD_TOMBSTONE_SHARE * graph.len() as f64
        {
            s.rebuilding = true;
            let loaded = self.clone();
            std::thread::spawn(move || loaded.rebuild());
        }
    }

    /// Builds a graph of the live nodes only, while searches and writes go on against the old
    /// one; then, holding this collection's change lock, adds what was appended meanwhile,
    /// applies the deletions made meanwhile and swaps the new graph in. A panic is logged and
    /// leaves the old graph serving; the next change may start another rebuild.
    fn rebuild(&self) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.rebuild_now())) {
            let mut s = self.state.write();
            tracing::error!(
                collection = %s.record.key,
                reason = %panic_message(&*panic),
                "graph rebuild failed; the old graph keeps serving"
            );
            s.rebuilding = false;
        }
    }

    fn rebuild_now(&self) {
        let old = self.state.read().graph.clone();
        let started = std::time::Instant::now();
        // One read: the live nodes and the node count they were read at.
        let (live, end) = old.items_from(0);
        let new = Hnsw::new(*old.params());
        new.insert_as_build(&as_refs(&live));
        #[cfg(test)]
        if self
            .fail_next_rebuild
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("injected rebuild failure");
        }
        let _changes = self.changes.lock();
        let (late, _) = old.items_from(end);
        new.insert(&as_refs(&late));
        for (key, _) in &live {
            if old.is_deleted(*key) == Some(true) {
                new.delete(*key);
            }
        }
        let mut s = self.state.write();
        tracing::info!(
            collection = %s.record.key,
            removed = old.deleted(),
            nodes = new.len(),
            ms = started.elapsed().as_millis() as u64,
            "graph rebuilt without its tombstones"
        );
        s.graph = Arc::new(new);
        s.rebuilding = false;
    }
}

fn as_refs(items: &[(u64, Vec<f32>)]) -> Vec<(u64, &[f32])> {
    items.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

/// A change's deletions and additions in a graph; additions it already holds are skipped.
fn take_effects(graph: &Hnsw, effects: &Effects) {
    for key in &effects.removed {
        graph.delete(*key);
    }
    let last = graph.last_key();
    let fresh: Vec<(u64, &[f32])> = effects
        .added
        .iter()
        .filter(|(k, _)| last.is_none_or(|last| *k > last))
        .map(|(k, v)| (*k, v.as_slice()))
        .collect();
    graph.insert(&fresh);
}

/// A queued change: the graph that takes it and its number there.
pub(crate) struct Ticket {
    pub id: u64,
    pub loaded: Arc<Loaded>,
    pub number: u64,
}

impl Ticket {
    /// Has the graph take the change (and those queued before it).
    pub fn take(&self) {
        self.loaded.take_until(self.number);
    }
}

enum Slot {
    /// Being built; the changes committed since the build started wait here.
    Loading(Arc<Mutex<Vec<Change>>>),
    Ready(Arc<Loaded>),
}

/// Every loaded or loading collection, by collection number.
#[derive(Default)]
pub(crate) struct Graphs {
    slots: Mutex<HashMap<u64, Slot>>,
    /// Signalled whenever a loading slot is published or given up.
    settled: Condvar,
    /// Tests hold builds here to see what waits for them.
    #[cfg(test)]
    pub gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Graphs {
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// The collection, loading it with `build` (which reads the store) if it is neither loaded
    /// nor loading; waits for a load already under way. `None` when the collection does not
    /// exist (or was dropped while it loaded).
    pub fn load(
        &self,
        id: u64,
        build: impl FnOnce() -> Result<Option<State>, Error>,
    ) -> Result<Option<Arc<Loaded>>, Error> {
        let pending = {
            let mut slots = self.slots.lock();
            loop {
                match slots.get(&id) {
                    Some(Slot::Ready(l)) => return Ok(Some(l.clone())),
                    Some(Slot::Loading(_)) => self.settled.wait(&mut slots),
                    None => break,
                }
            }
            let pending = Arc::new(Mutex::new(Vec::new()));
            slots.insert(id, Slot::Loading(pending.clone()));
            pending
        };
        let mut claim = Claim {
            graphs: self,
            id,
            pending: &pending,
            published: false,
        };
        #[cfg(test)]
        {
            let gate = self.gate.lock().take();
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
        }
        let Some(mut state) = build()? else {
            return Ok(None);
        };
        loop {
            let changes = {
                let mut slots = self.slots.lock();
                if !claim.is_ours(&slots) {
                    return Ok(None); // dropped while it loaded
                }
                let changes = std::mem::take(&mut *pending.lock());
                if changes.is_empty() {
                    let loaded = Loaded::new(state);
                    slots.insert(id, Slot::Ready(loaded.clone()));
                    claim.published = true;
                    self.settled.notify_all();
                    return Ok(Some(loaded));
                }
                changes
            };
            for change in changes {
                state.catch_up(change);
            }
        }
    }

    /// Every published collection.
    pub fn ready(&self) -> Vec<Arc<Loaded>> {
        self.slots
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(l) => Some(l.clone()),
                Slot::Loading(_) => None,
            })
            .collect()
    }

    /// After a commit: its changes queued for the loaded graphs, and for loading ones
    /// (unloaded ones read the store when they load); dropped collections are forgotten. A
    /// collection the commit created starts loaded with an empty graph. Nothing here waits on
    /// a graph: each change's [`Ticket`] (one per change, in order; `None` where no loaded
    /// graph takes it) has it taken.
    pub fn apply(&self, changes: Vec<Change>, dropped: &[u64]) -> Vec<Option<Ticket>> {
        if !dropped.is_empty() {
            let mut slots = self.slots.lock();
            for id in dropped {
                slots.remove(id);
            }
            self.settled.notify_all();
        }
        let mut tickets = Vec::with_capacity(changes.len());
        for change in changes {
            let id = change.record.id;
            let loaded = {
                let mut slots = self.slots.lock();
                match slots.get(&id) {
                    Some(Slot::Ready(l)) => l.clone(),
                    Some(Slot::Loading(pending)) => {
                        pending.lock().push(change);
                        tickets.push(None);
                        continue;
                    }
                    None if change.effects.created => {
                        let graph = Hnsw::new(change.record.params.graph());
                        let state = State::new(
                            change.record.clone(),
                            graph,
                            GraphOrigin::Rebuilt { distrusted: None },
                        );
                        let l = Loaded::new(state);
                        slots.insert(id, Slot::Ready(l.clone()));
                        l
                    }
                    None => {
                        tickets.push(None);
                        continue;
                    }
                }
            };
            let number = loaded.queue(change);
            tickets.push(Some(Ticket { id, loaded, number }));
        }
        tickets
    }

    /// Forgets collections whose graphs may have missed a change (a panic while applying
    /// one); they are read again from the store when next used.
    pub fn forget(&self, ids: &[u64]) {
        let mut slots = self.slots.lock();
        for id in ids {
            slots.remove(id);
        }
        self.settled.notify_all();
    }
}

/// A load in progress; if it ends without publishing (an error, a panic, a drop), its slot is
/// removed so the next reader starts over, and waiters are woken.
struct Claim<'a> {
    graphs: &'a Graphs,
    id: u64,
    pending: &'a Arc<Mutex<Vec<Change>>>,
    published: bool,
}

impl Claim<'_> {
    fn is_ours(&self, slots: &HashMap<u64, Slot>) -> bool {
        matches!(slots.get(&self.id), Some(Slot::Loading(p)) if Arc::ptr_eq(p, self.pending))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        let mut slots = self.graphs.slots.lock();
        if self.is_ours(&slots) {
            slots.remove(&self.id);
        }
        self.graphs.settled.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::collection::{CollectionKey, CollectionParams};
    use aimp_index::Metric;

    fn record() -> CollectionRecord {
        CollectionRecord {
            id: 1,
            key: CollectionKey::new("ws", "m", "c", "s"),
            params: CollectionParams::new(4, Metric::L2),
            next_item: 0,
            count: 0,
            deletion_seq: 0,
            payload_indexed: true,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn change(added: std::ops::Range<u64>, removed: Vec<u64>) -> Change {
        let vector = |k: u64| vec![k as f32, (k % 7) as f32, 1.0, -(k as f32) / 3.0];
        Change {
            record: record(),
            effects: Effects {
                created: false,
                removed,
                added: added.map(|k| (k, vector(k))).collect(),
            },
        }
    }

    #[test]
    fn a_rebuild_under_concurrent_appends_keeps_every_live_item_once() {
        for _round in 0..20 {
            let graph = Hnsw::new(record().params.graph());
            let origin = GraphOrigin::Rebuilt { distrusted: None };
            let loaded = Loaded::new(State::new(record(), graph, origin));
            loaded.take(change(0..800, Vec::new()));
            // 200 tombstones: fewer than start a rebuild by themselves.
            loaded.take(change(0..0, (0..200).map(|k| k * 4).collect()));
            let appender = {
                let loaded = loaded.clone();
                std::thread::spawn(move || {
                    for b in 0..40 {
                        loaded.take(change(800 + b * 10..810 + b * 10, Vec::new()));
                    }
                })
            };
            loaded.rebuild_now();
            appender.join().expect("appends");
            let graph = loaded.state().graph.clone();
            let (live, _) = graph.items_from(0);
            let keys: Vec<u64> = live.iter().map(|(k, _)| *k).collect();
            let want: BTreeSet<u64> = (0..1200).filter(|k| k % 4 != 0 || *k >= 800).collect();
            assert_eq!(keys.len(), want.len(), "every live item once");
            assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), want);
        }
    }

    #[test]
    fn every_change_starts_the_planner_on_fresh_counts() {
        let graph = Hnsw::new(record().params.graph());
        let origin = GraphOrigin::Rebuilt { distrusted: None };
        let loaded = Loaded::new(State::new(record(), graph, origin));
        let before = loaded.state().counts.clone();
        before.remember_entry(b"tag=a", 3);
        loaded.take(change(0..10, Vec::new()));
        let after = loaded.state().counts.clone();
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(
            after.entry(b"tag=a"),
            None,
            "counts from before the change are gone"
        );
        // A change queued while the graph loaded, too.
        let mut state = State::new(
            record(),
            Hnsw::new(record().params.graph()),
            GraphOrigin::Rebuilt { distrusted: None },
        );
        state.counts.remember_entry(b"tag=a", 3);
        state.catch_up(change(0..5, Vec::new()));
        assert_eq!(state.counts.entry(b"tag=a"), None);
    }

    #[test]
    fn a_failed_rebuild_leaves_the_old_graph_serving_and_the_next_one_runs() {
        let graph = Hnsw::new(record().params.graph());
        let origin = GraphOrigin::Rebuilt { distrusted: None };
        let loaded = Loaded::new(State::new(record(), graph, origin));
        loaded.take(change(0..100, Vec::new()));
        loaded.take(change(0..0, (0..30).collect()));
        loaded.state.write().rebuilding = true;
        loaded
            .fail_next_rebuild
            .store(true, std::sync::atomic::Ordering::SeqCst);
        loaded.rebuild();
        let s = loaded.state();
        assert!(!s.rebuilding, "a later change may start another rebuild");
        assert_eq!(
            (s.graph.len(), s.graph.live()),
            (100, 70),
            "the old graph serves"
        );
        drop(s);
        loaded.rebuild();
        let s = loaded.state();
        assert_eq!(
            (s.graph.len(), s.graph.live()),
            (70, 70),
            "rebuilt without tombstones"
        );
    }
}
