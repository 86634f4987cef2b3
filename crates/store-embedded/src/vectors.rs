//! The vector index: collections in redb (the truth) with an in-memory HNSW graph each.
//!
//! Writes go through a [group commit](crate::group_commit): one redb write transaction for
//! every queued operation, committed durably, then applied to the loaded
//! [graphs](crate::graphs), and only then answered. A write is acknowledged after its commit,
//! never before.
//!
//! A graph is read back or built from the store the first time a read of its collection
//! needs it after start-up; writes never wait for that.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use redb::ReadableTable;

use crate::collection::{
    self, CollectionKey, CollectionParams, CollectionRecord, DELETIONS, GRAPHS, ITEMS, ItemRecord,
    NewItem, VECTORS,
};
use crate::graphs::{Change, Graphs, Loaded, State, Ticket};
use crate::group_commit::{Answer, GroupCommit, panic_message};
use crate::planner::{Planner, ProbeMemory};
use aimp_index::graph_file::{self, GraphFile};
use aimp_store::{
    DeleteOutcome, Hit, Plan, SearchOptions, SearchOutcome, StoreError, StoredItem, UpsertOutcome,
    check_items, check_query,
};

use crate::{Error, Filter, Hnsw, Redb, payload};

enum Op {
    Upsert {
        key: CollectionKey,
        params: CollectionParams,
        items: Vec<(NewItem, collection::Kept)>,
    },
    Delete {
        key: CollectionKey,
        ids: Vec<String>,
        filter: Option<Filter>,
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

/// A committed op's reply, with the change its writer has the graph take before answering.
struct Committed {
    reply: Reply,
    graph: Option<Ticket>,
}

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

/// The vector index over one [`Redb`].
pub struct VectorIndex {
    store: Redb,
    graphs_dir: std::path::PathBuf,
    writes: GroupCommit<Op, Committed>,
    graphs: Graphs,
    saving: parking_lot::Mutex<()>,
    probes: ProbeMemory,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("store", &self.store.path())
            .field("loaded", &self.graphs.len())
            .finish()
    }
}

impl VectorIndex {
    pub fn new(store: Redb) -> VectorIndex {
        VectorIndex {
            graphs_dir: graph_file::folder(store.path()),
            store,
            writes: GroupCommit::default(),
            graphs: Graphs::default(),
            saving: parking_lot::Mutex::new(()),
            probes: ProbeMemory::default(),
        }
    }

    /// Upserts `items` by id into `key`, creating the collection with `params` the first time.
    /// Returns once the write is durable.
    pub fn upsert(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<NewItem>,
    ) -> Result<UpsertOutcome, Error> {
        check_items(&params, &items)?;
        self.write(key, params, items.into_iter().map(|i| (i, None)).collect())
    }

    /// Upserts items as another store kept them, their timestamps kept. Returns once the
    /// write is durable.
    pub fn import(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<StoredItem>,
    ) -> Result<UpsertOutcome, Error> {
        let items = StoredItem::checked(&params, items)?
            .into_iter()
            .map(|(item, stamps)| (item, Some(stamps)))
            .collect();
        self.write(key, params, items)
    }

