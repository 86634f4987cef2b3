//! Our HNSW graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
//! using Hierarchical Navigable Small World graphs"), laid out the way the fast
//! implementations are:
//!
//! - all vectors of the graph in one contiguous `Vec<f32>`;
//! - level-0 neighbour lists as one flat array of fixed-capacity `u32` slots (`1 + 2M` per
//!   node: a count, then the slots), upper levels as one small slice per node that has them
//!   (`1 + M` per level);
//! - the paper's neighbour-selection heuristic (algorithm 4) for a new node's lists (up to
//!   `2M` at level 0, as hnsw_rs, `M` above) and for a full list that gains a reverse link.
//!   Measured on clustered 100,000 × 384 cosine data at ef 64: recall@10 0.971 with `M` new
//!   links (hnswlib's rule), 0.978 with `2M`; also filling the slots the heuristic leaves free
//!   with pruned candidates reached 0.981 but built 1.09× slower than hnswlib, and keeping only
//!   the nearest on overflow (no heuristic) fell to 0.909;
//! - a per-thread, epoch-stamped visited set ([`crate::visited`]);
//! - no closures around distance calls inside the dispatched code (they would be compiled
//!   without the SIMD target features and call the kernels out of line);
//! - SIMD distances chosen at run time ([`crate::distance`]), one dispatch per walk;
//! - parallel insertion: nodes are appended under a short exclusive lock, then linked by many
//!   threads under the shared lock, each list guarded by one of a set of striped mutexes;
//! - searches that skip tombstones (and any caller filter) inside the walk, so `k` live results
//!   come back whenever `k` live nodes are reachable.
//!
//! Node numbers are dense (`0..len`); each node carries a caller key (`u64`, strictly
//! increasing in insertion order, so key → node is a binary search).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

use parking_lot::{Mutex, RwLock};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::distance::Metric;
use crate::visited::{self, Visited};

/// Levels above this are never drawn (the chance is about `M^-16`).
const MAX_LEVEL: u8 = 16;
/// Striped locks guarding neighbour lists: node `n` uses `LOCKS[n % len]`.
const LOCK_STRIPES: usize = 4096;
const EMPTY: u64 = u64::MAX;

/// The shape of a graph; stored with its collection and checked on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HnswParams {
    pub dim: usize,
    pub metric: Metric,
    /// Links per node on the upper levels; level 0 keeps `2 * m`.
    pub m: usize,
    pub ef_construction: usize,
    /// Seed of the level draw: the same inputs in the same order give the same levels.
    pub seed: u64,
}

impl HnswParams {
    pub fn new(dim: usize, metric: Metric) -> Self {
        HnswParams {
            dim,
            metric,
            m: 16,
            ef_construction: 200,
            seed: 0x5eed,
        }
    }
}

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub key: u64,
    pub distance: f32,
}

/// A distance with a total order (NaN sorts last), paired with its node.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// The node arrays. Appends take the graph's write lock; everything else shares it.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    pub(crate) vectors: Vec<f32>,
    pub(crate) keys: Vec<u64>,
    pub(crate) levels: Vec<u8>,
    pub(crate) level0: Vec<AtomicU32>,
    pub(crate) upper: Vec<Box<[AtomicU32]>>,
    pub(crate) deleted: Vec<AtomicU64>,
}

/// How much of a graph a save writes: its first `nodes` nodes, entered at `entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub nodes: usize,
    pub entry: u64,
}

/// An HNSW graph over `f32` vectors.
#[derive(Debug)]
pub struct Hnsw {
    params: HnswParams,
    level_mult: f64,
    nodes: RwLock<Nodes>,
    locks: Box<[Mutex<()>]>,
    /// `(level << 32) | node` of the entry point, or [`EMPTY`].
    entry: AtomicU64,
    entry_lock: Mutex<()>,
    deleted_count: AtomicUsize,
    arch: pulp::Arch,
}

