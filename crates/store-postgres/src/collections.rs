//! Collections and their items. A collection is a row with its parameters and live count; its
//! items are rows of `items` with the record as jsonb and the vector as given in a pgvector
//! column. Each collection has a partial HNSW index of its own, made with it, on
//! `embedding::vector(dim)` with the operator class of its metric; searches name the same
//! expression so the planner can use it, and filtered searches run pgvector's iterative index
//! scans so that a restrictive filter still fills its `top_k`.
//!
//! Every write is one transaction that locks the collection's row first, so writes to one
//! collection are serial and its count stays exact.

use std::collections::HashSet;

use aimp_store::{
    CollectionKey, CollectionParams, CollectionRecord, DeleteOutcome, Filter, Hit, ItemRecord,
    Metric, NewItem, Plan, SearchOptions, SearchOutcome, StoreError, StoredItem, UpsertOutcome,
    check_query, check_write,
};
use chrono::{DateTime, Utc};
use pgvector::Vector;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Transaction};

use crate::error::Result;
use crate::filter_sql::Sql;
use crate::json::{decode, encode};

/// One collection's row.
struct Stored {
    id: i64,
    params: CollectionParams,
    count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Stored {
    fn record(self, key: &CollectionKey) -> CollectionRecord {
        CollectionRecord {
            id: self.id as u64,
            key: key.clone(),
            params: self.params,
            next_item: 0,
            count: self.count as u64,
            deletion_seq: 0,
            payload_indexed: true,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Owned query parameters as the client takes them.
fn borrowed(params: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref()).collect()
}

const COLUMNS: &str = "id, params, count, created_at, updated_at";

fn stored(row: &Row, key: &CollectionKey) -> Result<Stored> {
    let params = decode(format_args!("collection {key}"), row.get(1))?;
    Ok(Stored {
        id: row.get(0),
        params,
        count: row.get(2),
        created_at: row.get(3),
        updated_at: row.get(4),
    })
}

fn find(
    client: &mut impl GenericClient,
    key: &CollectionKey,
    lock: bool,
) -> Result<Option<Stored>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM collections \
         WHERE workspace = $1 AND model = $2 AND collection = $3 AND scope = $4{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    client
        .query_opt(
            &sql,
            &[&key.workspace, &key.model, &key.collection, &key.scope],
        )?
        .map(|row| stored(&row, key))
        .transpose()
}

/// The operator that orders by the metric's distance, and its HNSW operator class.
fn operator(metric: Metric) -> (&'static str, &'static str) {
    match metric {
        Metric::Cosine => ("<=>", "vector_cosine_ops"),
        Metric::Dot => ("<#>", "vector_ip_ops"),
        Metric::L2 => ("<->", "vector_l2_ops"),
    }
}

/// The distance pgvector answers, as every store reports it: `1 - cos` for cosine, `-a·b`
/// for dot, the squared Euclidean distance for L2.
fn distance(metric: Metric, pg: f64) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => pg as f32,
        Metric::L2 => (pg * pg) as f32,
    }
}

fn index_name(collection: i64) -> String {
    format!("items_hnsw_{collection}")
}

/// The collection of `key`, made with `params` when it does not exist (with its index), and
/// locked for this transaction.
fn find_or_create(
    txn: &mut Transaction<'_>,
    key: &CollectionKey,
    params: &CollectionParams,
) -> Result<Stored> {
    let check = |found: Stored| -> Result<Stored> {
        check_write(key, params, &found.params)?;
        Ok(found)
    };
    if let Some(found) = find(txn, key, true)? {
        return check(found);
    }
    let now = Utc::now();
    let params_json = encode(params);
    // Two first writes at once: one inserts, the other waits for it and then finds its row.
    let inserted = txn.query_opt(
        &format!(
            "INSERT INTO collections \
             (workspace, model, collection, scope, params, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (workspace, model, collection, scope) DO NOTHING RETURNING {COLUMNS}"
        ),
        &[
            &key.workspace,
            &key.model,
            &key.collection,
            &key.scope,
            &params_json,
            &now,
        ],
    )?;
    let Some(row) = inserted else {
        let found = find(txn, key, true)?.ok_or_else(|| StoreError::CommitFailed {
            reason: format!("collection {key} was made and dropped while this write waited"),
        })?;
        return check(found);
    };
    let created = stored(&row, key)?;
    let (_, class) = operator(params.metric);
    // Numbers only (the collection's id and its parameters): nothing of the caller's text.
    txn.batch_execute(&format!(
        "CREATE INDEX {name} ON items USING hnsw ((embedding::vector({dim})) {class}) \
         WITH (m = {m}, ef_construction = {ef}) WHERE collection_id = {id}",
        name = index_name(created.id),
        dim = params.dim,
        m = params.m.clamp(2, 100),
        ef = params.ef_construction.clamp(4, 1000),
        id = created.id,
    ))?;
    Ok(created)
}

pub fn upsert(
    client: &mut Client,
    key: &CollectionKey,
    params: &CollectionParams,
    items: Vec<NewItem>,
) -> Result<UpsertOutcome> {
    let now = Utc::now();
    let items = items.into_iter().map(|i| (i, (now, now))).collect();
    write(client, key, params, items, Times::Now)
}

/// Items as another store kept them, with their (created, updated) times, kept.
pub fn import(
    client: &mut Client,
    key: &CollectionKey,
    params: &CollectionParams,
    items: Vec<(NewItem, Stamps)>,
) -> Result<UpsertOutcome> {
    write(client, key, params, items, Times::Kept)
}

/// When an item was first written and last replaced.
pub type Stamps = (DateTime<Utc>, DateTime<Utc>);

/// Whose times a write's items carry.
#[derive(Clone, Copy, PartialEq)]
enum Times {
    /// The write's: a replaced item keeps its first `created_at`.
    Now,
    /// Another store's, kept as given.
    Kept,
}

fn write(
    client: &mut Client,
    key: &CollectionKey,
    params: &CollectionParams,
    items: Vec<(NewItem, Stamps)>,
    times: Times,
) -> Result<UpsertOutcome> {
    let mut txn = client.transaction()?;
    let collection = find_or_create(&mut txn, key, params)?;
    let now = Utc::now();
    let written = items.len();
    let mut ids = Vec::with_capacity(written);
    let mut records = Vec::with_capacity(written);
    let mut vectors = Vec::with_capacity(written);
    for (item, (created_at, updated_at)) in items {
        let record = ItemRecord {
            id: item.id.clone(),
            filename: item.filename,
            media_ref: item.media_ref,
            system: item.system,
            metadata: item.metadata,
            created_at,
            updated_at,
        };
        ids.push(item.id);
        records.push(encode(&record));
        vectors.push(Vector::from(item.vector));
    }
    let record = match times {
        Times::Now => "jsonb_set(EXCLUDED.record, '{created_at}', items.record -> 'created_at')",
        Times::Kept => "EXCLUDED.record",
    };
    // `xmax` is 0 for a row this statement inserted and set for one it updated.
    let rows = txn.query(
        &format!(
            "INSERT INTO items (collection_id, id, record, embedding) \
             SELECT $1, * FROM unnest($2::text[], $3::jsonb[], $4::vector[]) \
             ON CONFLICT (collection_id, id) DO UPDATE \
             SET record = {record}, embedding = EXCLUDED.embedding \
             RETURNING (xmax <> 0)"
        ),
        &[&collection.id, &ids, &records, &vectors],
    )?;
    let replaced = rows.iter().filter(|r| r.get::<_, bool>(0)).count();
    let count = collection.count + (written - replaced) as i64;
    txn.execute(
        "UPDATE collections SET count = $2, updated_at = $3 WHERE id = $1",
        &[&collection.id, &count, &now],
    )?;
    txn.commit()?;
    Ok(UpsertOutcome {
        written,
        replaced,
        count: count as u64,
    })
}

pub fn delete_where(
    client: &mut Client,
    key: &CollectionKey,
    ids: Option<Vec<String>>,
    filter: Option<&Filter>,
) -> Result<DeleteOutcome> {
    if ids.is_none() && filter.is_none() {
        return Err(StoreError::InvalidInput {
            field: "ids".into(),
            reason: "or a filter is needed to say what to delete".into(),
        }
        .into());
    }
    let mut txn = client.transaction()?;
    let Some(collection) = find(&mut txn, key, true)? else {
        return Ok(DeleteOutcome {
            not_found: ids.unwrap_or_default(),
            ..DeleteOutcome::default()
        });
    };
    let mut sql = format!("DELETE FROM items WHERE collection_id = {}", collection.id);
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut existing = HashSet::new();
    if let Some(ids) = &ids {
        existing = txn
            .query(
                &format!(
                    "SELECT id FROM items WHERE collection_id = {} AND id = ANY($1::text[])",
                    collection.id
                ),
                &[ids],
            )?
            .into_iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        sql.push_str(" AND id = ANY($1::text[])");
        params.push(Box::new(ids.clone()));
    }
    if let Some(filter) = filter {
        let condition = Sql::of(filter, params.len() + 1);
        sql.push_str(" AND ");
        sql.push_str(&condition.text);
        params.extend(condition.params);
    }
    sql.push_str(" RETURNING id");
    let refs = borrowed(&params);
    let mut deleted: Vec<String> = txn
        .query(&sql, &refs)?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let count = collection.count - deleted.len() as i64;
    txn.execute(
        "UPDATE collections SET count = $2, updated_at = now() WHERE id = $1",
        &[&collection.id, &count],
    )?;
    txn.commit()?;
    let mut outcome = DeleteOutcome {
        deleted: deleted.len(),
        count: count as u64,
        ..DeleteOutcome::default()
    };
    match ids {
        // In the order asked: deleted, kept (the filter refused them), or not found.
        Some(ids) => {
            let gone: HashSet<&str> = deleted.iter().map(String::as_str).collect();
            for id in &ids {
                if gone.contains(id.as_str()) {
                    outcome.ids.push(id.clone());
                } else if existing.contains(id) {
                    outcome.kept.push(id.clone());
                } else {
                    outcome.not_found.push(id.clone());
                }
            }
        }
        None => {
            deleted.sort();
            outcome.ids = deleted;
        }
    }
    Ok(outcome)
}

pub fn drop(client: &mut Client, key: &CollectionKey) -> Result<bool> {
    let mut txn = client.transaction()?;
    let Some(collection) = find(&mut txn, key, true)? else {
        return Ok(false);
    };
    txn.batch_execute(&format!(
        "DROP INDEX IF EXISTS {}; DELETE FROM collections WHERE id = {}",
        index_name(collection.id),
        collection.id
    ))?;
    txn.commit()?;
    Ok(true)
}

pub fn record(client: &mut Client, key: &CollectionKey) -> Result<Option<CollectionRecord>> {
    Ok(find(client, key, false)?.map(|s| s.record(key)))
}

pub fn all(client: &mut Client) -> Result<Vec<CollectionRecord>> {
    client
        .query(
            &format!(
                "SELECT {COLUMNS}, workspace, model, collection, scope FROM collections \
                 ORDER BY workspace, model, collection, scope"
            ),
            &[],
        )?
        .into_iter()
        .map(|row| {
            let key = CollectionKey::new(row.get(5), row.get(6), row.get(7), row.get(8));
            Ok(stored(&row, &key)?.record(&key))
        })
        .collect()
}

fn item(row: &Row, column: usize) -> Result<ItemRecord> {
    decode(
        format_args!("item {}", row.get::<_, String>(0)),
        row.get(column),
    )
}

pub fn get(
    client: &mut Client,
    key: &CollectionKey,
    id: &str,
) -> Result<Option<(ItemRecord, Vec<f32>)>> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(None);
    };
    client
        .query_opt(
            "SELECT id, record, embedding FROM items WHERE collection_id = $1 AND id = $2",
            &[&collection.id, &id],
        )?
        .map(|row| Ok((item(&row, 1)?, row.get::<_, Vector>(2).to_vec())))
        .transpose()
}

