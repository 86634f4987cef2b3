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
    let options = InstallOptions::default();
    Installer::new(manifest, models_dir, &options).verify_installed()?;
    let dir = models_dir.join(&manifest.slug);
    let device = device.open()?;
    match manifest.architecture {
        Architecture::BertMeanPooling => {
            let encoder = SentenceEncoder::load(manifest, &dir, &device)?;
            Ok(EncoderHandle::spawn(encoder, worker))
        }
        // Texts for now; images join when the media upload flow can hand them in.
        Architecture::Clip => {
            let encoder = ClipEncoder::load(manifest, &dir, &device)?;
            Ok(EncoderHandle::spawn(encoder, worker))
        }
    }
}
