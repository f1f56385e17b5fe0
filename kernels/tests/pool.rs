//! Pooling kernels against their references, and the references' backwards against finite
//! differences of their forwards.

use proptest::prelude::*;
use rotor_kernels::pool::{self, Pool2dGeometry};
use rotor_kernels::reference::pool as reference;

/// Deterministic uniform values in `[-1, 1)` (SplitMix64).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next()).collect()
    }

    /// Small integers in -2..=2, so that windows hold ties.
    fn ties(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| (self.next() * 2.5).round()).collect()
    }

    /// Like [`Self::ties`] with about a quarter NaNs, so that windows hold several.
    fn ties_and_nans(&mut self, len: usize) -> Vec<f32> {
        let mut values = self.ties(len);
        for v in &mut values {
            if self.next() > 0.5 {
                *v = f32::NAN;
            }
        }
        values
    }
}

fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let same = (a.is_nan() && e.is_nan()) || (a - e).abs() <= tol * (1.0 + e.abs());
        assert!(same, "{what}[{i}]: got {a}, expected {e}");
    }
}

fn geometry(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Pool2dGeometry {
    Pool2dGeometry {
        batch,
        channels,
        in_h: in_hw.0,
        in_w: in_hw.1,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_h: pad,
        pad_w: pad,
    }
}

/// One valid axis, `(in, kernel, stride, pad)` with `in <= max_in`, `pad <= kernel / 2` and
/// `kernel <= in + 2 pad`.
fn axis(max_in: usize) -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1..=5usize, 1..=4usize).prop_flat_map(move |(kernel, stride)| {
        (0..=kernel / 2).prop_flat_map(move |pad| {
            let smallest = kernel.saturating_sub(2 * pad).max(1);
            (smallest..=max_in, Just(kernel), Just(stride), Just(pad))
        })
    })
}

/// A valid geometry of up to `max_planes - 1` images and channels and `max_in` rows and columns.
fn any_geometry(max_planes: usize, max_in: usize) -> impl Strategy<Value = Pool2dGeometry> {
    (0..max_planes, 0..max_planes, axis(max_in), axis(max_in)).prop_map(
        |(batch, channels, (ih, kh, sh, ph), (iw, kw, sw, pw))| Pool2dGeometry {
            batch,
            channels,
            in_h: ih,
            in_w: iw,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            pad_h: ph,
            pad_w: pw,
        },
    )
}

/// Max pooling forward (outputs and argmax exactly) and backward against the reference.
fn check_max_pool(g: &Pool2dGeometry, input: &[f32], seed: u64) {
    let (mut out, mut arg) = (
        vec![f32::NAN; g.output_len()],
        vec![u32::MAX; g.output_len()],
    );
    let (mut ref_out, mut ref_arg) = (vec![0.0; g.output_len()], vec![0; g.output_len()]);
    pool::max_pool2d_forward(g, input, &mut out, &mut arg);
    reference::max_pool2d_forward(g, input, &mut ref_out, &mut ref_arg);
    assert_eq!(arg, ref_arg, "argmax for {g:?}");
    let bits = |v: &[f32]| {
        v.iter()
            .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&out), bits(&ref_out), "max output for {g:?}");

    let grad_out = Values(seed).vec(g.output_len());
    let (mut grad_in, mut ref_grad_in) = (vec![f32::NAN; g.input_len()], vec![0.0; g.input_len()]);
    pool::max_pool2d_backward(g, &grad_out, &arg, &mut grad_in);
    reference::max_pool2d_backward(g, &grad_out, &ref_arg, &mut ref_grad_in);
    assert_close(&grad_in, &ref_grad_in, 1e-6, "max_pool2d_backward");
}

fn check_avg_pool(g: &Pool2dGeometry, seed: u64) {
    let mut values = Values(seed);
    let input = values.vec(g.input_len());
    let (mut out, mut ref_out) = (vec![f32::NAN; g.output_len()], vec![0.0; g.output_len()]);
    pool::avg_pool2d_forward(g, &input, &mut out);
    reference::avg_pool2d_forward(g, &input, &mut ref_out);
    assert_close(&out, &ref_out, 1e-5, "avg_pool2d_forward");

    let grad_out = values.vec(g.output_len());
    let (mut grad_in, mut ref_grad_in) = (vec![f32::NAN; g.input_len()], vec![0.0; g.input_len()]);
    pool::avg_pool2d_backward(g, &grad_out, &mut grad_in);
    reference::avg_pool2d_backward(g, &grad_out, &mut ref_grad_in);
    assert_close(&grad_in, &ref_grad_in, 1e-5, "avg_pool2d_backward");
}

