//! The vector file formats of the ANN benchmark world, read and written:
//!
//! - `.fvecs` / `.ivecs` / `.bvecs` (the TEXMEX layout of SIFT1M and friends): per vector, a
//!   little-endian `i32` dimension, then that many `f32` / `i32` / `u8` values;
//! - `.npy` (NumPy, versions 1 to 3, C order, one or two dimensions; `<f4`, `<f8`, `<i4`,
//!   `<i8`, `<u4`, `|u1` elements);
//! - the ann-benchmarks HDF5 layout (`train`, `test`, `neighbors`, `distances`, and the
//!   `distance` attribute), through the pure-Rust `hdf5-pure` crate.
//!
//! Every malformed file is refused with the byte offset where it stops making sense.

use std::io::Write;
use std::path::{Path, PathBuf};

use aimp_store::Metric;

/// Rows of equal length, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn new(rows: usize, dim: usize, data: Vec<T>) -> Matrix<T> {
        debug_assert_eq!(rows * dim, data.len());
        Matrix { rows, dim, data }
    }

    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at byte offset {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: HDF5: {reason}")]
    Hdf5 { path: PathBuf, reason: String },
}

fn malformed(path: &Path, offset: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Malformed {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    std::fs::read(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The element of a `*vecs` file.
trait VecsElement: Copy {
    const SIZE: usize;
    fn decode(bytes: &[u8]) -> Self;
    fn encode(self, out: &mut Vec<u8>);
}

impl VecsElement for f32 {
    const SIZE: usize = 4;
    fn decode(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl VecsElement for i32 {
    const SIZE: usize = 4;
    fn decode(b: &[u8]) -> i32 {
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl VecsElement for u8 {
    const SIZE: usize = 1;
    fn decode(b: &[u8]) -> u8 {
        b[0]
    }
    fn encode(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

/// Largest dimension a `*vecs` record may declare (guards against reading garbage as a size).
const MAX_DIM: i32 = 1 << 20;

fn parse_vecs<T: VecsElement>(path: &Path, bytes: &[u8]) -> Result<Matrix<T>, FormatError> {
    let mut data = Vec::new();
    let mut dim: Option<usize> = None;
    let mut offset = 0;
    let mut rows = 0;
    while offset < bytes.len() {
        if bytes.len() - offset < 4 {
            return Err(malformed(
                path,
                offset,
                format!(
                    "{} stray bytes where a record's dimension should be",
                    bytes.len() - offset
                ),
            ));
        }
        let d = i32::from_le_bytes([
            bytes[offset],
            bytes[offset + 1],
            bytes[offset + 2],
            bytes[offset + 3],
        ]);
        if d <= 0 || d > MAX_DIM {
            return Err(malformed(
                path,
                offset,
                format!("record {rows} declares dimension {d} (must be 1 to {MAX_DIM})"),
            ));
        }
        let d = d as usize;
        match dim {
            None => dim = Some(d),
            Some(first) if first != d => {
                return Err(malformed(
                    path,
                    offset,
                    format!("record {rows} has dimension {d}, the first had {first}"),
                ));
            }
            Some(_) => {}
        }
        let start = offset + 4;
        let end = start + d * T::SIZE;
        if end > bytes.len() {
            return Err(malformed(
                path,
                start,
                format!(
                    "record {rows} is cut short: {} of its {} bytes are there",
                    bytes.len() - start,
                    d * T::SIZE
                ),
            ));
        }
        data.extend(bytes[start..end].chunks_exact(T::SIZE).map(T::decode));
        offset = end;
        rows += 1;
    }
    let Some(dim) = dim else {
        return Err(malformed(path, 0, "the file holds no vectors"));
    };
    Ok(Matrix::new(rows, dim, data))
}

fn encode_vecs<T: VecsElement>(m: &Matrix<T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.rows * (4 + m.dim * T::SIZE));
    for i in 0..m.rows {
        out.extend_from_slice(&(m.dim as i32).to_le_bytes());
        for &v in m.row(i) {
            v.encode(&mut out);
        }
    }
    out
}

pub fn write_fvecs(path: &Path, m: &Matrix<f32>) -> Result<(), FormatError> {
    write_file(path, &encode_vecs(m))
}

pub fn write_ivecs(path: &Path, m: &Matrix<i32>) -> Result<(), FormatError> {
    write_file(path, &encode_vecs(m))
}

pub fn write_bvecs(path: &Path, m: &Matrix<u8>) -> Result<(), FormatError> {
    write_file(path, &encode_vecs(m))
}

/// An `.npy` element type this reader takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NpyType {
    F4,
    F8,
    I4,
    I8,
    U4,
    U1,
}

impl NpyType {
    fn parse(descr: &str) -> Option<NpyType> {
        Some(match descr {
            "<f4" => NpyType::F4,
            "<f8" => NpyType::F8,
            "<i4" => NpyType::I4,
            "<i8" => NpyType::I8,
            "<u4" => NpyType::U4,
            "|u1" | "<u1" => NpyType::U1,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            NpyType::F4 | NpyType::I4 | NpyType::U4 => 4,
            NpyType::F8 | NpyType::I8 => 8,
            NpyType::U1 => 1,
        }
    }

    /// Element `i` of `bytes` as f64 (exact for every accepted type within ±2^53).
    fn get(self, b: &[u8]) -> f64 {
        match self {
            NpyType::F4 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            NpyType::F8 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            NpyType::I4 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            NpyType::I8 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
            }
            NpyType::U4 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            NpyType::U1 => f64::from(b[0]),
        }
    }
}

/// Parses an `.npy` file into its element type, shape and data bytes.
fn parse_npy<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(NpyType, usize, usize, &'a [u8]), FormatError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(malformed(path, 0, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(malformed(
                path,
                6,
                format!("unsupported .npy version {major}.{}", bytes[7]),
            ));
        }
    };
    let data_start = header_start + header_len;
    if data_start > bytes.len() {
        return Err(malformed(
            path,
            header_start,
            format!("the header declares {header_len} bytes but the file ends first"),
        ));
    }
    let header = std::str::from_utf8(&bytes[header_start..data_start]).map_err(|e| {
        malformed(
            path,
            header_start + e.valid_up_to(),
            "the header is not text",
        )
    })?;
    let field = |name: &str| -> Result<&str, FormatError> {
        let key = format!("'{name}':");
        let at = header
            .find(&key)
            .ok_or_else(|| malformed(path, header_start, format!("the header has no '{name}'")))?;
        Ok(header[at + key.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| malformed(path, header_start, "'descr' is not a quoted string"))?;
    let ty = NpyType::parse(descr).ok_or_else(|| FormatError::Unsupported {
        path: path.to_path_buf(),
        reason: format!("element type {descr:?} is not supported (<f4, <f8, <i4, <i8, <u4, |u1)"),
    })?;
    if field("fortran_order")?.starts_with("True") {
        return Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"
                .into(),
        });
    }
    let shape = field("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| malformed(path, header_start, "'shape' is not a tuple"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L').parse::<usize>().map_err(|_| {
                malformed(
                    path,
                    header_start,
                    format!("shape entry {s:?} is not a number"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let (rows, dim) = match dims[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        _ => {
            return Err(FormatError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("shape {dims:?}: only 1 or 2 dimensions are supported"),
            });
        }
    };
    let expected = rows * dim * ty.size();
    let data = &bytes[data_start..];
    if data.len() != expected {
        return Err(malformed(
            path,
            data_start + data.len().min(expected),
            format!(
                "shape ({rows}, {dim}) of {descr} needs {expected} data bytes, the file has {}",
                data.len()
            ),
        ));
    }
    Ok((ty, rows, dim, data))
}

fn npy_header(descr: &str, rows: usize, dim: usize) -> Vec<u8> {
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic, version, length and dictionary padded with spaces to a multiple of 64, ending "\n".
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

pub fn write_npy_f32(path: &Path, m: &Matrix<f32>) -> Result<(), FormatError> {
    let mut out = npy_header("<f4", m.rows, m.dim);
    for v in &m.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_file(path, &out)
}

pub fn write_npy_i32(path: &Path, m: &Matrix<i32>) -> Result<(), FormatError> {
    let mut out = npy_header("<i4", m.rows, m.dim);
    for v in &m.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_file(path, &out)
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Vectors from `.fvecs`, `.bvecs` or `.npy` (any accepted element type, as f32).
pub fn read_vectors(path: &Path) -> Result<Matrix<f32>, FormatError> {
    let bytes = read_file(path)?;
    match extension(path).as_str() {
        "fvecs" => parse_vecs::<f32>(path, &bytes),
        "bvecs" => {
            let m = parse_vecs::<u8>(path, &bytes)?;
            Ok(Matrix::new(
                m.rows,
                m.dim,
                m.data.into_iter().map(f32::from).collect(),
            ))
        }
        "npy" => {
            let (ty, rows, dim, data) = parse_npy(path, &bytes)?;
            let values = data
                .chunks_exact(ty.size())
                .map(|b| ty.get(b) as f32)
                .collect();
            Ok(Matrix::new(rows, dim, values))
        }
        other => Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("unknown vector file type {other:?} (.fvecs, .bvecs, .npy or .hdf5)"),
        }),
    }
}

/// Neighbour ids from `.ivecs` or `.npy` (integer elements).
pub fn read_ids(path: &Path) -> Result<Matrix<i32>, FormatError> {
    let bytes = read_file(path)?;
    match extension(path).as_str() {
        "ivecs" => parse_vecs::<i32>(path, &bytes),
        "npy" => {
            let (ty, rows, dim, data) = parse_npy(path, &bytes)?;
            if matches!(ty, NpyType::F4 | NpyType::F8) {
                return Err(FormatError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "neighbour ids must be integers, not floats".into(),
                });
            }
            let mut ids = Vec::with_capacity(rows * dim);
            for (i, b) in data.chunks_exact(ty.size()).enumerate() {
                let v = ty.get(b);
                if v < 0.0 || v > f64::from(i32::MAX) {
                    return Err(malformed(
                        path,
                        data.as_ptr() as usize - bytes.as_ptr() as usize + i * ty.size(),
                        format!("id {v} is out of range"),
                    ));
                }
                ids.push(v as i32);
            }
            Ok(Matrix::new(rows, dim, ids))
        }
        other => Err(FormatError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("unknown id file type {other:?} (.ivecs or .npy)"),
        }),
    }
}

/// An ann-benchmarks HDF5 file.
#[derive(Debug)]
pub struct Hdf5Set {
    pub train: Matrix<f32>,
    pub test: Matrix<f32>,
    pub neighbors: Option<Matrix<i32>>,
    /// From the file's `distance` attribute (`euclidean` → l2, `angular` → cosine,
    /// `dot`/`ip` → dot), when it has one.
    pub metric: Option<Metric>,
}

fn hdf5_err(path: &Path, e: impl std::fmt::Display) -> FormatError {
    FormatError::Hdf5 {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn hdf5_matrix(
    path: &Path,
    file: &hdf5_pure::File,
    name: &str,
) -> Result<Option<(usize, usize, hdf5_pure::Dataset)>, FormatError> {
    let Ok(ds) = file.dataset(name) else {
        return Ok(None);
    };
    let shape = ds
        .shape()
        .map_err(|e| hdf5_err(path, format!("{name}: {e}")))?;
    match shape[..] {
        [n, d] => Ok(Some((n as usize, d as usize, ds))),
        _ => Err(hdf5_err(
            path,
            format!("{name} has shape {shape:?}, not (rows, dim)"),
        )),
    }
}

pub fn read_hdf5(path: &Path) -> Result<Hdf5Set, FormatError> {
    let file = hdf5_pure::File::open(path).map_err(|e| hdf5_err(path, e))?;
    let vectors = |name: &str| -> Result<Matrix<f32>, FormatError> {
        let (n, d, ds) = hdf5_matrix(path, &file, name)?.ok_or_else(|| {
            hdf5_err(
                path,
                format!("no dataset `{name}` (ann-benchmarks layout: train, test, neighbors)"),
            )
        })?;
        let data = ds
            .read_f32()
            .map_err(|e| hdf5_err(path, format!("{name}: {e}")))?;
        if data.len() != n * d {
            return Err(hdf5_err(
                path,
                format!("{name}: {} values for shape ({n}, {d})", data.len()),
            ));
        }
        Ok(Matrix::new(n, d, data))
    };
    let train = vectors("train")?;
    let test = vectors("test")?;
    if train.dim != test.dim {
        return Err(hdf5_err(
            path,
            format!("train has dimension {}, test {}", train.dim, test.dim),
        ));
    }
    let neighbors = match hdf5_matrix(path, &file, "neighbors")? {
        None => None,
        Some((n, k, ds)) => {
            let ids = ds
                .read_i32()
                .map_err(|e| hdf5_err(path, format!("neighbors: {e}")))?;
            if n != test.rows {
                return Err(hdf5_err(
                    path,
                    format!("neighbors has {n} rows for {} test vectors", test.rows),
                ));
            }
            Some(Matrix::new(n, k, ids))
        }
    };
    let attrs = file.root().attrs().map_err(|e| hdf5_err(path, e))?;
    let distance = attrs.get("distance").and_then(|v| match v {
        hdf5_pure::AttrValue::String(s)
        | hdf5_pure::AttrValue::AsciiString(s)
        | hdf5_pure::AttrValue::VarLenString(s)
        | hdf5_pure::AttrValue::VarLenAsciiString(s) => Some(s.clone()),
        _ => None,
    });
    let metric = distance
        .map(|d| match d.trim() {
            "euclidean" | "l2" => Ok(Metric::L2),
            "angular" | "cosine" => Ok(Metric::Cosine),
            "dot" | "ip" | "inner_product" => Ok(Metric::Dot),
            other => Err(FormatError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("distance {other:?} is not supported (euclidean, angular, dot)"),
            }),
        })
        .transpose()?;
    Ok(Hdf5Set {
        train,
        test,
        neighbors,
        metric,
    })
}

/// Writes the ann-benchmarks layout (what `read_hdf5` reads), for tests and `bench gen`.
pub fn write_hdf5(
    path: &Path,
    train: &Matrix<f32>,
    test: &Matrix<f32>,
    neighbors: &Matrix<i32>,
    distance: &str,
) -> Result<(), FormatError> {
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("train")
        .with_f32_data(&train.data)
        .with_shape(&[train.rows as u64, train.dim as u64]);
    b.create_dataset("test")
        .with_f32_data(&test.data)
        .with_shape(&[test.rows as u64, test.dim as u64]);
    b.create_dataset("neighbors")
        .with_i32_data(&neighbors.data)
        .with_shape(&[neighbors.rows as u64, neighbors.dim as u64]);
    b.set_attr(
        "distance",
        hdf5_pure::AttrValue::VarLenString(distance.to_string()),
    );
    b.write(path).map_err(|e| hdf5_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Matrix<f32> {
        Matrix::new(3, 2, vec![1.0, -2.5, 0.0, 3.25, 1e-3, 7.0])
    }

    #[test]
    fn every_format_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = sample();
        let f = dir.path().join("a.fvecs");
        write_fvecs(&f, &m).expect("write");
        assert_eq!(read_vectors(&f).expect("read"), m);
        let n = dir.path().join("a.npy");
        write_npy_f32(&n, &m).expect("write");
        assert_eq!(read_vectors(&n).expect("read"), m);
        let ids = Matrix::new(2, 3, vec![0, 5, 9, 2, 1, 0]);
        let i = dir.path().join("gt.ivecs");
        write_ivecs(&i, &ids).expect("write");
        assert_eq!(read_ids(&i).expect("read"), ids);
        let ni = dir.path().join("gt.npy");
        write_npy_i32(&ni, &ids).expect("write");
        assert_eq!(read_ids(&ni).expect("read"), ids);
        let b = dir.path().join("a.bvecs");
        write_bvecs(&b, &Matrix::new(2, 2, vec![0u8, 255, 7, 8])).expect("write");
        assert_eq!(
            read_vectors(&b).expect("read"),
            Matrix::new(2, 2, vec![0.0, 255.0, 7.0, 8.0])
        );
        let h = dir.path().join("set.hdf5");
        write_hdf5(&h, &m, &sample(), &ids_for(3), "angular").expect("write");
        let set = read_hdf5(&h).expect("read");
        assert_eq!(set.train, m);
        assert_eq!(set.test, m);
        assert_eq!(set.neighbors, Some(ids_for(3)));
        assert_eq!(set.metric, Some(Metric::Cosine));
    }

    /// Files written by h5py and numpy (scripts/reference/ann_hdf5_fixture.py), as
    /// ann-benchmarks writes them.
    #[test]
    fn reads_what_h5py_and_numpy_write() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
        let set = read_hdf5(&dir.join("ann-small.hdf5")).expect("h5py file");
        assert_eq!((set.train.rows, set.train.dim), (40, 6));
        assert_eq!((set.test.rows, set.test.dim), (5, 6));
        assert_eq!(set.metric, Some(Metric::L2));
        let train = read_vectors(&dir.join("ann-small.train.npy")).expect("numpy file");
        assert_eq!(set.train, train);
        let neighbors = read_ids(&dir.join("ann-small.neighbors.npy")).expect("numpy ids");
        assert_eq!(set.neighbors, Some(neighbors));
    }

    fn ids_for(rows: usize) -> Matrix<i32> {
        Matrix::new(rows, 2, (0..rows as i32 * 2).collect())
    }

    fn offset_of(e: FormatError) -> u64 {
        match e {
            FormatError::Malformed { offset, .. } => offset,
            other => panic!("expected a malformed-file error, got {other}"),
        }
    }

    #[test]
    fn malformed_vecs_name_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.fvecs");
        let good = encode_vecs(&sample()); // 3 records of 4 + 8 bytes
        // Cut inside the third record's values.
        std::fs::write(&path, &good[..good.len() - 2]).expect("write");
        let e = read_vectors(&path).expect_err("truncated");
        assert!(e.to_string().contains("record 2 is cut short"), "{e}");
        assert_eq!(offset_of(e), 28);
        // A second record declaring another dimension.
        let mut other = good.clone();
        other[12..16].copy_from_slice(&3i32.to_le_bytes());
        std::fs::write(&path, &other).expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("dims")), 12);
        // A negative dimension, and stray bytes at the end.
        let mut neg = good.clone();
        neg[..4].copy_from_slice(&(-1i32).to_le_bytes());
        std::fs::write(&path, &neg).expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("negative")), 0);
        let mut stray = good.clone();
        stray.extend_from_slice(&[1, 2]);
        std::fs::write(&path, &stray).expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("stray")), 36);
        std::fs::write(&path, b"").expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("empty")), 0);
    }

    #[test]
    fn malformed_npy_name_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"PK\x03\x04 not numpy").expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("magic")), 0);
        let mut short = npy_header("<f4", 3, 2);
        let data_start = short.len();
        short.extend_from_slice(&[0u8; 20]); // 24 needed
        std::fs::write(&path, &short).expect("write");
        let e = read_vectors(&path).expect_err("short");
        assert!(e.to_string().contains("needs 24 data bytes"), "{e}");
        assert_eq!(offset_of(e), (data_start + 20) as u64);
        let mut header = npy_header("<f4", 3, 2);
        header[8..10].copy_from_slice(&5000u16.to_le_bytes());
        std::fs::write(&path, &header).expect("write");
        assert_eq!(offset_of(read_vectors(&path).expect_err("header")), 10);
        let complex = npy_header("<c8", 1, 1);
        std::fs::write(&path, &complex).expect("write");
        assert!(matches!(
            read_vectors(&path),
            Err(FormatError::Unsupported { .. })
        ));
        std::fs::write(dir.path().join("x.hdf5"), b"not hdf5").expect("write");
        assert!(matches!(
            read_hdf5(&dir.path().join("x.hdf5")),
            Err(FormatError::Hdf5 { .. })
        ));
    }
}
