//! Bicubic resampling exactly as Pillow does it for 8-bit images (`Image.resize` with
//! `Image.BICUBIC`, no reducing gap): a separable convolution whose kernel (a = -0.5) is
//! widened by the downscale factor (antialiasing), coefficients normalised in `f64` and then
//! quantised to 22-bit fixed point, a horizontal pass over only the rows the vertical pass
//! needs, then a vertical pass, each rounding and clamping to `u8`.
//!
//! Reference: Pillow `src/libImaging/Resample.c` (`precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`,
//! `ImagingResampleInner`). Matching it bit for bit is what makes our pixel tensors equal the
//! ones CLIP's reference preprocessing produces.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input index, how many inputs it reads, and their fixed-point
/// weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates `center ± support + 0.5` with a C cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(count) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *slot = w;
            ww += w;
        }
        for (x, w) in k.iter().enumerate().take(count) {
            let w = if ww != 0.0 { w / ww } else { *w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width` x `height` exactly as Pillow's bicubic filter does.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horiz = precompute(in_w, out_w);
    let vert = precompute(in_h, out_h);
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    let src = img.as_raw();

    // Horizontal pass over the rows the vertical pass reads.
    let (first_row, rows) = if need_horizontal {
        let first = vert.bounds.first().map_or(0, |b| b.0);
        let last = vert.bounds.last().map_or(in_h, |b| b.0 + b.1);
        (first, last - first)
    } else {
        (0, in_h)
    };
    let mut temp = vec![0u8; out_w.max(in_w) * rows * 3];
    let temp_w = if need_horizontal { out_w } else { in_w };
    if need_horizontal {
        for y in 0..rows {
            let row = &src[(y + first_row) * in_w * 3..(y + first_row + 1) * in_w * 3];
            for (xx, &(xmin, count)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + count];
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i64::from(p[c]) * i64::from(w);
                    }
                }
                for c in 0..3 {
                    temp[(y * temp_w + xx) * 3 + c] = clip8(acc[c]);
                }
            }
        }
    } else {
        temp[..src.len()].copy_from_slice(src);
    }
    if !need_vertical {
        temp.truncate(temp_w * rows * 3);
        return RgbImage::from_raw(width, height, temp)
            .unwrap_or_else(|| RgbImage::new(width, height));
    }
    // Vertical pass; bounds are relative to the first row the horizontal pass kept.
    let mut out = vec![0u8; out_w * out_h * 3];
    for (yy, &(ymin, count)) in vert.bounds.iter().enumerate() {
        let ymin = ymin - first_row;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + count];
        for xx in 0..out_w {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (y, &w) in k.iter().enumerate() {
                let p = &temp[((ymin + y) * temp_w + xx) * 3..((ymin + y) * temp_w + xx) * 3 + 3];
                for c in 0..3 {
                    acc[c] += i64::from(p[c]) * i64::from(w);
                }
            }
            for c in 0..3 {
                out[(yy * out_w + xx) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy_and_a_flat_image_stays_flat() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bicubic(&img, 7, 5), img);
        let flat = RgbImage::from_pixel(33, 17, image::Rgb([200, 10, 77]));
        let out = resize_bicubic(&flat, 11, 40);
        assert!(out.pixels().all(|p| p.0 == [200, 10, 77]));
    }

    #[test]
    fn kernel_weights_sum_to_one_in_fixed_point() {
        for (inp, out) in [(640, 224), (224, 224), (48, 224), (1000, 3)] {
            let c = precompute(inp, out);
            for (xx, &(_, count)) in c.bounds.iter().enumerate() {
                let sum: i64 = c.weights[xx * c.ksize..xx * c.ksize + count]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (sum - (1i64 << PRECISION_BITS)).abs() <= count as i64,
                    "{inp}->{out}"
                );
            }
        }
    }
}