impl Hnsw {
    pub fn new(params: HnswParams) -> Hnsw {
        assert!(params.m >= 2, "m must be at least 2");
        assert!(params.dim >= 1, "dim must be positive");
        Hnsw {
            level_mult: 1.0 / (params.m as f64).ln(),
            params,
            nodes: RwLock::new(Nodes::default()),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            deleted_count: AtomicUsize::new(0),
            arch: pulp::Arch::new(),
        }
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Nodes in the graph, tombstones included.
    pub fn len(&self) -> usize {
        self.nodes.read().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes marked deleted.
    pub fn deleted(&self) -> usize {
        self.deleted_count.load(Relaxed)
    }

    /// Live nodes.
    pub fn live(&self) -> usize {
        self.len() - self.deleted()
    }

    /// The largest key in the graph.
    pub fn last_key(&self) -> Option<u64> {
        self.nodes.read().keys.last().copied()
    }

    /// Adds vectors under keys larger than every key already in the graph, linking them in
    /// parallel. Vectors are prepared for the metric (normalised for cosine) here.
    ///
    /// # Panics
    /// When a vector has the wrong length or a key is not larger than the previous one: the
    /// store validates both before anything reaches the graph.
    pub fn insert(&self, items: &[(u64, &[f32])]) {
        self.link_new(items, None);
    }

    /// [`Hnsw::insert`] for a whole graph's worth of vectors: linked on the build pool, at a
    /// lower priority than writes and queries (see [`crate::build_pool`]).
    pub fn insert_as_build(&self, items: &[(u64, &[f32])]) {
        self.link_new(items, crate::build_pool::pool());
    }

    fn link_new(&self, items: &[(u64, &[f32])], pool: Option<&rayon::ThreadPool>) {
        if items.is_empty() {
            return;
        }
        let first = self.append(items);
        let nodes = self.nodes.read();
        let end = nodes.keys.len() as u32;
        let link = || {
            (first..end).into_par_iter().for_each(|node| {
                self.arch.dispatch(Link {
                    graph: self,
                    nodes: &nodes,
                    node,
                });
            })
        };
        match pool {
            Some(pool) => pool.install(link),
            None => link(),
        }
    }

    fn append(&self, items: &[(u64, &[f32])]) -> u32 {
        let p = &self.params;
        let mut nodes = self.nodes.write();
        let first = nodes.keys.len();
        assert!(
            first + items.len() < u32::MAX as usize,
            "a graph holds fewer than 2^32 nodes"
        );
        let mut last = nodes.keys.last().copied();
        nodes.vectors.reserve(items.len() * p.dim);
        crate::huge_pages::advise(&nodes.vectors);
        for (i, (key, v)) in items.iter().enumerate() {
            assert_eq!(v.len(), p.dim, "vector length");
            assert!(last.is_none_or(|l| *key > l), "keys must increase");
            last = Some(*key);
            let prepared = p.metric.prepare(v);
            nodes.vectors.extend_from_slice(&prepared);
            nodes.keys.push(*key);
            let level = self.draw_level(*key);
            nodes.levels.push(level);
            let slots = 1 + 2 * p.m;
            let len0 = nodes.level0.len();
            nodes.level0.resize_with(len0 + slots, || AtomicU32::new(0));
            let upper: Box<[AtomicU32]> = (0..usize::from(level) * (1 + p.m))
                .map(|_| AtomicU32::new(0))
                .collect();
            nodes.upper.push(upper);
            let node = first + i;
            if node / 64 >= nodes.deleted.len() {
                nodes.deleted.push(AtomicU64::new(0));
            }
        }
        first as u32
    }

    /// `floor(-ln(u) / ln(M))` for a uniform `u` derived from the seed and the key.
    fn draw_level(&self, key: u64) -> u8 {
        let bits = splitmix64(self.params.seed ^ splitmix64(key));
        let u = ((bits >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
        let level = (-u.ln() * self.level_mult).floor();
        level.min(f64::from(MAX_LEVEL)) as u8
    }

    /// Marks the node of `key` deleted; searches skip it from now on. False when the key is
    /// not in the graph or was already deleted.
    pub fn delete(&self, key: u64) -> bool {
        let nodes = self.nodes.read();
        let Ok(node) = nodes.keys.binary_search(&key) else {
            return false;
        };
        let bit = 1u64 << (node % 64);
        let before = nodes.deleted[node / 64].fetch_or(bit, AcqRel);
        let fresh = before & bit == 0;
        if fresh {
            self.deleted_count.fetch_add(1, Relaxed);
        }
        fresh
    }

    pub fn is_deleted(&self, key: u64) -> Option<bool> {
        let nodes = self.nodes.read();
        let node = nodes.keys.binary_search(&key).ok()?;
        Some(nodes.is_deleted(node as u32))
    }

    /// The `k` nearest live nodes to `query`, exploring `max(ef, k)` candidates. `filter`
    /// (when given) further restricts which keys may be returned.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<Neighbour> {
        self.search_within(query, k, ef, filter, usize::MAX, None)
            .unwrap_or_default()
    }

    /// [`Hnsw::search`], giving up (`None`) once the bottom-level walk has computed more than
    /// `limit` distances, or, with a `probe`, once the filter has been asked about
    /// `probe.after` nodes and passed fewer than `probe.min_share` of them: what a caller with
    /// a cheaper way to answer (exact search over the items a filter matches) stops a walk
    /// that a restrictive filter would keep going with.
    pub fn search_within(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
        limit: usize,
        probe: Option<Probe>,
    ) -> Option<Vec<Neighbour>> {
        assert_eq!(query.len(), self.params.dim, "query length");
        if k == 0 {
            return Some(Vec::new());
        }
        let query = self.params.metric.prepare(query);
        let nodes = self.nodes.read();
        self.arch.dispatch(Search {
            graph: self,
            nodes: &nodes,
            query: &query,
            k,
            ef: ef.max(k),
            filter,
            limit,
            probe,
        })
    }

    /// The `k` nearest of the `wide` nearest live nodes that pass `filter`, found by a walk
    /// without the filter and then asking it about those nodes nearest first until `k`
    /// passed; `None` when fewer than `k` of them pass. For a filter that passes a share `s`
    /// of the nodes near the query, a walk at `wide = ef / s` explores about as far as the
    /// filtered walk at `ef` does, and asks the filter about some `k / s` nodes where the
    /// filtered walk asks about every node it keeps as a candidate.
    pub fn search_then_filter(
        &self,
        query: &[f32],
        k: usize,
        wide: usize,
        filter: &(dyn Fn(u64) -> bool + Sync),
    ) -> Option<Vec<Neighbour>> {
        let nearest = self.search(query, wide.max(k), wide.max(k), None);
        let mut kept = Vec::with_capacity(k);
        for n in nearest {
            if kept.len() == k {
                break;
            }
            if filter(n.key) {
                kept.push(n);
            }
        }
        (kept.len() == k).then_some(kept)
    }

    /// The exact `k` nearest live nodes: every vector compared.
    pub fn exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<Neighbour> {
        self.exact_over(query, k, filter, None)
    }

    /// The exact `k` nearest live nodes among the nodes of `keys` (ascending): those vectors
    /// compared and no other. Keys not in the graph are passed over.
    pub fn exact_among(&self, query: &[f32], k: usize, keys: &[u64]) -> Vec<Neighbour> {
        self.exact_over(query, k, None, Some(keys))
    }

    fn exact_over(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
        among: Option<&[u64]>,
    ) -> Vec<Neighbour> {
        assert_eq!(query.len(), self.params.dim, "query length");
        if k == 0 {
            return Vec::new();
        }
        let query = self.params.metric.prepare(query);
        let nodes = self.nodes.read();
        self.arch.dispatch(Exact {
            graph: self,
            nodes: &nodes,
            query: &query,
            k,
            filter,
            among,
        })
    }

    /// The live nodes from node number `from` on, with their vectors, in key order, and the
    /// node count they were read at (where a later call picks up what was appended since).
    pub fn items_from(&self, from: usize) -> (Vec<(u64, Vec<f32>)>, usize) {
        let nodes = self.nodes.read();
        let end = nodes.keys.len();
        let live = (from as u32..end as u32)
            .filter(|&n| !nodes.is_deleted(n))
            .map(|n| {
                (
                    nodes.keys[n as usize],
                    nodes.vector(n, self.params.dim).to_vec(),
                )
            })
            .collect();
        (live, end)
    }

    /// The bytes the graph holds in memory (vectors, links, keys, levels, tombstones).
    pub fn memory_bytes(&self) -> usize {
        let nodes = self.nodes.read();
        let upper: usize = nodes
            .upper
            .iter()
            .map(|u| u.len() * 4 + std::mem::size_of::<Box<[AtomicU32]>>())
            .sum();
        nodes.vectors.capacity() * 4
            + nodes.keys.capacity() * 8
            + nodes.levels.capacity()
            + nodes.level0.capacity() * 4
            + upper
            + nodes.deleted.capacity() * 8
    }

    /// Runs `f` on the node arrays and the packed entry point, with appends held off.
    /// The node count and the packed entry point, read together.
    pub fn extent(&self) -> Extent {
        self.with_nodes(|nodes, entry| Extent {
            nodes: nodes.keys.len(),
            entry,
        })
    }

    pub(crate) fn with_nodes<R>(&self, f: impl FnOnce(&Nodes, u64) -> R) -> R {
        let nodes = self.nodes.read();
        f(&nodes, self.entry.load(Acquire))
    }

    /// Runs `f` while holding the nodes as a walk does (their read lock): for tests of what
    /// waits behind a long walk.
    #[doc(hidden)]
    pub fn holding_nodes<R>(&self, f: impl FnOnce() -> R) -> R {
        let _nodes = self.nodes.read();
        f()
    }

    /// A graph from arrays read back from a file; the caller has checked their shapes.
    pub(crate) fn from_parts(params: HnswParams, nodes: Nodes, entry: u64) -> Hnsw {
        let graph = Hnsw::new(params);
        let deleted = (0..nodes.keys.len() as u32)
            .filter(|&n| nodes.is_deleted(n))
            .count();
        graph.deleted_count.store(deleted, Relaxed);
        graph.entry.store(entry, Release);
        *graph.nodes.write() = nodes;
        graph
    }

    #[inline(always)]
    fn entry(&self) -> Option<(u32, u8)> {
        let e = self.entry.load(Acquire);
        (e != EMPTY).then_some((e as u32, (e >> 32) as u8))
    }

    #[inline(always)]
    fn lock(&self, node: u32) -> parking_lot::MutexGuard<'_, ()> {
        self.locks[node as usize % LOCK_STRIPES].lock()
    }
}

impl Nodes {
    #[inline(always)]
    fn vector(&self, node: u32, dim: usize) -> &[f32] {
        let start = node as usize * dim;
        &self.vectors[start..start + dim]
    }

    /// The `[count, slots..]` list of `node` at `level`.
    #[inline(always)]
    fn list(&self, node: u32, level: u8, m: usize) -> &[AtomicU32] {
        if level == 0 {
            let width = 1 + 2 * m;
            let start = node as usize * width;
            &self.level0[start..start + width]
        } else {
            let width = 1 + m;
            let start = (usize::from(level) - 1) * width;
            &self.upper[node as usize][start..start + width]
        }
    }

    #[inline(always)]
    fn is_deleted(&self, node: u32) -> bool {
        let n = node as usize;
        self.deleted[n / 64].load(Relaxed) & (1u64 << (n % 64)) != 0
    }
}

/// Reads a list: the count (acquire), then that many slots.
#[inline(always)]
fn read_list(list: &[AtomicU32], out: &mut Vec<u32>) {
    out.clear();
    let count = (list[0].load(Acquire) as usize).min(list.len() - 1);
    out.extend(list[1..=count].iter().map(|s| s.load(Relaxed)));
}

/// Replaces a list (the caller holds its lock): slots first, then the count (release).
#[inline(always)]
fn write_list(list: &[AtomicU32], ids: impl ExactSizeIterator<Item = u32>) {
    let count = ids.len().min(list.len() - 1);
    for (slot, id) in list[1..].iter().zip(ids) {
        slot.store(id, Relaxed);
    }
    list[0].store(count as u32, Release);
}

/// Greedy descent on one level: move to the nearest neighbour until none is nearer.
#[inline(always)]
fn greedy<S: Simd>(
    simd: S,
    g: &Hnsw,
    nodes: &Nodes,
    query: &[f32],
    mut cur: Scored,
    level: u8,
    scratch: &mut Vec<u32>,
) -> Scored {
    let (dim, metric, m) = (g.params.dim, g.params.metric, g.params.m);
    loop {
        let mut moved = false;
        read_list(nodes.list(cur.1, level, m), scratch);
        for &n in scratch.iter() {
            let d = metric.distance(simd, query, nodes.vector(n, dim));
            if d < cur.0 {
                cur = Scored(d, n);
                moved = true;
            }
        }
        if !moved {
            return cur;
        }
    }
}

/// The `ef` nearest nodes on one level, reachable from `entries`, as a max-heap. Only nodes
/// `accept` allows enter the result; all of them are walked through.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn search_level<S: Simd>(
    simd: S,
    g: &Hnsw,
    nodes: &Nodes,
    query: &[f32],
    entries: &[Scored],
    ef: usize,
    level: u8,
    visited: &mut Visited,
    accept: &impl Fn(u32) -> bool,
    scratch: &mut Vec<u32>,
    limit: usize,
    give_up: &impl Fn() -> bool,
) -> Option<BinaryHeap<Scored>> {
    let (dim, metric, m) = (g.params.dim, g.params.metric, g.params.m);
    let mut computed = 0usize;
    let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
    let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
    for &e in entries {
        if visited.insert(e.1) {
            candidates.push(Reverse(e));
            if accept(e.1) {
                results.push(e);
            }
        }
    }
    while results.len() > ef {
        results.pop();
    }
    let mut bound = if results.len() >= ef {
        results.peek().map_or(f32::INFINITY, |s| s.0)
    } else {
        f32::INFINITY
    };
    while let Some(Reverse(c)) = candidates.pop() {
        if c.0 > bound {
            break;
        }
        read_list(nodes.list(c.1, level, m), scratch);
        // Unvisited neighbours first, then their distances, each vector prefetched one step
        // ahead so it is in flight while the previous distance is computed.
        let mut fresh = 0;
        for i in 0..scratch.len() {
            let n = scratch[i];
            if visited.insert(n) {
                scratch[fresh] = n;
                fresh += 1;
            }
        }
        if fresh > 0 {
            touch(nodes.vector(scratch[0], dim));
        }
        computed += fresh;
        if computed > limit || give_up() {
            return None;
        }
        for i in 0..fresh {
            let n = scratch[i];
            if i + 1 < fresh {
                touch(nodes.vector(scratch[i + 1], dim));
            }
            let d = metric.distance(simd, query, nodes.vector(n, dim));
            if d < bound || results.len() < ef {
                candidates.push(Reverse(Scored(d, n)));
                if accept(n) {
                    results.push(Scored(d, n));
                    if results.len() > ef {
                        results.pop();
                    }
                    if results.len() >= ef {
                        bound = results.peek().map_or(f32::INFINITY, |s| s.0);
                    }
                }
            }
        }
    }
    Some(results)
}

/// The paper's heuristic (algorithm 4): walk candidates nearest first and keep one unless a
/// kept node is nearer to it than the base is.
#[inline(always)]
fn select<S: Simd>(simd: S, g: &Hnsw, nodes: &Nodes, sorted: &[Scored], max: usize) -> Vec<Scored> {
    let (dim, metric) = (g.params.dim, g.params.metric);
    let mut kept: Vec<Scored> = Vec::with_capacity(max);
    for &c in sorted {
        if kept.len() >= max {
            break;
        }
        let v = nodes.vector(c.1, dim);
        // A plain loop, not `Iterator::all`: a closure would lose the SIMD target features.
        let mut good = true;
        for k in &kept {
            if metric.distance(simd, v, nodes.vector(k.1, dim)) < c.0 {
                good = false;
                break;
            }
        }
        if good {
            kept.push(c);
        }
    }
    kept
}

/// Links one appended node into the graph.
struct Link<'a> {
    graph: &'a Hnsw,
    nodes: &'a Nodes,
    node: u32,
}

