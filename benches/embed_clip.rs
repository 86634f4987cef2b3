//! CLIP ViT-B/32 at full size (seeded random weights: the real model's shapes and cost):
//! images per second at batch 1, 8 and 32 from preprocessed pixels (`clip_image`) and from a
//! JPEG file's bytes (`clip_jpeg`: decode and preprocess on the rayon pool, as the gateway
//! does, then the tower), texts per second at batch 1 and 32, and the preprocessing of one
//! 640x480 image. Every encoder group runs at both precisions: ids `fp32/N` and `int8/N`.
//!
//! `cargo bench --bench embed_clip`. `benches/reference/embed_clip_hf.py` measures the same
//! with PyTorch + transformers; docs/benchmarks.md holds both medians and their ratio.

use std::path::Path;

use aimp_embed::{ClipEncoder, Encoder, Precision, preprocess};
use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const SEED: u64 = 42;
const PRECISIONS: &[Precision] = &[Precision::Fp32, Precision::Int8];
const IMAGE_BATCHES: &[usize] = &[1, 8, 32];
const TEXT_BATCHES: &[usize] = &[1, 32];
const SENTENCES: &str = include_str!("data/sentences.txt");
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/clipo/fixtures/tokenizer.json"
);

fn encoder(precision: Precision) -> ClipEncoder {
    ClipEncoder::random_vit_b32(SEED, Path::new(TOKENIZER), &Device::Cpu, precision)
        .expect("random ViT-B/32")
}

fn id(precision: Precision, batch: usize) -> BenchmarkId {
    BenchmarkId::new(precision.as_str(), batch)
}

fn images(c: &mut Criterion) {
    let mut group = c.benchmark_group("clip_image");
    group.sample_size(10);
    for &precision in PRECISIONS {
        let enc = encoder(precision);
        for &batch in IMAGE_BATCHES {
            // Seeded pixels in the normalised range; the cost does not depend on their values.
            let pixels = Tensor::rand(-1.8f32, 2.1, (batch, 3, 224, 224), &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .expect("pixels");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(id(precision, batch), &pixels, |b, pixels| {
                b.iter(|| enc.embed_pixels(pixels).expect("embed"));
            });
        }
    }
    group.finish();
}

fn jpeg_images(c: &mut Criterion) {
    let jpeg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/clipo/fixtures/images/photo.jpg"
    ))
    .expect("photo.jpg");
    let mut group = c.benchmark_group("clip_jpeg");
    group.sample_size(10);
    for &precision in PRECISIONS {
        let mut enc = encoder(precision);
        let size = enc.image_size();
        for &batch in IMAGE_BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(id(precision, batch), |b| {
                b.iter(|| {
                    let pixels: Vec<f32> = (0..batch)
                        .into_par_iter()
                        .flat_map_iter(|_| {
                            let rgb = aimp_embed::decode_rgb(&jpeg).expect("decode");
                            let mut out = vec![0f32; 3 * size * size];
                            preprocess::normalize_into(
                                &preprocess::resize_and_crop(&rgb, size as u32),
                                &mut out,
                            );
                            out
                        })
                        .collect();
                    Encoder::embed_pixels(&mut enc, pixels, batch).expect("embed")
                });
            });
        }
    }
    group.finish();
}

fn texts(c: &mut Criterion) {
    let sentences: Vec<String> = SENTENCES.lines().map(str::to_string).collect();
    let mut group = c.benchmark_group("clip_text");
    group.sample_size(20);
    for &precision in PRECISIONS {
        let enc = encoder(precision);
        for &batch in TEXT_BATCHES {
            let texts = &sentences[..batch];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(id(precision, batch), texts, |b, texts| {
                b.iter(|| enc.embed_texts(texts).expect("embed"));
            });
        }
    }
    group.finish();
}

fn preprocessing(c: &mut Criterion) {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    c.bench_function("clip_preprocess_640x480", |b| {
        b.iter(|| {
            let cropped = preprocess::resize_and_crop(&img, 224);
            preprocess::normalize(&cropped, &Device::Cpu).expect("normalize")
        });
    });
}

/// From a JPEG file's bytes to the pixel tensor: libjpeg decode, resize, crop, normalise.
fn decode_and_preprocess(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/clipo/fixtures/images/photo.jpg"
    );
    let bytes = std::fs::read(path).expect("photo.jpg");
    c.bench_function("clip_decode_preprocess_jpeg_400x300", |b| {
        b.iter(|| {
            let rgb = aimp_embed::decode_rgb(&bytes).expect("decode");
            preprocess::pixels(&rgb, 224, &Device::Cpu).expect("pixels")
        });
    });
}

criterion_group!(
    benches,
    images,
    jpeg_images,
    texts,
    preprocessing,
    decode_and_preprocess
);
criterion_main!(benches);
