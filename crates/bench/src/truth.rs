//! Exact ground truth: the `k` nearest base vectors of every query, on all cores, cached
//! beside the base file so a second run on the same data skips it.

use std::path::{Path, PathBuf};

use aimp_index::{Metric, dataset};

use crate::formats::{self, FormatError, Matrix};

/// The `k` nearest base rows of each query (row numbers, nearest first), computed exactly.
pub fn exact(base: &Matrix<f32>, queries: &Matrix<f32>, k: usize, metric: Metric) -> Matrix<i32> {
    let found = dataset::brute_force(
        &base.data,
        &queries.data,
        base.dim,
        k.min(base.rows),
        metric,
    );
    let k = k.min(base.rows);
    let mut ids = Vec::with_capacity(queries.rows * k);
    for row in found {
        ids.extend(row.iter().map(|n| n.key as i32));
    }
    Matrix::new(queries.rows, k, ids)
}

/// Where the cached truth of these inputs lives: beside `base`, named by the metric, `k` and
/// a fingerprint of both files (their lengths and CRC-32s), so changed data never reuses it.
pub fn cache_path(
    base_file: &Path,
    query_file: &Path,
    metric: Metric,
    k: usize,
) -> Result<PathBuf, FormatError> {
    let fingerprint = |p: &Path| -> Result<String, FormatError> {
        let bytes = std::fs::read(p).map_err(|source| FormatError::Io {
            path: p.to_path_buf(),
            source,
        })?;
        Ok(format!("{:x}{:08x}", bytes.len(), crc32fast::hash(&bytes)))
    };
    let stem = base_file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("base");
    let name = format!(
        "{stem}.gt-{}-k{k}-{}-{}.ivecs",
        metric.as_str(),
        fingerprint(base_file)?,
        fingerprint(query_file)?
    );
    Ok(base_file.with_file_name(name))
}

/// The cached truth if it is there and fits, else computed and cached. Answers the truth and
/// whether it came from the cache.
pub fn cached(
    cache: &Path,
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    k: usize,
    metric: Metric,
) -> Result<(Matrix<i32>, bool), FormatError> {
    if cache.exists()
        && let Ok(truth) = formats::read_ids(cache)
        && truth.rows == queries.rows
        && truth.dim >= k.min(base.rows)
    {
        return Ok((truth, true));
    }
    let truth = exact(base, queries, k, metric);
    formats::write_ivecs(cache, &truth)?;
    Ok((truth, false))
}

/// recall@k: the share of each query's true `k` nearest found among its first `k` answers,
/// averaged over queries.
pub fn recall(found: &[Vec<u32>], truth: &Matrix<i32>, k: usize) -> f64 {
    let k = k.min(truth.dim);
    if found.is_empty() || k == 0 {
        return 0.0;
    }
    let mut total = 0.0;
    for (i, answer) in found.iter().enumerate() {
        let want = &truth.row(i)[..k];
        let got = &answer[..answer.len().min(k)];
        let hits = want.iter().filter(|t| got.contains(&(**t as u32))).count();
        total += hits as f64 / k as f64;
    }
    total / found.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case small enough to check by hand: points on a line.
    #[test]
    fn recall_and_truth_on_a_hand_computed_case() {
        let base = Matrix::new(5, 1, vec![0.0, 1.0, 2.0, 3.0, 10.0]);
        let queries = Matrix::new(2, 1, vec![0.9, 9.0]);
        let truth = exact(&base, &queries, 3, Metric::L2);
        // 0.9: nearest 1.0 (0.01), 0.0 (0.81), 2.0 (1.21). 9.0: 10.0, 3.0, 2.0.
        assert_eq!(truth, Matrix::new(2, 3, vec![1, 0, 2, 4, 3, 2]));
        // First query: 2 of 3 found; second: 3 of 3, in another order.
        let found = vec![vec![1, 2, 4], vec![2, 3, 4]];
        let r = recall(&found, &truth, 3);
        assert!((r - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12, "{r}");
        assert_eq!(recall(&found, &truth, 1), 0.5);
    }

    #[test]
    fn the_cache_is_reused_only_for_the_same_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, q) = (
            dir.path().join("base.fvecs"),
            dir.path().join("query.fvecs"),
        );
        let base = Matrix::new(4, 2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 5.0, 5.0]);
        let queries = Matrix::new(1, 2, vec![0.9, 0.1]);
        formats::write_fvecs(&b, &base).expect("write");
        formats::write_fvecs(&q, &queries).expect("write");
        let path = cache_path(&b, &q, Metric::L2, 2).expect("path");
        let (first, hit) = cached(&path, &base, &queries, 2, Metric::L2).expect("compute");
        assert!(!hit);
        assert_eq!(first.row(0), &[1, 0]);
        let (again, hit) = cached(&path, &base, &queries, 2, Metric::L2).expect("cached");
        assert!(hit);
        assert_eq!(again, first);
        let moved = Matrix::new(4, 2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.9, 0.1]);
        formats::write_fvecs(&b, &moved).expect("write");
        assert_ne!(cache_path(&b, &q, Metric::L2, 2).expect("path"), path);
    }
}