impl WithSimd for Link<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Link {
            graph: g,
            nodes,
            node,
        } = self;
        let (dim, metric, m) = (g.params.dim, g.params.metric, g.params.m);
        let level = nodes.levels[node as usize];
        let Some((entry, top)) = g.entry().or_else(|| {
            let _guard = g.entry_lock.lock();
            if g.entry().is_none() {
                g.entry
                    .store((u64::from(level) << 32) | u64::from(node), Release);
                None
            } else {
                g.entry()
            }
        }) else {
            return; // the first node: nothing to link to
        };
        let query = nodes.vector(node, dim);
        let mut scratch = Vec::with_capacity(2 * m + 1);
        let mut cur = Scored(
            metric.distance(simd, query, nodes.vector(entry, dim)),
            entry,
        );
        for l in (level + 1..=top).rev() {
            cur = greedy(simd, g, nodes, query, cur, l, &mut scratch);
        }
        // First the node's own lists at every level, then the links to it: a walk reaches
        // the node only through those, so it never finds one whose lower lists are still
        // empty (which left a search concurrent with an insert with one result).
        let mut entries = vec![cur];
        let mut visited = visited::take();
        let accept = |n: u32| n != node;
        let mut chosen_at: Vec<(u8, Vec<Scored>)> = Vec::with_capacity(usize::from(level) + 1);
        for l in (0..=level.min(top)).rev() {
            visited.start(nodes.keys.len());
            let found = search_level(
                simd,
                g,
                nodes,
                query,
                &entries,
                g.params.ef_construction,
                l,
                &mut visited,
                &accept,
                &mut scratch,
                usize::MAX,
                &|| false,
            )
            .unwrap_or_default();
            let sorted = found.into_sorted_vec();
            let capacity = if l == 0 { 2 * m } else { m };
            chosen_at.push((l, select(simd, g, nodes, &sorted, capacity)));
            entries = sorted;
        }
        visited::give_back(visited);
        {
            let _guard = g.lock(node);
            for (l, chosen) in &chosen_at {
                write_list(nodes.list(node, *l, m), chosen.iter().map(|s| s.1));
            }
        }
        for (l, chosen) in chosen_at.iter().rev() {
            let capacity = if *l == 0 { 2 * m } else { m };
            for s in chosen {
                add_link(
                    simd,
                    g,
                    nodes,
                    s.1,
                    Scored(s.0, node),
                    *l,
                    capacity,
                    &mut scratch,
                );
            }
        }
        if level > top {
            let _guard = g.entry_lock.lock();
            if g.entry().is_none_or(|(_, t)| level > t) {
                g.entry
                    .store((u64::from(level) << 32) | u64::from(node), Release);
            }
        }
    }
}

