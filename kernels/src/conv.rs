//! 2-D convolution (cross-correlation, as in PyTorch's `conv2d`), forward and backward.
//!
//! Layouts are NCHW: input `[batch, in_channels, in_h, in_w]`, weight `[out_channels,
//! in_channels, kernel_h, kernel_w]`, output `[batch, out_channels, out_h, out_w]`, with
//! `out = (in + 2 pad - kernel) / stride + 1`.
//!
//! Unit-stride, unpadded forwards run the implicit product of `conv/implicit.rs` with every
//! channel active (`conv/dense.rs`), as does the input gradient of a unit-stride layer
//! padded by at least half its kernel, computed as a convolution of its own. The others
//! are matrix products on tiles of im2col matrices (the columns of the convolution
//! windows, see `conv/im2col.rs`), sized to stay in a core's L2 cache and run as rayon
//! tasks over (image, tile) pairs; a 1x1, stride-1, unpadded backward multiplies the planes
//! directly. `conv/plan.rs` says how the im2col work is cut.

mod backward;
mod dense;
mod forward;
mod im2col;
mod implicit;
mod packed;
mod plan;
mod skip;
mod skip_backward;
mod weight_gradient;

use crate::skip::{ActiveChannels, Epilogue, SkipScratch, check_channel_operands};
pub use packed::PackedConv2d;
use skip::ActiveForward;

/// The shapes of a 2-D convolution.
///
/// Valid when `kernel_h >= 1`, `kernel_w >= 1`, `stride_h >= 1`, `stride_w >= 1`,
/// `kernel_h <= in_h + 2 pad_h` and `kernel_w <= in_w + 2 pad_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Channels of each input image.
    pub in_channels: usize,
    /// Channels of each output image (the number of filters).
    pub out_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above and below the input.
    pub pad_h: usize,
    /// Zero columns added left and right of the input.
    pub pad_w: usize,
}

impl Conv2dGeometry {
    /// Output height: `(in_h + 2 pad_h - kernel_h) / stride_h + 1`.
    ///
    /// # Panics
    /// If `kernel_h > in_h + 2 pad_h` or `stride_h == 0`.
    pub fn out_h(&self) -> usize {
        out_len(
            self.in_h,
            self.pad_h,
            self.kernel_h,
            self.stride_h,
            "height",
        )
    }

    /// Output width: `(in_w + 2 pad_w - kernel_w) / stride_w + 1`.
    ///
    /// # Panics
    /// If `kernel_w > in_w + 2 pad_w` or `stride_w == 0`.
    pub fn out_w(&self) -> usize {
        out_len(self.in_w, self.pad_w, self.kernel_w, self.stride_w, "width")
    }

