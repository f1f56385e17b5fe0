//! Savings accounting: parameters, FLOPs and bytes per layer, before and after pruning.

use std::collections::HashMap;

use rotor_engine::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::plan::PrunePlan;
use super::walk::visit_leaves;
use crate::layers::{Layer, Sequential};
use crate::module::{Module, ModuleExt};
use crate::param::join_path;

/// One layer's share of the savings (or the sum of all layers').
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsRow {
    /// The layer's dotted path (`"total"` for the sum).
    pub layer: String,
    /// What the layer is (`"Conv2d"`, `"Linear"`, `"BatchNorm2d"`, `"RotatedRelu"`,
    /// `"RotatedGelu"`, `"Custom"`; `""` for the sum).
    pub kind: String,
    /// Output channels (features) before pruning.
    pub channels_total: u64,
    /// Output channels (features) that stay.
    pub channels_kept: u64,
    /// Learnable elements before pruning.
    pub params_before: u64,
    /// Learnable elements after pruning.
    pub params_after: u64,
    /// Floating-point operations of one forward pass of one example before pruning: twice
    /// the multiply-accumulates of convolution and linear layers (other layers count 0).
    pub flops_before: u64,
    /// The same after pruning.
    pub flops_after: u64,
    /// Bytes of the parameters before pruning (`f32`).
    pub bytes_before: u64,
    /// Bytes of the parameters after pruning.
    pub bytes_after: u64,
}

impl SavingsRow {
    fn add(&mut self, other: &SavingsRow) {
        self.channels_total += other.channels_total;
        self.channels_kept += other.channels_kept;
        self.params_before += other.params_before;
        self.params_after += other.params_after;
        self.flops_before += other.flops_before;
        self.flops_after += other.flops_after;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// What pruning a network by a plan saves, per layer and in total, for one input example
/// of a given shape.
///
/// As the paper reports it: memory saving = removed parameters / all parameters,
/// computation saving = removed FLOPs / all FLOPs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Savings {
    /// The shape of one example, without the batch dimension (`[1, 28, 28]`).
    pub input_shape: Vec<usize>,
    /// One row per layer with parameters, in forward order.
    pub rows: Vec<SavingsRow>,
    /// The sum of the rows.
    pub total: SavingsRow,
}

impl Savings {
    /// Counts what `plan` saves on `net` for examples of shape `input_shape` (one forward
    /// pass of a zero example finds each layer's output size).
    ///
    /// # Errors
    /// If `input_shape` does not fit `net`.
    pub fn new(net: &Sequential, plan: &PrunePlan, input_shape: &[usize]) -> Result<Self> {
        let mut shape = vec![1];
        shape.extend_from_slice(input_shape);
        let mut positions = HashMap::new();
        output_positions(net, "", &Tensor::zeros(&shape)?, &mut positions)?;

        let mut rows = Vec::new();
        visit_leaves(net, "", &mut |path, layer| {
            if let Some(row) = layer_row(path, layer, plan, &positions) {
                rows.push(row);
            }
        });
        let mut total = SavingsRow {
            layer: "total".into(),
            ..SavingsRow::default()
        };
        for row in &rows {
            total.add(row);
        }
        Ok(Self {
            input_shape: input_shape.to_vec(),
            rows,
            total,
        })
    }

    /// Removed parameters as a percentage of all parameters.
    pub fn memory_saving_percent(&self) -> f64 {
        percent_removed(self.total.params_before, self.total.params_after)
    }

