//! Distance kernels on `f32` vectors, generic over the SIMD instruction set.
//!
//! Every kernel takes a [`pulp::Simd`] token: the caller enters [`pulp::Arch::dispatch`] once
//! per search or insertion, which picks AVX-512, AVX2+FMA, NEON or scalar code at run time, and
//! the kernels below are inlined into that specialised code. No `unsafe` here: pulp owns it.

use pulp::Simd;
use serde::{Deserialize, Serialize};

/// How two vectors are compared. Smaller distances are nearer for every metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// `1 - cos(a, b)`. Vectors are L2-normalised when they enter the index, so this is
    /// `1 - a·b` at search time.
    Cosine,
    /// `-a·b` (maximum inner product).
    Dot,
    /// Squared Euclidean distance.
    L2,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }

    /// The distance between `a` and `b` (both already prepared by [`Metric::prepare`]).
    #[inline(always)]
    pub fn distance<S: Simd>(self, simd: S, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => 1.0 - dot(simd, a, b),
            Metric::Dot => -dot(simd, a, b),
            Metric::L2 => l2_squared(simd, a, b),
        }
    }

    /// What the index stores for `v`: unit length for cosine, `v` itself otherwise. A zero
    /// vector has no direction; it is kept as zeros (distance 1 to everything).
    pub fn prepare(self, v: &[f32]) -> Vec<f32> {
        match self {
            Metric::Cosine => {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter().map(|x| x / norm).collect()
                } else {
                    v.to_vec()
                }
            }
            Metric::Dot | Metric::L2 => v.to_vec(),
        }
    }

    /// The similarity score reported to users for a distance: cosine similarity, inner
    /// product, or the (non-squared) Euclidean distance.
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance,
            Metric::Dot => -distance,
            Metric::L2 => distance.max(0.0).sqrt(),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cosine" => Ok(Metric::Cosine),
            "dot" => Ok(Metric::Dot),
            "l2" => Ok(Metric::L2),
            other => Err(format!("unknown metric {other:?} (cosine, dot or l2)")),
        }
    }
}

/// Inner product, four independent accumulators to hide the FMA latency.
#[inline(always)]
pub fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (zero, zero, zero, zero);
    let mut a4 = a_head.chunks_exact(4);
    let mut b4 = b_head.chunks_exact(4);
    for (x, y) in (&mut a4).zip(&mut b4) {
        s0 = simd.mul_add_f32s(x[0], y[0], s0);
        s1 = simd.mul_add_f32s(x[1], y[1], s1);
        s2 = simd.mul_add_f32s(x[2], y[2], s2);
        s3 = simd.mul_add_f32s(x[3], y[3], s3);
    }
    for (&x, &y) in a4.remainder().iter().zip(b4.remainder()) {
        s0 = simd.mul_add_f32s(x, y, s0);
    }
    let sum = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    let mut total = simd.reduce_sum_f32s(sum);
    for (x, y) in a_tail.iter().zip(b_tail) {
        total += x * y;
    }
    total
}

/// Squared Euclidean distance, four independent accumulators.
#[inline(always)]
pub fn l2_squared<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let (mut s0, mut s1, mut s2, mut s3) = (zero, zero, zero, zero);
    let mut a4 = a_head.chunks_exact(4);
    let mut b4 = b_head.chunks_exact(4);
    for (x, y) in (&mut a4).zip(&mut b4) {
        let d0 = simd.sub_f32s(x[0], y[0]);
        let d1 = simd.sub_f32s(x[1], y[1]);
        let d2 = simd.sub_f32s(x[2], y[2]);
        let d3 = simd.sub_f32s(x[3], y[3]);
        s0 = simd.mul_add_f32s(d0, d0, s0);
        s1 = simd.mul_add_f32s(d1, d1, s1);
        s2 = simd.mul_add_f32s(d2, d2, s2);
        s3 = simd.mul_add_f32s(d3, d3, s3);
    }
    for (&x, &y) in a4.remainder().iter().zip(b4.remainder()) {
        let d = simd.sub_f32s(x, y);
        s0 = simd.mul_add_f32s(d, d, s0);
    }
    let sum = simd.add_f32s(simd.add_f32s(s0, s1), simd.add_f32s(s2, s3));
    let mut total = simd.reduce_sum_f32s(sum);
    for (x, y) in a_tail.iter().zip(b_tail) {
        let d = x - y;
        total += d * d;
    }
    total
}

/// One distance outside a dispatched region (exact search, tests): dispatches for this call.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    struct One<'a>(Metric, &'a [f32], &'a [f32]);
    impl pulp::WithSimd for One<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            self.0.distance(simd, self.1, self.2)
        }
    }
    pulp::Arch::new().dispatch(One(metric, a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Check<'a>(&'a [f32], &'a [f32]);

    impl pulp::WithSimd for Check<'_> {
        type Output = (f32, f32);
        fn with_simd<S: Simd>(self, simd: S) -> (f32, f32) {
            (dot(simd, self.0, self.1), l2_squared(simd, self.0, self.1))
        }
    }

    #[test]
    fn simd_kernels_agree_with_plain_arithmetic_at_every_length() {
        for len in [
            0usize, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 128, 384, 512, 769,
        ] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
                .collect();
            let want_dot: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let want_l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum();
            for (name, (got_dot, got_l2)) in [
                ("dispatched", pulp::Arch::new().dispatch(Check(&a, &b))),
                ("scalar", Check(&a, &b).with_simd_scalar()),
            ] {
                let tol = 1e-4 * (1.0 + want_l2.abs());
                assert!(
                    (f64::from(got_dot) - want_dot).abs() < tol,
                    "{name} dot, len {len}"
                );
                assert!(
                    (f64::from(got_l2) - want_l2).abs() < tol,
                    "{name} l2, len {len}"
                );
            }
        }
    }

    impl Check<'_> {
        fn with_simd_scalar(self) -> (f32, f32) {
            pulp::WithSimd::with_simd(self, pulp::Scalar::new())
        }
    }

    #[test]
    fn cosine_prepares_unit_vectors_and_scores_similarity() {
        let a = Metric::Cosine.prepare(&[3.0, 4.0]);
        assert!((a[0] - 0.6).abs() < 1e-6 && (a[1] - 0.8).abs() < 1e-6);
        let d = distance(Metric::Cosine, &a, &a);
        assert!(d.abs() < 1e-6);
        assert!((Metric::Cosine.score(d) - 1.0).abs() < 1e-6);
        assert_eq!(Metric::Cosine.prepare(&[0.0, 0.0]), vec![0.0, 0.0]);
        assert_eq!(Metric::L2.score(9.0), 3.0);
        assert_eq!("dot".parse::<Metric>(), Ok(Metric::Dot));
        assert!("manhattan".parse::<Metric>().is_err());
    }
}
