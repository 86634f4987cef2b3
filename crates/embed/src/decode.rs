//! Image bytes to the 8-bit RGB picture CLIP's preprocessing starts from, pixel for pixel what
//! transformers gets from Pillow: `Image.open(f).convert("RGB")`.
//!
//! - JPEG is decoded by libjpeg (the `mozjpeg` crate: libjpeg-turbo's decoder, accurate integer
//!   IDCT, fancy upsampling), the library Pillow links, so the pixels are identical; CMYK and
//!   YCCK JPEGs are converted as Pillow does (Adobe inversion, `cmyk2rgb`).
//! - PNG, WebP and GIF go through the `image` crate, whose decoders are lossless and exact.
//! - 16-bit PNGs follow Pillow: colour and grey-with-alpha keep the high byte of each sample;
//!   plain 16-bit grey is Pillow's mode `I;16`, whose conversion to RGB clamps at 255.
//! - Transparency is composited onto white ([`crate::preprocess::to_rgb`]).

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, RgbaImage};

use crate::EmbedError;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: larger pictures are refused before they are decoded (a
/// small file can declare an enormous canvas).
pub const MAX_PIXELS: u64 = 89_478_485;

/// How an uploaded picture is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Pictures whose header declares more pixels are refused before any decoding.
    pub max_pixels: u64,
    /// Turn the picture upright as its EXIF orientation says (what photo viewers show).
    pub apply_orientation: bool,
}

impl DecodeOptions {
    /// Exactly what the reference sees: `Image.open(f).convert("RGB")`, Pillow's pixel limit,
    /// EXIF orientation ignored.
    pub const REFERENCE: DecodeOptions = DecodeOptions {
        max_pixels: MAX_PIXELS,
        apply_orientation: false,
    };
}

impl Default for DecodeOptions {
    /// The gateway's default: 40 megapixels, upright as shot.
    fn default() -> Self {
        DecodeOptions {
            max_pixels: 40_000_000,
            apply_orientation: true,
        }
    }
}

/// What the header of an image says, read without decoding its pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// `image/jpeg`, `image/png`, `image/webp` or `image/gif`: what the bytes are.
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The type the magic number of `bytes` declares, if it is one of the four accepted.
pub fn sniff_content_type(bytes: &[u8]) -> Option<&'static str> {
    match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Some("image/jpeg"),
        ImageFormat::Png => Some("image/png"),
        ImageFormat::WebP => Some("image/webp"),
        ImageFormat::Gif => Some("image/gif"),
        _ => None,
    }
}

/// Type and stored dimensions from the header only (EXIF orientation not applied).
pub fn image_info(bytes: &[u8]) -> Result<ImageInfo, EmbedError> {
    let content_type = sniff_content_type(bytes)
        .ok_or_else(|| invalid("not a JPEG, PNG, WebP or GIF image".into()))?;
    let (width, height) = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => jpeg::dimensions(bytes)?,
        Ok(format) => image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| invalid(e.to_string()))?,
        Err(e) => return Err(invalid(e.to_string())),
    };
    if width == 0 || height == 0 {
        return Err(invalid("the image is empty (0 pixels)".into()));
    }
    Ok(ImageInfo {
        content_type,
        width,
        height,
    })
}

/// Decodes an uploaded image into RGB as the reference does.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, EmbedError> {
    decode_rgb_with(bytes, &DecodeOptions::REFERENCE)
}

/// Decodes an uploaded image into RGB: the first frame of an animation, transparency on white,
/// upright when `options` asks for it, and never more pixels than `options` allows.
pub fn decode_rgb_with(bytes: &[u8], options: &DecodeOptions) -> Result<RgbImage, EmbedError> {
    decode_rgb_scaled(bytes, options, 8)
}

