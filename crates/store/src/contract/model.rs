//! The oracle model test: random sequences of upsert (with random metadata), delete (by ids, by
//! filter, or both), search and listing (with and without random filters), drop, save, close
//! and reopen against a plain in-memory oracle that evaluates every filter on every item
//! itself. No search may return a deleted or replaced item or one the filter refuses, exact
//! search equals the oracle, counts are exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use aimp_index::distance;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::Subject;
use crate::{CollectionKey, CollectionParams, Filter, Metric, NewItem, SearchOptions};

const DIM: usize = 8;

/// What the oracle knows of an item: its vector and its metadata.
type Live = BTreeMap<String, (Vec<f32>, Option<Value>)>;
type Oracle = BTreeMap<CollectionKey, Live>;

const COLORS: [&str; 3] = ["red", "green", "blue"];
const TAGS: [&str; 3] = ["a", "b", "c"];

/// Random metadata: a colour, a number, tags, a date; each sometimes absent or null.
fn random_metadata(rng: &mut StdRng) -> Option<Value> {
    if rng.random_bool(0.1) {
        return None;
    }
    let mut m = serde_json::Map::new();
    if rng.random_bool(0.8) {
        m.insert("color".into(), json!(COLORS[rng.random_range(0..3)]));
    }
    if rng.random_bool(0.8) {
        m.insert("n".into(), json!(rng.random_range(0..10)));
    }
    match rng.random_range(0..4) {
        0 => {}
        1 => {
            m.insert("tags".into(), Value::Null);
        }
        _ => {
            let tags: Vec<&str> = TAGS
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.5))
                .collect();
            m.insert("tags".into(), json!(tags));
        }
    }
    if rng.random_bool(0.7) {
        let day = rng.random_range(1..29);
        m.insert("when".into(), json!(format!("2024-02-{day:02}T12:00:00Z")));
    }
    if rng.random_bool(0.5) {
        m.insert(
            "cam".into(),
            json!({"make": COLORS[rng.random_range(0..3)]}),
        );
    }
    Some(Value::Object(m))
}

