//! The vector index: collections in redb (the truth) with an in-memory HNSW graph each.
//!
//! Writes go through a group commit: concurrent callers queue their operations; one of them
//! (the leader) applies every queued operation in one redb write transaction, commits it
//! durably, applies the changes to the graphs, and only then answers everyone. A write is
//! acknowledged after its commit, never before, and throughput does not collapse to one fsync
//! per caller.
//!
//! A graph is built from the store the first time its collection is used after start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::{Mutex, RwLock};
use redb::{ReadableDatabase, ReadableTable};

use crate::collection::{
    self, CollectionKey, CollectionParams, CollectionRecord, DELETIONS, Effects, GRAPHS, ITEMS,
    ItemRecord, NewItem, Precision, VECTORS,
};
use crate::graph_file::{self, GraphFile};
use crate::{Hnsw, Store, StoreError};

/// Longest external id, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// What an upsert did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Items written (new and replaced).
    pub written: usize,
    /// Of those, ids that existed before and were replaced.
    pub replaced: usize,
    /// Live items in the collection afterwards.
    pub count: u64,
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub deleted: usize,
    /// Ids that were not in the collection.
    pub not_found: Vec<String>,
    pub count: u64,
}

/// One search hit with its stored metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub item: ItemRecord,
    /// Cosine similarity, inner product, or Euclidean distance, by the collection's metric.
    pub score: f32,
    pub distance: f32,
}

/// A search answer.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOutcome {
    pub hits: Vec<Hit>,
    /// True when every live item was compared (exact search), false for a graph search.
    pub exhaustive: bool,
    pub count: u64,
}

/// How a search runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchOptions {
    pub top_k: usize,
    /// Candidates explored; the collection's `ef_search` when absent.
    pub ef: Option<usize>,
    /// Compare with every live item.
    pub exact: bool,
    /// The precision the query was encoded at; a collection built at another is refused.
    /// `None` for a raw vector of unknown origin.
    pub precision: Option<Precision>,
}

enum Op {
    Upsert {
        key: CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    },
    Delete {
        key: CollectionKey,
        ids: Vec<String>,
    },
    Drop {
        key: CollectionKey,
    },
}

enum Reply {
    Upsert(UpsertOutcome),
    Delete(DeleteOutcome),
    Drop(bool),
}

type Pending = (Op, mpsc::SyncSender<Result<Reply, StoreError>>);

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    leader: bool,
}

/// A loaded collection: its record as of the last write and its graph.
struct Loaded {
    record: CollectionRecord,
    graph: Arc<Hnsw>,
    origin: GraphOrigin,
    /// A background rebuild is running.
    rebuilding: bool,
}

/// Tombstones trigger a rebuild once they are this share of a graph's nodes (and at least
/// [`REBUILD_MIN_TOMBSTONES`]).
pub const REBUILD_TOMBSTONE_SHARE: f64 = 0.2;
pub const REBUILD_MIN_TOMBSTONES: usize = 256;

/// Where a loaded graph came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphOrigin {
    /// Read back from its saved file, then `caught_up` items added from the store.
    File { caught_up: usize },
    /// Built from the store: no saved file, or `distrusted` names why the file was refused.
    Rebuilt { distrusted: Option<String> },
}

/// The state of a collection's in-memory graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphInfo {
    pub origin: GraphOrigin,
    pub nodes: usize,
    pub tombstones: usize,
}

/// The vector index over one [`Store`].
pub struct VectorIndex {
    store: Store,
    graphs_dir: std::path::PathBuf,
    queue: Mutex<Queue>,
    /// Graphs by collection number. The lock is held while a graph is built or changed.
    graphs: RwLock<HashMap<u64, Arc<RwLock<Loaded>>>>,
    load_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("store", &self.store.path())
            .field("loaded", &self.graphs.read().len())
            .finish()
    }
}