    /// Elements of the input: `batch * in_channels * in_h * in_w`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    /// Elements of the weight: `out_channels * in_channels * kernel_h * kernel_w`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.col_rows()
    }

    /// Elements of the output: `batch * out_channels * out_h * out_w`.
    ///
    /// # Panics
    /// As [`out_h`](Self::out_h) and [`out_w`](Self::out_w).
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.positions()
    }

    /// Floating-point operations of the forward pass, counted as 2 per multiply-accumulate:
    /// `2 * batch * out_channels * out_h * out_w * in_channels * kernel_h * kernel_w`.
    ///
    /// # Panics
    /// As [`out_h`](Self::out_h) and [`out_w`](Self::out_w).
    pub fn flops(&self) -> u64 {
        2 * self.output_len() as u64 * self.col_rows() as u64
    }

    /// Output positions per channel: `out_h * out_w`.
    fn positions(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Rows of the im2col matrix, the length of one filter: `in_channels * kernel_h * kernel_w`.
    fn col_rows(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Elements of one input image.
    fn input_image_len(&self) -> usize {
        self.in_channels * self.in_h * self.in_w
    }

    /// A 1x1, stride-1, unpadded convolution: the im2col matrix is the input itself.
    fn is_pointwise(&self) -> bool {
        (
            self.kernel_h,
            self.kernel_w,
            self.stride_h,
            self.stride_w,
            self.pad_h,
            self.pad_w,
        ) == (1, 1, 1, 1, 0, 0)
    }

    /// A unit-stride, unpadded convolution: row `(c, i, j)` of its im2col matrix, computed
    /// `in_w` wide, is input plane `c` shifted by `i * in_w + j`.
    fn is_shifted_plane(&self) -> bool {
        (self.stride_h, self.stride_w, self.pad_h, self.pad_w) == (1, 1, 0, 0)
    }

    /// Panics unless the geometry is valid (see the type's documentation).
    fn assert_valid(&self) {
        assert!(
            self.kernel_h >= 1 && self.kernel_w >= 1,
            "conv2d: kernel {}x{} must be at least 1x1",
            self.kernel_h,
            self.kernel_w
        );
        self.out_h();
        self.out_w();
    }
}

fn out_len(input: usize, pad: usize, kernel: usize, stride: usize, what: &str) -> usize {
    assert!(stride >= 1, "conv2d: {what} stride must be at least 1");
    let padded = input + 2 * pad;
    assert!(
        kernel <= padded,
        "conv2d: kernel {what} {kernel} exceeds the padded input {what} {padded}"
    );
    (padded - kernel) / stride + 1
}

/// Forward convolution:
///
/// ```text
/// output[n, o, y, x] = bias[o] + sum over (c, i, j) of
///     weight[o, c, i, j] * input[n, c, y * stride_h + i - pad_h, x * stride_w + j - pad_w]
/// ```
///
/// with input elements outside the image reading 0 and `bias` 0 when `None`. `output` is
/// overwritten (it may hold NaN on entry). Runs on rayon's global pool.
///
/// # Panics
/// If the geometry is invalid, or a slice's length differs from `g.input_len()`,
/// `g.weight_len()`, `g.out_channels` (bias) or `g.output_len()`.
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    g.assert_valid();
    assert_eq!(input.len(), g.input_len(), "conv2d_forward: input length");
    assert_eq!(
        weight.len(),
        g.weight_len(),
        "conv2d_forward: weight length"
    );
    if let Some(bias) = bias {
        assert_eq!(bias.len(), g.out_channels, "conv2d_forward: bias length");
    }
    assert_eq!(
        output.len(),
        g.output_len(),
        "conv2d_forward: output length"
    );
    // NOTE: where it applies the implicit product took 0.6 to 0.75 times im2col's time
    // (MnistNet at batch 64 on the Xeon with AVX-512, 2 threads: 7.8 -> 5.0 ms for the
    // second layer, 400 -> 310 µs for the first, with its single input channel); padded or
    // strided layers keep im2col, which ran 7% faster than the channel-skipping im2col
    // path `forward_active` would take (3 to 16 channels, 3x3, padding 1).
    if skip::runs_implicit(g) {
        dense::forward(g, input, weight, bias, output);
    } else {
        forward::forward(g, input, weight, bias, output);
    }
}

/// The gradients a backward convolution computes: each is requested by a buffer, which is
/// overwritten (it may hold NaN on entry), and skipped when `None`.
#[derive(Debug, Default)]
pub struct Conv2dGradients<'a> {
    /// The input's gradient, `[batch, in_channels, in_h, in_w]`.
    pub input: Option<&'a mut [f32]>,
    /// The weight's gradient, `[out_channels, in_channels, kernel_h, kernel_w]`.
    pub weight: Option<&'a mut [f32]>,
    /// The bias's gradient, `[out_channels]`.
    pub bias: Option<&'a mut [f32]>,
}

