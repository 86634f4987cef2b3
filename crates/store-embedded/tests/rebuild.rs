//! Tombstones past the threshold trigger a background rebuild that is swapped in while
//! searches and writes continue; nothing deleted comes back and nothing live is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimp_index::dataset;
use aimp_store::{CollectionKey, CollectionParams, Metric, NewItem, SearchOptions};
use aimp_store_embedded::{Redb, VectorIndex};

const DIM: usize = 16;

fn key() -> CollectionKey {
    CollectionKey::new("ws", "m", "images", "rebuild")
}

fn params() -> CollectionParams {
    let mut p = CollectionParams::new(DIM, Metric::L2);
    p.exact_below = 0;
    p
}

fn item(id: usize, v: &[f32]) -> NewItem {
    NewItem {
        id: format!("item-{id}"),
        vector: v.to_vec(),
        filename: None,
        media_ref: None,
        system: None,
        metadata: None,
    }
}

#[test]
fn a_graph_full_of_tombstones_is_rebuilt_while_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(VectorIndex::new(Redb::open(dir.path()).expect("store")));
    let (data, queries) = dataset::standard(4_000, 50, DIM, 3);
    let rows: Vec<&[f32]> = data.chunks_exact(DIM).collect();
    let first: Vec<NewItem> = (0..3_000).map(|i| item(i, rows[i])).collect();
    index.upsert(&key(), params(), first).expect("upsert");

    // 1,200 deletions: past 20 % of 3,000 nodes, so a rebuild starts.
    let deleted: HashSet<String> = (0..1_200).map(|i| format!("item-{}", i * 2)).collect();
    index
        .delete(&key(), deleted.iter().cloned().collect())
        .expect("delete");

    // Writes and searches while it rebuilds.
    let writer = {
        let index = index.clone();
        let late: Vec<Vec<f32>> = rows[3_000..].iter().map(|r| r.to_vec()).collect();
        std::thread::spawn(move || {
            for (chunk_no, chunk) in late.chunks(100).enumerate() {
                let items = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| item(3_000 + chunk_no * 100 + i, v))
                    .collect();
                index.upsert(&key(), params(), items).expect("late upsert");
            }
        })
    };
    let opts = SearchOptions {
        top_k: 10,
        ef: Some(64),
        exact: false,
        precision: None,
        filter: None,
        walk: false,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for q in queries.chunks_exact(DIM) {
            let out = index.search(&key(), q, opts.clone()).expect("search");
            assert_eq!(out.hits.len(), 10);
            for h in &out.hits {
                assert!(
                    !deleted.contains(&h.item.id),
                    "deleted {} returned",
                    h.item.id
                );
            }
        }
        let info = index.graph_info(&key()).expect("info").expect("exists");
        if writer.is_finished() && info.tombstones == 0 {
            assert_eq!(info.nodes, 2_800, "1,800 kept + 1,000 late items");
            break;
        }
        assert!(Instant::now() < deadline, "never rebuilt: {info:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().expect("writer");
    // Every live item survived the swap: an exact search for its own vector finds it first.
    // And the new graph is well linked: a graph search finds nearly all of them too (it is
    // approximate, so one may be missed now and then).
    let exact = SearchOptions {
        exact: true,
        precision: None,
        ..opts.clone()
    };
    let (mut sampled, mut found_by_graph) = (0, 0);
    for i in (1..4_000).step_by(37) {
        let id = format!("item-{i}");
        if deleted.contains(&id) {
            continue;
        }
        sampled += 1;
        let out = index
            .search(&key(), rows[i], exact.clone())
            .expect("exact search");
        assert!(out.exhaustive());
        assert_eq!(out.hits[0].item.id, id);
        let out = index
            .search(&key(), rows[i], opts.clone())
            .expect("graph search");
        found_by_graph += usize::from(out.hits.iter().any(|h| h.item.id == id));
    }
    assert!(
        found_by_graph * 100 >= sampled * 95,
        "graph search found {found_by_graph} of {sampled}"
    );
    assert_eq!(index.count(&key()).expect("count"), Some(2_800));
}