impl VectorIndex {
    pub fn new(store: Store) -> VectorIndex {
        VectorIndex {
            graphs_dir: graph_file::folder(store.path()),
            store,
            queue: Mutex::new(Queue::default()),
            graphs: RwLock::new(HashMap::new()),
            load_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Upserts `items` by id into `key`, creating the collection with `params` the first time.
    /// Returns once the write is durable.
    pub fn upsert(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    ) -> Result<UpsertOutcome, StoreError> {
        check_items(&params, &items)?;
        // Keep the graph in memory (and so saved at shutdown) from the first write on.
        self.load(key)?;
        match self.submit(Op::Upsert {
            key: key.clone(),
            params,
            items,
        })? {
            Reply::Upsert(o) => Ok(o),
            Reply::Delete(_) | Reply::Drop(_) => unreachable_reply(),
        }
    }

    /// Deletes items by id. Returns once the delete is durable.
    pub fn delete(
        &self,
        key: &CollectionKey,
        ids: Vec<String>,
    ) -> Result<DeleteOutcome, StoreError> {
        match self.submit(Op::Delete {
            key: key.clone(),
            ids,
        })? {
            Reply::Delete(o) => Ok(o),
            Reply::Upsert(_) | Reply::Drop(_) => unreachable_reply(),
        }
    }

    /// Removes a collection with all its items; false when it did not exist.
    pub fn drop_collection(&self, key: &CollectionKey) -> Result<bool, StoreError> {
        match self.submit(Op::Drop { key: key.clone() })? {
            Reply::Drop(existed) => Ok(existed),
            Reply::Upsert(_) | Reply::Delete(_) => unreachable_reply(),
        }
    }

    /// The live item count of a collection, `None` when it does not exist.
    pub fn count(&self, key: &CollectionKey) -> Result<Option<u64>, StoreError> {
        Ok(self.load(key)?.map(|l| l.read().record.count))
    }

    /// A collection's stored record (parameters, live count, timestamps), read from redb
    /// without loading its graph; `None` when it does not exist.
    pub fn record(&self, key: &CollectionKey) -> Result<Option<CollectionRecord>, StoreError> {
        let Some(id) = self.collection_id(key)? else {
            return Ok(None);
        };
        let txn = self.store.db.begin_read()?;
        match txn.open_table(collection::COLLECTIONS)?.get(id)? {
            Some(v) => Ok(Some(collection::decode("collection", v.value())?)),
            None => Ok(None),
        }
    }

    /// One item by id: its stored record and vector, as committed.
    pub fn get(
        &self,
        key: &CollectionKey,
        id: &str,
    ) -> Result<Option<(ItemRecord, Vec<f32>)>, StoreError> {
        let Some(coll) = self.collection_id(key)? else {
            return Ok(None);
        };
        let txn = self.store.db.begin_read()?;
        let ids = txn.open_table(collection::ITEM_IDS)?;
        let Some(number) = ids.get((coll, id))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let items = txn.open_table(ITEMS)?;
        let vectors = txn.open_table(VECTORS)?;
        let (Some(item), Some(vector)) = (items.get((coll, number))?, vectors.get((coll, number))?)
        else {
            return Ok(None);
        };
        Ok(Some((
            collection::decode("item", item.value())?,
            collection::decode_vector(vector.value()),
        )))
    }

    /// Live items of a collection in id order, `limit` at most, after id `after` (exclusive):
    /// a page of the listing. A collection that does not exist has none.
    pub fn list_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        let Some(coll) = self.collection_id(key)? else {
            return Ok(Vec::new());
        };
        let txn = self.store.db.begin_read()?;
        let ids = txn.open_table(collection::ITEM_IDS)?;
        let items = txn.open_table(ITEMS)?;
        let mut out = Vec::new();
        for entry in ids.range((coll, after.unwrap_or(""))..)? {
            let (k, number) = entry?;
            let (c, id) = k.value();
            if c != coll || out.len() >= limit {
                break;
            }
            if Some(id) == after {
                continue;
            }
            if let Some(item) = items.get((coll, number.value()))? {
                out.push(collection::decode("item", item.value())?);
            }
        }
        Ok(out)
    }

    /// Every collection's record.
    pub fn collections(&self) -> Result<Vec<CollectionRecord>, StoreError> {
        let txn = self.store.db.begin_read()?;
        collection::all(&txn)
    }

    /// The `top_k` nearest live items to `query`. A collection that does not exist has none.
    pub fn search(
        &self,
        key: &CollectionKey,
        query: &[f32],
        options: SearchOptions,
    ) -> Result<SearchOutcome, StoreError> {
        let Some(loaded) = self.load(key)? else {
            return Ok(SearchOutcome {
                hits: Vec::new(),
                exhaustive: true,
                count: 0,
            });
        };
        let (graph, params, count, id) = {
            let l = loaded.read();
            (
                l.graph.clone(),
                l.record.params,
                l.record.count,
                l.record.id,
            )
        };
        if let Some(given) = options.precision {
            collection::check_precision(given, params.precision).map_err(|reason| {
                StoreError::ParamsMismatch {
                    collection: key.to_string(),
                    reason,
                }
            })?;
        }
        if query.len() != params.dim {
            return Err(StoreError::InvalidInput {
                field: "vector".into(),
                reason: format!(
                    "has {} dimensions; the collection holds {}",
                    query.len(),
                    params.dim
                ),
            });
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::InvalidInput {
                field: "vector".into(),
                reason: "holds a value that is not a finite number".into(),
            });
        }
        let exhaustive = options.exact || graph.live() <= params.exact_below;
        let found = if exhaustive {
            graph.exact(query, options.top_k, None)
        } else {
            let ef = options.ef.unwrap_or(params.ef_search);
            graph.search(query, options.top_k, ef, None)
        };
        let txn = self.store.db.begin_read()?;
        let items = txn.open_table(ITEMS)?;
        let mut hits = Vec::with_capacity(found.len());
        for n in found {
            // A hit deleted between the graph walk and this read is simply left out.
            if let Some(row) = items.get((id, n.key))? {
                hits.push(Hit {
                    item: collection::decode("item", row.value())?,
                    score: params.metric.score(n.distance),
                    distance: n.distance,
                });
            }
        }
        Ok(SearchOutcome {
            hits,
            exhaustive,
            count,
        })
    }

