//! Optimizers (PyTorch's update rules) and learning-rate schedules.
//!
//! An optimizer reads the gradients of a backward pass and changes a model's parameters in
//! place ([`Param::update`], which keeps each parameter's [`TensorId`]). Its state
//! (momentum buffers, Adam's moments and step counts) is keyed by that id, so it follows a
//! parameter across steps without holding a reference to the model.
//!
//! Shared rules of every optimizer here:
//! - a parameter without a gradient is skipped, and its state is not advanced;
//! - elements marked frozen ([`Param::frozen`]) keep their value and their state;
//! - `slope_l1 = s` adds `s * sign(a)` to the gradient of every [`ParamKind::Slope`]
//!   parameter `a` (the L1 penalty on rotated-activation slopes; `sign(0) = 0`), and
//!   `norm_scale_l1 = s` the same to every [`ParamKind::NormScale`] (Network Slimming);
//! - a parameter or state value whose magnitude falls below `f32::MIN_POSITIVE` is
//!   stored as 0, never as a denormal.
//!
//! ```
//! use rotor_engine::{SeedableRng, SeededRng, Tensor};
//! use rotor_nn::optim::{CosineAnnealingLr, LrSchedule, Optimizer, Sgd};
//! use rotor_nn::{Linear, Module};
//!
//! let mut rng = SeededRng::seed_from_u64(0);
//! let mut model = Linear::new(3, 2, true, &mut rng)?;
//! let mut opt = Sgd::new(0.1).momentum(0.9);
//! let schedule = CosineAnnealingLr::new(0.1, 10);
//! let x = Tensor::ones(&[4, 3])?;
//! for epoch in 0..3 {
//!     opt.set_lr(schedule.lr(epoch));
//!     let grads = model.forward_train(&x)?.square().mean().backward()?;
//!     opt.step(&mut model, &grads);
//! }
//! # Ok::<(), rotor_engine::Error>(())
//! ```

mod adam;
pub mod schedule;
mod sgd;
mod update;

pub use adam::{Adam, AdamW};
pub use schedule::{Constant, CosineAnnealingLr, LrSchedule, MultiStepLr, StepLr};
pub use sgd::Sgd;

use rotor_engine::{Gradients, TensorId};

use crate::module::Module;
#[cfg(doc)]
use crate::param::{Param, ParamKind};

/// Something that updates a model's parameters from their gradients.
pub trait Optimizer {
    /// Updates every parameter of `model` that has a gradient in `grads`, in place.
    ///
    /// Drop the graph of the backward pass (the loss tensor) before stepping: while a
    /// graph still holds a parameter, updating it must copy its storage first.
    ///
    /// # Panics
    /// If a gradient does not have its parameter's number of elements (gradients of a
    /// backward pass always do).
    fn step(&mut self, model: &mut dyn Module, grads: &Gradients);

    /// The learning rate the next step uses.
    fn lr(&self) -> f32;

    /// Sets the learning rate for the following steps (what a schedule drives).
    fn set_lr(&mut self, lr: f32);

    /// Moves the per-element state of parameters that were replaced by smaller ones (a
    /// network compacted while it trains) to their replacements, so that training goes on
    /// as if nothing had been removed. The default keeps no state to move: the new
    /// parameters start fresh.
    fn carry_state(&mut self, _moves: &[StateMove]) {}
}

/// A parameter replaced by another holding a subset of its elements, for
/// [`Optimizer::carry_state`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateMove {
    /// The replaced parameter.
    pub from: TensorId,
    /// Its replacement.
    pub to: TensorId,
    /// For each element of the replacement, the element of the replaced parameter it
    /// continues (`None`: a new element, with fresh state).
    pub kept: Vec<Option<usize>>,
}

impl StateMove {
    /// `values` (one per element of the replaced parameter) gathered for the replacement,
    /// 0 for new elements; `None` if `values` is too short for the move.
    pub fn gather(&self, values: &[f32]) -> Option<Vec<f32>> {
        self.kept
            .iter()
            .map(|k| match k {
                Some(i) => values.get(*i).copied(),
                None => Some(0.0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
