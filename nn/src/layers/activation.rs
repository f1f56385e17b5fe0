//! Activation layers: ReLU, GELU and their rotated forms with a learnable slope per channel.

use rand::Rng;
use rotor_engine::{Result, Tensor};

use crate::init::rotated_slopes;
use crate::module::Module;
use crate::param::{Param, ParamKind, ParamVisitor, ParamVisitorMut, join_path};

/// `max(0, x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

/// GELU, exact form.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gelu;

macro_rules! stateless_module {
    ($ty:ty, |$this:ident, $x:ident| $body:expr) => {
        impl Module for $ty {
            fn forward(&$this, $x: &Tensor) -> Result<Tensor> {
                $body
            }

            fn forward_train(&mut $this, $x: &Tensor) -> Result<Tensor> {
                $body
            }

            fn visit_params(&self, _: &str, _: &mut ParamVisitor<'_>) {}

            fn visit_params_mut(&mut self, _: &str, _: &mut ParamVisitorMut<'_>) {}
        }
    };
}
pub(crate) use stateless_module;

stateless_module!(Relu, |self, x| Ok(x.relu()));
stateless_module!(Gelu, |self, x| Ok(x.gelu()));

/// The rotated ReLU `y = a_c * max(0, x)`, one learnable slope `a_c` per channel of an
/// `[N, C, ...]` input (per unit after a linear layer, `[N, C]`).
///
/// A channel whose slope training drives to (near) zero outputs (near) zero: it is dead
/// and can be pruned with the filter that feeds it.
#[derive(Clone, Debug)]
pub struct RotatedRelu {
    /// The slopes `a`, `[C]`.
    pub slope: Param,
}

/// The rotated GELU `y = a_c * GELU(x)`, one learnable slope per channel (for the MLP
/// blocks of a Transformer).
#[derive(Clone, Debug)]
pub struct RotatedGelu {
    /// The slopes `a`, `[C]`.
    pub slope: Param,
}

macro_rules! rotated_module {
    ($ty:ident, $op:ident) => {
        impl $ty {
            /// Slopes drawn with the paper's initialisation (`|a|` in `[0.700, 1.428]`,
            /// either sign with probability 1/2).
            ///
            /// # Errors
            /// If the size overflows.
            pub fn new(channels: usize, rng: &mut impl Rng) -> Result<Self> {
                let slopes = Tensor::from_vec(rotated_slopes(channels, rng), &[channels])?;
                Ok(Self::with_slopes(&slopes))
            }

            /// Given slopes (a `[C]` tensor).
            pub fn with_slopes(slopes: &Tensor) -> Self {
                Self {
                    slope: Param::new(slopes, ParamKind::Slope),
                }
            }

            /// The number of channels.
            pub fn channels(&self) -> usize {
                self.slope.shape()[0]
            }
        }

        impl Module for $ty {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$op(&self.slope.value())
            }

            fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
                x.$op(self.slope.tensor())
            }

            fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
                f(&join_path(prefix, "slope"), &self.slope);
            }

            fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
                f(&join_path(prefix, "slope"), &mut self.slope);
            }
        }
    };
}

rotated_module!(RotatedRelu, rotated_relu);
rotated_module!(RotatedGelu, rotated_gelu);
