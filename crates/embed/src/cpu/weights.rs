//! Reading checkpoint tensors into plain `f32` vectors by their checkpoint names.

use candle_nn::VarBuilder;

use super::math::Norm;
use crate::Precision;

/// A prefix of a checkpoint's tensor names, as `VarBuilder` has it, and the precision the
/// layers loaded from it compute in.
#[derive(Clone)]
pub(crate) struct Weights<'a> {
    vb: VarBuilder<'a>,
    precision: Precision,
}

impl std::fmt::Debug for Weights<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("prefix", &self.vb.prefix())
            .field("precision", &self.precision)
            .finish()
    }
}

impl<'a> Weights<'a> {
    pub fn new(vb: VarBuilder<'a>, precision: Precision) -> Self {
        Weights { vb, precision }
    }

    pub fn pp(&self, name: impl ToString) -> Weights<'a> {
        Weights {
            vb: self.vb.pp(name),
            precision: self.precision,
        }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn contains(&self, name: &str) -> bool {
        self.vb.contains_tensor(name)
    }

    /// The tensor `name` under this prefix, which must have `shape`, flattened row-major.
    pub fn get(&self, shape: &[usize], name: &str) -> candle_core::Result<Vec<f32>> {
        self.vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// The gain and shift of one layer norm.
#[derive(Clone, Debug)]
pub(crate) struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// `weight` and `bias` of a `torch.nn.LayerNorm(width, eps)`.
    pub fn load(w: &Weights<'_>, width: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(LayerNorm {
            gamma: w.get(&[width], "weight")?,
            beta: w.get(&[width], "bias")?,
            eps: eps as f32,
        })
    }

    pub fn norm(&self) -> Norm<'_> {
        Norm {
            gamma: &self.gamma,
            beta: &self.beta,
            eps: self.eps,
        }
    }
}
