//! Uploaded bytes on disk, and the signatures of upload URLs.
//!
//! - `uploads/<upload_id>.part`: bytes of an upload in flight, streamed by its PUT;
//! - `media/<2 hex>/<sha256>`: completed content, named by its hash, so equal bytes are
//!   stored once whatever their `media_ref`s;
//! - `thumbnails/<2 hex>/<name>-<side>.jpg`: thumbnails made from content, a cache that
//!   may be deleted at any time. Each workspace has its own: `name` is the SHA-256 of the
//!   workspace and the content's hash, so a thumbnail another workspace made of the same
//!   bytes is never served, and how fast a thumbnail comes back says nothing about what other
//!   workspaces stored;
//! - `upload-signing.key`: the server secret that signs upload URLs (HMAC-SHA256 over the
//!   upload id, size, content type, workspace and expiry), created on first start.
//!
//! redb says which content a `media_ref` names; a file without a record is never served.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The secret's file name in the data directory.
const SECRET_FILE: &str = "upload-signing.key";

/// The media folders of one data directory and the URL signing secret.
pub struct MediaFiles {
    uploads: PathBuf,
    content: PathBuf,
    thumbnails: PathBuf,
    secret: [u8; 32],
}

impl std::fmt::Debug for MediaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFiles")
            .field("uploads", &self.uploads)
            .field("content", &self.content)
            .field("thumbnails", &self.thumbnails)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What an upload URL's signature covers.
#[derive(Debug)]
pub struct Signed<'a> {
    pub upload_id: &'a str,
    pub size_bytes: u64,
    pub content_type: &'a str,
    pub workspace: &'a str,
    /// Unix seconds.
    pub expires: i64,
}

impl MediaFiles {
    /// Creates the folders and the secret under `data_dir` if they are missing.
    pub fn open(data_dir: &Path) -> io::Result<MediaFiles> {
        let uploads = data_dir.join("uploads");
        let content = data_dir.join("media");
        let thumbnails = data_dir.join("thumbnails");
        fs::create_dir_all(&uploads)?;
        fs::create_dir_all(&content)?;
        let secret = load_or_create_secret(&data_dir.join(SECRET_FILE))?;
        Ok(MediaFiles {
            uploads,
            content,
            thumbnails,
            secret,
        })
    }