/// A filter the test builds and evaluates itself, independently of the store's evaluator.
#[derive(Debug, Clone)]
enum F {
    Color(&'static str),
    ColorAny(Vec<&'static str>),
    ColorExcept(&'static str),
    NRange(i64, i64),
    Tag(&'static str),
    TagsEmpty,
    TagsNull,
    Before(u32),
    Make(&'static str),
    Ids(Vec<String>),
    And(Vec<F>),
    Or(Vec<F>),
    Not(Vec<F>),
}

fn random_filter(rng: &mut StdRng, depth: usize) -> F {
    let pick = if depth >= 2 {
        rng.random_range(0..10)
    } else {
        rng.random_range(0..13)
    };
    match pick {
        0 => F::Color(COLORS[rng.random_range(0..3)]),
        1 => F::ColorAny(
            COLORS
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.5))
                .collect(),
        ),
        2 => F::ColorExcept(COLORS[rng.random_range(0..3)]),
        3 => {
            let lo = rng.random_range(0..10);
            F::NRange(lo, lo + rng.random_range(0..5))
        }
        4 => F::Tag(TAGS[rng.random_range(0..3)]),
        5 => F::TagsEmpty,
        6 => F::TagsNull,
        7 => F::Before(rng.random_range(1..29)),
        8 => F::Make(COLORS[rng.random_range(0..3)]),
        9 => F::Ids(
            (0..3)
                .map(|_| format!("id-{}", rng.random_range(0..60)))
                .collect(),
        ),
        10 => F::And(
            (0..rng.random_range(1..3))
                .map(|_| random_filter(rng, depth + 1))
                .collect(),
        ),
        11 => F::Or(
            (0..rng.random_range(1..3))
                .map(|_| random_filter(rng, depth + 1))
                .collect(),
        ),
        _ => F::Not(
            (0..rng.random_range(1..3))
                .map(|_| random_filter(rng, depth + 1))
                .collect(),
        ),
    }
}

impl F {
    /// The filter in the API's JSON: always a filter object at the top.
    fn json(&self) -> Value {
        match self {
            F::And(fs) => json!({"must": fs.iter().map(F::condition).collect::<Vec<_>>()}),
            F::Or(fs) => json!({"should": fs.iter().map(F::condition).collect::<Vec<_>>()}),
            F::Not(fs) => json!({"must_not": fs.iter().map(F::condition).collect::<Vec<_>>()}),
            other => json!({"must": [other.condition()]}),
        }
    }

    fn condition(&self) -> Value {
        match self {
            F::Color(c) => json!({"key": "color", "match": {"value": c}}),
            F::ColorAny(cs) => json!({"key": "color", "match": {"any": cs}}),
            F::ColorExcept(c) => json!({"key": "color", "match": {"except": [c]}}),
            F::NRange(lo, hi) => json!({"key": "n", "range": {"gte": lo, "lt": hi}}),
            F::Tag(t) => json!({"key": "tags", "match": {"value": t}}),
            F::TagsEmpty => json!({"is_empty": {"key": "tags"}}),
            F::TagsNull => json!({"is_null": {"key": "tags"}}),
            F::Before(day) => {
                json!({"key": "when", "range": {"lt": format!("2024-02-{day:02}T12:00:00+00:00")}})
            }
            F::Make(c) => json!({"key": "cam.make", "match": {"value": c}}),
            F::Ids(ids) => json!({"has_id": ids}),
            F::And(_) | F::Or(_) | F::Not(_) => self.json(),
        }
    }

    fn holds(&self, id: &str, meta: Option<&Value>) -> bool {
        let field = |name: &str| meta.and_then(|m| m.get(name));
        let color = field("color").and_then(Value::as_str);
        let tags: Vec<&str> = field("tags")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match self {
            F::Color(c) => color == Some(*c),
            F::ColorAny(cs) => color.is_some_and(|v| cs.contains(&v)),
            F::ColorExcept(c) => color.is_some_and(|v| v != *c),
            F::NRange(lo, hi) => field("n")
                .and_then(Value::as_i64)
                .is_some_and(|n| *lo <= n && n < *hi),
            F::Tag(t) => tags.contains(t),
            F::TagsEmpty => tags.is_empty(),
            F::TagsNull => field("tags").is_some_and(Value::is_null),
            F::Before(day) => field("when")
                .and_then(Value::as_str)
                .and_then(|w| w[8..10].parse::<u32>().ok())
                .is_some_and(|d| d < *day),
            F::Make(c) => {
                field("cam")
                    .and_then(|c| c.get("make"))
                    .and_then(Value::as_str)
                    == Some(*c)
            }
            F::Ids(ids) => ids.iter().any(|i| i == id),
            F::And(fs) => fs.iter().all(|f| f.holds(id, meta)),
            F::Or(fs) => fs.iter().any(|f| f.holds(id, meta)),
            F::Not(fs) => !fs.iter().any(|f| f.holds(id, meta)),
        }
    }

    fn parse(&self) -> Filter {
        Filter::parse(&self.json()).unwrap_or_else(|e| panic!("{:?}: {e:?}", self.json()))
    }
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

/// One random sequence, in a workspace of its own so sequences share a store.
fn run(subject: &dyn Subject, seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let workspace = format!("ws{seed}");
    let keys = [
        CollectionKey::new(&workspace, "m", "images", "graph"),
        CollectionKey::new(&workspace, "m", "images", "small"),
    ];
    let mut store = subject.open();
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
                            system: None,
                            metadata: random_metadata(&mut rng),
                        });
                    }
                }
                let entry = oracle.entry(key.clone()).or_default();
                let replaced = items.iter().filter(|i| entry.contains_key(&i.id)).count();
                for i in &items {
                    entry.insert(i.id.clone(), (i.vector.clone(), i.metadata.clone()));
                }
                let out = store.upsert(key, params(key), items).expect(&ctx);
                assert_eq!(out.replaced, replaced, "{ctx}");
                assert_eq!(out.count, entry.len() as u64, "{ctx}");
            }
            40..48 => {
                // Delete by filter, with ids half of the time.
                let f = random_filter(&mut rng, 0);
                let ids: Option<Vec<String>> = rng.random_bool(0.5).then(|| {
                    let mut ids: Vec<String> = (0..rng.random_range(1..6))
                        .map(|_| format!("id-{}", rng.random_range(0..60)))
                        .collect();
                    ids.sort();
                    ids.dedup();
                    ids
                });
                let out = store
                    .delete_where(key, ids.clone(), Some(f.parse()))
                    .expect(&ctx);
                let entry = oracle.get_mut(key);
                let mut want: Vec<String> = match (&entry, &ids) {
                    (None, _) => Vec::new(),
                    (Some(live), Some(ids)) => ids
                        .iter()
                        .filter(|id| live.get(*id).is_some_and(|(_, m)| f.holds(id, m.as_ref())))
                        .cloned()
                        .collect(),
                    (Some(live), None) => live
                        .iter()
                        .filter(|(id, (_, m))| f.holds(id, m.as_ref()))
                        .map(|(id, _)| id.clone())
                        .collect(),
                };
                if let Some(live) = entry {
                    for id in &want {
                        live.remove(id);
                    }
                }
                let mut got = out.ids.clone();
                got.sort();
                want.sort();
                assert_eq!(got, want, "{ctx}: delete by {:?}", f.json());
                assert_eq!(out.deleted, want.len(), "{ctx}");
            }
            48..55 => {
                let ids: Vec<String> = (0..rng.random_range(1..6))
                    .map(|_| format!("id-{}", rng.random_range(0..60)))
                    .collect();
                let mut unique = ids.clone();
                unique.sort();
                unique.dedup();
                let out = store
                    .delete_where(key, Some(unique.clone()), None)
                    .expect(&ctx);
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
                let f = rng.random_bool(0.5).then(|| random_filter(&mut rng, 0));
                let out = store
                    .search(
                        key,
                        &query,
                        SearchOptions {
                            top_k: k,
                            ef: Some(rng.random_range(k..64)),
                            exact,
                            precision: None,
                            filter: f.as_ref().map(|f| Arc::new(f.parse())),
                            walk: false,
                        },
                    )
                    .expect(&ctx);
                let all = oracle.get(key).cloned().unwrap_or_default();
                let count = all.len();
                let live: BTreeMap<String, Vec<f32>> = all
                    .into_iter()
                    .filter(|(id, (_, m))| f.as_ref().is_none_or(|f| f.holds(id, m.as_ref())))
                    .map(|(id, (v, _))| (id, v))
                    .collect();
                assert!(out.hits.len() <= k, "{ctx}");
                for hit in &out.hits {
                    let v = live.get(&hit.item.id).unwrap_or_else(|| {
                        panic!("{ctx}: deleted or filtered-out {} returned", hit.item.id)
                    });
                    let d = distance::distance(Metric::L2, &query, v);
                    assert!(
                        (d - hit.distance).abs() < 1e-4,
                        "{ctx}: {} returned with a replaced vector",
                        hit.item.id
                    );
                }
                if out.exhaustive() {
                    let mut want: Vec<(f32, String)> = live
                        .iter()
                        .map(|(id, v)| (distance::distance(Metric::L2, &query, v), id.clone()))
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0));
                    want.truncate(k);
                    let got: Vec<&str> = out.hits.iter().map(|h| h.item.id.as_str()).collect();
                    let want_ids: Vec<&str> = want.iter().map(|w| w.1.as_str()).collect();
                    assert_eq!(got, want_ids, "{ctx}: exact search");
                } else if f.is_none() {
                    assert_eq!(out.hits.len(), k.min(live.len()), "{ctx}: k live results");
                }
                assert_eq!(out.count, count as u64, "{ctx}");
            }
            85..90 => {
                let existed = store.drop_collection(key).expect(&ctx);
                assert_eq!(existed, oracle.remove(key).is_some(), "{ctx}");
            }
            _ => {
                // Close, after a checkpoint half of the time: the embedded store then reads
                // its graphs back and catches up, or rebuilds them from the store.
                if rng.random_bool(0.5) {
                    store.checkpoint().expect(&ctx);
                }
                drop(store);
                store = subject.open();
            }
        }
        let stored = store.record(key).expect(&ctx).map(|r| r.count);
        assert_eq!(
            stored,
            oracle.get(key).map(|m| m.len() as u64),
            "{ctx}: stored count"
        );
        // Listing in pages of 7 gives exactly the live ids the filter passes, in order, with
        // their metadata as given.
        let f = rng.random_bool(0.5).then(|| random_filter(&mut rng, 0));
        let parsed = f.as_ref().map(F::parse);
        let mut listed = Vec::new();
        loop {
            let after = listed.last().map(|(id, _): &(String, _)| id.as_str());
            let page = store
                .list_items(key, after, 7, parsed.as_ref())
                .expect(&ctx);
            let done = page.len() < 7;
            listed.extend(page.into_iter().map(|i| (i.id, i.metadata)));
            if done {
                break;
            }
        }
        let live: Vec<(String, Option<Value>)> = oracle
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|(id, (_, meta))| f.as_ref().is_none_or(|f| f.holds(id, meta.as_ref())))
                    .map(|(id, (_, meta))| (id.clone(), meta.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(filter) = parsed.as_ref() {
            let counted = store.count_matching(key, filter).expect(&ctx);
            assert_eq!(
                counted,
                oracle.get(key).map(|_| live.len() as u64),
                "{ctx}: count matching {:?}",
                f.as_ref().map(|f| f.json())
            );
        }
        assert_eq!(listed, live, "{ctx}: listing by {:?}", f.map(|f| f.json()));
    }
}

pub fn random_operation_sequences_agree_with_the_oracle(subject: &dyn Subject) {
    for seed in 0..24 {
        run(subject, seed, 150);
    }
}
