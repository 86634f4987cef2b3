//! Loading an installed model onto its worker, by architecture.

use std::path::Path;

use crate::{
    Architecture, ClipEncoder, DeviceChoice, EmbedError, EncoderHandle, InstallOptions, Installer,
    Manifest, SentenceEncoder, WorkerOptions,
};

/// Verifies the installed files of `manifest` (every sha256), loads the model and starts its
/// worker. A file that no longer matches is refused here, never loaded.
pub fn load_encoder(
    manifest: &Manifest,
    models_dir: &Path,
    device: DeviceChoice,
    worker: WorkerOptions,
) -> Result<EncoderHandle, EmbedError> {
    if !manifest.architecture.has_encoder() {
        return Err(no_encoder(manifest));
    }
    let options = InstallOptions::default();
    let receipt = Installer::new(manifest, models_dir, &options).verify_installed()?;
    let dir = models_dir.join(&manifest.slug);
    let device = device.open()?;
    let handle = match manifest.architecture {
        Architecture::BertMeanPooling => {
            let encoder = SentenceEncoder::load(manifest, &dir, &device)?;
            EncoderHandle::spawn(encoder, worker)
        }
        Architecture::Clip => {
            let encoder = ClipEncoder::load(manifest, &dir, &device)?;
            EncoderHandle::spawn(encoder, worker)
        }
        Architecture::Vectors => return Err(no_encoder(manifest)),
    };
    // The installed weights' revision: the manifest's pin, or `local-…` for an unverified
    // import, which runs then report.
    Ok(handle.with_revision(receipt.revision))
}

/// Loads the checkpoint in `dir` as `manifest`'s architecture on the CPU and drops it: the
/// check an unverified import runs before it installs anything. A config of another shape,
/// other dimensions, missing tensors or an unreadable tokenizer is refused here.
pub(crate) fn check_checkpoint(manifest: &Manifest, dir: &Path) -> Result<(), EmbedError> {
    let device = candle_core::Device::Cpu;
    match manifest.architecture {
        Architecture::BertMeanPooling => SentenceEncoder::load(manifest, dir, &device).map(drop),
        Architecture::Clip => ClipEncoder::load(manifest, dir, &device).map(drop),
        Architecture::Vectors => Err(no_encoder(manifest)),
    }
}

fn no_encoder(manifest: &Manifest) -> EmbedError {
    EmbedError::NoEncoder {
        slug: manifest.slug.clone(),
    }
}