    fn write(
        &self,
        key: &CollectionKey,
        params: CollectionParams,
        items: Vec<(NewItem, collection::Kept)>,
    ) -> Result<UpsertOutcome, Error> {
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
    pub fn delete(&self, key: &CollectionKey, ids: Vec<String>) -> Result<DeleteOutcome, Error> {
        self.delete_where(key, Some(ids), None)
    }

    /// Deletes the items with these ids (all items when `None`) that `filter` passes (all of
    /// them when `None`; at least one of the two is given). Returns once the delete is durable.
    ///
    /// A delete by filter alone finds what it deletes in a read transaction (stopping if its
    /// asker leaves), then deletes those ids [`DELETE_BATCH`] at a time, each batch one write
    /// transaction in which the filter is asked again: the shared write transaction never
    /// holds a scan of the collection. Each batch is atomic; the whole is not.
    pub fn delete_where(
        &self,
        key: &CollectionKey,
        ids: Option<Vec<String>>,
        filter: Option<Filter>,
    ) -> Result<DeleteOutcome, Error> {
        match (ids, filter) {
            (None, None) => Err(StoreError::InvalidInput {
                field: "ids".into(),
                reason: "or a filter is needed to say what to delete".into(),
            }
            .into()),
            (None, Some(filter)) => self.delete_matching(key, filter),
            (Some(ids), filter) => self.delete_batch(key, ids, filter),
        }
    }

    /// The ids `filter` passes, read, then deleted in batches.
    fn delete_matching(&self, key: &CollectionKey, filter: Filter) -> Result<DeleteOutcome, Error> {
        let Some(coll) = self.collection_id(key)? else {
            return self.delete_batch(key, Vec::new(), Some(filter));
        };
        let ids = collection::matching_ids(&self.store.begin_read()?, coll, &filter)?;
        let mut total = DeleteOutcome::default();
        let mut batches = ids.chunks(DELETE_BATCH).peekable();
        if batches.peek().is_none() {
            // Nothing matches: the answer still says the collection's count.
            return self.delete_batch(key, Vec::new(), Some(filter));
        }
        for batch in batches {
            // A client that left stops the rest; what was committed stays deleted.
            aimp_store::check_cancelled()?;
            let done = self.delete_batch(key, batch.to_vec(), Some(filter.clone()))?;
            total.deleted += done.deleted;
            total.ids.extend(done.ids);
            total.count = done.count;
            // An id gone or changed since it was read is not this delete's to report.
        }
        Ok(total)
    }

    /// Deletes `ids` (those `filter` passes, when given) in one write transaction.
    fn delete_batch(
        &self,
        key: &CollectionKey,
        ids: Vec<String>,
        filter: Option<Filter>,
    ) -> Result<DeleteOutcome, Error> {
        match self.submit(Op::Delete {
            key: key.clone(),
            ids,
            filter,
        })? {
            Reply::Delete(o) => Ok(o),
            Reply::Upsert(_) | Reply::Drop(_) => unreachable_reply(),
        }
    }

    /// Removes a collection with all its items; false when it did not exist.
    pub fn drop_collection(&self, key: &CollectionKey) -> Result<bool, Error> {
        match self.submit(Op::Drop { key: key.clone() })? {
            Reply::Drop(existed) => Ok(existed),
            Reply::Upsert(_) | Reply::Delete(_) => unreachable_reply(),
        }
    }

    /// The live item count of a collection, `None` when it does not exist.
    pub fn count(&self, key: &CollectionKey) -> Result<Option<u64>, Error> {
        Ok(self.load(key)?.map(|l| l.state().record.count))
    }

    /// A collection's stored record (parameters, live count, timestamps), read from redb
    /// without loading its graph; `None` when it does not exist.
    pub fn record(&self, key: &CollectionKey) -> Result<Option<CollectionRecord>, Error> {
        let Some(id) = self.collection_id(key)? else {
            return Ok(None);
        };
        let txn = self.store.begin_read()?;
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
    ) -> Result<Option<(ItemRecord, Vec<f32>)>, Error> {
        let Some(coll) = self.collection_id(key)? else {
            return Ok(None);
        };
        let txn = self.store.begin_read()?;
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

    /// Up to `n` stored vectors of live items, drawn at random with `seed` (each at most once):
    /// queries made of the collection's own data, for checks of its recall. Drawn by item
    /// number, so a collection that deleted most of what it held may give fewer than `n`.
    pub fn sample_vectors(
        &self,
        key: &CollectionKey,
        n: usize,
        seed: u64,
    ) -> Result<Vec<Vec<f32>>, Error> {
        use rand::{Rng, SeedableRng};
        let Some(coll) = self.collection_id(key)? else {
            return Ok(Vec::new());
        };
        let txn = self.store.begin_read()?;
        let vectors = txn.open_table(VECTORS)?;
        let mut numbers = vectors.range((coll, 0)..=(coll, u64::MAX))?;
        let first = match numbers.next() {
            Some(row) => row?.0.value().1,
            None => return Ok(Vec::new()),
        };
        let last = match numbers.next_back() {
            Some(row) => row?.0.value().1,
            None => first,
        };
        drop(numbers);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut taken = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(n);
        // Numbers are dense unless most items were deleted; 32 tries per vector bound the
        // draws either way.
        for _ in 0..n.saturating_mul(32) {
            if out.len() == n || taken.len() as u64 > last - first {
                break;
            }
            let number = rng.random_range(first..=last);
            if !taken.insert(number) {
                continue;
            }
            if let Some(v) = vectors.get((coll, number))? {
                out.push(collection::decode_vector(v.value()));
            }
        }
        Ok(out)
    }

    /// Live items of a collection in id order, `limit` at most, after id `after` (exclusive):
    /// a page of the listing. A collection that does not exist has none.
    pub fn list_items(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ItemRecord>, Error> {
        let Some(coll) = self.collection_id(key)? else {
            return Ok(Vec::new());
        };
        let txn = self.store.begin_read()?;
        let items = txn.open_table(ITEMS)?;
        // A filter its payload indexes narrow: the matches' item numbers (ascending), tested
        // as the ids go by, so only the items of the page are read and decoded. Each page
        // starts where the last ended: a whole listing reads each id once.
        let narrowed = match filter {
            Some(f) => match payload::Reader::open(&txn, coll)?.narrow(f, LIST_NARROW_LIMIT)? {
                payload::Narrowed::Among { items, exact } => Some((items, exact)),
                _ => None,
            },
            None => None,
        };
        let ids = txn.open_table(collection::ITEM_IDS)?;
        let mut out = Vec::new();
        for (seen, entry) in ids.range((coll, after.unwrap_or(""))..)?.enumerate() {
            if seen % 1024 == 1023 {
                aimp_store::check_cancelled()?;
            }
            let (k, number) = entry?;
            let (c, id) = k.value();
            if c != coll || out.len() >= limit {
                break;
            }
            if Some(id) == after {
                continue;
            }
            let number = number.value();
            let exact = match &narrowed {
                Some((matches, _)) if matches.binary_search(&number).is_err() => continue,
                Some((_, exact)) => *exact,
                None => filter.is_none(),
            };
            if let Some(item) = items.get((coll, number))? {
                let item: ItemRecord = collection::decode("item", item.value())?;
                if exact || filter.is_none_or(|f| f.matches(&item)) {
                    out.push(item);
                }
            }
        }
        Ok(out)
    }

    /// Live items with their vectors in id order, `limit` at most, after id `after`
    /// (exclusive), read in one transaction: a page of a copy or a snapshot.
    pub fn export(
        &self,
        key: &CollectionKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, Error> {
        export_in(&self.store.begin_read()?, key, after, limit)
    }

    /// How many live items of a collection `filter` passes, exactly (counted through the
    /// payload indexes where they answer the filter, else over every item); `None` when the
    /// collection does not exist.
    pub fn count_matching(
        &self,
        key: &CollectionKey,
        filter: &Filter,
    ) -> Result<Option<u64>, Error> {
        let Some(coll) = self.collection_id(key)? else {
            return Ok(None);
        };
        let txn = self.store.begin_read()?;
        Ok(Some(collection::matching(&txn, coll, filter)?.len() as u64))
    }

    /// Every collection's record.
    pub fn collections(&self) -> Result<Vec<CollectionRecord>, Error> {
        let txn = self.store.begin_read()?;
        collection::all(&txn)
    }

    /// The `top_k` nearest live items to `query`. A collection that does not exist has none.
    pub fn search(
        &self,
        key: &CollectionKey,
        query: &[f32],
        options: SearchOptions,
    ) -> Result<SearchOutcome, Error> {
        let Some(loaded) = self.load(key)? else {
            return Ok(SearchOutcome {
                hits: Vec::new(),
                plan: Plan::Exact,
                count: 0,
            });
        };
        let (graph, params, count, id, counts) = {
            let l = loaded.state();
            (
                l.graph.clone(),
                l.record.params,
                l.record.count,
                l.record.id,
                l.counts.clone(),
            )
        };
        check_query(key, &params, query, options.precision)?;
        let ef = options.ef.unwrap_or(params.ef_search).max(options.top_k);
        let txn = self.store.begin_read()?;
        let must_be_exact = options.exact || graph.live() <= params.exact_below;
        let (found, plan) = match options.filter.as_deref() {
            Some(f) if !f.is_empty() => {
                let planner = Planner {
                    txn: &txn,
                    coll: id,
                    filter: f,
                    graph: &graph,
                    query,
                    k: options.top_k,
                    ef,
                    m: params.m,
                    memory: &self.probes,
                    counts,
                };
                planner.search(must_be_exact && !options.walk, options.walk)?
            }
            _ if must_be_exact => (graph.exact(query, options.top_k, None), Plan::Exact),
            _ => (graph.search(query, options.top_k, ef, None), Plan::Walk),
        };
        // A walk or scan cut short because its asker left answers nothing.
        aimp_store::check_cancelled()?;
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
        Ok(SearchOutcome { hits, plan, count })
    }

    /// The loaded collection of `key`, reading its graph back or building it from the store the
    /// first time (or waiting for a load already under way).
    fn load(&self, key: &CollectionKey) -> Result<Option<Arc<Loaded>>, Error> {
        let Some(id) = self.collection_id(key)? else {
            return Ok(None);
        };
        self.graphs.load(id, || self.open_graph(id))
    }

    fn collection_id(&self, key: &CollectionKey) -> Result<Option<u64>, Error> {
        let txn = self.store.begin_read()?;
        let ids = txn.open_table(collection::COLLECTION_IDS)?;
        let id = ids.get(key.tuple())?.map(|v| v.value());
        Ok(id)
    }

    /// The collection's graph: its saved file caught up from the store when that file is
    /// sound, else rebuilt from the store (with a warning). `None` when it was dropped.
    fn open_graph(&self, id: u64) -> Result<Option<State>, Error> {
        let txn = self.store.begin_read()?;
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
        // Catch up: deletions logged since the save, then items added since. A save writes
        // tombstones as they stand when it reaches them, so some later deletions may be in the
        // file already (deleting twice is harmless); items the file holds are never added again.
        let deletions = txn.open_table(DELETIONS)?;
        for row in deletions.range((id, saved.covers_deletion_seq)..=(id, u64::MAX))? {
            graph.delete(row?.1.value());
        }
        let vectors = txn.open_table(VECTORS)?;
        let from = graph
            .last_key()
            .map_or(0, |k| k + 1)
            .max(saved.covers_next_item);
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
        for row in vectors.range((id, from)..=(id, u64::MAX))? {
            let (k, v) = row?;
            rows.push((k.value().1, collection::decode_vector(v.value())));
        }
        let items: Vec<(u64, &[f32])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        graph.insert_as_build(&items);
        tracing::info!(
            collection = %record.key,
            nodes = graph.len(),
            caught_up = items.len(),
            ms = started.elapsed().as_millis() as u64,
            "graph read back"
        );
        let origin = GraphOrigin::File {
            caught_up: items.len(),
        };
        Ok(Some(State::new(record, graph, origin)))
    }

    /// Loads the collection's graph (if it exists) and tells where it came from.
    pub fn graph_info(&self, key: &CollectionKey) -> Result<Option<GraphInfo>, Error> {
        Ok(self.load(key)?.map(|l| {
            let l = l.state();
            GraphInfo {
                origin: l.origin.clone(),
                nodes: l.graph.len(),
                tombstones: l.graph.deleted(),
            }
        }))
    }

    /// Saves every loaded graph to its file and records it in redb; then prunes the deletion
    /// log up to what each file covers. Returns how many graphs were saved; one whose file
    /// already covers its collection is skipped. Writes go on meanwhile: each graph's nodes
    /// as of one record are captured, then written a chunk at a time.
    /// The server calls this periodically and at shutdown; a graph that is not saved is
    /// rebuilt from the store next time.
    pub fn save_graphs(&self) -> Result<usize, Error> {
        // One save at a time (a periodic one and the shutdown one write the same files).
        let _saving = self.saving.lock();
        let mut saved = 0;
        for loaded in self.graphs.ready() {
            let (graph, record, extent) = loaded.capture();
            if self.saved_file_covers(&record)? {
                continue; // nothing changed since its file was written
            }
            let name = graph_file::file_name(record.id);
            let (bytes, crc32) = graph_file::save(&graph, extent, &self.graphs_dir, &name)?;
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
            self.store.commit(txn)?;
            saved += 1;
        }
        Ok(saved)
    }

    /// Whether the collection's recorded graph file already covers `record` exactly.
    fn saved_file_covers(&self, record: &CollectionRecord) -> Result<bool, Error> {
        let txn = self.store.begin_read()?;
        let Some(v) = txn.open_table(GRAPHS)?.get(record.id)? else {
            return Ok(false);
        };
        let file: GraphFile = collection::decode("graph file", v.value())?;
        Ok(file.covers_next_item == record.next_item
            && file.covers_deletion_seq == record.deletion_seq
            && self.graphs_dir.join(&file.file).is_file())
    }

    /// The collection's graph from a snapshot of the store; `None` when it was dropped.
    fn build_from_store(
        &self,
        id: u64,
        distrusted: Option<String>,
    ) -> Result<Option<State>, Error> {
        let txn = self.store.begin_read()?;
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
        graph.insert_as_build(&items);
        tracing::info!(collection = %record.key, items = rows.len(), "graph built from the store");
        Ok(Some(State::new(
            record,
            graph,
            GraphOrigin::Rebuilt { distrusted },
        )))
    }

    /// Commits `op` (in a group) and, on this writer's thread, has its collection's graph take
    /// the change before answering: a busy graph holds up its own writers only.
    fn submit(&self, op: Op) -> Result<Reply, Error> {
        let committed = self.writes.submit(op, |ops| self.commit(ops))?;
        if let Some(ticket) = committed.graph {
            // The commit stands whatever happens here; a panic while the graph takes it makes
            // the graph be read again from the store when next used.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| ticket.take())) {
                tracing::error!(
                    reason = %panic_message(&*panic),
                    "a graph failed to take a committed change; it will be rebuilt from the store"
                );
                self.graphs.forget(&[ticket.id]);
            }
        }
        Ok(committed.reply)
    }

    /// Commits a batch and queues it for the graphs; a failed commit fails every op.
    fn commit(&self, ops: Vec<Op>) -> Vec<Answer<Committed>> {
        let count = ops.len();
        match self.apply(ops) {
            Ok(answers) => answers,
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                (0..count).map(|_| Err(e.for_each_writer())).collect()
            }
        }
    }

    /// One transaction for every op; per-op answers (a params mismatch fails its op only).
    fn apply(&self, ops: Vec<Op>) -> Result<Vec<Result<Committed, Error>>, Error> {
        let txn = self.store.begin_write()?;
        let mut replies = Vec::with_capacity(ops.len());
        // Each change with the position of its op's reply.
        let mut changes: Vec<(usize, Change)> = Vec::new();
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
                            changes.push((replies.len() - 1, Change { record, effects }));
                        }
                        Err(e @ Error::Store(StoreError::ParamsMismatch { .. })) => {
                            replies.push(Err(e))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Op::Delete { key, ids, filter } => {
                    let (record, effects, done) =
                        collection::delete(&txn, &key, &ids, filter.as_ref())?;
                    replies.push(Ok(Reply::Delete(DeleteOutcome {
                        deleted: effects.removed.len(),
                        ids: done.ids,
                        not_found: done.not_found,
                        kept: done.kept,
                        count: record.as_ref().map_or(0, |r| r.count),
                    })));
                    if let Some(record) = record {
                        changes.push((replies.len() - 1, Change { record, effects }));
                    }
                }
                Op::Drop { key } => {
                    let record = collection::drop_collection(&txn, &key)?;
                    if let Some(r) = &record {
                        dropped.push(r.id);
                        changes.retain(|(_, c)| c.record.id != r.id);
                    }
                    replies.push(Ok(Reply::Drop(record.is_some())));
                }
            }
        }
        self.store.commit(txn)?;
        let (positions, changes): (Vec<usize>, Vec<Change>) = changes.into_iter().unzip();
        let tickets = self.queue_for_graphs(changes, &dropped);
        let mut replies: Vec<Result<Committed, Error>> = replies
            .into_iter()
            .map(|r| r.map(|reply| Committed { reply, graph: None }))
            .collect();
        for (at, ticket) in positions.into_iter().zip(tickets) {
            if let Ok(committed) = &mut replies[at] {
                committed.graph = ticket;
            }
        }
        Ok(replies)
    }

