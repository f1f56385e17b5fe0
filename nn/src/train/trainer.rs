//! The loop itself.

use std::time::Instant;

use rotor_engine::{Gradients, Result};

use super::{Callback, GradientSync, LabelledBatch, LocalStep, TrainError, loss_and_gradients};
use crate::module::Module;
use crate::optim::{LrSchedule, Optimizer};

/// Progress within an epoch, given to [`Callback::on_step`] after each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// The epoch, from 0.
    pub epoch: usize,
    /// Steps taken in this epoch, this one included.
    pub step: usize,
    /// The epoch's number of batches when the data source knows it.
    pub batches: Option<usize>,
    /// This batch's mean training loss.
    pub loss: f64,
    /// The epoch's mean training loss so far, over inputs.
    pub mean_loss: f64,
    /// Inputs trained on in this epoch so far.
    pub images: usize,
    /// Inputs per second in this epoch so far.
    pub images_per_second: f64,
}

/// One finished epoch, given to [`Callback::on_epoch_end`] and kept in the [`History`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochSummary {
    /// The epoch, from 0.
    pub epoch: usize,
    /// The number of epochs of the run.
    pub epochs: usize,
    /// The learning rate of the epoch.
    pub lr: f32,
    /// The mean training loss over the epoch's inputs.
    pub mean_loss: f64,
    /// Inputs trained on.
    pub images: usize,
    /// Wall-clock seconds of the epoch's steps (callbacks' own time excluded).
    pub seconds: f64,
}

impl EpochSummary {
    /// Training inputs per second.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// Every epoch's summary, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// One per epoch.
    pub epochs: Vec<EpochSummary>,
}

impl History {
    /// Training inputs per second over every epoch (0 before the first).
    pub fn images_per_second(&self) -> f64 {
        let images: usize = self.epochs.iter().map(|e| e.images).sum();
        let seconds: f64 = self.epochs.iter().map(|e| e.seconds).sum();
        images as f64 / seconds.max(f64::MIN_POSITIVE)
    }
}

/// Trains a classifier: per epoch, sets the schedule's learning rate, and for each batch
/// runs [`Module::forward_train`], the mean cross-entropy, the backward pass and one
/// optimizer step.
pub struct Trainer {
    optimizer: Box<dyn Optimizer>,
    schedule: Option<Box<dyn LrSchedule>>,
    sync: Option<Box<dyn GradientSync>>,
    epochs: usize,
}

impl Trainer {
    /// `epochs` epochs with `optimizer` at its own learning rate.
    pub fn new(optimizer: impl Optimizer + 'static, epochs: usize) -> Self {
        Self::with_boxed(Box::new(optimizer), epochs)
    }

    /// [`Trainer::new`] with an optimizer chosen at run time.
    pub fn with_boxed(optimizer: Box<dyn Optimizer>, epochs: usize) -> Self {
        Self {
            optimizer,
            schedule: None,
            sync: None,
            epochs,
        }
    }

    /// Sets the learning rate of each epoch from `schedule` (builder style).
    pub fn schedule(mut self, schedule: impl LrSchedule + 'static) -> Self {
        self.schedule = Some(Box::new(schedule));
        self
    }

    /// Trains data-parallel with other workers through `sync` (builder style): each
    /// worker's data gives its shard of every batch (see [`shard`](super::shard)), and
    /// every step applies the gradient of the whole batch's mean loss on every worker.
    /// Step and epoch figures given to callbacks are the whole batch's.
    pub fn sync(mut self, sync: impl GradientSync + 'static) -> Self {
        self.sync = Some(Box::new(sync));
        self
    }

    /// The optimizer, with the state it has built up (momentum, Adam's moments).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// Trains `model` for the trainer's epochs on `data(epoch)`'s batches, calling every
    /// callback in order at each event.
    ///
    /// # Errors
    /// The first batch that fails to load or does not fit the model, or the first error a
    /// callback returns; the model keeps the steps taken before it.
    pub fn fit<B>(
        &mut self,
        model: &mut dyn Module,
        mut data: impl FnMut(usize) -> B,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History, TrainError>
    where
        B: IntoIterator<Item = Result<LabelledBatch>>,
    {
        if let Some(sync) = &mut self.sync {
            sync.start(model)?;
        }
        let mut history = History::default();
        for epoch in 0..self.epochs {
            if let Some(schedule) = &self.schedule {
                self.optimizer.set_lr(schedule.lr(epoch));
            }
            let batches = data(epoch).into_iter();
            let count = match batches.size_hint() {
                (low, Some(high)) if low == high => Some(low),
                _ => None,
            };
            for callback in callbacks.iter_mut() {
                callback.on_epoch_start(epoch, self.epochs, count)?;
            }
            let started = Instant::now();
            let mut paused = 0.0;
            let (mut loss_sum, mut images, mut step) = (0.0f64, 0usize, 0usize);
            for batch in batches {
                let (inputs, labels) = batch?;
                let (mut grads, mut local) = if labels.is_empty() && self.sync.is_some() {
                    // NOTE: a worker whose shard of a short last batch is empty still takes
                    // part in the reduction, with nothing to add.
                    (
                        Gradients::new(),
                        LocalStep {
                            inputs: 0,
                            mean_loss: 0.0,
                        },
                    )
                } else {
                    // NOTE: the graph, which holds the parameters, is gone by the update,
                    // which then changes them in place instead of copying each.
                    let (loss, grads) = loss_and_gradients(model, &inputs, &labels)?;
                    (
                        grads,
                        LocalStep {
                            inputs: labels.len(),
                            mean_loss: f64::from(loss),
                        },
                    )
                };
                if let Some(sync) = &mut self.sync {
                    local = sync.sync(model, &mut grads, local)?;
                }
                self.optimizer.step(model, &grads);
                drop(grads);
                step += 1;
                loss_sum += local.mean_loss * local.inputs as f64;
                images += local.inputs;
                let loss_value = local.mean_loss;
                let info = StepInfo {
                    epoch,
                    step,
                    batches: count,
                    loss: loss_value,
                    mean_loss: loss_sum / images.max(1) as f64,
                    images,
                    images_per_second: images as f64
                        / (started.elapsed().as_secs_f64() - paused).max(f64::MIN_POSITIVE),
                };
                let callback_started = Instant::now();
                for callback in callbacks.iter_mut() {
                    callback.on_step(&info)?;
                }
                paused += callback_started.elapsed().as_secs_f64();
            }
            let summary = EpochSummary {
                epoch,
                epochs: self.epochs,
                lr: self.optimizer.lr(),
                mean_loss: loss_sum / images.max(1) as f64,
                images,
                seconds: started.elapsed().as_secs_f64() - paused,
            };
            history.epochs.push(summary);
            for callback in callbacks.iter_mut() {
                callback.on_epoch_end(&summary, model)?;
            }
            for callback in callbacks.iter_mut() {
                callback.after_epoch(&summary, model, self.optimizer.as_mut())?;
            }
        }
        Ok(history)
    }
}
