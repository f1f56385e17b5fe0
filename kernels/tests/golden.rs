//! The kernels against PyTorch: every fixture in `fixtures/golden/` that describes a kernel
//! is replayed here, forward and backward, and compared to 1e-4 relative (see
//! [`common::Fixture::check`] for the exact tolerance).
//!
//! Each backward test feeds the fixture's own forward results (saved statistics,
//! probabilities, argmax) rather than the kernel's, so a forward fault cannot hide behind
//! or masquerade as a backward one. Output buffers start as NaN to prove the kernels
//! overwrite them.

mod common;

use common::Fixture;
use rotor_kernels::activation;
use rotor_kernels::conv::{self, Conv2dGeometry, Conv2dGradients};
use rotor_kernels::elementwise::{self, ChannelShape};
use rotor_kernels::gemm::{self, MatrixView, MatrixViewMut};
use rotor_kernels::loss;
use rotor_kernels::norm::{
    self, BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate,
};
use rotor_kernels::pool::{self, Pool2dGeometry};

/// Fixture ops that the training code checks, not the kernels.
const NOT_KERNEL_OPS: &[&str] = &["optimizer", "lr_schedule", "input_gradient"];

fn nan(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

fn len_of(f: &Fixture, name: &str) -> usize {
    f.shape(name).iter().product()
}

/// `[batch, channels, plane]` of a per-channel fixture, checked against its input shape.
fn channel_layout(f: &Fixture, input: &str) -> (usize, usize, usize) {
    let (batch, channels, plane) = (
        f.meta_usize("batch"),
        f.meta_usize("channels"),
        f.meta_usize("plane"),
    );
    let shape = f.shape(input);
    assert_eq!(shape[..2], [batch, channels], "{input} shape {shape:?}");
    assert_eq!(
        shape[2..].iter().product::<usize>(),
        plane,
        "{input} shape {shape:?}"
    );
    (batch, channels, plane)
}

// -- convolution --------------------------------------------------------------------------

fn conv_geometry(f: &Fixture) -> Conv2dGeometry {
    let g = Conv2dGeometry {
        batch: f.meta_usize("batch"),
        in_channels: f.meta_usize("in_channels"),
        out_channels: f.meta_usize("out_channels"),
        in_h: f.meta_usize("in_h"),
        in_w: f.meta_usize("in_w"),
        kernel_h: f.meta_usize("kernel_h"),
        kernel_w: f.meta_usize("kernel_w"),
        stride_h: f.meta_usize("stride_h"),
        stride_w: f.meta_usize("stride_w"),
        pad_h: f.meta_usize("pad_h"),
        pad_w: f.meta_usize("pad_w"),
    };
    let output_shape = vec![g.batch, g.out_channels, g.out_h(), g.out_w()];
    assert_eq!(f.shape("output"), output_shape, "{g:?}: out_h/out_w");
    assert_eq!(g.input_len(), len_of(f, "input"), "{g:?}: input_len");
    assert_eq!(g.weight_len(), len_of(f, "weight"), "{g:?}: weight_len");
    assert_eq!(g.output_len(), len_of(f, "output"), "{g:?}: output_len");
    g
}

fn check_conv2d_forward(name: &str) {
    let f = Fixture::load(name);
    let g = conv_geometry(&f);
    let (input, weight, bias) = (f.f32s("input"), f.f32s("weight"), f.f32s("bias"));

    let mut output = nan(g.output_len());
    conv::conv2d_forward(&g, &input, &weight, Some(&bias), &mut output);
    f.check("output", &output);

    // NOTE: without a bias the answer is the fixture's output minus the bias per channel.
    let (shape, with_bias) = f.f64s("output");
    let plane = g.out_h() * g.out_w();
    let want: Vec<f64> = with_bias
        .iter()
        .enumerate()
        .map(|(i, w)| w - f64::from(bias[(i / plane) % g.out_channels]))
        .collect();
    let mut output = nan(g.output_len());
    conv::conv2d_forward(&g, &input, &weight, None, &mut output);
    f.check_values("output without bias", &shape, &want, &output);
}

fn check_conv2d_backward(name: &str) {
    let f = Fixture::load(name);
    let g = conv_geometry(&f);
    let (input, weight) = (f.f32s("input"), f.f32s("weight"));
    let grad_output = f.f32s("grad_output");
    let bias_len = g.out_channels;

    let mut gi = nan(g.input_len());
    let mut gw = nan(g.weight_len());
    let mut gb = nan(bias_len);
    let grads = Conv2dGradients {
        input: Some(&mut gi),
        weight: Some(&mut gw),
        bias: Some(&mut gb),
    };
    conv::conv2d_backward(&g, &input, &weight, &grad_output, grads);
    f.check("grad_input", &gi);
    f.check("grad_weight", &gw);
    f.check("grad_bias", &gb);

    // NOTE: the subsets the engine asks for: input only (frozen layer), parameters only
    // (first layer, whose input needs no gradient).
    let mut gi = nan(g.input_len());
    let grads = Conv2dGradients {
        input: Some(&mut gi),
        ..Conv2dGradients::default()
    };
    conv::conv2d_backward(&g, &input, &weight, &grad_output, grads);
    f.check("grad_input", &gi);
    let mut gw = nan(g.weight_len());
    let mut gb = nan(bias_len);
    let grads = Conv2dGradients {
        input: None,
        weight: Some(&mut gw),
        bias: Some(&mut gb),
    };
    conv::conv2d_backward(&g, &input, &weight, &grad_output, grads);
    f.check("grad_weight", &gw);
    f.check("grad_bias", &gb);
}

// -- linear: sgemm plus a per-column bias -------------------------------------------------

struct LinearSizes {
    rows: usize,
    fin: usize,
    fout: usize,
}

fn linear_sizes(f: &Fixture) -> LinearSizes {
    let s = LinearSizes {
        rows: f.meta_usize("rows"),
        fin: f.meta_usize("in_features"),
        fout: f.meta_usize("out_features"),
    };
    assert_eq!(f.shape("input"), [s.rows, s.fin]);
    assert_eq!(f.shape("weight"), [s.fout, s.fin]);
    s
}

fn check_linear_forward(name: &str) {
    let f = Fixture::load(name);
    let LinearSizes { rows, fin, fout } = linear_sizes(&f);
    let (x, w, b) = (f.f32s("input"), f.f32s("weight"), f.f32s("bias"));

    let mut xw = nan(rows * fout);
    let (x, w) = (
        MatrixView::row_major(&x, rows, fin),
        MatrixView::row_major(&w, fout, fin),
    );
    gemm::sgemm(
        1.0,
        x,
        w.t(),
        0.0,
        MatrixViewMut::row_major(&mut xw, rows, fout),
    );
    let mut output = nan(rows * fout);
    elementwise::add_channels(rows, fout, 1, &xw, &b, &mut output);
    f.check("output", &output);
}

fn check_linear_backward(name: &str) {
    let f = Fixture::load(name);
    let LinearSizes { rows, fin, fout } = linear_sizes(&f);
    let (x, w, gy) = (f.f32s("input"), f.f32s("weight"), f.f32s("grad_output"));

    let x_view = MatrixView::row_major(&x, rows, fin);
    let w_view = MatrixView::row_major(&w, fout, fin);
    let gy_view = MatrixView::row_major(&gy, rows, fout);
    let mut gx = nan(rows * fin);
    let view = MatrixViewMut::row_major(&mut gx, rows, fin);
    gemm::sgemm(1.0, gy_view, w_view, 0.0, view);
    f.check("grad_input", &gx);
    let mut gw = nan(fout * fin);
    let view = MatrixViewMut::row_major(&mut gw, fout, fin);
    gemm::sgemm(1.0, gy_view.t(), x_view, 0.0, view);
    f.check("grad_weight", &gw);
    let mut gb = nan(fout);
    elementwise::sum_channels(rows, fout, 1, &gy, &mut gb);
    f.check("grad_bias", &gb);
}

// -- pooling ------------------------------------------------------------------------------

fn pool_geometry(f: &Fixture) -> Pool2dGeometry {
    let g = Pool2dGeometry {
        batch: f.meta_usize("batch"),
        channels: f.meta_usize("channels"),
        in_h: f.meta_usize("in_h"),
        in_w: f.meta_usize("in_w"),
        kernel_h: f.meta_usize("kernel_h"),
        kernel_w: f.meta_usize("kernel_w"),
        stride_h: f.meta_usize("stride_h"),
        stride_w: f.meta_usize("stride_w"),
        pad_h: f.meta_usize("pad_h"),
        pad_w: f.meta_usize("pad_w"),
    };
    assert_eq!(
        f.shape("output"),
        [g.batch, g.channels, g.out_h(), g.out_w()],
        "{g:?}"
    );
    assert_eq!(g.input_len(), len_of(f, "input"), "{g:?}: input_len");
    assert_eq!(g.output_len(), len_of(f, "output"), "{g:?}: output_len");
    g
}

fn check_max_pool2d_forward(name: &str) {
    let f = Fixture::load(name);
    let g = pool_geometry(&f);
    let mut output = nan(g.output_len());
    let mut argmax = vec![u32::MAX; g.output_len()];
    pool::max_pool2d_forward(&g, &f.f32s("input"), &mut output, &mut argmax);
    f.check("output", &output);
    f.check_u32("argmax", &argmax);
}

fn check_max_pool2d_backward(name: &str) {
    let f = Fixture::load(name);
    let g = pool_geometry(&f);
    let mut gi = nan(g.input_len());
    pool::max_pool2d_backward(&g, &f.f32s("grad_output"), &f.u32s("argmax"), &mut gi);
    f.check("grad_input", &gi);
}

fn check_avg_pool2d_forward(name: &str) {
    let f = Fixture::load(name);
    let g = pool_geometry(&f);
    let mut output = nan(g.output_len());
    pool::avg_pool2d_forward(&g, &f.f32s("input"), &mut output);
    f.check("output", &output);
}

fn check_avg_pool2d_backward(name: &str) {
    let f = Fixture::load(name);
    let g = pool_geometry(&f);
    let mut gi = nan(g.input_len());
    pool::avg_pool2d_backward(&g, &f.f32s("grad_output"), &mut gi);
    f.check("grad_input", &gi);
}

fn global_pool_layout(f: &Fixture) -> (usize, usize, usize) {
    let (batch, channels) = (f.meta_usize("batch"), f.meta_usize("channels"));
    let plane = f.meta_usize("in_h") * f.meta_usize("in_w");
    assert_eq!(len_of(f, "input"), batch * channels * plane);
    assert_eq!(f.shape("output"), [batch, channels]);
    (batch, channels, plane)
}

fn check_global_avg_pool2d_forward(name: &str) {
    let f = Fixture::load(name);
    let (batch, channels, plane) = global_pool_layout(&f);
    let mut output = nan(batch * channels);
    pool::global_avg_pool2d_forward(batch, channels, plane, &f.f32s("input"), &mut output);
    f.check("output", &output);
}

fn check_global_avg_pool2d_backward(name: &str) {
    let f = Fixture::load(name);
    let (batch, channels, plane) = global_pool_layout(&f);
    let mut gi = nan(batch * channels * plane);
    pool::global_avg_pool2d_backward(batch, channels, plane, &f.f32s("grad_output"), &mut gi);
    f.check("grad_input", &gi);
}

// -- batch normalisation ------------------------------------------------------------------

fn norm_geometry(f: &Fixture) -> BatchNormGeometry {
    let (batch, channels, plane) = channel_layout(f, "input");
    BatchNormGeometry {
        batch,
        channels,
        plane,
    }
}

/// A fixture's `gamma`, `beta` and `eps`.
struct NormParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl NormParams {
    fn load(f: &Fixture) -> Self {
        NormParams {
            gamma: f.f32s("gamma"),
            beta: f.f32s("beta"),
            eps: f.meta_f32("eps"),
        }
    }

    fn as_params(&self) -> BatchNormParams<'_> {
        BatchNormParams {
            gamma: &self.gamma,
            beta: &self.beta,
            eps: self.eps,
        }
    }
}

