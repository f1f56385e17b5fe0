//! Pruning one trained network: choose zeta on the validation split, compact, fine-tune,
//! and collect the method's report.

use rotor::datasets::{BatchOptions, ImageDataset};
use rotor::nn::inference::compare_throughput;
use rotor::nn::prune::{self, GateKind, Pruned, ZetaSearch};
use rotor::nn::report::{Accuracies, GateHistogram, RunReport, Throughput};
use rotor::nn::train::History;
use rotor::nn::{Module, ParamKind, Sequential};

use crate::Args;
use crate::cluster::{Cluster, say};
use crate::training::{AnyResult, Phase, accuracy, make_optimizer, plan_for, progress, train};

/// One example's shape.
const INPUT: [usize; 3] = [1, 28, 28];
/// Batch size of the throughput measurement, a typical serving batch.
const TIMING_BATCH: usize = 64;
/// Alternating rounds of the throughput measurement (the best round of each network
/// counts).
const TIMING_ROUNDS: usize = 3;

/// The data splits: training, validation (for zeta), test (for the report).
pub struct Splits {
    /// Training images (the training set less the validation split).
    pub train: ImageDataset,
    /// Held out of the training set: per-epoch accuracy and the choice of zeta.
    pub val: ImageDataset,
    /// Only for the accuracies in the report.
    pub test: ImageDataset,
}

/// How one method is pruned and fine-tuned.
pub struct Method<'a> {
    /// Its name in the report.
    pub name: &'a str,
    /// Its gates (`None`: nothing to prune).
    pub gate: Option<GateKind>,
    /// Fine-tune the weights only, slopes frozen (the second step of two-step training).
    pub weights_only: bool,
    /// Measure dense versus compacted inference speed.
    pub time_inference: bool,
}

/// Prunes the trained `net` (`trained`: how its training went); returns the method's
/// report and the compacted network.
pub fn prune_method(
    method: &Method<'_>,
    net: &Sequential,
    trained: &History,
    data: &Splits,
    args: &Args,
    cluster: &Cluster,
) -> AnyResult<(RunReport, Sequential)> {
    let dense_test = accuracy(net, &data.test)?;
    // NOTE: without gates any kind gives a plan that keeps everything.
    let kind = method.gate.unwrap_or(GateKind::Slope);
    let gates = prune::gate_magnitudes(net, kind);
    let Pruned {
        network: mut small,
        plan,
        savings,
        choice,
    } = match (method.gate, args.zeta) {
        (Some(kind), None) => {
            // NOTE: rank 0 alone chooses zeta; every rank then compacts at it alike.
            let searched = match cluster.is_root() {
                true => Some(search(kind, net, &data.val, args, method.name)?),
                false => None,
            };
            let zeta = cluster.share(searched.as_ref().map_or(f32::NAN, |p| p.plan.zeta));
            match searched {
                Some(pruned) => pruned,
                None => prune::prune_at(net, kind, zeta, &INPUT)?,
            }
        }
        (Some(kind), Some(zeta)) => prune::prune_at(net, kind, zeta, &INPUT)?,
        (None, _) => prune::prune_at(net, kind, 0.0, &INPUT)?,
    };
    let zeta = plan.zeta;
    let pruned_test = accuracy(&small, &data.test)?;
    say!(
        "{}: zeta {zeta}, {:.2}% of parameters and {:.2}% of FLOPs removed; test accuracy {:.2}% dense, {:.2}% pruned",
        method.name,
        savings.memory_saving_percent(),
        savings.compute_saving_percent(),
        100.0 * dense_test,
        100.0 * pruned_test
    );

    let finetuned = match method.gate {
        Some(kind) => finetune(method, kind, &mut small, trained, data, args, cluster)?,
        None => None,
    };

    let pruned = method.gate.is_some().then_some(&small as &dyn Module);
    let robustness = match cluster.is_root() {
        true => crate::robustness::measure_pair(net, pruned, &data.test, args, method.name)?,
        false => None,
    };

    let throughput = if method.time_inference && cluster.is_root() {
        let options = BatchOptions {
            batch_size: TIMING_BATCH,
            ..BatchOptions::default()
        };
        let batches: Vec<_> = data.test.batches(&options, 0).collect();
        let slices: Vec<&[f32]> = batches.iter().map(|b| &b.images[..]).collect();
        let (dense, compacted) = (plan_for(net, &data.test)?, plan_for(&small, &data.test)?);
        let best = compare_throughput(&[&dense, &compacted], &slices, TIMING_ROUNDS)?;
        Some(Throughput {
            images: data.test.len(),
            batch_size: TIMING_BATCH,
            threads: rayon::current_num_threads(),
            rounds: TIMING_ROUNDS,
            dense_images_per_second: best[0],
            compacted_images_per_second: best[1],
        })
    } else {
        None
    };

    let report = RunReport {
        method: method.name.to_string(),
        gate: method.gate,
        zeta,
        choice,
        accuracy: Accuracies {
            dense: dense_test,
            pruned: pruned_test,
            finetuned,
        },
        savings,
        gates: if method.gate.is_some() {
            gates
                .into_iter()
                .map(|(layer, magnitudes)| GateHistogram { layer, magnitudes })
                .collect()
        } else {
            Vec::new()
        },
        throughput,
        robustness,
    };
    Ok((report, small))
}