/// Adds `new` to `target`'s list at `level`; a full list is chosen again by the heuristic.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn add_link<S: Simd>(
    simd: S,
    g: &Hnsw,
    nodes: &Nodes,
    target: u32,
    new: Scored,
    level: u8,
    capacity: usize,
    scratch: &mut Vec<u32>,
) {
    let (dim, metric, m) = (g.params.dim, g.params.metric, g.params.m);
    let _guard = g.lock(target);
    let list = nodes.list(target, level, m);
    read_list(list, scratch);
    if scratch.contains(&new.1) {
        return;
    }
    if scratch.len() < capacity {
        list[1 + scratch.len()].store(new.1, Relaxed);
        list[0].store(scratch.len() as u32 + 1, Release);
        return;
    }
    let base = nodes.vector(target, dim);
    let mut all: Vec<Scored> = Vec::with_capacity(scratch.len() + 1);
    for &n in scratch.iter() {
        all.push(Scored(metric.distance(simd, base, nodes.vector(n, dim)), n));
    }
    all.push(new);
    all.sort_unstable();
    let kept = select(simd, g, nodes, &all, capacity);
    write_list(list, kept.iter().map(|s| s.1));
}

struct Search<'a> {
    graph: &'a Hnsw,
    nodes: &'a Nodes,
    query: &'a [f32],
    k: usize,
    ef: usize,
    filter: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
    /// Most distances the bottom-level walk may compute before it gives up.
    limit: usize,
    probe: Option<Probe>,
}