/// Backward convolution: the gradients of a loss with respect to the input, the weight and
/// the bias of [`conv2d_forward`], given `grad_output` (shaped as the output):
///
/// ```text
/// grad_input[n, c, h, w] = sum over (o, i, j, y, x) with h = y * stride_h + i - pad_h and
///                          w = x * stride_w + j - pad_w of weight[o, c, i, j] * grad_output[n, o, y, x]
/// grad_weight[o, c, i, j] = sum over (n, y, x) of input[n, c, y * stride_h + i - pad_h,
///                           x * stride_w + j - pad_w] * grad_output[n, o, y, x]   (0 outside)
/// grad_bias[o] = sum over (n, y, x) of grad_output[n, o, y, x]
/// ```
///
/// Computes the gradients `grads` requests. `input` is read only for the weight's gradient
/// and `weight` only for the input's, but both are length-checked always. Runs on rayon's
/// global pool; the results are the same bit for bit whatever the number of threads.
///
/// # Panics
/// If the geometry is invalid, or a slice's length differs from `g.input_len()` (input, and
/// its gradient), `g.weight_len()` (weight, and its gradient), `g.output_len()`
/// (grad_output) or `g.out_channels` (the bias's gradient); nothing is written then.
pub fn conv2d_backward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grads: Conv2dGradients<'_>,
) {
    check_backward("conv2d_backward", g, input, weight, grad_output, &grads);
    let Conv2dGradients {
        input: grad_input,
        weight: grad_weight,
        bias: grad_bias,
    } = grads;
    if let Some(grad_bias) = grad_bias {
        backward::bias_gradient(g, grad_output, grad_bias);
    }
    if let Some(grad_weight) = grad_weight {
        let inputs: Vec<usize> = (0..g.in_channels).collect();
        let outputs: Vec<usize> = (0..g.out_channels).collect();
        let active = ActiveChannels {
            inputs: &inputs,
            outputs: &outputs,
        };
        weight_gradient::weight_gradient(g, active, input, grad_output, grad_weight);
    }
    if let Some(grad_input) = grad_input {
        match dense::input_gradient_geometry(g) {
            Some(transposed) => {
                dense::input_gradient(g, &transposed, weight, grad_output, grad_input);
            }
            None => backward::input_gradient(g, weight, grad_output, grad_input),
        }
    }
}

/// A convolution as the channel-skipping forwards read it: the full layer's weight, the
/// channels to read and compute, and what follows the product.
///
/// Inactive input channels of the weight, and the bias and slopes of inactive output
/// channels, are not read.
#[derive(Clone, Copy, Debug)]
pub struct ActiveConv2d<'a> {
    /// The shapes, batch included.
    pub geometry: Conv2dGeometry,
    /// The input channels read and the output channels computed.
    pub active: ActiveChannels<'a>,
    /// The full layer's filters, `[out_channels, in_channels, kernel_h, kernel_w]`.
    pub weight: &'a [f32],
    /// One bias per output channel, or `None` for none.
    pub bias: Option<&'a [f32]>,
    /// What each computed output channel goes through after its bias.
    pub epilogue: Epilogue<'a>,
}

impl ActiveConv2d<'_> {
    /// Panics unless the geometry is valid, the lists, bias and slopes fit its channels, and
    /// `input` and the weight have its lengths: everything a forward checks but its output.
    #[track_caller]
    fn check(&self, op: &str, input: &[f32]) {
        let g = &self.geometry;
        g.assert_valid();
        check_channel_operands(
            op,
            (g.in_channels, g.out_channels),
            self.active,
            self.bias,
            self.epilogue,
        );
        assert_eq!(input.len(), g.input_len(), "{op}: input length");
        assert_eq!(self.weight.len(), g.weight_len(), "{op}: weight length");
    }
}

/// Channel-skipping forward convolution with a fused epilogue: for the active output
/// channels `o` only,
///
/// ```text
/// output[n, o, y, x] = epilogue_o(bias[o] + sum over active c, and (i, j), of
///     weight[o, c, i, j] * input[n, c, y * stride_h + i - pad_h, x * stride_w + j - pad_w])
/// ```
///
/// the result of [`conv2d_forward`] on weights and inputs whose inactive channels are zero,
/// passed through the layer's epilogue. Inactive input channels are not read; inactive
/// output channels are not written (they keep whatever `output` held, so a caller that
/// zeroes them once can reuse the buffer). The active filters are gathered as the operand
/// is packed: no compacted copy of the layer is kept. `scratch` is reused between calls.
/// Runs on rayon's global pool, or on the calling thread when the work is small.
///
/// # Panics
/// If the layer's geometry is invalid, a slice's length differs from its `input_len()`
/// (input), `weight_len()` (weight), `out_channels` (bias, slopes) or `output_len()`
/// (output), or an active list is not strictly increasing within its channel count.
pub fn conv2d_forward_active(
    layer: &ActiveConv2d<'_>,
    input: &[f32],
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let call = ActiveForward {
        layer,
        input,
        pool: false,
    };
    forward_active_checked("conv2d_forward_active", &call, None, scratch, output);
}