    /// After a commit: the same changes queued for the loaded graphs (each writer has its own
    /// taken). The commit stands whatever happens here; a panic makes the graphs it touched be
    /// read again from the store when next used.
    fn queue_for_graphs(&self, changes: Vec<Change>, dropped: &[u64]) -> Vec<Option<Ticket>> {
        let touched: Vec<u64> = changes.iter().map(|c| c.record.id).collect();
        let count = changes.len();
        let tickets = match catch_unwind(AssertUnwindSafe(|| self.graphs.apply(changes, dropped))) {
            Ok(tickets) => tickets,
            Err(panic) => {
                tracing::error!(
                    reason = %panic_message(&*panic),
                    "a graph failed to take a committed change; it will be rebuilt from the store"
                );
                self.graphs.forget(&touched);
                (0..count).map(|_| None).collect()
            }
        };
        for id in dropped {
            self.probes.forget(*id);
            let path = self.graphs_dir.join(graph_file::file_name(*id));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a dropped graph");
            }
        }
        tickets
    }
}

/// Ids one write transaction of a delete by filter removes.
pub const DELETE_BATCH: usize = 1000;

/// A filtered listing tests the ids it walks against the matches its payload indexes narrow
/// to when there are at most this many (no item read for a non-match); past that it reads
/// each item it walks and asks the filter.
const LIST_NARROW_LIMIT: usize = 20_000;