/// When a filtered walk gives up early: once the filter has been asked about `after` nodes,
/// if it passed fewer than `min_share` of them (the nodes near the query rarely match, so
/// the walk would have to go far). Checked once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub after: usize,
    pub min_share: f64,
}

impl WithSimd for Search<'_> {
    type Output = Option<Vec<Neighbour>>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Option<Vec<Neighbour>> {
        let Search {
            graph: g,
            nodes,
            query,
            k,
            ef,
            filter,
            limit,
            probe,
        } = self;
        let Some((entry, top)) = g.entry() else {
            return Some(Vec::new());
        };
        // How often the filter was asked, and how often it passed.
        let asked = std::cell::Cell::new(0usize);
        let passed = std::cell::Cell::new(0usize);
        let dim = g.params.dim;
        let mut scratch = Vec::with_capacity(2 * g.params.m + 1);
        let mut cur = Scored(
            g.params
                .metric
                .distance(simd, query, nodes.vector(entry, dim)),
            entry,
        );
        for l in (1..=top).rev() {
            cur = greedy(simd, g, nodes, query, cur, l, &mut scratch);
        }
        let accept = |n: u32| {
            !nodes.is_deleted(n)
                && filter.is_none_or(|f| {
                    asked.set(asked.get() + 1);
                    let yes = f(nodes.keys[n as usize]);
                    passed.set(passed.get() + usize::from(yes));
                    yes
                })
        };
        // Decided once, when the filter has been asked `after` times: a walk that passes the
        // probe is not stopped later by it.
        let probed = std::cell::Cell::new(false);
        let give_up = || {
            crate::cancel::requested()
                || probe.is_some_and(|p| {
                    let n = asked.get();
                    if probed.get() || n < p.after {
                        return false;
                    }
                    probed.set(true);
                    (passed.get() as f64) < p.min_share * n as f64
                })
        };
        let mut visited = visited::take();
        visited.start(nodes.keys.len());
        let found = search_level(
            simd,
            g,
            nodes,
            query,
            &[cur],
            ef,
            0,
            &mut visited,
            &accept,
            &mut scratch,
            limit,
            &give_up,
        );
        visited::give_back(visited);
        let mut sorted = found?.into_sorted_vec();
        sorted.truncate(k);
        Some(neighbours(nodes, sorted))
    }
}

