//! One transformer encoder layer, in the two arrangements our checkpoints use: post-norm
//! (BERT: `x = LN(x + attn(x))`, `x = LN(x + mlp(x))`) and pre-norm (CLIP:
//! `x = x + attn(LN(x))`, `x = x + mlp(LN(x))`).
//!
//! Each product is followed by one fused pass: the bias, the activation, the residual (the
//! product accumulates onto it) and the next layer norm happen while the rows are in cache.

use rayon::prelude::*;

use super::attention::self_attention;
use super::linear::Linear;
use super::math::{self, Norm};
use super::matmul::Output;
use super::weights::{LayerNorm, Weights};
use super::{Packing, scratch};

/// Rows per parallel task are at least this many floats: below it, a hand-off costs more than
/// it saves.
const MIN_PARALLEL_FLOATS: usize = 16 * 1024;

/// The MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// The exact GELU (BERT).
    Gelu,
    /// `x σ(1.702 x)` (CLIP).
    QuickGelu,
}

/// The shape of a layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
    pub causal: bool,
}

/// The weights of one layer; the names are the checkpoint's, given by the caller.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    qkv: Linear,
    out: Linear,
    norm1: LayerNorm,
    up: Linear,
    down: Linear,
    norm2: LayerNorm,
}

/// Where a layer's tensors sit in its checkpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub out: &'static str,
    pub norm1: &'static str,
    pub up: &'static str,
    pub down: &'static str,
    pub norm2: &'static str,
}

impl Layer {
    pub fn load(
        w: &Weights<'_>,
        names: &Names,
        shape: &Shape,
        eps: f64,
    ) -> candle_core::Result<Self> {
        let (h, i) = (shape.hidden, shape.intermediate);
        let qkv = Linear::stacked(w, &[names.query, names.key, names.value], h, h, true)?;
        Ok(Layer {
            qkv,
            out: Linear::load(&w.pp(names.out), h, h, true)?,
            norm1: LayerNorm::load(&w.pp(names.norm1), h, eps)?,
            up: Linear::load(&w.pp(names.up), h, i, true)?,
            down: Linear::load(&w.pp(names.down), i, h, true)?,
            norm2: LayerNorm::load(&w.pp(names.norm2), h, eps)?,
        })
    }

    /// The bias of the last product, which a pre-norm layer leaves for the next pass to add.
    pub fn down_bias(&self) -> &[f32] {
        self.down.bias()
    }

    /// A post-norm (BERT) layer on `x` (`tokens x hidden`), in place.
    pub fn post_norm(
        &self,
        x: &mut [f32],
        packing: &Packing,
        shape: &Shape,
        buf: &mut Buffers,
        threads: usize,
    ) {
        let (t, h) = (packing.tokens(), shape.hidden);
        let ctx = self.attend(x, packing, shape, buf, threads);
        self.out.product(ctx, t, x, Output::Accumulate, threads);
        let norm1 = self.norm1.norm();
        par_rows(x, h, threads, |rows| {
            math::bias_layer_norm(rows, Some(self.out.bias()), norm1)
        });
        let up = self.expand(x, t, shape, &mut buf.up, threads);
        self.down.product(up, t, x, Output::Accumulate, threads);
        let norm2 = self.norm2.norm();
        par_rows(x, h, threads, |rows| {
            math::bias_layer_norm(rows, Some(self.down.bias()), norm2)
        });
    }

    /// A pre-norm (CLIP) layer on the residual `x`, in place. `pending` is the bias the
    /// previous layer left to add to `x` (none before the first layer); this layer leaves its
    /// own, [`Layer::down_bias`].
    pub fn pre_norm(
        &self,
        x: &mut [f32],
        pending: Option<&[f32]>,
        packing: &Packing,
        shape: &Shape,
        buf: &mut Buffers,
        threads: usize,
    ) {
        let (t, h) = (packing.tokens(), shape.hidden);
        let mut normed = std::mem::take(&mut buf.normed);
        let n = scratch(&mut normed, t * h);
        norm_rows(x, pending, n, self.norm1.norm(), threads);
        let ctx = self.attend(n, packing, shape, buf, threads);
        self.out.product(ctx, t, x, Output::Accumulate, threads);
        norm_rows(x, Some(self.out.bias()), n, self.norm2.norm(), threads);
        let up = self.expand(n, t, shape, &mut buf.up, threads);
        self.down.product(up, t, x, Output::Accumulate, threads);
        buf.normed = normed;
    }