/// Runs a batch-norm backward on the fixture's input and output gradient into NaN-filled
/// buffers and checks the three gradients.
fn check_batch_norm_gradients(
    f: &Fixture,
    backward: impl FnOnce(&BatchNormGeometry, &[f32], &[f32], BatchNormGradients<'_>),
) {
    let g = norm_geometry(f);
    let mut gi = nan(len_of(f, "input"));
    let mut gg = nan(g.channels);
    let mut gb = nan(g.channels);
    let grads = BatchNormGradients {
        input: &mut gi,
        gamma: &mut gg,
        beta: &mut gb,
    };
    backward(&g, &f.f32s("input"), &f.f32s("grad_output"), grads);
    f.check("grad_input", &gi);
    f.check("grad_gamma", &gg);
    f.check("grad_beta", &gb);
}

fn check_batch_norm_train_forward(name: &str) {
    let f = Fixture::load(name);
    let g = norm_geometry(&f);
    let mut running_mean = f.f32s("running_mean");
    let mut running_var = f.f32s("running_var");
    let mut output = nan(len_of(&f, "input"));
    let mut save_mean = nan(g.channels);
    let mut save_invstd = nan(g.channels);
    norm::batch_norm_forward_train(
        &g,
        &f.f32s("input"),
        NormParams::load(&f).as_params(),
        RunningStatsUpdate {
            mean: &mut running_mean,
            var: &mut running_var,
            momentum: f.meta_f32("momentum"),
        },
        &mut output,
        &mut save_mean,
        &mut save_invstd,
    );
    f.check("output", &output);
    f.check("save_mean", &save_mean);
    f.check("save_invstd", &save_invstd);
    f.check("running_mean_after", &running_mean);
    f.check("running_var_after", &running_var);
}

fn check_batch_norm_train_backward(name: &str) {
    let f = Fixture::load(name);
    check_batch_norm_gradients(&f, |g, input, grad_output, grads| {
        norm::batch_norm_backward_train(
            g,
            input,
            grad_output,
            &f.f32s("gamma"),
            &f.f32s("save_mean"),
            &f.f32s("save_invstd"),
            grads,
        );
    });
}

fn check_batch_norm_eval_forward(name: &str) {
    let f = Fixture::load(name);
    let mut output = nan(len_of(&f, "input"));
    norm::batch_norm_forward_eval(
        &norm_geometry(&f),
        &f.f32s("input"),
        NormParams::load(&f).as_params(),
        &f.f32s("running_mean"),
        &f.f32s("running_var"),
        &mut output,
    );
    f.check("output", &output);
}

fn check_batch_norm_eval_backward(name: &str) {
    let f = Fixture::load(name);
    check_batch_norm_gradients(&f, |g, input, grad_output, grads| {
        norm::batch_norm_backward_eval(
            g,
            input,
            grad_output,
            NormParams::load(&f).as_params(),
            &f.f32s("running_mean"),
            &f.f32s("running_var"),
            grads,
        );
    });
}

// -- activations --------------------------------------------------------------------------

type RotatedForward = fn(&ChannelShape, &[f32], &[f32], &mut [f32]);
type RotatedBackward = fn(&ChannelShape, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

fn channel_shape(f: &Fixture) -> ChannelShape {
    let (batch, channels, plane) = channel_layout(f, "input");
    ChannelShape {
        batch,
        channels,
        plane,
    }
}

fn check_rotated_forward(name: &str, forward: RotatedForward) {
    let f = Fixture::load(name);
    let mut y = nan(len_of(&f, "input"));
    forward(
        &channel_shape(&f),
        &f.f32s("input"),
        &f.f32s("slope"),
        &mut y,
    );
    f.check("output", &y);
}

fn check_rotated_backward(name: &str, backward: RotatedBackward) {
    let f = Fixture::load(name);
    let shape = channel_shape(&f);
    let mut gx = nan(len_of(&f, "input"));
    let mut gs = nan(shape.channels);
    backward(
        &shape,
        &f.f32s("input"),
        &f.f32s("slope"),
        &f.f32s("grad_output"),
        &mut gx,
        &mut gs,
    );
    f.check("grad_input", &gx);
    f.check("grad_slope", &gs);
}

fn check_rotated_relu_forward(name: &str) {
    check_rotated_forward(name, activation::rotated_relu_forward);
}

fn check_rotated_relu_backward(name: &str) {
    check_rotated_backward(name, activation::rotated_relu_backward);
}

fn check_rotated_gelu_forward(name: &str) {
    check_rotated_forward(name, activation::rotated_gelu_forward);
}

fn check_rotated_gelu_backward(name: &str) {
    check_rotated_backward(name, activation::rotated_gelu_backward);
}

fn check_gelu_forward(name: &str) {
    let f = Fixture::load(name);
    let mut y = nan(len_of(&f, "input"));
    activation::gelu_forward(&f.f32s("input"), &mut y);
    f.check("output", &y);
}

fn check_gelu_backward(name: &str) {
    let f = Fixture::load(name);
    let mut gx = nan(len_of(&f, "input"));
    activation::gelu_backward(&f.f32s("input"), &f.f32s("grad_output"), &mut gx);
    f.check("grad_input", &gx);
}

// -- softmax and cross-entropy ------------------------------------------------------------

fn matrix_sizes(f: &Fixture, tensor: &str) -> (usize, usize) {
    let (rows, cols) = (f.meta_usize("rows"), f.meta_usize("cols"));
    assert_eq!(f.shape(tensor), [rows, cols]);
    (rows, cols)
}

fn check_softmax_forward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "input");
    let mut y = nan(rows * cols);
    loss::softmax_forward(rows, cols, &f.f32s("input"), &mut y);
    f.check("output", &y);
}

