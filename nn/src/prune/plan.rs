//! The dead-channel analysis: which channels of each layer survive pruning.

use std::collections::HashMap;

use rotor_engine::{Error, Result};
use serde::{Deserialize, Serialize};

use super::gate::GateKind;
use super::trace::{Dead, Effect, Trace};
use super::walk::visit_leaves;
use crate::layers::{Layer, Sequential, check_per_channel};

/// The kinds of layer a plan changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanLayerKind {
    /// [`Conv2d`](crate::Conv2d): output filters and input channels.
    Conv2d,
    /// [`Linear`](crate::Linear): output and input features.
    Linear,
    /// [`BatchNorm2d`](crate::BatchNorm2d): channels.
    BatchNorm2d,
    /// [`RotatedRelu`](crate::RotatedRelu): channels.
    RotatedRelu,
    /// [`RotatedGelu`](crate::RotatedGelu): channels.
    RotatedGelu,
}

/// What pruning keeps of one layer.
///
/// For a convolution or linear layer `kept_out` indexes its output channels (features)
/// and `kept_in` its input channels (features); for a per-channel layer both are its
/// channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// The layer's dotted path (`"block.body.conv1"`).
    pub path: String,
    /// What it is.
    pub kind: PlanLayerKind,
    /// Output channels before pruning.
    pub out_total: usize,
    /// The output channels that stay, ascending.
    pub kept_out: Vec<usize>,
    /// Input channels before pruning.
    pub in_total: usize,
    /// The input channels that stay, ascending.
    pub kept_in: Vec<usize>,
    /// For a gate, its dead elements (magnitude at most `zeta`), ascending: masking sets
    /// them to zero, including those a residual addition forces to stay.
    pub dead: Vec<usize>,
}

/// Per layer, the channels that survive pruning at threshold `zeta` (see the
/// [module documentation](super)).
///
/// Rules: a channel whose gate is dead outputs zero once masked, so the filter (weights,
/// bias, batch-norm entries) that produces it and the input slice of every layer that
/// reads it can go. Activations, pools and dropout pass zero channels through; a batch
/// norm that is not a gate turns zero into a constant, so channels read after one stay.
/// Through a flatten, channel `c` owns the `H*W` consecutive inputs `c*H*W..(c+1)*H*W`
/// of the next linear layer (`H*W` = its input features / channels). Across a residual
/// addition a channel goes only where it is zero in every branch that writes it and at
/// every layer that reads it. Channels that reach the model's input or output, or a
/// `Custom` layer, stay, unless the custom layer declares
/// [`ChannelFlow::PerChannel`](crate::layers::ChannelFlow::PerChannel): then they pass
/// through it like through an activation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrunePlan {
    /// The gates the plan was made for.
    pub gate: GateKind,
    /// The threshold: a gate of magnitude at most `zeta` is dead.
    pub zeta: f32,
    /// Every convolution, linear, batch-norm and rotated-activation layer, in forward
    /// order.
    pub layers: Vec<LayerPlan>,
}

impl PrunePlan {
    /// Traces `net` and decides what pruning gates of kind `gate` at `zeta` keeps.
    ///
    /// # Errors
    /// If the layers' channel counts do not fit together: a per-channel layer whose
    /// width is not its stream's, branches of a residual block with different widths, or
    /// a linear layer after a flatten whose input features are not a multiple of the
    /// flattened channels; or a custom layer that declares its channels flow through
    /// unchanged but holds parameters.
    pub fn new(net: &Sequential, gate: GateKind, zeta: f32) -> Result<Self> {
        Self::traced(net, gate, Dead::AtMost(zeta), zeta)
    }

    /// The plan of the channels training can skip: those whose gates of kind `gate` are
    /// exactly zero and frozen (see [`freeze_dead`](super::freeze_dead)), as a plan at
    /// `zeta = 0` would find them were every zero gate frozen.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn frozen_zeros(net: &Sequential, gate: GateKind) -> Result<Self> {
        Self::traced(net, gate, Dead::FrozenZero, 0.0)
    }

    fn traced(net: &Sequential, gate: GateKind, dead: Dead, zeta: f32) -> Result<Self> {
        let mut custom_error = None;
        super::walk::visit_leaves(net, "", &mut |path, layer| {
            if let Layer::Custom(custom) = layer
                && custom_error.is_none()
            {
                custom_error = check_per_channel(path, custom.as_ref()).err();
            }
        });
        if let Some(e) = custom_error {
            return Err(e);
        }
        let trace = Trace::new(net, gate, dead);
        let spaces = Spaces::new(&trace)?;
        let mut plans = HashMap::new();
        for p in &trace.producers {
            let kept_in = spaces.kept(p.input, p.in_width, spaces.factor[p.input]);
            let kept_out = spaces.kept(p.output, p.out_width, 1);
            plans.insert(
                p.path.clone(),
                LayerPlan {
                    path: p.path.clone(),
                    kind: p.kind,
                    out_total: p.out_width,
                    kept_out,
                    in_total: p.in_width,
                    kept_in,
                    dead: Vec::new(),
                },
            );
        }
        for (s, segment) in trace.segments.iter().enumerate() {
            for m in &segment.members {
                let Some((kind, width)) = m.scaled else {
                    continue;
                };
                let unit = if m.after_flatten { spaces.factor[s] } else { 1 };
                let kept = spaces.kept(s, width, unit);
                let dead = match &m.effect {
                    Effect::Gate(dead) => (0..dead.len()).filter(|&i| dead[i]).collect(),
                    _ => Vec::new(),
                };
                plans.insert(
                    m.path.clone(),
                    LayerPlan {
                        path: m.path.clone(),
                        kind,
                        out_total: width,
                        kept_out: kept.clone(),
                        in_total: width,
                        kept_in: kept,
                        dead,
                    },
                );
            }
        }
        let mut layers = Vec::with_capacity(plans.len());
        visit_leaves(net, "", &mut |path, _| {
            if let Some(plan) = plans.remove(path) {
                layers.push(plan);
            }
        });
        Ok(Self { gate, zeta, layers })
    }

    /// The plan of the layer at `path`, if it is a layer a plan changes.
    pub fn layer(&self, path: &str) -> Option<&LayerPlan> {
        self.layers.iter().find(|l| l.path == path)
    }

    /// Whether pruning removes any channel at all.
    pub fn removes_anything(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.kept_out.len() < l.out_total || l.kept_in.len() < l.in_total)
    }
}

