//! The registry: every known manifest, and whether its weights are installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::install::{InstallReceipt, RECEIPT_FILE};
use crate::{EmbedError, Manifest, Precision};

/// The manifests shipped with the binary, from the project's `models/` folder.
pub(crate) const BUILTIN_MANIFESTS: &[(&str, &str)] = &[
    (
        "demo-model",
        include_str!("../../../models/demo-model/manifest.json"),
    ),
    ("clipo", include_str!("../../../models/clipo/manifest.json")),
    (
        "vectors",
        include_str!("../../../models/vectors/manifest.json"),
    ),
];

/// What the registry knows of one model's installation.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ModelStatus {
    pub installed: bool,
    /// Whether the installed files are the manifest's pinned ones.
    pub verified: bool,
    pub revision: Option<String>,
    pub size_bytes: u64,
}

/// All known models, by slug.
#[derive(Clone, Debug)]
pub struct Registry {
    manifests: BTreeMap<String, Arc<Manifest>>,
    models_dir: PathBuf,
}

impl Registry {
    /// The built-in manifests, then every `<dir>/<slug>/manifest.json` under `manifests_dir`
    /// (when it exists); a manifest there replaces a built-in one of the same slug.
    pub fn load(manifests_dir: Option<&Path>, models_dir: &Path) -> Result<Registry, EmbedError> {
        let mut manifests = BTreeMap::new();
        for (name, text) in BUILTIN_MANIFESTS {
            let m = Manifest::parse(text, &format!("built-in {name}"))?;
            manifests.insert(m.slug.clone(), Arc::new(m));
        }
        if let Some(dir) = manifests_dir.filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(dir).map_err(EmbedError::io(dir))?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path().join("manifest.json")))
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path).map_err(EmbedError::io(&path))?;
                let m = Manifest::parse(&text, &path.display().to_string())?;
                let folder = path.parent().and_then(Path::file_name);
                if folder.and_then(|f| f.to_str()) != Some(m.slug.as_str()) {
                    return Err(EmbedError::ManifestInvalid {
                        path: path.display().to_string(),
                        reason: format!("slug {:?} must match its folder name", m.slug),
                    });
                }
                manifests.insert(m.slug.clone(), Arc::new(m));
            }
        }
        Ok(Registry {
            manifests,
            models_dir: models_dir.to_path_buf(),
        })
    }

    /// Runs `slug` at `precision` instead of its manifest's (the `--precision` setting).
    pub fn set_precision(&mut self, slug: &str, precision: Precision) -> Result<(), EmbedError> {
        let manifest = self
            .manifests
            .get_mut(slug)
            .ok_or_else(|| EmbedError::UnknownModel {
                slug: slug.to_string(),
            })?;
        Arc::make_mut(manifest).precision = precision;
        Ok(())
    }

    pub fn get(&self, slug: &str) -> Result<&Arc<Manifest>, EmbedError> {
        self.manifests
            .get(slug)
            .ok_or_else(|| EmbedError::UnknownModel {
                slug: slug.to_string(),
            })
    }

    pub fn manifests(&self) -> impl Iterator<Item = &Arc<Manifest>> {
        self.manifests.values()
    }

    /// Where a model's files are installed.
    pub fn model_dir(&self, slug: &str) -> PathBuf {
        self.models_dir.join(slug)
    }

    /// Installation status from the receipt (cheap: no hashing).
    pub fn status(&self, slug: &str) -> ModelStatus {
        // A model without an encoder has nothing to install: it is always ready.
        if self
            .manifests
            .get(slug)
            .is_some_and(|m| !m.architecture.has_encoder())
        {
            return ModelStatus {
                installed: true,
                verified: true,
                revision: None,
                size_bytes: 0,
            };
        }
        let receipt = InstallReceipt::read(&self.model_dir(slug).join(RECEIPT_FILE)).ok();
        match receipt {
            Some(r) => ModelStatus {
                installed: true,
                verified: r.verified,
                revision: Some(r.revision.clone()),
                size_bytes: r.files.iter().map(|f| f.size).sum(),
            },
            None => ModelStatus {
                installed: false,
                verified: false,
                revision: None,
                size_bytes: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_manifest_adds_a_model_and_must_match_its_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN_MANIFESTS[0].1).expect("json");
        v["slug"] = "my-minilm".into();
        std::fs::create_dir_all(dir.path().join("my-minilm")).expect("mkdir");
        std::fs::write(dir.path().join("my-minilm/manifest.json"), v.to_string()).expect("write");
        let reg = Registry::load(Some(dir.path()), dir.path()).expect("load");
        assert!(reg.get("my-minilm").is_ok());
        assert!(reg.get("demo-model").is_ok());
        assert!(!reg.status("my-minilm").installed);

        std::fs::create_dir_all(dir.path().join("other")).expect("mkdir");
        std::fs::write(dir.path().join("other/manifest.json"), v.to_string()).expect("write");
        let err = Registry::load(Some(dir.path()), dir.path()).expect_err("mismatch");
        assert!(err.to_string().contains("folder name"), "{err}");
    }

    #[test]
    fn unknown_model_is_an_error() {
        let reg = Registry::load(None, Path::new("/nonexistent")).expect("load");
        assert!(matches!(
            reg.get("nope"),
            Err(EmbedError::UnknownModel { .. })
        ));
    }
}
