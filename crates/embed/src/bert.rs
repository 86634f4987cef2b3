//! BERT's encoder on the CPU with our own forward pass (`crate::cpu`), shaped like the
//! checkpoint (`embeddings.*`, `encoder.layer.N.*`), for sentence embeddings: mean pooling
//! over each text's tokens, then L2 normalisation.
//!
//! Paper: Devlin et al., <https://arxiv.org/abs/1810.04805>. Reference implementation:
//! `transformers.BertModel` (`modeling_bert.py`) with `sentence_transformers.models.Pooling`.
//! Texts are packed end to end instead of padded: each attends only to its own tokens, which
//! is what the reference's attention mask achieves, and no dense layer spends work on padding.

use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct, PositionEmbeddingType};

use crate::Precision;
use crate::cpu::Packing;
use crate::cpu::layer::{Activation, Buffers, Layer, Names, Shape};
use crate::cpu::math;
use crate::cpu::weights::{LayerNorm, Weights};

const NAMES: Names = Names {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    out: "attention.output.dense",
    norm1: "attention.output.LayerNorm",
    up: "intermediate.dense",
    down: "output.dense",
    norm2: "output.LayerNorm",
};

/// One text's token ids and token type ids (equal lengths).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenRow<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

#[derive(Debug)]
pub(crate) struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    shape: Shape,
    vocab: usize,
    positions: usize,
    types: usize,
    buffers: Buffers,
    threads: usize,
}

impl Bert {
    /// Whether this forward pass runs `config` (candle's runs the rest).
    pub fn supports(config: &Config) -> bool {
        matches!(config.hidden_act, HiddenAct::Gelu)
            && matches!(
                config.position_embedding_type,
                PositionEmbeddingType::Absolute
            )
    }

    /// The encoder under `bert.` (or at the top level, as sentence-transformers saves it).
    pub fn load(
        vb: VarBuilder<'_>,
        config: &Config,
        precision: Precision,
    ) -> candle_core::Result<Bert> {
        let root = Weights::new(vb, precision);
        let root = if root.contains("bert.embeddings.word_embeddings.weight") {
            root.pp("bert")
        } else {
            root
        };
        let h = config.hidden_size;
        let emb = root.pp("embeddings");
        let shape = Shape {
            hidden: h,
            heads: config.num_attention_heads,
            intermediate: config.intermediate_size,
            activation: Activation::Gelu,
            causal: false,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                Layer::load(
                    &root.pp(format!("encoder.layer.{i}")),
                    &NAMES,
                    &shape,
                    config.layer_norm_eps,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert {
            word: emb
                .pp("word_embeddings")
                .get(&[config.vocab_size, h], "weight")?,
            position: emb
                .pp("position_embeddings")
                .get(&[config.max_position_embeddings, h], "weight")?,
            token_type: emb
                .pp("token_type_embeddings")
                .get(&[config.type_vocab_size, h], "weight")?,
            embed_norm: LayerNorm::load(&emb.pp("LayerNorm"), h, config.layer_norm_eps)?,
            layers,
            shape,
            vocab: config.vocab_size,
            positions: config.max_position_embeddings,
            types: config.type_vocab_size,
            buffers: Buffers::default(),
            threads: rayon::current_num_threads(),
        })
    }

    /// Mean-pooled, L2-normalised embeddings, one per row.
    pub fn embed(&mut self, rows: &[TokenRow<'_>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let h = self.shape.hidden;
        for (i, row) in rows.iter().enumerate() {
            if row.ids.is_empty()
                || row.ids.len() > self.positions
                || row.ids.len() != row.type_ids.len()
            {
                candle_core::bail!(
                    "text {i} has {} tokens; 1 to {} fit",
                    row.ids.len(),
                    self.positions
                );
            }
            if let Some(id) = row.ids.iter().find(|&&id| id as usize >= self.vocab) {
                candle_core::bail!(
                    "text {i} has token id {id}, outside the vocabulary of {}",
                    self.vocab
                );
            }
            if let Some(t) = row.type_ids.iter().find(|&&t| t as usize >= self.types) {
                candle_core::bail!("text {i} has token type {t}; the model has {}", self.types);
            }
        }
        let packing = Packing::from_lengths(rows.iter().map(|r| r.ids.len()));
        let t = packing.tokens();
        let mut x = std::mem::take(&mut self.buffers.x);
        let xs = crate::cpu::scratch(&mut x, t * h);
        for (row, &(start, _)) in rows.iter().zip(&packing.spans) {
            for (p, (&id, &tt)) in row.ids.iter().zip(row.type_ids).enumerate() {
                let dst = &mut xs[(start + p) * h..(start + p + 1) * h];
                let w = &self.word[id as usize * h..][..h];
                let pos = &self.position[p * h..][..h];
                let ty = &self.token_type[tt as usize * h..][..h];
                for (((d, &a), &b), &c) in dst.iter_mut().zip(w).zip(pos).zip(ty) {
                    *d = a + b + c;
                }
            }
        }
        let norm = self.embed_norm.norm();
        crate::cpu::layer::par_rows(xs, h, self.threads, |r| {
            math::bias_layer_norm(r, None, norm)
        });
        for layer in &self.layers {
            layer.post_norm(xs, &packing, &self.shape, &mut self.buffers, self.threads);
        }
        let mut pooled = vec![0f32; rows.len() * h];
        for (out, &(start, len)) in pooled.chunks_exact_mut(h).zip(&packing.spans) {
            for token in xs[start * h..(start + len) * h].chunks_exact(h) {
                for (o, &v) in out.iter_mut().zip(token) {
                    *o += v;
                }
            }
            let inv = 1.0 / len as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        }
        self.buffers.x = x;
        math::l2_normalize(&mut pooled, h);
        Ok(pooled.chunks_exact(h).map(<[f32]>::to_vec).collect())
    }
}
