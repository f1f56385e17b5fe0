//! Accuracy and loss of a model over labelled batches, in evaluation mode.

use rotor_engine::Result;

use super::{LabelledBatch, TrainError};
use crate::metrics::count_correct;
use crate::module::Module;

/// What [`evaluate`] measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Inputs seen.
    pub images: usize,
    /// Inputs whose largest logit is their label's.
    pub correct: usize,
    /// The sum over inputs of the cross-entropy loss.
    pub loss_sum: f64,
}

impl Evaluation {
    /// The fraction classified correctly, in `[0, 1]` (0 for no inputs).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }

    /// The mean cross-entropy loss (0 for no inputs).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }
}

/// Runs `model` in evaluation mode ([`Module::forward`]: running statistics, no dropout,
/// no gradient record) over `batches` and counts correct classifications and the loss.
///
/// # Errors
/// The first batch that fails to load or does not fit the model.
pub fn evaluate(
    model: &dyn Module,
    batches: impl IntoIterator<Item = Result<LabelledBatch>>,
) -> Result<Evaluation, TrainError> {
    let mut total = Evaluation::default();
    for batch in batches {
        let (inputs, labels) = batch?;
        let logits = model.forward(&inputs)?;
        total.correct += count_correct(&logits, &labels)?;
        let loss = f64::from(logits.cross_entropy(&labels)?.to_scalar()?);
        total.loss_sum += loss * labels.len() as f64;
        total.images += labels.len();
    }
    Ok(total)
}
