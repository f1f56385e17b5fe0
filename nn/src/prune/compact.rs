//! Applying a plan: masking dead gates in place, and compaction into a smaller network.

use std::mem;

use rotor_engine::{Error, Result, Tensor};

use super::gate::GateKind;
use super::plan::{LayerPlan, PrunePlan};
use super::walk::visit_leaves_mut;
use crate::layers::{BatchNorm2d, Conv2d, Flatten, Layer, Linear, Residual, Sequential};
use crate::param::{Param, join_path};

/// Sets every dead gate of `plan` to exactly zero in place (for a batch-norm gate, its
/// shift too, so that the channel outputs zero): the *masked* model, whose shapes are
/// unchanged and which computes what [`compact`] makes smaller.
pub fn mask(net: &mut Sequential, plan: &PrunePlan) {
    visit_leaves_mut(net, "", &mut |path, layer| {
        let Some(lp) = plan.layer(path) else { return };
        for param in plan.gate.masked_params_mut(layer) {
            param.update(|values| {
                for &i in &lp.dead {
                    if let Some(v) = values.get_mut(i) {
                        *v = 0.0;
                    }
                }
            });
        }
    });
}

/// A dense network without the channels `plan` removes: each pruned layer gets new,
/// smaller parameters gathered from the surviving channels (frozen masks are not carried
/// over); dead gates that stay are zeroed as by [`mask`]. Its outputs equal the masked
/// model's.
///
/// The network is consumed because `Custom` layers move into the result unchanged.
///
/// # Errors
/// If `plan` was not made for `net` (a layer's sizes differ from the plan's).
pub fn compact(net: Sequential, plan: &PrunePlan) -> Result<Sequential> {
    compact_sequential(net, "", plan)
}

fn compact_sequential(mut seq: Sequential, prefix: &str, plan: &PrunePlan) -> Result<Sequential> {
    let mut out = Sequential::new();
    // NOTE: `Sequential` hands out its layers by reference only, so each is moved out of
    // the consumed sequence and a parameterless `Flatten` left in its slot.
    for (name, layer) in seq.layers_mut() {
        let path = join_path(prefix, name);
        let layer = mem::replace(layer, Layer::Flatten(Flatten));
        out = out.push(name.clone(), compact_layer(layer, &path, plan)?);
    }
    Ok(out)
}

fn compact_layer(layer: Layer, path: &str, plan: &PrunePlan) -> Result<Layer> {
    let lp = plan.layer(path);
    Ok(match (layer, lp) {
        (Layer::Sequential(inner), _) => Layer::Sequential(compact_sequential(inner, path, plan)?),
        (Layer::Residual(block), _) => {
            let body = compact_sequential(block.body, &join_path(path, "body"), plan)?;
            let shortcut = match block.shortcut {
                Some(s) => Some(compact_sequential(s, &join_path(path, "shortcut"), plan)?),
                None => None,
            };
            Layer::Residual(Residual { body, shortcut })
        }
        (Layer::Conv2d(conv), Some(lp)) => Layer::Conv2d(compact_conv(&conv, lp)?),
        (Layer::Linear(fc), Some(lp)) => Layer::Linear(compact_linear(&fc, lp)?),
        (Layer::BatchNorm2d(bn), Some(lp)) => {
            Layer::BatchNorm2d(compact_batch_norm(&bn, lp, plan.gate)?)
        }
        (Layer::RotatedRelu(mut act), Some(lp)) => {
            act.slope = gather_gate(&act.slope, lp, plan.gate == GateKind::Slope)?;
            Layer::RotatedRelu(act)
        }
        (Layer::RotatedGelu(mut act), Some(lp)) => {
            act.slope = gather_gate(&act.slope, lp, plan.gate == GateKind::Slope)?;
            Layer::RotatedGelu(act)
        }
        (
            Layer::Conv2d(_)
            | Layer::Linear(_)
            | Layer::BatchNorm2d(_)
            | Layer::RotatedRelu(_)
            | Layer::RotatedGelu(_),
            None,
        ) => return Err(mismatch(path, "the plan has no entry for this layer")),
        (other, _) => other,
    })
}

fn compact_conv(conv: &Conv2d, lp: &LayerPlan) -> Result<Conv2d> {
    let &[out_total, in_total, kh, kw] = conv.weight.shape() else {
        return Err(mismatch(&lp.path, "the weight is not [out, in, kh, kw]"));
    };
    check_sizes(lp, out_total, in_total)?;
    let inner = kh * kw;
    let weight = gather_rows_cols(&conv.weight, lp, inner)?;
    let bias = conv.bias.as_ref().map(|b| gather(b, lp)).transpose()?;
    Ok(Conv2d {
        weight,
        bias,
        stride: conv.stride,
        padding: conv.padding,
    })
}