    /// Self-attention of `input` (`tokens x hidden`): the fused QKV product with its bias,
    /// then every sequence's heads, into `buf.ctx`, which is returned (before the output
    /// product, which the caller accumulates onto its residual).
    fn attend<'b>(
        &self,
        input: &[f32],
        packing: &Packing,
        shape: &Shape,
        buf: &'b mut Buffers,
        threads: usize,
    ) -> &'b mut [f32] {
        let (t, h) = (packing.tokens(), shape.hidden);
        let qkv = scratch(&mut buf.qkv, t * 3 * h);
        self.qkv.product(input, t, qkv, Output::Overwrite, threads);
        par_rows(qkv, 3 * h, threads, |rows| {
            math::add_bias(rows, self.qkv.bias())
        });
        let ctx = scratch(&mut buf.ctx, t * h);
        self_attention(qkv, ctx, packing, h, shape.heads, shape.causal);
        ctx
    }

    /// The MLP's first product and activation on `rows` rows of `input`, into `up`, which is
    /// returned (before the second product, which the caller accumulates onto its residual).
    fn expand<'b>(
        &self,
        input: &[f32],
        rows: usize,
        shape: &Shape,
        up: &'b mut Vec<f32>,
        threads: usize,
    ) -> &'b mut [f32] {
        let up = scratch(up, rows * shape.intermediate);
        self.up.product(input, rows, up, Output::Overwrite, threads);
        activate(up, self.up.bias(), shape, threads);
        up
    }
}

/// `x += pending` (when there is one), then `dst = LN(x)`, row by row.
pub(crate) fn norm_rows(
    x: &mut [f32],
    pending: Option<&[f32]>,
    dst: &mut [f32],
    norm: Norm<'_>,
    threads: usize,
) {
    let w = norm.gamma.len();
    par_rows2(x, dst, w, threads, |x, dst| match pending {
        Some(bias) => math::bias_then_layer_norm(x, bias, dst, norm),
        None => math::layer_norm(x, dst, norm),
    });
}

fn activate(up: &mut [f32], bias: &[f32], shape: &Shape, threads: usize) {
    par_rows(up, shape.intermediate, threads, |rows| {
        match shape.activation {
            Activation::Gelu => math::bias_gelu(rows, bias),
            Activation::QuickGelu => math::bias_quick_gelu(rows, bias),
        }
    });
}

/// Activation buffers, kept between calls so a batch of the same size touches no new pages.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    pub x: Vec<f32>,
    pub normed: Vec<f32>,
    pub qkv: Vec<f32>,
    pub ctx: Vec<f32>,
    pub up: Vec<f32>,
}

fn rows_per_task(rows: usize, width: usize, threads: usize) -> usize {
    let min_rows = MIN_PARALLEL_FLOATS.div_ceil(width.max(1));
    rows.div_ceil(threads.max(1)).max(min_rows).max(1)
}

/// `f` on blocks of whole `width`-wide rows of `x`, in parallel when there is enough work.
pub(crate) fn par_rows(x: &mut [f32], width: usize, threads: usize, f: impl Fn(&mut [f32]) + Sync) {
    let rows = x.len() / width;
    let per = rows_per_task(rows, width, threads);
    if per >= rows {
        f(x);
    } else {
        x.par_chunks_mut(per * width).for_each(&f);
    }
}

/// `f` on matching blocks of rows of `x` and `y` (both `width` wide).
pub(crate) fn par_rows2(
    x: &mut [f32],
    y: &mut [f32],
    width: usize,
    threads: usize,
    f: impl Fn(&mut [f32], &mut [f32]) + Sync,
) {
    let rows = x.len() / width;
    let per = rows_per_task(rows, width, threads);
    if per >= rows {
        f(x, &mut y[..x.len()]);
    } else {
        x.par_chunks_mut(per * width)
            .zip(y.par_chunks_mut(per * width))
            .for_each(|(x, y)| f(x, y));
    }
}
