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

/// Recall@10 of the graph's searches against `truth`, the neighbours an independent brute
/// force found (not the graph's own `exact`, which shares its distance code and node store).
fn measure(graph: &Hnsw, queries: &[f32], dim: usize, ef: usize, truth: &[Vec<Neighbour>]) -> f64 {
    let found: Vec<Vec<Neighbour>> = queries
        .chunks_exact(dim)
        .map(|q| graph.search(q, 10, ef, None))
        .collect();
    dataset::recall(&found, truth)
}

#[test]
fn recall_at_10_is_at_least_095_on_20000_clustered_vectors() {
    for (dim, metric) in [(128, Metric::L2), (384, Metric::Cosine)] {
        let (data, queries) = dataset::standard(20_000, 1000, dim, 42);
        let graph = build(&data, dim, metric);
        assert_eq!(graph.len(), 20_000);
        let truth = naive_neighbours(&data, &queries, dim, metric);
        // The graph's own exact search agrees with the independent brute force.
        let exact: Vec<Vec<Neighbour>> = queries
            .chunks_exact(dim)
            .map(|q| graph.exact(q, 10, None))
            .collect();
        assert!(
            dataset::recall(&exact, &truth) >= 0.999,
            "dim {dim}: exact search"
        );
        let recall = measure(&graph, &queries, dim, 64, &truth);
        let theirs = hnsw_rs_recall(&data, &queries, dim, metric, 64, &truth);
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

/// The 10 nearest rows of `data` to each query, in f64 with the textbook formulas: a
/// reference that shares no code with the index.
fn naive_neighbours(
    data: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
) -> Vec<Vec<Neighbour>> {
    use rayon::prelude::*;
    let distance = |a: &[f32], b: &[f32]| -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        match metric {
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum(),
            Metric::Cosine => {
                let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                1.0 - dot / (norm(a) * norm(b))
            }
            Metric::Dot => -dot,
        }
    };
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            let mut all: Vec<(f64, usize)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| (distance(q, v), i))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.into_iter()
                .take(10)
                .map(|(d, i)| Neighbour {
                    key: i as u64,
                    distance: d as f32,
                })
                .collect()
        })
        .collect()
}

/// hnsw_rs on the same vectors: M = 16 (32 at level 0), ef_construction = 200, inserted one
/// by one (deterministic).
fn hnsw_rs_recall(
    data: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    ef: usize,
    truth: &[Vec<Neighbour>],
) -> f64 {
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
    dataset::recall(&found, truth)
}
