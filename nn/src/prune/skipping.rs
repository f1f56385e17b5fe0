//! Training that skips dead channels: a network whose dead gates are frozen at zero
//! (after [`mask`](super::mask) and [`freeze_dead`](super::freeze_dead), say) trains at
//! the cost of its compacted self.
//!
//! Such a channel outputs zero whatever the step does, so its filter, bias and the weights
//! that read it get a zero gradient, and its frozen gate none that matters. A training
//! forward therefore runs a *view* of the network without those channels: the layers that
//! hold the dead channels get parameters that are recorded selections
//! ([`Tensor::select_channels`]) of the full ones, so the backward pass computes only the
//! live channels' gradients and scatters them into the full parameters' places (zero
//! elsewhere; the frozen dead gates get zero too). The other layers are lent to the view
//! and given back, and a batch norm's running statistics of the live channels are written
//! back, so the network ends the step as a full forward would leave it, but for the
//! statistics of skipped channels, which stay as they were (nothing reads them).
//!
//! The outputs agree with the full network's to rounding (the products add fewer terms).

use std::mem;

use rotor_engine::{Result, Tensor};

use super::gate::GateKind;
use super::plan::{LayerPlan, PrunePlan};
use super::walk::visit_leaves;
use crate::layers::{BatchNorm2d, Conv2d, Flatten, Layer, Linear, Residual, Sequential};
use crate::module::Module;
use crate::param::{Param, join_path};

/// The training forward of `net` on its live channels, or `None` when no gate of `net` is
/// frozen at zero (or its channels cannot be traced: the full forward then reports why).
pub(crate) fn forward_train_live(net: &mut Sequential, x: &Tensor) -> Option<Result<Tensor>> {
    let gate = [GateKind::Slope, GateKind::NormScale]
        .into_iter()
        .find(|&gate| has_frozen_zero(net, gate))?;
    if !statistics_fit(net) {
        return None;
    }
    let plan = PrunePlan::frozen_zeros(net, gate).ok()?;
    let removes =
        |lp: &LayerPlan| lp.kept_out.len() < lp.out_total || lp.kept_in.len() < lp.in_total;
    if !plan.layers.iter().any(removes) {
        return None;
    }
    let mut view = lend(net, "", &plan);
    let result = view.forward_train(x);
    give_back(net, view, "", &plan);
    Some(result)
}

fn has_frozen_zero(net: &Sequential, gate: GateKind) -> bool {
    let mut found = false;
    visit_leaves(net, "", &mut |_, layer| {
        if let Some(param) = gate.gate_of(layer)
            && let Some(frozen) = param.frozen()
        {
            let values = param.tensor().as_slice();
            found |= values.iter().zip(frozen).any(|(&a, &f)| f && a == 0.0);
        }
    });
    found
}

/// Whether every batch norm has running statistics for each of its channels (a loaded
/// network might not; its full forward reports it).
fn statistics_fit(net: &Sequential) -> bool {
    let mut fit = true;
    visit_leaves(net, "", &mut |_, layer| {
        if let Layer::BatchNorm2d(bn) = layer {
            let channels = bn.channels();
            fit &= bn.stats.mean.len() == channels && bn.stats.var.len() == channels;
        }
    });
    fit
}

