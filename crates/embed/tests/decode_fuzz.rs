//! Fuzzing the picture decoders (property-based, stable Rust): the fixture pictures of every
//! accepted format, damaged at random (flipped bytes, truncation, a spliced tail), go through
//! the header reader and the decoder as an upload would. Each answer is a picture within the
//! pixel limit or an `invalid_image` error; a panic fails the target (the worker catches
//! panics too, but the decoders themselves should not need it).
//!
//! `PROPTEST_CASES` sets the cases per target (256 unless set); failures are kept in
//! `proptest-regressions/` beside this file and replayed first on every run.

use std::path::PathBuf;

use aimp_embed::{DecodeOptions, EmbedError, decode_rgb_with, image_info};
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/clipo/fixtures/images");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fixture pictures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "the seed corpus is the fixture pictures");
    out
}

fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let corpus = fixtures();
    (
        prop::sample::select(corpus),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        prop::option::of(any::<prop::sample::Index>()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(mut bytes, flips, cut, tail)| {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()).max(1));
            }
            if let Some(tail) = tail {
                bytes.extend(tail);
            }
            bytes
        })
}

fn is_invalid_image(e: &EmbedError) -> bool {
    matches!(e, EmbedError::Image { .. })
}

proptest! {
    #[test]
    fn damaged_pictures_decode_or_are_refused(bytes in damaged()) {
        let options = DecodeOptions { max_pixels: 4_000_000, apply_orientation: true };
        match image_info(&bytes) {
            Ok(info) => prop_assert!(info.width > 0 && info.height > 0),
            Err(e) => prop_assert!(is_invalid_image(&e), "{e:?}"),
        }
        match decode_rgb_with(&bytes, &options) {
            Ok(rgb) => {
                prop_assert!(rgb.width() > 0 && rgb.height() > 0);
                prop_assert!(u64::from(rgb.width()) * u64::from(rgb.height()) <= options.max_pixels);
            }
            Err(e) => prop_assert!(is_invalid_image(&e), "{e:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = decode_rgb_with(&bytes, &DecodeOptions::default()) {
            prop_assert!(is_invalid_image(&e), "{e:?}");
        }
    }
}
