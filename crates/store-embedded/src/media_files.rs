//! Uploaded bytes as files beside the database, and the secret that signs upload URLs:
//!
//! - `uploads/<upload_id>.part`: bytes of an upload in flight, appended as its PUT streams;
//! - `media/<2 hex>/<sha256>`: completed content, named by its hash, so equal bytes are
//!   stored once whatever their `media_ref`s;
//! - `upload-signing.key`: the secret, created on first start.
//!
//! redb says which content a `media_ref` names; a file without a record is never served.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The secret's file name in the data directory.
const SECRET_FILE: &str = "upload-signing.key";

/// The media folders of one data directory and the URL signing secret.
pub(crate) struct MediaFiles {
    uploads: PathBuf,
    content: PathBuf,
    secret: [u8; 32],
}

impl std::fmt::Debug for MediaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFiles")
            .field("uploads", &self.uploads)
            .field("content", &self.content)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl MediaFiles {
    /// Creates the folders and the secret under `data_dir` if they are missing.
    pub fn open(data_dir: &Path) -> io::Result<MediaFiles> {
        let uploads = data_dir.join("uploads");
        let content = data_dir.join("media");
        fs::create_dir_all(&uploads)?;
        fs::create_dir_all(&content)?;
        let secret = load_or_create_secret(&data_dir.join(SECRET_FILE))?;
        Ok(MediaFiles {
            uploads,
            content,
            secret,
        })
    }

    pub fn secret(&self) -> [u8; 32] {
        self.secret
    }

    fn part_path(&self, upload_id: &str) -> PathBuf {
        self.uploads.join(format!("{upload_id}.part"))
    }

    fn content_path(&self, sha256: &str) -> PathBuf {
        self.content
            .join(&sha256[..2.min(sha256.len())])
            .join(sha256)
    }

    pub fn begin_part(&self, upload_id: &str) -> io::Result<()> {
        File::create(self.part_path(upload_id)).map(drop)
    }

    pub fn append_part(&self, upload_id: &str, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .open(self.part_path(upload_id))?
            .write_all(bytes)
    }

    pub fn read_part(&self, upload_id: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.part_path(upload_id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the received bytes of `upload_id` durable as content `sha256`: fsync, then an
    /// atomic rename into place (or, when equal bytes are already stored, drop the copy).
    /// Idempotent: a second call after a success finds the content and does nothing.
    ///
    /// Content is shared between workspaces, so a copy of bytes already stored makes the same
    /// durable steps (its fsync, the folders' fsyncs) as new bytes: how long completing an
    /// upload takes does not tell one workspace whether another stored the same bytes.
    pub fn commit_content(&self, upload_id: &str, sha256: &str) -> io::Result<()> {
        let part = self.part_path(upload_id);
        let target = self.content_path(sha256);
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("content path has no folder"))?;
        match File::open(&part).and_then(|f| f.sync_all()) {
            Ok(()) if target.exists() => remove_if_exists(&part)?,
            Ok(()) => {
                fs::create_dir_all(dir)?;
                fs::rename(&part, &target)?;
            }
            // Committed before (the part was renamed or dropped): nothing left to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_dir(dir)?;
        sync_dir(&self.content)?;
        Ok(())
    }

    pub fn remove_part(&self, upload_id: &str) -> io::Result<()> {
        remove_if_exists(&self.part_path(upload_id))
    }

    pub fn part_ids(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.uploads)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".part")) {
                out.push(id.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn content_len(&self, sha256: &str) -> io::Result<Option<u64>> {
        match fs::metadata(self.content_path(sha256)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn read_content(&self, sha256: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(self.content_path(sha256))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        file.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsync of a folder, so a rename into it survives a crash (a no-op where folders cannot be
/// opened, as on Windows).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn load_or_create_secret(path: &Path) -> io::Result<[u8; 32]> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim();
            let bytes: Option<Vec<u8>> = (text.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| io::Error::other(format!("{} is not 64 hex digits", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let tmp = path.with_extension("tmp");
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(hex.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}
