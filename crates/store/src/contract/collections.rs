//! Collections: upserts by id, the parameters a collection keeps, refusals of bad items,
//! search (exact and through the index) with every metric, filters on search, listing and
//! delete, dropping, the separation of workspaces and scopes, and a reopen.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Subject;
use crate::{
    CollectionKey, CollectionParams, Filter, Metric, NewItem, Plan, Precision, SearchOptions,
    Store, StoreError,
};

fn key(workspace: &str, scope: &str) -> CollectionKey {
    CollectionKey::new(workspace, "vectors", "things", scope)
}

fn params(dim: usize, metric: Metric) -> CollectionParams {
    let mut p = CollectionParams::new(dim, metric);
    p.m = 8;
    p.ef_construction = 64;
    p
}

fn item(id: &str, vector: Vec<f32>, metadata: Option<Value>) -> NewItem {
    NewItem {
        id: id.into(),
        vector,
        filename: Some(format!("{id}.png")),
        media_ref: None,
        system: Some(json!({"text": id})),
        metadata,
    }
}

/// `n` points on a line in 2-d, `i` at `(i, 1)`, each with its parity and number.
fn line(n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| {
            item(
                &format!("p{i:03}"),
                vec![i as f32, 1.0],
                Some(json!({"even": i % 2 == 0, "n": i, "tags": [format!("t{}", i % 3)]})),
            )
        })
        .collect()
}

fn search(
    store: &dyn Store,
    key: &CollectionKey,
    query: &[f32],
    top_k: usize,
    exact: bool,
    filter: Option<Value>,
) -> Vec<String> {
    let options = SearchOptions {
        top_k,
        ef: Some(64),
        exact,
        precision: None,
        filter: filter.map(|f| Arc::new(Filter::parse(&f).expect("a filter"))),
        walk: false,
    };
    store
        .search(key, query, options)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.item.id)
        .collect()
}

pub fn upsert_creates_replaces_and_counts(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    assert_eq!(store.record(&k).expect("record"), None);
    let out = store
        .upsert(&k, params(2, Metric::L2), line(10))
        .expect("upsert");
    assert_eq!((out.written, out.replaced, out.count), (10, 0, 10));
    let replaced = vec![item("p003", vec![100.0, 1.0], Some(json!({"moved": true})))];
    let out = store
        .upsert(&k, params(2, Metric::L2), replaced)
        .expect("replace");
    assert_eq!((out.written, out.replaced, out.count), (1, 1, 10));
    let (record, vector) = store.get(&k, "p003").expect("get").expect("p003");
    assert_eq!(vector, vec![100.0, 1.0]);
    assert_eq!(record.metadata, Some(json!({"moved": true})));
    assert_eq!(record.filename.as_deref(), Some("p003.png"));
    assert_eq!(record.system, Some(json!({"text": "p003"})));
    assert_eq!(store.get(&k, "nope").expect("get"), None);
    let stored = store.record(&k).expect("record").expect("created");
    assert_eq!(stored.count, 10);
    assert_eq!(stored.key, k);
    assert_eq!(stored.params.dim, 2);
    // The replaced vector is the one searched.
    assert_eq!(search(&*store, &k, &[100.0, 1.0], 1, true, None), ["p003"]);
}

pub fn a_collection_keeps_its_parameters(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    store
        .upsert(&k, params(2, Metric::L2), line(3))
        .expect("upsert");
    let refused = |p: CollectionParams, items: Vec<NewItem>| match store.upsert(&k, p, items) {
        Err(StoreError::ParamsMismatch { collection, reason }) => {
            assert!(collection.contains("things"), "{collection}");
            reason
        }
        other => panic!("{other:?}"),
    };
    let reason = refused(
        params(3, Metric::L2),
        vec![item("x", vec![0.0, 0.0, 1.0], None)],
    );
    assert!(reason.contains("dimensions"), "{reason}");
    let reason = refused(
        params(2, Metric::Cosine),
        vec![item("x", vec![0.0, 1.0], None)],
    );
    assert!(reason.contains("metric"), "{reason}");
    let mut int8 = params(2, Metric::L2);
    int8.precision = Precision::Int8;
    let reason = refused(int8, vec![item("x", vec![0.0, 1.0], None)]);
    assert!(reason.contains("int8"), "{reason}");
    // A query encoded at another precision is refused too; a raw vector is not.
    let options = |precision| SearchOptions {
        top_k: 1,
        precision,
        ..SearchOptions::default()
    };
    assert!(matches!(
        store.search(&k, &[0.0, 1.0], options(Some(Precision::Int8))),
        Err(StoreError::ParamsMismatch { .. })
    ));
    assert!(store.search(&k, &[0.0, 1.0], options(None)).is_ok());
    assert_eq!(store.record(&k).expect("record").expect("kept").count, 3);
}

