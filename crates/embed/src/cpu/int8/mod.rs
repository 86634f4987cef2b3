//! Products in 8-bit integers: a weight quantised once at load, the input quantised on the way
//! in, `i32` sums, one `f32` scale per block.
//!
//! The format: along `k`, blocks of [`BLOCK`] values share one scale, per output column for the
//! weight and per row for the input, both symmetric (zero is exact) with levels in
//! `-LEVEL..=LEVEL`. Per-block scales are what keep quality: on the real MiniLM weights and
//! 2,400 real sentences, per-channel weights and per-row inputs at the same levels give mean
//! cosine 0.992 and top-10 overlap 0.90, blocks 0.9989 and 0.96 (see `docs/design.md`).
//!
//! Why `LEVEL` is 63 and not 127: AVX2 has no 8-bit dot product that cannot overflow. Its
//! `vpmaddubsw` multiplies unsigned by signed bytes into *saturating* 16-bit pair sums. With
//! inputs stored as `q + 64` (1..=127, unsigned) and weights in -63..=63, a pair is at most
//! 2 x 127 x 63 = 16,002, so two pairs (four products) still fit in 16 bits: two
//! `vpmaddubsw`, one 16-bit add, then one `vpmaddwd` widens eight products to 32 bits: exact,
//! with no saturation anywhere, and in a bare loop 2.8x the multiply-adds of `f32` FMA on Zen 3
//! (1.6-1.7x for the whole tile with its per-block scaling). The `+ 64` is taken back per block with the weight's column sums
//! (`64 Σ w`), computed at load. Every path (AVX2, scalar) sums the same integers, so the
//! `i32` results are identical on every machine.
//!
//! The weight is packed like [`super::packed`]'s, in panels of 16 columns, each `k` quad of a
//! column's bytes together (`[panel][k / 4][16][4]`): one 32-byte load holds 4 `k` of 8
//! columns, which is what `vpmaddubsw` pairs against an input's 4 bytes broadcast. Inputs are
//! quantised four rows interleaved per block (`[row group][block][4][32]`), the kernel's tile,
//! so one pointer walks a tile's inputs.

use rayon::prelude::*;

use super::packed::{NR, Tile, spread};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Values per scale along `k`.
pub(crate) const BLOCK: usize = 32;
/// Largest quantised magnitude.
const LEVEL: i32 = 63;
/// Added to inputs so they are unsigned bytes for `vpmaddubsw`.
const OFFSET: i32 = 64;
/// `k` values packed together per column.
const QUAD: usize = 4;
/// Rows quantised together: the kernel's tile height.
const GROUP: usize = 4;
/// Bytes of quantised inputs that pass over each panel in turn: they stay in L2 (512 KiB per
/// core on the machines we measure) while the panel is read from L1/L2 by each group.
const CHUNK_BYTES: usize = 192 * 1024;

/// Per panel and block: each column's scale and its sum's starting value, `-OFFSET Σ q_w`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct BlockMeta {
    scales: [f32; NR],
    offsets: [i32; NR],
}

/// A `(n, k)` weight quantised into blocks and packed into panels.
#[derive(Clone, Debug)]
pub(crate) struct QuantizedWeight {
    /// `[panel][block][8 quads][16 columns][4]`.
    data: Vec<i8>,
    /// `[panel][block]`.
    meta: Vec<BlockMeta>,
    k: usize,
    n: usize,
}

/// Rows quantised into blocks, four rows interleaved: `data` is `[group][block][4][32]` as
/// `q + OFFSET`, `scales` `[group][block][4]`. Rows past the last padding a group are zero.
#[derive(Debug, Default)]
pub(crate) struct QuantizedRows {
    data: Vec<u8>,
    scales: Vec<f32>,
    rows: usize,
    blocks: usize,
}

/// Rounds to the nearest integer, ties to even, for `|v| < 2^22`, in plain `f32` arithmetic
/// (vectorises, and gives the same result on every machine).
#[inline(always)]
fn round(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 x 2^23
    (v + MAGIC) - MAGIC
}

