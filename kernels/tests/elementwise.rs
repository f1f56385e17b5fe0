//! The SIMD, parallel element-wise kernels against the scalar references.
//!
//! Sizes cover 0..=20 (every partial chunk), odd larger ones, and sizes above the parallel
//! threshold. Outputs start as NaN, so a kernel that reads instead of writing shows up.
//! Exactly rounded operations (`+ - * /`, `sqrt`, the per-channel affine maps) must agree
//! bit for bit; `exp` and `ln` are held to a few units in the last place of the `f64`
//! functions; sums to a bound relative to the sum of magnitudes.

use proptest::prelude::*;
use rotor_kernels::elementwise::{self as ew, PARALLEL_THRESHOLD};
use rotor_kernels::reference::elementwise as reference;

/// Sizes 0..=20, odd ones around the vector and run lengths, and sizes on both sides of the
/// parallel threshold (none a multiple of 8 above 20).
fn sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..=20).collect();
    sizes.extend([31, 33, 63, 65, 127, 1001, 1025, 4099, 16_411]);
    sizes.extend([PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD + 3, 100_003]);
    sizes
}

/// Deterministic pseudo-random values uniform in `[lo, hi)`.
fn uniform(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * unit
        })
        .collect()
}

/// Bit patterns, with every NaN made one pattern; a NaN left in an output still differs
/// from a number.
fn bits(values: &[f32]) -> Vec<u32> {
    values
        .iter()
        .map(|v| {
            if v.is_nan() {
                f32::NAN.to_bits()
            } else {
                v.to_bits()
            }
        })
        .collect()
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

type Binary = fn(&[f32], &[f32], &mut [f32]);

#[test]
fn binary_ops_match_reference_bit_for_bit() {
    let ops: [(&str, Binary, Binary); 4] = [
        ("add", ew::add, reference::add),
        ("sub", ew::sub, reference::sub),
        ("mul", ew::mul, reference::mul),
        ("div", ew::div, reference::div),
    ];
    for len in sizes() {
        let a = uniform(len, 1, -4.0, 4.0);
        let b = uniform(len, 2, 0.5, 3.0);
        for (name, fast, slow) in ops {
            let mut expected = vec![0.0; len];
            slow(&a, &b, &mut expected);
            let mut actual = vec![f32::NAN; len];
            fast(&a, &b, &mut actual);
            assert_eq!(bits(&actual), bits(&expected), "{name} len={len}");
        }
    }
}

#[test]
fn scalar_ops_and_sqrt_match_reference_bit_for_bit() {
    for len in sizes() {
        let x = uniform(len, 3, -4.0, 4.0);
        let mut expected = vec![0.0; len];
        let mut actual = vec![f32::NAN; len];
        reference::scale(&x, -1.7, &mut expected);
        ew::scale(&x, -1.7, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "scale len={len}");

        actual.fill(f32::NAN);
        reference::add_scalar(&x, 0.3, &mut expected);
        ew::add_scalar(&x, 0.3, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "add_scalar len={len}");

        // Negative inputs included: both give NaN there.
        actual.fill(f32::NAN);
        reference::sqrt(&x, &mut expected);
        ew::sqrt(&x, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "sqrt len={len}");

        let y0 = uniform(len, 4, -1.0, 1.0);
        let mut expected = y0.clone();
        let mut actual = y0;
        reference::axpy(0.37, &x, &mut expected);
        ew::axpy(0.37, &x, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "axpy len={len}");
    }
}

/// Error of `actual` in units in the last place of the exact value `exact`.
fn ulps(actual: f32, exact: f64) -> f64 {
    let rounded = (exact as f32).abs();
    let ulp = f64::from(f32::from_bits(rounded.to_bits() + 1) - rounded);
    (f64::from(actual) - exact).abs() / ulp
}

#[test]
fn exp_is_within_two_ulps_over_its_range() {
    // Up to ln(f32::MAX) ~ 88.72; results below the smallest normal float are excluded
    // (the kernel flushes them to zero).
    let x = uniform(200_003, 5, -87.3, 88.72);
    let mut y = vec![f32::NAN; x.len()];
    ew::exp(&x, &mut y);
    for (&x, &y) in x.iter().zip(&y) {
        let exact = f64::from(x).exp();
        assert!(ulps(y, exact) <= 2.0, "exp({x}) = {y}, exact {exact}");
    }
    let small = uniform(100_001, 6, -1.0, 1.0);
    let mut y = vec![f32::NAN; small.len()];
    ew::exp(&small, &mut y);
    for (&x, &y) in small.iter().zip(&y) {
        assert!(ulps(y, f64::from(x).exp()) <= 2.0, "exp({x}) = {y}");
    }
}

#[test]
fn exp_special_values() {
    let x = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        89.0,
        100.0,
        -110.0,
        0.0,
        -0.0,
        88.72,
    ];
    let mut y = [0.0; 9];
    ew::exp(&x, &mut y);
    assert!(y[0].is_nan());
    assert_eq!(
        &y[1..8],
        &[
            f32::INFINITY,
            0.0,
            f32::INFINITY,
            f32::INFINITY,
            0.0,
            1.0,
            1.0
        ]
    );
    assert!(
        ulps(y[8], f64::from(88.72_f32).exp()) <= 2.0,
        "exp(88.72) = {}",
        y[8]
    );
}

