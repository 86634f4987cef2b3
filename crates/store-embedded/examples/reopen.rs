//! Time to reopen a large collection: from its saved graph file (read back and checked), and
//! from the store alone (the graph rebuilt), after filling it once through the normal write path.
//!
//! ```text
//! cargo run --release -p aimp-store-embedded --example reopen -- --n 1000000 --dim 128 --dir /tmp/reopen
//! ```

use std::path::PathBuf;
use std::time::Instant;

use aimp_index::dataset;
use aimp_store::{CollectionKey, CollectionParams, Metric, NewItem};
use aimp_store_embedded::{GraphOrigin, Redb, VectorIndex};

fn main() {
    let mut n = 1_000_000usize;
    let mut dim = 128usize;
    let mut dir = PathBuf::from("target/reopen");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().expect("value");
        match flag.as_str() {
            "--n" => n = value.parse().expect("--n"),
            "--dim" => dim = value.parse().expect("--dim"),
            "--dir" => dir = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    let key = CollectionKey::new("bench", "model", "vectors", &format!("{n}x{dim}"));
    let params = CollectionParams::new(dim, Metric::L2);
    {
        let index = VectorIndex::new(Redb::open(&dir).expect("store"));
        if index.count(&key).expect("count").unwrap_or(0) < n as u64 {
            let started = Instant::now();
            let (data, _) = dataset::standard(n, 0, dim, 42);
            for (b, chunk) in data.chunks(10_000 * dim).enumerate() {
                let items = chunk
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, v)| NewItem {
                        id: format!("v{}", b * 10_000 + i),
                        vector: v.to_vec(),
                        filename: None,
                        media_ref: None,
                        system: None,
                        metadata: None,
                    })
                    .collect();
                index.upsert(&key, params, items).expect("upsert");
            }
            eprintln!(
                "filled {n} x {dim} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let started = Instant::now();
        index.save_graphs().expect("save");
        eprintln!(
            "saved the graph in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let index = VectorIndex::new(Redb::open(&dir).expect("store"));
    let info = index.graph_info(&key).expect("info").expect("collection");
    let from_file = started.elapsed().as_secs_f64();
    assert!(
        matches!(info.origin, GraphOrigin::File { .. }),
        "{:?}",
        info.origin
    );
    drop(index);

    // Without the file: the graph is rebuilt from the store.
    let graphs = dir.join("graphs");
    for entry in std::fs::read_dir(&graphs).expect("graphs") {
        let path = entry.expect("entry").path();
        std::fs::write(&path, b"gone").expect("damage");
    }
    let started = Instant::now();
    let index = VectorIndex::new(Redb::open(&dir).expect("store"));
    let info = index.graph_info(&key).expect("info").expect("collection");
    let rebuilt = started.elapsed().as_secs_f64();
    assert!(matches!(info.origin, GraphOrigin::Rebuilt { .. }));
    index.save_graphs().expect("save again");
    println!(
        "{{\"n\": {n}, \"dim\": {dim}, \"reopen_from_file_s\": {from_file:.2}, \"reopen_rebuilt_s\": {rebuilt:.2}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