/// The eighths of its size a JPEG is decoded at to give a picture whose longest side is at
/// least `side` (libjpeg scales while it decodes, so a thumbnail of a large photograph
/// never holds the full-size pixels): 1, 2, 4 or 8.
pub fn jpeg_eighths_for(width: u32, height: u32, side: u32) -> u8 {
    let longest = u64::from(width.max(height));
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| (longest * u64::from(n)).div_ceil(8) >= u64::from(side))
        .unwrap_or(8)
}

/// As [`decode_rgb_with`], a JPEG decoded at `eighths` / 8 of its size (8: full size; other
/// formats are always decoded at full size).
pub fn decode_rgb_scaled(
    bytes: &[u8],
    options: &DecodeOptions,
    eighths: u8,
) -> Result<RgbImage, EmbedError> {
    let format = image::guess_format(bytes)
        .map_err(|_| invalid("not a JPEG, PNG, WebP or GIF image".into()))?;
    let (rgb, orientation) = match format {
        ImageFormat::Jpeg => jpeg::decode(bytes, options.max_pixels, eighths.clamp(1, 8))?,
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif => {
            let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(options.max_pixels.saturating_mul(8));
            reader.limits(limits);
            let (w, h) = reader
                .into_dimensions()
                .map_err(|e| invalid(e.to_string()))?;
            check_size(w, h, options.max_pixels)?;
            let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
            reader.no_limits();
            let mut decoder = reader.into_decoder().map_err(|e| invalid(e.to_string()))?;
            // A broken EXIF block only loses the rotation, never the picture.
            let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
            // For GIF, animated WebP and APNG this is the first frame.
            let img = DynamicImage::from_decoder(decoder).map_err(|e| invalid(e.to_string()))?;
            (crate::preprocess::to_rgb(&eight_bit(img)), orientation)
        }
        other => {
            return Err(invalid(format!(
                "{other:?} images are not supported (JPEG, PNG, WebP or GIF)"
            )));
        }
    };
    if !options.apply_orientation || orientation == Orientation::NoTransforms {
        return Ok(rgb);
    }
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

fn invalid(reason: String) -> EmbedError {
    EmbedError::Image { reason }
}

fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), EmbedError> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(invalid("the image is empty (0 pixels)".into()));
    }
    if pixels > max_pixels {
        return Err(invalid(format!(
            "{width}x{height} is {pixels} pixels, more than the {max_pixels} allowed"
        )));
    }
    Ok(())
}

/// 16-bit pictures as Pillow opens them (see the module docs); 8-bit ones unchanged.
fn eight_bit(img: DynamicImage) -> DynamicImage {
    let high = |v: u16| (v >> 8) as u8;
    match img {
        DynamicImage::ImageLuma16(grey) => DynamicImage::ImageLuma8(image::GrayImage::from_fn(
            grey.width(),
            grey.height(),
            |x, y| image::Luma([grey.get_pixel(x, y)[0].min(255) as u8]),
        )),
        DynamicImage::ImageLumaA16(la) => {
            DynamicImage::ImageRgba8(RgbaImage::from_fn(la.width(), la.height(), |x, y| {
                let [l, a] = la.get_pixel(x, y).0;
                image::Rgba([high(l), high(l), high(l), high(a)])
            }))
        }
        DynamicImage::ImageRgb16(rgb) => {
            DynamicImage::ImageRgb8(RgbImage::from_fn(rgb.width(), rgb.height(), |x, y| {
                image::Rgb(rgb.get_pixel(x, y).0.map(high))
            }))
        }
        DynamicImage::ImageRgba16(rgba) => {
            DynamicImage::ImageRgba8(RgbaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Rgba(rgba.get_pixel(x, y).0.map(high))
            }))
        }
        other => other,
    }
}

mod jpeg {
    use image::RgbImage;
    use image::metadata::Orientation;
    use mozjpeg::decompress::DecompressBuilder;
    use mozjpeg::{ColorSpace, Marker};

    use super::{check_size, invalid};
    use crate::EmbedError;

