//! Sentences per second of demo-model (all-MiniLM-L6-v2, real weights) at batch 1 and 32, and
//! the time of one short search query, at both precisions (ids `fp32/N`, `int8/N`,
//! `fp32/query`, `int8/query`).
//!
//! `cargo bench --bench embed_text`. The same sentences and batch sizes are measured with
//! sentence-transformers by `benches/reference/embed_text_st.py`; docs/benchmarks.md holds
//! both medians and their ratio.

use std::path::PathBuf;

use aimp_embed::{Encoder, InstallOptions, Precision, Registry, SentenceEncoder, ensure_installed};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BATCH_SIZES: &[usize] = &[1, 32];
const SENTENCES: &str = include_str!("data/sentences.txt");
/// The query `benches/reference/embed_reference.py` times (8 tokens).
const QUERY: &str = "how do I reset my password";

fn encoder(precision: Precision) -> SentenceEncoder {
    let models = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models");
    let mut registry = Registry::load(None, &models).expect("registry");
    registry
        .set_precision("demo-model", precision)
        .expect("demo-model");
    let manifest = registry.get("demo-model").expect("manifest");
    ensure_installed(manifest, &models, &InstallOptions::default()).expect("install demo-model");
    SentenceEncoder::load(
        manifest,
        &models.join("demo-model"),
        &candle_core::Device::Cpu,
    )
    .expect("load")
}

fn embed_text(c: &mut Criterion) {
    let sentences: Vec<String> = SENTENCES.lines().map(str::to_string).collect();
    let mut group = c.benchmark_group("embed_text");
    for precision in [Precision::Fp32, Precision::Int8] {
        let mut enc = encoder(precision);
        for &batch in BATCH_SIZES {
            let texts = &sentences[..batch];
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(precision.as_str(), batch);
            group.bench_with_input(id, texts, |b, texts| {
                b.iter(|| enc.embed_texts(texts).expect("embed"));
            });
        }
        // One short search query, the latency every typed search waits for.
        let query = vec![QUERY.to_string()];
        let id = BenchmarkId::new(precision.as_str(), "query");
        group.bench_function(id, |b| b.iter(|| enc.embed_texts(&query).expect("embed")));
    }
    group.finish();
}

criterion_group!(benches, embed_text);
criterion_main!(benches);
