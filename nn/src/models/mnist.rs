//! `MnistNet`: the small convolutional network of the MNIST experiments.

use rand::Rng;
use rotor_engine::{Result, Tensor};

use crate::architecture::Architecture;
use crate::layers::{
    BatchNorm2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, Relu, RotatedRelu, Sequential,
};
use crate::module::{BufferVisitor, BufferVisitorMut, Module};
use crate::param::{ParamVisitor, ParamVisitorMut};

/// Which activation follows each hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The plain ReLU: the baseline, nothing to prune.
    Relu,
    /// The rotated ReLU with the paper's slope initialisation.
    Rotated,
}

impl Activation {
    /// The activation layer for `channels` channels.
    ///
    /// # Errors
    /// If the size overflows.
    pub fn layer(self, channels: usize, rng: &mut impl Rng) -> Result<Layer> {
        Ok(match self {
            Activation::Relu => Layer::Relu(Relu),
            Activation::Rotated => Layer::RotatedRelu(RotatedRelu::new(channels, rng)?),
        })
    }
}

/// conv 1->32 3x3, activation, conv 32->64 3x3, activation, max-pool 2, flatten (9216),
/// linear 128, activation, linear 10; for `[N, 1, 28, 28]` inputs, giving `[N, 10]` logits.
/// 24.0 MFLOP per image forward at full width.
///
/// Layer names: `conv1`, `act1`, `conv2`, `act2`, `pool`, `flatten`, `fc1`, `act3`, `fc2`.
#[derive(Clone, Debug)]
pub struct MnistNet {
    net: Sequential,
}

impl MnistNet {
    /// The network at full width (32, 64, 128 hidden channels/units).
    ///
    /// # Errors
    /// Never for these sizes; the constructors it calls are fallible in general.
    pub fn new(activation: Activation, rng: &mut impl Rng) -> Result<Self> {
        Self::with_widths(activation, [32, 64, 128], rng)
    }

    /// The same architecture with other widths for the two convolutions and the hidden
    /// linear layer (`[16, 32, 64]` is the "keep 50%" net).
    ///
    /// # Errors
    /// If a size overflows.
    pub fn with_widths(
        activation: Activation,
        widths: [usize; 3],
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let [c1, c2, hidden] = widths;
        // 28 -> 26 -> 24 after the two unpadded 3x3 convolutions, 12 after pooling.
        let flat = c2 * 12 * 12;
        let net = Sequential::new()
            .push("conv1", Conv2d::new(1, c1, 3, 1, 0, rng)?)
            .push("act1", activation.layer(c1, rng)?)
            .push("conv2", Conv2d::new(c1, c2, 3, 1, 0, rng)?)
            .push("act2", activation.layer(c2, rng)?)
            .push("pool", MaxPool2d::new(2))
            .push("flatten", Flatten)
            .push("fc1", Linear::new(flat, hidden, true, rng)?)
            .push("act3", activation.layer(hidden, rng)?)
            .push("fc2", Linear::new(hidden, 10, true, rng)?);
        Ok(Self { net })
    }

    /// The Network Slimming baseline (Liu et al. 2017): the same network with a batch norm
    /// after each hidden convolution and linear layer (which then have no bias) and plain
    /// ReLUs; the batch norms' scales are the channel gates that an L1 penalty drives
    /// towards zero.
    ///
    /// Layer names: `conv1`, `bn1`, `act1`, `conv2`, `bn2`, `act2`, `pool`, `flatten`,
    /// `fc1`, `bn3`, `act3`, `fc2`.
    ///
    /// # Errors
    /// If a size overflows.
    pub fn with_batch_norm(widths: [usize; 3], rng: &mut impl Rng) -> Result<Self> {
        let [c1, c2, hidden] = widths;
        let mut fc1 = Linear::new(c2 * 12 * 12, hidden, true, rng)?;
        fc1.bias = None;
        let net = Sequential::new()
            .push("conv1", Conv2d::new(1, c1, 3, 1, 0, rng)?.without_bias())
            .push("bn1", BatchNorm2d::new(c1)?)
            .push("act1", Relu)
            .push("conv2", Conv2d::new(c1, c2, 3, 1, 0, rng)?.without_bias())
            .push("bn2", BatchNorm2d::new(c2)?)
            .push("act2", Relu)
            .push("pool", MaxPool2d::new(2))
            .push("flatten", Flatten)
            .push("fc1", fc1)
            .push("bn3", BatchNorm2d::new(hidden)?)
            .push("act3", Relu)
            .push("fc2", Linear::new(hidden, 10, true, rng)?);
        Ok(Self { net })
    }

    /// The layers, for tools that work on a network's structure.
    pub fn as_sequential(&self) -> &Sequential {
        &self.net
    }

    /// The layers, mutably.
    pub fn as_sequential_mut(&mut self) -> &mut Sequential {
        &mut self.net
    }

    /// The layers, consuming the model.
    pub fn into_sequential(self) -> Sequential {
        self.net
    }
}

impl Module for MnistNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(x)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.net.forward_train(x)
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        self.net.visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        self.net.visit_params_mut(prefix, f);
    }

    fn visit_buffers(&self, prefix: &str, f: &mut BufferVisitor<'_>) {
        self.net.visit_buffers(prefix, f);
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut BufferVisitorMut<'_>) {
        self.net.visit_buffers_mut(prefix, f);
    }

    fn sequential_mut(&mut self) -> Option<&mut Sequential> {
        Some(&mut self.net)
    }

    fn architecture(&self) -> Option<Architecture> {
        self.net.architecture()
    }
}
