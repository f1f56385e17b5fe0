//! 2-D convolution layer.

use rand::Rng;
use rotor_engine::{Result, Tensor};

use crate::init::fan_in_uniform;
use crate::module::Module;
use crate::param::{Param, ParamKind, ParamVisitor, ParamVisitorMut, join_path};

/// A 2-D convolution over `[N, C, H, W]` (PyTorch's `nn.Conv2d` without groups or dilation).
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, kernel_h, kernel_w]`.
    pub weight: Param,
    /// `[out_channels]`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Step between windows, `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Zeros added on each side, `[vertical, horizontal]`.
    pub padding: [usize; 2],
}

impl Conv2d {
    /// A square-kernel convolution initialised as PyTorch's (uniform in `±1/sqrt(fan_in)`,
    /// `fan_in = in_channels * kernel * kernel`), with a bias.
    ///
    /// # Errors
    /// If the sizes overflow.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let fan_in = in_channels * kernel * kernel;
        let w = fan_in_uniform(&[out_channels, in_channels, kernel, kernel], fan_in, rng)?;
        let b = fan_in_uniform(&[out_channels], fan_in, rng)?;
        Ok(Self {
            weight: Param::new(&w, ParamKind::Weight),
            bias: Some(Param::new(&b, ParamKind::Bias)),
            stride: [stride; 2],
            padding: [padding; 2],
        })
    }

    /// The same layer without a bias (as before a batch norm).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::value);
        x.conv2d(
            &self.weight.value(),
            bias.as_ref(),
            self.stride,
            self.padding,
        )
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.conv2d(self.weight.tensor(), bias, self.stride, self.padding)
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
