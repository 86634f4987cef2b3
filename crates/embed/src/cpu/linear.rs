//! A `torch.nn.Linear` layer: `y = x Wᵀ (+ b)`, with the weight kept as the checkpoint has it,
//! `(out, in)` row-major, and read transposed in place by the product.

use super::matmul::{Output, View, ViewMut, matmul};
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
        matmul(
            ViewMut::rows(&mut dst[..rows * self.outputs], rows, self.outputs),
            View::rows(&x[..rows * self.inputs], rows, self.inputs),
            View::transposed(&self.weight, self.outputs, self.inputs),
            output,
            threads,
        );
    }
}
