//! The example's side of training: its command-line optimizer choice, progress bars, and
//! the MNIST datasets turned into the library's labelled batches.

use std::cell::Cell;
use std::rc::Rc;

use indicatif::{ProgressBar, ProgressStyle};
use rotor::datasets::{Batch, BatchOptions, ImageDataset};
use rotor::nn::inference::{InferencePlan, PlanOptions};
use rotor::nn::prune::{GateKind, PrunePlan, Savings};
use rotor::nn::train::{
    Callback, CompactEvery, EpochSummary, History, StepInfo, TrainError, Trainer, evaluate,
};
use rotor::nn::{Adam, AdamW, CosineAnnealingLr, Module, Optimizer, Sequential, Sgd};

use crate::cluster::{Cluster, quiet, say};
use crate::{Args, OptimizerKind};

/// Result type of the example.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Batch size of evaluation.
const EVAL_BATCH: usize = 500;

/// An optimizer of the chosen kind with learning rate `lr`, weight decay on every
/// parameter (an L2 term in the gradient for SGD and Adam, decoupled for AdamW) and the
/// given L1 penalties on rotated slopes and on batch-norm scales.
pub fn make_optimizer(
    kind: OptimizerKind,
    lr: f32,
    weight_decay: f32,
    slope_l1: f32,
    scale_l1: f32,
) -> Box<dyn Optimizer> {
    match kind {
        OptimizerKind::Sgd => Box::new(
            Sgd::new(lr)
                .momentum(0.9)
                .weight_decay(weight_decay)
                .slope_l1(slope_l1)
                .norm_scale_l1(scale_l1),
        ),
        OptimizerKind::Adam => Box::new(
            Adam::new(lr)
                .weight_decay(weight_decay)
                .slope_l1(slope_l1)
                .norm_scale_l1(scale_l1),
        ),
        OptimizerKind::Adamw => Box::new(
            AdamW::new(lr)
                .weight_decay(weight_decay)
                .slope_l1(slope_l1)
                .norm_scale_l1(scale_l1),
        ),
    }
}

/// A progress bar over `len` steps labelled `prefix`.
pub fn progress(len: usize, prefix: String) -> AnyResult<ProgressBar> {
    if quiet() {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    Ok(bar)
}

/// The fraction of `data` classified correctly, in evaluation mode.
pub fn accuracy(model: &dyn Module, data: &ImageDataset) -> Result<f64, TrainError> {
    let options = BatchOptions {
        batch_size: EVAL_BATCH,
        ..BatchOptions::default()
    };
    Ok(evaluate(model, data.batches(&options, 0).map(Batch::into_tensor))?.accuracy())
}

/// One training run of the example.
pub struct Phase<'a> {
    /// Its name in the output.
    pub what: &'a str,
    /// Its number of epochs.
    pub epochs: usize,
    /// The gates to compact on between epochs when `--compact-every` asks.
    pub compact: Option<GateKind>,
}

