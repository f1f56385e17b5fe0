//! Adam and AdamW (PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`).

use std::collections::HashMap;

use rotor_engine::{Gradients, TensorId};

use super::update::{L1Penalty, flush_denormal, for_each_param_step};
use super::{Optimizer, StateMove};
use crate::module::Module;

/// Adam, exactly PyTorch's `Adam` (without `amsgrad`), with weight decay as an L2 term
/// added to the gradient.
///
/// Per parameter the step count `t` starts at 0 and grows by one each step the parameter
/// takes part in; per element, with gradient `g`, value `p`, moments `m` and `v` (zero
/// before the first step):
///
/// ```text
/// d = g + weight_decay * p + l1 * sign(p)   (l1: slope_l1 for slopes, norm_scale_l1
///                                          for batch-norm scales, else 0)
/// m = m + (1 - beta1) * (d - m)
/// v = beta2 * v + (1 - beta2) * d * d
/// p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// Defaults are PyTorch's: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight
/// decay; and no L1 penalty. The moments take two values per element, kept per
/// parameter id.
///
/// A partly frozen parameter counts a step for all its elements, while its frozen
/// elements keep their moments: once unfrozen they resume with the moments they had, under
/// the parameter's bias correction.
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f32,
    betas: (f32, f32),
    eps: f32,
    weight_decay: f32,
    l1: L1Penalty,
    decoupled: bool,
    states: HashMap<TensorId, AdamState>,
}

/// AdamW: Adam with decoupled weight decay, exactly PyTorch's `AdamW`.
///
/// Each step first shrinks every non-frozen element, `p = p * (1 - lr * weight_decay)`,
/// then applies [`Adam`]'s rule with no L2 term in the gradient (the slope L1 term stays
/// in it).
///
/// Defaults are PyTorch's: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`,
/// `weight_decay = 1e-2`; and no L1 penalty.
#[derive(Clone, Debug)]
pub struct AdamW(Adam);

/// One parameter's step count and moments, one of each per element.
#[derive(Clone, Debug)]
struct AdamState {
    step: u64,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
}

impl Default for Adam {
    fn default() -> Self {
        Self::new(1e-3)
    }
}

impl Default for AdamW {
    fn default() -> Self {
        Self::new(1e-3)
    }
}

fn check_lr(lr: f32) {
    assert!(
        lr.is_finite() && lr >= 0.0,
        "Adam: invalid learning rate {lr}"
    );
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    ///
    /// # Panics
    /// If `lr` is negative or not finite.
    pub fn new(lr: f32) -> Self {
        check_lr(lr);
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            l1: L1Penalty::default(),
            decoupled: false,
            states: HashMap::new(),
        }
    }

    /// Sets the decay rates of the first and second moments.
    ///
    /// # Panics
    /// If either is outside `[0, 1)`.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        for beta in [beta1, beta2] {
            assert!((0.0..1.0).contains(&beta), "Adam: invalid beta {beta}");
        }
        self.betas = (beta1, beta2);
        self
    }

    /// Sets the term added to the denominator for stability.
    ///
    /// # Panics
    /// If `eps` is negative or not finite.
    pub fn eps(mut self, eps: f32) -> Self {
        assert!(eps.is_finite() && eps >= 0.0, "Adam: invalid eps {eps}");
        self.eps = eps;
        self
    }

    /// Sets the weight decay (an L2 term in the gradient for [`Adam`], decoupled for
    /// [`AdamW`]).
    ///
    /// # Panics
    /// If `weight_decay` is negative or not finite.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        assert!(
            weight_decay.is_finite() && weight_decay >= 0.0,
            "Adam: invalid weight decay {weight_decay}"
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
        self.l1.slope = L1Penalty::check("Adam", "slope", slope_l1);
        self
    }

    /// Sets the L1 penalty on batch-norm scales, `norm_scale_l1 * sign(gamma)` added to
    /// each scale's gradient (Network Slimming's sparsity penalty).
    ///
    /// # Panics
    /// If `norm_scale_l1` is negative or not finite.
    pub fn norm_scale_l1(mut self, norm_scale_l1: f32) -> Self {
        self.l1.norm_scale = L1Penalty::check("Adam", "norm-scale", norm_scale_l1);
        self
    }
}

impl AdamW {
    /// AdamW with learning rate `lr` and PyTorch's other defaults.
    ///
    /// # Panics
    /// If `lr` is negative or not finite.
    pub fn new(lr: f32) -> Self {
        let mut adam = Adam::new(lr).weight_decay(1e-2);
        adam.decoupled = true;
        Self(adam)
    }

    /// See [`Adam::betas`].
    ///
    /// # Panics
    /// If either is outside `[0, 1)`.
    pub fn betas(self, beta1: f32, beta2: f32) -> Self {
        Self(self.0.betas(beta1, beta2))
    }

    /// See [`Adam::eps`].
    ///
    /// # Panics
    /// If `eps` is negative or not finite.
    pub fn eps(self, eps: f32) -> Self {
        Self(self.0.eps(eps))
    }

