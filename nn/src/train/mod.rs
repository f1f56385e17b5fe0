//! The training loop: epochs of forward, cross-entropy, backward and optimizer steps with a
//! learning-rate schedule, evaluation, and callbacks for progress, metrics and checkpoints.
//!
//! Data comes as a function of the epoch returning that epoch's labelled batches, so any
//! source fits (a `rotor-datasets` dataset, tensors in memory, a stream):
//!
//! ```
//! use rotor_engine::{Result, SeedableRng, SeededRng, Tensor};
//! use rotor_nn::optim::{CosineAnnealingLr, Sgd};
//! use rotor_nn::train::{Trainer, evaluate};
//! use rotor_nn::{Linear, Sequential};
//!
//! let mut rng = SeededRng::seed_from_u64(0);
//! let mut model = Sequential::new().push("fc", Linear::new(2, 2, true, &mut rng)?);
//! // Class 0 left of the y axis, class 1 right of it.
//! let points = Tensor::from_vec(vec![-1.0, 0.5, -2.0, -1.0, 1.0, 0.3, 2.0, -0.5], &[4, 2])?;
//! let labels = vec![0, 0, 1, 1];
//! let batches = |_epoch: usize| -> Vec<Result<(Tensor, Vec<u32>)>> {
//!     vec![Ok((points.clone(), labels.clone()))]
//! };
//! let mut trainer = Trainer::new(Sgd::new(0.5), 20).schedule(CosineAnnealingLr::new(0.5, 20));
//! let history = trainer.fit(&mut model, batches, &mut [])?;
//! assert_eq!(history.epochs.len(), 20);
//! assert_eq!(evaluate(&model, batches(0))?.accuracy(), 1.0);
//! # Ok::<(), rotor_nn::train::TrainError>(())
//! ```

mod callback;
mod compaction;
mod error;
mod evaluate;
mod step;
mod sync;
mod trainer;

pub use callback::{Callback, SaveEveryEpoch};
pub use compaction::{CompactEvery, Compaction};
pub use error::TrainError;
pub use evaluate::{Evaluation, evaluate};
pub use step::loss_and_gradients;
pub use sync::{FlatGradients, GradientSync, LocalStep, shard};
pub use trainer::{EpochSummary, History, StepInfo, Trainer};

/// One batch: inputs `[N, ...]` and one class index per input.
pub type LabelledBatch = (rotor_engine::Tensor, Vec<u32>);