/// The channel index spaces of a trace and the channels removed from each.
struct Spaces {
    /// The space of each segment (a representative segment's index).
    space: Vec<usize>,
    /// Per segment, the features per channel of the members after a flatten and of its
    /// consumer (1 without a flatten).
    factor: Vec<usize>,
    /// Per space (by representative), the channels removed (`None`: none).
    removed: Vec<Option<Vec<bool>>>,
}

impl Spaces {
    fn new(trace: &Trace) -> Result<Self> {
        let n = trace.segments.len();
        let mut parent: Vec<usize> = (0..n).collect();
        for (s, segment) in trace.segments.iter().enumerate() {
            for &i in &segment.inputs {
                let (a, b) = (root(&mut parent, s), root(&mut parent, i));
                parent[a] = b;
            }
        }
        let space: Vec<usize> = (0..n).map(|s| root(&mut parent, s)).collect();

        let mut width: Vec<Option<usize>> = vec![None; n];
        let mut pinned = vec![false; n];
        for (s, segment) in trace.segments.iter().enumerate() {
            pinned[space[s]] |= segment.pinned;
            if let Some(w) = segment.producer_width {
                match width[space[s]] {
                    Some(w0) if w0 != w => {
                        return Err(invalid(format!(
                            "branches adding into one stream write {w0} and {w} channels"
                        )));
                    }
                    _ => width[space[s]] = Some(w),
                }
            }
        }

        let mut factor = vec![1; n];
        for (s, segment) in trace.segments.iter().enumerate() {
            let Some(c) = width[space[s]] else { continue };
            let flattened = segment
                .members
                .iter()
                .any(|m| matches!(m.effect, Effect::Flatten));
            match (&segment.consumers[..], segment.flows_out) {
                ([fc], false) if flattened && fc.kind == super::PlanLayerKind::Linear => {
                    if c == 0 || fc.in_width == 0 || fc.in_width % c != 0 {
                        return Err(invalid(format!(
                            "`{}` has {} input features, not a multiple of the {c} channels \
                             flattened into it",
                            fc.path, fc.in_width
                        )));
                    }
                    factor[s] = fc.in_width / c;
                }
                _ if flattened => pinned[space[s]] = true,
                _ => {}
            }
            for m in &segment.members {
                let Some((_, w)) = m.scaled else { continue };
                let expected = if m.after_flatten { c * factor[s] } else { c };
                if w != expected {
                    return Err(invalid(format!(
                        "`{}` has {w} channels but its input has {expected}",
                        m.path
                    )));
                }
            }
            // NOTE: a linear layer applied to the last axis of a feature map reads
            // something other than channels; nothing of such a stream is removed.
            if segment
                .consumers
                .iter()
                .any(|r| r.in_width != c * factor[s])
            {
                pinned[space[s]] = true;
            }
        }

        let mut zero: Vec<Vec<bool>> = Vec::with_capacity(n);
        for (s, segment) in trace.segments.iter().enumerate() {
            let c = match width[space[s]] {
                Some(c) if !pinned[space[s]] => c,
                _ => {
                    zero.push(Vec::new());
                    continue;
                }
            };
            let mut z = vec![!segment.inputs.is_empty(); c];
            for &i in &segment.inputs {
                for (zc, &ic) in z.iter_mut().zip(&zero[i]) {
                    *zc &= ic;
                }
            }
            for m in &segment.members {
                match &m.effect {
                    Effect::Gate(dead) => {
                        let unit = if m.after_flatten { factor[s] } else { 1 };
                        for (zc, chunk) in z.iter_mut().zip(dead.chunks(unit)) {
                            *zc |= chunk.iter().all(|&d| d);
                        }
                    }
                    Effect::Clear => z.fill(false),
                    Effect::Pass | Effect::Flatten => {}
                }
            }
            zero.push(z);
        }

        let mut removed: Vec<Option<Vec<bool>>> = vec![None; n];
        for (s, segment) in trace.segments.iter().enumerate() {
            if pinned[space[s]] || segment.consumers.is_empty() || zero[s].is_empty() {
                continue;
            }
            let r = removed[space[s]].get_or_insert_with(|| vec![true; zero[s].len()]);
            for (rc, &zc) in r.iter_mut().zip(&zero[s]) {
                *rc &= zc;
            }
        }
        Ok(Self {
            space,
            factor,
            removed,
        })
    }

    /// The indices that stay of a layer with `total` channels (features) in segment `s`,
    /// `unit` of them per channel of the stream.
    fn kept(&self, s: usize, total: usize, unit: usize) -> Vec<usize> {
        match &self.removed[self.space[s]] {
            Some(removed) if removed.len() * unit == total => {
                (0..total).filter(|&i| !removed[i / unit]).collect()
            }
            _ => (0..total).collect(),
        }
    }
}

/// The representative of `i`'s set, halving paths on the way.
fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        op: "prune",
        reason,
    }
}
