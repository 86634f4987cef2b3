//! hnsw_rs, the engine ours is measured against (the recall test, `aimp bench`), behind one
//! small type so no other crate needs to know it.

use hnsw_rs::prelude::{DistCosine, DistDot, DistL2, Hnsw as TheirHnsw};

use crate::Metric;

/// The hnsw_rs release this adapter is built against (checked against Cargo.lock by a test).
pub const HNSW_RS_VERSION: &str = "0.3.5";

/// Layers hnsw_rs may use (its maximum).
const MAX_LAYER: usize = 16;

enum Inner {
    L2(TheirHnsw<'static, f32, DistL2>),
    Cosine(TheirHnsw<'static, f32, DistCosine>),
    Dot(TheirHnsw<'static, f32, DistDot>),
}

/// An hnsw_rs graph over row-major vectors; rows are answered by their row number.
pub struct HnswRs {
    inner: Inner,
}

impl std::fmt::Debug for HnswRs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswRs").finish_non_exhaustive()
    }
}

impl HnswRs {
    /// Builds with `M` = `m` (2M at level 0, as hnsw_rs does) and `ef_construction`, inserting
    /// in parallel on the current rayon pool. `Dot` uses hnsw_rs's `DistDot` (`1 - a·b`),
    /// which expects unit vectors.
    pub fn build(
        data: &[f32],
        dim: usize,
        metric: Metric,
        m: usize,
        ef_construction: usize,
    ) -> HnswRs {
        let rows: Vec<(&[f32], usize)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (v, i))
            .collect();
        let n = rows.len().max(1);
        let inner = match metric {
            Metric::L2 => {
                let h = TheirHnsw::new(m, n, MAX_LAYER, ef_construction, DistL2 {});
                h.parallel_insert_slice(&rows);
                Inner::L2(h)
            }
            Metric::Cosine => {
                let h = TheirHnsw::new(m, n, MAX_LAYER, ef_construction, DistCosine {});
                h.parallel_insert_slice(&rows);
                Inner::Cosine(h)
            }
            Metric::Dot => {
                let h = TheirHnsw::new(m, n, MAX_LAYER, ef_construction, DistDot {});
                h.parallel_insert_slice(&rows);
                Inner::Dot(h)
            }
        };
        HnswRs { inner }
    }

    /// Builds one row at a time, in order: deterministic, unlike the parallel build.
    pub fn build_serial(
        data: &[f32],
        dim: usize,
        metric: Metric,
        m: usize,
        ef_construction: usize,
    ) -> HnswRs {
        let n = (data.len() / dim).max(1);
        macro_rules! serial {
            ($dist:expr, $variant:ident) => {{
                let h = TheirHnsw::new(m, n, MAX_LAYER, ef_construction, $dist);
                for (i, v) in data.chunks_exact(dim).enumerate() {
                    h.insert_slice((v, i));
                }
                Inner::$variant(h)
            }};
        }
        let inner = match metric {
            Metric::L2 => serial!(DistL2 {}, L2),
            Metric::Cosine => serial!(DistCosine {}, Cosine),
            Metric::Dot => serial!(DistDot {}, Dot),
        };
        HnswRs { inner }
    }

    /// The row numbers of the `k` nearest, nearest first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<u32> {
        let hits = match &self.inner {
            Inner::L2(h) => h.search(query, k, ef),
            Inner::Cosine(h) => h.search(query, k, ef),
            Inner::Dot(h) => h.search(query, k, ef),
        };
        hits.into_iter().map(|n| n.d_id as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_constant_matches_the_lock_file() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .expect("Cargo.lock");
        let entry = format!("name = \"hnsw_rs\"\nversion = \"{HNSW_RS_VERSION}\"");
        assert!(
            lock.contains(&entry),
            "Cargo.lock does not pin hnsw_rs {HNSW_RS_VERSION}"
        );
    }

    #[test]
    fn finds_an_exact_match() {
        let data: Vec<f32> = (0..200).map(|i| (i as f32 * 0.37).sin()).collect();
        for serial in [false, true] {
            let h = if serial {
                HnswRs::build_serial(&data, 4, Metric::L2, 8, 64)
            } else {
                HnswRs::build(&data, 4, Metric::L2, 8, 64)
            };
            assert_eq!(h.search(&data[20..24], 1, 32), vec![5]);
        }
    }
}
