//! What a gateway keeps of media on its own disk, and the signatures of upload URLs.
//!
//! - `thumbnails/<2 hex>/<name>-<side>.jpg`: thumbnails made from content, a cache that
//!   may be deleted at any time (and that each gateway of a shared store keeps for itself).
//!   Each workspace has its own: `name` is the SHA-256 of the workspace and the content's
//!   hash, so a thumbnail another workspace made of the same bytes is never served, and how
//!   fast a thumbnail comes back says nothing about what other workspaces stored;
//! - upload URLs are signed with the store's secret (HMAC-SHA256 over the upload id, size,
//!   content type, workspace and expiry), so a URL one gateway signed is good at any other on
//!   the same store.
//!
//! The bytes themselves are the store's ([`aimp_store::Store::append_part`] and on).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// This gateway's thumbnail folder and the URL signing secret.
pub struct MediaFiles {
    thumbnails: PathBuf,
    secret: [u8; 32],
}

impl std::fmt::Debug for MediaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFiles")
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
    /// The thumbnail folder under `data_dir` (made when first needed) and the store's
    /// upload signing `secret`.
    pub fn new(data_dir: &Path, secret: [u8; 32]) -> MediaFiles {
        MediaFiles {
            thumbnails: data_dir.join("thumbnails"),
            secret,
        }
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
    fn signatures_cover_every_field_and_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = MediaFiles::new(dir.path(), [7; 32]);
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
        // Another gateway on the same store has the same secret; another secret refuses it.
        assert!(MediaFiles::new(dir.path(), [7; 32]).verify(&signed(100), &sig));
        assert!(!MediaFiles::new(dir.path(), [8; 32]).verify(&signed(100), &sig));
    }

    #[test]
    fn each_workspace_has_its_own_thumbnails_of_the_same_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = MediaFiles::new(dir.path(), [7; 32]);
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
