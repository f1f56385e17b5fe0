//! Data-parallel training: the hook through which workers that each train on a shard of
//! every batch combine their gradients before the optimizer steps, and the sharding itself.

use rotor_engine::{Error, Gradients, Result};

use super::{LabelledBatch, TrainError};
use crate::module::Module;

/// What one worker computed in a step, before the workers combine it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalStep {
    /// Inputs in this worker's shard of the batch.
    pub inputs: usize,
    /// The mean cross-entropy loss over the shard.
    pub mean_loss: f64,
}

/// Combines the gradients of workers that train copies of one model on shards of every
/// batch, so that each applies the same update: the gradient of the mean loss over the
/// whole batch. [`Trainer::sync`](super::Trainer::sync) installs one; without it the
/// trainer trains alone.
pub trait GradientSync {
    /// Called once at the start of [`Trainer::fit`](super::Trainer::fit): make every
    /// worker's parameters equal (for instance, to the first worker's).
    ///
    /// # Errors
    /// If the workers cannot agree.
    fn start(&mut self, model: &mut dyn Module) -> Result<(), TrainError>;

    /// Called after each backward pass, before the optimizer step: replace `grads` (the
    /// gradients of this worker's mean loss over its shard) by the gradients of the mean
    /// loss over the whole batch, the same on every worker, and return the whole batch's
    /// input count and mean loss.
    ///
    /// # Errors
    /// If the workers cannot combine their gradients.
    fn sync(
        &mut self,
        model: &dyn Module,
        grads: &mut Gradients,
        local: LocalStep,
    ) -> Result<LocalStep, TrainError>;
}

/// Worker `rank`'s shard of `batch` for `ranks` workers: a contiguous run of its inputs,
/// the shards of all workers together being the batch, in order, and differing in size by
/// at most one. A shard may be empty when the batch has fewer inputs than there are
/// workers.
///
/// # Errors
/// If `rank` is not below `ranks`, or the labels do not match the inputs.
pub fn shard((inputs, labels): LabelledBatch, rank: usize, ranks: usize) -> Result<LabelledBatch> {
    if rank >= ranks {
        return Err(Error::InvalidArgument {
            op: "shard",
            reason: format!("rank {rank} of {ranks} workers"),
        });
    }
    let n = labels.len();
    if inputs.shape().first() != Some(&n) {
        return Err(Error::InvalidArgument {
            op: "shard",
            reason: format!("{n} labels for inputs of shape {:?}", inputs.shape()),
        });
    }
    let (start, end) = (n * rank / ranks, n * (rank + 1) / ranks);
    Ok((
        inputs.narrow(0, start, end - start)?,
        labels[start..end].to_vec(),
    ))
}

/// The flat buffer a [`GradientSync`] reduces in one collective call: every trainable
/// parameter's gradient scaled by the shard's input count, one presence flag per
/// parameter (a parameter no worker has a gradient for stays without one), the shard's
/// loss sum and its input count.
///
/// [`FlatGradients::unpack`] of the element-wise sum of all workers' buffers gives the
/// whole batch's mean gradients.
#[derive(Debug, Default)]
pub struct FlatGradients {
    values: Vec<f32>,
}

impl FlatGradients {
    /// An empty buffer, grown by the first [`FlatGradients::pack`] and reused after.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes this worker's part: `grads` of `model`'s parameters, and `local`.
    pub fn pack(&mut self, model: &dyn Module, grads: &Gradients, local: LocalStep) -> &[f32] {
        let weight = local.inputs as f32;
        self.values.clear();
        let mut flags = Vec::new();
        model.visit_params("", &mut |_, param| match param.grad(grads) {
            Some(grad) => {
                self.values
                    .extend(grad.as_slice().iter().map(|g| g * weight));
                flags.push(1.0);
            }
            None => {
                self.values
                    .resize(self.values.len() + param.tensor().numel(), 0.0);
                flags.push(0.0);
            }
        });
        self.values.extend(flags);
        self.values
            .extend([(local.mean_loss * local.inputs as f64) as f32, weight]);
        &self.values
    }

