//! The residual networks of the CIFAR experiments (He et al. 2016, section 4.2).

use rand::Rng;
use rotor_engine::{Error, Result};

use super::mnist::Activation;
use super::same_conv as conv;
use crate::layers::{BatchNorm2d, GlobalAvgPool, Linear, Residual, Sequential};

/// Channels of the three stages; each stage after the first halves the resolution.
const STAGE_WIDTHS: [usize; 3] = [16, 32, 64];

/// A CIFAR-style residual network of `depth` layers: `depth = 6n + 2` (20, 32, 44, 56,
/// 110, ...), a 3x3 convolution to 16 channels, three stages of `n` basic blocks with 16,
/// 32 and 64 channels (the second and third start with a stride of 2), global average
/// pooling and a linear classifier. Every convolution is followed by a batch norm and has
/// no bias; the activation follows the first convolution, the first convolution of each
/// block, and each block's sum.
///
/// Shortcuts are option B of the paper: identity where a block keeps its width and
/// resolution, a strided 1x1 convolution and batch norm where it changes them (two per
/// network, 2,560 weights more than option A's zero padding: ResNet-20 has 0.27 M
/// parameters and 41 M multiply-accumulates per 3x32x32 image either way).
///
/// Inputs are `[N, in_channels, H, W]` of any size the two strided stages can halve;
/// outputs `[N, classes]` logits. Layer names: `conv1`, `bn1`, `act1`, then
/// `stage{s}.block{b}` (a [`Residual`] whose body holds `conv1`, `bn1`, `act1`, `conv2`,
/// `bn2`, and whose shortcut, where there is one, `conv`, `bn`) followed by
/// `stage{s}.act{b}`, then `pool` and `fc`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `depth` is not `6n + 2` with `n >= 1`, or
/// `in_channels` or `classes` is 0.
pub fn cifar_resnet(
    depth: usize,
    activation: Activation,
    in_channels: usize,
    classes: usize,
    rng: &mut impl Rng,
) -> Result<Sequential> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) || in_channels == 0 || classes == 0 {
        return Err(Error::InvalidArgument {
            op: "cifar_resnet",
            reason: format!(
                "depth {depth} must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), and the \
                 input channels ({in_channels}) and classes ({classes}) at least 1"
            ),
        });
    }
    let blocks = (depth - 2) / 6;
    let mut net = Sequential::new()
        .push("conv1", conv(in_channels, STAGE_WIDTHS[0], 3, 1, rng)?)
        .push("bn1", BatchNorm2d::new(STAGE_WIDTHS[0])?)
        .push("act1", activation.layer(STAGE_WIDTHS[0], rng)?);
    let mut width = STAGE_WIDTHS[0];
    for (stage, &out) in STAGE_WIDTHS.iter().enumerate() {
        let mut layers = Sequential::new();
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers = layers
                .push(
                    format!("block{block}"),
                    basic_block(width, out, stride, activation, rng)?,
                )
                .push(format!("act{block}"), activation.layer(out, rng)?);
            width = out;
        }
        net = net.push(format!("stage{}", stage + 1), layers);
    }
    Ok(net
        .push("pool", GlobalAvgPool)
        .push("fc", Linear::new(width, classes, true, rng)?))
}

/// conv 3x3 (stride `stride`), batch norm, activation, conv 3x3, batch norm; the
/// projection shortcut where the width or the resolution changes.
fn basic_block(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    activation: Activation,
    rng: &mut impl Rng,
) -> Result<Residual> {
    let body = Sequential::new()
        .push("conv1", conv(in_channels, out_channels, 3, stride, rng)?)
        .push("bn1", BatchNorm2d::new(out_channels)?)
        .push("act1", activation.layer(out_channels, rng)?)
        .push("conv2", conv(out_channels, out_channels, 3, 1, rng)?)
        .push("bn2", BatchNorm2d::new(out_channels)?);
    let shortcut = if stride != 1 || in_channels != out_channels {
        Some(
            Sequential::new()
                .push("conv", conv(in_channels, out_channels, 1, stride, rng)?)
                .push("bn", BatchNorm2d::new(out_channels)?),
        )
    } else {
        None
    };
    Ok(Residual { body, shortcut })
}