pub fn bad_items_are_refused_whole(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    let field_of = |items: Vec<NewItem>| match store.upsert(&k, params(2, Metric::L2), items) {
        Err(StoreError::InvalidInput { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let good = || item("good", vec![1.0, 1.0], None);
    assert_eq!(
        field_of(vec![good(), item("bad", vec![1.0], None)]),
        "items[1].vector"
    );
    assert_eq!(
        field_of(vec![good(), item("nan", vec![f32::NAN, 1.0], None)]),
        "items[1].vector"
    );
    assert_eq!(field_of(vec![good(), good()]), "items[1].id");
    assert_eq!(
        field_of(vec![item("", vec![1.0, 1.0], None)]),
        "items[0].id"
    );
    assert_eq!(
        field_of(vec![item("x".repeat(513).as_str(), vec![1.0, 1.0], None)]),
        "items[0].id"
    );
    assert_eq!(
        field_of(vec![item("m", vec![1.0, 1.0], Some(json!({"$system": 1})))]),
        "items[0].metadata.$system"
    );
    // Nothing of a refused batch was written, and no collection was made.
    assert_eq!(store.record(&k).expect("record"), None);
}

pub fn exact_and_graph_search_find_the_nearest(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    let mut p = params(2, Metric::L2);
    p.exact_below = 0; // the index, never a scan, unless asked
    store.upsert(&k, p, line(200)).expect("upsert");
    for (query, want) in [
        (17.2, ["p017", "p018", "p016"]),
        (150.9, ["p151", "p150", "p152"]),
    ] {
        let q = [query, 1.0];
        assert_eq!(search(&*store, &k, &q, 3, true, None), want, "exact");
        assert_eq!(search(&*store, &k, &q, 3, false, None), want, "graph");
    }
    let outcome = store
        .search(
            &k,
            &[3.0, 1.0],
            SearchOptions {
                top_k: 2,
                exact: true,
                ..SearchOptions::default()
            },
        )
        .expect("search");
    assert_eq!(outcome.plan, Plan::Exact);
    assert!(outcome.exhaustive());
    assert_eq!(outcome.count, 200);
    assert_eq!(outcome.hits[0].item.id, "p003");
    assert_eq!(
        outcome.hits[0].item.metadata,
        Some(json!({"even": false, "n": 3, "tags": ["t0"]}))
    );
    // A collection that does not exist answers nothing.
    let empty = store
        .search(
            &key("ws", "none"),
            &[0.0, 0.0],
            SearchOptions {
                top_k: 3,
                ..SearchOptions::default()
            },
        )
        .expect("search");
    assert!(empty.hits.is_empty());
    assert_eq!(empty.count, 0);
}

pub fn every_metric_scores_as_documented(subject: &dyn Subject) {
    let store = subject.open();
    let items = || {
        vec![
            item("east", vec![3.0, 0.0], None),
            item("north", vec![0.0, 3.0], None),
            item("diagonal", vec![1.0, 1.0], None),
        ]
    };
    let hits = |metric: Metric| {
        let k = key("ws", metric.as_str());
        store
            .upsert(&k, params(2, metric), items())
            .expect("upsert");
        let options = SearchOptions {
            top_k: 3,
            exact: true,
            ..SearchOptions::default()
        };
        store.search(&k, &[1.0, 0.0], options).expect("search").hits
    };
    let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
    // Cosine: the similarity; the distance is 1 minus it.
    let cos = hits(Metric::Cosine);
    assert_eq!(cos[0].item.id, "east");
    assert!(close(cos[0].score, 1.0) && close(cos[0].distance, 0.0));
    assert_eq!(cos[1].item.id, "diagonal");
    assert!(close(cos[1].score, std::f32::consts::FRAC_1_SQRT_2));
    assert!(close(cos[2].score, 0.0));
    // Dot: the inner product; the distance is its negative.
    let dot = hits(Metric::Dot);
    assert_eq!(dot[0].item.id, "east");
    assert!(close(dot[0].score, 3.0) && close(dot[0].distance, -3.0));
    // L2: the Euclidean distance as the score; the distance is its square.
    let l2 = hits(Metric::L2);
    assert_eq!(l2[0].item.id, "diagonal");
    assert!(close(l2[0].score, 1.0) && close(l2[0].distance, 1.0));
    assert_eq!(l2[1].item.id, "east");
    assert!(close(l2[1].score, 2.0) && close(l2[1].distance, 4.0));
    assert_eq!(l2[2].item.id, "north");
    assert!(close(l2[2].score, 10f32.sqrt()) && close(l2[2].distance, 10.0));
}

pub fn filtered_search_and_listing_pass_only_matching_items(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    let mut p = params(2, Metric::L2);
    p.exact_below = 0;
    store.upsert(&k, p, line(300)).expect("upsert");
    let even = json!({"must": [{"key": "even", "match": {"value": true}}]});
    for exact in [true, false] {
        assert_eq!(
            search(&*store, &k, &[101.2, 1.0], 3, exact, Some(even.clone())),
            ["p102", "p100", "p104"],
            "exact: {exact}"
        );
    }
    // A filter only a handful pass still finds all of them, nearest first.
    let rare = json!({"must": [{"key": "n", "range": {"gte": 290}}, {"key": "tags", "match": {"value": "t1"}}]});
    assert_eq!(
        search(&*store, &k, &[0.0, 1.0], 10, false, Some(rare.clone())),
        ["p292", "p295", "p298"]
    );
    let none = json!({"must": [{"key": "n", "range": {"gt": 1000}}]});
    assert!(search(&*store, &k, &[0.0, 1.0], 5, false, Some(none)).is_empty());
    // Listing: id order, pages after a cursor, the filter's matches only, counted exactly.
    let rare = Filter::parse(&rare).expect("filter");
    let first = store.list_items(&k, None, 2, Some(&rare)).expect("list");
    let ids: Vec<&str> = first.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["p292", "p295"]);
    let next = store
        .list_items(&k, Some("p295"), 2, Some(&rare))
        .expect("list");
    let ids: Vec<&str> = next.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["p298"]);
    assert_eq!(store.count_matching(&k, &rare).expect("count"), Some(3));
    assert_eq!(
        store
            .count_matching(&key("ws", "none"), &rare)
            .expect("count"),
        None
    );
    let all = store.list_items(&k, Some("p297"), 10, None).expect("list");
    let ids: Vec<&str> = all.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["p298", "p299"]);
    // The system fields: `$id` and what the gateway recorded.
    let by_id = json!({"must": [{"has_id": ["p007", "p009", "nope"]}]});
    assert_eq!(
        search(&*store, &k, &[0.0, 1.0], 5, false, Some(by_id)),
        ["p007", "p009"]
    );
}

