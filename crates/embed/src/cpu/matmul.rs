//! Matrix products through the `gemm` crate (the kernels candle's CPU backend uses), behind
//! strided views whose bounds are checked before the one `unsafe` call.
//!
//! `gemm` picks its micro-kernels at run time (AVX-512 with its `x86-v4` feature, which the
//! workspace turns on; AVX2+FMA; NEON; scalar) and packs strided operands itself, so one
//! head's queries, keys or values are read in place from the fused QKV buffer. The products
//! with weights have their own kernel ([`super::packed`]); these are attention's.

use gemm::Parallelism;

/// A read-only matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable matrix with unit column stride.
#[derive(Debug)]
pub(crate) struct ViewMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0
        || cols == 0
        || (rows - 1)
            .checked_mul(row_stride)
            .and_then(|a| {
                (cols - 1)
                    .checked_mul(col_stride)
                    .and_then(|b| a.checked_add(b))
            })
            .is_some_and(|last| last < len)
}

impl<'a> View<'a> {
    /// Panics when the view reaches past `data`: that is a bug in the caller's shapes.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride, col_stride),
            "a {rows}x{cols} view with strides ({row_stride}, {col_stride}) does not fit in {} floats",
            data.len()
        );
        View {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A contiguous row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View::new(data, rows, cols, cols, 1)
    }
}

impl<'a> ViewMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride, 1),
            "a {rows}x{cols} output with row stride {row_stride} does not fit in {} floats",
            data.len()
        );
        ViewMut {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        ViewMut::new(data, rows, cols, cols)
    }
}

/// Whether a product overwrites its output or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Overwrite,
    Accumulate,
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs`), on up to `threads` rayon threads (1: this one).
pub(crate) fn matmul(
    dst: ViewMut<'_>,
    lhs: View<'_>,
    rhs: View<'_>,
    output: Output,
    threads: usize,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions differ");
    assert_eq!(
        (dst.rows, dst.cols),
        (lhs.rows, rhs.cols),
        "output shape differs"
    );
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    let signed = |s: usize| isize::try_from(s).expect("stride fits isize");
    #[allow(unsafe_code)]
    // SAFETY: every view was checked to lie inside its slice (`View::new`, `ViewMut::new`),
    // the shapes agree (asserted above), and `dst` is borrowed mutably, so it aliases neither
    // operand. gemm reads `lhs`/`rhs` and writes `dst` only within those shapes and strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            signed(dst.row_stride),
            output == Output::Accumulate,
            lhs.data.as_ptr(),
            signed(lhs.col_stride),
            signed(lhs.row_stride),
            rhs.data.as_ptr(),
            signed(rhs.col_stride),
            signed(rhs.row_stride),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn products_match_the_definition_for_every_layout() {
        let (m, k, n) = (13, 37, 21);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let want = naive(&a, &b, m, k, n);
        // b stored transposed, as a checkpoint stores (out, in) weights.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for threads in [1, 2] {
            let mut out = vec![0f32; m * n];
            matmul(
                ViewMut::rows(&mut out, m, n),
                View::rows(&a, m, k),
                View::new(&bt, k, n, 1, k),
                Output::Overwrite,
                threads,
            );
            assert_eq!(out, want);
            matmul(
                ViewMut::rows(&mut out, m, n),
                View::rows(&a, m, k),
                View::rows(&b, k, n),
                Output::Accumulate,
                threads,
            );
            let twice: Vec<f32> = want.iter().map(|v| 2.0 * v).collect();
            assert_eq!(out, twice);
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_past_its_slice_is_refused() {
        let data = [0f32; 10];
        let _ = View::new(&data, 3, 4, 4, 1);
    }
}
