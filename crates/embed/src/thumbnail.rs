//! Small upright JPEG previews of uploaded pictures, for grids of results: decoded as the
//! gateway decodes uploads (EXIF orientation applied, transparency on white, the pixel limit
//! checked before decoding), shrunk with Pillow's bicubic filter, and encoded by libjpeg.

use image::RgbImage;

use crate::EmbedError;
use crate::decode::{DecodeOptions, decode_rgb_scaled, decode_rgb_with, jpeg_eighths_for};
use crate::resample::resize_bicubic;

/// The longest sides a thumbnail may be asked for; each is cached, so the set is small.
pub const THUMBNAIL_SIDES: [u32; 5] = [64, 128, 256, 512, 1024];
/// The longest side when none is asked for.
pub const DEFAULT_THUMBNAIL_SIDE: u32 = 256;
/// libjpeg's quality for thumbnails.
const QUALITY: f32 = 85.0;

/// A JPEG of `bytes`' picture whose longest side is at most `side` (a smaller picture keeps
/// its size), refused before decoding when its header declares more than `max_pixels`.
/// A JPEG is decoded at the smallest eighth of its size that still has `side` pixels along
/// its longest side ([`jpeg_eighths_for`]), then shrunk as any other picture.
pub fn thumbnail(bytes: &[u8], side: u32, max_pixels: u64) -> Result<Vec<u8>, EmbedError> {
    let options = DecodeOptions {
        max_pixels,
        apply_orientation: true,
    };
    let rgb = match crate::image_info(bytes)? {
        info if info.content_type == "image/jpeg" => decode_rgb_scaled(
            bytes,
            &options,
            jpeg_eighths_for(info.width, info.height, side),
        )?,
        _ => decode_rgb_with(bytes, &options)?,
    };
    let (w, h) = fit(rgb.width(), rgb.height(), side);
    let small = if (w, h) == rgb.dimensions() {
        rgb
    } else {
        resize_bicubic(&rgb, w, h)
    };
    encode_jpeg(&small)
}

/// The memory making a thumbnail of a `width` x `height` picture of `file_bytes` bytes takes at
/// most: the file, the decoded pixels (a JPEG's at the scale it is decoded at) and their
/// upright copy.
pub fn thumbnail_memory(is_jpeg: bool, width: u32, height: u32, file_bytes: u64, side: u32) -> u64 {
    let eighths = if is_jpeg {
        u64::from(jpeg_eighths_for(width, height, side))
    } else {
        8
    };
    let scaled = |n: u32| (u64::from(n) * eighths).div_ceil(8);
    scaled(width) * scaled(height) * 3 * 2 + file_bytes
}

/// The size of a `width` x `height` picture shrunk to fit in `side` x `side`, aspect kept,
/// never below one pixel.
fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= side {
        return (width, height);
    }
    let scale = f64::from(side) / f64::from(longest);
    let shrink = |n: u32| ((f64::from(n) * scale).round() as u32).clamp(1, side);
    (shrink(width), shrink(height))
}

fn encode_jpeg(img: &RgbImage) -> Result<Vec<u8>, EmbedError> {
    let encode = || -> std::io::Result<Vec<u8>> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_size(img.width() as usize, img.height() as usize);
        c.set_quality(QUALITY);
        let mut started = c.start_compress(Vec::new())?;
        started.write_scanlines(img.as_raw())?;
        started.finish()
    };
    // libjpeg reports errors by unwinding.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(encode)) {
        Ok(Ok(jpeg)) => Ok(jpeg),
        Ok(Err(e)) => Err(EmbedError::Image {
            reason: format!("cannot encode the thumbnail: {e}"),
        }),
        Err(_) => Err(EmbedError::Image {
            reason: "cannot encode the thumbnail: libjpeg failed".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn a_thumbnail_fits_the_side_keeps_the_aspect_and_is_a_jpeg() {
        let jpeg = thumbnail(&png(400, 100), 128, 1_000_000).expect("thumbnail");
        let info = crate::image_info(&jpeg).expect("a readable picture");
        assert_eq!(info.content_type, "image/jpeg");
        assert_eq!((info.width, info.height), (128, 32));
        // The red ramp survives the shrinking: dark at the left edge, bright at the right.
        let img = crate::decode_rgb(&jpeg).expect("decode");
        assert!(img.get_pixel(2, 16)[0] < 40 && img.get_pixel(125, 16)[0] > 215);
    }

    #[test]
    fn a_small_picture_keeps_its_size_and_a_huge_one_is_refused() {
        let jpeg = thumbnail(&png(40, 30), 256, 1_000_000).expect("thumbnail");
        let info = crate::image_info(&jpeg).expect("info");
        assert_eq!((info.width, info.height), (40, 30));
        let err = thumbnail(&png(200, 200), 64, 10_000).expect_err("over the pixel limit");
        assert!(err.to_string().contains("40000"), "{err}");
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, _| {
            image::Rgb([(x * 255 / width) as u8, 60, 200])
        });
        encode_jpeg(&img).expect("jpeg")
    }

    #[test]
    fn a_large_jpeg_is_decoded_at_a_reduced_scale_that_still_fills_the_side() {
        assert_eq!(jpeg_eighths_for(4000, 3000, 256), 1, "500 px at 1/8");
        assert_eq!(jpeg_eighths_for(4000, 3000, 1024), 4, "2000 px at 1/2");
        assert_eq!(jpeg_eighths_for(1000, 800, 256), 4, "500 px at 1/2");
        assert_eq!(
            jpeg_eighths_for(300, 200, 256),
            8,
            "smaller than 2x: full size"
        );
        assert_eq!(jpeg_eighths_for(100, 50, 256), 8, "smaller than the side");
        // What the decoder gives is what the estimate charged.
        let big = jpeg(2048, 1536);
        let options = DecodeOptions {
            max_pixels: 10_000_000,
            apply_orientation: true,
        };
        let scaled =
            decode_rgb_scaled(&big, &options, jpeg_eighths_for(2048, 1536, 128)).expect("decode");
        assert_eq!(scaled.dimensions(), (256, 192));
        assert_eq!(
            thumbnail_memory(true, 2048, 1536, big.len() as u64, 128),
            256 * 192 * 6 + big.len() as u64
        );
        assert_eq!(
            thumbnail_memory(false, 2048, 1536, 10, 128),
            2048 * 1536 * 6 + 10
        );
        let thumb = thumbnail(&big, 128, 10_000_000).expect("thumbnail");
        let info = crate::image_info(&thumb).expect("info");
        assert_eq!((info.width, info.height), (128, 96));
        let img = crate::decode_rgb(&thumb).expect("decode");
        assert!(img.get_pixel(2, 48)[0] < 40 && img.get_pixel(125, 48)[0] > 215);
    }

    #[test]
    fn sides_round_and_never_vanish() {
        assert_eq!(fit(1000, 1, 64), (64, 1));
        assert_eq!(fit(3, 2000, 64), (1, 64));
        assert_eq!(fit(640, 480, 256), (256, 192));
        assert_eq!(fit(256, 256, 256), (256, 256));
    }
}
