//! Learning-rate schedules: the learning rate as a function of the epoch, in the closed
//! forms of PyTorch's `torch.optim.lr_scheduler`.
//!
//! A schedule holds no optimizer; the training loop sets the rate at the start of each
//! epoch with `optimizer.set_lr(schedule.lr(epoch))`. Epochs count from 0, the epoch
//! before PyTorch's first `scheduler.step()`.

/// The learning rate for each epoch.
pub trait LrSchedule {
    /// The learning rate during `epoch` (0-based).
    fn lr(&self, epoch: usize) -> f32;
}

/// The same learning rate every epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant(pub f32);

impl LrSchedule for Constant {
    fn lr(&self, _epoch: usize) -> f32 {
        self.0
    }
}

/// `base_lr * gamma^floor(epoch / step_size)`: decays by `gamma` every `step_size`
/// epochs (PyTorch's `StepLR`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    base_lr: f32,
    step_size: usize,
    gamma: f32,
}

impl StepLr {
    /// Decay every `step_size` epochs by PyTorch's default `gamma = 0.1`.
    ///
    /// # Panics
    /// If `step_size` is 0.
    pub fn new(base_lr: f32, step_size: usize) -> Self {
        assert!(step_size > 0, "StepLr: the step size must be positive");
        Self {
            base_lr,
            step_size,
            gamma: 0.1,
        }
    }

    /// Sets the decay factor.
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }
}

impl LrSchedule for StepLr {
    fn lr(&self, epoch: usize) -> f32 {
        decayed(self.base_lr, self.gamma, epoch / self.step_size)
    }
}

/// `base_lr * gamma^(number of milestones <= epoch)`: decays by `gamma` at each milestone
/// epoch (PyTorch's `MultiStepLR`; a milestone listed twice decays twice).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiStepLr {
    base_lr: f32,
    milestones: Vec<usize>,
    gamma: f32,
}

impl MultiStepLr {
    /// Decay at each of `milestones` (in any order) by PyTorch's default `gamma = 0.1`.
    pub fn new(base_lr: f32, milestones: impl Into<Vec<usize>>) -> Self {
        let mut milestones = milestones.into();
        milestones.sort_unstable();
        Self {
            base_lr,
            milestones,
            gamma: 0.1,
        }
    }

    /// Sets the decay factor.
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }
}

impl LrSchedule for MultiStepLr {
    fn lr(&self, epoch: usize) -> f32 {
        let passed = self.milestones.partition_point(|&m| m <= epoch);
        decayed(self.base_lr, self.gamma, passed)
    }
}

/// `eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2`: half a cosine from
/// `base_lr` down to `eta_min` over `t_max` epochs, rising again after (PyTorch's
/// `CosineAnnealingLR`, whose recursive form equals this closed form).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLr {
    base_lr: f32,
    t_max: usize,
    eta_min: f32,
}

impl CosineAnnealingLr {
    /// Anneal over `t_max` epochs to PyTorch's default `eta_min = 0`.
    ///
    /// # Panics
    /// If `t_max` is 0.
    pub fn new(base_lr: f32, t_max: usize) -> Self {
        assert!(t_max > 0, "CosineAnnealingLr: t_max must be positive");
        Self {
            base_lr,
            t_max,
            eta_min: 0.0,
        }
    }

    /// Sets the lowest learning rate.
    pub fn eta_min(mut self, eta_min: f32) -> Self {
        self.eta_min = eta_min;
        self
    }
}

impl LrSchedule for CosineAnnealingLr {
    fn lr(&self, epoch: usize) -> f32 {
        let (base, min) = (f64::from(self.base_lr), f64::from(self.eta_min));
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        (min + (base - min) * (1.0 + phase.cos()) / 2.0) as f32
    }
}

/// `base_lr * gamma^times`, in double precision.
fn decayed(base_lr: f32, gamma: f32, times: usize) -> f32 {
    let times = i32::try_from(times).unwrap_or(i32::MAX);
    (f64::from(base_lr) * f64::from(gamma).powi(times)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_never_changes() {
        assert_eq!(Constant(0.25).lr(0), 0.25);
        assert_eq!(Constant(0.25).lr(usize::MAX), 0.25);
    }

    #[test]
    fn step_lr_decays_at_multiples_of_the_step() {
        let s = StepLr::new(1.0, 2).gamma(0.5);
        let lrs: Vec<f32> = (0..6).map(|e| s.lr(e)).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        assert_eq!(s.lr(usize::MAX), 0.0);
    }

    #[test]
    fn multi_step_lr_counts_repeated_and_unsorted_milestones() {
        let s = MultiStepLr::new(1.0, [4, 1, 4]).gamma(0.5);
        let lrs: Vec<f32> = (0..6).map(|e| s.lr(e)).collect();
        assert_eq!(lrs, [1.0, 0.5, 0.5, 0.5, 0.125, 0.125]);
    }

    #[test]
    fn cosine_annealing_reaches_eta_min_at_t_max() {
        let s = CosineAnnealingLr::new(1.0, 4).eta_min(0.25);
        assert_eq!(s.lr(0), 1.0);
        assert_eq!(s.lr(2), 0.625);
        assert_eq!(s.lr(4), 0.25);
        assert_eq!(s.lr(8), 1.0);
    }

    #[test]
    #[should_panic(expected = "step size")]
    fn step_lr_rejects_a_zero_step() {
        let _ = StepLr::new(1.0, 0);
    }
}
