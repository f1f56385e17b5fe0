//! Choosing the pruning threshold on a validation set.

use serde::{Deserialize, Serialize};

/// One threshold tried: the validation accuracy of the pruned network and what it saves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The threshold.
    pub zeta: f32,
    /// Validation accuracy in `[0, 1]` after pruning at `zeta` (before any fine-tuning).
    pub accuracy: f64,
    /// Removed FLOPs, percent.
    pub compute_saving_percent: f64,
    /// Removed parameters, percent.
    pub memory_saving_percent: f64,
}

/// The outcome of [`choose_zeta`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZetaChoice {
    /// The chosen threshold: the largest candidate within the allowed drop, or 0 when
    /// none is (which removes only gates that are exactly zero, changing nothing).
    pub zeta: f32,
    /// Validation accuracy of the unpruned network, in `[0, 1]`.
    pub baseline_accuracy: f64,
    /// The largest allowed accuracy drop, in percentage points.
    pub max_drop_points: f64,
    /// Every candidate tried, in the order given.
    pub sweep: Vec<SweepPoint>,
}

/// Candidate thresholds from gate magnitudes: the distinct values up to `max_zeta`,
/// ascending (each the largest threshold that removes exactly the channels up to it),
/// thinned to at most `limit` spread evenly by rank, the largest always included.
pub fn candidate_zetas(
    magnitudes: impl IntoIterator<Item = f32>,
    max_zeta: f32,
    limit: usize,
) -> Vec<f32> {
    let mut values: Vec<f32> = magnitudes
        .into_iter()
        .filter(|a| a.is_finite() && *a <= max_zeta)
        .collect();
    values.sort_by(f32::total_cmp);
    values.dedup();
    if values.len() <= limit {
        return values;
    }
    if limit == 0 {
        return Vec::new();
    }
    if limit == 1 {
        return values.last().copied().into_iter().collect();
    }
    let last = values.len() - 1;
    let mut picked: Vec<f32> = (0..limit)
        .map(|i| values[(i * last + (limit - 1) / 2) / (limit - 1)])
        .collect();
    picked.dedup();
    picked
}

/// Chooses the largest threshold whose validation accuracy is at most `max_drop_points`
/// percentage points below `baseline_accuracy`, searching the distinct gate magnitudes
/// up to `max_zeta` (each the largest threshold that removes exactly the channels up to
/// it) from coarse to fine.
///
/// Each round tries at most `per_round` untried values of the current window spread
/// evenly by rank (see [`candidate_zetas`]), with `evaluate` (prune at `zeta`, measure
/// validation accuracy and savings); the next window holds the values between the
/// largest passing threshold so far and the smallest failing one above it. The search
/// ends when that window has nothing left to try, so it finds the exact boundary where
/// accuracy is monotone in zeta, in about `per_round * log(n) / log(per_round)`
/// evaluations for `n` values, and otherwise the largest passing threshold it tried.
///
/// # Errors
/// The first error of `evaluate`.
pub fn choose_zeta<E>(
    magnitudes: impl IntoIterator<Item = f32>,
    max_zeta: f32,
    per_round: usize,
    baseline_accuracy: f64,
    max_drop_points: f64,
    mut evaluate: impl FnMut(f32) -> Result<SweepPoint, E>,
) -> Result<ZetaChoice, E> {
    let values = candidate_zetas(magnitudes, max_zeta, usize::MAX);
    let passes = |p: &SweepPoint| 100.0 * (baseline_accuracy - p.accuracy) <= max_drop_points;
    let mut sweep: Vec<SweepPoint> = Vec::new();
    let mut window = 0..values.len();
    loop {
        let untried = values[window.clone()]
            .iter()
            .copied()
            .filter(|&z| sweep.iter().all(|p| p.zeta != z));
        let picks = candidate_zetas(untried, max_zeta, per_round);
        if picks.is_empty() {
            break;
        }
        for zeta in picks {
            sweep.push(evaluate(zeta)?);
        }
        let chosen = sweep
            .iter()
            .filter(|p| passes(p))
            .map(|p| p.zeta)
            .reduce(f32::max);
        let above = |z: f32| chosen.is_none_or(|c| z > c);
        let failing = sweep
            .iter()
            .filter(|p| !passes(p) && above(p.zeta))
            .map(|p| p.zeta)
            .reduce(f32::min);
        let start = values.partition_point(|&z| !above(z));
        let end = failing.map_or(values.len(), |f| values.partition_point(|&z| z < f));
        window = start..end.max(start);
    }
    sweep.sort_by(|a, b| a.zeta.total_cmp(&b.zeta));
    let zeta = sweep
        .iter()
        .filter(|p| passes(p))
        .map(|p| p.zeta)
        .fold(0.0, f32::max);
    Ok(ZetaChoice {
        zeta,
        baseline_accuracy,
        max_drop_points,
        sweep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_distinct_ascending_and_thinned_by_rank() {
        let all = candidate_zetas([0.5, 0.1, 0.1, 2.0, 0.3, f32::NAN], 1.0, 10);
        assert_eq!(all, [0.1, 0.3, 0.5]);
        let values: Vec<f32> = (0..101).map(|i| i as f32 / 100.0).collect();
        let thinned = candidate_zetas(values, 1.0, 5);
        assert_eq!(thinned, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(candidate_zetas([0.2, 0.4], 1.0, 1), [0.4]);
    }

    fn point(zeta: f32, accuracy: f64) -> Result<SweepPoint, ()> {
        Ok(SweepPoint {
            zeta,
            accuracy,
            compute_saving_percent: 0.0,
            memory_saving_percent: 0.0,
        })
    }

    #[test]
    fn finds_the_exact_boundary_from_coarse_to_fine() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let mut evaluations = 0;
        let choice = choose_zeta(values.iter().copied(), 0.9, 5, 0.99, 0.1, |zeta| {
            evaluations += 1;
            point(zeta, if zeta <= 0.537 { 0.9895 } else { 0.95 })
        })
        .unwrap();
        assert_eq!(choice.zeta, 0.537);
        assert!(evaluations <= 30, "{evaluations} evaluations");
        assert_eq!(choice.sweep.len(), evaluations);
        assert!(choice.sweep.windows(2).all(|w| w[0].zeta < w[1].zeta));
        // Values above max_zeta are never tried.
        assert!(choice.sweep.iter().all(|p| p.zeta <= 0.9));
    }

    #[test]
    fn keeps_a_larger_passing_threshold_beyond_a_failing_one() {
        let accuracy = |zeta: f32| match zeta {
            z if z < 0.45 => 0.990,
            z if z < 0.55 => 0.95,
            _ => 0.9892,
        };
        let choice = choose_zeta([0.1, 0.3, 0.5, 0.6], 1.0, 10, 0.990, 0.1, |z| {
            point(z, accuracy(z))
        })
        .unwrap();
        assert_eq!(choice.zeta, 0.6);
        assert_eq!(choice.sweep.len(), 4);
    }

    #[test]
    fn nothing_passes_means_zeta_zero() {
        let choice = choose_zeta([0.2, 0.5], 1.0, 4, 0.99, 0.1, |z| point(z, 0.5)).unwrap();
        assert_eq!(choice.zeta, 0.0);
        assert_eq!(choice.sweep.len(), 2);
    }
}
