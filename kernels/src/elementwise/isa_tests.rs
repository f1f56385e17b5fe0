//! The memory-bound kernels (elementwise, activations, pooling, batch norm, losses) on every
//! instruction set this CPU runs, in one process ([`with_isa`]): each set's results must
//! be close to the scalar reference and bit for bit the same as every other set's.
//!
//! Every kernel runs on lengths and shapes that are not multiples of any vector width (and
//! on both sides of the parallel threshold), checked against the reference, and on special
//! values (NaN, infinities, signed zeros, denormals, huge values), whose outputs are only
//! compared across sets.

use super::ChannelShape;
use super::PARALLEL_THRESHOLD;
use super::tasks::testing::with_isa;
use crate::norm::{BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate};
use crate::pool::Pool2dGeometry;
use crate::simd::Isa;
use crate::{activation, elementwise, loss, norm, pool, reference};

#[test]
fn every_set_matches_the_reference_and_gives_the_same_bits() {
    let mut first: Option<(Isa, Outputs)> = None;
    for isa in Isa::supported() {
        // NOTE: shown with a failing assertion's message, to say which set failed.
        eprintln!("running every kernel on {isa}");
        let outputs = with_isa(isa, || {
            let mut outputs = Outputs::default();
            flat_kernels(&mut outputs);
            axis_kernels(&mut outputs);
            channel_kernels(&mut outputs);
            pooling_kernels(&mut outputs);
            norm_kernels(&mut outputs);
            loss_kernels(&mut outputs);
            outputs
        });
        match &first {
            None => first = Some((isa, outputs)),
            Some((first_isa, expected)) => {
                assert_eq!(outputs.0.len(), expected.0.len(), "{isa}: outputs recorded");
                for ((label, bits), (_, expected_bits)) in outputs.0.iter().zip(&expected.0) {
                    assert!(
                        bits == expected_bits,
                        "{isa} and {first_isa} give different bits for {label}"
                    );
                }
            }
        }
    }
}

/// Every output of a run, labelled, as bit patterns.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u32>)>);

impl Outputs {
    /// Every NaN counts as one pattern: which NaN an operation on two of them returns
    /// depends on the order of its operands in the instruction, which the compiler may swap.
    fn floats(&mut self, label: &str, values: &[f32]) {
        let canonical = |v: &f32| if v.is_nan() { f32::NAN } else { *v };
        let bits = values.iter().map(|v| canonical(v).to_bits()).collect();
        self.0.push((label.to_owned(), bits));
    }

    fn indices(&mut self, label: &str, values: &[u32]) {
        self.0.push((label.to_owned(), values.to_vec()));
    }
}

/// Deterministic pseudo-random values uniform in `[lo, hi)`.
fn uniform(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Values with special ones mixed in: NaN, infinities, signed zeros, a denormal, the largest
/// float, values where `exp` overflows and underflows.
fn specials(len: usize, seed: u64) -> Vec<f32> {
    const SPECIAL: [f32; 10] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-40,
        f32::MAX,
        -f32::MAX,
        100.0,
        -120.0,
    ];
    let mut x = uniform(len, seed, -6.0, 6.0);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 5 == 2 {
            *v = SPECIAL[(i / 5) % SPECIAL.len()];
        }
    }
    x
}

/// Asserts `|actual - expected| <= tol * max(1, |expected|)` elementwise (NaN must match
/// NaN).
#[track_caller]
fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= tol * e.abs().max(1.0);
        assert!(ok, "{what}[{i}]: {a} vs reference {e}");
    }
}

/// Lengths around every vector width (4, 8, 16 and the 32 partial sums), and on both
/// sides of the parallel threshold.
fn lengths() -> Vec<usize> {
    let mut lengths: Vec<usize> = (0..=40).collect();
    lengths.extend([63, 65, 127, 129, 1023, 1025, 4099]);
    lengths.extend([PARALLEL_THRESHOLD - 1, PARALLEL_THRESHOLD + 5, 70_001]);
    lengths
}