    /// libjpeg reports fatal errors by unwinding out of the decoder; they are caught here and
    /// become an ordinary error.
    pub(super) fn decode(
        bytes: &[u8],
        max_pixels: u64,
        eighths: u8,
    ) -> Result<(RgbImage, Orientation), EmbedError> {
        caught(|| decode_inner(bytes, max_pixels, eighths))
    }

    /// Width and height from the frame header.
    pub(super) fn dimensions(bytes: &[u8]) -> Result<(u32, u32), EmbedError> {
        caught(|| {
            let d = DecompressBuilder::new()
                .from_mem(bytes)
                .map_err(|e| invalid(format!("corrupt JPEG: {e}")))?;
            let (w, h) = d.size();
            Ok((
                u32::try_from(w).unwrap_or(u32::MAX),
                u32::try_from(h).unwrap_or(u32::MAX),
            ))
        })
    }

    fn caught<T>(f: impl FnOnce() -> Result<T, EmbedError>) -> Result<T, EmbedError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(payload) => {
                let reason = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "libjpeg failed".into());
                Err(invalid(format!("corrupt JPEG: {reason}")))
            }
        }
    }

    fn decode_inner(
        bytes: &[u8],
        max_pixels: u64,
        eighths: u8,
    ) -> Result<(RgbImage, Orientation), EmbedError> {
        let io = |e: std::io::Error| invalid(format!("corrupt JPEG: {e}"));
        let mut d = DecompressBuilder::new()
            .with_markers(&[Marker::APP(1), Marker::APP(14)])
            .from_mem(bytes)
            .map_err(io)?;
        let (w, h) = d.size();
        check_size(
            u32::try_from(w).unwrap_or(u32::MAX),
            u32::try_from(h).unwrap_or(u32::MAX),
            max_pixels,
        )?;
        let orientation = d
            .markers()
            .find_map(|m| {
                (m.marker == Marker::APP(1))
                    .then(|| m.data.strip_prefix(b"Exif\0\0"))
                    .flatten()
                    .and_then(Orientation::from_exif_chunk)
            })
            .unwrap_or(Orientation::NoTransforms);
        let too_big = || invalid(format!("{w}x{h} does not fit in memory"));
        if eighths < 8 {
            d.scale(eighths);
        }
        match d.color_space() {
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
                // Pillow reads Adobe CMYK as inverted ("CMYK;I"), as Photoshop writes it.
                let adobe = d
                    .markers()
                    .any(|m| m.marker == Marker::APP(14) && m.data.starts_with(b"Adobe"));
                let mut started = d.to_colorspace(ColorSpace::JCS_CMYK).map_err(io)?;
                let (w, h) = (started.width(), started.height());
                let cmyk = started.read_scanlines::<[u8; 4]>().map_err(io)?;
                started.finish().map_err(io)?;
                let rgb: Vec<u8> = cmyk
                    .iter()
                    .flat_map(|&px| cmyk_to_rgb(if adobe { px.map(|v| 255 - v) } else { px }))
                    .collect();
                RgbImage::from_raw(w as u32, h as u32, rgb)
                    .map(|img| (img, orientation))
                    .ok_or_else(too_big)
            }
            _ => {
                let mut started = d.rgb().map_err(io)?;
                let (w, h) = (started.width(), started.height());
                let rgb = started.read_scanlines::<u8>().map_err(io)?;
                started.finish().map_err(io)?;
                RgbImage::from_raw(w as u32, h as u32, rgb)
                    .map(|img| (img, orientation))
                    .ok_or_else(too_big)
            }
        }
    }

    /// Pillow's `cmyk2rgb`: each channel is `(255 - k) - ink * (255 - k) / 255`, with Pillow's
    /// rounded division by 255.
    fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
        let nk = 255 - u32::from(k);
        let channel = |ink: u8| {
            let tmp = u32::from(ink) * nk + 128;
            let product = ((tmp >> 8) + tmp) >> 8;
            nk.saturating_sub(product) as u8
        };
        [channel(c), channel(m), channel(y)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncated_files_are_clear_errors() {
        let err = decode_rgb(b"hello, world").expect_err("garbage");
        assert!(err.to_string().contains("not a JPEG, PNG"), "{err}");

        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/photo.jpg"
        ))
        .expect("read");
        let err = decode_rgb(&jpeg[..200]).expect_err("truncated header");
        assert!(matches!(err, EmbedError::Image { .. }), "{err}");
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/palette.png"
        ))
        .expect("read");
        let err = decode_rgb(&png[..png.len() / 2]).expect_err("truncated png");
        assert!(matches!(err, EmbedError::Image { .. }), "{err}");
    }

    #[test]
    fn a_huge_declared_canvas_is_refused_before_decoding() {
        // A PNG declaring 20000 x 20000 RGB pixels, with one empty deflate stream behind it.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [
            &20_000u32.to_be_bytes()[..],
            &20_000u32.to_be_bytes()[..],
            &[8, 2, 0, 0, 0],
        ]
        .concat();
        for (kind, data) in [
            (&b"IHDR"[..], &ihdr[..]),
            (b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
            (b"IEND", &[]),
        ] {
            let body = [kind, data].concat();
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(&body);
            png.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        let err = decode_rgb(&png).expect_err("too many pixels");
        assert!(err.to_string().contains("400000000 pixels"), "{err}");
    }

    /// photo.jpg with an EXIF block saying "rotate 90° clockwise to view" (orientation 6).
    fn rotated_jpeg() -> Vec<u8> {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/photo.jpg"
        ))
        .expect("read");
        // Big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, 1, value 6.
        let mut tiff = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        let payload = [&b"Exif\0\0"[..], &tiff].concat();
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied_when_asked() {
        let bytes = rotated_jpeg();
        let stored = decode_rgb(&bytes).expect("reference decode ignores EXIF");
        let upright = decode_rgb_with(&bytes, &DecodeOptions::default()).expect("upright");
        assert_eq!(
            (upright.width(), upright.height()),
            (stored.height(), stored.width())
        );
        assert_eq!(upright, image::imageops::rotate90(&stored));
        let info = image_info(&bytes).expect("info");
        assert_eq!((info.width, info.height), stored.dimensions());
        assert_eq!(info.content_type, "image/jpeg");
    }

    #[test]
    fn an_animation_gives_its_first_frame() {
        use image::codecs::gif::GifEncoder;
        use image::{Delay, Frame, Rgba};
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            for colour in [[200, 0, 0, 255], [0, 0, 200, 255]] {
                let buf = RgbaImage::from_pixel(8, 6, Rgba(colour));
                enc.encode_frame(Frame::from_parts(
                    buf,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .expect("frame");
            }
        }
        let rgb = decode_rgb_with(&bytes, &DecodeOptions::default()).expect("decode");
        assert_eq!(rgb.dimensions(), (8, 6));
        let px = rgb.get_pixel(3, 3).0;
        assert!(px[0] > 150 && px[2] < 50, "first frame is red, got {px:?}");
    }

    #[test]
    fn the_pixel_limit_is_configurable() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/clipo/fixtures/images/landscape_rgb.png"
        ))
        .expect("read");
        let info = image_info(&png).expect("info");
        let pixels = u64::from(info.width) * u64::from(info.height);
        let tight = DecodeOptions {
            max_pixels: pixels - 1,
            ..DecodeOptions::default()
        };
        let err = decode_rgb_with(&png, &tight).expect_err("over the limit");
        assert!(err.to_string().contains("allowed"), "{err}");
        let exact = DecodeOptions {
            max_pixels: pixels,
            ..DecodeOptions::default()
        };
        assert!(decode_rgb_with(&png, &exact).is_ok());
        assert_eq!(sniff_content_type(&png), Some("image/png"));
        assert_eq!(sniff_content_type(b"GIF89a......"), Some("image/gif"));
        assert_eq!(sniff_content_type(b"%PDF-1.7"), None);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
