//! Pieces of the bulk-indexing throughput measurement (docs/benchmarks.md,
//! `benches/reference/index_throughput.sh` runs them):
//!
//! ```text
//! clip_throughput checkpoint OUT        # random full-size ViT-B/32 in the hub's layout
//! clip_throughput photos OUT N          # N seeded 640x480 JPEG photos
//! clip_throughput raw CHECKPOINT N B    # the image tower alone: N pictures, batches of B
//! ```
//!
//! `raw` prints one JSON line: pictures per second through the vision tower and projection on
//! already preprocessed pixels, the encoder's ceiling that bulk indexing is compared with.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aimp_embed::{ClipEncoder, Registry};
use candle_core::{Device, Tensor};

const SEED: u64 = 42;
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/clipo/fixtures/tokenizer.json"
);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match arg(0).as_str() {
        "checkpoint" => {
            ClipEncoder::write_random_vit_b32(SEED, Path::new(TOKENIZER), Path::new(&arg(1)))
                .expect("write checkpoint");
        }
        "photos" => photos(&PathBuf::from(arg(1)), arg(2).parse().expect("N")),
        "raw" => raw(
            Path::new(&arg(1)),
            arg(2).parse().expect("N"),
            arg(3).parse().expect("B"),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: clip_throughput checkpoint OUT | photos OUT N | raw CHECKPOINT N BATCH");
    std::process::exit(2)
}

/// Smooth gradients with seeded noise and a few blobs: JPEG sizes like photos' (~60 KB).
fn photos(out: &Path, n: usize) {
    std::fs::create_dir_all(out).expect("mkdir");
    let (w, h) = (640usize, 480usize);
    for i in 0..n {
        let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 24) as i32 - 12
        };
        let cx = (i * 97 % w) as i32;
        let cy = (i * 61 % h) as i32;
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let d = ((x - cx).pow(2) + (y - cy).pow(2)) as f32;
                let blob = (200.0 * (-d / 9000.0).exp()) as i32;
                let base = [
                    x * 255 / w as i32,
                    y * 255 / h as i32,
                    (i as i32 * 37) % 255,
                ];
                for (c, b) in base.iter().enumerate() {
                    let v = b / 2 + if c == i % 3 { blob } else { blob / 3 } + noise();
                    rgb.push(v.clamp(0, 255) as u8);
                }
            }
        }
        let mut comp = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        comp.set_size(w, h);
        comp.set_quality(85.0);
        let mut started = comp.start_compress(Vec::new()).expect("start");
        started.write_scanlines(&rgb).expect("scanlines");
        let jpeg = started.finish().expect("finish");
        std::fs::write(out.join(format!("photo-{i:05}.jpg")), jpeg).expect("write");
    }
}

fn raw(checkpoint: &Path, n: usize, batch: usize) {
    let registry = Registry::load(None, Path::new("/nonexistent")).expect("registry");
    let manifest = registry.get("clipo").expect("clipo manifest");
    let enc = ClipEncoder::load(manifest, checkpoint, &Device::Cpu).expect("load");
    // The cost does not depend on the pixel values.
    let pixels = Tensor::rand(-1.8f32, 2.1, (batch, 3, 224, 224), &Device::Cpu).expect("pixels");
    enc.embed_pixels(&pixels).expect("warm-up");
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        enc.embed_pixels(&pixels).expect("embed");
        done += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"what\": \"raw\", \"pictures\": {done}, \"batch\": {batch}, \"seconds\": {secs:.2}, \"per_second\": {:.2}}}",
        done as f64 / secs
    );
}
