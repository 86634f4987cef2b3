//! CLIP in candle against transformers on seeded tiny random checkpoints (fixtures made by
//! `scripts/reference/clip_fixtures.py`): text and image embeddings, single and batched.

mod common;

use std::path::{Path, PathBuf};

use aimp_embed::{
    ClipEncoder, EmbedError, InstallOptions, Installer, Manifest, Precision, Registry, preprocess,
};
use candle_core::{Device, Tensor};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/clipo/fixtures");
const CHECKPOINTS: &[&str] = &["tiny-a", "tiny-b"];

#[derive(Deserialize)]
struct Reference {
    texts: Vec<TextRef>,
    images: Vec<ImageRef>,
}

#[derive(Deserialize)]
struct TextRef {
    text: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ImageRef {
    file: String,
    embedding: Vec<f32>,
}

fn reference(name: &str) -> Reference {
    let path = Path::new(FIXTURES).join(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse")
}

/// A checkpoint folder in the hub's layout: the checkpoint plus the shared tokenizer.
fn checkpoint_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = PathBuf::from(FIXTURES).join(name);
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.path().join(file)).expect("copy");
    }
    std::fs::copy(
        Path::new(FIXTURES).join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .expect("copy tokenizer");
    dir
}

fn manifest_for(dimensions: usize) -> Manifest {
    let registry = Registry::load(None, Path::new("/nonexistent")).expect("registry");
    let mut m = (**registry.get("clipo").expect("clipo")).clone();
    m.dimensions = dimensions;
    m
}

fn load(name: &str, dims: usize) -> ClipEncoder {
    load_at(name, dims, Precision::Fp32)
}

fn load_at(name: &str, dims: usize, precision: Precision) -> ClipEncoder {
    let dir = checkpoint_dir(name);
    let mut manifest = manifest_for(dims);
    manifest.precision = precision;
    ClipEncoder::load(&manifest, dir.path(), &Device::Cpu).expect("load")
}

use common::cosine;

fn expected_pixels(file: &str) -> Tensor {
    let path = Path::new(FIXTURES)
        .join("images/expected")
        .join(format!("{file}.png"));
    let img = image::open(&path).expect("open expected").to_rgb8();
    preprocess::normalize(&img, &Device::Cpu).expect("normalize")
}

/// The reference's pictures as the expected preprocessed pixels: one tensor each, and all of
/// them stacked into a batch.
fn fixture_pixels(reference: &Reference) -> (Vec<Tensor>, Tensor) {
    let pixels: Vec<Tensor> = reference
        .images
        .iter()
        .map(|r| expected_pixels(&r.file))
        .collect();
    let batch = Tensor::stack(&pixels, 0).expect("stack");
    (pixels, batch)
}

#[test]
fn text_embeddings_match_transformers_single_and_batched() {
    for &name in CHECKPOINTS {
        let reference = reference(name);
        let dims = reference.texts[0].embedding.len();
        let enc = load(name, dims);
        let texts: Vec<String> = reference.texts.iter().map(|t| t.text.clone()).collect();
        let batch = enc.embed_texts(&texts).expect("batch");
        for (r, got) in reference.texts.iter().zip(&batch) {
            let c = cosine(got, &r.embedding);
            assert!(c >= 0.9999, "{name}: batched cosine {c} for {:?}", r.text);
            let single = enc
                .embed_texts(std::slice::from_ref(&r.text))
                .expect("single");
            let c = cosine(&single[0], &r.embedding);
            assert!(c >= 0.9999, "{name}: single cosine {c} for {:?}", r.text);
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4);
        }
    }
}

#[test]
fn image_embeddings_match_transformers_single_and_batched() {
    for &name in CHECKPOINTS {
        let reference = reference(name);
        let dims = reference.images[0].embedding.len();
        let enc = load(name, dims);
        let (pixels, batch) = fixture_pixels(&reference);
        let got = enc.embed_pixels(&batch).expect("batch");
        for ((r, v), px) in reference.images.iter().zip(&got).zip(&pixels) {
            let c = cosine(v, &r.embedding);
            assert!(c >= 0.9999, "{name}: batched cosine {c} for {}", r.file);
            let single = enc
                .embed_pixels(&px.unsqueeze(0).expect("unsqueeze"))
                .expect("single");
            let c = cosine(&single[0], &r.embedding);
            assert!(c >= 0.9999, "{name}: single cosine {c} for {}", r.file);
        }
    }
}

/// The int8 path on both checkpoints: every fixture text and image, pooled, against the fp32
/// vectors (mean cosine, and the overlap of each item's 10 nearest neighbours).
#[test]
fn int8_vectors_keep_fp32_quality_on_the_fixtures() {
    for &name in CHECKPOINTS {
        let reference = reference(name);
        let dims = reference.texts[0].embedding.len();
        let texts: Vec<String> = reference.texts.iter().map(|t| t.text.clone()).collect();
        let (_, batch) = fixture_pixels(&reference);
        let embed = |precision| {
            let enc = load_at(name, dims, precision);
            let mut v = enc.embed_texts(&texts).expect("texts");
            v.extend(enc.embed_pixels(&batch).expect("images"));
            v
        };
        let (fp32, int8) = (embed(Precision::Fp32), embed(Precision::Int8));
        let a = common::agreement(&fp32, &int8, 10);
        eprintln!("{name} int8 vs fp32 over {} items: {a:?}", fp32.len());
        assert!(
            a.mean_cosine >= 0.99 && a.min_cosine >= 0.98,
            "{name}: {a:?}"
        );
        assert!(a.top_k_overlap >= 0.95, "{name}: {a:?}");
    }
}