    /// The loaded collection of `key`, building its graph from the store the first time.
    fn load(&self, key: &CollectionKey) -> Result<Option<Arc<RwLock<Loaded>>>, StoreError> {
        let Some(id) = self.collection_id(key)? else {
            return Ok(None);
        };
        if let Some(l) = self.graphs.read().get(&id) {
            return Ok(Some(l.clone()));
        }
        // Loads and the post-commit graph updates take this lock, so a graph built from a
        // snapshot taken before a commit is in the map when that commit's changes are applied.
        let _guard = self.load_lock.lock();
        if let Some(l) = self.graphs.read().get(&id) {
            return Ok(Some(l.clone()));
        }
        let Some(loaded) = self.open_graph(id)? else {
            return Ok(None);
        };
        let loaded = Arc::new(RwLock::new(loaded));
        self.graphs.write().insert(id, loaded.clone());
        Ok(Some(loaded))
    }

    fn collection_id(&self, key: &CollectionKey) -> Result<Option<u64>, StoreError> {
        let txn = self.store.db.begin_read()?;
        let ids = txn.open_table(collection::COLLECTION_IDS)?;
        let id = ids.get(key.tuple())?.map(|v| v.value());
        Ok(id)
    }

    /// The collection's graph: its saved file caught up from the store when that file is
    /// sound, else rebuilt from the store (with a warning). `None` when it was dropped.
    fn open_graph(&self, id: u64) -> Result<Option<Loaded>, StoreError> {
        let txn = self.store.db.begin_read()?;
        let record: CollectionRecord = match txn.open_table(collection::COLLECTIONS)?.get(id)? {
            Some(v) => collection::decode("collection", v.value())?,
            None => return Ok(None),
        };
        record.params.check_format(&record.key)?;
        let saved: Option<GraphFile> = match txn.open_table(GRAPHS)?.get(id)? {
            Some(v) => Some(collection::decode("graph file", v.value())?),
            None => None,
        };
        let Some(saved) = saved else {
            return self.build_from_store(id, None);
        };
        let path = self.graphs_dir.join(&saved.file);
        let started = std::time::Instant::now();
        let graph = match graph_file::load(&path, &saved, &record.params.graph()) {
            Ok(g) => g,
            Err(reason) => {
                tracing::warn!(
                    collection = %record.key,
                    file = %path.display(),
                    %reason,
                    "graph file not trusted; rebuilding from the store"
                );
                return self.build_from_store(id, Some(reason));
            }
        };
        // Catch up: deletions logged since the save, then items added since.
        let deletions = txn.open_table(DELETIONS)?;
        for row in deletions.range((id, saved.covers_deletion_seq)..=(id, u64::MAX))? {
            graph.delete(row?.1.value());
        }
        let vectors = txn.open_table(VECTORS)?;
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
        for row in vectors.range((id, saved.covers_next_item)..=(id, u64::MAX))? {
            let (k, v) = row?;
            rows.push((k.value().1, collection::decode_vector(v.value())));
        }
        let items: Vec<(u64, &[f32])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        graph.insert(&items);
        tracing::info!(
            collection = %record.key,
            nodes = graph.len(),
            caught_up = items.len(),
            ms = started.elapsed().as_millis() as u64,
            "graph read back"
        );
        Ok(Some(Loaded {
            record,
            graph: Arc::new(graph),
            origin: GraphOrigin::File {
                caught_up: items.len(),
            },
            rebuilding: false,
        }))
    }

