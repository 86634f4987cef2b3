//! Sentence embeddings from a BERT encoder: mean pooling over the attention mask, then L2
//! normalisation, as sentence-transformers does for all-MiniLM-L6-v2.
//!
//! Reference: <https://www.sbert.net/> and
//! `sentence_transformers/models/Pooling.py`. On the CPU the encoder is our own forward pass
//! ([`crate::bert`]); on a GPU, or for a configuration that pass does not cover, it is
//! `candle_transformers::models::bert` (BERT, <https://arxiv.org/abs/1810.04805>).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert::{Bert, TokenRow};
use crate::checkpoint::{config_error, read_config, read_weights};
use crate::l2::normalize_rows;
use crate::{EmbedError, Encoder, Manifest, Precision};

/// Which forward pass runs the encoder.
enum Backend {
    /// Ours, on plain buffers, texts packed without padding.
    Cpu(Box<Bert>),
    /// candle's, on padded batches (GPU devices).
    Candle(Box<BertModel>),
}

/// A loaded BERT sentence encoder.
pub struct SentenceEncoder {
    slug: String,
    model: Backend,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder")
            .field("slug", &self.slug)
            .field("device", &self.device)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl SentenceEncoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(manifest: &Manifest, dir: &Path, device: &Device) -> Result<Self, EmbedError> {
        let slug = manifest.slug.clone();
        let model_err = |source| EmbedError::Model {
            slug: slug.clone(),
            source,
        };
        let config: Config = read_config(dir)?;
        if config.hidden_size != manifest.dimensions {
            return Err(config_error(
                dir,
                format!(
                    "hidden_size is {}, but the manifest of {slug} says dimensions {}",
                    config.hidden_size, manifest.dimensions
                ),
            ));
        }
        let precision = manifest.precision;
        let ours = device.is_cpu() && Bert::supports(&config);
        if precision != Precision::Fp32 && !ours {
            return Err(EmbedError::PrecisionUnsupported {
                slug,
                precision,
                reason: "only our CPU forward pass quantises, and it does not run this device \
                         or configuration; use fp32"
                    .into(),
            });
        }
        let vb = read_weights(&slug, dir, device)?;
        let model = if ours {
            Backend::Cpu(Box::new(
                Bert::load(vb, &config, precision).map_err(model_err)?,
            ))
        } else {
            Backend::Candle(Box::new(BertModel::load(vb, &config).map_err(model_err)?))
        };

        let tok_err = |reason: String| EmbedError::Tokenizer {
            slug: slug.clone(),
            reason,
        };
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| tok_err(e.to_string()))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: manifest.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        // Our forward pass packs texts end to end; candle's needs them padded.
        if let Backend::Candle(_) = model {
            tokenizer.with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::BatchLongest,
                pad_id,
                pad_token: "[PAD]".into(),
                ..PaddingParams::default()
            }));
        } else {
            tokenizer.with_padding(None);
        }
        Ok(SentenceEncoder {
            slug,
            model,
            tokenizer,
            device: device.clone(),
            dimensions: manifest.dimensions,
        })
    }

    fn forward(&mut self, texts: &[String]) -> candle_core::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(candle_core::Error::msg)?;
        let model = match &mut self.model {
            Backend::Cpu(bert) => {
                let rows: Vec<TokenRow<'_>> = encodings
                    .iter()
                    .map(|e| TokenRow {
                        ids: e.get_ids(),
                        type_ids: e.get_type_ids(),
                    })
                    .collect();
                return bert.embed(&rows);
            }
            Backend::Candle(model) => model,
        };
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> candle_core::Result<Tensor> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)
        };
        let ids = rows(&|e| e.get_ids())?;
        let type_ids = rows(&|e| e.get_type_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        normalize_rows(&summed.broadcast_div(&counts)?)
    }
}

impl Encoder for SentenceEncoder {
    fn slug(&self) -> &str {
        &self.slug
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(texts).map_err(|source| EmbedError::Model {
            slug: self.slug.clone(),
            source,
        })
    }
}
