//! Reading a Hugging Face checkpoint folder: `config.json` and `model.safetensors`.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use crate::EmbedError;

/// `dir/config.json`, parsed; a file that does not parse names itself in the error.
pub(crate) fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T, EmbedError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(EmbedError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| config_error(dir, e.to_string()))
}

/// An error about `dir/config.json`.
pub(crate) fn config_error(dir: &Path, reason: String) -> EmbedError {
    EmbedError::CheckpointInvalid {
        path: dir.join("config.json").display().to_string(),
        reason,
    }
}

/// `dir/model.safetensors`, read into memory (no unsafe mmap) as `f32` on `device`.
pub(crate) fn read_weights(
    slug: &str,
    dir: &Path,
    device: &Device,
) -> Result<VarBuilder<'static>, EmbedError> {
    let path = dir.join("model.safetensors");
    let weights = std::fs::read(&path).map_err(EmbedError::io(&path))?;
    VarBuilder::from_buffered_safetensors(weights, DType::F32, device).map_err(|source| {
        EmbedError::Model {
            slug: slug.to_string(),
            source,
        }
    })
}