#[test]
fn ln_is_within_two_ulps_over_all_normal_floats() {
    // Random bit patterns of positive normal floats: every exponent, every mantissa range.
    let patterns = uniform(200_003, 7, 0.0, 1.0);
    let x: Vec<f32> = patterns
        .iter()
        .map(|u| f32::from_bits(0x0080_0000 + (u * (0x7f00_0000_u32 as f32)) as u32))
        .collect();
    let near_one = uniform(100_001, 8, 0.5, 2.0);
    for x in [x, near_one] {
        let mut y = vec![f32::NAN; x.len()];
        ew::ln(&x, &mut y);
        for (&x, &y) in x.iter().zip(&y) {
            let exact = f64::from(x).ln();
            assert!(ulps(y, exact) <= 2.0, "ln({x}) = {y}, exact {exact}");
        }
    }
}

#[test]
fn ln_special_values() {
    let x = [
        0.0,
        -0.0,
        f32::INFINITY,
        -1.0,
        f32::NAN,
        f32::NEG_INFINITY,
        1.0,
        f32::MIN_POSITIVE,
    ];
    let mut y = [0.0; 8];
    ew::ln(&x, &mut y);
    assert_eq!(
        &y[..3],
        &[f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY]
    );
    assert!(y[3].is_nan() && y[4].is_nan() && y[5].is_nan());
    assert_eq!(y[6], 0.0);
    assert!(ulps(y[7], f64::from(f32::MIN_POSITIVE).ln()) <= 2.0);
}

#[test]
fn exp_and_ln_match_reference_at_every_size() {
    for len in sizes() {
        let x = uniform(len, 9, -10.0, 10.0);
        let mut expected = vec![0.0; len];
        let mut actual = vec![f32::NAN; len];
        reference::exp(&x, &mut expected);
        ew::exp(&x, &mut actual);
        for i in 0..len {
            let tolerance = 3e-7 * expected[i].abs();
            assert!(
                (actual[i] - expected[i]).abs() <= tolerance,
                "exp len={len} i={i}"
            );
        }
        let x = uniform(len, 10, 1e-3, 1e3);
        reference::ln(&x, &mut expected);
        actual.fill(f32::NAN);
        ew::ln(&x, &mut actual);
        for i in 0..len {
            let tolerance = 3e-7 * expected[i].abs().max(1e-3);
            assert!(
                (actual[i] - expected[i]).abs() <= tolerance,
                "ln len={len} i={i}"
            );
        }
    }
}

