//! Element-wise arithmetic on same-length slices, reductions, and per-channel helpers.
//!
//! Every kernel writes its arithmetic once, for one element, and runs it in loops compiled
//! for the instruction set [`simd::active`](crate::simd::active) chose (AVX-512, AVX2,
//! NEON or the build's own), so a default build runs 16 lanes at a time on an AVX-512
//! machine. Every set gives the same bits. Kernels run on the calling thread below
//! [`PARALLEL_THRESHOLD`] elements, as rayon tasks of [`TASK_LEN`] elements above.
//! Reductions combine their partial sums in an order fixed by the sizes alone, so a result
//! depends neither on the number of threads nor on the instruction set.
//!
//! Files: `lanes` drives a per-element operation over slices and sums per-element terms;
//! `tasks` splits work into rayon tasks and runs each on the chosen set (for the
//! activations, pooling, batch norm and losses too); `math` holds the vectorisable `exp`
//! and `ln`; `reduce` the sums, dot product and axis reductions; `channels` the
//! `[batch, channels, plane]` driver and its helpers.

mod channels;
pub(crate) mod lanes;
pub(crate) mod math;
pub(crate) mod reduce;
pub(crate) mod tasks;

#[cfg(test)]
mod isa_tests;

pub use crate::tuning::memory_bound::{PARALLEL_THRESHOLD, TASK_LEN};
pub(crate) use channels::map_reduce_channels;
pub use channels::{ChannelShape, add_channels, dot_channels, mul_channels, sum_channels};
pub use reduce::{dot, max_axis, sum, sum_axis};

use lanes::{map, update};

/// Terms an `f32` partial sum takes before it joins an `f64` total.
///
/// NOTE: this keeps the rounding error of a long reduction proportional to 32 terms rather
/// than to the whole length: a single running `f32` sum of a million values can lose
/// three digits.
pub(crate) const PARTIAL_TERMS: usize = 32;

/// Asserts that `other` has as many elements as `first` for the kernel `op`.
#[track_caller]
pub(crate) fn assert_same_len(op: &str, first: (&str, usize), other: (&str, usize)) {
    assert_eq!(
        first.1, other.1,
        "{op}: {} has {} elements but {} has {}",
        first.0, first.1, other.0, other.1
    );
}

/// `out[i] = a[i] + b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    check_binary("add", a, b, out);
    map(
        [a, b],
        out,
        #[inline(always)]
        |[a, b]| a + b,
    );
}

/// `out[i] = a[i] - b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
    check_binary("sub", a, b, out);
    map(
        [a, b],
        out,
        #[inline(always)]
        |[a, b]| a - b,
    );
}

/// `out[i] = a[i] * b[i]`.
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    check_binary("mul", a, b, out);
    map(
        [a, b],
        out,
        #[inline(always)]
        |[a, b]| a * b,
    );
}

/// `out[i] = a[i] / b[i]` (IEEE division: `x / 0` is `±inf` or NaN).
///
/// # Panics
/// If `a`, `b` and `out` differ in length.
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) {
    check_binary("div", a, b, out);
    map(
        [a, b],
        out,
        #[inline(always)]
        |[a, b]| a / b,
    );
}

/// `out[i] = alpha * x[i]`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn scale(x: &[f32], alpha: f32, out: &mut [f32]) {
    assert_same_len("scale", ("x", x.len()), ("out", out.len()));
    map(
        [x],
        out,
        #[inline(always)]
        |[x]| alpha * x,
    );
}

/// `out[i] = x[i] + s`.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn add_scalar(x: &[f32], s: f32, out: &mut [f32]) {
    assert_same_len("add_scalar", ("x", x.len()), ("out", out.len()));
    map(
        [x],
        out,
        #[inline(always)]
        |[x]| x + s,
    );
}

/// `y[i] += alpha * x[i]` (the product rounded before the addition, no fused multiply-add,
/// so the result is the same on every CPU).
///
/// # Panics
/// If `x` and `y` differ in length.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_same_len("axpy", ("x", x.len()), ("y", y.len()));
    update(
        [x],
        y,
        #[inline(always)]
        |y, [x]| y + alpha * x,
    );
}

/// `out[i] = e^x[i]`, within 2 units in the last place of the exact value (range reduction
/// by `ln 2` and a degree-7 polynomial). Results below the smallest normal float are flushed
/// to 0; `e^x` overflows to `inf` above `x = 88.72`; NaN stays NaN.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn exp(x: &[f32], out: &mut [f32]) {
    assert_same_len("exp", ("x", x.len()), ("out", out.len()));
    map(
        [x],
        out,
        #[inline(always)]
        |[x]| math::exp(x),
    );
}

/// `out[i] = ln x[i]`, within 2 units in the last place of the exact value (exponent and
/// mantissa split, `atanh` series for the mantissa). `ln 0 = -inf`, `ln inf = inf`, negative
/// `x` and NaN give NaN; positive denormal `x` count as zero.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn ln(x: &[f32], out: &mut [f32]) {
    assert_same_len("ln", ("x", x.len()), ("out", out.len()));
    map(
        [x],
        out,
        #[inline(always)]
        |[x]| math::ln(x),
    );
}

/// `out[i] = sqrt x[i]`, correctly rounded (NaN for negative `x`).
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn sqrt(x: &[f32], out: &mut [f32]) {
    assert_same_len("sqrt", ("x", x.len()), ("out", out.len()));
    map(
        [x],
        out,
        #[inline(always)]
        |[x]| x.sqrt(),
    );
}

#[track_caller]
fn check_binary(op: &str, a: &[f32], b: &[f32], out: &[f32]) {
    assert_same_len(op, ("a", a.len()), ("b", b.len()));
    assert_same_len(op, ("a", a.len()), ("out", out.len()));
}
