//! `aimp bench collection`: recall and latency of a live collection, through the same
//! `Store::search` the server answers with, against exact search of the same collection.
//! Queries are a seeded sample of the collection's own vectors, or given ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aimp_store::{CollectionKey, SearchOptions, Store};
use serde::Serialize;

use crate::machine::{Machine, Versions};

/// One setting measured on a collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionRecord {
    pub engine: &'static str,
    pub workspace: String,
    pub model: String,
    pub collection: String,
    pub scope: String,
    pub count: u64,
    pub queries: usize,
    pub k: usize,
    pub ef: usize,
    pub recall: f64,
    pub qps_single: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Whether the server compared every vector at this setting (small collections are
    /// searched exactly), which makes recall 1 by construction.
    pub exhaustive: bool,
    pub machine: Machine,
    pub versions: Versions,
}

/// `n` of the collection's own vectors drawn with `seed`.
pub fn sample_queries(
    index: &dyn Store,
    key: &CollectionKey,
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<f32>>, String> {
    let queries = index
        .sample_vectors(key, n, seed)
        .map_err(|e| e.to_string())?;
    if queries.is_empty() {
        return Err(format!("collection {key} holds no items"));
    }
    Ok(queries)
}

/// Measures each `ef` on `queries` against exact search of the same collection.
pub fn measure(
    index: &dyn Store,
    key: &CollectionKey,
    queries: &[Vec<f32>],
    k: usize,
    efs: &[usize],
    stop: &AtomicBool,
) -> Result<Vec<CollectionRecord>, String> {
    let count = index
        .record(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no collection {key}"))?
        .count;
    let err = |e: aimp_store::StoreError| e.to_string();
    let truth: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            let exact = SearchOptions {
                top_k: k,
                ef: None,
                exact: true,
                precision: None,
                filter: None,
                walk: false,
            };
            Ok(index
                .search(key, q, exact)
                .map_err(err)?
                .hits
                .into_iter()
                .map(|h| h.item.id)
                .collect())
        })
        .collect::<Result<_, String>>()?;
    let (machine, versions) = (Machine::detect(), Versions::current());
    let mut out = Vec::new();
    for &ef in efs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let options = SearchOptions {
            top_k: k,
            ef: Some(ef),
            exact: false,
            precision: None,
            filter: None,
            walk: false,
        };
        let mut latencies = Vec::with_capacity(queries.len());
        let mut hits = 0usize;
        let mut wanted = 0usize;
        let mut exhaustive = true;
        for (q, want) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let found = index.search(key, q, options.clone()).map_err(err)?;
            latencies.push(t.elapsed().as_secs_f64());
            exhaustive &= found.exhaustive();
            hits += want
                .iter()
                .filter(|id| found.hits.iter().any(|h| &h.item.id == *id))
                .count();
            wanted += want.len();
        }
        let total: f64 = latencies.iter().sum();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let rank = (p * latencies.len() as f64).ceil() as usize;
            latencies[rank.clamp(1, latencies.len()) - 1] * 1e3
        };
        out.push(CollectionRecord {
            engine: "collection",
            workspace: key.workspace.clone(),
            model: key.model.clone(),
            collection: key.collection.clone(),
            scope: key.scope.clone(),
            count,
            queries: queries.len(),
            k,
            ef,
            recall: if wanted == 0 {
                1.0
            } else {
                hits as f64 / wanted as f64
            },
            qps_single: queries.len() as f64 / total.max(1e-12),
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            exhaustive,
            machine: machine.clone(),
            versions: versions.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimp_store::{CollectionParams, Metric, NewItem};

    #[test]
    fn a_live_collection_measured_against_its_exact_search() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = aimp_store_embedded::EmbeddedStore::open(
            dir.path(),
            aimp_store_embedded::DEFAULT_CACHE_BYTES,
        )
        .expect("store");
        let key = CollectionKey::new("default", "demo-model", "texts", "notes");
        let (base, _) =
            crate::synthetic::generate(crate::synthetic::Kind::Clustered, 3000, 0, 8, 5);
        let mut params = CollectionParams::new(8, Metric::L2);
        params.exact_below = 1000; // so the graph, not brute force, answers
        let items: Vec<NewItem> = (0..base.rows)
            .map(|i| NewItem {
                id: format!("item-{i:05}"),
                vector: base.row(i).to_vec(),
                filename: None,
                media_ref: None,
                system: None,
                metadata: None,
            })
            .collect();
        index.upsert(&key, params, items).expect("upsert");
        let queries = sample_queries(&index, &key, 40, 1).expect("sample");
        assert_eq!(queries.len(), 40);
        assert_eq!(queries, sample_queries(&index, &key, 40, 1).expect("again"));
        let stop = AtomicBool::new(false);
        let records = measure(&index, &key, &queries, 10, &[8, 128], &stop).expect("measure");
        assert_eq!(records.len(), 2);
        assert!(!records[0].exhaustive);
        assert!(records[1].recall >= records[0].recall);
        assert!(records[1].recall > 0.9, "{:?}", records[1]);
        assert_eq!(records[0].count, 3000);
        let missing = CollectionKey::new("default", "demo-model", "texts", "nothing");
        assert!(sample_queries(&index, &missing, 5, 1).is_err());
    }
}
