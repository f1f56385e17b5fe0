//! The rotated activations: a learnable slope per channel on ReLU and GELU.

use rotor_kernels::activation;
use rotor_kernels::elementwise::ChannelShape;

use super::channels::channel_layout;
use crate::autograd::record;
use crate::error::Result;
use crate::storage;
use crate::tensor::Tensor;

type PerChannelForward = fn(&ChannelShape, &[f32], &[f32], &mut [f32]);
type PerChannelBackward = fn(&ChannelShape, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

fn rotated(
    op: &'static str,
    x: &Tensor,
    slope: &Tensor,
    forward: PerChannelForward,
    backward: PerChannelBackward,
) -> Result<Tensor> {
    let (batch, channels, plane) = channel_layout(op, x, &[slope])?;
    let shape = ChannelShape {
        batch,
        channels,
        plane,
    };
    let mut out = storage::for_overwrite(x.numel());
    forward(&shape, x.as_slice(), slope.as_slice(), &mut out);
    Ok(record(
        op,
        x.shape().to_vec(),
        out,
        &[x, slope],
        move |ctx, g| {
            let mut gx = storage::for_overwrite(g.len());
            let mut gs = storage::for_overwrite(channels);
            let (x, s) = (ctx.inputs[0].as_slice(), ctx.inputs[1].as_slice());
            backward(&shape, x, s, g, &mut gx, &mut gs);
            vec![ctx.wants(0).then_some(gx), ctx.wants(1).then_some(gs)]
        },
    ))
}

impl Tensor {
    /// The rotated ReLU `y = slope[c] * max(0, x)` over an `[N, C, ...]` input with a
    /// `[C]` slope: the positive branch of the ReLU rotated by `atan(slope[c])`.
    ///
    /// # Errors
    /// If the input has rank below 2 or the slope is not `[C]`.
    pub fn rotated_relu(&self, slope: &Tensor) -> Result<Tensor> {
        rotated(
            "rotated_relu",
            self,
            slope,
            activation::rotated_relu_forward,
            activation::rotated_relu_backward,
        )
    }

    /// The rotated GELU `y = slope[c] * gelu(x)` over an `[N, C, ...]` input with a `[C]`
    /// slope.
    ///
    /// # Errors
    /// If the input has rank below 2 or the slope is not `[C]`.
    pub fn rotated_gelu(&self, slope: &Tensor) -> Result<Tensor> {
        rotated(
            "rotated_gelu",
            self,
            slope,
            activation::rotated_gelu_forward,
            activation::rotated_gelu_backward,
        )
    }
}
