//! Scalar definitions of [`crate::activation`]. GELU uses `libm`'s `erff`, as PyTorch's CPU
//! kernel uses the C library's `erf`; slope gradients accumulate in `f64`.

// NOTE: index loops on purpose: each loop is one index of the formula it defines.
#![allow(clippy::needless_range_loop)]

use std::f32::consts::FRAC_1_SQRT_2;

use crate::elementwise::ChannelShape;

/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `max(0, x)`, NaN kept.
fn relu(x: f32) -> f32 {
    if x <= 0.0 { 0.0 } else { x }
}

/// `x * (1 + erf(x / sqrt 2)) / 2`, as PyTorch computes it.
fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2))
}

/// `(1 + erf(x / sqrt 2)) / 2 + x e^(-x^2 / 2) / sqrt(2 pi)`.
fn gelu_derivative(x: f32) -> f32 {
    0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() * FRAC_1_SQRT_2PI
}

/// `y[i] = max(0, x[i])`.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu_forward: lengths");
    for i in 0..x.len() {
        y[i] = relu(x[i]);
    }
}

/// `grad_x[i] = grad_y[i]` if `x[i] > 0`, else 0.
///
/// # Panics
/// If the slices differ in length.
pub fn relu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    assert_eq!(x.len(), grad_y.len(), "relu_backward: lengths");
    assert_eq!(x.len(), grad_x.len(), "relu_backward: lengths");
    for i in 0..x.len() {
        grad_x[i] = if x[i] > 0.0 { grad_y[i] } else { 0.0 };
    }
}

/// `y[i] = x * (1 + erf(x / sqrt 2)) / 2`.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "gelu_forward: lengths");
    for i in 0..x.len() {
        y[i] = gelu(x[i]);
    }
}

/// `grad_x[i] = gelu'(x[i]) * grad_y[i]`.
///
/// # Panics
/// If the slices differ in length.
pub fn gelu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    assert_eq!(x.len(), grad_y.len(), "gelu_backward: lengths");
    assert_eq!(x.len(), grad_x.len(), "gelu_backward: lengths");
    for i in 0..x.len() {
        grad_x[i] = gelu_derivative(x[i]) * grad_y[i];
    }
}

/// `y[n, c, p] = slope[c] * max(0, x[n, c, p])`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn rotated_relu_forward(shape: &ChannelShape, x: &[f32], slope: &[f32], y: &mut [f32]) {
    rotated_forward(shape, x, slope, y, relu);
}

/// `grad_x[n, c, p] = slope[c] * grad_y[n, c, p]` if `x[n, c, p] > 0`, else 0;
/// `grad_slope[c] = sum over (n, p) of max(0, x) * grad_y`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn rotated_relu_backward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
) {
    rotated_backward(shape, x, slope, grad_y, grad_x, grad_slope, |x, s, g| {
        (relu(x), if x > 0.0 { s * g } else { 0.0 })
    });
}

/// `y[n, c, p] = slope[c] * gelu(x[n, c, p])`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn rotated_gelu_forward(shape: &ChannelShape, x: &[f32], slope: &[f32], y: &mut [f32]) {
    rotated_forward(shape, x, slope, y, gelu);
}

/// `grad_x[n, c, p] = slope[c] * gelu'(x) * grad_y`;
/// `grad_slope[c] = sum over (n, p) of gelu(x) * grad_y`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn rotated_gelu_backward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
) {
    rotated_backward(shape, x, slope, grad_y, grad_x, grad_slope, |x, s, g| {
        (gelu(x), s * gelu_derivative(x) * g)
    });
}

fn rotated_forward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    y: &mut [f32],
    f: impl Fn(f32) -> f32,
) {
    let ChannelShape {
        batch,
        channels,
        plane,
    } = *shape;
    assert_eq!(x.len(), batch * channels * plane, "x length");
    assert_eq!(y.len(), batch * channels * plane, "y length");
    assert_eq!(slope.len(), channels, "slope length");
    for n in 0..batch {
        for c in 0..channels {
            for p in 0..plane {
                let i = (n * channels + c) * plane + p;
                y[i] = slope[c] * f(x[i]);
            }
        }
    }
}

/// `f(x, slope, grad_y)` gives the activation's value and that element's `grad_x`.
fn rotated_backward(
    shape: &ChannelShape,
    x: &[f32],
    slope: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_slope: &mut [f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) {
    let ChannelShape {
        batch,
        channels,
        plane,
    } = *shape;
    let len = batch * channels * plane;
    assert_eq!(x.len(), len, "x length");
    assert_eq!(grad_y.len(), len, "grad_y length");
    assert_eq!(grad_x.len(), len, "grad_x length");
    assert_eq!(slope.len(), channels, "slope length");
    assert_eq!(grad_slope.len(), channels, "grad_slope length");
    for c in 0..channels {
        let mut total = 0.0_f64;
        for n in 0..batch {
            for p in 0..plane {
                let i = (n * channels + c) * plane + p;
                let (value, grad) = f(x[i], slope[c], grad_y[i]);
                grad_x[i] = grad;
                total += f64::from(value) * f64::from(grad_y[i]);
            }
        }
        grad_slope[c] = total as f32;
    }
}
