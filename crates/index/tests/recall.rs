//! Recall of our HNSW against brute force on seeded clustered data, at the default parameters,
//! and against hnsw_rs (the engine we compare with) at the same M, ef_construction and ef.

use aimp_index::baseline::HnswRs;
use aimp_index::{Hnsw, HnswParams, Metric, Neighbour, dataset};

fn build(data: &[f32], dim: usize, metric: Metric) -> Hnsw {
    let graph = Hnsw::new(HnswParams::new(dim, metric));
    let items: Vec<(u64, &[f32])> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    // One thread, so the comparison below is deterministic (a parallel build varies by about
    // 0.002 from run to run).
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(|| graph.insert(&items));
    graph
}

fn measure(graph: &Hnsw, queries: &[f32], dim: usize, ef: usize) -> f64 {
    let (found, truth): (Vec<Vec<Neighbour>>, Vec<Vec<Neighbour>>) = queries
        .chunks_exact(dim)
        .map(|q| (graph.search(q, 10, ef, None), graph.exact(q, 10, None)))
        .unzip();
    dataset::recall(&found, &truth)
}

#[test]
fn recall_at_10_is_at_least_095_on_20000_clustered_vectors() {
    for (dim, metric) in [(128, Metric::L2), (384, Metric::Cosine)] {
        let (data, queries) = dataset::standard(20_000, 1000, dim, 42);
        let graph = build(&data, dim, metric);
        assert_eq!(graph.len(), 20_000);
        let recall = measure(&graph, &queries, dim, 64);
        let theirs = hnsw_rs_recall(&data, &queries, dim, metric, 64);
        eprintln!("dim {dim} {metric:?}: recall@10 {recall:.4} at ef 64; hnsw_rs {theirs:.4}");
        assert!(recall >= 0.95, "dim {dim}: recall@10 {recall}");
        // Not below hnsw_rs at the same M / ef_construction / ef. hnsw_rs is built serially:
        // its parallel build is nondeterministic (0.960 to 0.987 at 128-d on these queries).
        assert!(
            recall >= theirs,
            "dim {dim}: ours {recall} is below hnsw_rs {theirs}"
        );
    }
}

/// hnsw_rs on the same vectors: M = 16 (32 at level 0), ef_construction = 200, inserted one
/// by one (deterministic).
fn hnsw_rs_recall(data: &[f32], queries: &[f32], dim: usize, metric: Metric, ef: usize) -> f64 {
    let truth: Vec<Vec<Neighbour>> = dataset::brute_force(data, queries, dim, 10, metric);
    let theirs = HnswRs::build_serial(data, dim, metric, 16, 200);
    let found: Vec<Vec<Neighbour>> = queries
        .chunks_exact(dim)
        .map(|q| {
            theirs
                .search(q, 10, ef)
                .into_iter()
                .map(|row| Neighbour {
                    key: u64::from(row),
                    distance: 0.0,
                })
                .collect()
        })
        .collect();
    dataset::recall(&found, &truth)
}
