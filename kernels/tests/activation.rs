//! The SIMD, parallel activations against the scalar references, the references' backward
//! against finite differences of their forward, and the GELU against the exact function.
//!
//! Outputs (also `grad_slope`) start as NaN, so a kernel that reads instead of writing
//! shows up. The ReLU kernels are exact and must agree bit for bit, except the slope
//! gradient, a sum, which is held to a bound relative to the sum of its terms' magnitudes.

use proptest::prelude::*;
use rotor_kernels::activation as act;
use rotor_kernels::elementwise::{ChannelShape, PARALLEL_THRESHOLD};
use rotor_kernels::reference::activation as reference;

/// Sizes 0..=20, odd larger ones, and sizes on both sides of the parallel threshold.
fn sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..=20).collect();
    sizes.extend([31, 33, 63, 65, 127, 1001, 4099]);
    sizes.extend([PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD + 3, 100_003]);
    sizes
}

/// Shapes `[batch, channels, plane]`: plane 1 (an `[N, C]` matrix), one channel, planes on
/// both sides of the small-plane cut and not multiples of 8, and parallel-sized ones
/// (among them MnistNet's `[64, 32, 26 * 26]`).
fn shapes() -> Vec<(usize, usize, usize)> {
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
        (4000, 1, 1),
        (2001, 1, 20),
        (700, 5, 15),
        (4, 3, 5003),
    ]);
    shapes.push((64, 32, 676));
    shapes
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

/// Activation inputs: uniform in `[-4, 4)` with every seventh value exactly 0 (the ReLU's
/// kink) and every eleventh -0.
fn inputs(len: usize, seed: u64) -> Vec<f32> {
    let mut x = uniform(len, seed, -4.0, 4.0);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 7 == 3 {
            *v = 0.0;
        } else if i % 11 == 5 {
            *v = -0.0;
        }
    }
    x
}

/// Bit patterns, with every NaN made one pattern.
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

/// Asserts `|actual[i] - expected[i]| <= tolerance(i)` for every `i`.
fn assert_close(actual: &[f32], expected: &[f32], tolerance: impl Fn(usize) -> f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for i in 0..actual.len() {
        let error = (f64::from(actual[i]) - f64::from(expected[i])).abs();
        assert!(
            error <= tolerance(i),
            "{what} at {i}: {} vs {} (tolerance {})",
            actual[i],
            expected[i],
            tolerance(i)
        );
    }
}

/// The bound for a slope gradient: relative to the sum of the magnitudes of its terms
/// `f(x) * grad_y`, which the caller passes per channel.
fn slope_tolerance(magnitudes: &[f64]) -> impl Fn(usize) -> f64 + '_ {
    |c| 4e-6 * magnitudes[c] + f64::from(f32::MIN_POSITIVE)
}

/// `sum over (n, p) of |term(i)|` for each channel.
fn channel_magnitudes(
    (batch, channels, plane): (usize, usize, usize),
    term: impl Fn(usize) -> f32,
) -> Vec<f64> {
    (0..channels)
        .map(|c| {
            (0..batch)
                .flat_map(|n| (0..plane).map(move |p| (n * channels + c) * plane + p))
                .map(|i| f64::from(term(i).abs()))
                .sum()
        })
        .collect()
}

// ---------------------------------------------------------------- ReLU

#[test]
fn relu_matches_reference_bit_for_bit() {
    for len in sizes() {
        let x = inputs(len, 1);
        let g = uniform(len, 2, -1.0, 1.0);
        let mut expected = vec![0.0; len];
        let mut actual = vec![f32::NAN; len];
        reference::relu_forward(&x, &mut expected);
        act::relu_forward(&x, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "relu_forward len={len}");
        actual.fill(f32::NAN);
        reference::relu_backward(&x, &g, &mut expected);
        act::relu_backward(&x, &g, &mut actual);
        assert_eq!(bits(&actual), bits(&expected), "relu_backward len={len}");
    }
}

#[test]
fn relu_keeps_nan_and_takes_subgradient_zero_at_zero() {
    let x = [f32::NAN, 0.0, -0.0, 2.0, -2.0];
    let mut y = [1.0; 5];
    act::relu_forward(&x, &mut y);
    assert!(y[0].is_nan());
    assert_eq!(bits(&y[1..]), bits(&[0.0, 0.0, 2.0, 0.0]));
    let mut grad = [1.0; 5];
    act::relu_backward(&x, &[3.0; 5], &mut grad);
    assert_eq!(bits(&grad), bits(&[0.0, 0.0, 0.0, 3.0, 0.0]));
}