pub fn deletes_by_id_and_by_filter(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    store
        .upsert(&k, params(2, Metric::L2), line(20))
        .expect("upsert");
    let out = store
        .delete_where(
            &k,
            Some(vec!["p001".into(), "p002".into(), "nope".into()]),
            None,
        )
        .expect("delete");
    assert_eq!(out.deleted, 2);
    assert_eq!(out.not_found, ["nope"]);
    assert_eq!(out.count, 18);
    let even = Filter::parse(&json!({"must": [{"key": "even", "match": {"value": true}}]}))
        .expect("filter");
    // Ids and a filter: only the named ones it passes; the others are kept.
    let out = store
        .delete_where(
            &k,
            Some(vec!["p004".into(), "p005".into()]),
            Some(even.clone()),
        )
        .expect("delete");
    assert_eq!(out.ids, ["p004"]);
    assert_eq!(out.kept, ["p005"]);
    assert_eq!(out.count, 17);
    // A filter alone: every item it passes.
    let out = store.delete_where(&k, None, Some(even)).expect("delete");
    assert_eq!(out.deleted, 8);
    assert_eq!(out.count, 9);
    let left: Vec<String> = store
        .list_items(&k, None, 100, None)
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        left,
        [
            "p003", "p005", "p007", "p009", "p011", "p013", "p015", "p017", "p019"
        ]
    );
    assert_eq!(search(&*store, &k, &[3.4, 1.0], 1, true, None), ["p003"]);
    // Neither ids nor a filter is the caller's mistake.
    assert!(matches!(
        store.delete_where(&k, None, None),
        Err(StoreError::InvalidInput { .. })
    ));
}

