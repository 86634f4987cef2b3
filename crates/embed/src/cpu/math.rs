//! Element-wise and row kernels of the forward pass: layer norm (fused with the bias and
//! residual adds around it), GELU (exact, through a vectorisable `erf`), quick-GELU, softmax
//! and L2 normalisation.
//!
//! Every public function here enters [`pulp::Arch::dispatch`] once per call and runs plain
//! loops inlined into the specialised code, which LLVM vectorises for the instruction set the
//! machine has (AVX-512, AVX2+FMA, NEON, or scalar). `exp` and `erf` are branch-free
//! polynomials so they vectorise too: `exp` is Cephes' `expf` (relative error about 1e-7),
//! `erf` is Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), both well inside what
//! the parity tests allow (cosine 0.9999 to the reference) and far from the tanh shortcut.

/// Defines `$vis fn $name(args) -> ret` that runs `$body` inside pulp's run-time dispatch.
macro_rules! dispatched {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$lt:lifetime>($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name<$lt>($($arg: $ty),*) {
            struct Op<$lt>($($ty,)* ::std::marker::PhantomData<&$lt ()>);
            impl<$lt> ::pulp::WithSimd for Op<$lt> {
                type Output = ();
                #[inline(always)]
                fn with_simd<S: ::pulp::Simd>(self, _simd: S) {
                    let Op($($arg,)* _) = self;
                    $body
                }
            }
            ::pulp::Arch::new().dispatch(Op($($arg,)* ::std::marker::PhantomData))
        }
    };
}

const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    let rest: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    acc.iter().sum::<f32>() + rest
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let m = acc
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    chunks
        .remainder()
        .iter()
        .fold(m, |a, &b| if b > a { b } else { a })
}

/// `e^x` (Cephes `expf`): range reduction by ln 2, a degree-5 polynomial, and the exponent
/// put back through the bits. Inputs are clamped to where the result is a normal float.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// The exact GELU, `x Φ(x)`, as BERT uses it.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// CLIP's `x σ(1.702 x)`.
#[inline(always)]
fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

#[inline(always)]
fn normalize_row(src: &[f32], dst: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = src.len() as f32;
    let mean = sum(src) / n;
    let inv = 1.0 / (sum_sq_dev(src, mean) / n + eps).sqrt();
    for (((d, &s), &g), &b) in dst.iter_mut().zip(src).zip(gamma).zip(beta) {
        *d = (s - mean) * inv * g + b;
    }
}

/// The affine parameters of one layer norm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Norm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

dispatched! {
    /// `dst = LayerNorm(src)`, row by row (`gamma.len()` wide).
    pub(crate) fn layer_norm<'a>(src: &'a [f32], dst: &'a mut [f32], norm: Norm<'a>) {
        let w = norm.gamma.len();
        for (s, d) in src.chunks_exact(w).zip(dst.chunks_exact_mut(w)) {
            normalize_row(s, d, norm.gamma, norm.beta, norm.eps);
        }
    }
}

dispatched! {
    /// `x = LayerNorm(x + bias)` (or of `x` alone), row by row, in place: the end of a
    /// post-norm (BERT) sub-layer whose product was accumulated onto the residual.
    pub(crate) fn bias_layer_norm<'a>(x: &'a mut [f32], bias: Option<&'a [f32]>, norm: Norm<'a>) {
        let w = norm.gamma.len();
        for x in x.chunks_exact_mut(w) {
            if let Some(bias) = bias {
                for (v, &b) in x.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            let n = w as f32;
            let mean = sum(x) / n;
            let inv = 1.0 / (sum_sq_dev(x, mean) / n + norm.eps).sqrt();
            for ((v, &g), &b) in x.iter_mut().zip(norm.gamma).zip(norm.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

dispatched! {
    /// `x += bias; dst = LayerNorm(x)`, row by row: the residual of a pre-norm (CLIP)
    /// sub-layer gets its bias, and the next sub-layer's input is its norm.
    pub(crate) fn bias_then_layer_norm<'a>(
        x: &'a mut [f32],
        bias: &'a [f32],
        dst: &'a mut [f32],
        norm: Norm<'a>,
    ) {
        let w = norm.gamma.len();
        for (x, d) in x.chunks_exact_mut(w).zip(dst.chunks_exact_mut(w)) {
            for (v, &b) in x.iter_mut().zip(bias) {
                *v += b;
            }
            normalize_row(x, d, norm.gamma, norm.beta, norm.eps);
        }
    }
}

dispatched! {
    /// `x = GELU(x + bias)`, row by row.
    pub(crate) fn bias_gelu<'a>(x: &'a mut [f32], bias: &'a [f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = gelu(*v + b);
            }
        }
    }
}