    /// Sets the decoupled weight decay.
    ///
    /// # Panics
    /// If `weight_decay` is negative or not finite.
    pub fn weight_decay(self, weight_decay: f32) -> Self {
        Self(self.0.weight_decay(weight_decay))
    }

    /// See [`Adam::slope_l1`].
    ///
    /// # Panics
    /// If `slope_l1` is negative or not finite.
    pub fn slope_l1(self, slope_l1: f32) -> Self {
        Self(self.0.slope_l1(slope_l1))
    }

    /// See [`Adam::norm_scale_l1`].
    ///
    /// # Panics
    /// If `norm_scale_l1` is negative or not finite.
    pub fn norm_scale_l1(self, norm_scale_l1: f32) -> Self {
        Self(self.0.norm_scale_l1(norm_scale_l1))
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Module, grads: &Gradients) {
        let (beta1, beta2) = self.betas;
        let (lr, eps) = (self.lr, self.eps);
        // NOTE: PyTorch computes the scalar coefficients in double precision and rounds
        // them once to the parameter's float type; doing the same keeps the trajectories
        // within a rounding of each other.
        let decay = f64::from(lr) * f64::from(self.weight_decay);
        // NOTE: the decoupled decay multiplies by exactly 1 when off, so one branch-free
        // loop serves Adam and AdamW.
        let shrink = if self.decoupled {
            (1.0 - decay) as f32
        } else {
            1.0
        };
        let l2 = if self.decoupled {
            0.0
        } else {
            self.weight_decay
        };
        let one_minus_beta1 = (1.0 - f64::from(beta1)) as f32;
        let one_minus_beta2 = (1.0 - f64::from(beta2)) as f32;
        let states = &mut self.states;
        for_each_param_step(model, grads, l2, self.l1, |step, values| {
            let state = states.entry(step.id).or_insert_with(|| AdamState {
                step: 0,
                exp_avg: vec![0.0; values.len()],
                exp_avg_sq: vec![0.0; values.len()],
            });
            state.step += 1;
            let t = i32::try_from(state.step).unwrap_or(i32::MAX);
            let bias_correction1 = 1.0 - f64::from(beta1).powi(t);
            // NOTE: PyTorch divides sqrt(v) by sqrt(1 - beta2^t); multiplying by the
            // reciprocal instead saves a division per element (the loop is bound by its
            // square root and divisions) and differs from it by a rounding.
            let inv_bias_correction2_sqrt = (1.0 - f64::from(beta2).powi(t)).sqrt().recip() as f32;
            let step_size = (f64::from(lr) / bias_correction1) as f32;
            let moments = (
                state.exp_avg.as_mut_slice(),
                state.exp_avg_sq.as_mut_slice(),
            );
            step.update_elements(values, moments, |p, d, (m, v)| {
                *p *= shrink;
                *m = flush_denormal(*m + one_minus_beta1 * (d - *m));
                *v = flush_denormal(*v * beta2 + one_minus_beta2 * d * d);
                let denom = v.sqrt() * inv_bias_correction2_sqrt + eps;
                *p = flush_denormal(*p - step_size * (*m / denom));
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
            let Some(state) = self.states.remove(&m.from) else {
                continue;
            };
            if let (Some(exp_avg), Some(exp_avg_sq)) =
                (m.gather(&state.exp_avg), m.gather(&state.exp_avg_sq))
            {
                let step = state.step;
                self.states.insert(
                    m.to,
                    AdamState {
                        step,
                        exp_avg,
                        exp_avg_sq,
                    },
                );
            }
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, model: &mut dyn Module, grads: &Gradients) {
        self.0.step(model, grads);
    }

    fn lr(&self) -> f32 {
        self.0.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.0.lr = lr;
    }

    fn carry_state(&mut self, moves: &[StateMove]) {
        self.0.carry_state(moves);
    }
}

#[cfg(test)]
mod tests {
    use rotor_engine::Tensor;

    use super::*;
    use crate::layers::RotatedRelu;

    #[test]
    fn moments_of_tiny_gradients_are_stored_as_zero_not_denormal() {
        let mut layer = RotatedRelu::with_slopes(&Tensor::ones(&[4]).unwrap());
        let mut adam = Adam::new(1e-3);
        // NOTE: (1 - beta2) * g^2 = 1e-43 is denormal; beta1's share 1e-21 is normal.
        let g = Tensor::full(&[4], 1e-20).unwrap();
        let grads = layer.slope.tensor().backward_with(&g).unwrap();
        adam.step(&mut layer, &grads);
        let state = &adam.states[&layer.slope.tensor().id()];
        assert_eq!(state.step, 1);
        assert!(
            state.exp_avg.iter().all(|m| m.is_normal()),
            "{:?}",
            state.exp_avg
        );
        assert!(
            state.exp_avg_sq.iter().all(|&v| v == 0.0),
            "{:?}",
            state.exp_avg_sq
        );
    }
}
