//! Model-based test: random sequences of upsert, delete, search, drop, save, close and reopen against
//! a plain in-memory oracle. No search may return a deleted or replaced item, exact search
//! equals the oracle, counts are exact.

use std::collections::BTreeMap;
use std::path::Path;

use aimp_index::{
    CollectionKey, CollectionParams, Metric, NewItem, SearchOptions, Store, VectorIndex, distance,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const DIM: usize = 8;

type Oracle = BTreeMap<CollectionKey, BTreeMap<String, Vec<f32>>>;

fn open(dir: &Path) -> VectorIndex {
    VectorIndex::new(Store::open(dir).expect("open store"))
}

fn params(key: &CollectionKey) -> CollectionParams {
    let mut p = CollectionParams::new(DIM, Metric::L2);
    // One collection always walks the graph, the other is exact below 30 items.
    p.exact_below = if key.scope == "graph" { 0 } else { 30 };
    p.m = 4;
    p.ef_construction = 32;
    p
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = [
        CollectionKey::new("ws", "m", "images", "graph"),
        CollectionKey::new("ws", "m", "images", "small"),
    ];
    let mut index = open(dir.path());
    let mut oracle: Oracle = BTreeMap::new();
    for step in 0..steps {
        let key = &keys[rng.random_range(0..keys.len())];
        let ctx = format!("seed {seed} step {step} {key}");
        match rng.random_range(0..100) {
            0..40 => {
                let n = rng.random_range(1..12);
                let mut items = Vec::new();
                let mut ids = std::collections::HashSet::new();
                for _ in 0..n {
                    let id = format!("id-{}", rng.random_range(0..60));
                    if ids.insert(id.clone()) {
                        items.push(NewItem {
                            id,
                            vector: random_vector(&mut rng),
                            filename: None,
                            media_ref: None,
                            metadata: None,
                        });
                    }
                }
                let entry = oracle.entry(key.clone()).or_default();
                let replaced = items.iter().filter(|i| entry.contains_key(&i.id)).count();
                for i in &items {
                    entry.insert(i.id.clone(), i.vector.clone());
                }
                let out = index.upsert(key, params(key), items).expect(&ctx);
                assert_eq!(out.replaced, replaced, "{ctx}");
                assert_eq!(out.count, entry.len() as u64, "{ctx}");
            }
            40..55 => {
                let ids: Vec<String> = (0..rng.random_range(1..6))
                    .map(|_| format!("id-{}", rng.random_range(0..60)))
                    .collect();
                let mut unique = ids.clone();
                unique.sort();
                unique.dedup();
                let out = index.delete(key, unique.clone()).expect(&ctx);
                // Deleting from a collection that does not exist creates nothing.
                let deleted = oracle.get_mut(key).map_or(0, |entry| {
                    unique
                        .iter()
                        .filter(|id| entry.remove(*id).is_some())
                        .count()
                });
                assert_eq!(out.deleted, deleted, "{ctx}");
                assert_eq!(out.not_found.len(), unique.len() - deleted, "{ctx}");
            }
            55..85 => {
                let query = random_vector(&mut rng);
                let k = rng.random_range(1..8);
                let exact = rng.random_bool(0.5);
                let out = index
                    .search(
                        key,
                        &query,
                        SearchOptions {
                            top_k: k,
                            ef: Some(rng.random_range(k..64)),
                            exact,
                            precision: None,
                        },
                    )
                    .expect(&ctx);
                let live = oracle.get(key).cloned().unwrap_or_default();
                assert!(out.hits.len() <= k, "{ctx}");
                for hit in &out.hits {
                    let v = live
                        .get(&hit.item.id)
                        .unwrap_or_else(|| panic!("{ctx}: deleted {} returned", hit.item.id));
                    let d = distance::distance(Metric::L2, &query, v);
                    assert!(
                        (d - hit.distance).abs() < 1e-4,
                        "{ctx}: {} returned with a replaced vector",
                        hit.item.id
                    );
                }
                if out.exhaustive {
                    let mut want: Vec<(f32, String)> = live
                        .iter()
                        .map(|(id, v)| (distance::distance(Metric::L2, &query, v), id.clone()))
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0));
                    want.truncate(k);
                    let got: Vec<&str> = out.hits.iter().map(|h| h.item.id.as_str()).collect();
                    let want_ids: Vec<&str> = want.iter().map(|w| w.1.as_str()).collect();
                    assert_eq!(got, want_ids, "{ctx}: exact search");
                } else {
                    assert_eq!(out.hits.len(), k.min(live.len()), "{ctx}: k live results");
                }
                assert_eq!(out.count, live.len() as u64, "{ctx}");
            }
            85..90 => {
                let existed = index.drop_collection(key).expect(&ctx);
                assert_eq!(existed, oracle.remove(key).is_some(), "{ctx}");
            }
            _ => {
                // Close, after saving the graphs half of the time: reopening then reads them
                // back and catches up, or rebuilds from the store.
                if rng.random_bool(0.5) {
                    index.save_graphs().expect(&ctx);
                }
                drop(index);
                index = open(dir.path());
            }
        }
        let count = index.count(key).expect(&ctx);
        assert_eq!(
            count,
            oracle.get(key).map(|m| m.len() as u64),
            "{ctx}: count"
        );
        let stored = index.record(key).expect(&ctx).map(|r| r.count);
        assert_eq!(stored, count, "{ctx}: stored count");
        // Listing in pages of 7 gives exactly the live ids, in order.
        let mut listed = Vec::new();
        loop {
            let page = index
                .list_items(key, listed.last().map(String::as_str), 7)
                .expect(&ctx);
            let done = page.len() < 7;
            listed.extend(page.into_iter().map(|i| i.id));
            if done {
                break;
            }
        }
        let live: Vec<String> = oracle
            .get(key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(listed, live, "{ctx}: listing");
    }
}

#[test]
fn random_operation_sequences_agree_with_the_oracle() {
    for seed in 0..24 {
        run(seed, 150);
    }
}
