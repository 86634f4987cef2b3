//! Products against a weight packed once at load into panels of 16 output columns,
//! `[panel][k][16]`, so every call reads it front to back with no repacking.
//!
//! The micro-kernel keeps a tile of `MR` input rows x 16 outputs in registers and, for each
//! `k`, loads one 16-wide row of the panel and multiply-adds it with each input row's value
//! broadcast (the outer-product form of BLIS/MLAS kernels). `MR` follows the registers the
//! instruction set has: 6 rows x 2 vectors with AVX2 (12 of its 16 registers), 12 x 1 with
//! AVX-512, 6 x 4 with NEON. A panel (`k x 16` floats: 24 KiB at k = 384, 192 KiB at
//! k = 3072) stays in L2 while every row block of the input passes over it, so the weight
//! comes from memory once per `ROW_BLOCK` rows, and threads split the panels between them.
//!
//! Why not `gemm` here: it repacks the whole weight on every call, which costs as much as the
//! arithmetic when the call has a few dozen rows (one picture is 50, one text 10-20), and
//! that is the size of every interactive request.

use pulp::Simd;
use rayon::prelude::*;

/// Output columns per panel.
pub(crate) const NR: usize = 16;
/// Most input rows that pass over a panel while it sits in L2 (their block stays in L3).
/// 256 rather than 96: 1.3-1.6x faster at 8 and 32 pictures (the weight is read less often).
const ROW_BLOCK: usize = 256;

/// A `(n, k)` weight (as checkpoints store it) packed into panels.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl Packed {
    /// Packs `w`, `(n, k)` row-major; columns past `n` in the last panel are zero.
    pub fn new(w: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(w.len(), n * k, "weight is (n, k)");
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (j, row) in w.chunks_exact(k).enumerate() {
            let (p, c) = (j / NR, j % NR);
            let panel = &mut data[p * k * NR..(p + 1) * k * NR];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * NR + c] = v;
            }
        }
        Packed { data, k, n }
    }

    pub fn outputs(&self) -> usize {
        self.n
    }

    pub fn inputs(&self) -> usize {
        self.k
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// What one task of [`spread`] computes: rows `rows` of the product for the panels `panels`,
/// written into `out` (row `r` of the task, panel `pl` of it, at `out[r * stride + pl * NR..]`,
/// clipped to `cols` columns in all).
pub(crate) struct Tile<'a> {
    pub rows: std::ops::Range<usize>,
    pub panels: std::ops::Range<usize>,
    out: &'a mut [f32],
    stride: usize,
    cols: usize,
    accumulate: bool,
}

impl Tile<'_> {
    /// Stores (or adds) the 16 results of row `r` and panel `pl`, both counted from the tile's
    /// first; columns past the output's width are dropped.
    #[inline(always)]
    pub fn write(&mut self, r: usize, pl: usize, values: &[f32; NR]) {
        let cols = NR.min(self.cols - pl * NR);
        let dst = &mut self.out[r * self.stride + pl * NR..][..cols];
        if self.accumulate {
            dst.iter_mut().zip(values).for_each(|(d, v)| *d += v);
        } else {
            dst.copy_from_slice(&values[..cols]);
        }
    }
}

/// `R` rows of `x` (`k` wide, contiguous) times one panel, into the tile's row `r`, panel `pl`.
#[inline(always)]
fn tile_product<S: Simd, const R: usize>(
    simd: S,
    x: &[f32],
    k: usize,
    panel: &[f32],
    out: &mut Tile<'_>,
    r: usize,
    pl: usize,
) {
    let vectors = NR / S::F32_LANES;
    assert!(x.len() == R * k && panel.len() == k * NR);
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[r * k..(r + 1) * k]);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; NR]; R];
    for (kk, w) in panel.chunks_exact(NR).enumerate() {
        let (w, _) = S::as_simd_f32s(w);
        for r in 0..R {
            let xb = simd.splat_f32s(rows[r][kk]);
            for v in 0..vectors {
                acc[r][v] = simd.mul_add_e_f32s(xb, w[v], acc[r][v]);
            }
        }
    }
    let mut values = [0f32; NR];
    for (i, acc) in acc.iter().enumerate() {
        let (t, _) = S::as_mut_simd_f32s(&mut values);
        t[..vectors].copy_from_slice(&acc[..vectors]);
        out.write(r + i, pl, &values);
    }
}

/// One task of an `f32` product.
struct Task<'a, 'b> {
    x: &'a [f32],
    weight: &'a Packed,
    tile: Tile<'b>,
}

impl pulp::WithSimd for Task<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        if S::F32_LANES >= 16 {
            run::<S, 12>(simd, self);
        } else {
            run::<S, 6>(simd, self);
        }
    }
}

/// Equal blocks of at most `ROW_BLOCK` rows covering `rows` (a short last block would read the
/// whole weight for little work), as ranges counted from `rows.start`.
pub(crate) fn row_blocks(rows: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let step = rows.div_ceil(rows.div_ceil(ROW_BLOCK).max(1)).max(1);
    (0..rows)
        .step_by(step)
        .map(move |b| b..(b + step).min(rows))
}

