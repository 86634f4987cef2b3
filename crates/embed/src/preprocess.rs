//! Image preprocessing for CLIP: the rescale and normalise steps of Hugging Face's
//! `CLIPImageProcessor` (`x / 255`, then `(x - mean) / std` per channel, channels first).

use candle_core::{Device, Tensor};
use image::RgbImage;

/// OpenAI CLIP's per-channel mean (`OPENAI_CLIP_MEAN` in transformers).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (`OPENAI_CLIP_STD`).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// An RGB image as the `(3, height, width)` float tensor the vision tower takes.
pub fn normalize(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    Tensor::from_vec(out, (3, h as usize, w as usize), device)
}