fn compact_linear(fc: &Linear, lp: &LayerPlan) -> Result<Linear> {
    check_sizes(lp, fc.out_features(), fc.in_features())?;
    let weight = gather_rows_cols(&fc.weight, lp, 1)?;
    let bias = fc.bias.as_ref().map(|b| gather(b, lp)).transpose()?;
    Ok(Linear { weight, bias })
}

fn compact_batch_norm(bn: &BatchNorm2d, lp: &LayerPlan, gate: GateKind) -> Result<BatchNorm2d> {
    let is_gate = gate == GateKind::NormScale;
    let channels = bn.channels();
    if bn.stats.mean.len() != channels || bn.stats.var.len() != channels {
        return Err(mismatch(
            &lp.path,
            &format!("running statistics of a length other than its {channels} channels"),
        ));
    }
    let weight = gather_gate(&bn.weight, lp, is_gate)?;
    let bias = gather_gate(&bn.bias, lp, is_gate)?;
    let mut stats = bn.stats.clone();
    stats.mean = lp.kept_out.iter().map(|&c| bn.stats.mean[c]).collect();
    stats.var = lp.kept_out.iter().map(|&c| bn.stats.var[c]).collect();
    Ok(BatchNorm2d {
        weight,
        bias,
        stats,
        momentum: bn.momentum,
        eps: bn.eps,
    })
}

/// A per-channel parameter's kept channels, with its dead channels zeroed when it is
/// (part of) a gate.
fn gather_gate(param: &Param, lp: &LayerPlan, is_gate: bool) -> Result<Param> {
    let width = param.shape()[0];
    check_sizes(lp, width, width)?;
    let values = param.tensor().as_slice();
    let kept = lp.kept_out.iter().map(|&c| {
        if is_gate && lp.dead.binary_search(&c).is_ok() {
            0.0
        } else {
            values[c]
        }
    });
    let kept: Vec<f32> = kept.collect();
    let n = kept.len();
    Ok(Param::new(&Tensor::from_vec(kept, &[n])?, param.kind()))
}

/// The elements of a bias at the plan's kept outputs.
fn gather(param: &Param, lp: &LayerPlan) -> Result<Param> {
    let values = param.tensor().as_slice();
    if values.len() != lp.out_total {
        return Err(mismatch(
            &lp.path,
            &format!(
                "a bias of {} values for {} outputs",
                values.len(),
                lp.out_total
            ),
        ));
    }
    let kept = &lp.kept_out;
    let kept_values: Vec<f32> = kept.iter().map(|&c| values[c]).collect();
    Ok(Param::new(
        &Tensor::from_vec(kept_values, &[kept.len()])?,
        param.kind(),
    ))
}

/// The kept rows (outputs) and columns (inputs) of an `[out, in, inner...]` weight, each
/// `(row, column)` entry being `inner` consecutive values.
fn gather_rows_cols(param: &Param, lp: &LayerPlan, inner: usize) -> Result<Param> {
    let values = param.tensor().as_slice();
    let row_len = lp.in_total * inner;
    let mut out = Vec::with_capacity(lp.kept_out.len() * lp.kept_in.len() * inner);
    for &o in &lp.kept_out {
        let row = &values[o * row_len..(o + 1) * row_len];
        for &i in &lp.kept_in {
            out.extend_from_slice(&row[i * inner..(i + 1) * inner]);
        }
    }
    let mut shape = param.shape().to_vec();
    shape[0] = lp.kept_out.len();
    shape[1] = lp.kept_in.len();
    Ok(Param::new(&Tensor::from_vec(out, &shape)?, param.kind()))
}

/// Checks that a layer has the sizes its plan was made for (so every index is in range).
fn check_sizes(lp: &LayerPlan, out_total: usize, in_total: usize) -> Result<()> {
    let in_range = |kept: &[usize], total| kept.iter().all(|&i| i < total);
    if lp.out_total != out_total
        || lp.in_total != in_total
        || !in_range(&lp.kept_out, out_total)
        || !in_range(&lp.kept_in, in_total)
    {
        return Err(mismatch(
            &lp.path,
            &format!(
                "the layer has {out_total} outputs and {in_total} inputs, the plan {} and {}",
                lp.out_total, lp.in_total
            ),
        ));
    }
    Ok(())
}

fn mismatch(path: &str, reason: &str) -> Error {
    Error::InvalidArgument {
        op: "compact",
        reason: format!("`{path}`: {reason}"),
    }
}