/// At full size (a random ViT-B/32: the real shapes, 768- and 3072-wide products) int8
/// pictures stay within the same bar of fp32.
#[test]
fn int8_full_size_vision_tower_stays_close_to_fp32() {
    let tokenizer = Path::new(FIXTURES).join("tokenizer.json");
    let (_, batch) = fixture_pixels(&reference("tiny-a"));
    let embed = |precision| {
        ClipEncoder::random_vit_b32(7, &tokenizer, &Device::Cpu, precision)
            .expect("random ViT-B/32")
            .embed_pixels(&batch)
            .expect("embed")
    };
    let (fp32, int8) = (embed(Precision::Fp32), embed(Precision::Int8));
    let a = common::agreement(&fp32, &int8, 10);
    eprintln!(
        "random ViT-B/32 int8 vs fp32 over {} images: {a:?}",
        fp32.len()
    );
    assert!(a.mean_cosine >= 0.99, "{a:?}");
}

#[test]
fn a_config_that_disagrees_with_the_manifest_is_refused() {
    let dir = checkpoint_dir("tiny-a");
    let err = ClipEncoder::load(&manifest_for(512), dir.path(), &Device::Cpu)
        .expect_err("projection 16 is not 512");
    assert!(err.to_string().contains("projection_dim"), "{err}");
}

/// `import --unverified` installs another checkpoint of clipo's architecture and dimensions
/// under `clipo`, records the files' own sha256 and refuses what does not fit; a plain
/// (verified) import of the same files is refused by the manifest's pins.
#[test]
fn an_unverified_import_installs_a_fitting_checkpoint_and_pins_its_own_hashes() {
    let registry = Registry::load(None, Path::new("/nonexistent")).expect("registry");
    let clipo = registry.get("clipo").expect("clipo");
    let models = tempfile::tempdir().expect("tempdir");
    let options = InstallOptions {
        offline: true,
        ..InstallOptions::default()
    };
    let installer = Installer::new(clipo, models.path(), &options);

    let fitting = checkpoint_dir("tiny-b");
    let err = installer
        .import_from(fitting.path())
        .expect_err("not the pinned files");
    assert!(
        matches!(&err, EmbedError::ChecksumMismatch { file, .. } if file == "config.json"),
        "{err}"
    );

    let wrong_dims = checkpoint_dir("tiny-a");
    let err = installer
        .import_unverified(wrong_dims.path())
        .expect_err("projection 16 is not clipo's 512");
    assert!(matches!(err, EmbedError::CheckpointInvalid { .. }), "{err}");
    assert!(err.to_string().contains("projection_dim is 16"), "{err}");
    assert!(matches!(
        installer.verify_installed(),
        Err(EmbedError::NotInstalled { .. })
    ));

    let receipt = installer.import_unverified(fitting.path()).expect("import");
    assert!(!receipt.verified);
    assert!(
        receipt.revision.starts_with("local-"),
        "{}",
        receipt.revision
    );
    assert_ne!(receipt.revision, clipo.revision);
    let paths: Vec<&str> = receipt.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["config.json", "tokenizer.json", "model.safetensors"]
    );
    let status = Registry::load(None, models.path())
        .expect("registry")
        .status("clipo");
    assert!(status.installed && !status.verified);
    assert_eq!(installer.verify_installed().expect("verify"), receipt);

    let weights = models.path().join("clipo/model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).expect("corrupt");
    let err = installer.verify_installed().expect_err("flipped byte");
    assert!(
        matches!(&err, EmbedError::ChecksumMismatch { file, .. } if file == "model.safetensors"),
        "{err}"
    );
}

/// Every fixture picture: PNG (RGB, RGBA, palette, 16-bit grey, 16-bit RGBA), JPEG (baseline,
/// grey, progressive 4:2:2, CMYK), WebP, GIF, one smaller than 224 (upscaled).
fn fixture_images() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(FIXTURES).join("images"))
        .expect("images")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect();
    names.sort();
    names
}

#[test]
fn decoding_and_preprocessing_match_the_reference_pixels() {
    let names = fixture_images();
    assert!(names.len() >= 12, "{names:?}");
    for file in &names {
        let bytes = std::fs::read(Path::new(FIXTURES).join("images").join(file)).expect("read");
        let rgb = aimp_embed::decode_rgb(&bytes).expect("decode");
        let ours = preprocess::pixels(&rgb, 224, &Device::Cpu).expect("pixels");
        let want = expected_pixels(file);
        let diff = (ours - want)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flatten")
            .max(0)
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar");
        assert!(diff <= 1e-4, "{file}: max pixel difference {diff}");
    }
}

/// From the file's bytes to the vector: decode, preprocess and embed every fixture picture in
/// one batch, against transformers' embeddings of the same files.
#[test]
fn image_files_embed_like_transformers() {
    let reference = reference("tiny-b");
    let enc = load("tiny-b", reference.images[0].embedding.len());
    let pixels: Vec<Tensor> = reference
        .images
        .iter()
        .map(|r| {
            let bytes =
                std::fs::read(Path::new(FIXTURES).join("images").join(&r.file)).expect("read");
            let rgb = aimp_embed::decode_rgb(&bytes).expect("decode");
            preprocess::pixels(&rgb, 224, &Device::Cpu).expect("pixels")
        })
        .collect();
    let got = enc
        .embed_pixels(&Tensor::stack(&pixels, 0).expect("stack"))
        .expect("embed");
    assert_eq!(got.len(), fixture_images().len());
    for (r, v) in reference.images.iter().zip(&got) {
        let c = cosine(v, &r.embedding);
        assert!(c >= 0.9999, "cosine {c} for {}", r.file);
    }
}