    fn mac(&self, s: &Signed<'_>) -> Hmac<Sha256> {
        // A 32-byte key is always accepted.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Fields separated by NUL, which none of them may contain.
        for field in [
            s.upload_id,
            &s.size_bytes.to_string(),
            s.content_type,
            s.workspace,
            &s.expires.to_string(),
        ] {
            mac.update(field.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// The signature of an upload URL, hex.
    pub fn sign(&self, s: &Signed<'_>) -> String {
        hex::encode(self.mac(s).finalize().into_bytes())
    }

    /// Whether `signature` (hex) was made by [`MediaFiles::sign`] for exactly these fields;
    /// compared in constant time.
    pub fn verify(&self, s: &Signed<'_>, signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(s).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Where the bytes of an upload in flight go.
    pub fn part_path(&self, upload_id: &str) -> PathBuf {
        self.uploads.join(format!("{upload_id}.part"))
    }

    /// Where completed content with this hash lives.
    pub fn content_path(&self, sha256: &str) -> PathBuf {
        self.content
            .join(&sha256[..2.min(sha256.len())])
            .join(sha256)
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

    /// The bytes of stored content.
    pub fn read_content(&self, sha256: &str) -> io::Result<Vec<u8>> {
        fs::read(self.content_path(sha256))
    }

    /// Where `workspace`'s thumbnail of content `sha256` is cached (the module says why the
    /// workspace is in its name).
    fn thumbnail_path(&self, workspace: &str, sha256: &str, side: u32) -> PathBuf {
        let mut hasher = <Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut hasher, (workspace.len() as u64).to_le_bytes());
        sha2::Digest::update(&mut hasher, workspace.as_bytes());
        sha2::Digest::update(&mut hasher, sha256.as_bytes());
        let name: String = sha2::Digest::finalize(hasher)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.thumbnails
            .join(&name[..2])
            .join(format!("{name}-{side}.jpg"))
    }

    /// `workspace`'s cached thumbnail of content `sha256`, if it made one.
    pub fn read_thumbnail(
        &self,
        workspace: &str,
        sha256: &str,
        side: u32,
    ) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.thumbnail_path(workspace, sha256, side)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps a thumbnail: written beside its place, then renamed into it, so a reader never
    /// sees half of one (no fsync: a thumbnail lost in a crash is made again).
    pub fn write_thumbnail(
        &self,
        workspace: &str,
        sha256: &str,
        side: u32,
        jpeg: &[u8],
    ) -> io::Result<()> {
        let target = self.thumbnail_path(workspace, sha256, side);
        let dir = target
            .parent()
            .ok_or_else(|| io::Error::other("thumbnail path has no folder"))?;
        fs::create_dir_all(dir)?;
        let temp = target.with_extension(format!("{:016x}.part", rand::random::<u64>()));
        let written = fs::write(&temp, jpeg).and_then(|()| fs::rename(&temp, &target));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Part files (upload ids) that are in the uploads folder now.
    pub fn part_files(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.uploads)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".part")) {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// Removes the part file of an upload, if there is one.
    pub fn remove_part(&self, upload_id: &str) -> io::Result<()> {
        remove_if_exists(&self.part_path(upload_id))
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
            let bytes = hex::decode(text.trim()).map_err(|e| {
                io::Error::other(format!("{} is not 64 hex digits: {e}", path.display()))
            })?;
            bytes
                .try_into()
                .map_err(|_| io::Error::other(format!("{} is not 64 hex digits", path.display())))
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
            file.write_all(hex::encode(secret).as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(expires: i64) -> Signed<'static> {
        Signed {
            upload_id: "studio_upload_1",
            size_bytes: 10,
            content_type: "image/png",
            workspace: "default",
            expires,
        }
    }

    #[test]
    fn signatures_cover_every_field_and_the_secret_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = MediaFiles::open(dir.path()).expect("open");
        let sig = files.sign(&signed(100));
        assert!(files.verify(&signed(100), &sig));
        assert!(!files.verify(&signed(101), &sig));
        let other_ws = Signed {
            workspace: "other",
            ..signed(100)
        };
        assert!(!files.verify(&other_ws, &sig));
        let other_size = Signed {
            size_bytes: 11,
            ..signed(100)
        };
        assert!(!files.verify(&other_size, &sig));
        assert!(!files.verify(&signed(100), "zz"));
        // Reopened: the same secret, so URLs signed before a restart still work.
        let again = MediaFiles::open(dir.path()).expect("reopen");
        assert!(again.verify(&signed(100), &sig));
    }

    #[test]
    fn content_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = MediaFiles::open(dir.path()).expect("open");
        let sha = "ab".repeat(32);
        for id in ["u1", "u2"] {
            fs::write(files.part_path(id), b"same bytes").expect("write");
            files.commit_content(id, &sha).expect("commit");
            assert!(!files.part_path(id).exists());
        }
        files.commit_content("u2", &sha).expect("idempotent");
        assert_eq!(files.read_content(&sha).expect("read"), b"same bytes");
        assert!(files.part_files().expect("parts").is_empty());
        // A part that is gone before its content exists is an error, not a success.
        assert!(files.commit_content("u3", &"cd".repeat(32)).is_err());
    }

    #[test]
    fn each_workspace_has_its_own_thumbnails_of_the_same_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = MediaFiles::open(dir.path()).expect("open");
        let sha = "ab".repeat(32);
        files
            .write_thumbnail("a", &sha, 128, b"a's thumbnail")
            .expect("write");
        assert_eq!(
            files.read_thumbnail("a", &sha, 128).expect("read"),
            Some(b"a's thumbnail".to_vec())
        );
        assert_eq!(files.read_thumbnail("b", &sha, 128).expect("read"), None);
        assert_eq!(files.read_thumbnail("a", &sha, 256).expect("read"), None);
        // Names cannot meet by moving bytes between the workspace and the hash.
        assert_ne!(
            files.thumbnail_path("ab", "c", 1),
            files.thumbnail_path("a", "bc", 1)
        );
    }
}
