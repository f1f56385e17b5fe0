//! Scalar definitions of [`crate::elementwise`]. Sums accumulate in `f64` so that they stand
//! for the exact sum, rounded once.

// NOTE: index loops on purpose: each loop is one index of the formula it defines.
#![allow(clippy::needless_range_loop)]

/// `out[i] = a[i] + b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(a, b, out, |a, b| a + b);
}

/// `out[i] = a[i] - b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(a, b, out, |a, b| a - b);
}

/// `out[i] = a[i] * b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(a, b, out, |a, b| a * b);
}

/// `out[i] = a[i] / b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(a, b, out, |a, b| a / b);
}

/// `out[i] = alpha * x[i]`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn scale(x: &[f32], alpha: f32, out: &mut [f32]) {
    unary(x, out, |x| alpha * x);
}

/// `out[i] = x[i] + s`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn add_scalar(x: &[f32], s: f32, out: &mut [f32]) {
    unary(x, out, |x| x + s);
}

/// `y[i] += alpha * x[i]` (product rounded, then the sum).
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y differ in length");
    for i in 0..x.len() {
        y[i] += alpha * x[i];
    }
}

/// `out[i] = e^x[i]`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn exp(x: &[f32], out: &mut [f32]) {
    unary(x, out, f32::exp);
}

/// `out[i] = ln x[i]`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn ln(x: &[f32], out: &mut [f32]) {
    unary(x, out, f32::ln);
}

/// `out[i] = sqrt x[i]`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn sqrt(x: &[f32], out: &mut [f32]) {
    unary(x, out, f32::sqrt);
}

/// `sum over i of x[i]`, accumulated in `f64`.
pub fn sum(x: &[f32]) -> f32 {
    let mut total = 0.0_f64;
    for &v in x {
        total += f64::from(v);
    }
    total as f32
}

/// `sum over i of a[i] * b[i]`, each product and the sum in `f64`.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: a and b differ in length");
    let mut total = 0.0_f64;
    for i in 0..a.len() {
        total += f64::from(a[i]) * f64::from(b[i]);
    }
    total as f32
}

/// `x` as `[outer, len, inner]`: `out[o, i] = sum over l of x[o, l, i]`, in `f64`.
///
/// # Panics
/// If `x` does not have `outer * len * inner` elements or `out` does not have
/// `outer * inner`.
pub fn sum_axis(outer: usize, len: usize, inner: usize, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), outer * len * inner, "sum_axis: x length");
    assert_eq!(out.len(), outer * inner, "sum_axis: out length");
    for o in 0..outer {
        for i in 0..inner {
            let mut total = 0.0_f64;
            for l in 0..len {
                total += f64::from(x[(o * len + l) * inner + i]);
            }
            out[o * inner + i] = total as f32;
        }
    }
}

/// `x` as `[outer, len, inner]`: `out[o, i] = max over l of x[o, l, i]`, `argmax[o, i]` the
/// first such `l`; NaN counts as greater than every number.
///
/// # Panics
/// If `len == 0` or a slice length does not match.
pub fn max_axis(
    outer: usize,
    len: usize,
    inner: usize,
    x: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
) {
    assert!(len >= 1, "max_axis: the reduced axis is empty");
    assert_eq!(x.len(), outer * len * inner, "max_axis: x length");
    assert_eq!(out.len(), outer * inner, "max_axis: out length");
    assert_eq!(argmax.len(), outer * inner, "max_axis: argmax length");
    for o in 0..outer {
        for i in 0..inner {
            let mut best = x[o * len * inner + i];
            let mut at = 0;
            for l in 1..len {
                let v = x[(o * len + l) * inner + i];
                if v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    at = l;
                }
            }
            out[o * inner + i] = best;
            argmax[o * inner + i] = at as u32;
        }
    }
}

/// `out[n, c, p] = x[n, c, p] * scale[c]`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn mul_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    x: &[f32],
    scale: &[f32],
    out: &mut [f32],
) {
    per_channel(batch, channels, plane, x, scale, out, |x, s| x * s);
}

/// `out[n, c, p] = x[n, c, p] + bias[c]`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn add_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    x: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    per_channel(batch, channels, plane, x, bias, out, |x, b| x + b);
}

/// `out[c] = sum over (n, p) of x[n, c, p]`, in `f64`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn sum_channels(batch: usize, channels: usize, plane: usize, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), batch * channels * plane, "sum_channels: x length");
    assert_eq!(out.len(), channels, "sum_channels: out length");
    for c in 0..channels {
        let mut total = 0.0_f64;
        for n in 0..batch {
            for p in 0..plane {
                total += f64::from(x[(n * channels + c) * plane + p]);
            }
        }
        out[c] = total as f32;
    }
}

/// `out[c] = sum over (n, p) of a[n, c, p] * b[n, c, p]`, each product and the sum in `f64`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn dot_channels(
    batch: usize,
    channels: usize,
    plane: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    assert_eq!(a.len(), batch * channels * plane, "dot_channels: a length");
    assert_eq!(b.len(), batch * channels * plane, "dot_channels: b length");
    assert_eq!(out.len(), channels, "dot_channels: out length");
    for c in 0..channels {
        let mut total = 0.0_f64;
        for n in 0..batch {
            for p in 0..plane {
                let i = (n * channels + c) * plane + p;
                total += f64::from(a[i]) * f64::from(b[i]);
            }
        }
        out[c] = total as f32;
    }
}

fn unary(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    assert_eq!(x.len(), out.len(), "x and out differ in length");
    for i in 0..x.len() {
        out[i] = f(x[i]);
    }
}

fn binary(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    assert_eq!(a.len(), b.len(), "a and b differ in length");
    assert_eq!(a.len(), out.len(), "a and out differ in length");
    for i in 0..a.len() {
        out[i] = f(a[i], b[i]);
    }
}

fn per_channel(
    batch: usize,
    channels: usize,
    plane: usize,
    x: &[f32],
    param: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32,
) {
    assert_eq!(x.len(), batch * channels * plane, "x length");
    assert_eq!(out.len(), batch * channels * plane, "out length");
    assert_eq!(param.len(), channels, "per-channel parameter length");
    for n in 0..batch {
        for c in 0..channels {
            for p in 0..plane {
                let i = (n * channels + c) * plane + p;
                out[i] = f(x[i], param[c]);
            }
        }
    }
}
