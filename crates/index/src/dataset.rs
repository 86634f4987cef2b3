//! Seeded synthetic data for recall tests and benchmarks, and the recall measure itself.

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{Metric, Neighbour};

/// `n` vectors of `dim` dimensions around `clusters` centres: centres are standard normal,
/// points are their centre plus normal noise of standard deviation `spread`. The same
/// arguments always give the same vectors (row-major, `n * dim` floats).
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters.max(1) * dim)
        .map(|_| normal(&mut rng))
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters.max(1));
        let centre = &centres[c * dim..(c + 1) * dim];
        out.extend(centre.iter().map(|&x| x + spread * normal(&mut rng)));
    }
    out
}

/// The clustered set the recall tests and benches use (1 centre per 1,000 points, spread 0.6):
/// `n` base vectors and `queries` held-out query vectors drawn from the same clusters.
pub fn standard(n: usize, queries: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut all = clustered(n + queries, dim, (n / 1000).max(10), 0.6, seed);
    let held_out = all.split_off(n * dim);
    (all, held_out)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The exact `k` nearest base vectors (keys are row numbers) of each query, in parallel.
pub fn brute_force(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    metric: Metric,
) -> Vec<Vec<Neighbour>> {
    use rayon::prelude::*;
    let base: Vec<Vec<f32>> = base.chunks_exact(dim).map(|v| metric.prepare(v)).collect();
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            let q = metric.prepare(q);
            let mut all: Vec<Neighbour> = base
                .iter()
                .enumerate()
                .map(|(i, v)| Neighbour {
                    key: i as u64,
                    distance: crate::distance::distance(metric, &q, v),
                })
                .collect();
            all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.key.cmp(&b.key)));
            all.truncate(k);
            all
        })
        .collect()
}

/// Mean over queries of |found ∩ truth| / |truth|, by key.
pub fn recall(found: &[Vec<Neighbour>], truth: &[Vec<Neighbour>]) -> f64 {
    let mut total = 0.0;
    for (f, t) in found.iter().zip(truth) {
        if t.is_empty() {
            total += 1.0;
            continue;
        }
        let hits = t
            .iter()
            .filter(|x| f.iter().any(|y| y.key == x.key))
            .count();
        total += hits as f64 / t.len() as f64;
    }
    total / truth.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_vectors() {
        assert_eq!(clustered(50, 8, 3, 0.5, 7), clustered(50, 8, 3, 0.5, 7));
        assert_ne!(clustered(50, 8, 3, 0.5, 7), clustered(50, 8, 3, 0.5, 8));
        let (base, queries) = standard(30, 5, 4, 1);
        assert_eq!((base.len(), queries.len()), (120, 20));
    }
}
