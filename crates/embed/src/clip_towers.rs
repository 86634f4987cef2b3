//! CLIP's text and image towers on the CPU with our own forward pass (`crate::cpu`), shaped
//! like the checkpoint (`text_model.*`, `vision_model.*`, `text_projection`,
//! `visual_projection`), each ending in its projection and L2 normalisation.
//!
//! Reference: `transformers.models.clip.modeling_clip` (`CLIPTextTransformer`,
//! `CLIPVisionTransformer`). Texts are packed without padding: the causal mask already keeps a
//! token from seeing anything after it, so each text runs at its own length. The patch
//! convolution (kernel = stride = patch) is one product over the unfolded patches.

use std::sync::Mutex;

use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::ClipTextConfig;
use candle_transformers::models::clip::vision_model::ClipVisionConfig;
use rayon::prelude::*;

use crate::Precision;
use crate::cpu::layer::{Activation, Buffers, Layer, Names, Shape, par_rows};
use crate::cpu::linear::Linear;
use crate::cpu::matmul::Output;
use crate::cpu::weights::{LayerNorm, Weights};
use crate::cpu::{Packing, math, scratch};

const NAMES: Names = Names {
    query: "self_attn.q_proj",
    key: "self_attn.k_proj",
    value: "self_attn.v_proj",
    out: "self_attn.out_proj",
    norm1: "layer_norm1",
    up: "mlp.fc1",
    down: "mlp.fc2",
    norm2: "layer_norm2",
};

const EPS: f64 = 1e-5;

fn layers(w: &Weights<'_>, count: usize, shape: &Shape) -> candle_core::Result<Vec<Layer>> {
    (0..count)
        .map(|i| Layer::load(&w.pp(format!("encoder.layers.{i}")), &NAMES, shape, EPS))
        .collect()
}

/// Runs the pre-norm layers on `x` and returns the bias the last one left to add.
fn encode<'l>(
    layers: &'l [Layer],
    x: &mut [f32],
    packing: &Packing,
    shape: &Shape,
    buffers: &mut Buffers,
    threads: usize,
) -> Option<&'l [f32]> {
    let mut pending = None;
    for layer in layers {
        layer.pre_norm(x, pending, packing, shape, buffers, threads);
        pending = Some(layer.down_bias());
    }
    pending
}

/// The final norm of the pooled rows (`rows[i]` of `x`), their projection, and L2
/// normalisation.
fn pool_and_project(
    x: &[f32],
    rows: impl Iterator<Item = usize>,
    pending: Option<&[f32]>,
    norm: &LayerNorm,
    projection: &Linear,
    hidden: usize,
) -> Vec<Vec<f32>> {
    let mut pooled: Vec<f32> = rows
        .flat_map(|r| x[r * hidden..(r + 1) * hidden].iter().copied())
        .collect();
    let n = pooled.len() / hidden;
    math::bias_layer_norm(&mut pooled, pending, norm.norm());
    let dims = projection.outputs();
    let mut out = vec![0f32; n * dims];
    projection.product(&pooled, n, &mut out, Output::Overwrite, 1);
    math::l2_normalize(&mut out, dims);
    out.chunks_exact(dims).map(<[f32]>::to_vec).collect()
}

/// One text for the tower: its token ids (no padding) and where its feature is read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextRow<'a> {
    pub ids: &'a [u32],
    pub feature_position: usize,
}

#[derive(Debug)]
pub(crate) struct TextTower {
    token: Vec<f32>,
    position: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    projection: Linear,
    shape: Shape,
    vocab: usize,
    positions: usize,
    buffers: Mutex<Buffers>,
    threads: usize,
}

impl TextTower {
    /// `text_model.*` and `text_projection` under `vb`.
    pub fn load(
        vb: VarBuilder<'_>,
        c: &ClipTextConfig,
        projection_dim: usize,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let root = Weights::new(vb, precision);
        let w = root.pp("text_model");
        let h = c.embed_dim;
        let shape = Shape {
            hidden: h,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            activation: Activation::QuickGelu,
            causal: true,
        };
        Ok(TextTower {
            token: w
                .pp("embeddings.token_embedding")
                .get(&[c.vocab_size, h], "weight")?,
            position: w
                .pp("embeddings.position_embedding")
                .get(&[c.max_position_embeddings, h], "weight")?,
            layers: layers(&w, c.num_hidden_layers, &shape)?,
            final_norm: LayerNorm::load(&w.pp("final_layer_norm"), h, EPS)?,
            projection: Linear::load(&root.pp("text_projection"), h, projection_dim, false)?,
            shape,
            vocab: c.vocab_size,
            positions: c.max_position_embeddings,
            buffers: Mutex::new(Buffers::default()),
            threads: rayon::current_num_threads(),
        })
    }

