//! GELU and its derivative for one element, through the standard normal distribution,
//! written for the vectorising loops of the elementwise drivers (no branches, no library
//! calls).
//!
//! `gelu(x) = x * Phi(x)` with `Phi(x) = (1 + erf(x / sqrt 2)) / 2`, the exact form
//! PyTorch's `nn.GELU()` computes, and `gelu'(x) = Phi(x) + x * phi(x)` with the density
//! `phi(x) = e^(-x^2 / 2) / sqrt(2 pi)`.
//!
//! Method: with `z = |x| / sqrt 2`, `Phi(-|x|) = erfc(z) / 2` and
//! `erfc(z) = e^(-z^2) * R(t)`, `t = 1 / (1 + P z)`, where the polynomial `R` of degree 8
//! was fitted to `erfc(z) e^(z^2)` in double precision (weighted least squares at
//! Chebyshev nodes of `t`, reweighted towards the minimax error) over `z` in `[0, 9.5]`,
//! beyond which `e^(-z^2)` underflows `f32`. The fit's relative error is `3.7e-8`; the
//! `f32` evaluation, chiefly the rounding of `t`, brings that of `erfc` to about `4e-7`.
//! Since the error is relative to `erfc(z)`, which vanishes as `|x|` grows, the absolute
//! error of `gelu` is about `1e-7 * max(1, |x|)` and that of `gelu'` about
//! `2e-7 * max(1, |x|)`, the size of the rounding error of PyTorch's own `f32` formula
//! (`tests/activation.rs` checks both against the `f64` function over `[-12, 12]`).
//! The factor `e^(-x^2 / 2)` is shared with the density, so the derivative costs little more
//! than the function.

use crate::elementwise::math::exp;
use std::f32::consts::FRAC_1_SQRT_2;

/// `P` in `t = 1 / (1 + P z)`, chosen with the fit.
const P: f32 = 0.415;

/// Coefficients of `R(t)`, constant term first.
const R: [f32; 9] = [
    4.089_785e-5,
    2.332_041e-1,
    2.433_183e-1,
    1.632_159e-1,
    3.471_262_5e-1,
    -2.582_338_5e-1,
    5.661_378e-1,
    -3.738_115e-1,
    7.900_207_5e-2,
];

/// `1 / sqrt(2 pi)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `(Phi(x), e^(-x^2 / 2))`.
#[inline(always)]
fn normal_cdf_and_kernel(x: f32) -> (f32, f32) {
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (z * P + 1.0);
    let mut r = R[R.len() - 1];
    for &c in R[..R.len() - 1].iter().rev() {
        r = r * t + c;
    }
    let kernel = exp(x * x * -0.5);
    let lower_tail = kernel * r * 0.5;
    let cdf = if x > 0.0 {
        1.0 - lower_tail
    } else {
        lower_tail
    };
    (cdf, kernel)
}

/// `gelu(x) = x * Phi(x)`.
#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    x * normal_cdf_and_kernel(x).0
}

/// `(gelu(x), gelu'(x))`, `gelu'(x) = Phi(x) + x * phi(x)`.
#[inline(always)]
pub(super) fn gelu_and_derivative(x: f32) -> (f32, f32) {
    let (cdf, kernel) = normal_cdf_and_kernel(x);
    (x * cdf, (x * kernel) * FRAC_1_SQRT_2PI + cdf)
}
