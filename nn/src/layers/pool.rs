//! Pooling and reshaping layers, which have no parameters.

use rotor_engine::{Result, Tensor};

use super::activation::stateless_module;
use crate::module::Module;
use crate::param::{ParamVisitor, ParamVisitorMut};

/// Max pooling over square windows.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Padding on each side (never wins the maximum).
    pub padding: usize,
}

impl MaxPool2d {
    /// A `kernel x kernel` pool with stride `kernel` and no padding (PyTorch's default).
    pub fn new(kernel: usize) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: 0,
        }
    }
}

/// Average pooling over square windows, padding counted.
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl AvgPool2d {
    /// A `kernel x kernel` pool with stride `kernel` and no padding.
    pub fn new(kernel: usize) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: 0,
        }
    }
}

/// The mean of each channel: `[N, C, H, W] -> [N, C]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalAvgPool;

/// `[N, ...] -> [N, product of the rest]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

stateless_module!(MaxPool2d, |self, x| {
    x.max_pool2d([self.kernel; 2], [self.stride; 2], [self.padding; 2])
});
stateless_module!(AvgPool2d, |self, x| {
    x.avg_pool2d([self.kernel; 2], [self.stride; 2], [self.padding; 2])
});
stateless_module!(GlobalAvgPool, |self, x| x.global_avg_pool2d());
stateless_module!(Flatten, |self, x| x.flatten(1));