dispatched! {
    /// `x = quick_gelu(x + bias)`, row by row.
    pub(crate) fn bias_quick_gelu<'a>(x: &'a mut [f32], bias: &'a [f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = quick_gelu(*v + b);
            }
        }
    }
}

dispatched! {
    /// `x += bias`, row by row.
    pub(crate) fn add_bias<'a>(x: &'a mut [f32], bias: &'a [f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

dispatched! {
    /// Softmax of each `width`-wide row of `scores` after multiplying it by `scale`. With
    /// `causal`, row `i` sees only its first `i + 1` entries and the rest become 0.
    pub(crate) fn softmax_rows<'a>(scores: &'a mut [f32], width: usize, scale: f32, causal: bool) {
        for (i, row) in scores.chunks_exact_mut(width).enumerate() {
            let seen = if causal { i + 1 } else { width };
            let (live, masked) = row.split_at_mut(seen.min(width));
            let m = max(live) * scale;
            for v in live.iter_mut() {
                *v = exp(*v * scale - m);
            }
            let inv = 1.0 / sum(live);
            for v in live.iter_mut() {
                *v *= inv;
            }
            masked.fill(0.0);
        }
    }
}

dispatched! {
    /// Each `width`-wide row divided by its L2 norm (clamped away from zero).
    pub(crate) fn l2_normalize<'a>(x: &'a mut [f32], width: usize) {
        for row in x.chunks_exact_mut(width) {
            let mut acc = [0f32; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for i in 0..LANES {
                    acc[i] += c[i] * c[i];
                }
            }
            let sq = acc.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>();
            let inv = 1.0 / sq.sqrt().max(1e-12);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulps_of_libm() {
        let mut worst = 0f64;
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
    }

    #[test]
    fn erf_is_within_its_bound() {
        let mut worst = 0f64;
        for i in -600..600 {
            let x = i as f64 / 100.0;
            worst = worst.max((erf(x as f32) as f64 - libm_erf(x)).abs());
        }
        // The formula's 1.5e-7, plus rounding in f32.
        assert!(worst < 5e-7, "absolute error {worst}");
    }

    /// erf by its Taylor series (|x| < 3) or continued fraction, in f64: a reference
    /// independent of the approximation under test.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut total = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - …), enough terms for x ≥ 3.
            let a = x.abs();
            let mut term = 1.0;
            let mut total = 1.0;
            for n in 1..8 {
                term *= -((2 * n - 1) as f64) / (2.0 * a * a);
                total += term;
            }
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * total;
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn dispatched_kernels_agree_with_plain_arithmetic() {
        let w = 37;
        let x: Vec<f32> = (0..w * 3)
            .map(|i| ((i * 7919) % 101) as f32 / 17.0 - 3.0)
            .collect();
        let gamma: Vec<f32> = (0..w).map(|i| 1.0 + i as f32 / 50.0).collect();
        let beta: Vec<f32> = (0..w).map(|i| i as f32 / 100.0).collect();
        let norm = Norm {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        };
        let mut out = vec![0f32; x.len()];
        layer_norm(&x, &mut out, norm);
        for (r, row) in x.chunks(w).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / w as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w as f64;
            for i in 0..w {
                let want =
                    (row[i] as f64 - mean) / (var + 1e-5).sqrt() * gamma[i] as f64 + beta[i] as f64;
                assert!((out[r * w + i] as f64 - want).abs() < 1e-5);
            }
        }

        let bias = vec![0.5f32; w];
        let mut g = x.clone();
        bias_gelu(&mut g, &bias);
        for (got, &v) in g.iter().zip(&x) {
            let v = (v + 0.5) as f64;
            let want = 0.5 * v * (1.0 + libm_erf(v / 2f64.sqrt()));
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "gelu({v}) = {got}, want {want}"
            );
        }
        let mut q = x.clone();
        bias_quick_gelu(&mut q, &bias);
        for (got, &v) in q.iter().zip(&x) {
            let v = (v + 0.5) as f64;
            let want = v / (1.0 + (-1.702 * v).exp());
            assert!((*got as f64 - want).abs() < 1e-6);
        }

        let mut s = x[..4 * 4].to_vec();
        softmax_rows(&mut s, 4, 0.5, true);
        for (i, row) in s.chunks(4).enumerate() {
            let live = &x[i * 4..i * 4 + i + 1];
            let m = live.iter().cloned().fold(f32::MIN, f32::max) as f64 * 0.5;
            let z: f64 = live.iter().map(|&v| (v as f64 * 0.5 - m).exp()).sum();
            for j in 0..4 {
                let want = if j <= i {
                    ((live[j] as f64) * 0.5 - m).exp() / z
                } else {
                    0.0
                };
                assert!((row[j] as f64 - want).abs() < 1e-6);
            }
        }

        let mut n = x.clone();
        l2_normalize(&mut n, w);
        for row in n.chunks(w) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
}
