//! Collections in redb: their records, vectors, items and id mappings. Everything here runs
//! inside a transaction handed in by the caller; [`crate::vectors`] decides when to commit.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::Serialize;

use aimp_store::StoreError;
pub(crate) use aimp_store::{
    CollectionKey, CollectionParams, CollectionRecord, ItemRecord, NewItem,
};

use crate::{Error, Filter, payload};

/// (workspace, model, collection, scope) → collection number.
pub(crate) const COLLECTION_IDS: TableDefinition<(&str, &str, &str, &str), u64> =
    TableDefinition::new("collection_ids");
/// collection number → JSON [`CollectionRecord`].
pub(crate) const COLLECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("collections");
/// (collection, item) → the vector as given, little-endian `f32`.
pub(crate) const VECTORS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("vectors");
/// (collection, item) → JSON [`ItemRecord`].
pub(crate) const ITEMS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("items");
/// (collection, external id) → item.
pub(crate) const ITEM_IDS: TableDefinition<(u64, &str), u64> = TableDefinition::new("item_ids");
/// (collection, deletion sequence) → item removed (deleted or replaced): what a saved graph
/// must still tombstone when it is read back. Pruned up to the position a saved graph covers.
pub(crate) const DELETIONS: TableDefinition<(u64, u64), u64> = TableDefinition::new("deletions");
/// collection → JSON [`crate::graph_file::GraphFile`] of its saved graph.
pub(crate) const GRAPHS: TableDefinition<u64, &[u8]> = TableDefinition::new("graphs");
/// Named counters: `next_collection`.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub(crate) fn init_tables(txn: &WriteTransaction) -> Result<(), Error> {
    txn.open_table(COLLECTION_IDS)?;
    txn.open_table(COLLECTIONS)?;
    txn.open_table(VECTORS)?;
    txn.open_table(ITEMS)?;
    txn.open_table(ITEM_IDS)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(DELETIONS)?;
    txn.open_table(GRAPHS)?;
    txn.open_table(payload::PAYLOAD)?;
    txn.open_table(payload::PAYLOAD_COUNTS)?;
    index_payloads(txn)
}

/// Puts the items of every collection stored before payload indexes existed into them, once.
fn index_payloads(txn: &WriteTransaction) -> Result<(), Error> {
    let mut records = txn.open_table(COLLECTIONS)?;
    let mut pending: Vec<CollectionRecord> = Vec::new();
    for row in records.iter()? {
        let record: CollectionRecord = decode("collection", row?.1.value())?;
        if !record.payload_indexed {
            pending.push(record);
        }
    }
    let items = txn.open_table(ITEMS)?;
    let mut writer = payload::Writer::open(txn)?;
    for mut record in pending {
        let id = record.id;
        writer.drop_collection(id)?;
        for row in items.range((id, 0)..=(id, u64::MAX))? {
            let (k, v) = row?;
            writer.add(id, k.value().1, &decode("item", v.value())?)?;
        }
        record.payload_indexed = true;
        records.insert(id, encode(&record).as_slice())?;
    }
    Ok(())
}

pub(crate) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        Error::from(StoreError::Corrupt {
            key: what.to_string(),
            source,
        })
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The record of `key`, if the collection exists.
pub(crate) fn find(
    txn: &WriteTransaction,
    key: &CollectionKey,
) -> Result<Option<CollectionRecord>, Error> {
    let ids = txn.open_table(COLLECTION_IDS)?;
    let Some(id) = ids.get(key.tuple())?.map(|v| v.value()) else {
        return Ok(None);
    };
    let records = txn.open_table(COLLECTIONS)?;
    let bytes = records.get(id)?.map(|v| v.value().to_vec());
    bytes
        .map(|b| decode(&format!("collection {key}"), &b))
        .transpose()
}

/// The changes one write made, for the in-memory graph: item numbers removed and added.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The write created the collection.
    pub created: bool,
    pub removed: Vec<u64>,
    pub added: Vec<(u64, Vec<f32>)>,
}

/// When an item was first written and last replaced, as another store kept them (an
/// import); `None` stamps the write's own time.
pub(crate) type Kept = Option<(DateTime<Utc>, DateTime<Utc>)>;