struct Exact<'a> {
    graph: &'a Hnsw,
    nodes: &'a Nodes,
    query: &'a [f32],
    k: usize,
    filter: Option<&'a (dyn Fn(u64) -> bool + Sync)>,
    /// Only the nodes of these keys (ascending), instead of every node.
    among: Option<&'a [u64]>,
}

impl WithSimd for Exact<'_> {
    type Output = Vec<Neighbour>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<Neighbour> {
        let Exact {
            graph: g,
            nodes,
            query,
            k,
            filter,
            among,
        } = self;
        let dim = g.params.dim;
        let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
        let mut consider = |n: u32| {
            if nodes.is_deleted(n) || filter.is_some_and(|f| !f(nodes.keys[n as usize])) {
                return;
            }
            let d = g.params.metric.distance(simd, query, nodes.vector(n, dim));
            if best.len() < k || best.peek().is_some_and(|w| d < w.0) {
                best.push(Scored(d, n));
                if best.len() > k {
                    best.pop();
                }
            }
        };
        match among {
            // Both sorted: each key's node is found after the previous one's. The nodes lie
            // scattered through memory, so each one's vector is asked for a few nodes ahead.
            Some(keys) => {
                let mut from = 0;
                let found: Vec<u32> = keys
                    .iter()
                    .filter_map(|key| {
                        let at = from + nodes.keys[from..].binary_search(key).ok()?;
                        from = at + 1;
                        Some(at as u32)
                    })
                    .collect();
                for (i, &n) in found.iter().enumerate() {
                    if let Some(&next) = found.get(i + AHEAD) {
                        touch_all(nodes.vector(next, dim));
                    }
                    consider(n);
                }
            }
            // In node order: read straight through, which the hardware prefetches itself. A
            // scan whose asker left stops between blocks.
            None => {
                let count = nodes.keys.len() as u32;
                for start in (0..count).step_by(CANCEL_EVERY) {
                    if crate::cancel::requested() {
                        break;
                    }
                    (start..count.min(start + CANCEL_EVERY as u32)).for_each(&mut consider);
                }
            }
        }
        neighbours(nodes, best.into_sorted_vec())
    }
}

