//! Accuracy under adversarial attack (`--attack fgsm,pgd`) of the networks the example
//! trains and prunes.

use clap::ValueEnum;
use rotor::datasets::{BatchOptions, ImageDataset};
use rotor::nn::Module;
use rotor::nn::adversarial::{Attack, InputDomain, Pgd, Robustness, RobustnessSettings};
use rotor::nn::report::RobustnessReport;

use crate::Args;
use crate::training::{AnyResult, progress};

/// Images per attacked batch.
const ATTACK_BATCH: usize = 250;

/// An attack named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttackKind {
    /// The fast gradient sign method.
    Fgsm,
    /// Projected gradient descent (`--pgd-steps`, `--pgd-step`, `--pgd-no-random-start`).
    Pgd,
}

/// The attacks `args` ask for, in their order.
fn attacks(args: &Args) -> Vec<Attack> {
    args.attack
        .iter()
        .map(|kind| match kind {
            AttackKind::Fgsm => Attack::Fgsm,
            AttackKind::Pgd => Attack::Pgd(Pgd {
                steps: args.pgd_steps,
                relative_step: args.pgd_step,
                random_start: !args.pgd_no_random_start,
            }),
        })
        .collect()
}

/// The dense network's robustness and, when a method pruned, the pruned one's; `None`
/// without `--attack`.
pub fn measure_pair(
    dense: &dyn Module,
    pruned: Option<&dyn Module>,
    test: &ImageDataset,
    args: &Args,
    method: &str,
) -> AnyResult<Option<RobustnessReport>> {
    if args.attack.is_empty() {
        return Ok(None);
    }
    let dense = measure(dense, test, args, &format!("{method}, dense"))?;
    let pruned = match pruned {
        Some(net) => Some(measure(net, test, args, &format!("{method}, pruned"))?),
        None => None,
    };
    Ok(Some(RobustnessReport { dense, pruned }))
}

/// Attacks `net` on the test images (the first `--attack-limit`) and prints a summary.
fn measure(
    net: &dyn Module,
    test: &ImageDataset,
    args: &Args,
    label: &str,
) -> AnyResult<Robustness> {
    let options = BatchOptions {
        batch_size: ATTACK_BATCH,
        ..BatchOptions::default()
    };
    let limited;
    let test = match args.attack_limit.filter(|&n| n < test.len()) {
        Some(n) => {
            limited = test.subset(&(0..n).collect::<Vec<_>>());
            &limited
        }
        None => test,
    };
    let n = options.normalization;
    let settings = RobustnessSettings {
        attacks: attacks(args),
        epsilons: args.epsilons.clone(),
        domain: InputDomain::new(0.0, 1.0)?.normalized(n.mean, n.std)?,
        seed: args.seed,
    };
    let bar = progress(test.len(), format!("{label}: attacking"))?;
    let batches = test.batches(&options, 0).map(|batch| batch.into_tensor());
    let robustness =
        rotor::nn::adversarial::robust_accuracy(net, batches, &settings, &mut |done| {
            bar.set_position(done as u64)
        })?;
    bar.finish_and_clear();
    let curves: Vec<String> = robustness
        .curves
        .iter()
        .map(|curve| {
            let points: Vec<String> = curve
                .points
                .iter()
                .map(|p| {
                    format!(
                        "{:.2}% at {} ({:.1} passes)",
                        100.0 * p.accuracy,
                        p.epsilon,
                        robustness.cost_in_gradient_passes(p)
                    )
                })
                .collect();
            format!("{} {}", curve.attack.name(), points.join(", "))
        })
        .collect();
    println!(
        "{label}: clean {:.2}% on {} test images; {} (one forward and backward pass {:.3} ms per image)",
        100.0 * robustness.clean_accuracy,
        robustness.images,
        curves.join("; "),
        1e3 * robustness.seconds_per_gradient_pass
    );
    Ok(robustness)
}