/// Upserts `items` into `key` (created with `params` when it does not exist). An id already
/// present is replaced: its old item number is removed and a new one written.
pub(crate) fn upsert(
    txn: &WriteTransaction,
    key: &CollectionKey,
    params: &CollectionParams,
    items: Vec<(NewItem, Kept)>,
) -> Result<(CollectionRecord, Effects, usize), Error> {
    let now = Utc::now();
    let mut effects = Effects::default();
    let mut record = match find(txn, key)? {
        Some(r) => {
            aimp_store::check_write(key, params, &r.params)?;
            r
        }
        None => {
            let mut counters = txn.open_table(COUNTERS)?;
            let id = counters.get("next_collection")?.map_or(1, |v| v.value());
            counters.insert("next_collection", id + 1)?;
            txn.open_table(COLLECTION_IDS)?.insert(key.tuple(), id)?;
            effects.created = true;
            CollectionRecord {
                id,
                key: key.clone(),
                params: *params,
                next_item: 0,
                count: 0,
                deletion_seq: 0,
                payload_indexed: true,
                created_at: now,
                updated_at: now,
            }
        }
    };
    let mut vectors = txn.open_table(VECTORS)?;
    let mut item_rows = txn.open_table(ITEMS)?;
    let mut item_ids = txn.open_table(ITEM_IDS)?;
    let mut deletions = txn.open_table(DELETIONS)?;
    let mut payloads = payload::Writer::open(txn)?;
    let mut replaced = 0;
    for (item, kept) in items {
        let mut created_at = now;
        let old = item_ids
            .get((record.id, item.id.as_str()))?
            .map(|v| v.value());
        if let Some(old) = old {
            if let Some(row) = item_rows.remove((record.id, old))? {
                let previous: ItemRecord = decode("item", row.value())?;
                created_at = previous.created_at;
                payloads.remove(record.id, old, &previous)?;
            }
            vectors.remove((record.id, old))?;
            deletions.insert((record.id, record.deletion_seq), old)?;
            record.deletion_seq += 1;
            effects.removed.push(old);
            replaced += 1;
        } else {
            record.count += 1;
        }
        let (created_at, updated_at) = kept.unwrap_or((created_at, now));
        let number = record.next_item;
        record.next_item += 1;
        vectors.insert((record.id, number), encode_vector(&item.vector).as_slice())?;
        let row = ItemRecord {
            id: item.id.clone(),
            filename: item.filename,
            media_ref: item.media_ref,
            system: item.system,
            metadata: item.metadata,
            created_at,
            updated_at,
        };
        payloads.add(record.id, number, &row)?;
        item_rows.insert((record.id, number), encode(&row).as_slice())?;
        item_ids.insert((record.id, item.id.as_str()), number)?;
        effects.added.push((number, item.vector));
    }
    record.updated_at = now;
    txn.open_table(COLLECTIONS)?
        .insert(record.id, encode(&record).as_slice())?;
    Ok((record, effects, replaced))
}

/// What a delete removed and what it could not find.
#[derive(Debug, Default)]
pub(crate) struct Deleted {
    /// External ids removed, in the order asked (or in item order for a filter alone).
    pub ids: Vec<String>,
    /// Ids asked for that were not in the collection.
    pub not_found: Vec<String>,
    /// Ids asked for that were there but did not pass the filter; kept.
    pub kept: Vec<String>,
}

/// Deletes the items with these external ids, those of them the filter passes when one is
/// given. (A delete by filter alone finds its ids in a read transaction first: a write never
/// scans a collection.)
pub(crate) fn delete(
    txn: &WriteTransaction,
    key: &CollectionKey,
    ids: &[String],
    filter: Option<&Filter>,
) -> Result<(Option<CollectionRecord>, Effects, Deleted), Error> {
    let Some(mut record) = find(txn, key)? else {
        let not_found = ids.to_vec();
        return Ok((
            None,
            Effects::default(),
            Deleted {
                not_found,
                ..Deleted::default()
            },
        ));
    };
    let mut vectors = txn.open_table(VECTORS)?;
    let mut item_rows = txn.open_table(ITEMS)?;
    let mut item_ids = txn.open_table(ITEM_IDS)?;
    let mut deletions = txn.open_table(DELETIONS)?;
    let mut effects = Effects::default();
    let mut outcome = Deleted::default();
    // (item number, external id) of every item to remove.
    let mut doomed: Vec<(u64, String)> = Vec::new();
    for id in ids {
        let Some(n) = item_ids.get((record.id, id.as_str()))?.map(|v| v.value()) else {
            outcome.not_found.push(id.clone());
            continue;
        };
        let passes = match filter {
            None => true,
            Some(f) => match item_rows.get((record.id, n))? {
                Some(row) => f.matches(&decode::<ItemRecord>("item", row.value())?),
                None => false,
            },
        };
        if passes {
            doomed.push((n, id.clone()));
        } else {
            outcome.kept.push(id.clone());
        }
    }
    let mut payloads = payload::Writer::open(txn)?;
    for (n, id) in doomed {
        item_ids.remove((record.id, id.as_str()))?;
        vectors.remove((record.id, n))?;
        if let Some(row) = item_rows.remove((record.id, n))? {
            payloads.remove(record.id, n, &decode("item", row.value())?)?;
        }
        deletions.insert((record.id, record.deletion_seq), n)?;
        record.deletion_seq += 1;
        effects.removed.push(n);
        record.count -= 1;
        outcome.ids.push(id);
    }
    record.updated_at = Utc::now();
    txn.open_table(COLLECTIONS)?
        .insert(record.id, encode(&record).as_slice())?;
    Ok((Some(record), effects, outcome))
}

