//! L2 normalisation of embedding rows, the last step of every encoder.

use candle_core::{D, Tensor};

/// Each row of `x` divided by its L2 norm (clamped away from zero), as plain vectors.
pub(crate) fn normalize_rows(x: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let norms = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norms)?.to_vec2::<f32>()
}