    /// Reads `summed`, the element-wise sum of every worker's packed buffer, into `grads`
    /// as the whole batch's mean gradients, and returns the whole batch's input count and
    /// mean loss.
    ///
    /// # Errors
    /// If the buffer does not fit `model` (the workers' models differ).
    pub fn unpack(summed: &[f32], model: &dyn Module, grads: &mut Gradients) -> Result<LocalStep> {
        let mut params = Vec::new();
        model.visit_params("", &mut |_, param| params.push(param.tensor().clone()));
        let sizes: usize = params.iter().map(|p| p.numel()).sum();
        if summed.len() != sizes + params.len() + 2 {
            return Err(Error::InvalidArgument {
                op: "FlatGradients::unpack",
                reason: format!(
                    "a buffer of {} values for a model of {sizes} parameter values in {} tensors",
                    summed.len(),
                    params.len()
                ),
            });
        }
        let inputs = summed[summed.len() - 1];
        let loss_sum = summed[summed.len() - 2];
        let flags = &summed[sizes..sizes + params.len()];
        let scale = 1.0 / inputs.max(1.0);
        let mut offset = 0;
        for (param, &flag) in params.iter().zip(flags) {
            let len = param.numel();
            if flag > 0.0 {
                let mean: Vec<f32> = summed[offset..offset + len]
                    .iter()
                    .map(|g| g * scale)
                    .collect();
                grads.insert(param, rotor_engine::Tensor::from_vec(mean, param.shape())?)?;
            }
            offset += len;
        }
        Ok(LocalStep {
            inputs: inputs as usize,
            mean_loss: f64::from(loss_sum) / f64::from(inputs.max(1.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use rotor_engine::{SeedableRng, SeededRng, Tensor};

    use super::*;
    use crate::layers::{Linear, Relu, Sequential};

    fn net(rng: &mut SeededRng) -> Sequential {
        Sequential::new()
            .push("fc1", Linear::new(4, 5, true, rng).unwrap())
            .push("act", Relu)
            .push("fc2", Linear::new(5, 3, false, rng).unwrap())
    }

    #[test]
    fn shards_partition_the_batch_in_order() {
        let x = Tensor::from_vec((0..14).map(|v| v as f32).collect(), &[7, 2]).unwrap();
        let labels: Vec<u32> = (0..7).collect();
        for ranks in 1..=9 {
            let mut rows = Vec::new();
            let mut got = Vec::new();
            for rank in 0..ranks {
                let (xs, ls) = shard((x.clone(), labels.clone()), rank, ranks).unwrap();
                assert_eq!(xs.shape(), [ls.len(), 2]);
                assert!(ls.len() == 7 / ranks || ls.len() == 7 / ranks + 1);
                rows.extend(xs.to_vec());
                got.extend(ls);
            }
            assert_eq!(got, labels);
            assert_eq!(rows, x.to_vec());
        }
        assert!(shard((x.clone(), labels.clone()), 2, 2).is_err());
        assert!(shard((x, vec![0; 6]), 0, 2).is_err());
    }

    /// Two workers' packed buffers, summed, unpack to the whole batch's mean gradients.
    #[test]
    fn summed_buffers_unpack_to_the_whole_batch_gradient() {
        let mut rng = SeededRng::seed_from_u64(3);
        let mut model = net(&mut rng);
        let x = Tensor::rand_normal(&[5, 4], 0.0, 1.0, &mut rng).unwrap();
        let labels = vec![0, 2, 1, 1, 0];
        let step = |model: &mut Sequential, batch: &LabelledBatch| {
            let loss = model
                .forward_train(&batch.0)
                .unwrap()
                .cross_entropy(&batch.1)
                .unwrap();
            let local = LocalStep {
                inputs: batch.1.len(),
                mean_loss: f64::from(loss.to_scalar().unwrap()),
            };
            (loss.backward().unwrap(), local)
        };
        let (whole, whole_step) = step(&mut model, &(x.clone(), labels.clone()));

        let mut summed: Vec<f32> = Vec::new();
        let mut buffer = FlatGradients::new();
        for rank in 0..2 {
            let part = shard((x.clone(), labels.clone()), rank, 2).unwrap();
            let (grads, local) = step(&mut model, &part);
            let packed = buffer.pack(&model, &grads, local);
            summed.resize(packed.len(), 0.0);
            summed.iter_mut().zip(packed).for_each(|(s, p)| *s += p);
        }
        let mut combined = Gradients::new();
        let got = FlatGradients::unpack(&summed, &model, &mut combined).unwrap();
        assert_eq!(got.inputs, 5);
        assert!((got.mean_loss - whole_step.mean_loss).abs() < 1e-6);
        let mut compared = 0;
        model.visit_params("", &mut |name, p| {
            let (a, b) = (p.grad(&combined).unwrap(), p.grad(&whole).unwrap());
            for (x, y) in a.to_vec().iter().zip(b.to_vec()) {
                assert!((x - y).abs() < 1e-6, "{name}: {x} vs {y}");
            }
            compared += 1;
        });
        assert_eq!(compared, 3);

        let other = net(&mut rng).push("fc3", Linear::new(3, 2, true, &mut rng).unwrap());
        assert!(FlatGradients::unpack(&summed, &other, &mut Gradients::new()).is_err());
    }

    #[test]
    fn a_parameter_without_gradients_on_every_worker_stays_without() {
        let mut rng = SeededRng::seed_from_u64(4);
        let model = net(&mut rng);
        let mut buffer = FlatGradients::new();
        let empty = LocalStep {
            inputs: 0,
            mean_loss: 0.0,
        };
        let packed = buffer.pack(&model, &Gradients::new(), empty).to_vec();
        let mut grads = Gradients::new();
        let got = FlatGradients::unpack(&packed, &model, &mut grads).unwrap();
        assert!(grads.is_empty());
        assert_eq!((got.inputs, got.mean_loss), (0, 0.0));
    }
}
