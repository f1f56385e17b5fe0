//! The VGG networks of the CIFAR experiments, as Network Slimming (Liu et al. 2017) trains
//! them.

use rand::Rng;
use rotor_engine::{Error, Result};

use super::mnist::Activation;
use super::same_conv;
use crate::layers::{BatchNorm2d, GlobalAvgPool, Linear, MaxPool2d, Sequential};

/// Output channels of the convolutions of each stage; a 2x2 max pool ends every stage
/// but the last.
const STAGES_16: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];
const STAGES_19: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256, 256],
    &[512, 512, 512, 512],
    &[512, 512, 512, 512],
];

/// VGG-16 or VGG-19 with batch norm for small images, as Network Slimming trains it on
/// CIFAR: 3x3 convolutions without bias, each followed by a batch norm and the
/// activation, a 2x2 max pool after each of the first four stages, global average
/// pooling and one linear classifier. On 3x32x32 inputs VGG-19 has 20.04 M parameters
/// and 797 M FLOPs (Network Slimming's table 1), VGG-16 14.7 M and 627 M.
///
/// The pooling at the end averages whatever size is left (2x2 at 32x32, where it equals
/// Network Slimming's `AvgPool2d(2)`), so inputs of 16x16 and more work. Layer names:
/// `conv{i}`, `bn{i}`, `act{i}` for the `i`-th convolution from 1, `pool{s}` after stage
/// `s`, then `pool` and `fc`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `depth` is not 16 or 19, or `in_channels` or `classes`
/// is 0.
pub fn cifar_vgg(
    depth: usize,
    activation: Activation,
    in_channels: usize,
    classes: usize,
    rng: &mut impl Rng,
) -> Result<Sequential> {
    let stages = match depth {
        16 => STAGES_16,
        19 => STAGES_19,
        _ => return Err(invalid(depth, in_channels, classes)),
    };
    if in_channels == 0 || classes == 0 {
        return Err(invalid(depth, in_channels, classes));
    }
    let mut net = Sequential::new();
    let mut width = in_channels;
    let mut index = 0;
    for (stage, widths) in stages.iter().enumerate() {
        for &out in *widths {
            index += 1;
            net = net
                .push(format!("conv{index}"), same_conv(width, out, 3, 1, rng)?)
                .push(format!("bn{index}"), BatchNorm2d::new(out)?)
                .push(format!("act{index}"), activation.layer(out, rng)?);
            width = out;
        }
        if stage + 1 < stages.len() {
            net = net.push(format!("pool{}", stage + 1), MaxPool2d::new(2));
        }
    }
    Ok(net
        .push("pool", GlobalAvgPool)
        .push("fc", Linear::new(width, classes, true, rng)?))
}

fn invalid(depth: usize, in_channels: usize, classes: usize) -> Error {
    Error::InvalidArgument {
        op: "cifar_vgg",
        reason: format!(
            "depth {depth} must be 16 or 19, and the input channels ({in_channels}) and \
             classes ({classes}) at least 1"
        ),
    }
}
