//! The CPU forward pass: plain `f32` buffers, the `gemm` crate for every product, and our own
//! fused element-wise kernels, instead of one candle tensor (and one allocation) per op.
//!
//! Why own it: candle runs each op as its own pass over a fresh buffer, computes GELU's `erf`
//! one scalar at a time and pads every text of a batch to the longest. Here texts are packed
//! end to end (no padding reaches a dense layer; attention runs per text), bias, activation,
//! residual and layer norm are fused into the passes the products already need, and
//! activation buffers are reused across calls. The element-wise kernels are written as plain
//! loops inlined into [`pulp`]'s run-time dispatch, so they run as AVX-512, AVX2+FMA, NEON or
//! scalar code, whichever the machine has.
//!
//! The model files (`bert.rs`, `clip_towers.rs`) are shaped like their checkpoints; this
//! folder holds what they share.

pub(crate) mod attention;
pub(crate) mod int8;
pub(crate) mod layer;
pub(crate) mod linear;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod packed;
pub(crate) mod weights;

/// Where each packed sequence starts and how long it is, in rows of a `(tokens, width)`
/// activation buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Packing {
    /// `(first row, length)` per sequence, in order, without gaps.
    pub spans: Vec<(usize, usize)>,
}

impl Packing {
    pub fn from_lengths(lengths: impl IntoIterator<Item = usize>) -> Packing {
        let mut start = 0;
        let spans = lengths
            .into_iter()
            .map(|len| {
                let span = (start, len);
                start += len;
                span
            })
            .collect();
        Packing { spans }
    }

    /// All rows together.
    pub fn tokens(&self) -> usize {
        self.spans.last().map_or(0, |(s, l)| s + l)
    }
}

/// Grows `buf` to `len` floats (never shrinks it, so the next call of the same size touches
/// no new pages) and returns that prefix.
pub(crate) fn scratch(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