/// Trains `model` with `optimizer` on a cosine schedule from its learning rate (on this
/// rank's shards of the batches), compacting it between epochs when `--compact-every`
/// asks, and prints a line per epoch with the validation accuracy; returns the epochs'
/// summaries.
pub fn train(
    model: &mut dyn Module,
    optimizer: Box<dyn Optimizer>,
    phase: &Phase<'_>,
    (train, val): (&ImageDataset, &ImageDataset),
    args: &Args,
    cluster: &Cluster,
) -> AnyResult<History> {
    let epochs = phase.epochs;
    let options = BatchOptions {
        batch_size: args.batch_size,
        shuffle_seed: Some(args.seed),
        ..BatchOptions::default()
    };
    let schedule = CosineAnnealingLr::new(optimizer.lr(), epochs.max(1));
    let mut trainer = cluster.join(Trainer::with_boxed(optimizer, epochs).schedule(schedule));
    let live_flops = Rc::new(Cell::new(None));
    let mut compaction = match phase.compact {
        Some(gate) if args.compact_every > 0 => {
            let input = [1, train.rows(), train.cols()];
            live_flops.set(Some(forward_flops(model, gate, &input)?));
            let shown = Rc::clone(&live_flops);
            let compact = CompactEvery::new(args.compact_every, gate, args.compact_zeta, &input);
            Some(compact.on_compact(move |c| {
                shown.set(Some(c.flops_after));
                say!(
                    "compacted after epoch {}: {:.2} to {:.2} MFLOPs per image, {} to {} parameters",
                    c.epoch + 1,
                    c.flops_before as f64 / 1e6,
                    c.flops_after as f64 / 1e6,
                    c.params_before,
                    c.params_after
                );
            }))
        }
        _ => None,
    };
    let mut display = EpochDisplay {
        what: phase.what,
        val,
        live_flops,
        bar: None,
    };
    // NOTE: the other ranks skip the per-epoch validation and wait for rank 0 in the
    // next step's reduction; every rank compacts alike, after the display.
    let mut callbacks: Vec<&mut dyn Callback> = Vec::new();
    if cluster.is_root() {
        callbacks.push(&mut display);
    }
    if let Some(compaction) = &mut compaction {
        callbacks.push(compaction);
    }
    let history = trainer.fit(
        model,
        |epoch| {
            let batches = train.batches(&options, epoch as u64);
            batches.map(|batch| cluster.shard(batch.into_tensor()))
        },
        &mut callbacks,
    )?;
    Ok(history)
}

/// Forward FLOPs per input of `model` (which must expose its network).
fn forward_flops(model: &mut dyn Module, gate: GateKind, input: &[usize]) -> AnyResult<u64> {
    let net = model
        .sequential_mut()
        .ok_or("the model does not expose its network")?;
    let plan = PrunePlan::new(net, gate, 0.0)?;
    Ok(Savings::new(net, &plan, input)?.total.flops_before)
}

/// A progress bar during each epoch and a line after it with the validation accuracy (and
/// the FLOPs per image the epoch ran at, when the network is compacted while it trains).
struct EpochDisplay<'a> {
    what: &'a str,
    val: &'a ImageDataset,
    live_flops: Rc<Cell<Option<u64>>>,
    bar: Option<ProgressBar>,
}

impl EpochDisplay<'_> {
    fn label(&self, epoch: usize, epochs: usize) -> String {
        format!("{} {}/{epochs}", self.what, epoch + 1)
    }
}

impl Callback for EpochDisplay<'_> {
    fn on_epoch_start(
        &mut self,
        epoch: usize,
        epochs: usize,
        batches: Option<usize>,
    ) -> Result<(), TrainError> {
        let bar = progress(batches.unwrap_or(0), self.label(epoch, epochs))
            .map_err(|e| TrainError::Callback(e.to_string().into()))?;
        self.bar = Some(bar);
        Ok(())
    }

    fn on_step(&mut self, step: &StepInfo) -> Result<(), TrainError> {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if step.step.is_multiple_of(20) {
                bar.set_message(format!(
                    "loss {:.4}, {:.0} images/s",
                    step.mean_loss, step.images_per_second
                ));
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: &EpochSummary, model: &dyn Module) -> Result<(), TrainError> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let flops = match self.live_flops.get() {
            Some(flops) => format!(", {:.2} MFLOPs per image", flops as f64 / 1e6),
            None => String::new(),
        };
        println!(
            "{}: train loss {:.4}, validation accuracy {:.2}%, {:.1} s, {:.0} images/s{flops}",
            self.label(epoch.epoch, epoch.epochs),
            epoch.mean_loss,
            100.0 * accuracy(model, self.val)?,
            epoch.seconds,
            epoch.images_per_second()
        );
        Ok(())
    }
}

/// A compiled inference plan of `model` for `data`'s images.
pub fn plan_for(model: &Sequential, data: &ImageDataset) -> AnyResult<InferencePlan> {
    Ok(InferencePlan::compile(
        model,
        &[1, data.rows(), data.cols()],
        PlanOptions::default(),
    )?)
}
