//! Timing plans: inputs per second over prepared batches.

use std::time::Instant;

use rotor_engine::{Error, Result};

use super::InferencePlan;

/// Inputs per second of `plan` over `batches`, each a slice of whole samples of the plan's
/// input shape, run once each in a workspace made beforehand (so only inference is timed).
///
/// # Errors
/// If a batch is not a whole number of samples.
pub fn images_per_second(plan: &InferencePlan, batches: &[&[f32]]) -> Result<f64> {
    let sample: usize = plan.input_shape().iter().product();
    let counts = batches
        .iter()
        .map(|b| match b.len().checked_rem(sample) {
            Some(0) => Ok(b.len() / sample),
            _ => Err(Error::InvalidArgument {
                op: "images_per_second",
                reason: format!(
                    "a batch of {} values is not a whole number of samples of {sample}",
                    b.len()
                ),
            }),
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut workspace = plan.workspace();
    let started = Instant::now();
    for (batch, &n) in batches.iter().zip(&counts) {
        std::hint::black_box(plan.run(batch, n, &mut workspace)?);
    }
    let images: usize = counts.iter().sum();
    Ok(images as f64 / started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE))
}

/// The best inputs per second of each of `plans` over `rounds` rounds in which the plans
/// take turns on the same `batches`.
///
/// Taking turns and keeping each plan's best round means a burst of other work on the
/// machine does not count against one plan only; the first round also warms caches and
/// the thread pool.
///
/// # Errors
/// As [`images_per_second`].
pub fn compare_throughput(
    plans: &[&InferencePlan],
    batches: &[&[f32]],
    rounds: usize,
) -> Result<Vec<f64>> {
    let mut best = vec![0.0f64; plans.len()];
    for _ in 0..rounds {
        for (plan, best) in plans.iter().zip(&mut best) {
            *best = best.max(images_per_second(plan, batches)?);
        }
    }
    Ok(best)
}