pub fn export(
    client: &mut Client,
    key: &CollectionKey,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredItem>> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(Vec::new());
    };
    client
        .query(
            "SELECT id, record, embedding FROM items WHERE collection_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
            &[&collection.id, &after.unwrap_or(""), &(limit as i64)],
        )?
        .iter()
        .map(|row| {
            Ok(StoredItem {
                record: item(row, 1)?,
                vector: row.get::<_, Vector>(2).to_vec(),
            })
        })
        .collect()
}

pub fn sample(
    client: &mut Client,
    key: &CollectionKey,
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<f32>>> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(Vec::new());
    };
    // The same `seed` draws the same items while they live.
    Ok(client
        .query(
            "SELECT embedding FROM items WHERE collection_id = $1 \
             ORDER BY md5(id || $2::text) LIMIT $3",
            &[&collection.id, &seed.to_string(), &(n as i64)],
        )?
        .into_iter()
        .map(|row| row.get::<_, Vector>(0).to_vec())
        .collect())
}

pub fn list(
    client: &mut Client,
    key: &CollectionKey,
    after: Option<&str>,
    limit: usize,
    filter: Option<&Filter>,
) -> Result<Vec<ItemRecord>> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(Vec::new());
    };
    let mut params: Vec<Box<dyn ToSql + Sync>> = vec![
        Box::new(after.unwrap_or("").to_string()),
        Box::new(limit as i64),
    ];
    let condition = match filter {
        Some(f) => {
            let sql = Sql::of(f, params.len() + 1);
            params.extend(sql.params);
            sql.text
        }
        None => "TRUE".into(),
    };
    let sql = format!(
        "SELECT id, record FROM items WHERE collection_id = {} AND id > $1 AND {condition} \
         ORDER BY id LIMIT $2",
        collection.id
    );
    let refs = borrowed(&params);
    client
        .query(&sql, &refs)?
        .iter()
        .map(|row| item(row, 1))
        .collect()
}

