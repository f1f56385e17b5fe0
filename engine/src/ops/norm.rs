//! Batch normalisation over the channels of `[N, C, ...]` tensors.

use rotor_kernels::norm::{
    self, BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate,
};

use super::channels::channel_layout;
use crate::autograd::{BackwardContext, record};
use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::Tensor;

/// The running statistics a batch-norm layer keeps for evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    /// The running mean per channel.
    pub mean: Vec<f32>,
    /// The running (unbiased) variance per channel.
    pub var: Vec<f32>,
}

impl RunningStats {
    /// Mean 0 and variance 1 for `channels` channels, PyTorch's initial state.
    pub fn new(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
        }
    }
}

/// The geometry of a batch norm of `x` over its channels, once the parameters and the
/// running statistics are checked to have one value per channel.
fn geometry(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
) -> Result<BatchNormGeometry> {
    let (batch, channels, plane) = channel_layout(op, x, &[gamma, beta])?;
    if stats.mean.len() != channels || stats.var.len() != channels {
        return Err(Error::shape(
            op,
            &[x.shape(), &[stats.mean.len()], &[stats.var.len()]],
            format!("the running statistics must have {channels} channels"),
        ));
    }
    Ok(BatchNormGeometry {
        batch,
        channels,
        plane,
    })
}

/// Records a batch norm of `inputs = [x, gamma, beta]` with output `out`, whose
/// `backward(ctx, grad, grads)` writes the gradients of all three into fresh buffers; the
/// wanted ones are kept.
fn record_batch_norm(
    op: &'static str,
    inputs: [&Tensor; 3],
    g: BatchNormGeometry,
    out: Vec<f32>,
    backward: impl Fn(&BackwardContext<'_>, &[f32], BatchNormGradients<'_>) + Send + Sync + 'static,
) -> Tensor {
    record(
        op,
        inputs[0].shape().to_vec(),
        out,
        &inputs,
        move |ctx, grad| {
            let mut input = storage::for_overwrite(g.input_len());
            let mut gamma = vec![0.0; g.channels];
            let mut beta = vec![0.0; g.channels];
            let grads = BatchNormGradients {
                input: &mut input,
                gamma: &mut gamma,
                beta: &mut beta,
            };
            backward(ctx, grad, grads);
            vec![
                ctx.wants(0).then_some(input),
                ctx.wants(1).then_some(gamma),
                ctx.wants(2).then_some(beta),
            ]
        },
    )
}

impl Tensor {
    /// Batch normalisation in training mode: normalises each channel with the batch's mean
    /// and (biased) variance, scales by `gamma` and shifts by `beta`, and updates `stats`
    /// as PyTorch does: `running = (1 - momentum) running + momentum batch`, with the
    /// unbiased variance.
    ///
    /// # Errors
    /// If the input is not `[N, C, ...]`, `gamma`, `beta` or `stats` do not have `C`
    /// channels, or a channel has fewer than two values.
    pub fn batch_norm_train(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &mut RunningStats,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor> {
        let op = "batch_norm_train";
        let g = geometry(op, self, gamma, beta, stats)?;
        if g.batch * g.plane < 2 {
            return Err(Error::shape(
                op,
                &[self.shape()],
                "training needs more than one value per channel",
            ));
        }
        let mut out = storage::for_overwrite(self.numel());
        let mut mean = vec![0.0; g.channels];
        let mut invstd = vec![0.0; g.channels];
        norm::batch_norm_forward_train(
            &g,
            self.as_slice(),
            BatchNormParams {
                gamma: gamma.as_slice(),
                beta: beta.as_slice(),
                eps,
            },
            RunningStatsUpdate {
                mean: &mut stats.mean,
                var: &mut stats.var,
                momentum,
            },
            &mut out,
            &mut mean,
            &mut invstd,
        );
        Ok(record_batch_norm(
            op,
            [self, gamma, beta],
            g,
            out,
            move |ctx, grad, grads| {
                let (x, gamma) = (ctx.inputs[0].as_slice(), ctx.inputs[1].as_slice());
                norm::batch_norm_backward_train(&g, x, grad, gamma, &mean, &invstd, grads);
            },
        ))
    }

    /// Batch normalisation in evaluation mode: each channel normalised with the running
    /// statistics, then scaled by `gamma` and shifted by `beta`.
    ///
    /// # Errors
    /// If the input is not `[N, C, ...]` or `gamma`, `beta` or `stats` do not have `C`
    /// channels.
    pub fn batch_norm_eval(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &RunningStats,
        eps: f32,
    ) -> Result<Tensor> {
        let op = "batch_norm_eval";
        let g = geometry(op, self, gamma, beta, stats)?;
        let mut out = storage::for_overwrite(self.numel());
        norm::batch_norm_forward_eval(
            &g,
            self.as_slice(),
            BatchNormParams {
                gamma: gamma.as_slice(),
                beta: beta.as_slice(),
                eps,
            },
            &stats.mean,
            &stats.var,
            &mut out,
        );
        let stats = stats.clone();
        Ok(record_batch_norm(
            op,
            [self, gamma, beta],
            g,
            out,
            move |ctx, grad, grads| {
                let params = BatchNormParams {
                    gamma: ctx.inputs[1].as_slice(),
                    beta: ctx.inputs[2].as_slice(),
                    eps,
                };
                let x = ctx.inputs[0].as_slice();
                norm::batch_norm_backward_eval(&g, x, grad, params, &stats.mean, &stats.var, grads);
            },
        ))
    }
}