/// Nodes an exact scan compares between two looks at whether its asker left.
const CANCEL_EVERY: usize = 4096;

/// How many candidates ahead exact search over scattered nodes asks for a vector.
const AHEAD: usize = 4;

/// Asks for all of `v` to be brought into cache: what exact search over nodes scattered
/// through memory does a few nodes ahead, so that the loads of the next vectors overlap the
/// distance being computed.
#[inline(always)]
fn touch_all(v: &[f32]) {
    // `touch` asks for 256 bytes (64 values) from where it is given; the last value again,
    // for a vector that does not start on a cache line.
    for part in v.chunks(64) {
        touch(part);
    }
    if let Some(last) = v.last() {
        touch(std::slice::from_ref(last));
    }
}

/// Asks for the first 256 bytes of `v` to be brought into cache before its distance is
/// computed, the way hnswlib does: the walk prefetches neighbour `i + 1` while it computes the
/// distance to neighbour `i`. Measured here it is worth about 1.3× in queries per second on
/// 100,000 × 384 vectors, which do not fit in cache.
#[inline(always)]
#[allow(unsafe_code)]
fn touch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr().cast::<i8>();
        // SAFETY: a prefetch is a hint: it never dereferences its address, cannot fault, and
        // has no effect on program state; SSE is part of the x86-64 baseline. The addresses
        // are inside (or just past) `v`, computed without overflow by `wrapping_add`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(128));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(192));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    if let Some(x) = v.first() {
        // Elsewhere a plain load of the first element (prefetch intrinsics are not stable).
        std::hint::black_box(*x);
    }
}

/// Sorted hits as callers see them: keys, not node numbers.
fn neighbours(nodes: &Nodes, sorted: Vec<Scored>) -> Vec<Neighbour> {
    sorted
        .into_iter()
        .map(|s| Neighbour {
            key: nodes.keys[s.1 as usize],
            distance: s.0,
        })
        .collect()
}

/// SplitMix64, for the level draw.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