fn check_softmax_backward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "input");
    let mut gx = nan(rows * cols);
    loss::softmax_backward(
        rows,
        cols,
        &f.f32s("output"),
        &f.f32s("grad_output"),
        &mut gx,
    );
    f.check("grad_input", &gx);
}

fn check_log_softmax_forward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "input");
    let mut y = nan(rows * cols);
    loss::log_softmax_forward(rows, cols, &f.f32s("input"), &mut y);
    f.check("output", &y);
}

fn check_log_softmax_backward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "input");
    let mut gx = nan(rows * cols);
    loss::log_softmax_backward(
        rows,
        cols,
        &f.f32s("output"),
        &f.f32s("grad_output"),
        &mut gx,
    );
    f.check("grad_input", &gx);
}

fn check_cross_entropy_forward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "logits");
    let mut probs = nan(rows * cols);
    let loss = loss::cross_entropy_forward(
        rows,
        cols,
        &f.f32s("logits"),
        &f.u32s("targets"),
        &mut probs,
    );
    f.check("loss", &[loss]);
    f.check("probs", &probs);
}

fn check_cross_entropy_backward(name: &str) {
    let f = Fixture::load(name);
    let (rows, cols) = matrix_sizes(&f, "logits");
    let mut grad_logits = nan(rows * cols);
    loss::cross_entropy_backward(
        rows,
        cols,
        &f.f32s("probs"),
        &f.u32s("targets"),
        f.scalar_f32("grad_output"),
        &mut grad_logits,
    );
    f.check("grad_logits", &grad_logits);
}