/// The smallest block maximum quantised as it is: `LEVEL / TINY` is finite (about 6e37),
/// while below about 1.85e-37 it would be infinite, and the AVX2 and scalar conversions of
/// infinity differ. Shared by both paths.
pub(crate) const TINY: f32 = 1e-36;

/// Quantises one block (zero-padded by the caller past `k`) symmetrically into `out` (levels
/// `-LEVEL..=LEVEL` plus `offset`), returning its scale. The reference for [`avx2::quantize_block`], which must
/// give the same bytes.
#[inline(always)]
fn quantize_block<T: Copy>(
    block: &[f32; BLOCK],
    out: &mut [T; BLOCK],
    offset: i32,
    store: fn(i32) -> T,
) -> f32 {
    // A value that is not finite makes the block's scale NaN, so it shows in the output as
    // it would in f32.
    let finite = block.iter().all(|v| v.is_finite());
    let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    // Below TINY, LEVEL / max overflows to infinity: such a block is zero at any precision
    // the products keep.
    if max < TINY || !finite {
        *out = [store(offset); BLOCK];
        return if finite { 0.0 } else { f32::NAN };
    }
    let inv = LEVEL as f32 / max;
    for (o, &v) in out.iter_mut().zip(block) {
        *o = store((round(v * inv) as i32).clamp(-LEVEL, LEVEL) + offset);
    }
    max / LEVEL as f32
}

impl QuantizedWeight {
    /// Quantises and packs `w`, `(n, k)` row-major. Columns past `n` and `k` past the last
    /// block are zero.
    pub fn new(w: &[f32], n: usize, k: usize) -> QuantizedWeight {
        assert_eq!(w.len(), n * k, "weight is (n, k)");
        let blocks = k.div_ceil(BLOCK);
        let kp = blocks * BLOCK;
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kp * NR];
        let mut meta = vec![BlockMeta::default(); panels * blocks];
        let mut column = vec![0i8; kp];
        for (j, row) in w.chunks_exact(k).enumerate() {
            let (p, c) = (j / NR, j % NR);
            for (b, values) in row.chunks(BLOCK).enumerate() {
                let out: &mut [i8; BLOCK] = (&mut column[b * BLOCK..(b + 1) * BLOCK])
                    .try_into()
                    .expect("a block");
                let mut padded = [0f32; BLOCK];
                padded[..values.len()].copy_from_slice(values);
                let m = &mut meta[p * blocks + b];
                m.scales[c] = quantize_block(&padded, out, 0, |q| q as i8);
                m.offsets[c] = -OFFSET * out.iter().map(|&q| q as i32).sum::<i32>();
            }
            let panel = &mut data[p * kp * NR..(p + 1) * kp * NR];
            for (kk, &q) in column.iter().enumerate() {
                panel[(kk / QUAD) * NR * QUAD + c * QUAD + kk % QUAD] = q;
            }
        }
        QuantizedWeight { data, meta, k, n }
    }

    pub fn outputs(&self) -> usize {
        self.n
    }

    pub fn inputs(&self) -> usize {
        self.k
    }

    fn blocks(&self) -> usize {
        self.k.div_ceil(BLOCK)
    }

    fn panel(&self, p: usize) -> Panel<'_> {
        let blocks = self.blocks();
        let bytes = blocks * BLOCK * NR;
        Panel {
            data: &self.data[p * bytes..(p + 1) * bytes],
            meta: &self.meta[p * blocks..(p + 1) * blocks],
        }
    }
}

#[derive(Clone, Copy)]
struct Panel<'a> {
    data: &'a [i8],
    meta: &'a [BlockMeta],
}

/// One group of four quantised rows.
#[derive(Clone, Copy)]
struct Group<'a> {
    data: &'a [u8],
    scales: &'a [f32],
}