    /// Removed FLOPs as a percentage of all FLOPs.
    pub fn compute_saving_percent(&self) -> f64 {
        percent_removed(self.total.flops_before, self.total.flops_after)
    }
}

fn percent_removed(before: u64, after: u64) -> f64 {
    if before == 0 {
        0.0
    } else {
        100.0 * before.saturating_sub(after) as f64 / before as f64
    }
}

/// The row of one leaf layer, `None` for layers without parameters.
fn layer_row(
    path: &str,
    layer: &Layer,
    plan: &PrunePlan,
    positions: &HashMap<String, u64>,
) -> Option<SavingsRow> {
    let lp = plan.layer(path);
    let (kind, (out_total, out_kept)) = match (layer, lp) {
        (Layer::Conv2d(_), Some(lp)) => ("Conv2d", counts(lp.out_total, lp.kept_out.len())),
        (Layer::Linear(_), Some(lp)) => ("Linear", counts(lp.out_total, lp.kept_out.len())),
        (Layer::BatchNorm2d(_), Some(lp)) => {
            ("BatchNorm2d", counts(lp.out_total, lp.kept_out.len()))
        }
        (Layer::RotatedRelu(_), Some(lp)) => {
            ("RotatedRelu", counts(lp.out_total, lp.kept_out.len()))
        }
        (Layer::RotatedGelu(_), Some(lp)) => {
            ("RotatedGelu", counts(lp.out_total, lp.kept_out.len()))
        }
        _ => {
            let params = layer.param_count() as u64;
            if params == 0 {
                return None;
            }
            let row = SavingsRow {
                layer: path.to_string(),
                kind: "Custom".into(),
                params_before: params,
                params_after: params,
                bytes_before: 4 * params,
                bytes_after: 4 * params,
                ..SavingsRow::default()
            };
            return Some(row);
        }
    };
    let lp = lp?;
    let (in_total, in_kept) = counts(lp.in_total, lp.kept_in.len());
    let (params_before, params_after, flops_before, flops_after) = match layer {
        Layer::Conv2d(conv) => {
            let k = (conv.weight.shape()[2] * conv.weight.shape()[3]) as u64;
            let bias = u64::from(conv.bias.is_some());
            let pos = positions.get(path).copied().unwrap_or(0);
            (
                out_total * in_total * k + bias * out_total,
                out_kept * in_kept * k + bias * out_kept,
                2 * out_total * in_total * k * pos,
                2 * out_kept * in_kept * k * pos,
            )
        }
        Layer::Linear(fc) => {
            let bias = u64::from(fc.bias.is_some());
            let pos = positions.get(path).copied().unwrap_or(0);
            (
                out_total * in_total + bias * out_total,
                out_kept * in_kept + bias * out_kept,
                2 * out_total * in_total * pos,
                2 * out_kept * in_kept * pos,
            )
        }
        Layer::BatchNorm2d(_) => (2 * out_total, 2 * out_kept, 0, 0),
        _ => (out_total, out_kept, 0, 0),
    };
    Some(SavingsRow {
        layer: path.to_string(),
        kind: kind.into(),
        channels_total: out_total,
        channels_kept: out_kept,
        params_before,
        params_after,
        flops_before,
        flops_after,
        bytes_before: 4 * params_before,
        bytes_after: 4 * params_after,
    })
}

fn counts(total: usize, kept: usize) -> (u64, u64) {
    (total as u64, kept as u64)
}

/// Runs `x` through `seq` layer by layer, recording for each convolution and linear layer
/// how many output positions each of its output channels has per example (`H*W` for a
/// convolution; 1 for a linear layer on `[N, features]`).
fn output_positions(
    seq: &Sequential,
    prefix: &str,
    x: &Tensor,
    out: &mut HashMap<String, u64>,
) -> Result<Tensor> {
    let mut h = x.clone();
    for (name, layer) in seq.layers() {
        let path = join_path(prefix, name);
        h = match layer {
            Layer::Sequential(inner) => output_positions(inner, &path, &h, out)?,
            Layer::Residual(block) => {
                let body = output_positions(&block.body, &join_path(&path, "body"), &h, out)?;
                let skip = match &block.shortcut {
                    Some(s) => output_positions(s, &join_path(&path, "shortcut"), &h, out)?,
                    None => h.clone(),
                };
                body.add(&skip)?
            }
            leaf => {
                let y = leaf.forward(&h)?;
                let channels = match leaf {
                    Layer::Conv2d(conv) => Some(conv.out_channels()),
                    Layer::Linear(fc) => Some(fc.out_features()),
                    _ => None,
                };
                if let Some(c) = channels.filter(|&c| c > 0) {
                    // NOTE: the batch holds one example, so the output's size per channel
                    // is the positions per example.
                    out.insert(path, (y.numel() / c) as u64);
                }
                y
            }
        };
    }
    Ok(h)
}
