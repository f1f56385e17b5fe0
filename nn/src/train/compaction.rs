//! Compaction while training: channels whose gates have collapsed are removed between
//! epochs, so that the following epochs run, and pay for, the smaller network.

use std::mem;

use super::{Callback, EpochSummary, TrainError};
use crate::module::Module;
use crate::optim::Optimizer;
use crate::prune::{GateKind, PrunePlan, Savings, compact_tracked};

/// One compaction [`CompactEvery`] made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compaction {
    /// The epoch after which it happened, from 0.
    pub epoch: usize,
    /// Forward FLOPs per input before it.
    pub flops_before: u64,
    /// Forward FLOPs per input after it: what each input costs from now on.
    pub flops_after: u64,
    /// Parameters before it.
    pub params_before: u64,
    /// Parameters after it.
    pub params_after: u64,
}

/// A [`Callback`] that, after every `every`-th epoch, removes the channels whose gates
/// are at or under `zeta` ([`PrunePlan`]), replaces the model's network by the compacted
/// one, and moves the optimizer's state (momentum, Adam's moments) to the surviving
/// parameters ([`Optimizer::carry_state`]), so training goes on where it was with less to
/// compute.
///
/// Frozen masks are not carried into the compacted network; the model must expose its
/// network ([`Module::sequential_mut`]).
pub struct CompactEvery {
    every: usize,
    gate: GateKind,
    zeta: f32,
    input_shape: Vec<usize>,
    on_compact: Box<dyn FnMut(&Compaction)>,
    compactions: Vec<Compaction>,
}

impl CompactEvery {
    /// Compacts after every `every`-th epoch (`every` 0 never does) at threshold `zeta` on
    /// gates of kind `gate`, counting FLOPs for inputs of shape `input_shape` (without the
    /// batch dimension).
    pub fn new(every: usize, gate: GateKind, zeta: f32, input_shape: &[usize]) -> Self {
        Self {
            every,
            gate,
            zeta,
            input_shape: input_shape.to_vec(),
            on_compact: Box::new(|_| {}),
            compactions: Vec::new(),
        }
    }

    /// Calls `f` after each compaction that removed something (builder style), e.g. to
    /// print the FLOPs from now on.
    pub fn on_compact(mut self, f: impl FnMut(&Compaction) + 'static) -> Self {
        self.on_compact = Box::new(f);
        self
    }

    /// Every compaction that removed something, in order.
    pub fn compactions(&self) -> &[Compaction] {
        &self.compactions
    }
}

impl Callback for CompactEvery {
    fn after_epoch(
        &mut self,
        summary: &EpochSummary,
        model: &mut dyn Module,
        optimizer: &mut dyn Optimizer,
    ) -> Result<(), TrainError> {
        // NOTE: nothing is a multiple of 0, so `every` 0 never compacts.
        if !(summary.epoch + 1).is_multiple_of(self.every) {
            return Ok(());
        }
        let Some(net) = model.sequential_mut() else {
            return Err(TrainError::Callback(
                "compaction while training needs a model that exposes its network (Module::sequential_mut)".into(),
            ));
        };
        let plan = PrunePlan::new(net, self.gate, self.zeta)?;
        let savings = Savings::new(net, &plan, &self.input_shape)?;
        let total = &savings.total;
        if total.params_after == total.params_before && total.flops_after == total.flops_before {
            return Ok(());
        }
        let (small, moves) = compact_tracked(mem::take(net), &plan)?;
        *net = small;
        optimizer.carry_state(&moves);
        let compaction = Compaction {
            epoch: summary.epoch,
            flops_before: total.flops_before,
            flops_after: total.flops_after,
            params_before: total.params_before,
            params_after: total.params_after,
        };
        (self.on_compact)(&compaction);
        self.compactions.push(compaction);
        Ok(())
    }
}
