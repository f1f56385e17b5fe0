//! Fully connected layer.

use rand::Rng;
use rotor_engine::{Result, Tensor};

use crate::init::fan_in_uniform;
use crate::module::Module;
use crate::param::{Param, ParamKind, ParamVisitor, ParamVisitorMut, join_path};

/// `y = x W^T + b` over the last dimension: `[.., in] -> [.., out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Param,
    /// `[out]`, if the layer has a bias.
    pub bias: Option<Param>,
}

impl Linear {
    /// A layer initialised as PyTorch's `nn.Linear` (uniform in `±1/sqrt(in)`).
    ///
    /// # Errors
    /// If the sizes overflow.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let weight = fan_in_uniform(&[out_features, in_features], in_features, rng)?;
        let bias = if bias {
            Some(Param::new(
                &fan_in_uniform(&[out_features], in_features, rng)?,
                ParamKind::Bias,
            ))
        } else {
            None
        };
        Ok(Self {
            weight: Param::new(&weight, ParamKind::Weight),
            bias,
        })
    }

    /// The number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::value);
        x.linear(&self.weight.value(), bias.as_ref())
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        x.linear(self.weight.tensor(), self.bias.as_ref().map(Param::tensor))
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        f(&join_path(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join_path(prefix, "bias"), b);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        f(&join_path(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join_path(prefix, "bias"), b);
        }
    }
}