/// [`conv2d_forward_active`] followed by a 2x2, stride-2 max pooling (floor mode, as
/// PyTorch's `max_pool2d(2)`), fused: the epilogue pools each tile while it is in cache, and
/// `output` is the pooled `[batch, out_channels, out_h / 2, out_w / 2]` map (inactive
/// channels again not written).
///
/// # Panics
/// As [`conv2d_forward_active`], with the pooled output length, or if `out_h` is odd (a
/// dropped last row would break the row pairs tiles are cut into).
pub fn conv2d_forward_active_max_pool2(
    layer: &ActiveConv2d<'_>,
    input: &[f32],
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let call = ActiveForward {
        layer,
        input,
        pool: true,
    };
    forward_active_checked(
        "conv2d_forward_active_max_pool2",
        &call,
        None,
        scratch,
        output,
    );
}

/// The path every channel-skipping forward takes: checks `call` and `output` in the name of
/// `op`, then runs it, on `prepacked` filters when the caller keeps them.
#[track_caller]
fn forward_active_checked(
    op: &str,
    call: &ActiveForward<'_>,
    prepacked: Option<implicit::Filters<'_>>,
    scratch: &mut SkipScratch,
    output: &mut [f32],
) {
    let g = &call.layer.geometry;
    call.layer.check(op, call.input);
    let expected = if call.pool {
        // A dropped last row would break the row pairs tiles are cut into.
        let (out_h, out_w) = (g.out_h(), g.out_w());
        assert!(
            out_h.is_multiple_of(2),
            "{op}: output height {out_h} is odd"
        );
        g.batch * g.out_channels * (out_h / 2) * (out_w / 2)
    } else {
        g.output_len()
    };
    assert_eq!(output.len(), expected, "{op}: output length");
    skip::forward_active(call, prepacked, scratch, output);
}

/// Channel-skipping backward convolution: the gradients of [`conv2d_forward_active`]
/// (with the identity epilogue), that is those of [`conv2d_backward`] on weights, inputs
/// and output gradients whose inactive channels are zero. Each gradient `grads` requests
/// is overwritten: the input's on the active input channels, the weight's on the active
/// `(output, input)` pairs, the bias's on the active outputs, and zero everywhere else.
/// Inactive channels of `input`, `weight` and `grad_output` are not read. Runs on rayon's
/// global pool; the results do not depend on the number of threads.
///
/// # Panics
/// As [`conv2d_backward`], or if an active list is not strictly increasing within its
/// channel count.
pub fn conv2d_backward_active(
    g: &Conv2dGeometry,
    active: ActiveChannels<'_>,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grads: Conv2dGradients<'_>,
) {
    let op = "conv2d_backward_active";
    check_backward(op, g, input, weight, grad_output, &grads);
    active.check(op, g.in_channels, g.out_channels);
    let Conv2dGradients {
        input: grad_input,
        weight: grad_weight,
        bias: grad_bias,
    } = grads;
    if let Some(grad_bias) = grad_bias {
        skip_backward::bias_gradient_active(g, active.outputs, grad_output, grad_bias);
    }
    if let Some(grad_weight) = grad_weight {
        weight_gradient::weight_gradient(g, active, input, grad_output, grad_weight);
    }
    if let Some(grad_input) = grad_input {
        skip_backward::input_gradient_active(g, active, weight, grad_output, grad_input);
    }
}

/// The checks both backward convolutions make, before either writes anything: the
/// geometry, and the lengths of every operand and requested gradient.
#[track_caller]
fn check_backward(
    op: &str,
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grads: &Conv2dGradients<'_>,
) {
    g.assert_valid();
    assert_eq!(input.len(), g.input_len(), "{op}: input length");
    assert_eq!(weight.len(), g.weight_len(), "{op}: weight length");
    assert_eq!(
        grad_output.len(),
        g.output_len(),
        "{op}: grad_output length"
    );
    let requested = [
        ("grad_input", grads.input.as_deref(), g.input_len()),
        ("grad_weight", grads.weight.as_deref(), g.weight_len()),
        ("grad_bias", grads.bias.as_deref(), g.out_channels),
    ];
    for (what, grad, len) in requested {
        if let Some(grad) = grad {
            assert_eq!(grad.len(), len, "{op}: {what} length");
        }
    }
}
