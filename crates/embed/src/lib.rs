//! Encoders and the models they run: manifests, installation, and the worker that keeps model
//! compute off the async runtime.
//!
//! Only this crate knows candle. The server talks to a model through [`EncoderHandle`], which
//! queues work for a dedicated thread and answers "overloaded" when that queue is full.

mod admission;
mod bert;
mod checkpoint;
mod checksum;
mod clip;
mod clip_tokenizer;
mod clip_towers;
mod cpu;
mod decode;
mod device;
mod error;
pub mod exif_fields;
mod fair_queue;
mod hub;
mod install;
mod l2;
mod loader;
mod manifest;
pub mod preprocess;
mod registry;
mod resample;
mod sentence;
mod thumbnail;
mod wheel;
mod worker;

pub use admission::{Admission, Kind};
pub use clip::ClipEncoder;
pub use clip_tokenizer::ClipTokenizer;
pub use decode::{
    DecodeOptions, ImageInfo, MAX_PIXELS, decode_rgb, decode_rgb_with, image_info,
    sniff_content_type,
};
pub use device::DeviceChoice;
pub use error::EmbedError;
pub use install::{InstallOptions, InstallReceipt, Installer, ensure_installed};
pub use loader::load_encoder;
pub use manifest::{Architecture, FileSpec, Manifest, ModeContract, Precision, Sources};
pub use registry::{ModelStatus, Registry};
pub use sentence::SentenceEncoder;
pub use thumbnail::{DEFAULT_THUMBNAIL_SIDE, THUMBNAIL_SIDES, thumbnail, thumbnail_memory};
pub use worker::{Encoder, EncoderHandle, Prepared, WorkerOptions};
