//! Training, evaluation and timing loops shared by every network the example trains.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rotor::datasets::{BatchOptions, ImageDataset};
use rotor::nn::inference::{InferencePlan, PlanOptions};
use rotor::nn::metrics::count_correct;
use rotor::nn::{Adam, AdamW, Module, Optimizer, Sequential, Sgd};

use crate::{Args, OptimizerKind};

/// Result type of the example.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

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

/// One pass over the shuffled training set; returns the mean training loss.
pub fn train_epoch(
    model: &mut dyn Module,
    optimizer: &mut dyn Optimizer,
    train: &ImageDataset,
    args: &Args,
    epoch: usize,
    label: &str,
) -> AnyResult<f64> {
    let options = BatchOptions {
        batch_size: args.batch_size,
        shuffle_seed: Some(args.seed),
        ..BatchOptions::default()
    };
    let batches = train.batches(&options, epoch as u64);
    let bar = progress(batches.len(), label.to_string())?;
    let started = Instant::now();
    let (mut loss_sum, mut seen) = (0.0f64, 0usize);
    for batch in batches {
        let (images, labels) = batch.into_tensor()?;
        let loss = model.forward_train(&images)?.cross_entropy(&labels)?;
        let grads = loss.backward()?;
        let loss_value = f64::from(loss.to_scalar()?);
        drop(loss);
        optimizer.step(model, &grads);
        loss_sum += loss_value * labels.len() as f64;
        seen += labels.len();
        bar.inc(1);
        if bar.position() % 20 == 0 {
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4}, {rate:.0} images/s",
                loss_sum / seen as f64
            ));
        }
    }
    bar.finish_and_clear();
    Ok(loss_sum / seen.max(1) as f64)
}

/// Trains `epochs` epochs with a cosine schedule from `lr`, printing a line per epoch
/// with the validation accuracy.
pub fn train(
    model: &mut dyn Module,
    optimizer: &mut dyn Optimizer,
    lr: f32,
    epochs: usize,
    (train, val): (&ImageDataset, &ImageDataset),
    args: &Args,
    what: &str,
) -> AnyResult<()> {
    use rotor::nn::{CosineAnnealingLr, LrSchedule};

    let schedule = CosineAnnealingLr::new(lr, epochs.max(1));
    for epoch in 0..epochs {
        optimizer.set_lr(schedule.lr(epoch));
        let started = Instant::now();
        let label = format!("{what} {}/{epochs}", epoch + 1);
        let loss = train_epoch(model, optimizer, train, args, epoch, &label)?;
        let seconds = started.elapsed().as_secs_f64();
        let accuracy = evaluate(model, val, 500)?;
        println!(
            "{label}: train loss {loss:.4}, validation accuracy {:.2}%, {seconds:.1} s, {:.0} images/s",
            100.0 * accuracy,
            train.len() as f64 / seconds
        );
    }
    Ok(())
}

/// The fraction of `data` classified correctly, in evaluation mode.
pub fn evaluate(model: &dyn Module, data: &ImageDataset, batch_size: usize) -> AnyResult<f64> {
    let options = BatchOptions {
        batch_size,
        ..BatchOptions::default()
    };
    let mut correct = 0;
    for batch in data.batches(&options, 0) {
        let (images, labels) = batch.into_tensor()?;
        correct += count_correct(&model.forward(&images)?, &labels)?;
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Images per second of inference over `data` through the compiled inference plan
/// (no autodiff, buffers reused; batches prepared beforehand, so only inference is timed).
pub fn images_per_second(
    model: &Sequential,
    data: &ImageDataset,
    batch_size: usize,
) -> AnyResult<f64> {
    let plan = InferencePlan::compile(
        model,
        &[1, data.rows(), data.cols()],
        PlanOptions::default(),
    )?;
    let mut workspace = plan.workspace();
    let options = BatchOptions {
        batch_size,
        ..BatchOptions::default()
    };
    let batches: Vec<_> = data.batches(&options, 0).collect();
    let started = Instant::now();
    for batch in &batches {
        std::hint::black_box(plan.run(&batch.images, batch.len(), &mut workspace)?);
    }
    Ok(data.len() as f64 / started.elapsed().as_secs_f64())
}