/// `|actual - expected| <= 4e-6 * scale`, where `scale` is the sum of the summands'
/// magnitudes: the bound of a sum kept in runs of at most 32 terms per partial sum.
fn assert_sum_close(actual: f32, expected: f32, scale: f64, what: &str) {
    let bound = 4e-6 * scale + f64::from(f32::MIN_POSITIVE);
    assert!(
        (f64::from(actual) - f64::from(expected)).abs() <= bound,
        "{what}: {actual} vs {expected} (bound {bound})"
    );
}

#[test]
fn sum_and_dot_match_reference() {
    for len in sizes().into_iter().chain([1_000_003]) {
        let a = uniform(len, 11, -4.0, 4.0);
        let b = uniform(len, 12, -2.0, 2.0);
        let magnitude: f64 = a.iter().map(|v| f64::from(v.abs())).sum();
        assert_sum_close(
            ew::sum(&a),
            reference::sum(&a),
            magnitude,
            &format!("sum {len}"),
        );
        let magnitude: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from((x * y).abs()))
            .sum();
        let what = format!("dot {len}");
        assert_sum_close(ew::dot(&a, &b), reference::dot(&a, &b), magnitude, &what);
    }
}

#[test]
fn sum_is_accurate_where_a_running_sum_is_not() {
    // 2^24 then a million ones: a running f32 sum stalls at 2^24 and loses every one; the
    // blocked sum loses only the ones that share a partial sum with 2^24 in its run.
    let mut x = vec![1.0_f32; 1 << 20];
    x[0] = (1 << 24) as f32;
    let exact = ((1u64 << 24) + (1 << 20) - 1) as f64;
    let running = x.iter().fold(0.0_f32, |total, v| total + v);
    assert!(exact - f64::from(running) > 1e6);
    assert!(
        (f64::from(ew::sum(&x)) - exact).abs() <= 64.0,
        "{}",
        ew::sum(&x)
    );
}

#[test]
fn every_long_reduction_is_accurate() {
    // The same 2^24-then-ones data through each reduction's long-axis path; a running f32
    // sum would lose every one.
    let n = 1 << 20;
    let mut x = vec![1.0_f32; n];
    x[0] = (1 << 24) as f32;
    let close = |v: f32, ones: usize, what: &str| {
        let exact = ((1 << 24) + ones) as f64;
        assert!(
            (f64::from(v) - exact).abs() <= 64.0,
            "{what}: {v} vs {exact}"
        );
    };
    let mut one = [f32::NAN];
    ew::sum_channels(1, 1, n, &x, &mut one);
    close(one[0], n - 1, "sum_channels, one plane");
    ew::sum_channels(n, 1, 1, &x, &mut one);
    close(one[0], n - 1, "sum_channels, plane 1");
    ew::dot_channels(n / 4, 1, 4, &x, &vec![1.0; n], &mut one);
    close(one[0], n - 1, "dot_channels, small planes");
    ew::sum_axis(1, n, 1, &x, &mut one);
    close(one[0], n - 1, "sum_axis, rows");
    let mut two = [f32::NAN; 2];
    ew::sum_axis(1, n / 2, 2, &x, &mut two);
    close(two[0], n / 2 - 1, "sum_axis, columns");
}

#[test]
fn reductions_do_not_depend_on_the_thread_count() {
    // 3 x 7 x 14_286 elements: planes large enough for tasks of whole planes.
    let x = uniform(300_006, 13, -1.0, 1.0);
    let y = uniform(300_006, 14, -1.0, 1.0);
    let run = || {
        let mut channels = vec![f32::NAN; 7];
        ew::dot_channels(3, 7, 14_286, &x, &y, &mut channels);
        let mut axis = vec![f32::NAN; 3];
        ew::sum_axis(3, 100_002, 1, &x, &mut axis);
        (
            ew::sum(&x).to_bits(),
            ew::dot(&x, &y).to_bits(),
            bits(&channels),
            bits(&axis),
        )
    };
    let one = with_threads(1, run);
    assert_eq!(with_threads(2, run), one);
    assert_eq!(with_threads(3, run), one);
}