// -- the test list ------------------------------------------------------------------------

/// One module per fixture, holding a `forward` and a `backward` test, and the list of the
/// fixtures covered.
macro_rules! golden_tests {
    ($($fixture:ident => $forward:ident, $backward:ident;)*) => {
        $(
            mod $fixture {
                #[test]
                fn forward() {
                    super::$forward(stringify!($fixture));
                }

                #[test]
                fn backward() {
                    super::$backward(stringify!($fixture));
                }
            }
        )*

        const CHECKED: &[&str] = &[$(stringify!($fixture)),*];
    };
}

golden_tests! {
    conv2d_k3_s1_p0 => check_conv2d_forward, check_conv2d_backward;
    conv2d_k3_s2_p1 => check_conv2d_forward, check_conv2d_backward;
    conv2d_k2x3_s1x2_p1x0 => check_conv2d_forward, check_conv2d_backward;
    conv2d_k1_s1_p0 => check_conv2d_forward, check_conv2d_backward;
    linear => check_linear_forward, check_linear_backward;
    max_pool2d_k2_s2 => check_max_pool2d_forward, check_max_pool2d_backward;
    max_pool2d_k3_s2_p1 => check_max_pool2d_forward, check_max_pool2d_backward;
    avg_pool2d_k3_s2_p1 => check_avg_pool2d_forward, check_avg_pool2d_backward;
    global_avg_pool2d => check_global_avg_pool2d_forward, check_global_avg_pool2d_backward;
    batch_norm2d_train => check_batch_norm_train_forward, check_batch_norm_train_backward;
    batch_norm1d_train => check_batch_norm_train_forward, check_batch_norm_train_backward;
    batch_norm2d_eval => check_batch_norm_eval_forward, check_batch_norm_eval_backward;
    rotated_relu_4d => check_rotated_relu_forward, check_rotated_relu_backward;
    rotated_relu_2d => check_rotated_relu_forward, check_rotated_relu_backward;
    rotated_gelu_4d => check_rotated_gelu_forward, check_rotated_gelu_backward;
    rotated_gelu_2d => check_rotated_gelu_forward, check_rotated_gelu_backward;
    gelu => check_gelu_forward, check_gelu_backward;
    softmax => check_softmax_forward, check_softmax_backward;
    log_softmax => check_log_softmax_forward, check_log_softmax_backward;
    cross_entropy => check_cross_entropy_forward, check_cross_entropy_backward;
}

/// A fixture added to the generator must not go unchecked by accident.
#[test]
fn every_kernel_fixture_is_checked() {
    let unchecked: Vec<String> = common::fixture_names_except(NOT_KERNEL_OPS)
        .into_iter()
        .filter(|name| !CHECKED.contains(&name.as_str()))
        .collect();
    assert!(
        unchecked.is_empty(),
        "fixtures without a test: {unchecked:?}"
    );
}

/// The tolerance must reject a wrong answer: a kernel result nudged by 1e-3 relative fails.
#[test]
#[should_panic(expected = "fixture softmax, tensor output")]
fn check_rejects_a_wrong_answer() {
    let f = Fixture::load("softmax");
    let nudged: Vec<f32> = f
        .f64s("output")
        .1
        .iter()
        .map(|&w| (w * 1.001) as f32)
        .collect();
    f.check("output", &nudged);
}

/// The tolerance accepts every fixture tensor rounded to f32, the best a kernel can do.
#[test]
fn check_accepts_every_tensor_rounded_to_f32() {
    for name in CHECKED {
        let f = Fixture::load(name);
        for tensor in f.tensor_names() {
            f.check(&tensor, &f.f32s(&tensor));
        }
    }
}