    pub fn embed(&self, rows: &[TextRow<'_>]) -> candle_core::Result<Vec<Vec<f32>>> {
        for (i, row) in rows.iter().enumerate() {
            let len = row.ids.len();
            if len == 0 || len > self.positions || row.feature_position >= len {
                candle_core::bail!(
                    "text {i} has {len} tokens (feature at {}); 1 to {} fit",
                    row.feature_position,
                    self.positions
                );
            }
            if let Some(id) = row.ids.iter().find(|&&id| id as usize >= self.vocab) {
                candle_core::bail!(
                    "text {i} has token id {id}, outside the vocabulary of {}",
                    self.vocab
                );
            }
        }
        let h = self.shape.hidden;
        let packing = Packing::from_lengths(rows.iter().map(|r| r.ids.len()));
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = std::mem::take(&mut buffers.x);
        let xs = scratch(&mut x, packing.tokens() * h);
        for (row, &(start, _)) in rows.iter().zip(&packing.spans) {
            for (p, &id) in row.ids.iter().enumerate() {
                let dst = &mut xs[(start + p) * h..(start + p + 1) * h];
                let tok = &self.token[id as usize * h..][..h];
                let pos = &self.position[p * h..][..h];
                for ((d, &a), &b) in dst.iter_mut().zip(tok).zip(pos) {
                    *d = a + b;
                }
            }
        }
        let pending = encode(
            &self.layers,
            xs,
            &packing,
            &self.shape,
            &mut buffers,
            self.threads,
        );
        let features = rows
            .iter()
            .zip(&packing.spans)
            .map(|(row, &(start, _))| start + row.feature_position);
        let out = pool_and_project(xs, features, pending, &self.final_norm, &self.projection, h);
        buffers.x = x;
        Ok(out)
    }
}

#[derive(Debug)]
pub(crate) struct VisionTower {
    patch: Linear,
    class: Vec<f32>,
    position: Vec<f32>,
    pre_norm: LayerNorm,
    layers: Vec<Layer>,
    post_norm: LayerNorm,
    projection: Linear,
    shape: Shape,
    image_size: usize,
    patch_size: usize,
    channels: usize,
    buffers: Mutex<(Buffers, Vec<f32>, Vec<f32>)>,
    threads: usize,
}

impl VisionTower {
    /// `vision_model.*` and `visual_projection` under `vb`.
    pub fn load(
        vb: VarBuilder<'_>,
        c: &ClipVisionConfig,
        projection_dim: usize,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        let root = Weights::new(vb, precision);
        let w = root.pp("vision_model");
        let h = c.embed_dim;
        let (ch, p) = (c.num_channels, c.patch_size);
        let grid = c.image_size / p;
        let shape = Shape {
            hidden: h,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            activation: Activation::QuickGelu,
            causal: false,
        };
        let patch = w
            .pp("embeddings.patch_embedding")
            .get(&[h, ch, p, p], "weight")?;
        Ok(VisionTower {
            patch: Linear::from_weight(&patch, ch * p * p, h, precision),
            class: w.pp("embeddings").get(&[h], "class_embedding")?,
            position: w
                .pp("embeddings.position_embedding")
                .get(&[grid * grid + 1, h], "weight")?,
            pre_norm: LayerNorm::load(&w.pp("pre_layrnorm"), h, EPS)?,
            layers: layers(&w, c.num_hidden_layers, &shape)?,
            post_norm: LayerNorm::load(&w.pp("post_layernorm"), h, EPS)?,
            projection: Linear::load(&root.pp("visual_projection"), h, projection_dim, false)?,
            shape,
            image_size: c.image_size,
            patch_size: p,
            channels: ch,
            buffers: Mutex::new((Buffers::default(), Vec::new(), Vec::new())),
            threads: rayon::current_num_threads(),
        })
    }

    /// Embeddings of `n` preprocessed pictures, `(n, channels, size, size)` row-major.
    pub fn embed(&self, pixels: &[f32], n: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let (s, p, c, h) = (
            self.image_size,
            self.patch_size,
            self.channels,
            self.shape.hidden,
        );
        if pixels.len() != n * c * s * s {
            candle_core::bail!("{} floats for {n} pictures of {c}x{s}x{s}", pixels.len());
        }
        let grid = s / p;
        let per_image = grid * grid;
        let seq = per_image + 1;
        let mut guard = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let (buffers, patches, embedded) = &mut *guard;
        // Unfold: one row per patch, its values in the kernel's (channel, y, x) order.
        let k = c * p * p;
        let patches = scratch(patches, n * per_image * k);
        patches
            .par_chunks_mut(per_image * k)
            .enumerate()
            .for_each(|(b, image_rows)| {
                let image = &pixels[b * c * s * s..(b + 1) * c * s * s];
                for (i, row) in image_rows.chunks_exact_mut(k).enumerate() {
                    let (py, px) = (i / grid, i % grid);
                    for ch in 0..c {
                        for ky in 0..p {
                            let src = &image[ch * s * s + (py * p + ky) * s + px * p..][..p];
                            row[(ch * p + ky) * p..][..p].copy_from_slice(src);
                        }
                    }
                }
            });
        let embedded = scratch(embedded, n * per_image * h);
        self.patch.product(
            patches,
            n * per_image,
            embedded,
            Output::Overwrite,
            self.threads,
        );
        let mut x = std::mem::take(&mut buffers.x);
        let xs = scratch(&mut x, n * seq * h);
        for (b, rows) in xs.chunks_exact_mut(seq * h).enumerate() {
            for (t, row) in rows.chunks_exact_mut(h).enumerate() {
                let src = if t == 0 {
                    &self.class[..]
                } else {
                    &embedded[(b * per_image + t - 1) * h..][..h]
                };
                for ((d, &a), &e) in row.iter_mut().zip(src).zip(&self.position[t * h..][..h]) {
                    *d = a + e;
                }
            }
        }
        let pre = self.pre_norm.norm();
        par_rows(xs, h, self.threads, |rows| {
            math::bias_layer_norm(rows, None, pre)
        });
        let packing = Packing::from_lengths(std::iter::repeat_n(seq, n));
        let pending = encode(
            &self.layers,
            xs,
            &packing,
            &self.shape,
            buffers,
            self.threads,
        );
        let out = pool_and_project(
            xs,
            (0..n).map(|b| b * seq),
            pending,
            &self.post_norm,
            &self.projection,
            h,
        );
        buffers.x = x;
        Ok(out)
    }
}