/// The view of `seq`: layers with a plan entry get selected parameters, and every other
/// layer is moved into the view, leaving a parameterless placeholder in its slot.
fn lend(seq: &mut Sequential, prefix: &str, plan: &PrunePlan) -> Sequential {
    let mut view = Sequential::new();
    for (name, layer) in seq.layers_mut() {
        let path = join_path(prefix, name);
        let lent = match (&mut *layer, plan.layer(&path)) {
            (Layer::Sequential(inner), _) => Layer::Sequential(lend(inner, &path, plan)),
            (Layer::Residual(block), _) => Layer::Residual(Residual {
                body: lend(&mut block.body, &join_path(&path, "body"), plan),
                shortcut: block
                    .shortcut
                    .as_mut()
                    .map(|s| lend(s, &join_path(&path, "shortcut"), plan)),
            }),
            (Layer::Conv2d(conv), Some(lp)) => Layer::Conv2d(Conv2d {
                weight: select(&conv.weight, lp, true),
                bias: conv.bias.as_ref().map(|b| select(b, lp, false)),
                stride: conv.stride,
                padding: conv.padding,
            }),
            (Layer::Linear(fc), Some(lp)) => Layer::Linear(Linear {
                weight: select(&fc.weight, lp, true),
                bias: fc.bias.as_ref().map(|b| select(b, lp, false)),
            }),
            (Layer::BatchNorm2d(bn), Some(lp)) => {
                let mut stats = bn.stats.clone();
                stats.mean = lp.kept_out.iter().map(|&c| bn.stats.mean[c]).collect();
                stats.var = lp.kept_out.iter().map(|&c| bn.stats.var[c]).collect();
                Layer::BatchNorm2d(BatchNorm2d {
                    weight: select(&bn.weight, lp, false),
                    bias: select(&bn.bias, lp, false),
                    stats,
                    momentum: bn.momentum,
                    eps: bn.eps,
                })
            }
            (Layer::RotatedRelu(act), Some(lp)) => {
                let mut act = act.clone();
                act.slope = select(&act.slope, lp, false);
                Layer::RotatedRelu(act)
            }
            (Layer::RotatedGelu(act), Some(lp)) => {
                let mut act = act.clone();
                act.slope = select(&act.slope, lp, false);
                Layer::RotatedGelu(act)
            }
            (layer, _) => mem::replace(layer, Layer::Flatten(Flatten)),
        };
        view = view.push(name.clone(), lent);
    }
    view
}

/// Gives the layers `lend` moved back to `seq`, with the live channels' batch-norm
/// statistics.
fn give_back(seq: &mut Sequential, mut view: Sequential, prefix: &str, plan: &PrunePlan) {
    let lent = view.layers_mut().iter_mut().map(|(_, layer)| layer);
    for ((name, layer), lent) in seq.layers_mut().iter_mut().zip(lent) {
        let path = join_path(prefix, name);
        match (&mut *layer, plan.layer(&path)) {
            (Layer::Sequential(inner), _) => {
                if let Layer::Sequential(view) = mem::replace(lent, Layer::Flatten(Flatten)) {
                    give_back(inner, view, &path, plan);
                }
            }
            (Layer::Residual(block), _) => {
                if let Layer::Residual(view) = mem::replace(lent, Layer::Flatten(Flatten)) {
                    give_back(&mut block.body, view.body, &join_path(&path, "body"), plan);
                    if let (Some(shortcut), Some(view)) = (block.shortcut.as_mut(), view.shortcut) {
                        give_back(shortcut, view, &join_path(&path, "shortcut"), plan);
                    }
                }
            }
            (Layer::BatchNorm2d(bn), Some(lp)) => {
                if let Layer::BatchNorm2d(view) = lent {
                    for (i, &c) in lp.kept_out.iter().enumerate() {
                        bn.stats.mean[c] = view.stats.mean[i];
                        bn.stats.var[c] = view.stats.var[i];
                    }
                }
            }
            (
                Layer::Conv2d(_) | Layer::Linear(_) | Layer::RotatedRelu(_) | Layer::RotatedGelu(_),
                Some(_),
            ) => {}
            (layer, _) => mem::swap(layer, lent),
        }
    }
}

/// The live part of a parameter, recorded so that its gradient reaches the parameter: the
/// kept outputs (and, for a weight, the kept inputs).
fn select(param: &Param, lp: &LayerPlan, weight: bool) -> Param {
    let cols = weight.then_some(lp.kept_in.as_slice());
    let selected = param
        .tensor()
        .select_channels(&lp.kept_out, cols)
        .expect("internal: a plan made for this network indexes its parameters");
    Param::derived(selected, param.kind())
}
