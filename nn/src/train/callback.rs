//! Hooks into the training loop: progress display, metrics, checkpoints, early stops.

use std::path::PathBuf;

use super::{EpochSummary, StepInfo, TrainError};
use crate::checkpoint;
use crate::module::Module;
use crate::optim::Optimizer;

/// Called by [`Trainer::fit`](super::Trainer::fit) around epochs and steps. Every method
/// does nothing by default; an error stops training and is returned by `fit`.
pub trait Callback {
    /// Before the first step of an epoch; `batches` is the epoch's number of batches when
    /// the data source knows it.
    ///
    /// # Errors
    /// Whatever the callback decides stops training.
    fn on_epoch_start(
        &mut self,
        _epoch: usize,
        _epochs: usize,
        _batches: Option<usize>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// After each optimizer step.
    ///
    /// # Errors
    /// Whatever the callback decides stops training.
    fn on_step(&mut self, _step: &StepInfo) -> Result<(), TrainError> {
        Ok(())
    }

    /// After the last step of an epoch, with the trained model (evaluate it here, save
    /// it, record metrics).
    ///
    /// # Errors
    /// Whatever the callback decides stops training.
    fn on_epoch_end(
        &mut self,
        _summary: &EpochSummary,
        _model: &dyn Module,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// After every callback's [`Callback::on_epoch_end`], with the model and the optimizer
    /// to change between epochs (compact the network, move the optimizer's state along).
    ///
    /// # Errors
    /// Whatever the callback decides stops training.
    fn after_epoch(
        &mut self,
        _summary: &EpochSummary,
        _model: &mut dyn Module,
        _optimizer: &mut dyn Optimizer,
    ) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Saves the model to a checkpoint after every epoch, overwriting it atomically, so an
/// interrupted run can resume from its last complete epoch.
#[derive(Clone, Debug)]
pub struct SaveEveryEpoch {
    /// Where the checkpoint goes.
    pub path: PathBuf,
}

impl Callback for SaveEveryEpoch {
    fn on_epoch_end(&mut self, _: &EpochSummary, model: &dyn Module) -> Result<(), TrainError> {
        checkpoint::save(model, &self.path)?;
        Ok(())
    }
}
