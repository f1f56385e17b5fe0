//! Robust accuracy over a test set: every attack at every budget, batch by batch.

use std::time::Instant;

use rand::SeedableRng;
use rotor_engine::{Error, Result, SeededRng, Tensor};
use serde::{Deserialize, Serialize};

use super::attack::{check_budget, logits_and_input_gradient};
use super::{Attack, InputDomain};
use crate::Module;
use crate::metrics::count_correct;

/// The accuracy under one attack at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustPoint {
    /// The budget, in the data's units.
    pub epsilon: f32,
    /// The fraction of images still classified correctly after the attack, in `[0, 1]`.
    pub accuracy: f64,
    /// Mean wall-clock seconds per image of the attack and of classifying its result.
    pub seconds_per_image: f64,
}

/// One attack's accuracies over the budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessCurve {
    /// The attack.
    pub attack: Attack,
    /// One point per budget, in the order asked.
    pub points: Vec<RobustPoint>,
}

/// What [`robust_accuracy`] measured on one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Robustness {
    /// Images attacked.
    pub images: usize,
    /// The accuracy on the clean images, in `[0, 1]`.
    pub clean_accuracy: f64,
    /// Mean wall-clock seconds per image of one forward and backward pass to the input
    /// (the unit of an attack's cost), measured on the clean images in the same run.
    pub seconds_per_gradient_pass: f64,
    /// One curve per attack, in the order asked.
    pub curves: Vec<RobustnessCurve>,
}

impl Robustness {
    /// What `point` cost, in forward and backward passes per image: 1 and a little for
    /// FGSM, the steps and a little for PGD (the little: the projections and classifying
    /// the result).
    pub fn cost_in_gradient_passes(&self, point: &RobustPoint) -> f64 {
        point.seconds_per_image / self.seconds_per_gradient_pass
    }
}

/// What [`robust_accuracy`] runs: every attack at every budget.
#[derive(Clone, Debug, PartialEq)]
pub struct RobustnessSettings {
    /// The attacks.
    pub attacks: Vec<Attack>,
    /// The budgets, in the data's units (pixels on `[0, 1]` for images).
    pub epsilons: Vec<f32>,
    /// The data's valid range and normalisation.
    pub domain: InputDomain,
    /// Seeds PGD's random starts.
    pub seed: u64,
}

/// Attacks `model` (evaluation mode) as `settings` say on each batch of `(images,
/// labels)` (images as the model takes them, normalised as `settings.domain` says), and
/// returns the clean and robust accuracies. `on_batch` is called after each batch with the
/// number of images done so far (for a progress bar).
///
/// PGD's random start is seeded by `settings.seed`, the batch's position and the budget,
/// so a run is reproducible and a budget's result does not depend on the other budgets
/// asked.
///
/// # Errors
/// If a budget is negative or not finite, there are no images, a batch fails to load, or
/// the model rejects a batch.
pub fn robust_accuracy(
    model: &dyn Module,
    batches: impl IntoIterator<Item = Result<(Tensor, Vec<u32>)>>,
    settings: &RobustnessSettings,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Robustness> {
    let RobustnessSettings {
        attacks,
        epsilons,
        domain,
        seed,
    } = settings;
    for &epsilon in epsilons {
        check_budget("epsilon", epsilon)?;
    }
    let mut correct = vec![vec![0usize; epsilons.len()]; attacks.len()];
    let mut seconds = vec![vec![0f64; epsilons.len()]; attacks.len()];
    let (mut images, mut clean_correct, mut pass_seconds) = (0usize, 0usize, 0f64);
    for (batch_index, batch) in batches.into_iter().enumerate() {
        let (x, labels) = batch?;
        let started = Instant::now();
        let (logits, _) = logits_and_input_gradient(model, &x, &labels)?;
        pass_seconds += started.elapsed().as_secs_f64();
        clean_correct += count_correct(&logits, &labels)?;
        for (a, attack) in attacks.iter().enumerate() {
            for (e, &epsilon) in epsilons.iter().enumerate() {
                let started = Instant::now();
                let mut rng = SeededRng::seed_from_u64(derived_seed(
                    *seed,
                    batch_index as u64,
                    u64::from(epsilon.to_bits()),
                ));
                let adversarial = attack.perturb(model, &x, &labels, epsilon, domain, &mut rng)?;
                correct[a][e] += count_correct(&model.forward(&adversarial)?, &labels)?;
                seconds[a][e] += started.elapsed().as_secs_f64();
            }
        }
        images += labels.len();
        on_batch(images);
    }
    if images == 0 {
        return Err(Error::InvalidArgument {
            op: "robust_accuracy",
            reason: "no images to attack".into(),
        });
    }
    let per_image = |n: usize| n as f64 / images as f64;
    let curves = attacks
        .iter()
        .zip(correct.iter().zip(&seconds))
        .map(|(&attack, (correct, seconds))| RobustnessCurve {
            attack,
            points: epsilons
                .iter()
                .zip(correct.iter().zip(seconds))
                .map(|(&epsilon, (&c, &s))| RobustPoint {
                    epsilon,
                    accuracy: per_image(c),
                    seconds_per_image: s / images as f64,
                })
                .collect(),
        })
        .collect();
    Ok(Robustness {
        images,
        clean_accuracy: per_image(clean_correct),
        seconds_per_gradient_pass: pass_seconds / images as f64,
        curves,
    })
}

/// A seed for one batch and budget: SplitMix64's finaliser over the parts, so nearby
/// inputs give unrelated streams.
fn derived_seed(seed: u64, batch: u64, epsilon_bits: u64) -> u64 {
    [batch, epsilon_bits].iter().fold(seed, |state, &part| {
        let mut z = (state ^ part).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}