    /// Loads the collection's graph (if it exists) and tells where it came from.
    pub fn graph_info(&self, key: &CollectionKey) -> Result<Option<GraphInfo>, StoreError> {
        Ok(self.load(key)?.map(|l| {
            let l = l.read();
            GraphInfo {
                origin: l.origin.clone(),
                nodes: l.graph.len(),
                tombstones: l.graph.deleted(),
            }
        }))
    }

    /// Saves every loaded graph to its file and records it in redb; then prunes the deletion
    /// log up to what each file covers. Returns how many graphs were saved. The server calls
    /// this at shutdown; a graph that is not saved is rebuilt from the store next time.
    pub fn save_graphs(&self) -> Result<usize, StoreError> {
        let _guard = self.load_lock.lock();
        let loaded: Vec<Arc<RwLock<Loaded>>> = self.graphs.read().values().cloned().collect();
        let mut saved = 0;
        for l in loaded {
            let (graph, record) = {
                let l = l.read();
                (l.graph.clone(), l.record.clone())
            };
            let name = graph_file::file_name(record.id);
            let (bytes, crc32) = graph_file::save(&graph, &self.graphs_dir, &name)?;
            let file = GraphFile {
                file: name,
                bytes,
                crc32,
                covers_next_item: record.next_item,
                covers_deletion_seq: record.deletion_seq,
            };
            let txn = self.store.begin_write()?;
            {
                // Only while the collection still exists (a drop may have committed meanwhile).
                let exists = txn
                    .open_table(collection::COLLECTIONS)?
                    .get(record.id)?
                    .is_some();
                if exists {
                    let json = serde_json::to_vec(&file).unwrap_or_default();
                    txn.open_table(GRAPHS)?.insert(record.id, json.as_slice())?;
                    txn.open_table(DELETIONS)?
                        .retain_in((record.id, 0)..(record.id, record.deletion_seq), |_, _| {
                            false
                        })?;
                }
            }
            txn.commit()?;
            saved += 1;
        }
        Ok(saved)
    }

