//! Reference 2-D convolution: one loop per index of the definition.

use crate::conv::{Conv2dGeometry, Conv2dGradients};

/// The input element read by output `(y, x)` through kernel tap `(i, j)` of channel `c` of
/// image `n`, or `None` in the padding.
fn input_index(
    g: &Conv2dGeometry,
    n: usize,
    c: usize,
    y: usize,
    x: usize,
    i: usize,
    j: usize,
) -> Option<usize> {
    let h = (y * g.stride_h + i)
        .checked_sub(g.pad_h)
        .filter(|&h| h < g.in_h)?;
    let w = (x * g.stride_w + j)
        .checked_sub(g.pad_w)
        .filter(|&w| w < g.in_w)?;
    Some(((n * g.in_channels + c) * g.in_h + h) * g.in_w + w)
}

fn weight_index(g: &Conv2dGeometry, o: usize, c: usize, i: usize, j: usize) -> usize {
    ((o * g.in_channels + c) * g.kernel_h + i) * g.kernel_w + j
}

fn output_index(g: &Conv2dGeometry, n: usize, o: usize, y: usize, x: usize) -> usize {
    ((n * g.out_channels + o) * g.out_h() + y) * g.out_w() + x
}

/// Calls `f(output index, weight index, input index)` for every multiply-accumulate of the
/// convolution that does not read padding.
fn for_each_tap(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..g.batch {
        for o in 0..g.out_channels {
            for y in 0..g.out_h() {
                for x in 0..g.out_w() {
                    for c in 0..g.in_channels {
                        for i in 0..g.kernel_h {
                            for j in 0..g.kernel_w {
                                if let Some(input) = input_index(g, n, c, y, x, i, j) {
                                    f(
                                        output_index(g, n, o, y, x),
                                        weight_index(g, o, c, i, j),
                                        input,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// As [`crate::conv::conv2d_forward`]: `output[n, o, y, x] = bias[o] + sum over (c, i, j)
/// of weight[o, c, i, j] * input[n, c, y * stride_h + i - pad_h, x * stride_w + j - pad_w]`
/// (0 outside the image). Sums in f64.
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    assert_eq!(input.len(), g.input_len(), "conv2d_forward: input length");
    assert_eq!(
        weight.len(),
        g.weight_len(),
        "conv2d_forward: weight length"
    );
    assert_eq!(
        output.len(),
        g.output_len(),
        "conv2d_forward: output length"
    );
    let plane = g.out_h() * g.out_w();
    let mut sums: Vec<f64> = (0..g.output_len())
        .map(|index| bias.map_or(0.0, |bias| f64::from(bias[index / plane % g.out_channels])))
        .collect();
    for_each_tap(g, |out, w, inp| {
        sums[out] += f64::from(weight[w]) * f64::from(input[inp])
    });
    for (dst, sum) in output.iter_mut().zip(sums) {
        *dst = sum as f32;
    }
}

/// As [`crate::conv::conv2d_backward`]: each gradient `grads` requests is overwritten with
/// `grad_input[n, c, h, w] = sum of weight[o, c, i, j] * grad_output[n, o, y, x]`,
/// `grad_weight[o, c, i, j] = sum of input[n, c, h, w] * grad_output[n, o, y, x]` over the
/// taps `(h, w) = (y * stride_h + i - pad_h, x * stride_w + j - pad_w)` inside the image, and
/// `grad_bias[o] = sum over (n, y, x) of grad_output[n, o, y, x]`. Sums in f64.
///
/// # Panics
/// If a slice's length does not match the geometry.
pub fn conv2d_backward(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grads: Conv2dGradients<'_>,
) {
    assert_eq!(input.len(), g.input_len(), "conv2d_backward: input length");
    assert_eq!(
        weight.len(),
        g.weight_len(),
        "conv2d_backward: weight length"
    );
    assert_eq!(
        grad_output.len(),
        g.output_len(),
        "conv2d_backward: grad_output length"
    );
    let mut input_sums = vec![0.0_f64; g.input_len()];
    let mut weight_sums = vec![0.0_f64; g.weight_len()];
    for_each_tap(g, |out, w, inp| {
        input_sums[inp] += f64::from(weight[w]) * f64::from(grad_output[out]);
        weight_sums[w] += f64::from(input[inp]) * f64::from(grad_output[out]);
    });
    let plane = g.out_h() * g.out_w();
    let mut bias_sums = vec![0.0_f64; g.out_channels];
    for (index, &grad) in grad_output.iter().enumerate() {
        bias_sums[index / plane % g.out_channels] += f64::from(grad);
    }
    let store = |dst: Option<&mut [f32]>, sums: Vec<f64>, what: &str| {
        if let Some(dst) = dst {
            assert_eq!(dst.len(), sums.len(), "conv2d_backward: {what} length");
            for (dst, sum) in dst.iter_mut().zip(sums) {
                *dst = sum as f32;
            }
        }
    };
    store(grads.input, input_sums, "grad_input");
    store(grads.weight, weight_sums, "grad_weight");
    store(grads.bias, bias_sums, "grad_bias");
}
