//! Products with few rows (one query, one short text): `y = x Wᵀ` streamed from the weight's
//! rows as the checkpoint stores them, `(out, in)`.
//!
//! With a handful of rows the work is reading the weight once, not arithmetic: `gemm` would
//! first repack the whole weight into its panels for every call (that repacking was 58 % of a
//! one-query MiniLM call). Here each thread takes a range of output columns, reads those
//! weight rows once, front to back, and dots each with every input row while it sits in L1.

use pulp::Simd;
use rayon::prelude::*;

/// Output columns per parallel task: large enough that a hand-off is worth it.
const COLUMNS_PER_TASK: usize = 64;

/// Dot products of four weight rows with two input rows: eight accumulators, six loads per
/// eight multiply-adds, so the multiply-add units rather than the load ports set the pace.
#[inline(always)]
fn dot2x4<S: Simd>(simd: S, x: [&[f32]; 2], w: [&[f32]; 4]) -> [[f32; 4]; 2] {
    let xs = x.map(|row| S::as_simd_f32s(row));
    let ws = w.map(|row| S::as_simd_f32s(row));
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; 4]; 2];
    for i in 0..xs[0].0.len() {
        let (a0, a1) = (xs[0].0[i], xs[1].0[i]);
        for q in 0..4 {
            let b = ws[q].0[i];
            acc[0][q] = simd.mul_add_e_f32s(a0, b, acc[0][q]);
            acc[1][q] = simd.mul_add_e_f32s(a1, b, acc[1][q]);
        }
    }
    let mut out = [[0f32; 4]; 2];
    for r in 0..2 {
        for q in 0..4 {
            out[r][q] = simd.reduce_sum_f32s(acc[r][q])
                + xs[r].1.iter().zip(ws[q].1).map(|(a, b)| a * b).sum::<f32>();
        }
    }
    out
}

#[inline(always)]
fn dot1<S: Simd>(simd: S, x: &[f32], w: &[f32]) -> f32 {
    let (xh, xt) = S::as_simd_f32s(x);
    let (wh, wt) = S::as_simd_f32s(w);
    let mut acc = simd.splat_f32s(0.0);
    for (&a, &b) in xh.iter().zip(wh) {
        acc = simd.mul_add_e_f32s(a, b, acc);
    }
    simd.reduce_sum_f32s(acc) + xt.iter().zip(wt).map(|(a, b)| a * b).sum::<f32>()
}

/// `out[j * rows + r] = x[r] · w[j]` for the weight rows in `w` (`k` wide): the block's
/// outputs column-major, so a block is one contiguous piece.
struct Block<'a> {
    x: &'a [f32],
    w: &'a [f32],
    k: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Block { x, w, k, out } = self;
        let rows = x.len() / k;
        let mut weights = w.chunks_exact(k);
        let mut j = 0;
        while weights.len() >= 4 {
            let w4 = [0, 1, 2, 3].map(|_| weights.next().unwrap_or_default());
            let mut r = 0;
            while r + 2 <= rows {
                let d = dot2x4(
                    simd,
                    [&x[r * k..(r + 1) * k], &x[(r + 1) * k..(r + 2) * k]],
                    w4,
                );
                for (i, d) in d.iter().enumerate() {
                    for q in 0..4 {
                        out[(j + q) * rows + r + i] = d[q];
                    }
                }
                r += 2;
            }
            if r < rows {
                for (q, w) in w4.iter().enumerate() {
                    out[(j + q) * rows + r] = dot1(simd, &x[r * k..(r + 1) * k], w);
                }
            }
            j += 4;
        }
        for wr in weights {
            for r in 0..rows {
                out[j * rows + r] = dot1(simd, &x[r * k..(r + 1) * k], wr);
            }
            j += 1;
        }
    }
}

/// `dst (=|+=) x Wᵀ` for `rows` rows of `x` (`k` wide) and `w` `(n, k)` row-major.
pub(crate) fn product(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    let n = w.len() / k;
    assert_eq!(x.len(), rows * k, "input is (rows, k)");
    assert_eq!(dst.len(), rows * n, "output is (rows, n)");
    let tasks = if threads > 1 {
        n.div_ceil(COLUMNS_PER_TASK)
    } else {
        1
    };
    let per = n.div_ceil(tasks.max(1)).max(1);
    let mut columns = vec![0f32; rows * n];
    let run = |(block, out): (&[f32], &mut [f32])| {
        pulp::Arch::new().dispatch(Block {
            x,
            w: block,
            k,
            out,
        });
    };
    if tasks > 1 {
        w.par_chunks(per * k)
            .zip(columns.par_chunks_mut(per * rows))
            .for_each(run);
    } else {
        run((w, &mut columns));
    }
    for r in 0..rows {
        let row = &mut dst[r * n..(r + 1) * n];
        for (j, d) in row.iter_mut().enumerate() {
            let v = columns[j * rows + r];
            *d = if accumulate { *d + v } else { v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_with_tails() {
        for (rows, k, n) in [(1, 384, 1152), (3, 37, 7), (5, 64, 130)] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            for threads in [1, 2] {
                let mut dst = vec![1f32; rows * n];
                product(&x, rows, &w, k, &mut dst, true, threads);
                for r in 0..rows {
                    for j in 0..n {
                        let want: f64 = 1.0
                            + (0..k)
                                .map(|p| x[r * k + p] as f64 * w[j * k + p] as f64)
                                .sum::<f64>();
                        assert!((dst[r * n + j] as f64 - want).abs() < 1e-3, "({r}, {j})");
                    }
                }
            }
        }
    }
}
