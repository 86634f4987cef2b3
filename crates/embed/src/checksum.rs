//! Streaming sha256 of files and readers.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::EmbedError;

/// Copies `reader` into `out` while hashing; returns (hex sha256, bytes).
pub(crate) fn copy_hashing(
    reader: &mut (impl Read + ?Sized),
    out: &mut (impl Write + ?Sized),
    out_path: &Path,
) -> Result<(String, u64), EmbedError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(EmbedError::io(out_path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(EmbedError::io(out_path))?;
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// The hex sha256 of a file.
pub(crate) fn file_sha256(path: &Path) -> Result<String, EmbedError> {
    let mut file = std::fs::File::open(path).map_err(EmbedError::io(path))?;
    let (hash, _) = copy_hashing(&mut file, &mut std::io::sink(), path)?;
    Ok(hash)
}