/// The item numbers (ascending) of collection `id` that `filter` passes, read in `txn`.
pub(crate) fn matching(
    txn: &redb::ReadTransaction,
    id: u64,
    filter: &Filter,
) -> Result<Vec<u64>, Error> {
    if let payload::Narrowed::Among { items, exact } =
        payload::Reader::open(txn, id)?.narrow(filter, usize::MAX)?
    {
        return if exact {
            Ok(items)
        } else {
            payload::verify(txn, id, &items, filter)
        };
    }
    let mut out = Vec::new();
    passing(&txn.open_table(ITEMS)?, id, filter, |n, _| out.push(n))?;
    Ok(out)
}

/// The external ids of the items of collection `id` that `filter` passes, in item order,
/// read in `txn`: each candidate item is read and decoded once.
pub(crate) fn matching_ids(
    txn: &redb::ReadTransaction,
    id: u64,
    filter: &Filter,
) -> Result<Vec<String>, Error> {
    let items = txn.open_table(ITEMS)?;
    let mut out = Vec::new();
    match payload::Reader::open(txn, id)?.narrow(filter, usize::MAX)? {
        payload::Narrowed::Among {
            items: numbers,
            exact,
        } => {
            for (seen, n) in numbers.into_iter().enumerate() {
                if seen % 1024 == 1023 {
                    aimp_store::check_cancelled()?;
                }
                if let Some(row) = items.get((id, n))? {
                    let item: ItemRecord = decode("item", row.value())?;
                    if exact || filter.matches(&item) {
                        out.push(item.id);
                    }
                }
            }
        }
        payload::Narrowed::Broad => passing(&items, id, filter, |_, item| out.push(item.id))?,
    }
    Ok(out)
}

/// Each item of collection `id` in `items` that `filter` passes, with its number, in order.
/// Only reads call it (writes never scan), so it stops when its asker left.
fn passing(
    items: &impl ReadableTable<(u64, u64), &'static [u8]>,
    id: u64,
    filter: &Filter,
    mut each: impl FnMut(u64, ItemRecord),
) -> Result<(), Error> {
    for (seen, row) in items.range((id, 0)..=(id, u64::MAX))?.enumerate() {
        if seen % 1024 == 1023 {
            aimp_store::check_cancelled()?;
        }
        let (k, v) = row?;
        let item: ItemRecord = decode("item", v.value())?;
        if filter.matches(&item) {
            each(k.value().1, item);
        }
    }
    Ok(())
}

/// Removes a collection and every row of it; its record if it existed.
pub(crate) fn drop_collection(
    txn: &WriteTransaction,
    key: &CollectionKey,
) -> Result<Option<CollectionRecord>, Error> {
    let Some(record) = find(txn, key)? else {
        return Ok(None);
    };
    let id = record.id;
    txn.open_table(VECTORS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    txn.open_table(ITEMS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    txn.open_table(ITEM_IDS)?
        .retain_in((id, "")..(id + 1, ""), |_, _| false)?;
    txn.open_table(DELETIONS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    payload::Writer::open(txn)?.drop_collection(id)?;
    txn.open_table(GRAPHS)?.remove(id)?;
    txn.open_table(COLLECTIONS)?.remove(id)?;
    txn.open_table(COLLECTION_IDS)?.remove(key.tuple())?;
    Ok(Some(record))
}

/// Every collection record.
pub(crate) fn all(txn: &redb::ReadTransaction) -> Result<Vec<CollectionRecord>, Error> {
    let table = txn.open_table(COLLECTIONS)?;
    let mut out = Vec::with_capacity(table.len()? as usize);
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(decode("collection", v.value())?);
    }
    Ok(out)
}