// ---------------------------------------------------------------- GELU

/// The exact GELU and its derivative in `f64`.
fn gelu_exact(x: f64) -> (f64, f64) {
    let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
    let density = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (x * cdf, cdf + x * density)
}

#[test]
fn gelu_is_accurate_against_the_exact_function() {
    // A dense grid over [-12, 12] plus random points; beyond, gelu(x) is x or -0 exactly.
    let mut x: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
    x.extend(uniform(100_001, 3, -12.0, 12.0));
    let g = vec![1.0; x.len()];
    let mut y = vec![f32::NAN; x.len()];
    let mut d = vec![f32::NAN; x.len()];
    act::gelu_forward(&x, &mut y);
    act::gelu_backward(&x, &g, &mut d);
    let (mut worst_y, mut worst_d) = (0.0_f64, 0.0_f64);
    for i in 0..x.len() {
        let (value, derivative) = gelu_exact(f64::from(x[i]));
        let scale = f64::from(x[i].abs()).max(1.0);
        worst_y = worst_y.max((f64::from(y[i]) - value).abs() / scale);
        worst_d = worst_d.max((f64::from(d[i]) - derivative).abs() / scale);
    }
    println!("gelu: max |error| / max(1, |x|) = {worst_y:e}, derivative {worst_d:e}");
    assert!(worst_y <= 1.5e-7, "gelu error {worst_y:e}");
    assert!(worst_d <= 3e-7, "gelu derivative error {worst_d:e}");
}

#[test]
fn gelu_matches_reference() {
    for len in sizes() {
        let x = inputs(len, 4);
        let g = uniform(len, 5, -2.0, 2.0);
        let mut expected = vec![0.0; len];
        let mut actual = vec![f32::NAN; len];
        reference::gelu_forward(&x, &mut expected);
        act::gelu_forward(&x, &mut actual);
        let scale = |i: usize| f64::from(x[i].abs()).max(1.0);
        assert_close(
            &actual,
            &expected,
            |i| 3e-7 * scale(i),
            &format!("gelu_forward {len}"),
        );
        actual.fill(f32::NAN);
        reference::gelu_backward(&x, &g, &mut expected);
        act::gelu_backward(&x, &g, &mut actual);
        let tolerance = |i: usize| 5e-7 * scale(i) * f64::from(g[i].abs());
        assert_close(
            &actual,
            &expected,
            tolerance,
            &format!("gelu_backward {len}"),
        );
    }
}

#[test]
fn gelu_special_values_follow_the_formula() {
    let x = [f32::NAN, f32::INFINITY, 0.0, 1e20, -1e20, -30.0];
    let mut y = [1.0; 6];
    act::gelu_forward(&x, &mut y);
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[f32::INFINITY, 0.0, 1e20, 0.0, 0.0]);
    let mut d = [1.0; 6];
    act::gelu_backward(&x, &[1.0; 6], &mut d);
    assert!(d[0].is_nan());
    assert_eq!(&d[2..], &[0.5, 1.0, 0.0, 0.0]);
}

// ---------------------------------------------------------------- rotated activations

/// Inputs of one rotated-activation problem.
struct Problem {
    shape: (usize, usize, usize),
    x: Vec<f32>,
    slope: Vec<f32>,
    grad_y: Vec<f32>,
}

impl Problem {
    fn new((batch, channels, plane): (usize, usize, usize), seed: u64) -> Self {
        let n = batch * channels * plane;
        let mut slope = uniform(channels, seed + 1, 0.7, 1.43);
        // Negative and tiny slopes too: a rotation below the axis, a channel switched off.
        for (c, s) in slope.iter_mut().enumerate() {
            match c % 3 {
                1 => *s = -*s,
                2 => *s *= 1e-3,
                _ => {}
            }
        }
        Self {
            shape: (batch, channels, plane),
            x: inputs(n, seed),
            slope,
            grad_y: uniform(n, seed + 2, -1.0, 1.0),
        }
    }

    fn channel_shape(&self) -> ChannelShape {
        let (batch, channels, plane) = self.shape;
        ChannelShape {
            batch,
            channels,
            plane,
        }
    }
}

