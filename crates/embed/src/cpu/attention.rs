//! Multi-head self-attention over packed sequences: each sequence attends only to its own
//! rows, so texts of different lengths share a batch without padding or masks.

use rayon::prelude::*;

use super::Packing;
use super::math::softmax_rows;
use super::matmul::{Output, View, ViewMut, matmul};

/// `ctx` (`tokens x hidden`) from the fused `qkv` buffer (`tokens x 3·hidden`: queries, keys,
/// values, each `heads` blocks of `hidden / heads` columns), with scores scaled by
/// `1/√head_dim`. `causal`: a row sees only itself and the rows before it (CLIP's text tower).
pub(crate) fn self_attention(
    qkv: &[f32],
    ctx: &mut [f32],
    packing: &Packing,
    hidden: usize,
    heads: usize,
    causal: bool,
) {
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let stride = 3 * hidden;
    // One mutable block of `ctx` per sequence, so sequences run in parallel.
    let mut blocks = Vec::with_capacity(packing.spans.len());
    let mut rest = &mut ctx[..packing.tokens() * hidden];
    for &(start, len) in &packing.spans {
        let (block, tail) = rest.split_at_mut(len * hidden);
        blocks.push((start, len, block));
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(start, len, block)| {
        let mut scores = vec![0f32; len * len];
        let base = &qkv[start * stride..(start + len) * stride];
        for h in 0..heads {
            let q = View::new(&base[h * d..], len, d, stride, 1);
            let k_t = View::new(&base[hidden + h * d..], d, len, 1, stride);
            let v = View::new(&base[2 * hidden + h * d..], len, d, stride, 1);
            matmul(
                ViewMut::rows(&mut scores, len, len),
                q,
                k_t,
                Output::Overwrite,
                1,
            );
            softmax_rows(&mut scores, len, scale, causal);
            matmul(
                ViewMut::new(&mut block[h * d..], len, d, hidden),
                View::rows(&scores, len, len),
                v,
                Output::Overwrite,
                1,
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention of one sequence computed from the definition, in f64.
    fn reference(qkv: &[f32], len: usize, hidden: usize, heads: usize, causal: bool) -> Vec<f64> {
        let d = hidden / heads;
        let mut out = vec![0f64; len * hidden];
        for h in 0..heads {
            for i in 0..len {
                let seen = if causal { i + 1 } else { len };
                let scores: Vec<f64> = (0..seen)
                    .map(|j| {
                        (0..d)
                            .map(|p| {
                                qkv[i * 3 * hidden + h * d + p] as f64
                                    * qkv[j * 3 * hidden + hidden + h * d + p] as f64
                            })
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for p in 0..d {
                    out[i * hidden + h * d + p] = (0..seen)
                        .map(|j| {
                            (scores[j] - m).exp() / z
                                * qkv[j * 3 * hidden + 2 * hidden + h * d + p] as f64
                        })
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn packed_sequences_attend_only_to_themselves() {
        let (hidden, heads) = (8, 2);
        let lens = [3usize, 1, 5];
        let packing = Packing::from_lengths(lens);
        let tokens = packing.tokens();
        let qkv: Vec<f32> = (0..tokens * 3 * hidden)
            .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
            .collect();
        for causal in [false, true] {
            let mut ctx = vec![0f32; tokens * hidden];
            self_attention(&qkv, &mut ctx, &packing, hidden, heads, causal);
            for &(start, len) in &packing.spans {
                let want = reference(&qkv[start * 3 * hidden..], len, hidden, heads, causal);
                for (got, want) in ctx[start * hidden..(start + len) * hidden]
                    .iter()
                    .zip(&want)
                {
                    assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
                }
            }
        }
    }
}
