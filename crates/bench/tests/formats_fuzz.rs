//! Fuzzing the vector file readers of `aimp bench` (property-based, stable Rust): sound
//! `.fvecs`, `.bvecs`, `.ivecs`, `.npy` and `.hdf5` files written by our own writers, damaged at
//! random (flipped bytes, truncation, a spliced tail), are read back. Each answer is a
//! matrix whose shape matches its data, or an error; never a panic or a huge allocation.
//!
//! `PROPTEST_CASES` sets the cases per target (256 unless set); failures are kept in
//! `proptest-regressions/` beside this file and replayed first on every run.

use std::path::Path;

use aimp_bench::formats::{
    FormatError, Matrix, read_hdf5, read_ids, read_vectors, write_bvecs, write_fvecs, write_hdf5,
    write_ivecs, write_npy_f32, write_npy_i32,
};
use proptest::prelude::*;

/// What a file holds, which decides the reader.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Vectors(&'static str),
    Ids(&'static str),
    Hdf5,
}

/// The seed corpus: one sound file of each kind, as bytes.
fn corpus() -> Vec<(Kind, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Matrix::new(5, 3, (0..15).map(|i| i as f32 * 0.5 - 2.0).collect());
    let b = Matrix::new(4, 6, (0..24).map(|i| (i * 11) as u8).collect());
    let ids = Matrix::new(5, 2, (0..10).collect());
    let files = [
        (Kind::Vectors("fvecs"), "a.fvecs"),
        (Kind::Vectors("bvecs"), "a.bvecs"),
        (Kind::Vectors("npy"), "a.npy"),
        (Kind::Ids("ivecs"), "a.ivecs"),
        (Kind::Ids("npy"), "ids.npy"),
        (Kind::Hdf5, "a.hdf5"),
    ];
    let path = |name: &str| dir.path().join(name);
    write_fvecs(&path("a.fvecs"), &f).expect("fvecs");
    write_bvecs(&path("a.bvecs"), &b).expect("bvecs");
    write_npy_f32(&path("a.npy"), &f).expect("npy");
    write_ivecs(&path("a.ivecs"), &ids).expect("ivecs");
    write_npy_i32(&path("ids.npy"), &ids).expect("npy ids");
    write_hdf5(&path("a.hdf5"), &f, &f, &ids, "euclidean").expect("hdf5");
    files
        .into_iter()
        .map(|(kind, name)| (kind, std::fs::read(path(name)).expect("read")))
        .collect()
}

fn shaped<T>(m: &Matrix<T>) -> bool {
    m.rows.checked_mul(m.dim) == Some(m.data.len())
}

/// Reads `bytes` as a file of `kind`: Ok(whether every shape matches its data) or the error.
fn read_as(dir: &Path, kind: Kind, bytes: &[u8]) -> Result<bool, String> {
    let ext = match kind {
        Kind::Vectors(e) | Kind::Ids(e) => e,
        Kind::Hdf5 => "hdf5",
    };
    let file = dir.join(format!("x.{ext}"));
    std::fs::write(&file, bytes).expect("write");
    let e = |e: FormatError| e.to_string();
    match kind {
        Kind::Vectors(_) => read_vectors(&file).map(|m| shaped(&m)).map_err(e),
        Kind::Ids(_) => read_ids(&file).map(|m| shaped(&m)).map_err(e),
        Kind::Hdf5 => read_hdf5(&file)
            .map(|s| shaped(&s.train) && shaped(&s.test) && s.neighbors.as_ref().is_none_or(shaped))
            .map_err(e),
    }
}

fn damaged() -> impl Strategy<Value = (Kind, Vec<u8>)> {
    (
        prop::sample::select(corpus()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        prop::option::of(any::<prop::sample::Index>()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
    )
        .prop_map(|((kind, mut bytes), flips, cut, tail)| {
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Some(tail) = tail {
                bytes.extend(tail);
            }
            (kind, bytes)
        })
}

#[test]
fn the_seed_corpus_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, bytes) in corpus() {
        assert_eq!(read_as(dir.path(), kind, &bytes), Ok(true), "{kind:?}");
    }
}

proptest! {
    #[test]
    fn damaged_vector_files_are_refused_or_sound((kind, bytes) in damaged()) {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Ok(sound) = read_as(dir.path(), kind, &bytes) {
            prop_assert!(sound, "{kind:?}: a matrix whose shape does not match its data");
        }
    }
}