type RotatedForward = fn(&ChannelShape, &[f32], &[f32], &mut [f32]);
type RotatedBackward = fn(&ChannelShape, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

/// Runs a rotated forward and backward, outputs NaN-prefilled: `(y, grad_x, grad_slope)`.
fn run_rotated(
    forward: RotatedForward,
    backward: RotatedBackward,
    p: &Problem,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let shape = p.channel_shape();
    let mut y = vec![f32::NAN; p.x.len()];
    forward(&shape, &p.x, &p.slope, &mut y);
    let mut grad_x = vec![f32::NAN; p.x.len()];
    let mut grad_slope = vec![f32::NAN; shape.channels];
    backward(
        &shape,
        &p.x,
        &p.slope,
        &p.grad_y,
        &mut grad_x,
        &mut grad_slope,
    );
    (y, grad_x, grad_slope)
}

/// The rotated ReLU against the reference: `y` and `grad_x` bit for bit, `grad_slope` to
/// the bound of a sum.
fn check_rotated_relu(p: &Problem) {
    let what = format!("rotated relu {:?}", p.shape);
    let (y, grad_x, grad_slope) =
        run_rotated(act::rotated_relu_forward, act::rotated_relu_backward, p);
    let (ry, rgrad_x, rgrad_slope) = run_rotated(
        reference::rotated_relu_forward,
        reference::rotated_relu_backward,
        p,
    );
    assert_eq!(bits(&y), bits(&ry), "{what}: y");
    assert_eq!(bits(&grad_x), bits(&rgrad_x), "{what}: grad_x");
    let magnitudes = channel_magnitudes(p.shape, |i| p.x[i].max(0.0) * p.grad_y[i]);
    assert_close(
        &grad_slope,
        &rgrad_slope,
        slope_tolerance(&magnitudes),
        &what,
    );
}

/// The rotated GELU against the reference, within the GELU's accuracy.
fn check_rotated_gelu(p: &Problem) {
    let what = format!("rotated gelu {:?}", p.shape);
    let (y, grad_x, grad_slope) =
        run_rotated(act::rotated_gelu_forward, act::rotated_gelu_backward, p);
    let (ry, rgrad_x, rgrad_slope) = run_rotated(
        reference::rotated_gelu_forward,
        reference::rotated_gelu_backward,
        p,
    );
    let (_, channels, plane) = p.shape;
    let slope_at = |i: usize| f64::from(p.slope[i / plane.max(1) % channels].abs());
    let scale = |i: usize| f64::from(p.x[i].abs()).max(1.0);
    assert_close(
        &y,
        &ry,
        |i| 3e-7 * scale(i) * slope_at(i),
        &format!("{what}: y"),
    );
    let tolerance = |i: usize| 5e-7 * scale(i) * slope_at(i) * f64::from(p.grad_y[i].abs());
    assert_close(&grad_x, &rgrad_x, tolerance, &format!("{what}: grad_x"));
    // |gelu(x)| <= max(1, |x|), so this bounds the terms and the GELU's error in each.
    let magnitudes = channel_magnitudes(p.shape, |i| p.x[i].abs().max(1.0) * p.grad_y[i]);
    assert_close(
        &grad_slope,
        &rgrad_slope,
        slope_tolerance(&magnitudes),
        &what,
    );
}

#[test]
fn rotated_relu_matches_reference_on_every_shape() {
    for (i, shape) in shapes().into_iter().enumerate() {
        check_rotated_relu(&Problem::new(shape, 10 + i as u64));
    }
}

#[test]
fn rotated_gelu_matches_reference_on_every_shape() {
    for (i, shape) in shapes().into_iter().enumerate() {
        check_rotated_gelu(&Problem::new(shape, 500 + i as u64));
    }
}

#[test]
fn rotated_relu_takes_subgradient_zero_at_zero() {
    let x = [0.0, -0.0, 1.0, -1.0];
    let mut grad_x = [f32::NAN; 4];
    let mut grad_slope = [f32::NAN; 1];
    let shape = ChannelShape {
        batch: 1,
        channels: 1,
        plane: 4,
    };
    act::rotated_relu_backward(&shape, &x, &[2.0], &[1.0; 4], &mut grad_x, &mut grad_slope);
    assert_eq!(bits(&grad_x), bits(&[0.0, 0.0, 2.0, 0.0]));
    assert_eq!(grad_slope, [1.0]);
}

#[test]
fn rotated_backward_does_not_depend_on_the_thread_count() {
    for shape in [(3000, 17, 1), (64, 32, 676), (700, 5, 15)] {
        let p = Problem::new(shape, 77);
        let relu = || run_rotated(act::rotated_relu_forward, act::rotated_relu_backward, &p);
        let gelu = || run_rotated(act::rotated_gelu_forward, act::rotated_gelu_backward, &p);
        for run in [&relu as &(dyn Fn() -> _ + Sync), &gelu] {
            let one = with_threads(1, run);
            for threads in [2, 3] {
                let many = with_threads(threads, run);
                assert_eq!(
                    bits(&many.1),
                    bits(&one.1),
                    "{shape:?} {threads} threads: grad_x"
                );
                assert_eq!(
                    bits(&many.2),
                    bits(&one.2),
                    "{shape:?} {threads} threads: slope"
                );
            }
        }
    }
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn slope_times_value_never_leaves_a_denormal() {
    // slope * x = 1e-40 and slope * grad_y = 1e-40 are denormal; the kernels flush them.
    for shape in [(40, 1, 1), (2, 1, 33), (300, 1, 200)] {
        let n = shape.0 * shape.1 * shape.2;
        let p = Problem {
            shape,
            x: vec![1e-20; n],
            slope: vec![1e-20],
            grad_y: vec![1e-20; n],
        };
        let (ry, rgrad_x, _) = run_rotated(
            reference::rotated_relu_forward,
            reference::rotated_relu_backward,
            &p,
        );
        assert!(
            ry[0] > 0.0 && rgrad_x[0] > 0.0,
            "unflushed, the products are denormal"
        );
        for (forward, backward) in [
            (
                act::rotated_relu_forward as RotatedForward,
                act::rotated_relu_backward as RotatedBackward,
            ),
            (act::rotated_gelu_forward, act::rotated_gelu_backward),
        ] {
            let (y, grad_x, grad_slope) = run_rotated(forward, backward, &p);
            assert!(y.iter().all(|v| *v == 0.0), "{shape:?}: y has a denormal");
            assert!(
                grad_x.iter().all(|v| *v == 0.0),
                "{shape:?}: grad_x has a denormal"
            );
            assert!(
                grad_slope[0] == 0.0 || grad_slope[0].is_normal(),
                "{shape:?}: slope"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rotated_activations_match_reference_on_random_shapes(
        batch in 0usize..40,
        channels in 1usize..24,
        plane in 0usize..70,
        seed in any::<u64>(),
    ) {
        let p = Problem::new((batch, channels, plane), seed);
        check_rotated_relu(&p);
        check_rotated_gelu(&p);
    }

    #[test]
    fn relu_and_gelu_match_reference_on_random_values(
        x in prop::collection::vec(-20f32..20.0, 0..300),
        seed in any::<u64>(),
    ) {
        let g = uniform(x.len(), seed, -1.0, 1.0);
        let (mut expected, mut actual) = (vec![0.0; x.len()], vec![f32::NAN; x.len()]);
        reference::relu_backward(&x, &g, &mut expected);
        act::relu_backward(&x, &g, &mut actual);
        prop_assert_eq!(bits(&actual), bits(&expected));
        reference::gelu_forward(&x, &mut expected);
        act::gelu_forward(&x, &mut actual);
        for i in 0..x.len() {
            let tolerance = 3e-7 * f64::from(x[i].abs()).max(1.0);
            prop_assert!((f64::from(actual[i]) - f64::from(expected[i])).abs() <= tolerance);
        }
    }
}

// ---------------------------------------------------------------- finite differences

/// `sum over i of w[i] * y[i]` in `f64`: a loss whose gradient with respect to `y` is `w`
/// (not all ones, so a backward that ignores `grad_y` fails).
fn loss(y: &[f32], w: &[f32]) -> f64 {
    y.iter()
        .zip(w)
        .map(|(y, w)| f64::from(*y) * f64::from(*w))
        .sum()
}

/// Inputs at least `2h` away from the ReLU's kink, so a central difference never straddles it.
fn away_from_zero(x: &mut [f32], h: f32) {
    for v in x.iter_mut() {
        if v.abs() < 2.0 * h {
            *v = if *v < 0.0 { -3.0 * h } else { 3.0 * h };
        }
    }
}

/// Central differences of `loss(forward(x), w)` against `grad_x`: error within `tolerance`.
fn check_flat_gradient(
    forward: fn(&[f32], &mut [f32]),
    x: &[f32],
    w: &[f32],
    grad_x: &[f32],
    h: f32,
    tolerance: f64,
    what: &str,
) {
    let mut y = vec![0.0; x.len()];
    for j in 0..x.len() {
        let mut shifted = x.to_vec();
        shifted[j] = x[j] + h;
        forward(&shifted, &mut y);
        let up = loss(&y, w);
        shifted[j] = x[j] - h;
        forward(&shifted, &mut y);
        let down = loss(&y, w);
        let numeric = (up - down) / f64::from(2.0 * h);
        let error = (numeric - f64::from(grad_x[j])).abs();
        assert!(
            error <= tolerance,
            "{what} at x = {}: {numeric} vs {}",
            x[j],
            grad_x[j]
        );
    }
}

#[test]
fn reference_relu_and_gelu_backward_match_finite_differences() {
    let h = 1e-2;
    let mut x = uniform(200, 20, -4.0, 4.0);
    away_from_zero(&mut x, h);
    let w = uniform(200, 21, -1.0, 1.0);
    let mut grad_x = vec![0.0; x.len()];
    reference::relu_backward(&x, &w, &mut grad_x);
    check_flat_gradient(reference::relu_forward, &x, &w, &grad_x, h, 1e-4, "relu");
    reference::gelu_backward(&x, &w, &mut grad_x);
    check_flat_gradient(reference::gelu_forward, &x, &w, &grad_x, h, 1e-4, "gelu");
}

/// Central differences of the loss of a rotated forward, in every `x` and every slope,
/// against the reference backward.
fn check_rotated_gradient(forward: RotatedForward, backward: RotatedBackward, p: &Problem) {
    let shape = p.channel_shape();
    let (_, grad_x, grad_slope) = run_rotated(forward, backward, p);
    let run = |x: &[f32], slope: &[f32]| {
        let mut y = vec![0.0; x.len()];
        forward(&shape, x, slope, &mut y);
        loss(&y, &p.grad_y)
    };
    let h = 1e-2;
    for j in 0..p.x.len() {
        let mut x = p.x.clone();
        x[j] = p.x[j] + h;
        let up = run(&x, &p.slope);
        x[j] = p.x[j] - h;
        let down = run(&x, &p.slope);
        let numeric = (up - down) / f64::from(2.0 * h);
        let error = (numeric - f64::from(grad_x[j])).abs();
        assert!(
            error <= 1e-4,
            "{:?} x[{j}] = {}: {numeric} vs {}",
            p.shape,
            p.x[j],
            grad_x[j]
        );
    }
    // The loss is linear in a slope, so a wide step is exact up to rounding.
    let h = 0.25;
    for c in 0..shape.channels {
        let mut slope = p.slope.clone();
        slope[c] = p.slope[c] + h;
        let up = run(&p.x, &slope);
        slope[c] = p.slope[c] - h;
        let down = run(&p.x, &slope);
        let numeric = (up - down) / f64::from(2.0 * h);
        let error = (numeric - f64::from(grad_slope[c])).abs();
        assert!(
            error <= 1e-5,
            "{:?} slope[{c}]: {numeric} vs {}",
            p.shape,
            grad_slope[c]
        );
    }
}

#[test]
fn reference_rotated_backward_matches_finite_differences() {
    for (i, shape) in [(2, 3, 5), (4, 2, 1), (3, 1, 4)].into_iter().enumerate() {
        let mut p = Problem::new(shape, 40 + i as u64);
        away_from_zero(&mut p.x, 1e-2);
        check_rotated_gradient(
            reference::rotated_relu_forward,
            reference::rotated_relu_backward,
            &p,
        );
        check_rotated_gradient(
            reference::rotated_gelu_forward,
            reference::rotated_gelu_backward,
            &p,
        );
    }
}

#[test]
#[should_panic(
    expected = "rotated_relu_backward: grad_slope has 2 elements, expected one per channel (3)"
)]
fn rotated_relu_backward_rejects_a_short_slope_gradient() {
    let (x, mut grad_x, mut grad_slope) = ([0.0; 6], [0.0; 6], [0.0; 2]);
    let shape = ChannelShape {
        batch: 2,
        channels: 3,
        plane: 1,
    };
    act::rotated_relu_backward(&shape, &x, &[1.0; 3], &x, &mut grad_x, &mut grad_slope);
}

#[test]
#[should_panic(
    expected = "rotated_gelu_forward: y has 5 elements, expected batch 2 x channels 3 x plane 1 = 6"
)]
fn rotated_gelu_forward_rejects_a_short_output() {
    let shape = ChannelShape {
        batch: 2,
        channels: 3,
        plane: 1,
    };
    act::rotated_gelu_forward(&shape, &[0.0; 6], &[1.0; 3], &mut [0.0; 5]);
}
