//! Batch normalisation layer.

use rotor_engine::{Result, RunningStats, Tensor};

use crate::module::{BufferVisitor, BufferVisitorMut, Module};
use crate::param::{Param, ParamKind, ParamVisitor, ParamVisitorMut, join_path};

/// Batch normalisation over the channels of `[N, C, ...]` inputs (PyTorch's
/// `nn.BatchNorm2d`, or `BatchNorm1d` on `[N, C]`).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// The per-channel scale, `[C]`, initially ones: the paper's and PyTorch's `gamma`,
    /// named `weight` as in PyTorch's parameter paths.
    pub weight: Param,
    /// The per-channel shift, `[C]`, initially zeros: the paper's and PyTorch's `beta`,
    /// named `bias` as in PyTorch's parameter paths.
    pub bias: Param,
    /// The running mean and variance used in evaluation.
    pub stats: RunningStats,
    /// Weight of the newest batch in the running statistics (PyTorch's default 0.1).
    pub momentum: f32,
    /// Added to the variance for stability (PyTorch's default 1e-5).
    pub eps: f32,
}

impl BatchNorm2d {
    /// A layer for `channels` channels with PyTorch's defaults.
    ///
    /// # Errors
    /// If the sizes overflow.
    pub fn new(channels: usize) -> Result<Self> {
        Ok(Self {
            weight: Param::new(&Tensor::ones(&[channels])?, ParamKind::NormScale),
            bias: Param::new(&Tensor::zeros(&[channels])?, ParamKind::NormShift),
            stats: RunningStats::new(channels),
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.batch_norm_eval(
            &self.weight.value(),
            &self.bias.value(),
            &self.stats,
            self.eps,
        )
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        x.batch_norm_train(
            self.weight.tensor(),
            self.bias.tensor(),
            &mut self.stats,
            self.momentum,
            self.eps,
        )
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        f(&join_path(prefix, "weight"), &self.weight);
        f(&join_path(prefix, "bias"), &self.bias);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        f(&join_path(prefix, "weight"), &mut self.weight);
        f(&join_path(prefix, "bias"), &mut self.bias);
    }

    fn visit_buffers(&self, prefix: &str, f: &mut BufferVisitor<'_>) {
        let c = [self.channels()];
        f(&join_path(prefix, "running_mean"), &c, &self.stats.mean);
        f(&join_path(prefix, "running_var"), &c, &self.stats.var);
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut BufferVisitorMut<'_>) {
        f(&join_path(prefix, "running_mean"), &mut self.stats.mean);
        f(&join_path(prefix, "running_var"), &mut self.stats.var);
    }
}