impl QuantizedRows {
    /// Quantises `rows` rows of `x` (`k` wide) into this buffer, reusing its memory.
    pub fn quantize(&mut self, x: &[f32], rows: usize, k: usize) {
        assert_eq!(x.len(), rows * k, "input is (rows, k)");
        let blocks = k.div_ceil(BLOCK);
        let groups = rows.div_ceil(GROUP);
        self.rows = rows;
        self.blocks = blocks;
        self.data.resize(groups * blocks * GROUP * BLOCK, 0);
        self.scales.resize(groups * blocks * GROUP, 0.0);
        if blocks == 0 {
            return;
        }
        let group_bytes = blocks * GROUP * BLOCK;
        self.data
            .par_chunks_mut(group_bytes)
            .zip(self.scales.par_chunks_mut(blocks * GROUP))
            .enumerate()
            .with_min_len((4096 / group_bytes).max(1))
            .for_each(|(g, (data, scales))| {
                #[cfg(target_arch = "x86_64")]
                if let Some(simd) = pulp::x86::V3::try_new() {
                    let q = Quantizer::Avx2(simd);
                    return simd.vectorize(
                        #[inline(always)]
                        || quantize_group(x, k, g, data, scales, q),
                    );
                }
                quantize_group(x, k, g, data, scales, Quantizer::Scalar)
            });
    }

    fn group(&self, g: usize) -> Group<'_> {
        let bytes = self.blocks * GROUP * BLOCK;
        let scales = self.blocks * GROUP;
        Group {
            data: &self.data[g * bytes..(g + 1) * bytes],
            scales: &self.scales[g * scales..(g + 1) * scales],
        }
    }
}

/// Quantised inputs kept between products, one per product running at the time, so a batch
/// of the same size allocates nothing.
static SCRATCH: std::sync::Mutex<Vec<QuantizedRows>> = std::sync::Mutex::new(Vec::new());

/// Which path quantises inputs (no closures: a closure is a function of its own, compiled
/// without the caller's AVX2, where the intrinsics would not inline).
#[derive(Clone, Copy)]
enum Quantizer {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
}

impl Quantizer {
    #[inline(always)]
    fn block(self, values: &[f32; BLOCK], out: &mut [u8; BLOCK]) -> f32 {
        match self {
            Quantizer::Scalar => quantize_block(values, out, OFFSET, |q| q as u8),
            #[cfg(target_arch = "x86_64")]
            Quantizer::Avx2(simd) => avx2::quantize_block(simd, values, out),
        }
    }
}

/// Quantises the rows of group `g` of `x` (`k` wide) into the group's `data` and `scales`;
/// rows past the end of `x` become zero.
#[inline(always)]
fn quantize_group(
    x: &[f32],
    k: usize,
    g: usize,
    data: &mut [u8],
    scales: &mut [f32],
    quantizer: Quantizer,
) {
    let (rows, blocks) = (x.len() / k, k.div_ceil(BLOCK));
    for i in 0..GROUP {
        let r = g * GROUP + i;
        let row = (r < rows).then(|| &x[r * k..(r + 1) * k]);
        for b in 0..blocks {
            let out: &mut [u8; BLOCK] = (&mut data[(b * GROUP + i) * BLOCK..][..BLOCK])
                .try_into()
                .expect("a block");
            let mut values = [0f32; BLOCK];
            if let Some(row) = row {
                let part = &row[b * BLOCK..((b + 1) * BLOCK).min(k)];
                values[..part.len()].copy_from_slice(part);
            }
            scales[b * GROUP + i] = quantizer.block(&values, out);
        }
    }
}

/// `dst (=|+=) x Wᵀ` for `rows` rows of `x` (`w.inputs()` wide): `x` is quantised on the way
/// in, on up to `threads` threads.
pub(crate) fn product_f32(
    x: &[f32],
    rows: usize,
    w: &QuantizedWeight,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    let take = || SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut q = take().unwrap_or_default();
    q.quantize(x, rows, w.k);
    product(&q, w, dst, accumulate, threads);
    SCRATCH.lock().unwrap_or_else(|p| p.into_inner()).push(q);
}

