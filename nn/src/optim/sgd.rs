//! Stochastic gradient descent with momentum (PyTorch's `torch.optim.SGD`).

use std::collections::HashMap;

use rotor_engine::{Gradients, TensorId};

use super::update::{L1Penalty, flush_denormal, for_each_param_step};
use super::{Optimizer, StateMove};
use crate::module::Module;

/// Stochastic gradient descent, exactly PyTorch's `SGD` with `dampening = 0`.
///
/// Per element, with gradient `g`, value `p`, momentum buffer `b` (zero before the first
/// step, which makes the first step's buffer `d`):
///
/// ```text
/// d = g + weight_decay * p + l1 * sign(p)   (l1: slope_l1 for slopes, norm_scale_l1
///                                          for batch-norm scales, else 0)
/// b = momentum * b + d                            (when momentum != 0)
/// d = d + momentum * b  (nesterov)  or  d = b     (when momentum != 0)
/// p = p - lr * d
/// ```
///
/// Defaults are PyTorch's: `lr = 1e-3`, no momentum, no weight decay, not Nesterov; and
/// no L1 penalty. Momentum buffers, one value per element, are kept per parameter id.
#[derive(Clone, Debug)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    l1: L1Penalty,
    buffers: HashMap<TensorId, Vec<f32>>,
}

impl Default for Sgd {
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl Sgd {
    /// Plain SGD with learning rate `lr` and PyTorch's other defaults.
    ///
    /// # Panics
    /// If `lr` is negative or not finite.
    pub fn new(lr: f32) -> Self {
        assert!(
            lr.is_finite() && lr >= 0.0,
            "SGD: invalid learning rate {lr}"
        );
        Self {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            l1: L1Penalty::default(),
            buffers: HashMap::new(),
        }
    }

    /// Sets the momentum factor (0 turns momentum off).
    ///
    /// # Panics
    /// If `momentum` is negative or not finite.
    pub fn momentum(mut self, momentum: f32) -> Self {
        assert!(
            momentum.is_finite() && momentum >= 0.0,
            "SGD: invalid momentum {momentum}"
        );
        self.momentum = momentum;
        self
    }

    /// Turns Nesterov momentum on or off (it needs a non-zero momentum when stepping).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets the L2 penalty added to every gradient, `weight_decay * p`.
    ///
    /// # Panics
    /// If `weight_decay` is negative or not finite.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        assert!(
            weight_decay.is_finite() && weight_decay >= 0.0,
            "SGD: invalid weight decay {weight_decay}"
        );
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the L1 penalty on rotated-activation slopes, `slope_l1 * sign(a)` added to
    /// each slope's gradient.
    ///
    /// # Panics
    /// If `slope_l1` is negative or not finite.
    pub fn slope_l1(mut self, slope_l1: f32) -> Self {
        self.l1.slope = L1Penalty::check("SGD", "slope", slope_l1);
        self
    }

    /// Sets the L1 penalty on batch-norm scales, `norm_scale_l1 * sign(gamma)` added to
    /// each scale's gradient (Network Slimming's sparsity penalty).
    ///
    /// # Panics
    /// If `norm_scale_l1` is negative or not finite.
    pub fn norm_scale_l1(mut self, norm_scale_l1: f32) -> Self {
        self.l1.norm_scale = L1Penalty::check("SGD", "norm-scale", norm_scale_l1);
        self
    }
}

impl Optimizer for Sgd {
    /// # Panics
    /// As [`Optimizer::step`], and if Nesterov momentum is on with a momentum of 0.
    fn step(&mut self, model: &mut dyn Module, grads: &Gradients) {
        assert!(
            !self.nesterov || self.momentum > 0.0,
            "SGD: Nesterov momentum needs a non-zero momentum"
        );
        let (lr, momentum, nesterov) = (self.lr, self.momentum, self.nesterov);
        let buffers = &mut self.buffers;
        for_each_param_step(model, grads, self.weight_decay, self.l1, |step, values| {
            if momentum == 0.0 {
                step.update_elements(values, (), |p, d, ()| {
                    *p = flush_denormal(*p - lr * d);
                });
                return;
            }
            let buffer = buffers
                .entry(step.id)
                .or_insert_with(|| vec![0.0; values.len()]);
            step.update_elements(values, buffer.as_mut_slice(), |p, d, b| {
                *b = flush_denormal(momentum * *b + d);
                let d = if nesterov { d + momentum * *b } else { *b };
                *p = flush_denormal(*p - lr * d);
            });
        });
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn carry_state(&mut self, moves: &[StateMove]) {
        for m in moves {
            if let Some(buffer) = self.buffers.remove(&m.from)
                && let Some(moved) = m.gather(&buffer)
            {
                self.buffers.insert(m.to, moved);
            }
        }
    }
}