/// Shapes `[outer, len, inner]` covering `inner == 1` (rows), narrow and wide `inner`
/// (more than one tile), long axes, and enough work to run in parallel.
fn axis_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = Vec::new();
    for outer in [0, 1, 3] {
        for len in [1, 2, 7, 65, 130] {
            for inner in [1, 2, 9, 20, 257, 300] {
                shapes.push((outer, len, inner));
            }
        }
    }
    shapes.extend([(2, 40_001, 1), (5, 3, 20_001), (300, 200, 3), (1, 9, 600)]);
    shapes
}

#[test]
fn sum_axis_matches_reference() {
    for (outer, len, inner) in axis_shapes() {
        let x = uniform(outer * len * inner, 15, -3.0, 3.0);
        let mut expected = vec![0.0; outer * inner];
        reference::sum_axis(outer, len, inner, &x, &mut expected);
        let mut actual = vec![f32::NAN; outer * inner];
        ew::sum_axis(outer, len, inner, &x, &mut actual);
        for o in 0..outer {
            for i in 0..inner {
                let magnitude: f64 = (0..len)
                    .map(|l| f64::from(x[(o * len + l) * inner + i].abs()))
                    .sum();
                let k = o * inner + i;
                let what = format!("sum_axis [{outer}, {len}, {inner}] at ({o}, {i})");
                assert_sum_close(actual[k], expected[k], magnitude, &what);
            }
        }
    }
}

#[test]
fn sum_axis_of_an_empty_axis_is_zero() {
    let mut out = vec![f32::NAN; 6];
    ew::sum_axis(2, 0, 3, &[], &mut out);
    assert_eq!(out, vec![0.0; 6]);
}

#[test]
fn max_axis_matches_reference_with_ties_and_nan() {
    for (outer, len, inner) in axis_shapes() {
        let n = outer * len * inner;
        // Few distinct values, so ties are common and "first on ties" is exercised.
        let mut x: Vec<f32> = uniform(n, 16, 0.0, 5.0).iter().map(|v| v.floor()).collect();
        for with_nan in [false, true] {
            if with_nan {
                for i in (0..n).step_by(37) {
                    x[i] = f32::NAN;
                }
            }
            let mut expected = vec![0.0; outer * inner];
            let mut expected_at = vec![0; outer * inner];
            reference::max_axis(outer, len, inner, &x, &mut expected, &mut expected_at);
            let mut actual = vec![f32::NAN; outer * inner];
            let mut actual_at = vec![u32::MAX; outer * inner];
            ew::max_axis(outer, len, inner, &x, &mut actual, &mut actual_at);
            let what = format!("max_axis [{outer}, {len}, {inner}] nan={with_nan}");
            assert_eq!(bits(&actual), bits(&expected), "{what}");
            assert_eq!(actual_at, expected_at, "{what}");
        }
    }
}

#[test]
fn max_axis_of_negative_infinities_picks_the_first() {
    let x = vec![f32::NEG_INFINITY; 19];
    let (mut out, mut at) = ([0.0], [7]);
    ew::max_axis(1, 19, 1, &x, &mut out, &mut at);
    assert_eq!((out[0], at[0]), (f32::NEG_INFINITY, 0));
}

/// Shapes `[batch, channels, plane]`: plane 1 (an `[N, C]` matrix), one channel, planes on
/// both sides of the small-plane cut and not multiples of 8, and parallel-sized ones.
fn channel_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = Vec::new();
    for batch in [0, 1, 2, 5] {
        for channels in [1, 3, 8, 17] {
            for plane in [0, 1, 2, 7, 9, 15, 16, 17, 20, 33] {
                shapes.push((batch, channels, plane));
            }
        }
    }
    shapes.extend([
        (3000, 17, 1),
        (2001, 1, 20),
        (700, 5, 15),
        (4, 3, 5003),
        (3, 64, 576),
    ]);
    shapes
}

