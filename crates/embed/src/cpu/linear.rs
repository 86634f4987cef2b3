//! A `torch.nn.Linear` layer: `y = x Wᵀ (+ b)`, the weight packed once at load for
//! [`super::packed`]'s `f32` kernel or quantised for [`super::int8`]'s, by the precision the
//! model runs at.

use super::int8::{self, QuantizedWeight};
use super::matmul::Output;
use super::packed::{self, Packed};
use super::weights::Weights;
use crate::Precision;

#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Vec<f32>,
}

#[derive(Clone, Debug)]
enum Weight {
    F32(Packed),
    Int8(QuantizedWeight),
}

impl Weight {
    fn new(w: &[f32], outputs: usize, inputs: usize, precision: Precision) -> Weight {
        match precision {
            Precision::Fp32 => Weight::F32(Packed::new(w, outputs, inputs)),
            Precision::Int8 => Weight::Int8(QuantizedWeight::new(w, outputs, inputs)),
        }
    }

    fn inputs(&self) -> usize {
        match self {
            Weight::F32(w) => w.inputs(),
            Weight::Int8(w) => w.inputs(),
        }
    }

    fn outputs(&self) -> usize {
        match self {
            Weight::F32(w) => w.outputs(),
            Weight::Int8(w) => w.outputs(),
        }
    }
}

impl Linear {
    /// `weight` (and `bias`, when `with_bias`) under `w`.
    pub fn load(
        w: &Weights<'_>,
        inputs: usize,
        outputs: usize,
        with_bias: bool,
    ) -> candle_core::Result<Self> {
        Self::stacked(w, &[""], inputs, outputs, with_bias)
    }

    /// Several layers under `w` (`names` below it; `""` is `w` itself) that read the same
    /// input, stacked into one whose outputs are theirs side by side: query, key and value
    /// become one product three times as wide.
    pub fn stacked(
        w: &Weights<'_>,
        names: &[&str],
        inputs: usize,
        outputs_each: usize,
        with_bias: bool,
    ) -> candle_core::Result<Self> {
        let mut weight = Vec::with_capacity(names.len() * outputs_each * inputs);
        let mut bias = Vec::with_capacity(names.len() * outputs_each);
        for name in names {
            let part = if name.is_empty() {
                w.clone()
            } else {
                w.pp(name)
            };
            weight.extend(part.get(&[outputs_each, inputs], "weight")?);
            if with_bias {
                bias.extend(part.get(&[outputs_each], "bias")?);
            }
        }
        let outputs = names.len() * outputs_each;
        bias.resize(outputs, 0.0);
        Ok(Linear {
            weight: Weight::new(&weight, outputs, inputs, w.precision()),
            bias,
        })
    }

    /// A layer from a weight already flattened to `(outputs, inputs)` (a convolution whose
    /// kernel covers its whole input patch), without bias.
    pub fn from_weight(
        weight: &[f32],
        inputs: usize,
        outputs: usize,
        precision: Precision,
    ) -> Linear {
        Linear {
            weight: Weight::new(weight, outputs, inputs, precision),
            bias: vec![0.0; outputs],
        }
    }

    pub fn outputs(&self) -> usize {
        self.weight.outputs()
    }

    /// The bias, which callers fuse into the element-wise pass that follows the product.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// `dst (=|+=) x Wᵀ` for `rows` rows of `x`, without the bias.
    pub fn product(&self, x: &[f32], rows: usize, dst: &mut [f32], output: Output, threads: usize) {
        let (k, n) = (self.weight.inputs(), self.weight.outputs());
        let (x, dst) = (&x[..rows * k], &mut dst[..rows * n]);
        let accumulate = output == Output::Accumulate;
        match &self.weight {
            Weight::F32(w) => packed::product(x, rows, w, dst, accumulate, threads),
            Weight::Int8(w) => int8::product_f32(x, rows, w, dst, accumulate, threads),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;

    use super::*;

    #[test]
    fn stacked_layers_give_their_outputs_side_by_side() {
        let t = |v: &[f32], shape: &[usize]| {
            Tensor::from_slice(v, shape, &Device::Cpu).expect("tensor")
        };
        // W (out, in) as checkpoints store it: a is 2 x 3, b is 1 x 3.
        let tensors = HashMap::from([
            (
                "a.weight".to_string(),
                t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]),
            ),
            ("a.bias".to_string(), t(&[0.5, -0.5], &[2])),
            (
                "b.weight".to_string(),
                t(&[0.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3]),
            ),
            ("b.bias".to_string(), t(&[1.0, 2.0], &[2])),
        ]);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let w = Weights::new(vb.clone(), Precision::Fp32);
        let ab = Linear::stacked(&w, &["a", "b"], 3, 2, true).expect("load");
        assert_eq!(ab.bias(), [0.5, -0.5, 1.0, 2.0]);
        let x = [1.0, 1.0, 2.0, 0.0, 1.0, 0.0];
        let want = [9.0, 21.0, 1.0, 1.0, 2.0, 5.0, 1.0, 0.0];
        let mut y = [0f32; 8];
        ab.product(&x, 2, &mut y, Output::Overwrite, 2);
        assert_eq!(y, want);
        assert!(Linear::stacked(&w, &["a", "missing"], 3, 2, true).is_err());
        // The same layers quantised: within the format's step of the exact answer.
        let ab = Linear::stacked(&Weights::new(vb, Precision::Int8), &["a", "b"], 3, 2, true)
            .expect("load");
        let mut y = [0f32; 8];
        ab.product(&x, 2, &mut y, Output::Overwrite, 2);
        for (got, want) in y.iter().zip(want) {
            assert!(
                (got - want).abs() <= 0.05 * want.max(1.0),
                "{got} vs {want}"
            );
        }
    }
}
