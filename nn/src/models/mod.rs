//! Ready-made models.

mod mnist;
mod resnet;
mod vgg;

pub use mnist::{Activation, MnistNet};
pub use resnet::cifar_resnet;
pub use vgg::cifar_vgg;

use rand::Rng;
use rotor_engine::Result;

use crate::layers::Conv2d;

/// A square convolution without bias (a batch norm follows it), padded by half the
/// kernel so that stride 1 keeps the size.
fn same_conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    rng: &mut impl Rng,
) -> Result<Conv2d> {
    Conv2d::options(in_channels, out_channels, kernel)
        .stride(stride)
        .padding(kernel / 2)
        .bias(false)
        .build(rng)
}