pub fn count_matching(
    client: &mut Client,
    key: &CollectionKey,
    filter: &Filter,
) -> Result<Option<u64>> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(None);
    };
    let condition = Sql::of(filter, 1);
    let refs = borrowed(&condition.params);
    let row = client.query_one(
        &format!(
            "SELECT count(*) FROM items WHERE collection_id = {} AND {}",
            collection.id, condition.text
        ),
        &refs,
    )?;
    Ok(Some(row.get::<_, i64>(0) as u64))
}

pub fn search(
    client: &mut Client,
    key: &CollectionKey,
    query: &[f32],
    options: &SearchOptions,
) -> Result<SearchOutcome> {
    let Some(collection) = find(client, key, false)? else {
        return Ok(SearchOutcome {
            hits: Vec::new(),
            plan: Plan::Exact,
            count: 0,
        });
    };
    let params = collection.params;
    check_query(key, &params, query, options.precision)?;
    let exact = options.exact || collection.count as usize <= params.exact_below;
    let (op, _) = operator(params.metric);
    // Exact: the plain column, which no index covers, so every item is compared. Otherwise
    // the expression the collection's index is built on.
    let column = if exact {
        "embedding".to_string()
    } else {
        format!("(embedding::vector({}))", params.dim)
    };
    let mut bound: Vec<Box<dyn ToSql + Sync>> = vec![
        Box::new(Vector::from(query.to_vec())),
        Box::new(options.top_k as i64),
    ];
    let condition = match &options.filter {
        Some(f) => {
            let sql = Sql::of(f, bound.len() + 1);
            bound.extend(sql.params);
            sql.text
        }
        None => "TRUE".into(),
    };
    let sql = format!(
        "SELECT id, record, {column} {op} $1::vector AS distance FROM items \
         WHERE collection_id = {id} AND {condition} ORDER BY distance LIMIT $2",
        id = collection.id
    );
    let refs = borrowed(&bound);
    let rows = if exact {
        client.query(&sql, &refs)?
    } else {
        // The index's settings hold for this search's transaction only.
        let ef = options
            .ef
            .unwrap_or(params.ef_search)
            .max(options.top_k)
            .clamp(1, 1000);
        let mut txn = client.transaction()?;
        txn.batch_execute(&format!(
            "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = strict_order"
        ))?;
        let rows = txn.query(&sql, &refs)?;
        txn.commit()?;
        rows
    };
    let hits = rows
        .iter()
        .map(|row| {
            let d = distance(params.metric, row.get::<_, f64>(2));
            Ok(Hit {
                item: item(row, 1)?,
                score: params.metric.score(d),
                distance: d,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SearchOutcome {
        hits,
        plan: if exact { Plan::Exact } else { Plan::Walk },
        count: collection.count as u64,
    })
}
