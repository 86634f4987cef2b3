//! Recall of our HNSW against brute force on seeded clustered data, at the default parameters.

use aimp_index::{Hnsw, HnswParams, Metric, Neighbour, dataset};

fn build(data: &[f32], dim: usize, metric: Metric) -> Hnsw {
    let graph = Hnsw::new(HnswParams::new(dim, metric));
    let items: Vec<(u64, &[f32])> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    graph.insert(&items);
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
        let (data, queries) = dataset::standard(20_000, 200, dim, 42);
        let graph = build(&data, dim, metric);
        assert_eq!(graph.len(), 20_000);
        let recall = measure(&graph, &queries, dim, 64);
        eprintln!("dim {dim} {metric:?}: recall@10 {recall:.4} at ef 64");
        assert!(recall >= 0.95, "dim {dim}: recall@10 {recall}");
    }
}