pub fn dropping_a_collection_forgets_its_items(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    store
        .upsert(&k, params(2, Metric::L2), line(5))
        .expect("upsert");
    assert!(store.drop_collection(&k).expect("drop"));
    assert!(!store.drop_collection(&k).expect("drop again"));
    assert_eq!(store.record(&k).expect("record"), None);
    assert!(search(&*store, &k, &[0.0, 1.0], 3, true, None).is_empty());
    // Made again, with other parameters: nothing of the old one is left.
    store
        .upsert(
            &k,
            params(3, Metric::Cosine),
            vec![item("new", vec![1.0, 0.0, 0.0], None)],
        )
        .expect("upsert");
    assert_eq!(store.record(&k).expect("record").expect("made").count, 1);
    assert_eq!(
        search(&*store, &k, &[1.0, 0.0, 0.0], 5, true, None),
        ["new"]
    );
}

pub fn workspaces_and_scopes_are_apart(subject: &dyn Subject) {
    let store = subject.open();
    let (a, b, other_scope) = (key("alpha", "s"), key("beta", "s"), key("alpha", "t"));
    store.upsert(&a, params(2, Metric::L2), line(4)).expect("a");
    store
        .upsert(
            &b,
            params(2, Metric::L2),
            vec![item("p001", vec![9.0, 9.0], None)],
        )
        .expect("b");
    assert_eq!(search(&*store, &a, &[9.0, 9.0], 10, true, None).len(), 4);
    assert_eq!(search(&*store, &b, &[9.0, 9.0], 10, true, None), ["p001"]);
    assert!(search(&*store, &other_scope, &[9.0, 9.0], 10, true, None).is_empty());
    assert_eq!(
        store.get(&b, "p001").expect("get").expect("b's").1,
        vec![9.0, 9.0]
    );
    assert_eq!(
        store.get(&a, "p001").expect("get").expect("a's").1,
        vec![1.0, 1.0]
    );
    store
        .delete_where(&b, Some(vec!["p001".into()]), None)
        .expect("delete");
    assert!(store.get(&a, "p001").expect("get").is_some());
    let mut listed: Vec<String> = store
        .collections()
        .expect("collections")
        .into_iter()
        .map(|c| c.key.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, [a.to_string(), b.to_string()]);
}

pub fn collections_survive_reopen(subject: &dyn Subject) {
    let k = key("ws", "a");
    {
        let store = subject.open();
        let mut p = params(2, Metric::L2);
        p.exact_below = 0;
        store.upsert(&k, p, line(50)).expect("upsert");
        store
            .delete_where(&k, Some(vec!["p010".into()]), None)
            .expect("delete");
        store.checkpoint().expect("checkpoint");
        store
            .upsert(&k, p, vec![item("late", vec![10.0, 1.0], None)])
            .expect("after the checkpoint");
    }
    let store = subject.open();
    assert_eq!(store.record(&k).expect("record").expect("kept").count, 50);
    assert_eq!(
        search(&*store, &k, &[9.9, 1.0], 2, false, None),
        ["late", "p009"]
    );
    assert_eq!(
        store.sample_vectors(&k, 5, 7).expect("sample").len(),
        5,
        "five of the live vectors"
    );
}

