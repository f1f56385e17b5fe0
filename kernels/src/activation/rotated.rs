//! Rotated activations on `[batch, channels, plane]` arrays (NCHW with `plane = H * W`, or
//! an `[N, C]` matrix with `plane = 1`): `y = slope[c] * f(x)`, one slope per channel.
//!
//! The backward is fused: a single pass reads `x` and `grad_y` once and writes `grad_x`
//! while accumulating the slope gradient, instead of keeping `f(x)` from the forward and
//! running a multiply, a per-channel dot product and the activation's backward.
//!
//! Slopes that training drives towards zero make `slope * x` and `slope * grad_y` denormal;
//! like every kernel these run with denormals flushed, so such products come out as 0
//! instead of slowing the arithmetic down.

use super::gelu::{gelu, gelu_and_derivative};
use super::{pass_where_positive, relu};
use crate::elementwise::{ChannelShape, map_reduce_channels};

/// Rotated ReLU: `y[n, c, p] = slope[c] * max(0, x[n, c, p])`, `y` overwritten.
///
/// `x` and `y` are `[batch, channels, plane]`, `slope` has `channels` elements.
///
/// # Panics
/// If a slice length differs from the shape's.
pub fn rotated_relu_forward(shape: &ChannelShape, x: &[f32], slope: &[f32], y: &mut [f32]) {
    rotated_forward("rotated_relu_forward", shape, x, slope, y, relu);
}

/// Rotated ReLU backward, fused into one pass over `x` and `grad_y`:
/// `grad_x[n, c, p] = slope[c] * grad_y[n, c, p]` where `x[n, c, p] > 0`, else 0 (the
/// subgradient 0 at `x == 0`), and
/// `grad_slope[c] = sum over (n, p) of max(0, x[n, c, p]) * grad_y[n, c, p]`.
///
/// Both outputs are overwritten. `x`, `grad_y` and `grad_x` are `[batch, channels, plane]`;
/// `slope` and `grad_slope` have `channels` elements. `grad_slope` is the same for any
/// number of threads.
///
/// # Panics
/// If a slice length differs from the shape's.
pub fn rotated_relu_backward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
) {
    rotated_backward(
        "rotated_relu_backward",
        shape,
        [x, slope, grad_y],
        grad_x,
        grad_slope,
        #[inline(always)]
        |x, s, g| (pass_where_positive(x, s * g), relu(x) * g),
    );
}

/// Rotated GELU: `y[n, c, p] = slope[c] * gelu(x[n, c, p])` with the exact GELU of
/// [`super::gelu_forward`] (same accuracy), `y` overwritten.
///
/// `x` and `y` are `[batch, channels, plane]`, `slope` has `channels` elements.
///
/// # Panics
/// If a slice length differs from the shape's.
pub fn rotated_gelu_forward(shape: &ChannelShape, x: &[f32], slope: &[f32], y: &mut [f32]) {
    rotated_forward("rotated_gelu_forward", shape, x, slope, y, gelu);
}

/// Rotated GELU backward, fused into one pass over `x` and `grad_y`:
/// `grad_x[n, c, p] = slope[c] * gelu'(x[n, c, p]) * grad_y[n, c, p]` and
/// `grad_slope[c] = sum over (n, p) of gelu(x[n, c, p]) * grad_y[n, c, p]`, with `gelu'` as
/// in [`super::gelu_backward`].
///
/// Both outputs are overwritten. `x`, `grad_y` and `grad_x` are `[batch, channels, plane]`;
/// `slope` and `grad_slope` have `channels` elements. `grad_slope` is the same for any
/// number of threads.
///
/// # Panics
/// If a slice length differs from the shape's.
pub fn rotated_gelu_backward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
) {
    rotated_backward(
        "rotated_gelu_backward",
        shape,
        [x, slope, grad_y],
        grad_x,
        grad_slope,
        #[inline(always)]
        |x, s, g| {
            let (value, derivative) = gelu_and_derivative(x);
            (s * derivative * g, value * g)
        },
    );
}

/// The rotated forward of kernel `op`: checks the lengths, then `y = slope[c] * f(x)`.
#[inline(always)]
#[track_caller]
fn rotated_forward(
    op: &str,
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    y: &mut [f32],
    f: impl Fn(f32) -> f32 + Sync,
) {
    shape.check(op, "x", x.len());
    shape.check(op, "y", y.len());
    shape.check_channels(op, "slope", slope.len());
    map_reduce_channels(
        *shape,
        [x],
        Some(slope),
        [y],
        None,
        #[inline(always)]
        |[x], s| ([s * f(x)], 0.0),
    );
}

/// The fused rotated backward of kernel `op`: checks the lengths, then for every element
/// `(grad_x, term) = f(x, slope[c], grad_y)` and `grad_slope[c] = sum over (n, p) of term`.
#[inline(always)]
#[track_caller]
fn rotated_backward(
    op: &str,
    shape: &ChannelShape,
    [x, slope, grad_y]: [&[f32]; 3],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32) + Sync,
) {
    shape.check(op, "x", x.len());
    shape.check(op, "grad_y", grad_y.len());
    shape.check(op, "grad_x", grad_x.len());
    shape.check_channels(op, "slope", slope.len());
    shape.check_channels(op, "grad_slope", grad_slope.len());
    map_reduce_channels(
        *shape,
        [x, grad_y],
        Some(slope),
        [grad_x],
        Some(grad_slope),
        #[inline(always)]
        |[x, g], s| {
            let (grad, term) = f(x, s, g);
            ([grad], term)
        },
    );
}