fn check_global_avg_pool(batch: usize, channels: usize, plane: usize, seed: u64) {
    let mut values = Values(seed);
    let input = values.vec(batch * channels * plane);
    let (mut out, mut ref_out) = (
        vec![f32::NAN; batch * channels],
        vec![0.0; batch * channels],
    );
    pool::global_avg_pool2d_forward(batch, channels, plane, &input, &mut out);
    reference::global_avg_pool2d_forward(batch, channels, plane, &input, &mut ref_out);
    assert_close(&out, &ref_out, 1e-6, "global_avg_pool2d_forward");

    let grad_out = values.vec(batch * channels);
    let (mut grad_in, mut ref_grad_in) = (vec![f32::NAN; input.len()], vec![0.0; input.len()]);
    pool::global_avg_pool2d_backward(batch, channels, plane, &grad_out, &mut grad_in);
    reference::global_avg_pool2d_backward(batch, channels, plane, &grad_out, &mut ref_grad_in);
    assert_close(&grad_in, &ref_grad_in, 1e-6, "global_avg_pool2d_backward");
}

proptest! {
    #[test]
    fn max_pool_matches_reference_with_ties(g in any_geometry(4, 20), seed in any::<u64>()) {
        check_max_pool(&g, &Values(seed).ties(g.input_len()), seed);
    }

    #[test]
    fn max_pool_matches_reference_with_nans(g in any_geometry(4, 20), seed in any::<u64>()) {
        check_max_pool(&g, &Values(seed).ties_and_nans(g.input_len()), seed);
    }

    #[test]
    fn avg_pool_matches_reference(g in any_geometry(4, 20), seed in any::<u64>()) {
        check_avg_pool(&g, seed);
    }
}

#[test]
fn halving_max_pool_matches_reference_for_every_small_size() {
    // NOTE: widths up to 41 give output rows of 1..=20 windows, around the groups of eight.
    for in_h in 2..=20 {
        for in_w in 2..=41 {
            let g = geometry(2, 3, (in_h, in_w), 2, 2, 0);
            let mut values = Values(in_h as u64 * 31 + in_w as u64);
            check_max_pool(&g, &values.ties(g.input_len()), 1);
            check_max_pool(&g, &values.ties_and_nans(g.input_len()), 1);
        }
    }
}

#[test]
fn pooling_matches_reference_for_every_small_size() {
    for in_h in 1..=20 {
        for in_w in 1..=20 {
            for (kernel, stride, pad) in [(3, 2, 1), (1, 1, 0), (3, 1, 1)] {
                if kernel > in_h.min(in_w) + 2 * pad {
                    continue;
                }
                let g = geometry(1, 2, (in_h, in_w), kernel, stride, pad);
                check_max_pool(
                    &g,
                    &Values(in_h as u64 * 37 + in_w as u64).ties(g.input_len()),
                    2,
                );
                check_avg_pool(&g, 3);
            }
        }
    }
}

#[test]
fn pooling_matches_reference_on_large_multi_task_shapes() {
    // MnistNet's pooling (64 channels of 24x24), an odd one, and one with overlapping windows.
    for g in [
        geometry(6, 64, (24, 24), 2, 2, 0),
        geometry(3, 5, (37, 29), 2, 2, 0),
        geometry(2, 7, (61, 53), 3, 2, 1),
    ] {
        check_max_pool(&g, &Values(9).vec(g.input_len()), 4);
        check_avg_pool(&g, 5);
    }
}

#[test]
fn global_avg_pool_matches_reference() {
    for plane in 1..=20 {
        for channels in 0..=3 {
            check_global_avg_pool(2, channels, plane, plane as u64);
        }
    }
    check_global_avg_pool(3, 67, 49, 6);
    check_global_avg_pool(5, 4099, 1, 7);
    check_global_avg_pool(1, 3, 20_011, 8);
}

#[test]
fn max_pool_ties_pick_the_first_element_of_the_window() {
    let g = geometry(1, 1, (3, 3), 3, 1, 1);
    let (mut out, mut arg) = (vec![f32::NAN; 9], vec![u32::MAX; 9]);
    pool::max_pool2d_forward(&g, &[1.0; 9], &mut out, &mut arg);
    assert_eq!(out, [1.0; 9]);
    // The first input element of each window, row by row, padding skipped.
    assert_eq!(arg, [0, 0, 1, 0, 0, 1, 3, 3, 4]);

    let g = geometry(1, 1, (4, 4), 2, 2, 0);
    let (mut out, mut arg) = (vec![f32::NAN; 4], vec![u32::MAX; 4]);
    pool::max_pool2d_forward(&g, &[7.0; 16], &mut out, &mut arg);
    assert_eq!(arg, [0, 2, 8, 10]);
}

#[test]
fn max_pool_padding_never_wins_and_nan_propagates() {
    let g = geometry(1, 1, (2, 3), 3, 1, 1);
    let (mut out, mut arg) = (vec![f32::NAN; 6], vec![u32::MAX; 6]);
    pool::max_pool2d_forward(&g, &[-5.0; 6], &mut out, &mut arg);
    assert_eq!(out, [-5.0; 6]);

    let input = [1.0, f32::NAN, 3.0, 4.0, f32::NAN, 0.0, 2.0, 9.0];
    let g = geometry(1, 1, (2, 4), 2, 2, 0);
    let (mut out, mut arg) = (vec![0.0; 2], vec![0; 2]);
    pool::max_pool2d_forward(&g, &input, &mut out, &mut arg);
    assert!(
        out[0].is_nan() && arg[0] == 1,
        "the first NaN wins: {out:?} {arg:?}"
    );
    assert_eq!((out[1], arg[1]), (9.0, 7));
}

