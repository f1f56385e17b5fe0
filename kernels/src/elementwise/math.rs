//! Lane-wise `exp` and `ln` for `f32x8`, accurate to a few units in the last place.
//!
//! NOTE: `wide` has its own `exp` and `ln`, but its `exp` returns 0 for every argument whose
//! magnitude exceeds 87.3 (also for large positive ones, where the answer is a finite float
//! or infinity) and for NaN. These versions handle the whole range.

use bytemuck::cast;
use wide::{CmpEq, CmpGe, CmpGt, CmpLt, f32x8, i32x8};

/// `ln 2` split into a part with 9 significant bits (so `n * LN2_HI` is exact for every
/// exponent `n` of an `f32`) and the rest.
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `2^k` for integer lanes `-126 <= k <= 127`, built from the exponent bits.
#[inline(always)]
fn pow2i(k: i32x8) -> f32x8 {
    cast((k + 127) << 23)
}

/// `e^x` lane-wise.
///
/// Method: `x = n ln 2 + f` with `n = round(x / ln 2)` and `|f| <= ln 2 / 2`;
/// `e^f` by its Taylor polynomial of degree 7 (truncation below `6e-9` relative); the
/// result scaled by `2^n`. Arguments are first clamped to `[-104, 89]`, where `e^x` is
/// already below the smallest denormal or above the largest float, so over- and underflow
/// come out of the arithmetic as `inf` and `0` (a denormal result becomes 0 when denormals
/// are flushed). NaN gives NaN.
#[inline(always)]
pub(crate) fn exp(x: f32x8) -> f32x8 {
    let clamped = x
        .fast_max(f32x8::splat(-104.0))
        .fast_min(f32x8::splat(89.0));
    // NOTE: a conversion to integer and back rounds to nearest in two instructions, where
    // `f32x8::round` without SSE4.1 takes six; the clamp keeps it in range.
    let n = (clamped * f32x8::LOG2_E).fast_round_int();
    let n_float = f32x8::from_i32x8(n);
    let f = n_float.mul_neg_add(f32x8::splat(LN2_HI), clamped);
    let f = n_float.mul_neg_add(f32x8::splat(LN2_LO), f);
    let mut p = f32x8::splat(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p.mul_add(f, f32x8::splat(c));
    }
    // NOTE: |n| can reach 150, beyond a single float's exponent range, so the scale is
    // applied as two factors 2^(n/2) each of which is a normal float.
    let half = n >> 1;
    let result = p * pow2i(half) * pow2i(n - half);
    x.cmp_eq(x).blend(result, x)
}

/// `ln x` lane-wise.
///
/// Method: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`; `ln m = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)`, `|s| <= 0.172`, by its odd series to `s^9` (truncation below
/// `3e-9` relative); `ln x = e ln 2 + ln m`. Special values as IEEE: `ln 0 = -inf`,
/// `ln inf = inf`, negative arguments and NaN give NaN. Positive denormal arguments count
/// as zero (as they do in every kernel, which run with denormals flushed) and give `-inf`.
#[inline(always)]
pub(crate) fn ln(x: f32x8) -> f32x8 {
    let bits: i32x8 = cast(x);
    let exponent = (bits >> 23) - 127;
    let mantissa: f32x8 = cast((bits & i32x8::splat(0x007f_ffff)) | i32x8::splat(0x3f80_0000));
    let high = mantissa.cmp_gt(f32x8::SQRT_2);
    let m = high.blend(mantissa * 0.5, mantissa);
    let e = f32x8::from_i32x8(exponent) + (high & f32x8::ONE);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = f32x8::splat(2.0 / 9.0);
    for c in [2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0] {
        series = series.mul_add(s2, f32x8::splat(c));
    }
    let ln_m = (s * s2).mul_add(series, s + s);
    let result = e.mul_add(f32x8::splat(LN2_HI), e.mul_add(f32x8::splat(LN2_LO), ln_m));
    let infinity = f32x8::splat(f32::INFINITY);
    let result = x.cmp_eq(infinity).blend(infinity, result);
    let result = x
        .cmp_lt(f32x8::splat(f32::MIN_POSITIVE))
        .blend(-infinity, result);
    x.cmp_ge(f32x8::ZERO).blend(result, f32x8::splat(f32::NAN))
}