    /// The collection's graph from a snapshot of the store; `None` when it was dropped.
    fn build_from_store(
        &self,
        id: u64,
        distrusted: Option<String>,
    ) -> Result<Option<Loaded>, StoreError> {
        let txn = self.store.db.begin_read()?;
        let records = txn.open_table(collection::COLLECTIONS)?;
        let record: CollectionRecord = match records.get(id)? {
            Some(v) => collection::decode("collection", v.value())?,
            None => return Ok(None),
        };
        let vectors = txn.open_table(VECTORS)?;
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(record.count as usize);
        for row in vectors.range((id, 0)..=(id, u64::MAX))? {
            let (k, v) = row?;
            rows.push((k.value().1, collection::decode_vector(v.value())));
        }
        let graph = Hnsw::new(record.params.graph());
        let items: Vec<(u64, &[f32])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        graph.insert(&items);
        tracing::info!(collection = %record.key, items = rows.len(), "graph built from the store");
        Ok(Some(Loaded {
            record,
            graph: Arc::new(graph),
            origin: GraphOrigin::Rebuilt { distrusted },
            rebuilding: false,
        }))
    }

    /// Queues `op`; the first caller to find no leader leads: it commits everything queued,
    /// in one transaction, until the queue is empty.
    fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut q = self.queue.lock();
            q.pending.push((op, tx));
            if q.leader {
                drop(q);
                return rx.recv().unwrap_or_else(|_| Err(StoreError::WriterGone));
            }
            q.leader = true;
        }
        loop {
            let batch = {
                let mut q = self.queue.lock();
                if q.pending.is_empty() {
                    q.leader = false;
                    break;
                }
                std::mem::take(&mut q.pending)
            };
            self.commit_batch(batch);
        }
        rx.recv().unwrap_or_else(|_| Err(StoreError::WriterGone))
    }

    fn commit_batch(&self, batch: Vec<Pending>) {
        let (ops, senders): (Vec<Op>, Vec<_>) = batch.into_iter().unzip();
        match self.apply(ops) {
            Ok(replies) => {
                for (reply, tx) in replies.into_iter().zip(senders) {
                    let _ = tx.send(reply);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "group commit failed");
                for tx in senders {
                    let _ = tx.send(Err(StoreError::CommitFailed {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    /// One transaction for every op; per-op answers (a params mismatch fails its op only).
    fn apply(&self, ops: Vec<Op>) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let txn = self.store.begin_write()?;
        let mut replies = Vec::with_capacity(ops.len());
        let mut changes: Vec<(CollectionRecord, Effects)> = Vec::new();
        let mut dropped: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Upsert { key, params, items } => {
                    let written = items.len();
                    match collection::upsert(&txn, &key, &params, items) {
                        Ok((record, effects, replaced)) => {
                            replies.push(Ok(Reply::Upsert(UpsertOutcome {
                                written,
                                replaced,
                                count: record.count,
                            })));
                            changes.push((record, effects));
                        }
                        Err(e @ StoreError::ParamsMismatch { .. }) => replies.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                Op::Delete { key, ids } => {
                    let (record, effects, not_found) = collection::delete(&txn, &key, &ids)?;
                    replies.push(Ok(Reply::Delete(DeleteOutcome {
                        deleted: effects.removed.len(),
                        not_found,
                        count: record.as_ref().map_or(0, |r| r.count),
                    })));
                    if let Some(r) = record {
                        changes.push((r, effects));
                    }
                }
                Op::Drop { key } => {
                    let record = collection::drop_collection(&txn, &key)?;
                    if let Some(r) = &record {
                        dropped.push(r.id);
                        changes.retain(|(c, _)| c.id != r.id);
                    }
                    replies.push(Ok(Reply::Drop(record.is_some())));
                }
            }
        }
        txn.commit()?;
        self.apply_to_graphs(changes, &dropped);
        Ok(replies)
    }

    /// After a commit: the same changes in the loaded graphs (unloaded ones read the store
    /// when they load). Keys a graph already holds (it loaded after the commit) are skipped.
    fn apply_to_graphs(&self, changes: Vec<(CollectionRecord, Effects)>, dropped: &[u64]) {
        let _guard = self.load_lock.lock();
        if !dropped.is_empty() {
            let mut graphs = self.graphs.write();
            for id in dropped {
                graphs.remove(id);
                let path = self.graphs_dir.join(graph_file::file_name(*id));
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a dropped graph");
                }
            }
        }
        for (record, effects) in changes {
            let existing = self.graphs.read().get(&record.id).cloned();
            let loaded = match existing {
                Some(l) => l,
                // A collection this batch created starts in memory with an empty graph.
                None if effects.created => {
                    let l = Arc::new(RwLock::new(Loaded {
                        record: record.clone(),
                        graph: Arc::new(Hnsw::new(record.params.graph())),
                        origin: GraphOrigin::Rebuilt { distrusted: None },
                        rebuilding: false,
                    }));
                    self.graphs.write().insert(record.id, l.clone());
                    l
                }
                None => continue,
            };
            // The graph takes inserts and deletes while searches run; only the record swap
            // needs the collection's lock.
            let graph = loaded.read().graph.clone();
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
            let mut l = loaded.write();
            l.record = record;
            let tombstones = graph.deleted();
            if !l.rebuilding
                && tombstones >= REBUILD_MIN_TOMBSTONES
                && tombstones as f64 >= REBUILD_TOMBSTONE_SHARE * graph.len() as f64
            {
                l.rebuilding = true;
                let (loaded, lock) = (loaded.clone(), self.load_lock.clone());
                std::thread::spawn(move || rebuild(&loaded, &lock));
            }
        }
    }
}

/// Builds a graph of the live nodes only, while searches and writes go on against the old
/// one; then, holding the lock that post-commit updates take, applies what changed meanwhile
/// and swaps the new graph in.
fn rebuild(loaded: &RwLock<Loaded>, lock: &Mutex<()>) {
    let old = loaded.read().graph.clone();
    let started = std::time::Instant::now();
    let snapshot_len = old.len();
    let live = old.items_from(0);
    let new = Hnsw::new(*old.params());
    let items: Vec<(u64, &[f32])> = live.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    new.insert(&items);
    let _guard = lock.lock();
    let late = old.items_from(snapshot_len);
    let late: Vec<(u64, &[f32])> = late.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    new.insert(&late);
    for (key, _) in &live {
        if old.is_deleted(*key) == Some(true) {
            new.delete(*key);
        }
    }
    let mut l = loaded.write();
    tracing::info!(
        collection = %l.record.key,
        removed = old.deleted(),
        nodes = new.len(),
        ms = started.elapsed().as_millis() as u64,
        "graph rebuilt without its tombstones"
    );
    l.graph = Arc::new(new);
    l.rebuilding = false;
}

fn unreachable_reply<T>() -> Result<T, StoreError> {
    Err(StoreError::WriterGone)
}

/// Checks a batch before it reaches a transaction: ids, dimensions, finite values, no id
/// twice.
fn check_items(params: &CollectionParams, items: &[NewItem]) -> Result<(), StoreError> {
    let mut seen = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("items[{i}].{name}");
        if item.id.is_empty() || item.id.len() > MAX_ID_BYTES {
            return Err(StoreError::InvalidInput {
                field: field("id"),
                reason: format!("must be 1 to {MAX_ID_BYTES} bytes"),
            });
        }
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            return Err(StoreError::InvalidInput {
                field: field("id"),
                reason: format!("{:?} is also items[{first}].id", item.id),
            });
        }
        if item.vector.len() != params.dim {
            return Err(StoreError::InvalidInput {
                field: field("vector"),
                reason: format!(
                    "has {} dimensions; the collection holds {}",
                    item.vector.len(),
                    params.dim
                ),
            });
        }
        if item.vector.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::InvalidInput {
                field: field("vector"),
                reason: "holds a value that is not a finite number".into(),
            });
        }
    }
    Ok(())
}
