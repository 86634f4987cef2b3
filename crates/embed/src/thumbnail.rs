//! Small upright JPEG previews of uploaded pictures, for grids of results: decoded as the
//! gateway decodes uploads (EXIF orientation applied, transparency on white, the pixel limit
//! checked before decoding), shrunk with Pillow's bicubic filter, and encoded by libjpeg.

use image::RgbImage;

use crate::EmbedError;
use crate::decode::{DecodeOptions, decode_rgb_with};
use crate::resample::resize_bicubic;

/// The longest sides a thumbnail may be asked for; each is cached, so the set is small.
pub const THUMBNAIL_SIDES: [u32; 5] = [64, 128, 256, 512, 1024];
/// The longest side when none is asked for.
pub const DEFAULT_THUMBNAIL_SIDE: u32 = 256;
/// libjpeg's quality for thumbnails.
const QUALITY: f32 = 85.0;

/// A JPEG of `bytes`' picture whose longest side is at most `side` (a smaller picture keeps
/// its size), refused before decoding when its header declares more than `max_pixels`.
pub fn thumbnail(bytes: &[u8], side: u32, max_pixels: u64) -> Result<Vec<u8>, EmbedError> {
    let rgb = decode_rgb_with(
        bytes,
        &DecodeOptions {
            max_pixels,
            apply_orientation: true,
        },
    )?;
    let (w, h) = fit(rgb.width(), rgb.height(), side);
    let small = if (w, h) == rgb.dimensions() {
        rgb
    } else {
        resize_bicubic(&rgb, w, h)
    };
    encode_jpeg(&small)
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

    #[test]
    fn sides_round_and_never_vanish() {
        assert_eq!(fit(1000, 1, 64), (64, 1));
        assert_eq!(fit(3, 2000, 64), (1, 64));
        assert_eq!(fit(640, 480, 256), (256, 192));
        assert_eq!(fit(256, 256, 256), (256, 256));
    }
}
