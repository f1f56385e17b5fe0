//! Setting up training after pruning: masked fine-tuning and two-step training.

use super::gate::GateKind;
use super::walk::visit_leaves_mut;
use crate::layers::Sequential;
use crate::module::Module;
use crate::param::ParamKind;

/// Freezes every gate of kind `gate` that is exactly zero (with a batch-norm gate's
/// shift), so that fine-tuning keeps pruned channels dead. [`mask`](super::mask) and
/// [`compact`](super::compact) leave dead gates at exactly zero, so this serves a masked
/// network and a compacted one alike. Gates with no zero element are left as they are.
pub fn freeze_dead(net: &mut Sequential, gate: GateKind) {
    visit_leaves_mut(net, "", &mut |_, layer| {
        let dead: Vec<bool> = match gate.gate_of(layer) {
            Some(g) => g.tensor().as_slice().iter().map(|&a| a == 0.0).collect(),
            None => return,
        };
        if !dead.iter().any(|&d| d) {
            return;
        }
        for param in gate.masked_params_mut(layer) {
            param.set_frozen(Some(dead.clone()));
        }
    });
}

/// Lets an optimizer change only the parameters whose role is in `kinds`: the others are
/// frozen whole, and those in `kinds` are unfrozen whole (any earlier mask is dropped).
///
/// The paper's two-step training is `train_only(net, &[ParamKind::Slope])`, train,
/// prune, then train with every role but [`ParamKind::Slope`].
pub fn train_only(net: &mut dyn Module, kinds: &[ParamKind]) {
    net.visit_params_mut("", &mut |_, param| {
        if kinds.contains(&param.kind()) {
            param.set_frozen(None);
        } else {
            let n = param.tensor().numel();
            param.set_frozen(Some(vec![true; n]));
        }
    });
}
