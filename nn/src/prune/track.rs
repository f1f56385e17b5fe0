//! Compaction that says where each kept element came from, so that an optimizer's state
//! follows the parameters into the smaller network.

use std::collections::HashMap;

use rotor_engine::{Error, Result, TensorId};

use super::compact::compact;
use super::plan::PrunePlan;
use crate::layers::Sequential;
use crate::module::Module;
use crate::optim::StateMove;

/// Elements a parameter may have for its indices to be tracked: every index up to it is
/// exact in an `f32`.
const MAX_TRACKED: usize = 1 << 24;

/// [`compact`], and for each parameter of the result the [`StateMove`] from the parameter
/// it replaces, for [`Optimizer::carry_state`](crate::optim::Optimizer::carry_state): a
/// network compacted while it trains keeps its momentum and moments.
///
/// # Errors
/// As [`compact`]; also if a parameter has 2^24 elements or more.
pub fn compact_tracked(net: Sequential, plan: &PrunePlan) -> Result<(Sequential, Vec<StateMove>)> {
    // NOTE: compaction only gathers elements (and zeroes dead gates), so compacting a copy
    // whose every element holds its own index plus one tells where each element of the
    // result came from, 0 marking a zeroed one.
    let mut indices = net.clone();
    let mut too_large = None;
    indices.visit_params_mut("", &mut |path, param| {
        let n = param.tensor().numel();
        if n >= MAX_TRACKED {
            too_large = Some(format!("{path} has {n} elements"));
        }
        param.update(|values| {
            for (i, v) in values.iter_mut().enumerate() {
                *v = (i + 1) as f32;
            }
        });
    });
    if let Some(reason) = too_large {
        return Err(Error::InvalidArgument {
            op: "compact_tracked",
            reason: format!("{reason}, more than can be tracked ({MAX_TRACKED})"),
        });
    }
    let mut replaced: HashMap<String, TensorId> = HashMap::new();
    net.visit_params("", &mut |path, param| {
        replaced.insert(path.to_string(), param.tensor().id());
    });
    let small = compact(net, plan)?;
    let mut kept: HashMap<String, Vec<Option<usize>>> = HashMap::new();
    compact(indices, plan)?.visit_params("", &mut |path, param| {
        let sources = param.tensor().as_slice().iter();
        let sources = sources.map(|&v| (v > 0.0).then(|| v as usize - 1));
        kept.insert(path.to_string(), sources.collect());
    });
    let mut moves = Vec::new();
    small.visit_params("", &mut |path, param| {
        if let (Some(&from), Some(kept)) = (replaced.get(path), kept.remove(path)) {
            moves.push(StateMove {
                from,
                to: param.tensor().id(),
                kept,
            });
        }
    });
    Ok((small, moves))
}
