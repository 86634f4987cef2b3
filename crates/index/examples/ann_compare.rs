//! Head-to-head measurement of our HNSW on a seeded clustered set, with the set written out so
//! `benches/reference/ann_hnswlib.py` measures hnswlib on the very same vectors and truth.
//!
//! ```text
//! cargo run --release -p aimp-index --example ann_compare -- \
//!     --n 100000 --dim 128 --threads 1 --out target/ann/100k-128
//! /tmp/refvenv/bin/python benches/reference/ann_hnswlib.py target/ann/100k-128
//! ```
//!
//! Prints one JSON object: build seconds, resident bytes per vector (RSS growth while
//! building), and for each ef the recall@k against brute force and single-thread queries/s.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use aimp_index::{Hnsw, HnswParams, Metric, Neighbour, dataset};

struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    k: usize,
    threads: usize,
    efs: Vec<usize>,
    metric: Metric,
    out: Option<PathBuf>,
}

fn parse() -> Args {
    let mut a = Args {
        n: 100_000,
        dim: 128,
        queries: 1000,
        k: 10,
        threads: 1,
        efs: vec![16, 32, 64, 128, 256],
        metric: Metric::L2,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.n = value.parse().expect("--n"),
            "--dim" => a.dim = value.parse().expect("--dim"),
            "--queries" => a.queries = value.parse().expect("--queries"),
            "--k" => a.k = value.parse().expect("--k"),
            "--threads" => a.threads = value.parse().expect("--threads"),
            "--ef" => a.efs = value.split(',').map(|e| e.parse().expect("--ef")).collect(),
            "--metric" => a.metric = value.parse().expect("--metric"),
            "--out" => a.out = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn write_f32(path: &std::path::Path, values: &[f32]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for v in values {
        f.write_all(&v.to_le_bytes()).expect("write");
    }
}

fn main() {
    let a = parse();
    let (base, queries) = dataset::standard(a.n, a.queries, a.dim, 42);
    let dim = a.dim;

    let items: Vec<(u64, &[f32])> = base
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let truth: Vec<Vec<Neighbour>> = dataset::brute_force(&base, &queries, dim, a.k, a.metric);

    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).expect("mkdir");
        write_f32(&out.join("base.f32"), &base);
        write_f32(&out.join("queries.f32"), &queries);
        let ids: Vec<u32> = truth
            .iter()
            .flat_map(|t| t.iter().map(|n| n.key as u32))
            .collect();
        let mut f = std::fs::File::create(out.join("truth.u32")).expect("create");
        for id in ids {
            f.write_all(&id.to_le_bytes()).expect("write");
        }
        let meta = format!(
            "{{\"n\": {}, \"dim\": {}, \"queries\": {}, \"k\": {}, \"metric\": \"{}\", \"m\": 16, \"ef_construction\": 200, \"efs\": {:?}, \"threads\": {}}}\n",
            a.n,
            dim,
            a.queries,
            a.k,
            a.metric.as_str(),
            a.efs,
            a.threads
        );
        std::fs::write(out.join("meta.json"), meta).expect("meta");
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .expect("pool");
    let before = rss_bytes();
    let start = Instant::now();
    let graph = Hnsw::new(HnswParams::new(dim, a.metric));
    pool.install(|| graph.insert(&items));
    let build_s = start.elapsed().as_secs_f64();
    let rss_per_vector = (rss_bytes().saturating_sub(before)) as f64 / a.n as f64;
    let mem_per_vector = graph.memory_bytes() as f64 / a.n as f64;

    let mut rows = Vec::new();
    for &ef in &a.efs {
        let mut found = Vec::with_capacity(a.queries);
        let mut times = Vec::new();
        for _round in 0..3 {
            found.clear();
            let t = Instant::now();
            for q in queries.chunks_exact(dim) {
                found.push(graph.search(q, a.k, ef, None));
            }
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let qps = a.queries as f64 / times[1];
        let recall = dataset::recall(&found, &truth);
        rows.push(format!(
            "{{\"ef\": {ef}, \"recall\": {recall:.4}, \"qps\": {qps:.1}}}"
        ));
    }
    println!(
        "{{\"engine\": \"aimp\", \"n\": {}, \"dim\": {dim}, \"threads\": {}, \"build_s\": {build_s:.2}, \"rss_bytes_per_vector\": {rss_per_vector:.1}, \"graph_bytes_per_vector\": {mem_per_vector:.1}, \"search\": [{}]}}",
        a.n,
        a.threads,
        rows.join(", ")
    );
}
