//! Saved graphs: read back and caught up from the store on open; a corrupt, truncated,
//! stale or missing file is detected and the graph rebuilt, never trusted.

use std::path::Path;

use aimp_index::dataset;
use aimp_store::{CollectionKey, CollectionParams, Metric, NewItem, SearchOptions};
use aimp_store_embedded::{GraphOrigin, Redb, VectorIndex};

const DIM: usize = 32;

fn key() -> CollectionKey {
    CollectionKey::new("ws", "clipo", "images", "persist")
}

fn params() -> CollectionParams {
    let mut p = CollectionParams::new(DIM, Metric::Cosine);
    p.exact_below = 0; // always the graph
    p
}

fn items(data: &[f32], from: usize) -> Vec<NewItem> {
    data.chunks_exact(DIM)
        .enumerate()
        .map(|(i, v)| NewItem {
            id: format!("item-{}", from + i),
            vector: v.to_vec(),
            filename: None,
            media_ref: None,
            system: None,
            metadata: None,
        })
        .collect()
}

fn open(dir: &Path) -> VectorIndex {
    VectorIndex::new(Redb::open(dir).expect("store"))
}

fn graph_search(index: &VectorIndex, q: &[f32]) -> Vec<String> {
    let opts = SearchOptions {
        top_k: 10,
        ef: Some(64),
        exact: false,
        precision: None,
        filter: None,
        walk: false,
    };
    let out = index.search(&key(), q, opts).expect("search");
    assert!(!out.exhaustive());
    out.hits.into_iter().map(|h| h.item.id).collect()
}

/// A store with 3,000 items whose graph was saved, then 200 more items and 100 deletions.
fn saved_store(dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let (data, queries) = dataset::standard(3_200, 20, DIM, 9);
    let index = open(dir);
    index
        .upsert(&key(), params(), items(&data[..3_000 * DIM], 0))
        .expect("upsert");
    assert_eq!(index.save_graphs().expect("save"), 1);
    index
        .upsert(&key(), params(), items(&data[3_000 * DIM..], 3_000))
        .expect("upsert more");
    let gone: Vec<String> = (0..100).map(|i| format!("item-{}", i * 7)).collect();
    index.delete(&key(), gone).expect("delete");
    (data, queries)
}

fn graph_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir.join("graphs"))
        .expect("graphs folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn a_saved_graph_is_read_back_and_caught_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, queries) = saved_store(dir.path());
    let index = open(dir.path());
    let info = index.graph_info(&key()).expect("info").expect("exists");
    assert_eq!(info.origin, GraphOrigin::File { caught_up: 200 });
    assert_eq!(info.nodes, 3_200);
    assert_eq!(info.tombstones, 100);
    assert_eq!(index.count(&key()).expect("count"), Some(3_100));
    for q in queries.chunks_exact(DIM) {
        let ids = graph_search(&index, q);
        assert_eq!(ids.len(), 10);
        for id in ids {
            let n: usize = id.trim_start_matches("item-").parse().expect("n");
            assert!(!(n.is_multiple_of(7) && n < 700), "deleted {id} returned");
        }
    }
    // New items are found: a graph search for one's own vector returns it.
    let (data, _) = dataset::standard(3_200, 20, DIM, 9);
    let v = &data[3_150 * DIM..3_151 * DIM];
    assert!(graph_search(&index, v).contains(&"item-3150".to_string()));
}

#[test]
fn a_damaged_or_missing_graph_file_is_rebuilt_from_the_store() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("flipped byte", |f| {
            let mut b = std::fs::read(f).expect("read");
            let i = b.len() / 2;
            b[i] ^= 0x40;
            std::fs::write(f, b).expect("write");
        }),
        ("truncated", |f| {
            let b = std::fs::read(f).expect("read");
            std::fs::write(f, &b[..b.len() - 1000]).expect("write");
        }),
        ("garbage header", |f| {
            let mut b = std::fs::read(f).expect("read");
            b[..8].copy_from_slice(b"NOTAGRPH");
            std::fs::write(f, b).expect("write");
        }),
        ("missing", |f| std::fs::remove_file(f).expect("rm")),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, queries) = saved_store(dir.path());
        damage(&graph_file(dir.path()));
        let index = open(dir.path());
        let info = index.graph_info(&key()).expect("info").expect("exists");
        assert!(
            matches!(
                info.origin,
                GraphOrigin::Rebuilt {
                    distrusted: Some(_)
                }
            ),
            "{what}: {:?}",
            info.origin
        );
        assert_eq!(info.nodes, 3_100, "{what}: rebuilt from live items only");
        assert_eq!(index.count(&key()).expect("count"), Some(3_100), "{what}");
        let v = &data[3_150 * DIM..3_151 * DIM];
        assert!(
            graph_search(&index, v).contains(&"item-3150".to_string()),
            "{what}"
        );
        assert_eq!(graph_search(&index, &queries[..DIM]).len(), 10, "{what}");
    }
}