/// `dst (=|+=) x Wᵀ` for the rows quantised in `x`, on up to `threads` threads.
pub(crate) fn product(
    x: &QuantizedRows,
    w: &QuantizedWeight,
    dst: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(x.blocks, w.blocks(), "input and weight have the same k");
    spread(x.rows, w.n, dst, accumulate, threads, |tile| {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return run(x, w, tile, |g, p| {
                avx2::tile(simd, g.data, g.scales, p.data, p.meta)
            });
        }
        run(x, w, tile, scalar_tile)
    });
}

/// One task: every group of the tile's rows against every panel of it, `CHUNK_BYTES` of
/// groups at a time, so the groups stay in L2 while every panel passes over them. (At
/// `k = 3072` a fixed 64 groups were 786 KB, read from L3 once per panel.)
fn run(
    x: &QuantizedRows,
    w: &QuantizedWeight,
    mut tile: Tile<'_>,
    kernel: impl Fn(Group<'_>, Panel<'_>) -> [[f32; NR]; GROUP],
) {
    if x.blocks == 0 {
        // No inputs at all: every sum is zero.
        let zero = [0f32; NR];
        for r in 0..tile.rows.len() {
            for pl in 0..tile.panels.len() {
                tile.write(r, pl, &zero);
            }
        }
        return;
    }
    let (first, end) = (tile.rows.start, tile.rows.end);
    assert_eq!(first % GROUP, 0, "tasks start at a group");
    let groups = first / GROUP..end.div_ceil(GROUP);
    let per_chunk = (CHUNK_BYTES / (x.blocks * GROUP * BLOCK)).max(1);
    for chunk in groups.clone().step_by(per_chunk) {
        let chunk = chunk..(chunk + per_chunk).min(groups.end);
        for pl in 0..tile.panels.len() {
            let panel = w.panel(tile.panels.start + pl);
            for g in chunk.clone() {
                let values = kernel(x.group(g), panel);
                for (i, values) in values.iter().enumerate() {
                    let r = g * GROUP + i;
                    if r < end {
                        tile.write(r - first, pl, values);
                    }
                }
            }
        }
    }
}

/// The integer sums of block `b` for the group's rows: what every path computes exactly.
fn block_sums(group: Group<'_>, panel: Panel<'_>, b: usize) -> [[i32; NR]; GROUP] {
    let mut sums = [panel.meta[b].offsets; GROUP];
    let w = &panel.data[b * BLOCK * NR..(b + 1) * BLOCK * NR];
    for (i, sums) in sums.iter_mut().enumerate() {
        let x = &group.data[(b * GROUP + i) * BLOCK..][..BLOCK];
        for (quad, w) in w.chunks_exact(NR * QUAD).enumerate() {
            let x = &x[quad * QUAD..(quad + 1) * QUAD];
            for (c, w) in w.chunks_exact(QUAD).enumerate() {
                sums[c] += x
                    .iter()
                    .zip(w)
                    .map(|(&a, &b)| a as i32 * b as i32)
                    .sum::<i32>();
            }
        }
    }
    sums
}