#[test]
fn avg_pool_counts_padding_in_the_divisor() {
    let g = geometry(1, 1, (3, 3), 3, 1, 1);
    let mut out = vec![f32::NAN; 9];
    pool::avg_pool2d_forward(&g, &[1.0; 9], &mut out);
    let expected = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0].map(|v: f32| v / 9.0);
    assert_close(&out, &expected, 1e-7, "avg_pool2d_forward");
}

/// Central differences of `loss(input) = sum(forward(input) * weights)` against `grad`.
fn check_finite_differences(
    input: &[f32],
    grad: &[f32],
    h: f32,
    tol: f64,
    loss: impl Fn(&[f32]) -> f64,
) {
    let mut x = input.to_vec();
    for i in 0..x.len() {
        x[i] = input[i] + h;
        let up = loss(&x);
        x[i] = input[i] - h;
        let down = loss(&x);
        x[i] = input[i];
        let numeric = (up - down) / (2.0 * f64::from(h));
        let analytic = f64::from(grad[i]);
        assert!(
            (numeric - analytic).abs() <= tol * (1.0 + analytic.abs()),
            "d/dx[{i}]: numeric {numeric}, analytic {analytic}"
        );
    }
}

fn weighted_sum(out: &[f32], weights: &[f32]) -> f64 {
    out.iter()
        .zip(weights)
        .map(|(&o, &w)| f64::from(o) * f64::from(w))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reference_max_pool_backward_matches_finite_differences(
        g in any_geometry(3, 9), seed in any::<u64>()
    ) {
        // NOTE: distinct values 0.05 apart, so a step of 0.02 never changes a window's argmax.
        let mut values = Values(seed);
        let keys = values.vec(g.input_len());
        let mut order: Vec<usize> = (0..g.input_len()).collect();
        order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
        let input: Vec<f32> = order.iter().map(|&k| k as f32 * 0.05 - 1.0).collect();
        let weights = values.vec(g.output_len());
        let (mut out, mut arg) = (vec![0.0; g.output_len()], vec![0; g.output_len()]);
        reference::max_pool2d_forward(&g, &input, &mut out, &mut arg);
        let mut grad = vec![0.0; g.input_len()];
        reference::max_pool2d_backward(&g, &weights, &arg, &mut grad);
        check_finite_differences(&input, &grad, 2e-2, 1e-3, |x| {
            let (mut out, mut arg) = (vec![0.0; g.output_len()], vec![0; g.output_len()]);
            reference::max_pool2d_forward(&g, x, &mut out, &mut arg);
            weighted_sum(&out, &weights)
        });
    }

    #[test]
    fn reference_avg_pool_backward_matches_finite_differences(
        g in any_geometry(3, 9), seed in any::<u64>()
    ) {
        let mut values = Values(seed);
        let input = values.vec(g.input_len());
        let weights = values.vec(g.output_len());
        let mut grad = vec![0.0; g.input_len()];
        reference::avg_pool2d_backward(&g, &weights, &mut grad);
        check_finite_differences(&input, &grad, 1e-2, 1e-3, |x| {
            let mut out = vec![0.0; g.output_len()];
            reference::avg_pool2d_forward(&g, x, &mut out);
            weighted_sum(&out, &weights)
        });
    }

    #[test]
    fn reference_global_avg_pool_backward_matches_finite_differences(
        batch in 0..3usize, channels in 0..4usize, plane in 1..30usize, seed in any::<u64>()
    ) {
        let mut values = Values(seed);
        let input = values.vec(batch * channels * plane);
        let weights = values.vec(batch * channels);
        let mut grad = vec![0.0; input.len()];
        reference::global_avg_pool2d_backward(batch, channels, plane, &weights, &mut grad);
        check_finite_differences(&input, &grad, 1e-2, 1e-3, |x| {
            let mut out = vec![0.0; batch * channels];
            reference::global_avg_pool2d_forward(batch, channels, plane, x, &mut out);
            weighted_sum(&out, &weights)
        });
    }
}

#[test]
#[should_panic(expected = "invalid pooling geometry")]
fn padding_beyond_half_the_kernel_is_rejected() {
    let g = geometry(1, 1, (4, 4), 2, 1, 2);
    pool::avg_pool2d_forward(&g, &[0.0; 16], &mut [0.0; 49]);
}

#[test]
#[should_panic(expected = "index out of bounds")]
fn max_pool_backward_rejects_an_argmax_outside_the_plane() {
    let g = geometry(1, 1, (2, 2), 2, 2, 0);
    pool::max_pool2d_backward(&g, &[1.0], &[4], &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "output length")]
fn max_pool_rejects_a_short_output() {
    let g = geometry(1, 2, (4, 4), 2, 2, 0);
    pool::max_pool2d_forward(&g, &[0.0; 32], &mut [0.0; 7], &mut [0; 8]);
}