#[inline(always)]
fn run<S: Simd, const MR: usize>(simd: S, t: Task<'_, '_>) {
    let Task {
        x,
        weight,
        mut tile,
    } = t;
    let k = weight.k;
    let first = tile.rows.start;
    let x = &x[first * k..tile.rows.end * k];
    for block in row_blocks(tile.rows.len()) {
        for pl in 0..tile.panels.len() {
            let panel = weight.panel(tile.panels.start + pl);
            let mut r = block.start;
            while r + MR <= block.end {
                let x = &x[r * k..(r + MR) * k];
                tile_product::<S, MR>(simd, x, k, panel, &mut tile, r, pl);
                r += MR;
            }
            while r < block.end {
                let n = (block.end - r).min(6);
                let x = &x[r * k..(r + n) * k];
                match n {
                    1 => tile_product::<S, 1>(simd, x, k, panel, &mut tile, r, pl),
                    2 => tile_product::<S, 2>(simd, x, k, panel, &mut tile, r, pl),
                    3 => tile_product::<S, 3>(simd, x, k, panel, &mut tile, r, pl),
                    4 => tile_product::<S, 4>(simd, x, k, panel, &mut tile, r, pl),
                    5 => tile_product::<S, 5>(simd, x, k, panel, &mut tile, r, pl),
                    _ => tile_product::<S, 6>(simd, x, k, panel, &mut tile, r, pl),
                }
                r += n;
            }
        }
    }
}

/// `dst (=|+=) x Wᵀ` for `rows` rows of `x` (`w.inputs()` wide), on up to `threads` threads.
pub(crate) fn product(
    x: &[f32],
    rows: usize,
    w: &Packed,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(x.len(), rows * w.k, "input is (rows, k)");
    spread(rows, w.n, dst, accumulate, threads, |tile| {
        pulp::Arch::new().dispatch(Task { x, weight: w, tile })
    });
}

/// Splits a product of `rows` rows by an `n`-column panelled weight into tasks for up to
/// `threads` threads and runs `task` on each.
///
/// With many rows, each thread takes a block of rows and every panel (the weight is read once
/// per `ROW_BLOCK` rows either way) and writes its rows in place. With few, each thread takes
/// some of the panels, so the weight is read once in all, into a buffer of its own that is then
/// copied into the rows.
pub(crate) fn spread(
    rows: usize,
    n: usize,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
    task: impl Fn(Tile<'_>) + Sync,
) {
    assert_eq!(dst.len(), rows * n, "output is (rows, n)");
    if rows == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    if threads <= 1 {
        task(Tile {
            rows: 0..rows,
            panels: 0..panels,
            out: dst,
            stride: n,
            cols: n,
            accumulate,
        });
    } else if rows >= 2 * ROW_BLOCK {
        let per = rows.div_ceil(threads).next_multiple_of(12);
        dst.par_chunks_mut(per * n)
            .enumerate()
            .for_each(|(i, out)| {
                task(Tile {
                    rows: i * per..i * per + out.len() / n,
                    panels: 0..panels,
                    out,
                    stride: n,
                    cols: n,
                    accumulate,
                });
            });
    } else {
        let per = panels.div_ceil(panels.min(threads * 4));
        let locals: Vec<(usize, Vec<f32>)> = (0..panels.div_ceil(per))
            .into_par_iter()
            .map(|t| {
                let range = t * per..((t + 1) * per).min(panels);
                let width = range.len() * NR;
                let mut local = vec![0f32; rows * width];
                let first = range.start * NR;
                task(Tile {
                    rows: 0..rows,
                    panels: range,
                    out: &mut local,
                    stride: width,
                    cols: width,
                    accumulate: false,
                });
                (first, local)
            })
            .collect();
        for (r, row) in dst.chunks_mut(n).enumerate() {
            for (first, local) in &locals {
                let width = local.len() / rows;
                let cols = width.min(n - first);
                let src = &local[r * width..][..cols];
                let dst = &mut row[*first..first + cols];
                if accumulate {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_for_every_tile_and_tail() {
        for (rows, k, n) in [
            (1, 5, 3),
            (7, 37, 33),
            (13, 64, 16),
            (100, 20, 50),
            (200, 9, 17),
            (401, 8, 40),
        ] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let packed = Packed::new(&w, n, k);
            for threads in [1, 2] {
                for accumulate in [false, true] {
                    let mut dst = vec![1f32; rows * n];
                    product(&x, rows, &packed, &mut dst, accumulate, threads);
                    for r in 0..rows {
                        for j in 0..n {
                            let dot: f64 = (0..k)
                                .map(|p| x[r * k + p] as f64 * w[j * k + p] as f64)
                                .sum();
                            let want = if accumulate { 1.0 + dot } else { dot };
                            assert!(
                                (dst[r * n + j] as f64 - want).abs() < 1e-3,
                                "({rows}, {k}, {n}) at ({r}, {j}): {} vs {want}",
                                dst[r * n + j]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_scalar_path_agrees() {
        struct Scalar<'a>(&'a [f32], usize, &'a Packed, &'a mut [f32]);
        impl pulp::WithSimd for Scalar<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                let (n, rows) = (self.2.n, self.1);
                Task {
                    x: self.0,
                    weight: self.2,
                    tile: Tile {
                        rows: 0..rows,
                        panels: 0..n.div_ceil(NR),
                        out: self.3,
                        stride: n,
                        cols: n,
                        accumulate: false,
                    },
                }
                .with_simd(simd);
            }
        }
        let (rows, k, n) = (9, 11, 20);
        let x: Vec<f32> = (0..rows * k).map(|i| (i % 5) as f32).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 3) as f32).collect();
        let packed = Packed::new(&w, n, k);
        let mut out = vec![0f32; rows * n];
        pulp::WithSimd::with_simd(Scalar(&x, rows, &packed, &mut out), pulp::Scalar::new());
        for r in 0..rows {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| x[r * k + p] * w[j * k + p]).sum();
                assert_eq!(out[r * n + j], want);
            }
        }
    }
}