pub fn first_writes_at_once_make_one_collection(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "race");
    let ready = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (store, k, ready) = (&store, &k, &ready);
                s.spawn(move || {
                    // Each writer holds a connection (where the store has them) first, then
                    // all write at once.
                    store.collections().expect("warm up");
                    ready.wait();
                    let items = vec![item(&format!("w{w}"), vec![w as f32, 1.0], None)];
                    store.upsert(k, params(2, Metric::L2), items)
                })
            })
            .collect();
        for writer in writers {
            writer
                .join()
                .expect("writer")
                .expect("every first write succeeds");
        }
    });
    assert_eq!(
        store
            .record(&k)
            .expect("record")
            .expect("one collection")
            .count,
        8
    );
    assert_eq!(store.collections().expect("collections").len(), 1);
}

pub fn a_replace_keeps_the_first_created_time(subject: &dyn Subject) {
    let store = subject.open();
    let k = key("ws", "a");
    store
        .upsert(&k, params(2, Metric::L2), line(2))
        .expect("upsert");
    let (first, _) = store.get(&k, "p001").expect("get").expect("p001");
    assert_eq!(first.created_at, first.updated_at);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let again = vec![item("p001", vec![5.0, 1.0], None)];
    store
        .upsert(&k, params(2, Metric::L2), again)
        .expect("replace");
    let (replaced, _) = store.get(&k, "p001").expect("get").expect("p001");
    assert_eq!(replaced.created_at, first.created_at);
    assert!(replaced.updated_at > first.updated_at, "{replaced:?}");
}

pub fn items_export_in_pages_and_import_with_their_times(subject: &dyn Subject) {
    let store = subject.open();
    let from = key("ws", "a");
    let to = key("ws", "copy");
    let mut p = params(2, Metric::Cosine);
    p.exact_below = 3;
    store.upsert(&from, p, line(10)).expect("upsert");
    // Pages of three, in id order, each item whole.
    let mut exported = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .export_items(&from, after.as_deref(), 3)
            .expect("export");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.record.id.clone());
        exported.extend(page);
    }
    let ids: Vec<&str> = exported.iter().map(|i| i.record.id.as_str()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("p{i:03}")).collect();
    assert_eq!(ids, expected);
    for item in &exported {
        let (record, vector) = store
            .get(&from, &item.record.id)
            .expect("get")
            .expect("kept");
        assert_eq!((&item.record, &item.vector), (&record, &vector));
    }
    assert!(
        store
            .export_items(&key("ws", "none"), None, 5)
            .expect("export")
            .is_empty()
    );

    // Imported elsewhere later: the same records, their times kept, searchable.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let out = store
        .import_items(&to, p, exported.clone())
        .expect("import");
    assert_eq!((out.written, out.replaced, out.count), (10, 0, 10));
    assert_eq!(
        store.export_items(&to, None, 100).expect("export"),
        exported
    );
    assert_eq!(store.record(&to).expect("record").expect("made").params, p);
    assert_eq!(search(&*store, &to, &[9.0, 1.0], 1, false, None), ["p009"]);
    // Again (a resumed copy): replaced, nothing doubled, nothing changed.
    let out = store
        .import_items(&to, p, exported.clone())
        .expect("import again");
    assert_eq!((out.written, out.replaced, out.count), (10, 10, 10));
    assert_eq!(
        store.export_items(&to, None, 100).expect("export"),
        exported
    );

    // Checked like an upsert: refused whole, naming the field; nothing written.
    let mut bad = exported[..2].to_vec();
    bad[1].record.id = "new".into();
    bad[1].vector = vec![1.0, f32::NAN];
    match store.import_items(&to, p, bad) {
        Err(StoreError::InvalidInput { field, .. }) => assert_eq!(field, "items[1].vector"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&to, "new").expect("get"), None);
    match store.import_items(&to, params(2, Metric::L2), exported[..1].to_vec()) {
        Err(StoreError::ParamsMismatch { reason, .. }) => assert!(reason.contains("metric")),
        other => panic!("{other:?}"),
    }
}
