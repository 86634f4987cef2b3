//! CLIP's image and text towers with their projections into one L2-normalised space.
//!
//! Paper: Radford et al., "Learning Transferable Visual Models From Natural Language
//! Supervision" (<https://arxiv.org/abs/2103.00020>). Reference implementation:
//! `transformers.CLIPModel` (`get_text_features`, `get_image_features`). On the CPU the towers
//! are our own forward pass ([`crate::clip_towers`]); on a GPU they are
//! `candle_transformers::models::clip`. This module reads the Hugging Face `config.json`, pools
//! the text feature at the first end token (as transformers does, also in padded batches), and
//! applies the projections and normalisation.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;

use crate::checkpoint::{config_error, read_config, read_weights};
use crate::clip_towers::{TextRow, TextTower, VisionTower};
use crate::l2::normalize_rows;
use crate::{ClipTokenizer, EmbedError, Encoder, Manifest, Precision};

/// The parts of a Hugging Face CLIP `config.json` that shape the model.
#[derive(Debug, Deserialize)]
struct HfConfig {
    projection_dim: usize,
    text_config: HfTower,
    vision_config: HfTower,
}

#[derive(Debug, Deserialize)]
struct HfTower {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "layer_norm_eps")]
    layer_norm_eps: f64,
    // text only
    #[serde(default)]
    vocab_size: Option<usize>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    // vision only
    #[serde(default)]
    image_size: Option<usize>,
    #[serde(default)]
    patch_size: Option<usize>,
    #[serde(default)]
    num_channels: Option<usize>,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}

fn layer_norm_eps() -> f64 {
    1e-5
}

/// Which forward pass runs the towers.
enum Towers {
    /// Ours, on plain buffers (CPU).
    Cpu {
        text: Box<TextTower>,
        vision: Box<VisionTower>,
    },
    /// candle's (GPU devices).
    Candle {
        text: Box<ClipTextTransformer>,
        text_projection: Linear,
        vision: Box<ClipVisionTransformer>,
        visual_projection: Linear,
    },
}

/// A loaded CLIP model: both towers, both projections, and its tokenizer.
pub struct ClipEncoder {
    slug: String,
    towers: Towers,
    tokenizer: ClipTokenizer,
    device: Device,
    dimensions: usize,
    image_size: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for ClipEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipEncoder")
            .field("slug", &self.slug)
            .field("dimensions", &self.dimensions)
            .field("image_size", &self.image_size)
            .finish_non_exhaustive()
    }
}

