//! `exp` and `ln` for one element, accurate to a few units in the last place and written
//! so that the loops of [`lanes`](super::lanes) vectorise them: no branches (every `if`
//! picks a value), no library calls, integer work on the bits.
//!
//! NOTE: `f32::exp` and `f32::ln` are library calls, one per element, which no loop
//! vectorises. These versions handle the whole range, infinities and NaN included.

/// `ln 2` split into a part with 9 significant bits (so `n * LN2_HI` is exact for every
/// exponent `n` of an `f32`) and the rest.
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `1.5 * 2^23`: added to a float of magnitude below `2^22`, it leaves that float rounded to
/// the nearest integer (ties to even) in its low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;

/// `2^k` for `-126 <= k <= 127`, built from the exponent bits.
#[inline(always)]
fn pow2i(k: i32) -> f32 {
    f32::from_bits(((k + 127) << 23) as u32)
}

/// `if a > b { a } else { b }`: `b` when either is NaN (the vector `max` instruction).
#[inline(always)]
pub(crate) fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `if a < b { a } else { b }`: `b` when either is NaN (the vector `min` instruction).
#[inline(always)]
pub(crate) fn min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// `e^x`.
///
/// Method: `x = n ln 2 + f` with `n = round(x / ln 2)` and `|f| <= ln 2 / 2`;
/// `e^f` by its Taylor polynomial of degree 7 (truncation below `6e-9` relative); the
/// result scaled by `2^n`. Arguments are first clamped to `[-104, 89]`, where `e^x` is
/// already below the smallest denormal or above the largest float, so over- and underflow
/// come out of the arithmetic as `inf` and `0` (a denormal result becomes 0 when denormals
/// are flushed). NaN gives NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let clamped = min(max(x, -104.0), 89.0);
    // NOTE: rounding by adding and subtracting ROUNDER takes two additions where a
    // conversion to integer and back takes two conversions; the clamp keeps it in range.
    let shifted = clamped * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let n_float = shifted - ROUNDER;
    let f = clamped - n_float * LN2_HI;
    let f = f - n_float * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * f + c;
    }
    // NOTE: |n| can reach 150, beyond a single float's exponent range, so the scale is
    // applied as two factors 2^(n/2) each of which is a normal float.
    let half = n >> 1;
    let result = p * pow2i(half) * pow2i(n - half);
    if x.is_nan() { x } else { result }
}

/// `ln x`.
///
/// Method: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt 2)`; `ln m = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)`, `|s| <= 0.172`, by its odd series to `s^9` (truncation below
/// `3e-9` relative); `ln x = e ln 2 + ln m`. Special values as IEEE: `ln 0 = -inf`,
/// `ln inf = inf`, negative arguments and NaN give NaN. Positive denormal arguments count
/// as zero (as they do in every kernel, which run with denormals flushed) and give `-inf`.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits() as i32;
    let exponent = (bits >> 23) - 127;
    let mantissa = f32::from_bits(((bits & 0x007f_ffff) | 0x3f80_0000) as u32);
    let high = mantissa > std::f32::consts::SQRT_2;
    let m = if high { mantissa * 0.5 } else { mantissa };
    let e = exponent as f32 + if high { 1.0 } else { 0.0 };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 2.0 / 9.0;
    for c in [2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0] {
        series = series * s2 + c;
    }
    let ln_m = (s * s2) * series + (s + s);
    let result = e * LN2_HI + (e * LN2_LO + ln_m);
    let result = if x == f32::INFINITY { x } else { result };
    let result = if x < f32::MIN_POSITIVE {
        f32::NEG_INFINITY
    } else {
        result
    };
    if x >= 0.0 { result } else { f32::NAN }
}
