//! Activations, each forward next to its backward: ReLU and GELU on flat slices, and their
//! rotated forms `y = slope[c] * f(x)` with one learnable slope per channel.
//!
//! Every kernel writes its arithmetic for one element and runs through the elementwise
//! drivers, so it is vectorised for the chosen instruction set (and gives the same bits on
//! every set), in parallel tasks above [`crate::elementwise::PARALLEL_THRESHOLD`]
//! elements. `gelu` holds the GELU and its derivative;
//! `rotated` the per-channel kernels, whose backward is fused: one pass over `x` and
//! `grad_y` gives both `grad_x` and the slope gradient.
//!
//! NaN in `x` propagates to the forward output (as PyTorch's `relu` and `gelu`); `x == 0`
//! takes the ReLU subgradient 0.

mod gelu;
mod rotated;

pub use rotated::{
    rotated_gelu_backward, rotated_gelu_forward, rotated_relu_backward, rotated_relu_forward,
};

use crate::elementwise::assert_same_len;
use crate::elementwise::lanes::map;

/// `max(0, x)`, NaN kept and `-0` made `+0` (`max(0, x)` of the vector instruction would
/// drop NaN or keep `-0`).
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x <= 0.0 { 0.0 } else { x }
}

/// `g` where `x > 0`, else 0 (also for NaN `x`).
#[inline(always)]
pub(crate) fn pass_where_positive(x: f32, g: f32) -> f32 {
    if x > 0.0 { g } else { 0.0 }
}

/// ReLU: `y[i] = max(0, x[i])` (NaN stays NaN), `y` overwritten.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    assert_same_len("relu_forward", ("x", x.len()), ("y", y.len()));
    map(
        [x],
        y,
        #[inline(always)]
        |[x]| relu(x),
    );
}

/// ReLU backward: `grad_x[i] = grad_y[i]` where `x[i] > 0`, else 0 (the subgradient 0 at
/// `x == 0`), `grad_x` overwritten.
///
/// # Panics
/// If `x`, `grad_y` and `grad_x` differ in length.
pub fn relu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    assert_same_len("relu_backward", ("x", x.len()), ("grad_y", grad_y.len()));
    assert_same_len("relu_backward", ("x", x.len()), ("grad_x", grad_x.len()));
    map(
        [x, grad_y],
        grad_x,
        #[inline(always)]
        |[x, g]| pass_where_positive(x, g),
    );
}

/// GELU, the exact form of PyTorch's default `nn.GELU()`:
/// `y[i] = x * (1 + erf(x / sqrt 2)) / 2` with `x = x[i]`, `y` overwritten.
///
/// Absolute error below `1.5e-7 * max(1, |x|)` against the exact function (the vector
/// `erf` is a fitted approximation); PyTorch's `f32` result is as far from it. Like
/// PyTorch, `x = -inf` gives NaN.
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    assert_same_len("gelu_forward", ("x", x.len()), ("y", y.len()));
    map(
        [x],
        y,
        #[inline(always)]
        |[x]| gelu::gelu(x),
    );
}

/// GELU backward: `grad_x[i] = gelu'(x[i]) * grad_y[i]` with
/// `gelu'(x) = (1 + erf(x / sqrt 2)) / 2 + x e^(-x^2 / 2) / sqrt(2 pi)`, `grad_x`
/// overwritten. `gelu'` is within `3e-7 * max(1, |x|)` of the exact derivative.
///
/// # Panics
/// If `x`, `grad_y` and `grad_x` differ in length.
pub fn gelu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) {
    assert_same_len("gelu_backward", ("x", x.len()), ("grad_y", grad_y.len()));
    assert_same_len("gelu_backward", ("x", x.len()), ("grad_x", grad_x.len()));
    map(
        [x, grad_y],
        grad_x,
        #[inline(always)]
        |[x, g]| gelu::gelu_and_derivative(x).1 * g,
    );
}