/// Checks all four per-channel helpers on one shape.
fn check_channel_ops(batch: usize, channels: usize, plane: usize, seed: u64) {
    let n = batch * channels * plane;
    let x = uniform(n, seed, -3.0, 3.0);
    let y = uniform(n, seed + 1, -2.0, 2.0);
    let param = uniform(channels, seed + 2, -1.5, 1.5);
    let what = format!("[{batch}, {channels}, {plane}]");

    let mut expected = vec![0.0; n];
    let mut actual = vec![f32::NAN; n];
    reference::mul_channels(batch, channels, plane, &x, &param, &mut expected);
    ew::mul_channels(batch, channels, plane, &x, &param, &mut actual);
    assert_eq!(bits(&actual), bits(&expected), "mul_channels {what}");

    actual.fill(f32::NAN);
    reference::add_channels(batch, channels, plane, &x, &param, &mut expected);
    ew::add_channels(batch, channels, plane, &x, &param, &mut actual);
    assert_eq!(bits(&actual), bits(&expected), "add_channels {what}");

    let magnitude = |c: usize, f: &dyn Fn(usize) -> f32| -> f64 {
        (0..batch)
            .flat_map(|b| (0..plane).map(move |p| (b * channels + c) * plane + p))
            .map(|i| f64::from(f(i).abs()))
            .sum()
    };
    let mut expected = vec![0.0; channels];
    let mut actual = vec![f32::NAN; channels];
    reference::sum_channels(batch, channels, plane, &x, &mut expected);
    ew::sum_channels(batch, channels, plane, &x, &mut actual);
    for c in 0..channels {
        let scale = magnitude(c, &|i| x[i]);
        assert_sum_close(
            actual[c],
            expected[c],
            scale,
            &format!("sum_channels {what} c={c}"),
        );
    }
    actual.fill(f32::NAN);
    reference::dot_channels(batch, channels, plane, &x, &y, &mut expected);
    ew::dot_channels(batch, channels, plane, &x, &y, &mut actual);
    for c in 0..channels {
        let scale = magnitude(c, &|i| x[i] * y[i]);
        assert_sum_close(
            actual[c],
            expected[c],
            scale,
            &format!("dot_channels {what} c={c}"),
        );
    }
}

#[test]
fn channel_helpers_match_reference() {
    for (i, (batch, channels, plane)) in channel_shapes().into_iter().enumerate() {
        check_channel_ops(batch, channels, plane, 100 + i as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn channel_helpers_match_reference_on_random_shapes(
        batch in 0usize..40,
        channels in 1usize..24,
        plane in 0usize..70,
        seed in any::<u64>(),
    ) {
        check_channel_ops(batch, channels, plane, seed);
    }

    #[test]
    fn flat_ops_match_reference_on_random_values(
        a in prop::collection::vec(-1e3f32..1e3, 0..300),
        seed in any::<u64>(),
    ) {
        let b = uniform(a.len(), seed, 0.1, 10.0);
        let mut expected = vec![0.0; a.len()];
        let mut actual = vec![f32::NAN; a.len()];
        reference::div(&a, &b, &mut expected);
        ew::div(&a, &b, &mut actual);
        prop_assert_eq!(bits(&actual), bits(&expected));
        let magnitude: f64 = a.iter().map(|v| f64::from(v.abs())).sum();
        let (fast, slow) = (ew::sum(&a), reference::sum(&a));
        prop_assert!((f64::from(fast) - f64::from(slow)).abs() <= 4e-6 * magnitude + 1e-30);
    }
}

#[test]
#[should_panic(expected = "add: a has 3 elements but b has 2")]
fn add_rejects_mismatched_lengths() {
    ew::add(&[1.0; 3], &[1.0; 2], &mut [0.0; 3]);
}

#[test]
#[should_panic(expected = "mul_channels: scale has 2 elements, expected one per channel (3)")]
fn mul_channels_rejects_a_short_scale() {
    ew::mul_channels(1, 3, 2, &[0.0; 6], &[1.0; 2], &mut [0.0; 6]);
}

#[test]
#[should_panic(expected = "max_axis: the reduced axis is empty")]
fn max_axis_rejects_an_empty_axis() {
    ew::max_axis(1, 0, 1, &[], &mut [0.0], &mut [0]);
}
