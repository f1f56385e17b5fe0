//! What can stop training.

use crate::checkpoint::CheckpointError;

/// What can stop [`Trainer::fit`](super::Trainer::fit) or [`evaluate`](super::evaluate).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A tensor operation failed (a batch that does not fit the model, a label out of
    /// range, ...).
    #[error(transparent)]
    Engine(#[from] rotor_engine::Error),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A callback stopped training with an error of its own.
    #[error("{0}")]
    Callback(Box<dyn std::error::Error + Send + Sync>),
}
