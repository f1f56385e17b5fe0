//! Pruning in one call: plan at a threshold (given, or chosen on validation data), count
//! the savings, and compact a copy of the network.

use rotor_engine::Result;

use super::compact;
use super::gate::{GateKind, gate_magnitudes};
use super::plan::PrunePlan;
use super::savings::Savings;
use super::zeta::{SweepPoint, ZetaChoice, choose_zeta};
use crate::layers::Sequential;

/// A pruned network and how it came about.
#[derive(Clone, Debug)]
pub struct Pruned {
    /// The compacted network: the dead channels physically removed.
    pub network: Sequential,
    /// What was kept of every layer.
    pub plan: PrunePlan,
    /// Parameters, FLOPs and bytes before and after, per layer.
    pub savings: Savings,
    /// The search that chose the threshold (`None` when it was given).
    pub choice: Option<ZetaChoice>,
}

/// The search for the pruning threshold on validation data (see [`choose_zeta`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZetaSearch {
    /// The largest threshold tried.
    pub max_zeta: f32,
    /// Thresholds tried per round of the coarse-to-fine search.
    pub per_round: usize,
    /// The largest validation-accuracy drop allowed, in percentage points.
    pub max_drop_points: f64,
}

impl Default for ZetaSearch {
    /// Thresholds up to 1, 8 per round, at most 0.1 points of accuracy lost.
    fn default() -> Self {
        Self {
            max_zeta: 1.0,
            per_round: 8,
            max_drop_points: 0.1,
        }
    }
}

/// Prunes a copy of `net` at threshold `zeta` on gates of kind `gate`, counting savings
/// for inputs of shape `input_shape` (without the batch dimension). `net` is unchanged.
///
/// ```
/// use rotor_engine::{SeedableRng, SeededRng, Tensor};
/// use rotor_nn::prune::{GateKind, prune_at};
/// use rotor_nn::{Conv2d, Module, RotatedRelu, Sequential};
///
/// let mut rng = SeededRng::seed_from_u64(0);
/// let mut act = RotatedRelu::new(4, &mut rng)?;
/// act.slope.update(|a| a[1] = 0.01);
/// let net = Sequential::new()
///     .push("conv1", Conv2d::new(1, 4, 3, 1, 1, &mut rng)?)
///     .push("act1", act)
///     .push("conv2", Conv2d::new(4, 2, 3, 1, 1, &mut rng)?);
/// let pruned = prune_at(&net, GateKind::Slope, 0.1, &[1, 5, 5])?;
/// assert_eq!(pruned.plan.layer("conv1").unwrap().kept_out, [0, 2, 3]);
/// assert!(pruned.savings.compute_saving_percent() > 0.0);
/// let x = Tensor::ones(&[1, 1, 5, 5])?;
/// assert_eq!(pruned.network.forward(&x)?.shape(), net.forward(&x)?.shape());
/// # Ok::<(), rotor_engine::Error>(())
/// ```
///
/// # Errors
/// As [`PrunePlan::new`], [`Savings::new`] and [`compact`].
pub fn prune_at(
    net: &Sequential,
    gate: GateKind,
    zeta: f32,
    input_shape: &[usize],
) -> Result<Pruned> {
    let plan = PrunePlan::new(net, gate, zeta)?;
    let savings = Savings::new(net, &plan, input_shape)?;
    let network = compact(net.clone(), &plan)?;
    Ok(Pruned {
        network,
        plan,
        savings,
        choice: None,
    })
}

/// Chooses the largest threshold that costs at most `search.max_drop_points` of
/// validation accuracy, then prunes a copy of `net` at it.
///
/// `accuracy` measures a network on the validation data (in `[0, 1]`); it is called on
/// `net` itself for the baseline and on the compacted network of each threshold tried.
/// `on_point` sees each threshold as it is tried (for progress display).
///
/// # Errors
/// The first error of `accuracy`, or as [`prune_at`].
pub fn prune_on_validation<E: From<rotor_engine::Error>>(
    net: &Sequential,
    gate: GateKind,
    search: &ZetaSearch,
    input_shape: &[usize],
    mut accuracy: impl FnMut(&Sequential) -> Result<f64, E>,
    mut on_point: impl FnMut(&SweepPoint),
) -> Result<Pruned, E> {
    let baseline = accuracy(net)?;
    let magnitudes = gate_magnitudes(net, gate).into_iter().flat_map(|(_, m)| m);
    let choice = choose_zeta(
        magnitudes,
        search.max_zeta,
        search.per_round,
        baseline,
        search.max_drop_points,
        |zeta| {
            let candidate = prune_at(net, gate, zeta, input_shape)?;
            let point = SweepPoint {
                zeta,
                accuracy: accuracy(&candidate.network)?,
                compute_saving_percent: candidate.savings.compute_saving_percent(),
                memory_saving_percent: candidate.savings.memory_saving_percent(),
            };
            on_point(&point);
            Ok::<_, E>(point)
        },
    )?;
    let pruned = prune_at(net, gate, choice.zeta, input_shape)?;
    Ok(Pruned {
        choice: Some(choice),
        ..pruned
    })
}
