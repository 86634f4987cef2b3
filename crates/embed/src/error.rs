//! Errors of the embedding layer.

use std::path::PathBuf;

/// Everything that can go wrong loading, installing or running a model. The server maps each
/// variant to an HTTP status in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("manifest {path} is invalid: {reason}")]
    ManifestInvalid { path: String, reason: String },
    #[error("checkpoint file {path} does not fit: {reason}")]
    CheckpointInvalid { path: String, reason: String },
    #[error("the image cannot be used: {reason}")]
    Image { reason: String },
    /// One picture of a request could not be used; nothing of the request was embedded.
    #[error("image {index} cannot be used: {reason}")]
    ImageItem { index: usize, reason: String },
    #[error("model {slug} has no image tower")]
    NoImageTower { slug: String },
    #[error("no model named {slug}")]
    UnknownModel { slug: String },
    #[error("model {slug} has no encoder: it takes vectors, not texts or pictures")]
    NoEncoder { slug: String },
    #[error("model {slug} cannot run at precision {precision}: {reason}")]
    PrecisionUnsupported {
        slug: String,
        precision: crate::Precision,
        reason: String,
    },
    #[error("model {slug} is not installed; install it with `{install_command}`")]
    NotInstalled {
        slug: String,
        install_command: String,
    },
    #[error(
        "{file}: sha256 is {actual}, but model {slug} pins {expected}; the file is corrupt or not the pinned revision"
    )]
    ChecksumMismatch {
        slug: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is missing from {from}")]
    MissingFile { file: String, from: String },
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error(
        "offline mode is on (--offline / AIMP_OFFLINE): refusing to reach the network for {what}"
    )]
    Offline { what: String },
    #[error("`{command}` failed: {reason}")]
    Pip { command: String, reason: String },
    #[error("{path} is not a readable wheel or zip: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("model {slug} has no installation source for this; {hint}")]
    NoSource { slug: String, hint: String },
    #[error("tokenizer of {slug}: {reason}")]
    Tokenizer { slug: String, reason: String },
    #[error("model {slug} failed: {source}")]
    Model {
        slug: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("encoder panicked: {reason}")]
    Panicked { reason: String },
    #[error("the encoder of {slug} is overloaded: {why}")]
    Overloaded {
        slug: String,
        why: String,
        /// About when the work queued now will have run.
        retry_after_secs: u64,
    },
    #[error("the encoder of {slug} has stopped")]
    WorkerStopped { slug: String },
    #[error("device {device} is not available: {reason}")]
    Device { device: String, reason: String },
}

impl EmbedError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EmbedError {
        let path = path.into();
        move |source| EmbedError::Io { path, source }
    }
}
