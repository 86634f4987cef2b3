//! Searches that run while inserts link new nodes: every one finds `k` results. (A node
//! reachable through a link before its own lower lists were written made such a search
//! stop at that node with one result.)

use std::sync::Arc;

use aimp_index::{Hnsw, HnswParams, Metric, dataset};

const DIM: usize = 16;

#[test]
fn a_search_during_inserts_finds_k_results() {
    let mut short = Vec::new();
    for round in 0..20 {
        let (data, queries) = dataset::standard(4_000, 50, DIM, round);
        let graph = Arc::new(Hnsw::new(HnswParams::new(DIM, Metric::L2)));
        let rows: Vec<(u64, &[f32])> = data
            .chunks_exact(DIM)
            .enumerate()
            .map(|(i, v)| (i as u64, v))
            .collect();
        graph.insert(&rows[..1_800]);
        let writer = {
            let (graph, data) = (graph.clone(), data.clone());
            std::thread::spawn(move || {
                let rows: Vec<(u64, &[f32])> = data
                    .chunks_exact(DIM)
                    .enumerate()
                    .map(|(i, v)| (i as u64, v))
                    .collect();
                for batch in rows[1_800..].chunks(100) {
                    graph.insert(batch);
                }
            })
        };
        while !writer.is_finished() {
            for q in queries.chunks_exact(DIM) {
                let found = graph.search(q, 10, 64, None).len();
                if found != 10 {
                    short.push((round, graph.len(), found));
                }
            }
        }
        writer.join().expect("writer");
    }
    assert!(short.is_empty(), "(round, nodes, results): {short:?}");
}
