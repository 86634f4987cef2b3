//! Seeded synthetic sets (`aimp bench gen`), so a benchmark is reproducible anywhere:
//!
//! - `clustered`: Gaussian clusters around uniformly drawn centres, each coordinate's spread
//!   decaying with its index (`σ_j = spread / √(1 + j/8)`), as the variance of real embeddings
//!   decays across principal directions;
//! - `uniform`: every coordinate uniform in [-1, 1].
//!
//! Queries are drawn from the same distribution as the base, independently of it.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::formats::Matrix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Clustered,
    Uniform,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "clustered" => Ok(Kind::Clustered),
            "uniform" => Ok(Kind::Uniform),
            other => Err(format!("unknown kind {other:?} (clustered or uniform)")),
        }
    }
}

/// Points per cluster in a clustered set (the number of clusters follows from `n`).
pub const POINTS_PER_CLUSTER: usize = 1000;
const SPREAD: f32 = 0.6;

/// `n` base vectors and `queries` query vectors of dimension `dim`.
pub fn generate(
    kind: Kind,
    n: usize,
    queries: usize,
    dim: usize,
    seed: u64,
) -> (Matrix<f32>, Matrix<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    match kind {
        Kind::Uniform => {
            let mut draw = |rows: usize| {
                let data = (0..rows * dim)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect();
                Matrix::new(rows, dim, data)
            };
            let base = draw(n);
            (base, draw(queries))
        }
        Kind::Clustered => {
            let clusters = n.div_ceil(POINTS_PER_CLUSTER).max(1);
            let centres: Vec<f32> = (0..clusters * dim)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let sigma: Vec<f32> = (0..dim)
                .map(|j| SPREAD / (1.0 + j as f32 / 8.0).sqrt())
                .collect();
            let unit = Normal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!("σ = 1 is valid"));
            let draw = |rows: usize, rng: &mut rand::rngs::StdRng| {
                let mut data = Vec::with_capacity(rows * dim);
                for _ in 0..rows {
                    let c = rng.random_range(0..clusters);
                    for j in 0..dim {
                        data.push(centres[c * dim + j] + sigma[j] * unit.sample(rng));
                    }
                }
                Matrix::new(rows, dim, data)
            };
            let base = draw(n, &mut rng);
            let q = draw(queries, &mut rng);
            (base, q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_shaped() {
        for kind in [Kind::Clustered, Kind::Uniform] {
            let (a, qa) = generate(kind, 2500, 10, 16, 3);
            let (b, _) = generate(kind, 2500, 10, 16, 3);
            let (c, _) = generate(kind, 2500, 10, 16, 4);
            assert_eq!(a, b);
            assert_ne!(a, c);
            assert_eq!((a.rows, a.dim, qa.rows), (2500, 16, 10));
        }
        // The spread decays: the first coordinate varies more within a cluster than the last.
        let (a, _) = generate(Kind::Clustered, 1000, 0, 64, 1); // one cluster
        let var = |j: usize| {
            let mean: f32 = (0..a.rows).map(|i| a.row(i)[j]).sum::<f32>() / a.rows as f32;
            (0..a.rows)
                .map(|i| (a.row(i)[j] - mean).powi(2))
                .sum::<f32>()
                / a.rows as f32
        };
        assert!(var(0) > 3.0 * var(63), "{} vs {}", var(0), var(63));
    }
}