fn unreachable_reply<T>() -> Result<T, Error> {
    Err(Error::WriterGone)
}

/// Live items of `key` that `txn` sees, with their vectors, in id order, `limit` at most,
/// after id `after` (exclusive).
pub(crate) fn export_in(
    txn: &redb::ReadTransaction,
    key: &CollectionKey,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredItem>, Error> {
    let Some(coll) = txn
        .open_table(collection::COLLECTION_IDS)?
        .get(key.tuple())?
        .map(|v| v.value())
    else {
        return Ok(Vec::new());
    };
    let items = txn.open_table(ITEMS)?;
    let vectors = txn.open_table(VECTORS)?;
    let ids = txn.open_table(collection::ITEM_IDS)?;
    let mut out = Vec::with_capacity(limit.min(4096));
    for entry in ids.range((coll, after.unwrap_or(""))..)? {
        let (k, number) = entry?;
        let (c, id) = k.value();
        if c != coll || out.len() >= limit {
            break;
        }
        if Some(id) == after {
            continue;
        }
        let number = number.value();
        let (Some(item), Some(vector)) = (items.get((coll, number))?, vectors.get((coll, number))?)
        else {
            return Err(StoreError::Backend {
                store: "embedded",
                context: format!("item {id:?} of {key}"),
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "its id is mapped but its row or vector is missing",
                )),
            }
            .into());
        };
        out.push(StoredItem {
            record: collection::decode("item", item.value())?,
            vector: collection::decode_vector(vector.value()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use aimp_index::Metric;

    fn params() -> CollectionParams {
        let mut p = CollectionParams::new(4, Metric::L2);
        p.exact_below = 0;
        p
    }

    fn item(id: &str, x: f32) -> NewItem {
        NewItem {
            id: id.into(),
            vector: vec![
                (x * 0.7).sin(),
                (x * 1.3).cos(),
                (x * 0.31).sin(),
                x / 1000.0,
            ],
            filename: None,
            media_ref: None,
            system: None,
            metadata: None,
        }
    }

    /// The nearest item among the graph's nodes (compared with each, so what is found is
    /// what the graph holds).
    fn graph_search(index: &VectorIndex, key: &CollectionKey, x: f32) -> Vec<String> {
        let opts = SearchOptions {
            top_k: 1,
            ef: None,
            exact: true,
            precision: None,
            filter: None,
            walk: false,
        };
        let out = index
            .search(key, &item("q", x).vector, opts)
            .expect("search");
        out.hits.into_iter().map(|h| h.item.id).collect()
    }

    /// An index over `dir` after a restart: `a` holds 300 items and `b` one, and neither
    /// graph was saved, so each is built from the store when it is first read.
    fn reopened_with_unbuilt_graphs(
        dir: &std::path::Path,
        a: &CollectionKey,
        b: &CollectionKey,
    ) -> Arc<VectorIndex> {
        {
            let index = VectorIndex::new(Redb::open(dir).expect("store"));
            let items = (0..300)
                .map(|i| item(&format!("a-{i}"), i as f32))
                .collect();
            index.upsert(a, params(), items).expect("upsert a");
            index
                .upsert(b, params(), vec![item("b-0", 0.0)])
                .expect("upsert b");
        }
        Arc::new(VectorIndex::new(Redb::open(dir).expect("reopen")))
    }

    #[test]
    fn writes_do_not_wait_for_a_graph_being_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (
            CollectionKey::new("ws", "m", "c", "a"),
            CollectionKey::new("ws", "m", "c", "b"),
        );
        let index = reopened_with_unbuilt_graphs(dir.path(), &a, &b);
        let (release, gate) = mpsc::channel();
        *index.graphs.gate.lock() = Some(gate);
        let searcher = {
            let (index, a) = (index.clone(), a.clone());
            std::thread::spawn(move || graph_search(&index, &a, 7.0))
        };
        while index.graphs.gate.lock().is_some() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // a's build is held at the gate. Writes to b and to a are acknowledged meanwhile.
        let (acked, writes) = mpsc::channel();
        {
            let (index, a, b) = (index.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                index
                    .upsert(&b, params(), vec![item("b-1", 1.0)])
                    .expect("b");
                index
                    .upsert(&a, params(), vec![item("late", 1000.0)])
                    .expect("a");
                index.delete(&a, vec!["a-7".into()]).expect("delete");
                let _ = acked.send(());
            });
        }
        let waited = writes.recv_timeout(Duration::from_secs(10));
        release.send(()).expect("release the build");
        waited.expect("the writes waited for a graph being built");
        // The search waited for the build; the build took the writes committed meanwhile.
        searcher.join().expect("search");
        assert_eq!(graph_search(&index, &a, 1000.0), ["late"]);
        assert_eq!(graph_search(&index, &a, 7.0).len(), 1);
        assert_ne!(graph_search(&index, &a, 7.0), ["a-7"]);
        assert_eq!(index.count(&a).expect("count"), Some(300));
        assert_eq!(graph_search(&index, &b, 1.0), ["b-1"]);
    }

    /// A whole-graph build used to link its nodes on rayon's global pool, where a write's few
    /// new nodes (and the encoder's forward pass) wait until the build's own tasks run out: a
    /// write to another workspace waited for the whole build. Builds now run on the build
    /// pool; with every one of its threads held, a collection's build waits and a write to
    /// another collection is linked and answered.
    #[test]
    fn a_graph_build_runs_on_its_own_threads_and_writes_link_on_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (
            CollectionKey::new("ws-a", "m", "c", "a"),
            CollectionKey::new("ws-b", "m", "c", "b"),
        );
        let index = reopened_with_unbuilt_graphs(dir.path(), &a, &b);
        assert_eq!(graph_search(&index, &b, 0.0), ["b-0"], "b is loaded first");
        // Every build thread held until `held` is released.
        let held = Arc::new(std::sync::RwLock::new(()));
        let release = held.write().expect("hold");
        let (busy, all_busy) = mpsc::channel();
        let holders = {
            let held = held.clone();
            std::thread::spawn(move || {
                let pool = aimp_index::build_pool::pool().expect("a build pool");
                pool.broadcast(|_| {
                    let _ = busy.send(());
                    drop(held.read());
                });
            })
        };
        let threads = aimp_index::build_pool::pool()
            .expect("pool")
            .current_num_threads();
        for _ in 0..threads {
            all_busy
                .recv_timeout(Duration::from_secs(10))
                .expect("every build thread held");
        }
        let (built, build_done) = mpsc::channel();
        let searcher = {
            let (index, a) = (index.clone(), a.clone());
            std::thread::spawn(move || {
                let found = graph_search(&index, &a, 7.0);
                let _ = built.send(());
                found
            })
        };
        let (acked, write_done) = mpsc::channel();
        {
            let (index, b) = (index.clone(), b.clone());
            std::thread::spawn(move || {
                let items = (1..=200)
                    .map(|i| item(&format!("b-{i}"), i as f32))
                    .collect();
                let _ = acked.send(index.upsert(&b, params(), items).map(|_| ()));
            });
        }
        let written = write_done.recv_timeout(Duration::from_secs(20));
        let build_waited = build_done.try_recv().is_err();
        drop(release);
        written
            .expect("the write waited for the build threads")
            .expect("the write");
        assert!(
            build_waited,
            "a's build ran on threads other than the build pool's"
        );
        assert_eq!(graph_search(&index, &b, 150.0), ["b-150"]);
        assert_eq!(searcher.join().expect("search").len(), 1);
        holders.join().expect("holders");
    }

    /// A delete by filter found what it deleted inside the one write transaction every
    /// tenant's writes share (a scan of the whole collection for a filter the indexes cannot
    /// answer). Now it reads the matches in a read transaction and deletes them by id, a
    /// batch per write transaction.
    #[test]
    fn a_delete_by_filter_scans_outside_the_write_and_deletes_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = VectorIndex::new(Redb::open(dir.path()).expect("store"));
        let key = CollectionKey::new("ws", "m", "c", "s");
        let n = 2 * DELETE_BATCH + 500;
        let items = (0..n + 100)
            .map(|i| NewItem {
                metadata: Some(serde_json::json!({"gone": i < n})),
                ..item(&format!("i{i:05}"), i as f32)
            })
            .collect();
        index.upsert(&key, params(), items).expect("upsert");
        // must_not: a filter the indexes do not answer, so every item is read.
        let filter = Filter::parse(
            &serde_json::json!({"must_not": [{"key": "gone", "match": {"value": false}}]}),
        )
        .expect("filter");
        let before = index.store.writes_begun();
        let done = index
            .delete_where(&key, None, Some(filter))
            .expect("delete");
        assert_eq!(
            index.store.writes_begun() - before,
            3,
            "one write per batch"
        );
        assert_eq!(done.deleted, n);
        assert_eq!(done.ids.len(), n);
        assert!(done.not_found.is_empty() && done.kept.is_empty());
        assert_eq!(done.count, 100);
        assert_eq!(index.count(&key).expect("count"), Some(100));
        let left = index.list_items(&key, None, 1000, None).expect("list");
        assert_eq!(left.len(), 100);
        assert!(
            left.iter()
                .all(|i| i.metadata.as_ref().is_some_and(|m| m["gone"] == false))
        );
        assert_eq!(graph_search(&index, &key, 10.0).len(), 1);
        assert_ne!(
            graph_search(&index, &key, 10.0),
            ["i00010"],
            "gone from the graph too"
        );
        // Nothing matching: answered, nothing deleted; a missing collection likewise.
        let none = Filter::parse(
            &serde_json::json!({"must": [{"key": "gone", "match": {"value": true}}]}),
        )
        .expect("filter");
        let again = index
            .delete_where(&key, None, Some(none.clone()))
            .expect("again");
        assert_eq!((again.deleted, again.count), (0, 100));
        let missing = CollectionKey::new("ws", "m", "c", "nowhere");
        let nothing = index
            .delete_where(&missing, None, Some(none))
            .expect("missing");
        assert_eq!((nothing.deleted, nothing.count), (0, 0));
    }

    /// A filtered listing read and decoded every match its indexes narrowed to (up to 20,000)
    /// for each page, then sorted them: a whole listing cost O(N²). Now it tests the ids it
    /// walks against the matches' numbers and reads only the items of the page, so the rows
    /// of every other item may be unreadable here.
    #[test]
    fn a_filtered_listing_reads_only_the_items_of_its_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = VectorIndex::new(Redb::open(dir.path()).expect("store"));
        let key = CollectionKey::new("ws", "m", "c", "s");
        let items = (0..2_000)
            .map(|i| NewItem {
                metadata: Some(serde_json::json!({"tag": if i % 3 == 0 { "a" } else { "b" }})),
                ..item(&format!("i{i:04}"), i as f32)
            })
            .collect();
        index.upsert(&key, params(), items).expect("upsert");
        let filter =
            Filter::parse(&serde_json::json!({"must": [{"key": "tag", "match": {"value": "a"}}]}))
                .expect("filter");
        // Paging through the whole listing gives every match once, in id order.
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = index
                .list_items(&key, after.as_deref(), 50, Some(&filter))
                .expect("page");
            if page.is_empty() {
                break;
            }
            after = page.last().map(|i| i.id.clone());
            all.extend(page.into_iter().map(|i| i.id));
        }
        let expected: Vec<String> = (0..2_000)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("i{i:04}"))
            .collect();
        assert_eq!(all, expected);
        // Every row past the first page's items made unreadable.
        let txn = index.store.begin_write().expect("write");
        {
            let mut rows = txn.open_table(ITEMS).expect("items");
            let keys: Vec<(u64, u64)> = rows
                .iter()
                .expect("rows")
                .map(|r| r.expect("row").0.value())
                .collect();
            for k in keys.into_iter().skip(31) {
                rows.insert(k, b"not an item".as_slice())
                    .expect("overwrite");
            }
        }
        txn.commit().expect("commit");
        let page = index
            .list_items(&key, None, 10, Some(&filter))
            .expect("only the page's items are read");
        let ids: Vec<&str> = page.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            expected[..10]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
    }

    /// A walk holds its graph's nodes while it runs (a filtered walk reads items meanwhile);
    /// a write to that collection must wait to append. It used to wait on the group-commit
    /// leader's thread, so every other collection's writes (every tenant's) waited with it.
    /// Now the leader only queues the change, and the writer of the busy collection waits
    /// alone; it is answered once its graph has taken the change.
    #[test]
    fn a_busy_graph_holds_up_its_own_writes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Arc::new(VectorIndex::new(Redb::open(dir.path()).expect("store")));
        let (busy, other) = (
            CollectionKey::new("ws", "m", "c", "busy"),
            CollectionKey::new("ws2", "m", "c", "other"),
        );
        index
            .upsert(&busy, params(), vec![item("b-0", 0.0)])
            .expect("busy");
        index
            .upsert(&other, params(), vec![item("o-0", 0.0)])
            .expect("other");
        // Stands for a long walk: the busy graph's nodes held until released.
        let graph = index
            .load(&busy)
            .expect("load")
            .expect("loaded")
            .state()
            .graph
            .clone();
        let (release, held) = mpsc::channel::<()>();
        let (holding, is_held) = mpsc::channel::<()>();
        let walker = std::thread::spawn(move || {
            graph.holding_nodes(|| {
                holding.send(()).expect("holding");
                let _ = held.recv();
            })
        });
        is_held.recv().expect("the walk holds the nodes");
        // A write to the busy collection waits for its graph...
        let (busy_done, busy_acked) = mpsc::channel();
        {
            let (index, busy) = (index.clone(), busy.clone());
            std::thread::spawn(move || {
                let r = index.upsert(&busy, params(), vec![item("b-1", 1.0)]);
                let _ = busy_done.send(r.map(|o| o.count));
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        // ...while writes to another collection are answered, one after another.
        let (other_done, other_acked) = mpsc::channel();
        {
            let (index, other) = (index.clone(), other.clone());
            std::thread::spawn(move || {
                for i in 1..=5 {
                    index
                        .upsert(&other, params(), vec![item(&format!("o-{i}"), i as f32)])
                        .expect("other");
                }
                let _ = other_done.send(());
            });
        }
        let answered = other_acked.recv_timeout(Duration::from_secs(10));
        let early = busy_acked.try_recv();
        release.send(()).expect("release");
        walker.join().expect("walker");
        answered.expect("another collection's writes waited for a busy graph");
        assert!(
            early.is_err(),
            "the busy collection's write was answered before its graph took it"
        );
        assert_eq!(busy_acked.recv().expect("answered").expect("upsert"), 2);
        // Answered means in the graph: found at once.
        assert_eq!(graph_search(&index, &busy, 1.0), ["b-1"]);
        assert_eq!(graph_search(&index, &other, 5.0), ["o-5"]);
    }

    /// Between a quarter of the exact limit and the limit, a filter the indexes answer
    /// exactly is walked testing nodes against its matches: the items it does not pass are
    /// never read. Here their rows are unreadable, which the in-walk filter (reading every
    /// candidate's item) trips over and the planner does not.
    #[test]
    fn a_filter_the_indexes_answer_is_walked_without_reading_the_items_it_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = VectorIndex::new(Redb::open(dir.path()).expect("store"));
        let key = CollectionKey::new("ws", "m", "c", "s");
        // 10,000 items on a line: the limit is sqrt(64 × 32 × 10,000) ≈ 4,500; the filter
        // passes 4,000 items, nine in ten of those near the query.
        let n = 10_000;
        let passes = |i: usize| i < 4_445 && !i.is_multiple_of(10);
        let items = (0..n)
            .map(|i| NewItem {
                metadata: Some(serde_json::json!({"tag": if passes(i) { "a" } else { "b" }})),
                vector: vec![i as f32, 0.0, 0.0, 0.0],
                ..item(&format!("i{i}"), 0.0)
            })
            .collect();
        index.upsert(&key, params(), items).expect("upsert");
        let txn = index.store.begin_write().expect("write");
        {
            let mut rows = txn.open_table(ITEMS).expect("items");
            let failing: Vec<(u64, u64)> = rows
                .iter()
                .expect("rows")
                .map(|r| r.expect("row"))
                .filter(|(_, v)| {
                    collection::decode::<ItemRecord>("item", v.value())
                        .expect("item")
                        .metadata
                        .is_some_and(|m| m["tag"] == "b")
                })
                .map(|(k, _)| k.value())
                .collect();
            assert_eq!(failing.len(), n - 4_000);
            for k in failing {
                rows.insert(k, b"not an item".as_slice())
                    .expect("overwrite");
            }
        }
        txn.commit().expect("commit");
        let filter = Arc::new(
            Filter::parse(&serde_json::json!({"must": [{"key": "tag", "match": {"value": "a"}}]}))
                .expect("filter"),
        );
        let search = |walk: bool| {
            index.search(
                &key,
                &[2_000.4, 0.0, 0.0, 0.0],
                SearchOptions {
                    top_k: 5,
                    ef: None,
                    exact: false,
                    precision: None,
                    filter: Some(filter.clone()),
                    walk,
                },
            )
        };
        assert!(
            search(true).is_err(),
            "the in-walk filter reads a failing item"
        );
        let out = search(false).expect("the planner reads none");
        assert_eq!(out.plan, Plan::Walk);
        let ids: Vec<String> = out.hits.into_iter().map(|h| h.item.id).collect();
        assert_eq!(ids, ["i2001", "i1999", "i2002", "i1998", "i2003"]);
    }
}
