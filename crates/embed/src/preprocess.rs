//! Image preprocessing for CLIP, step for step as Hugging Face's `CLIPImageProcessor` (PIL
//! backend): RGB, shortest side to `size` with Pillow's bicubic filter, centre crop to
//! `size` x `size`, then `x / 255` and `(x - mean) / std` per channel, channels first.

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};

use crate::resample::resize_bicubic;

/// The output size of transformers' `get_resize_output_image_size(default_to_square=False)`:
/// the short side becomes `size`, the long side `size * long / short`, truncated.
pub fn resized_dimensions(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// RGB as transformers' `convert_to_rgb` makes it: an image with transparency is composited
/// onto opaque white (Pillow's `alpha_composite` integer arithmetic), grey is replicated,
/// palettes are expanded.
pub fn to_rgb(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        o.0 = over_white(p.0);
    }
    out
}

/// Pillow's `ImagingAlphaComposite` of `src` over an opaque white pixel (7 bits of extra
/// precision, rounded divisions by 255).
fn over_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return [255, 255, 255];
    }
    let a = u32::from(a);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let channel = |s: u8| {
        let tmp = u32::from(s) * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
        ((((tmp >> 8) + tmp) >> 8) >> PRECISION_BITS) as u8
    };
    [channel(r), channel(g), channel(b)]
}

/// Shortest side to `size` (bicubic), then the centre `size` x `size` square.
pub fn resize_and_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = resized_dimensions(img.width(), img.height(), size);
    let resized = resize_bicubic(img, w, h);
    let top = (h - size) / 2;
    let left = (w - size) / 2;
    image::imageops::crop_imm(&resized, left, top, size, size).to_image()
}

/// OpenAI CLIP's per-channel mean (`OPENAI_CLIP_MEAN` in transformers).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (`OPENAI_CLIP_STD`). The digits are
/// transformers' own; they round to the same `f32` that numpy uses.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// An RGB image as the `(3, height, width)` float tensor the vision tower takes.
pub fn normalize(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * (w * h) as usize];
    normalize_into(img, &mut out);
    Tensor::from_vec(out, (3, h as usize, w as usize), device)
}

/// [`normalize`] into a `(3, height, width)` buffer the caller owns.
pub fn normalize_into(img: &RgbImage, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

/// The whole pipeline after decoding: resize, crop, normalise; `(3, size, size)`.
pub fn pixels(img: &RgbImage, size: u32, device: &Device) -> candle_core::Result<Tensor> {
    normalize(&resize_and_crop(img, size), device)
}
