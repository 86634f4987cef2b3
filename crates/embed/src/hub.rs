//! Downloads from the Hugging Face hub (or a mirror) at a pinned revision.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::EmbedError;
use crate::checksum::copy_hashing;

/// Seconds allowed to resolve and connect: with no network the attempt fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while reading a body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// `{hub_url}/{repo}/resolve/{revision}/{path}`.
pub(crate) fn file_url(hub_url: &str, repo: &str, revision: &str, path: &str) -> String {
    format!(
        "{}/{repo}/resolve/{revision}/{path}",
        hub_url.trim_end_matches('/')
    )
}

/// Streams one file into `out`; returns (sha256, size).
pub(crate) fn download(
    url: &str,
    out: &mut impl Write,
    out_path: &Path,
) -> Result<(String, u64), EmbedError> {
    let config = ureq::Agent::config_builder()
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("aimp/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent: ureq::Agent = config.into();
    let fail = |reason: String| EmbedError::Download {
        url: url.to_string(),
        reason,
    };
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let mut reader = response.into_body().into_reader();
    copy_hashing(&mut reader, out, out_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_resolve_urls() {
        assert_eq!(
            file_url("https://huggingface.co/", "a/b", "abc", "model.safetensors"),
            "https://huggingface.co/a/b/resolve/abc/model.safetensors"
        );
    }

    #[test]
    fn unreachable_hub_fails_fast() {
        // Nothing listens on port 9 of loopback: the connection is refused.
        let err = download("http://127.0.0.1:9/x", &mut Vec::new(), Path::new("mem"))
            .expect_err("nothing listens there");
        assert!(matches!(err, EmbedError::Download { ref url, .. } if url.ends_with("/x")));
    }
}