/// `[batch, channels, plane]` shapes: the row path (planes below 16), planes that are not
/// multiples of any width, longer than one block of summands (1024), and parallel ones.
fn channel_shapes() -> Vec<(usize, usize, usize)> {
    vec![
        (3, 5, 1),
        (2, 3, 7),
        (4, 2, 15),
        (4, 2, 17),
        (3, 3, 33),
        (2, 4, 529),
        (2, 2, 1100),
        (3, 2, 2059),
        (64, 5, 1),
        (16, 8, 676),
    ]
}

fn flat_kernels(outputs: &mut Outputs) {
    for len in lengths() {
        let a = uniform(len, 1, -3.0, 3.0);
        let b = uniform(len, 2, 0.5, 2.0);
        let (mut got, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
        type Binary = fn(&[f32], &[f32], &mut [f32]);
        let binaries: [(&str, Binary, Binary); 4] = [
            ("add", elementwise::add, reference::elementwise::add),
            ("sub", elementwise::sub, reference::elementwise::sub),
            ("mul", elementwise::mul, reference::elementwise::mul),
            ("div", elementwise::div, reference::elementwise::div),
        ];
        for (name, kernel, reference) in binaries {
            kernel(&a, &b, &mut got);
            reference(&a, &b, &mut want);
            assert_close(&got, &want, 0.0, &format!("{name} {len}"));
            outputs.floats(name, &got);
        }
        elementwise::scale(&a, 0.3, &mut got);
        reference::elementwise::scale(&a, 0.3, &mut want);
        assert_close(&got, &want, 0.0, &format!("scale {len}"));
        outputs.floats("scale", &got);
        elementwise::add_scalar(&a, 0.7, &mut got);
        reference::elementwise::add_scalar(&a, 0.7, &mut want);
        assert_close(&got, &want, 0.0, &format!("add_scalar {len}"));
        outputs.floats("add_scalar", &got);
        got.copy_from_slice(&b);
        want.copy_from_slice(&b);
        elementwise::axpy(0.3, &a, &mut got);
        reference::elementwise::axpy(0.3, &a, &mut want);
        assert_close(&got, &want, 0.0, &format!("axpy {len}"));
        outputs.floats("axpy", &got);

        type Unary = fn(&[f32], &mut [f32]);
        let unaries: [(&str, Unary, Unary, &[f32], f32); 5] = [
            (
                "exp",
                elementwise::exp,
                reference::elementwise::exp,
                &a,
                3e-7,
            ),
            ("ln", elementwise::ln, reference::elementwise::ln, &b, 3e-7),
            (
                "sqrt",
                elementwise::sqrt,
                reference::elementwise::sqrt,
                &b,
                0.0,
            ),
            (
                "relu",
                activation::relu_forward,
                reference::activation::relu_forward,
                &a,
                0.0,
            ),
            (
                "gelu",
                activation::gelu_forward,
                reference::activation::gelu_forward,
                &a,
                5e-7,
            ),
        ];
        for (name, kernel, reference, x, tol) in unaries {
            kernel(x, &mut got);
            reference(x, &mut want);
            assert_close(&got, &want, tol, &format!("{name} {len}"));
            outputs.floats(name, &got);
        }
        activation::relu_backward(&a, &b, &mut got);
        reference::activation::relu_backward(&a, &b, &mut want);
        assert_close(&got, &want, 0.0, &format!("relu_backward {len}"));
        outputs.floats("relu_backward", &got);
        activation::gelu_backward(&a, &b, &mut got);
        reference::activation::gelu_backward(&a, &b, &mut want);
        assert_close(&got, &want, 1e-6, &format!("gelu_backward {len}"));
        outputs.floats("gelu_backward", &got);

        let magnitude: f32 = a.iter().map(|v| v.abs()).sum::<f32>() + 1.0;
        let sum = elementwise::sum(&a);
        assert!(
            (sum - reference::elementwise::sum(&a)).abs() <= 1e-6 * magnitude,
            "sum {len}"
        );
        let dot = elementwise::dot(&a, &b);
        assert!(
            (dot - reference::elementwise::dot(&a, &b)).abs() <= 2e-6 * magnitude,
            "dot {len}"
        );
        outputs.floats("sum dot", &[sum, dot]);

        // Special values: only the bits across sets, the reference does not define them all.
        let s = specials(len, 3);
        type Special = fn(&[f32], &mut [f32]);
        let special: [(&str, Special); 5] = [
            ("exp special", elementwise::exp),
            ("ln special", elementwise::ln),
            ("sqrt special", elementwise::sqrt),
            ("relu special", activation::relu_forward),
            ("gelu special", activation::gelu_forward),
        ];
        for (name, kernel) in special {
            kernel(&s, &mut got);
            outputs.floats(name, &got);
        }
        activation::gelu_backward(&s, &a, &mut got);
        outputs.floats("gelu_backward special", &got);
        outputs.floats(
            "sum special",
            &[elementwise::sum(&s), elementwise::dot(&s, &a)],
        );
    }
}

fn axis_kernels(outputs: &mut Outputs) {
    for (outer, len, inner) in [
        (3, 37, 1),
        (2, 1030, 1),
        (4, 33, 5),
        (2, 9, 300),
        (3, 70, 17),
    ] {
        let mut x = uniform(outer * len * inner, 4, -2.0, 2.0);
        // Ties and NaN for the maxima.
        for (i, v) in x.iter_mut().enumerate() {
            if i % 13 == 4 {
                *v = 2.0;
            } else if i % 97 == 50 {
                *v = f32::NAN;
            }
        }
        let (mut got, mut want) = (vec![f32::NAN; outer * inner], vec![0.0; outer * inner]);
        let (mut at, mut want_at) = (vec![u32::MAX; outer * inner], vec![0; outer * inner]);
        elementwise::max_axis(outer, len, inner, &x, &mut got, &mut at);
        reference::elementwise::max_axis(outer, len, inner, &x, &mut want, &mut want_at);
        assert_close(&got, &want, 0.0, "max_axis");
        assert_eq!(at, want_at, "max_axis argmax [{outer}, {len}, {inner}]");
        outputs.floats("max_axis", &got);
        outputs.indices("max_axis argmax", &at);
        let finite: Vec<f32> = x
            .iter()
            .map(|&v| if v.is_nan() { 1.0 } else { v })
            .collect();
        elementwise::sum_axis(outer, len, inner, &finite, &mut got);
        reference::elementwise::sum_axis(outer, len, inner, &finite, &mut want);
        assert_close(&got, &want, 1e-5 * len as f32, "sum_axis");
        outputs.floats("sum_axis", &got);
    }
}

fn channel_kernels(outputs: &mut Outputs) {
    for (batch, channels, plane) in channel_shapes() {
        let len = batch * channels * plane;
        let x = uniform(len, 5, -3.0, 3.0);
        let g = uniform(len, 6, -1.0, 1.0);
        let slope = uniform(channels, 7, 0.5, 1.5);
        let what = format!("[{batch}, {channels}, {plane}]");
        let (mut got, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
        let (mut got_c, mut want_c) = (vec![f32::NAN; channels], vec![0.0; channels]);
        let sum_tol = 1e-5 * (batch * plane) as f32;

        elementwise::mul_channels(batch, channels, plane, &x, &slope, &mut got);
        reference::elementwise::mul_channels(batch, channels, plane, &x, &slope, &mut want);
        assert_close(&got, &want, 0.0, &format!("mul_channels {what}"));
        outputs.floats("mul_channels", &got);
        elementwise::add_channels(batch, channels, plane, &x, &slope, &mut got);
        reference::elementwise::add_channels(batch, channels, plane, &x, &slope, &mut want);
        assert_close(&got, &want, 0.0, &format!("add_channels {what}"));
        outputs.floats("add_channels", &got);
        elementwise::sum_channels(batch, channels, plane, &x, &mut got_c);
        reference::elementwise::sum_channels(batch, channels, plane, &x, &mut want_c);
        assert_close(&got_c, &want_c, sum_tol, &format!("sum_channels {what}"));
        outputs.floats("sum_channels", &got_c);
        elementwise::dot_channels(batch, channels, plane, &x, &g, &mut got_c);
        reference::elementwise::dot_channels(batch, channels, plane, &x, &g, &mut want_c);
        assert_close(&got_c, &want_c, sum_tol, &format!("dot_channels {what}"));
        outputs.floats("dot_channels", &got_c);

        type Forward = fn(&ChannelShape, &[f32], &[f32], &mut [f32]);
        type Backward = fn(&ChannelShape, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);
        let shape = ChannelShape {
            batch,
            channels,
            plane,
        };
        let rotated: [(&str, Forward, Forward, Backward, Backward, f32); 2] = [
            (
                "rotated_relu",
                activation::rotated_relu_forward,
                reference::activation::rotated_relu_forward,
                activation::rotated_relu_backward,
                reference::activation::rotated_relu_backward,
                0.0,
            ),
            (
                "rotated_gelu",
                activation::rotated_gelu_forward,
                reference::activation::rotated_gelu_forward,
                activation::rotated_gelu_backward,
                reference::activation::rotated_gelu_backward,
                1e-6,
            ),
        ];
        for (name, forward, ref_forward, backward, ref_backward, tol) in rotated {
            forward(&shape, &x, &slope, &mut got);
            ref_forward(&shape, &x, &slope, &mut want);
            assert_close(&got, &want, tol, &format!("{name} forward {what}"));
            outputs.floats(name, &got);
            backward(&shape, &x, &slope, &g, &mut got, &mut got_c);
            ref_backward(&shape, &x, &slope, &g, &mut want, &mut want_c);
            assert_close(&got, &want, tol, &format!("{name} backward {what}"));
            assert_close(
                &got_c,
                &want_c,
                sum_tol,
                &format!("{name} grad_slope {what}"),
            );
            outputs.floats(name, &got);
            outputs.floats(name, &got_c);
        }
        let s = specials(len, 8);
        activation::rotated_gelu_backward(&shape, &s, &slope, &g, &mut got, &mut got_c);
        outputs.floats("rotated_gelu special", &got);
        outputs.floats("rotated_gelu special", &got_c);
    }
}

fn pooling_kernels(outputs: &mut Outputs) {
    let pool2d = |batch, channels, in_h, in_w, kernel, stride, pad| Pool2dGeometry {
        batch,
        channels,
        in_h,
        in_w,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_h: pad,
        pad_w: pad,
    };
    let geometries = [
        pool2d(2, 3, 24, 24, 2, 2, 0),
        pool2d(2, 3, 7, 9, 2, 2, 0),
        pool2d(3, 2, 35, 37, 2, 2, 0),
        pool2d(64, 8, 26, 26, 2, 2, 0),
        pool2d(2, 3, 11, 13, 3, 2, 1),
    ];
    for g in geometries {
        let what = format!("{g:?}");
        let mut x = uniform(g.input_len(), 9, -2.0, 2.0);
        for (i, v) in x.iter_mut().enumerate() {
            if i % 17 == 3 {
                *v = 1.5; // ties
            } else if i % 101 == 7 {
                *v = f32::NAN;
            }
        }
        let out_len = g.output_len();
        let (mut got, mut want) = (vec![f32::NAN; out_len], vec![0.0; out_len]);
        let (mut at, mut want_at) = (vec![u32::MAX; out_len], vec![0; out_len]);
        pool::max_pool2d_forward(&g, &x, &mut got, &mut at);
        reference::pool::max_pool2d_forward(&g, &x, &mut want, &mut want_at);
        assert_close(&got, &want, 0.0, &format!("max_pool2d_forward {what}"));
        assert_eq!(at, want_at, "max_pool2d_forward argmax {what}");
        outputs.floats("max_pool", &got);
        outputs.indices("max_pool argmax", &at);

        let d = uniform(out_len, 10, -1.0, 1.0);
        let (mut gi, mut want_gi) = (vec![f32::NAN; g.input_len()], vec![0.0; g.input_len()]);
        pool::max_pool2d_backward(&g, &d, &at, &mut gi);
        reference::pool::max_pool2d_backward(&g, &d, &want_at, &mut want_gi);
        assert_close(&gi, &want_gi, 1e-6, &format!("max_pool2d_backward {what}"));
        outputs.floats("max_pool backward", &gi);

        let finite = uniform(g.input_len(), 11, -2.0, 2.0);
        pool::avg_pool2d_forward(&g, &finite, &mut got);
        reference::pool::avg_pool2d_forward(&g, &finite, &mut want);
        assert_close(&got, &want, 1e-6, &format!("avg_pool2d_forward {what}"));
        outputs.floats("avg_pool", &got);
        pool::avg_pool2d_backward(&g, &d, &mut gi);
        reference::pool::avg_pool2d_backward(&g, &d, &mut want_gi);
        assert_close(&gi, &want_gi, 1e-6, &format!("avg_pool2d_backward {what}"));
        outputs.floats("avg_pool backward", &gi);

        let (planes, plane) = (g.batch * g.channels, g.in_h * g.in_w);
        let (mut got_g, mut want_g) = (vec![f32::NAN; planes], vec![0.0; planes]);
        pool::global_avg_pool2d_forward(g.batch, g.channels, plane, &finite, &mut got_g);
        reference::pool::global_avg_pool2d_forward(
            g.batch,
            g.channels,
            plane,
            &finite,
            &mut want_g,
        );
        assert_close(
            &got_g,
            &want_g,
            1e-6,
            &format!("global_avg_pool2d_forward {what}"),
        );
        outputs.floats("global_avg_pool", &got_g);
        pool::global_avg_pool2d_backward(g.batch, g.channels, plane, &got_g, &mut gi);
        reference::pool::global_avg_pool2d_backward(
            g.batch,
            g.channels,
            plane,
            &got_g,
            &mut want_gi,
        );
        assert_close(
            &gi,
            &want_gi,
            1e-6,
            &format!("global_avg_pool2d_backward {what}"),
        );
        outputs.floats("global_avg_pool backward", &gi);
    }
}

fn norm_kernels(outputs: &mut Outputs) {
    for (batch, channels, plane) in [(5, 3, 1), (70, 6, 1), (3, 4, 7), (2, 3, 37), (16, 8, 676)] {
        let geometry = BatchNormGeometry {
            batch,
            channels,
            plane,
        };
        let what = format!("{geometry:?}");
        let len = geometry.input_len();
        let x = uniform(len, 12, 3.0, 5.0);
        let d = uniform(len, 13, -1.0, 1.0);
        let gamma = uniform(channels, 14, 0.5, 1.5);
        let beta = uniform(channels, 15, -0.5, 0.5);
        let params = BatchNormParams {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        };
        let per_channel = |seed| (vec![0.5; channels], uniform(channels, seed, 0.5, 1.5));
        let ((mut mean, mut var), (mut want_mean, mut want_var)) =
            (per_channel(16), per_channel(16));
        let (mut out, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
        let (mut save_mean, mut save_invstd) = (vec![0.0; channels], vec![0.0; channels]);
        let (mut want_save_mean, mut want_save_invstd) = (vec![0.0; channels], vec![0.0; channels]);
        let running = RunningStatsUpdate {
            mean: &mut mean,
            var: &mut var,
            momentum: 0.1,
        };
        norm::batch_norm_forward_train(
            &geometry,
            &x,
            params,
            running,
            &mut out,
            &mut save_mean,
            &mut save_invstd,
        );
        let want_running = RunningStatsUpdate {
            mean: &mut want_mean,
            var: &mut want_var,
            momentum: 0.1,
        };
        reference::norm::batch_norm_forward_train(
            &geometry,
            &x,
            params,
            want_running,
            &mut want,
            &mut want_save_mean,
            &mut want_save_invstd,
        );
        assert_close(
            &out,
            &want,
            1e-4,
            &format!("batch_norm_forward_train {what}"),
        );
        assert_close(
            &save_invstd,
            &want_save_invstd,
            1e-4,
            &format!("invstd {what}"),
        );
        for values in [&out, &mean, &var, &save_mean, &save_invstd] {
            outputs.floats("batch_norm train", values);
        }

        let (mut gi, mut want_gi) = (vec![f32::NAN; len], vec![0.0; len]);
        let (mut gg, mut gb) = (vec![0.0; channels], vec![0.0; channels]);
        let (mut want_gg, mut want_gb) = (vec![0.0; channels], vec![0.0; channels]);
        let grads = BatchNormGradients {
            input: &mut gi,
            gamma: &mut gg,
            beta: &mut gb,
        };
        norm::batch_norm_backward_train(&geometry, &x, &d, &gamma, &save_mean, &save_invstd, grads);
        let want_grads = BatchNormGradients {
            input: &mut want_gi,
            gamma: &mut want_gg,
            beta: &mut want_gb,
        };
        reference::norm::batch_norm_backward_train(
            &geometry,
            &x,
            &d,
            &gamma,
            &save_mean,
            &save_invstd,
            want_grads,
        );
        assert_close(
            &gi,
            &want_gi,
            1e-3,
            &format!("batch_norm_backward_train {what}"),
        );
        for values in [&gi, &gg, &gb] {
            outputs.floats("batch_norm train backward", values);
        }

        norm::batch_norm_forward_eval(&geometry, &x, params, &mean, &var, &mut out);
        reference::norm::batch_norm_forward_eval(&geometry, &x, params, &mean, &var, &mut want);
        assert_close(
            &out,
            &want,
            1e-5,
            &format!("batch_norm_forward_eval {what}"),
        );
        outputs.floats("batch_norm eval", &out);
        let grads = BatchNormGradients {
            input: &mut gi,
            gamma: &mut gg,
            beta: &mut gb,
        };
        norm::batch_norm_backward_eval(&geometry, &x, &d, params, &mean, &var, grads);
        outputs.floats("batch_norm eval backward", &gi);
        outputs.floats("batch_norm eval backward", &gg);
    }
}

fn loss_kernels(outputs: &mut Outputs) {
    for (rows, cols) in [
        (1, 1),
        (3, 7),
        (5, 10),
        (4, 33),
        (64, 10),
        (7, 1030),
        (40, 1000),
    ] {
        let len = rows * cols;
        let x = uniform(len, 17, -8.0, 8.0);
        let gy = uniform(len, 18, -1.0, 1.0);
        let targets: Vec<u32> = (0..rows).map(|r| (r * 7 % cols) as u32).collect();
        let what = format!("{rows} x {cols}");
        let (mut y, mut want) = (vec![f32::NAN; len], vec![0.0; len]);
        let (mut gx, mut want_gx) = (vec![f32::NAN; len], vec![0.0; len]);
        loss::softmax_forward(rows, cols, &x, &mut y);
        reference::loss::softmax_forward(rows, cols, &x, &mut want);
        assert_close(&y, &want, 1e-6, &format!("softmax_forward {what}"));
        outputs.floats("softmax", &y);
        loss::softmax_backward(rows, cols, &y, &gy, &mut gx);
        reference::loss::softmax_backward(rows, cols, &want, &gy, &mut want_gx);
        assert_close(&gx, &want_gx, 1e-6, &format!("softmax_backward {what}"));
        outputs.floats("softmax backward", &gx);
        loss::log_softmax_forward(rows, cols, &x, &mut y);
        reference::loss::log_softmax_forward(rows, cols, &x, &mut want);
        assert_close(&y, &want, 1e-5, &format!("log_softmax_forward {what}"));
        outputs.floats("log_softmax", &y);
        loss::log_softmax_backward(rows, cols, &y, &gy, &mut gx);
        reference::loss::log_softmax_backward(rows, cols, &want, &gy, &mut want_gx);
        assert_close(&gx, &want_gx, 1e-4, &format!("log_softmax_backward {what}"));
        outputs.floats("log_softmax backward", &gx);
        let got_loss = loss::cross_entropy_forward(rows, cols, &x, &targets, &mut y);
        let want_loss = reference::loss::cross_entropy_forward(rows, cols, &x, &targets, &mut want);
        assert_close(
            &[got_loss],
            &[want_loss],
            1e-5,
            &format!("cross_entropy {what}"),
        );
        assert_close(&y, &want, 1e-6, &format!("cross_entropy probs {what}"));
        loss::cross_entropy_backward(rows, cols, &y, &targets, 0.5, &mut gx);
        outputs.floats("cross_entropy", &[got_loss]);
        outputs.floats("cross_entropy probs", &y);
        outputs.floats("cross_entropy backward", &gx);
        let s = specials(len, 19);
        loss::softmax_forward(rows, cols, &s, &mut y);
        outputs.floats("softmax special", &y);
    }
}
