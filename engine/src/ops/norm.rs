//! Batch normalisation over the channels of `[N, C, ...]` tensors.

use rotor_kernels::norm::{self, BatchNormGeometry};

use super::channels::channel_layout;
use crate::autograd::record;
use crate::error::{Error, Result};
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

fn check_stats(op: &'static str, x: &Tensor, stats: &RunningStats, c: usize) -> Result<()> {
    if stats.mean.len() != c || stats.var.len() != c {
        return Err(Error::shape(
            op,
            &[x.shape(), &[stats.mean.len()], &[stats.var.len()]],
            format!("the running statistics must have {c} channels"),
        ));
    }
    Ok(())
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
        let (batch, channels, plane) = channel_layout(op, self, &[gamma, beta])?;
        check_stats(op, self, stats, channels)?;
        if batch * plane < 2 {
            return Err(Error::shape(
                op,
                &[self.shape()],
                "training needs more than one value per channel",
            ));
        }
        let g = BatchNormGeometry {
            batch,
            channels,
            plane,
        };
        let mut out = vec![0.0; self.numel()];
        let mut mean = vec![0.0; channels];
        let mut invstd = vec![0.0; channels];
        norm::batch_norm_forward_train(
            &g,
            self.as_slice(),
            gamma.as_slice(),
            beta.as_slice(),
            eps,
            momentum,
            &mut stats.mean,
            &mut stats.var,
            &mut out,
            &mut mean,
            &mut invstd,
        );
        let inputs = [self, gamma, beta];
        Ok(record(
            op,
            self.shape().to_vec(),
            out,
            &inputs,
            move |ctx, grad| {
                let mut gx = vec![0.0; grad.len()];
                let mut gg = vec![0.0; channels];
                let mut gb = vec![0.0; channels];
                norm::batch_norm_backward_train(
                    &g,
                    ctx.inputs[0].as_slice(),
                    grad,
                    ctx.inputs[1].as_slice(),
                    &mean,
                    &invstd,
                    &mut gx,
                    &mut gg,
                    &mut gb,
                );
                vec![
                    ctx.wants(0).then_some(gx),
                    ctx.wants(1).then_some(gg),
                    ctx.wants(2).then_some(gb),
                ]
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
        let (batch, channels, plane) = channel_layout(op, self, &[gamma, beta])?;
        check_stats(op, self, stats, channels)?;
        let g = BatchNormGeometry {
            batch,
            channels,
            plane,
        };
        let mut out = vec![0.0; self.numel()];
        norm::batch_norm_forward_eval(
            &g,
            self.as_slice(),
            gamma.as_slice(),
            beta.as_slice(),
            &stats.mean,
            &stats.var,
            eps,
            &mut out,
        );
        let stats = stats.clone();
        let inputs = [self, gamma, beta];
        Ok(record(
            op,
            self.shape().to_vec(),
            out,
            &inputs,
            move |ctx, grad| {
                let mut gx = vec![0.0; grad.len()];
                let mut gg = vec![0.0; channels];
                let mut gb = vec![0.0; channels];
                norm::batch_norm_backward_eval(
                    &g,
                    ctx.inputs[0].as_slice(),
                    grad,
                    ctx.inputs[1].as_slice(),
                    &stats.mean,
                    &stats.var,
                    eps,
                    &mut gx,
                    &mut gg,
                    &mut gb,
                );
                vec![
                    ctx.wants(0).then_some(gx),
                    ctx.wants(1).then_some(gg),
                    ctx.wants(2).then_some(gb),
                ]
            },
        ))
    }
}
