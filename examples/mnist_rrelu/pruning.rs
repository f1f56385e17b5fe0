//! Pruning one trained network: choose zeta on the validation split, compact, fine-tune,
//! and collect the method's report.

use rotor::datasets::ImageDataset;
use rotor::nn::prune::{self, GateKind, PrunePlan, Savings, SweepPoint, ZetaChoice};
use rotor::nn::report::{Accuracies, GateHistogram, RunReport, Throughput};
use rotor::nn::{Module, ParamKind, Sequential, checkpoint};

use crate::Args;
use crate::training::{AnyResult, evaluate, images_per_second, make_optimizer, progress, train};

/// One example's shape.
const INPUT: [usize; 3] = [1, 28, 28];
/// Largest threshold tried when choosing zeta.
const MAX_ZETA: f32 = 1.0;
/// Batch size of evaluation.
const EVAL_BATCH: usize = 500;
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
    /// A fresh network of the trained one's architecture (its values are overwritten).
    pub rebuild: &'a dyn Fn() -> AnyResult<Sequential>,
    /// Fine-tune the weights only, slopes frozen (the second step of two-step training).
    pub weights_only: bool,
    /// Measure dense versus compacted inference speed.
    pub time_inference: bool,
}

/// Prunes the trained `net`; returns the method's report and the compacted network.
pub fn prune_method(
    method: &Method<'_>,
    net: &Sequential,
    data: &Splits,
    args: &Args,
) -> AnyResult<(RunReport, Sequential)> {
    let dense_val = evaluate(net, &data.val, EVAL_BATCH)?;
    let dense_test = evaluate(net, &data.test, EVAL_BATCH)?;
    let bytes = checkpoint::to_bytes(net)?;
    let copy = || -> AnyResult<Sequential> {
        let mut fresh = (method.rebuild)()?;
        checkpoint::from_bytes(&mut fresh, &bytes)?;
        Ok(fresh)
    };
    // NOTE: without gates any kind gives a plan that keeps everything.
    let kind = method.gate.unwrap_or(GateKind::Slope);
    let gates = prune::gate_magnitudes(net, kind);

    let choice = match (method.gate, args.zeta) {
        (Some(kind), None) => Some(sweep(
            kind,
            &gates,
            dense_val,
            &copy,
            &data.val,
            args,
            method.name,
        )?),
        _ => None,
    };
    let zeta = match (&choice, method.gate) {
        (Some(c), _) => c.zeta,
        (None, Some(_)) => args.zeta.unwrap_or(0.0),
        (None, None) => 0.0,
    };
    let plan = PrunePlan::new(net, kind, zeta)?;
    let savings = Savings::new(net, &plan, &INPUT)?;
    let mut small = prune::compact(copy()?, &plan)?;
    let pruned_test = evaluate(&small, &data.test, EVAL_BATCH)?;
    println!(
        "{}: zeta {zeta}, {:.2}% of parameters and {:.2}% of FLOPs removed; test accuracy {:.2}% dense, {:.2}% pruned",
        method.name,
        savings.memory_saving_percent(),
        savings.compute_saving_percent(),
        100.0 * dense_test,
        100.0 * pruned_test
    );

    let epochs = if method.weights_only {
        args.epochs
    } else {
        args.finetune_epochs
    };
    let finetuned = if epochs > 0 && method.gate.is_some() {
        // NOTE: the second step of two-step training trains weights that have never been
        // trained, at the full rate; fine-tuning continues from trained ones, gently.
        let (base_lr, _) = args.learning_rate();
        let lr = if method.weights_only {
            base_lr
        } else {
            base_lr / 10.0
        };
        if method.weights_only {
            prune::train_only(
                &mut small,
                &[
                    ParamKind::Weight,
                    ParamKind::Bias,
                    ParamKind::NormScale,
                    ParamKind::NormShift,
                ],
            );
        } else {
            prune::freeze_dead(&mut small, kind);
        }
        let mut optimizer = make_optimizer(args.optimizer, lr, args.decay(), 0.0, 0.0);
        let what = format!("{} fine-tune", method.name);
        train(
            &mut small,
            optimizer.as_mut(),
            lr,
            epochs,
            (&data.train, &data.val),
            args,
            &what,
        )?;
        let accuracy = evaluate(&small, &data.test, EVAL_BATCH)?;
        println!(
            "{}: test accuracy {:.2}% after fine-tuning",
            method.name,
            100.0 * accuracy
        );
        Some(accuracy)
    } else {
        None
    };

    let pruned = method.gate.is_some().then_some(&small as &dyn Module);
    let robustness = crate::robustness::measure_pair(net, pruned, &data.test, args, method.name)?;

    let throughput = if method.time_inference {
        // NOTE: the two networks take turns and each keeps its best round, so that a
        // burst of other work on the machine does not count against one of them only;
        // the first round also warms caches and the thread pool.
        let (mut dense, mut compacted) = (0.0f64, 0.0f64);
        for _ in 0..TIMING_ROUNDS {
            dense = dense.max(images_per_second(net, &data.test, TIMING_BATCH)?);
            compacted = compacted.max(images_per_second(&small, &data.test, TIMING_BATCH)?);
        }
        Some(Throughput {
            images: data.test.len(),
            batch_size: TIMING_BATCH,
            threads: rayon::current_num_threads(),
            rounds: TIMING_ROUNDS,
            dense_images_per_second: dense,
            compacted_images_per_second: compacted,
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

/// Tries thresholds on the validation split, each on a compacted copy of the network.
fn sweep(
    kind: GateKind,
    gates: &[(String, Vec<f32>)],
    dense_val: f64,
    copy: &dyn Fn() -> AnyResult<Sequential>,
    val: &ImageDataset,
    args: &Args,
    name: &str,
) -> AnyResult<ZetaChoice> {
    let magnitudes = gates.iter().flat_map(|(_, m)| m.iter().copied());
    let bar = progress(0, format!("{name}: choosing zeta"))?;
    let choice = prune::choose_zeta(
        magnitudes,
        MAX_ZETA,
        args.candidates,
        dense_val,
        args.max_drop,
        |zeta| {
            bar.inc_length(1);
            let net = copy()?;
            let plan = PrunePlan::new(&net, kind, zeta)?;
            let savings = Savings::new(&net, &plan, &INPUT)?;
            let small = prune::compact(net, &plan)?;
            let accuracy = evaluate(&small, val, EVAL_BATCH)?;
            bar.inc(1);
            bar.set_message(format!("zeta {zeta:.4}: {:.2}%", 100.0 * accuracy));
            Ok::<_, Box<dyn std::error::Error>>(SweepPoint {
                zeta,
                accuracy,
                compute_saving_percent: savings.compute_saving_percent(),
                memory_saving_percent: savings.memory_saving_percent(),
            })
        },
    )?;
    bar.finish_and_clear();
    println!(
        "{name}: {} thresholds tried on {} validation images; chose zeta {} (unpruned {:.2}%, largest drop allowed {} points)",
        choice.sweep.len(),
        val.len(),
        choice.zeta,
        100.0 * dense_val,
        args.max_drop
    );
    Ok(choice)
}
