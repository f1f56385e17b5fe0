//! Which per-channel scale decides that a channel is dead.

use serde::{Deserialize, Serialize};

use super::walk::visit_leaves;
use crate::layers::{Layer, Sequential};
use crate::param::Param;

/// The per-channel scale whose magnitude decides whether a channel is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateKind {
    /// The slopes of rotated activations ([`RotatedRelu`](crate::RotatedRelu),
    /// [`RotatedGelu`](crate::RotatedGelu)): implicit sparsification.
    Slope,
    /// The scales `gamma` of batch norms: Network Slimming (Liu et al. 2017).
    NormScale,
}

impl GateKind {
    /// The gate parameter of `layer` if it is a gate of this kind.
    pub(crate) fn gate_of(self, layer: &Layer) -> Option<&Param> {
        match (self, layer) {
            (GateKind::Slope, Layer::RotatedRelu(l)) => Some(&l.slope),
            (GateKind::Slope, Layer::RotatedGelu(l)) => Some(&l.slope),
            (GateKind::NormScale, Layer::BatchNorm2d(l)) => Some(&l.weight),
            _ => None,
        }
    }

    /// The parameters masking a dead gate of this kind in `layer` sets to zero: the slope,
    /// or a batch norm's scale and shift (so that the channel outputs zero, not `beta`).
    pub(crate) fn masked_params_mut(self, layer: &mut Layer) -> Vec<&mut Param> {
        match (self, layer) {
            (GateKind::Slope, Layer::RotatedRelu(l)) => vec![&mut l.slope],
            (GateKind::Slope, Layer::RotatedGelu(l)) => vec![&mut l.slope],
            (GateKind::NormScale, Layer::BatchNorm2d(l)) => vec![&mut l.weight, &mut l.bias],
            _ => Vec::new(),
        }
    }
}

/// Every gate of kind `kind` below `net` with its path and its magnitudes `|a_c|`, in
/// forward order (what a slope histogram or a list of candidate thresholds is made of).
pub fn gate_magnitudes(net: &Sequential, kind: GateKind) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    visit_leaves(net, "", &mut |path, layer| {
        if let Some(gate) = kind.gate_of(layer) {
            let magnitudes = gate.tensor().as_slice().iter().map(|a| a.abs()).collect();
            out.push((path.to_string(), magnitudes));
        }
    });
    out
}