#[test]
fn a_stale_graph_file_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    saved_store(dir.path());
    let file = graph_file(dir.path());
    let old = std::fs::read(&file).expect("read");
    {
        // Save again: the record now describes a newer file.
        let index = open(dir.path());
        index.count(&key()).expect("load");
        index.save_graphs().expect("save");
    }
    std::fs::write(&file, old).expect("put the old file back");
    let index = open(dir.path());
    let info = index.graph_info(&key()).expect("info").expect("exists");
    assert!(
        matches!(
            info.origin,
            GraphOrigin::Rebuilt {
                distrusted: Some(_)
            }
        ),
        "{:?}",
        info.origin
    );
    assert_eq!(info.nodes, 3_100);
}

#[test]
fn dropping_a_collection_removes_its_graph_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    saved_store(dir.path());
    let file = graph_file(dir.path());
    let index = open(dir.path());
    assert!(index.drop_collection(&key()).expect("drop"));
    assert!(!file.exists());
    assert_eq!(index.count(&key()).expect("count"), None);
}

/// A save runs while writes go on (the server saves periodically): the file it leaves is
/// trusted at the next open, which catches up whatever it missed; a graph that did not change
/// since its last save is not written again.
#[test]
fn a_graph_saved_while_writes_go_on_reads_back_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, _) = dataset::standard(6_001, 1, DIM, 4);
    {
        let index = std::sync::Arc::new(open(dir.path()));
        index
            .upsert(&key(), params(), items(&data[..2_000 * DIM], 0))
            .expect("upsert");
        let writer = {
            let (index, data) = (index.clone(), data.clone());
            std::thread::spawn(move || {
                for b in 0..40usize {
                    let from = 2_000 + b * 100;
                    let batch = &data[from * DIM..(from + 100) * DIM];
                    index
                        .upsert(&key(), params(), items(batch, from))
                        .expect("upsert while saving");
                    if b % 4 == 0 {
                        let gone = vec![format!("item-{}", b * 10)];
                        index.delete(&key(), gone).expect("delete while saving");
                    }
                }
            })
        };
        let mut saves = 0;
        while !writer.is_finished() {
            saves += index.save_graphs().expect("save while writing");
        }
        writer.join().expect("writer");
        assert!(saves >= 1);
        // A final save covers everything (unless the last one already did); one more finds
        // nothing changed and writes nothing.
        assert!(index.save_graphs().expect("final save") <= 1);
        let file = graph_file(dir.path());
        let written = std::fs::metadata(&file)
            .expect("file")
            .modified()
            .expect("mtime");
        assert_eq!(index.save_graphs().expect("unchanged"), 0);
        assert_eq!(
            std::fs::metadata(&file)
                .expect("file")
                .modified()
                .expect("mtime"),
            written
        );
        // One more write after the last save: the next open catches it up from the store.
        index
            .upsert(&key(), params(), items(&data[6_000 * DIM..], 6_000))
            .expect("late upsert");
    }
    let index = open(dir.path());
    let info = index.graph_info(&key()).expect("info").expect("exists");
    assert_eq!(info.origin, GraphOrigin::File { caught_up: 1 }, "{info:?}");
    assert_eq!(info.nodes, 6_001);
    assert_eq!(info.tombstones, 10);
    assert_eq!(index.count(&key()).expect("count"), Some(6_001 - 10));
    // The graph read back finds items by their own vectors, those written during the saves
    // included (a node left out of a file, or a list naming one, would not be).
    let probes: Vec<usize> = (0..6_001)
        .step_by(29)
        .filter(|i| *i > 360 || i % 10 != 0)
        .collect();
    let found = probes
        .iter()
        .filter(|&&i| {
            let v = &data[i * DIM..(i + 1) * DIM];
            graph_search(&index, v).contains(&format!("item-{i}"))
        })
        .count();
    assert!(
        found as f64 >= 0.97 * probes.len() as f64,
        "{found} of {} found themselves",
        probes.len()
    );
}