/// Fine-tunes the compacted network (or, in two-step training, trains its weights for the
/// first time) and says how much faster than the full network's its steps ran; returns its
/// test accuracy afterwards, `None` when there are no epochs.
fn finetune(
    method: &Method<'_>,
    kind: GateKind,
    small: &mut Sequential,
    trained: &History,
    data: &Splits,
    args: &Args,
    cluster: &Cluster,
) -> AnyResult<Option<f64>> {
    let epochs = if method.weights_only {
        args.epochs
    } else {
        args.finetune_epochs
    };
    if epochs == 0 {
        return Ok(None);
    }
    // NOTE: the second step of two-step training trains weights that have never been
    // trained, at the full rate; fine-tuning continues from trained ones, gently.
    let (base_lr, _) = args.learning_rate();
    let lr = if method.weights_only {
        prune::train_only(
            small,
            &[
                ParamKind::Weight,
                ParamKind::Bias,
                ParamKind::NormScale,
                ParamKind::NormShift,
            ],
        );
        base_lr
    } else {
        prune::freeze_dead(small, kind);
        base_lr / 10.0
    };
    let optimizer = make_optimizer(args.optimizer, lr, args.decay(), 0.0, 0.0);
    let what = format!("{} fine-tune", method.name);
    let phase = Phase {
        what: &what,
        epochs,
        compact: None,
    };
    let finetuned = train(
        small,
        optimizer,
        &phase,
        (&data.train, &data.val),
        args,
        cluster,
    )?;
    let (full, compacted) = (trained.images_per_second(), finetuned.images_per_second());
    if full > 0.0 && compacted > 0.0 {
        // NOTE: the share of a full-width step that the compacted step no longer spends.
        say!(
            "{}: training steps ran at {compacted:.0} images/s compacted against {full:.0} at full width: the dead channels no longer cost {:.0}% of the training time",
            method.name,
            100.0 * (1.0 - full / compacted)
        );
    }
    let accuracy = accuracy(small, &data.test)?;
    say!(
        "{}: test accuracy {:.2}% after fine-tuning",
        method.name,
        100.0 * accuracy
    );
    Ok(Some(accuracy))
}

/// Chooses zeta on the validation split (each threshold tried on a compacted copy) and
/// prunes at it.
fn search(
    kind: GateKind,
    net: &Sequential,
    val: &ImageDataset,
    args: &Args,
    name: &str,
) -> AnyResult<Pruned> {
    let search = ZetaSearch {
        per_round: args.candidates,
        max_drop_points: args.max_drop,
        ..ZetaSearch::default()
    };
    let bar = progress(0, format!("{name}: choosing zeta"))?;
    let pruned = prune::prune_on_validation(
        net,
        kind,
        &search,
        &INPUT,
        |candidate| accuracy(candidate, val),
        |point| {
            bar.inc_length(1);
            bar.inc(1);
            bar.set_message(format!(
                "zeta {:.4}: {:.2}%",
                point.zeta,
                100.0 * point.accuracy
            ));
        },
    )?;
    bar.finish_and_clear();
    if let Some(choice) = &pruned.choice {
        say!(
            "{name}: {} thresholds tried on {} validation images; chose zeta {} (unpruned {:.2}%, largest drop allowed {} points)",
            choice.sweep.len(),
            val.len(),
            choice.zeta,
            100.0 * choice.baseline_accuracy,
            args.max_drop
        );
    }
    Ok(pruned)
}
