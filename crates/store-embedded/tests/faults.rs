//! Failing I/O at the storage boundary (the `fault-injection` build of the store): a failed
//! fsync or write, or a full disk, fails that write and nothing else. It is never acknowledged
//! and never appears later, reads keep working meanwhile, and the next write succeeds by itself
//! once the file system does.

use std::sync::Arc;

use aimp_store::{
    CollectionKey, CollectionParams, Metric, NewItem, SearchOptions, StorageFault, StoreError,
};
use aimp_store_embedded::faults::Faults;
use aimp_store_embedded::{Redb, VectorIndex};

const DIM: usize = 8;

fn key() -> CollectionKey {
    CollectionKey::new("ws", "m", "c", "faults")
}

fn params() -> CollectionParams {
    let mut p = CollectionParams::new(DIM, Metric::Cosine);
    p.exact_below = 0; // the graph answers, and must not hold what was never committed
    p
}

fn item(id: &str, seed: usize) -> NewItem {
    NewItem {
        id: id.to_string(),
        vector: (0..DIM)
            .map(|d| ((seed * 7919 + d * 104_729) % 1000) as f32 / 1000.0 + 0.01)
            .collect(),
        filename: None,
        media_ref: None,
        system: None,
        metadata: None,
    }
}

fn upsert(index: &VectorIndex, id: &str, seed: usize) -> Result<(), StoreError> {
    index
        .upsert(&key(), params(), vec![item(id, seed)])
        .map(|_| ())
        .map_err(StoreError::from)
}

fn ids(index: &VectorIndex) -> Vec<String> {
    let hits = index
        .search(
            &key(),
            &item("q", 1).vector,
            SearchOptions {
                top_k: 100,
                ef: None,
                exact: false,
                precision: None,
                filter: None,
                walk: false,
            },
        )
        .expect("search");
    let mut ids: Vec<String> = hits.hits.into_iter().map(|h| h.item.id).collect();
    ids.sort();
    ids
}

fn expect_fault(result: Result<(), StoreError>, want: StorageFault) {
    match result {
        Err(StoreError::Storage { fault, .. }) => assert_eq!(fault, want),
        other => panic!("expected a {want:?} storage fault, got {other:?}"),
    }
}

#[test]
fn a_failed_fsync_or_write_fails_that_write_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let index = VectorIndex::new(Redb::open_with_faults(dir.path(), faults.clone()).expect("open"));
    upsert(&index, "a", 1).expect("a");

    faults.fail_syncs(1);
    expect_fault(upsert(&index, "b", 2), StorageFault::Io);
    assert_eq!(faults.injected(), 1);
    assert_eq!(
        ids(&index),
        ["a"],
        "searches work, and hold no uncommitted item"
    );
    assert!(index.get(&key(), "b").expect("get").is_none());

    faults.fail_writes(1);
    expect_fault(upsert(&index, "c", 3), StorageFault::Io);
    assert_eq!(ids(&index), ["a"]);

    // The next write succeeds by itself, on the store opened again behind the scenes.
    upsert(&index, "d", 4).expect("d");
    index.delete(&key(), vec!["a".into()]).expect("delete a");
    assert_eq!(ids(&index), ["d"]);
    drop(index);

    let index = VectorIndex::new(Redb::open(dir.path()).expect("reopen"));
    assert_eq!(ids(&index), ["d"]);
    for gone in ["a", "b", "c"] {
        assert!(index.get(&key(), gone).expect("get").is_none(), "{gone}");
    }
    assert_eq!(index.count(&key()).expect("count"), Some(1));
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let index = VectorIndex::new(Redb::open_with_faults(dir.path(), faults.clone()).expect("open"));
    for i in 0..20 {
        upsert(&index, &format!("k{i:03}"), i).expect("upsert");
    }

    // No free blocks: writes go on while redb reuses pages it holds, and some fail.
    faults.set_full(true);
    let mut acked: Vec<String> = (0..20).map(|i| format!("k{i:03}")).collect();
    let mut refused = Vec::new();
    for i in 20..2000 {
        let id = format!("k{i:03}");
        match upsert(&index, &id, i) {
            Ok(()) => acked.push(id),
            Err(StoreError::Storage {
                fault: StorageFault::Full,
                ..
            }) => refused.push(id),
            Err(e) => panic!("{id}: {e:?}"),
        }
        if refused.len() == 3 {
            break;
        }
    }
    assert!(!refused.is_empty(), "the disk never filled");
    acked.sort();
    assert!(!ids(&index).is_empty());
    assert_eq!(
        index.count(&key()).expect("count"),
        Some(acked.len() as u64),
        "searches and counts keep working on a full disk"
    );
    for id in &refused {
        assert!(index.get(&key(), id).expect("get").is_none(), "{id}");
    }

    faults.set_full(false);
    upsert(&index, "zafter", 7).expect("a write once there is room");
    acked.push("zafter".into());
    drop(index);
    let index = VectorIndex::new(Redb::open(dir.path()).expect("reopen"));
    assert_eq!(
        index.count(&key()).expect("count"),
        Some(acked.len() as u64)
    );
    for id in &acked {
        assert!(
            index.get(&key(), id).expect("get").is_some(),
            "{id} was acknowledged"
        );
    }
    for id in &refused {
        assert!(
            index.get(&key(), id).expect("get").is_none(),
            "{id} was refused"
        );
    }
}