impl ClipEncoder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`.
    pub fn load(manifest: &Manifest, dir: &Path, device: &Device) -> Result<Self, EmbedError> {
        let slug = manifest.slug.clone();
        let invalid = |reason: String| config_error(dir, reason);
        let config: HfConfig = read_config(dir)?;
        let (text_config, vision_config) = tower_configs(&config).map_err(invalid)?;
        if config.projection_dim != manifest.dimensions {
            return Err(invalid(format!(
                "projection_dim is {}, but the manifest of {slug} says dimensions {}",
                config.projection_dim, manifest.dimensions
            )));
        }
        check_precision(&slug, manifest.precision, device)?;
        let vb = read_weights(&slug, dir, device)?;
        let model_err = |source| EmbedError::Model {
            slug: slug.clone(),
            source,
        };
        let max_tokens = manifest.max_tokens.min(text_config.max_position_embeddings);
        let tokenizer = ClipTokenizer::from_file(&slug, &dir.join("tokenizer.json"), max_tokens)?;
        Self::assemble(
            slug.clone(),
            vb,
            &text_config,
            &vision_config,
            config.projection_dim,
            tokenizer,
            manifest.precision,
        )
        .map_err(model_err)
    }

    /// A full-size ViT-B/32 (the shapes, and so the cost, of `openai/clip-vit-base-patch32`)
    /// with seeded random weights, for benchmarks on machines without the real checkpoint.
    pub fn random_vit_b32(
        seed: u64,
        tokenizer: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<ClipEncoder, EmbedError> {
        check_precision("random-vit-b32", precision, device)?;
        Self::random_with_vars(seed, tokenizer, device, precision).map(|(encoder, _)| encoder)
    }

    /// Writes [`ClipEncoder::random_vit_b32`] as a checkpoint folder in the hub's layout
    /// (`config.json` of openai/clip-vit-base-patch32, `model.safetensors`, `tokenizer.json`),
    /// so the whole gateway can be measured at the real model's cost: `aimp models import
    /// clipo --from DIR --unverified`.
    pub fn write_random_vit_b32(seed: u64, tokenizer: &Path, out: &Path) -> Result<(), EmbedError> {
        let (_, varmap) = Self::random_with_vars(seed, tokenizer, &Device::Cpu, Precision::Fp32)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbedError::Io { path, source }
        };
        std::fs::create_dir_all(out).map_err(io(out))?;
        let weights = out.join("model.safetensors");
        varmap.save(&weights).map_err(|source| EmbedError::Model {
            slug: "random-vit-b32".into(),
            source,
        })?;
        let config = serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": 512,
            "text_config": {
                "hidden_act": "quick_gelu", "hidden_size": 512, "intermediate_size": 2048,
                "layer_norm_eps": 1e-5, "max_position_embeddings": 77,
                "num_attention_heads": 8, "num_hidden_layers": 12, "vocab_size": 49408,
                "bos_token_id": 49406, "eos_token_id": 49407, "projection_dim": 512
            },
            "vision_config": {
                "hidden_act": "quick_gelu", "hidden_size": 768, "intermediate_size": 3072,
                "layer_norm_eps": 1e-5, "image_size": 224, "patch_size": 32,
                "num_attention_heads": 12, "num_hidden_layers": 12, "num_channels": 3,
                "projection_dim": 512
            }
        });
        let config_path = out.join("config.json");
        std::fs::write(&config_path, config.to_string()).map_err(io(&config_path))?;
        let tokenizer_path = out.join("tokenizer.json");
        std::fs::copy(tokenizer, &tokenizer_path).map_err(io(&tokenizer_path))?;
        Ok(())
    }

    fn random_with_vars(
        seed: u64,
        tokenizer: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<(ClipEncoder, candle_nn::VarMap), EmbedError> {
        use rand::{Rng, SeedableRng};
        let slug = "random-vit-b32".to_string();
        let model_err = |source| EmbedError::Model {
            slug: slug.clone(),
            source,
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let text_config = ClipTextConfig::vit_base_patch32();
        let vision_config = ClipVisionConfig::vit_base_patch32();
        let tokenizer = ClipTokenizer::from_file(&slug, tokenizer, 77)?;
        // candle's towers create every variable; they are seeded below, then the encoder is
        // assembled from them (our towers copy the weights when they load).
        candle_towers(vb.clone(), &text_config, &vision_config, 512).map_err(model_err)?;
        // candle cannot seed its CPU generator, so every weight is rewritten from a seeded one,
        // in name order.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        {
            let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            for name in names {
                let var = &vars[name];
                let values: Vec<f32> = (0..var.elem_count())
                    .map(|_| rng.random_range(-0.05f32..0.05))
                    .collect();
                let tensor = Tensor::from_vec(values, var.shape(), device).map_err(model_err)?;
                var.set(&tensor).map_err(model_err)?;
            }
        }
        let encoder = Self::assemble(
            slug.clone(),
            vb,
            &text_config,
            &vision_config,
            512,
            tokenizer,
            precision,
        )
        .map_err(model_err)?;
        Ok((encoder, varmap))
    }

    fn assemble(
        slug: String,
        vb: VarBuilder,
        text_config: &ClipTextConfig,
        vision_config: &ClipVisionConfig,
        projection_dim: usize,
        tokenizer: ClipTokenizer,
        precision: Precision,
    ) -> candle_core::Result<ClipEncoder> {
        let device = vb.device().clone();
        let towers = if device.is_cpu() {
            let text = TextTower::load(vb.clone(), text_config, projection_dim, precision)?;
            let vision = VisionTower::load(vb, vision_config, projection_dim, precision)?;
            Towers::Cpu {
                text: Box::new(text),
                vision: Box::new(vision),
            }
        } else {
            candle_towers(vb, text_config, vision_config, projection_dim)?
        };
        Ok(ClipEncoder {
            slug,
            towers,
            max_tokens: tokenizer.max_len(),
            tokenizer,
            device,
            dimensions: projection_dim,
            image_size: vision_config.image_size,
        })
    }

    /// The side of the square pixel input (224 for ViT-B/32).
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn slug(&self) -> &str {
        &self.slug
    }

    fn model_err(&self) -> impl Fn(candle_core::Error) -> EmbedError + '_ {
        |source| EmbedError::Model {
            slug: self.slug.clone(),
            source,
        }
    }

    /// Text embeddings, one L2-normalised row per text.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.tokenizer.encode(texts)?;
        self.text_features(&ids).map_err(self.model_err())
    }

    fn text_features(&self, ids: &[Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (text, text_projection) = match &self.towers {
            Towers::Cpu { text, .. } => {
                let rows: Vec<TextRow<'_>> = ids
                    .iter()
                    .map(|row| {
                        let row = &row[..row.len().min(self.max_tokens)];
                        TextRow {
                            ids: row,
                            feature_position: self.tokenizer.feature_position(row),
                        }
                    })
                    .collect();
                return text.embed(&rows);
            }
            Towers::Candle {
                text,
                text_projection,
                ..
            } => (text, text_projection),
        };
        let len = ids
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .min(self.max_tokens);
        // The causal mask keeps every position from seeing the padding after it, so padding
        // with the end token leaves each text's feature untouched.
        let mut flat = Vec::with_capacity(ids.len() * len);
        for row in ids {
            flat.extend(row.iter().take(len));
            flat.extend(std::iter::repeat_n(
                self.tokenizer.end_id(),
                len - row.len().min(len),
            ));
        }
        let input = Tensor::from_vec(flat, (ids.len(), len), &self.device)?;
        let hidden = text.forward_with_mask(&input, usize::MAX)?;
        let pooled = ids
            .iter()
            .enumerate()
            .map(|(b, row)| {
                hidden
                    .i((b, self.tokenizer.feature_position(row)))?
                    .unsqueeze(0)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let pooled = Tensor::cat(&pooled, 0)?;
        normalize_rows(&text_projection.forward(&pooled)?)
    }

    /// Image embeddings from preprocessed pixels `(batch, 3, size, size)`.
    pub fn embed_pixels(&self, pixels: &Tensor) -> Result<Vec<Vec<f32>>, EmbedError> {
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            match &self.towers {
                Towers::Cpu { vision, .. } => {
                    let n = pixels.dim(0)?;
                    let flat = pixels
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    vision.embed(&flat, n)
                }
                Towers::Candle {
                    vision,
                    visual_projection,
                    ..
                } => {
                    let pixels = pixels.to_device(&self.device)?.to_dtype(DType::F32)?;
                    let pooled = vision.forward(&pixels)?;
                    normalize_rows(&visual_projection.forward(&pooled)?)
                }
            }
        };
        run().map_err(self.model_err())
    }
}

impl Encoder for ClipEncoder {
    fn slug(&self) -> &str {
        &self.slug
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        ClipEncoder::embed_texts(self, texts)
    }

    fn image_size(&self) -> Option<u32> {
        u32::try_from(self.image_size).ok()
    }

    fn embed_pixels(&mut self, pixels: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Towers::Cpu { vision, .. } = &self.towers {
            return vision.embed(&pixels, n).map_err(self.model_err());
        }
        let s = self.image_size;
        let tensor = Tensor::from_vec(pixels, (n, 3, s, s), &candle_core::Device::Cpu)
            .map_err(self.model_err())?;
        ClipEncoder::embed_pixels(self, &tensor)
    }
}

/// Only our CPU towers quantise; candle's (GPU devices) run fp32 only.
fn check_precision(slug: &str, precision: Precision, device: &Device) -> Result<(), EmbedError> {
    if precision == Precision::Fp32 || device.is_cpu() {
        return Ok(());
    }
    Err(EmbedError::PrecisionUnsupported {
        slug: slug.to_string(),
        precision,
        reason: "only the CPU forward pass quantises; on a GPU use fp32".into(),
    })
}

/// candle's towers and projections (GPU devices; on the CPU, they create the variables of a
/// seeded random model).
fn candle_towers(
    vb: VarBuilder,
    text_config: &ClipTextConfig,
    vision_config: &ClipVisionConfig,
    projection_dim: usize,
) -> candle_core::Result<Towers> {
    Ok(Towers::Candle {
        text: Box::new(ClipTextTransformer::new(vb.pp("text_model"), text_config)?),
        vision: Box::new(ClipVisionTransformer::new(
            vb.pp("vision_model"),
            vision_config,
        )?),
        text_projection: candle_nn::linear_no_bias(
            text_config.embed_dim,
            projection_dim,
            vb.pp("text_projection"),
        )?,
        visual_projection: candle_nn::linear_no_bias(
            vision_config.embed_dim,
            projection_dim,
            vb.pp("visual_projection"),
        )?,
    })
}

/// candle's tower configs from the Hugging Face ones; refuses what candle's towers cannot run.
fn tower_configs(c: &HfConfig) -> Result<(ClipTextConfig, ClipVisionConfig), String> {
    for (name, t) in [
        ("text_config", &c.text_config),
        ("vision_config", &c.vision_config),
    ] {
        if t.hidden_act != "quick_gelu" {
            return Err(format!(
                "{name}.hidden_act {:?} is not supported (quick_gelu only)",
                t.hidden_act
            ));
        }
        if (t.layer_norm_eps - 1e-5).abs() > 1e-12 {
            return Err(format!("{name}.layer_norm_eps must be 1e-5"));
        }
        if t.num_attention_heads == 0 || t.hidden_size % t.num_attention_heads != 0 {
            return Err(format!(
                "{name}.hidden_size must be a multiple of num_attention_heads"
            ));
        }
    }
    let t = &c.text_config;
    let v = &c.vision_config;
    let text = ClipTextConfig {
        vocab_size: t.vocab_size.ok_or("text_config.vocab_size is missing")?,
        embed_dim: t.hidden_size,
        activation: Activation::QuickGelu,
        intermediate_size: t.intermediate_size,
        max_position_embeddings: t.max_position_embeddings.unwrap_or(77),
        pad_with: None,
        num_hidden_layers: t.num_hidden_layers,
        num_attention_heads: t.num_attention_heads,
        projection_dim: c.projection_dim,
    };
    let vision = ClipVisionConfig {
        embed_dim: v.hidden_size,
        activation: Activation::QuickGelu,
        intermediate_size: v.intermediate_size,
        num_hidden_layers: v.num_hidden_layers,
        num_attention_heads: v.num_attention_heads,
        projection_dim: c.projection_dim,
        num_channels: v.num_channels.unwrap_or(3),
        image_size: v.image_size.unwrap_or(224),
        patch_size: v.patch_size.unwrap_or(32),
    };
    if !vision.image_size.is_multiple_of(vision.patch_size) {
        return Err("vision_config.image_size must be a multiple of patch_size".into());
    }
    Ok((text, vision))
}
