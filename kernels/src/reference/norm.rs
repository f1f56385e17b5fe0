//! Reference batch normalisation: per channel, statistics and gradients in `f64` by the
//! textbook formulas.

use crate::norm::{BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate};

/// The indices of channel `c`'s elements, image by image.
fn channel_indices(g: &BatchNormGeometry, c: usize) -> impl Iterator<Item = usize> + '_ {
    (0..g.batch).flat_map(move |n| (0..g.plane).map(move |p| (n * g.channels + c) * g.plane + p))
}

/// Mean and biased variance of channel `c`.
fn mean_var(g: &BatchNormGeometry, c: usize, input: &[f32]) -> (f64, f64) {
    let m = (g.batch * g.plane) as f64;
    let mean = channel_indices(g, c)
        .map(|i| f64::from(input[i]))
        .sum::<f64>()
        / m;
    let var = channel_indices(g, c)
        .map(|i| (f64::from(input[i]) - mean).powi(2))
        .sum::<f64>()
        / m;
    (mean, var)
}

/// Reference for [`crate::norm::batch_norm_forward_train`].
///
/// # Panics
/// If `batch * plane < 2` or a slice length differs from the geometry's.
pub fn batch_norm_forward_train(
    g: &BatchNormGeometry,
    input: &[f32],
    params: BatchNormParams<'_>,
    running: RunningStatsUpdate<'_>,
    output: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) {
    let m = g.batch * g.plane;
    assert!(m >= 2);
    assert_eq!(input.len(), g.input_len());
    assert_eq!(output.len(), g.input_len());
    let momentum = f64::from(running.momentum);
    for c in 0..g.channels {
        let (mean, var) = mean_var(g, c, input);
        let invstd = 1.0 / (var + f64::from(params.eps)).sqrt();
        for i in channel_indices(g, c) {
            output[i] = ((f64::from(input[i]) - mean) * invstd * f64::from(params.gamma[c])
                + f64::from(params.beta[c])) as f32;
        }
        save_mean[c] = mean as f32;
        save_invstd[c] = invstd as f32;
        running.mean[c] = ((1.0 - momentum) * f64::from(running.mean[c]) + momentum * mean) as f32;
        let unbiased = var * m as f64 / (m - 1) as f64;
        running.var[c] =
            ((1.0 - momentum) * f64::from(running.var[c]) + momentum * unbiased) as f32;
    }
}

/// Reference for [`crate::norm::batch_norm_forward_eval`].
///
/// # Panics
/// If a slice length differs from the geometry's.
pub fn batch_norm_forward_eval(
    g: &BatchNormGeometry,
    input: &[f32],
    params: BatchNormParams<'_>,
    running_mean: &[f32],
    running_var: &[f32],
    output: &mut [f32],
) {
    assert_eq!(input.len(), g.input_len());
    assert_eq!(output.len(), g.input_len());
    for c in 0..g.channels {
        let std = (f64::from(running_var[c]) + f64::from(params.eps)).sqrt();
        for i in channel_indices(g, c) {
            let normalised = (f64::from(input[i]) - f64::from(running_mean[c])) / std;
            output[i] =
                (normalised * f64::from(params.gamma[c]) + f64::from(params.beta[c])) as f32;
        }
    }
}

/// Reference for [`crate::norm::batch_norm_backward_train`]: with `xhat` the normalised input
/// and `dxhat = grad_output * gamma`,
/// `grad_input = invstd / m * (m dxhat - sum dxhat - xhat sum(dxhat xhat))`.
///
/// # Panics
/// If `batch * plane < 2` or a slice length differs from the geometry's.
pub fn batch_norm_backward_train(
    g: &BatchNormGeometry,
    input: &[f32],
    grad_output: &[f32],
    gamma: &[f32],
    save_mean: &[f32],
    save_invstd: &[f32],
    grads: BatchNormGradients<'_>,
) {
    let m = (g.batch * g.plane) as f64;
    assert!(m >= 2.0);
    assert_eq!(input.len(), g.input_len());
    assert_eq!(grad_output.len(), g.input_len());
    assert_eq!(grads.input.len(), g.input_len());
    for c in 0..g.channels {
        let (mean, invstd) = (f64::from(save_mean[c]), f64::from(save_invstd[c]));
        let xhat = |i: usize| (f64::from(input[i]) - mean) * invstd;
        let dxhat = |i: usize| f64::from(grad_output[i]) * f64::from(gamma[c]);
        let sum_dxhat: f64 = channel_indices(g, c).map(dxhat).sum();
        let sum_dxhat_xhat: f64 = channel_indices(g, c).map(|i| dxhat(i) * xhat(i)).sum();
        for i in channel_indices(g, c) {
            grads.input[i] =
                (invstd / m * (m * dxhat(i) - sum_dxhat - xhat(i) * sum_dxhat_xhat)) as f32;
        }
        affine_gradients(g, c, grad_output, xhat, grads.gamma, grads.beta);
    }
}

/// Reference for [`crate::norm::batch_norm_backward_eval`].
///
/// # Panics
/// If a slice length differs from the geometry's.
pub fn batch_norm_backward_eval(
    g: &BatchNormGeometry,
    input: &[f32],
    grad_output: &[f32],
    params: BatchNormParams<'_>,
    running_mean: &[f32],
    running_var: &[f32],
    grads: BatchNormGradients<'_>,
) {
    assert_eq!(input.len(), g.input_len());
    assert_eq!(grad_output.len(), g.input_len());
    assert_eq!(grads.input.len(), g.input_len());
    for c in 0..g.channels {
        let invstd = 1.0 / (f64::from(running_var[c]) + f64::from(params.eps)).sqrt();
        let xhat = |i: usize| (f64::from(input[i]) - f64::from(running_mean[c])) * invstd;
        for i in channel_indices(g, c) {
            grads.input[i] =
                (f64::from(grad_output[i]) * f64::from(params.gamma[c]) * invstd) as f32;
        }
        affine_gradients(g, c, grad_output, xhat, grads.gamma, grads.beta);
    }
}

/// `grad_beta[c] = sum grad_output` and `grad_gamma[c] = sum grad_output * xhat` over
/// channel `c`'s elements.
fn affine_gradients(
    g: &BatchNormGeometry,
    c: usize,
    grad_output: &[f32],
    xhat: impl Fn(usize) -> f64,
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    grad_beta[c] = channel_indices(g, c)
        .map(|i| f64::from(grad_output[i]))
        .sum::<f64>() as f32;
    grad_gamma[c] = channel_indices(g, c)
        .map(|i| f64::from(grad_output[i]) * xhat(i))
        .sum::<f64>() as f32;
}
