//! The ANN hot paths of our HNSW on seeded clustered sets (`aimp_index::dataset::standard`):
//! building (one thread) and single-thread queries at fixed ef, for 128 and 384 dimensions.
//!
//! `cargo bench --bench ann` ; the head-to-head with hnswlib on the same vectors is
//! `benches/reference/compare_ann.sh` (see docs/benchmarks.md).
//!
//! `AIMP_BENCH_N` sets the set size for the search benches (default 100,000); the build bench
//! uses 20,000 vectors so one sample stays a few seconds.

use std::hint::black_box;

use aimp_index::{Hnsw, HnswParams, Metric, dataset};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn items(data: &[f32], dim: usize) -> Vec<(u64, &[f32])> {
    data.chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect()
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool")
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ann_build_20k");
    group.sample_size(10);
    let pool = one_thread();
    for dim in [128, 384] {
        let (data, _) = dataset::standard(20_000, 0, dim, 42);
        group.bench_with_input(BenchmarkId::from_parameter(dim), &dim, |b, &dim| {
            b.iter(|| {
                let g = Hnsw::new(HnswParams::new(dim, Metric::L2));
                pool.install(|| g.insert(&items(&data, dim)));
                g
            });
        });
    }
    group.finish();
}

fn search(c: &mut Criterion) {
    let n: usize = std::env::var("AIMP_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut group = c.benchmark_group(format!("ann_search_{n}"));
    for dim in [128, 384] {
        let (data, queries) = dataset::standard(n, 1000, dim, 42);
        let g = Hnsw::new(HnswParams::new(dim, Metric::L2));
        g.insert(&items(&data, dim));
        for ef in [32, 64, 128] {
            let id = BenchmarkId::new(format!("dim{dim}"), format!("ef{ef}"));
            group.bench_with_input(id, &ef, |b, &ef| {
                let mut qs = queries.chunks_exact(dim).cycle();
                b.iter(|| black_box(g.search(qs.next().unwrap_or(&queries[..dim]), 10, ef, None)));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, build, search);
criterion_main!(benches);