/// Plain integer arithmetic: the reference every other path must equal.
fn scalar_tile(group: Group<'_>, panel: Panel<'_>) -> [[f32; NR]; GROUP] {
    let mut total = [[0f32; NR]; GROUP];
    for b in 0..panel.meta.len() {
        let sums = block_sums(group, panel, b);
        for (i, total) in total.iter_mut().enumerate() {
            let sx = group.scales[b * GROUP + i];
            for c in 0..NR {
                total[c] += sums[i][c] as f32 * (panel.meta[b].scales[c] * sx);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The values quantised row `r` stands for.
    fn row_value(x: &QuantizedRows, r: usize, k: usize) -> Vec<f64> {
        let (g, i) = (x.group(r / GROUP), r % GROUP);
        (0..k)
            .map(|kk| {
                let (b, t) = (kk / BLOCK, kk % BLOCK);
                let q = g.data[(b * GROUP + i) * BLOCK + t] as i32 - OFFSET;
                q as f64 * g.scales[b * GROUP + i] as f64
            })
            .collect()
    }

    /// The values the quantised weight's column `j` stands for.
    fn column_value(w: &QuantizedWeight, j: usize) -> Vec<f64> {
        let (panel, c) = (w.panel(j / NR), j % NR);
        (0..w.k)
            .map(|kk| {
                let q = panel.data[(kk / QUAD) * NR * QUAD + c * QUAD + kk % QUAD];
                q as f64 * panel.meta[kk / BLOCK].scales[c] as f64
            })
            .collect()
    }

    fn check(rows: usize, k: usize, n: usize, x: &[f32], w: &[f32]) {
        let qw = QuantizedWeight::new(w, n, k);
        let mut qx = QuantizedRows::default();
        qx.quantize(x, rows, k);
        for threads in [1, 2] {
            for accumulate in [false, true] {
                let mut dst = vec![1f32; rows * n];
                product(&qx, &qw, &mut dst, accumulate, threads);
                for r in 0..rows {
                    let xr = row_value(&qx, r, k);
                    for j in 0..n {
                        let dot: f64 = xr
                            .iter()
                            .zip(column_value(&qw, j))
                            .map(|(a, b)| a * b)
                            .sum();
                        let want = if accumulate { 1.0 + dot } else { dot };
                        let got = dst[r * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "({rows}, {k}, {n}) threads {threads} at ({r}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_product_is_exactly_that_of_the_quantised_values() {
        for (rows, k, n, seed) in [
            (1, 5, 3, 1),
            (7, 37, 33, 2),
            (13, 64, 16, 3),
            (9, 100, 50, 4),
            (600, 40, 17, 5),
        ] {
            check(
                rows,
                k,
                n,
                &pseudo(rows * k, seed),
                &pseudo(n * k, seed + 100),
            );
        }
    }

    #[test]
    fn the_largest_sums_do_not_saturate() {
        // Every value at the top level with the same sign: each 16-bit pair sum and each
        // four-product sum is as large as the format allows.
        let (rows, k, n) = (5, 96, 20);
        let x = vec![3.5f32; rows * k];
        let mut w = vec![-2.0f32; n * k];
        w[..k].fill(2.0);
        check(rows, k, n, &x, &w);
        let x: Vec<f32> = (0..rows * k)
            .map(|i| if i % 2 == 0 { -1.0 } else { 1.0 })
            .collect();
        check(rows, k, n, &x, &w);
    }

    #[test]
    fn quantisation_keeps_products_close_to_f32() {
        let (rows, k, n) = (8, 384, 48);
        let x = pseudo(rows * k, 7);
        let w = pseudo(n * k, 8);
        let qw = QuantizedWeight::new(&w, n, k);
        let mut qx = QuantizedRows::default();
        qx.quantize(&x, rows, k);
        let mut dst = vec![0f32; rows * n];
        product(&qx, &qw, &mut dst, false, 1);
        let (mut err, mut norm) = (0f64, 0f64);
        for r in 0..rows {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|p| x[r * k + p] as f64 * w[j * k + p] as f64)
                    .sum();
                err += (dst[r * n + j] as f64 - exact).powi(2);
                norm += exact * exact;
            }
        }
        let relative = (err / norm).sqrt();
        assert!(relative < 0.03, "relative error {relative}");
    }

    #[test]
    fn zero_rows_and_empty_inputs_give_zero() {
        let (rows, k, n) = (3, 64, 16);
        let qw = QuantizedWeight::new(&pseudo(n * k, 9), n, k);
        let mut qx = QuantizedRows::default();
        qx.quantize(&vec![0.0; rows * k], rows, k);
        let mut dst = vec![5f32; rows * n];
        product(&qx, &qw, &mut dst, false, 2);
        assert!(dst.iter().all(|&v| v == 0.0));
        let mut qx = QuantizedRows::default();
        qx.quantize(&[], 0, k);
        product(&qx, &qw, &mut [], false, 2);
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        for (v, want) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, 0.0),
            (-1.5, -2.0),
            (62.6, 63.0),
            (-0.49, 0.0),
        ] {
            assert_eq!(round(v), want, "{v}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_agrees_with_the_scalar_path() {
        let Some(simd) = pulp::x86::V3::try_new() else {
            eprintln!("skipped: this machine has no AVX2; the scalar path ran the other tests");
            return;
        };
        let k = 5 * BLOCK;
        let mut qx = QuantizedRows::default();
        qx.quantize(&pseudo(GROUP * k, 11), GROUP, k);
        let w = QuantizedWeight::new(&pseudo(NR * k, 12), NR, k);
        let (g, p) = (qx.group(0), w.panel(0));
        let scalar = scalar_tile(g, p);
        let avx2 = avx2::tile(simd, g.data, g.scales, p.data, p.meta);
        for (s, a) in scalar.iter().flatten().zip(avx2.iter().flatten()) {
            assert!((s - a).abs() <= 1e-5 * s.abs().max(1.0), "{s} vs {a}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_quantises_to_the_same_bytes_as_the_scalar_path() {
        let Some(simd) = pulp::x86::V3::try_new() else {
            eprintln!("skipped: this machine has no AVX2");
            return;
        };
        let mut blocks: Vec<[f32; BLOCK]> = (0..50)
            .map(|s| {
                let v = pseudo(BLOCK, s);
                std::array::from_fn(|i| v[i] * (s as f32 + 0.5))
            })
            .collect();
        blocks.push([0.0; BLOCK]);
        blocks.push(std::array::from_fn(|i| if i == 3 { -7.0 } else { 0.0 }));
        blocks.push(std::array::from_fn(|i| i as f32 - 15.5));
        blocks.push(std::array::from_fn(|i| {
            if i == 9 { f32::INFINITY } else { 1.0 }
        }));
        blocks.push(std::array::from_fn(
            |i| if i == 30 { f32::NAN } else { 2.0 },
        ));
        // So small that LEVEL / max overflows to infinity.
        blocks.push(std::array::from_fn(|i| (i as f32 - 15.0) * 1e-39));
        blocks.push(std::array::from_fn(|i| if i == 4 { -3e-45 } else { 0.0 }));
        blocks.push(std::array::from_fn(|i| {
            if i % 2 == 0 { 1.0e-38 } else { -0.5e-38 }
        }));
        for v in &blocks {
            let (mut a, mut b) = ([0u8; BLOCK], [0u8; BLOCK]);
            let sa = quantize_block(v, &mut a, OFFSET, |q| q as u8);
            let sb = simd.vectorize(|| avx2::quantize_block(simd, v, &mut b));
            assert_eq!(a, b, "{v:?}");
            assert!(sa == sb || (sa.is_nan() && sb.is_nan()), "{sa} vs {sb}");
        }
    }

    #[test]
    #[ignore = "prints the kernel's rate; run with --ignored --nocapture"]
    fn rate() {
        let (rows, k, n) = (1600, 768, 3072);
        let x = pseudo(rows * k, 1);
        let w = pseudo(n * k, 2);
        let qw = QuantizedWeight::new(&w, n, k);
        let pw = super::super::packed::Packed::new(&w, n, k);
        let mut qx = QuantizedRows::default();
        let mut dst = vec![0f32; rows * n];
        for threads in [1, 2] {
            for _ in 0..3 {
                let t = std::time::Instant::now();
                qx.quantize(&x, rows, k);
                let quantize = t.elapsed().as_secs_f64();
                product(&qx, &qw, &mut dst, false, threads);
                let int8 = t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                super::super::packed::product(&x, rows, &pw, &mut dst, false, threads);
                let f32 = t.elapsed().as_secs_f64();
                let macs = (rows * k * n) as f64;
                eprintln!(
                    "threads {threads}: int8 {:.1} GMAC/s (quantising {:.1} ms), f32 {:.1} GMAC/s",
                    macs / int8 / 1e9,
                    quantize * 1e3,
                    macs / f32 / 1e9
                );
            }
        }
    }
}
