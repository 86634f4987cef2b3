//! A `torch.nn.Linear` layer: `y = x Wᵀ (+ b)`, with the weight kept as the checkpoint has it,
//! `(out, in)` row-major. Products of many rows go through `gemm` (which packs the weight,
//! a cost spread over the rows); products of a few rows stream the weight's rows directly
//! ([`super::skinny`]).

use super::matmul::{Output, View, ViewMut, matmul};
use super::skinny;

/// Up to this many rows, a product streams the weight rather than packing it for `gemm`.
/// Measured on MiniLM (AVX2, 2 threads): 10-18 % faster at 14 rows, 3 % at 25, even at 40.
const SKINNY_MAX_ROWS: usize = 32;
use super::weights::Weights;

#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// `weight` (and `bias`, when `with_bias`) under `w`.
    pub fn load(
        w: &Weights<'_>,
        inputs: usize,
        outputs: usize,
        with_bias: bool,
    ) -> candle_core::Result<Self> {
        let weight = w.get(&[outputs, inputs], "weight")?;
        let bias = if with_bias {
            w.get(&[outputs], "bias")?
        } else {
            vec![0.0; outputs]
        };
        Ok(Linear {
            weight,
            bias,
            inputs,
            outputs,
        })
    }

    /// A layer from a weight already flattened to `(outputs, inputs)` (a convolution whose
    /// kernel covers its whole input patch), without bias.
    pub fn from_weight(weight: Vec<f32>, inputs: usize, outputs: usize) -> Linear {
        assert_eq!(
            weight.len(),
            inputs * outputs,
            "weight is (outputs, inputs)"
        );
        Linear {
            weight,
            bias: vec![0.0; outputs],
            inputs,
            outputs,
        }
    }

    /// Several layers reading the same input, stacked into one (query, key and value become
    /// one product three times as wide).
    pub fn stack(parts: &[Linear]) -> Linear {
        let inputs = parts[0].inputs;
        assert!(
            parts.iter().all(|p| p.inputs == inputs),
            "stacked layers share their input"
        );
        Linear {
            weight: parts
                .iter()
                .flat_map(|p| p.weight.iter().copied())
                .collect(),
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            inputs,
            outputs: parts.iter().map(|p| p.outputs).sum(),
        }
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The bias, which callers fuse into the element-wise pass that follows the product.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// `dst (=|+=) x Wᵀ` for `rows` rows of `x`, without the bias.
    pub fn product(&self, x: &[f32], rows: usize, dst: &mut [f32], output: Output, threads: usize) {
        if rows <= SKINNY_MAX_ROWS {
            return skinny::product(
                &x[..rows * self.inputs],
                rows,
                &self.weight,
                self.inputs,
                &mut dst[..rows * self.outputs],
                output == Output::Accumulate,
                threads,
            );
        }
        matmul(
            ViewMut::rows(&mut dst[..rows * self.outputs], rows, self.outputs),
            View::rows(&x[..rows * self.inputs], rows, self.inputs),
            View::transposed(&self.weight, self.outputs, self.inputs),
            output,
            threads,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_layers_give_their_outputs_side_by_side_at_every_size() {
        // W (out, in) as checkpoints store it: a is 2 x 3, b is 1 x 3.
        let a = Linear::from_weight(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2);
        let b = Linear::from_weight(vec![0.0, 1.0, 0.0], 3, 1);
        let ab = Linear::stack(&[a, b]);
        for rows in [2, SKINNY_MAX_ROWS + 1] {
            let x: Vec<f32> = [1.0, 1.0, 2.0, 0.0, 1.0, 0.0]
                .iter()
                .copied()
                .cycle()
                .take(rows * 3)
                .collect();
            let mut y = vec![0f32; rows * 3];
            ab.product(&x, rows, &mut y, Output::Overwrite, 2);
            let want: Vec<f32> = [9.0, 21.0, 1.0, 2.0, 5.0, 1.0]
                .iter()
                .copied()
                .cycle()
                .take(rows * 3)
                .collect();
            assert_eq!(y, want, "{rows} rows");
        }
    }
}
