//! Implicit sparsification: find the channels a trained network has switched off, remove
//! them, and count what that saves.
//!
//! A channel is *dead* when its gate, the per-channel scale in front of everything that
//! reads it, has magnitude at most `zeta`: the slope `a_c` of a rotated activation
//! ([`GateKind::Slope`], the rotated ReLU of Nayak & Kalyani) or the scale `gamma_c` of a
//! batch norm ([`GateKind::NormScale`], Network Slimming). The steps:
//!
//! 1. [`PrunePlan::new`] traces the channels through a [`Sequential`](crate::Sequential)
//!    (nested sequences and residual blocks included) and decides, for every layer, which
//!    output and input channels survive;
//! 2. [`mask`] zeroes the dead gates in place (the *masked* model, same shapes), and
//!    [`compact`] builds a physically smaller network that computes the same function;
//! 3. [`Savings::new`] counts parameters, FLOPs and bytes before and after, per layer;
//! 4. [`choose_zeta`] picks the largest threshold that keeps validation accuracy;
//! 5. [`freeze_dead`] and [`train_only`] set up masked fine-tuning and the paper's
//!    two-step training; a training forward skips the channels whose gates are frozen at
//!    zero, so masked fine-tuning costs what training the compacted network costs.
//!
//! [`prune_at`] (a given threshold) and [`prune_on_validation`] (a threshold chosen on
//! validation data) run steps 1 to 4 in one call on a copy of the network.
//!
//! ```
//! use rotor_engine::{SeedableRng, SeededRng, Tensor};
//! use rotor_nn::prune::{self, GateKind, PrunePlan};
//! use rotor_nn::{Conv2d, Module, RotatedRelu, Sequential};
//!
//! let mut rng = SeededRng::seed_from_u64(0);
//! let mut act = RotatedRelu::new(4, &mut rng)?;
//! act.slope.update(|a| a[1] = 0.01); // channel 1 switched off by training
//! let net = Sequential::new()
//!     .push("conv1", Conv2d::new(1, 4, 3, 1, 1, &mut rng)?)
//!     .push("act1", act)
//!     .push("conv2", Conv2d::new(4, 2, 3, 1, 1, &mut rng)?);
//! let plan = PrunePlan::new(&net, GateKind::Slope, 0.1)?;
//! assert_eq!(plan.layer("conv1").unwrap().kept_out, [0, 2, 3]);
//! assert_eq!(plan.layer("conv2").unwrap().kept_in, [0, 2, 3]);
//! let small = prune::compact(net, &plan)?;
//! assert_eq!(small.forward(&Tensor::ones(&[1, 1, 5, 5])?)?.shape(), [1, 2, 5, 5]);
//! # Ok::<(), rotor_engine::Error>(())
//! ```

mod compact;
mod finetune;
mod gate;
mod pipeline;
mod plan;
mod savings;
mod skipping;
mod trace;
mod track;
mod walk;
mod zeta;

pub use compact::{compact, mask};
pub use finetune::{freeze_dead, train_only};
pub use gate::{GateKind, gate_magnitudes};
pub use pipeline::{Pruned, ZetaSearch, prune_at, prune_on_validation};
pub use plan::{LayerPlan, PlanLayerKind, PrunePlan};
pub use savings::{Savings, SavingsRow};
pub(crate) use skipping::forward_train_live;
pub use track::compact_tracked;
pub use zeta::{SweepPoint, ZetaChoice, candidate_zetas, choose_zeta};
