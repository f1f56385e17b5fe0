//! The channel graph of a network: which layers write, transform and read each stream of
//! channels.
//!
//! A *segment* is a run of a stream between the layers that change its channel count: it
//! is written by one convolution or linear layer (its producer), by the model's input, or
//! by other segments (a residual block forks its input into its branches and adds the
//! branches' outputs); per-channel layers (batch norms, activations, pools, flatten)
//! transform it; and a convolution or linear layer reads it (its consumer), or it flows on
//! into other segments. Segments joined by flows share one channel index space: a
//! channel is removed from all of them or from none.

use super::gate::GateKind;
use super::plan::PlanLayerKind;
use crate::layers::{ChannelFlow, Layer, Sequential};
use crate::param::{Param, join_path};

/// Which elements of a gate count as dead.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dead {
    /// Magnitude at most the threshold: what pruning at that zeta removes.
    AtMost(f32),
    /// Exactly zero and frozen: what training may skip, since no step can revive it.
    FrozenZero,
}

impl Dead {
    fn of(self, gate: &Param) -> Vec<bool> {
        let values = gate.tensor().as_slice();
        match self {
            Dead::AtMost(zeta) => values.iter().map(|a| a.abs() <= zeta).collect(),
            Dead::FrozenZero => match gate.frozen() {
                Some(frozen) => values
                    .iter()
                    .zip(frozen)
                    .map(|(&a, &frozen)| frozen && a == 0.0)
                    .collect(),
                None => vec![false; values.len()],
            },
        }
    }
}

/// What a per-channel layer does to the channels that are exactly zero.
#[derive(Debug)]
pub(crate) enum Effect {
    /// A gate: the elements marked dead output zero once masked, whatever comes in.
    Gate(Vec<bool>),
    /// Zero in, possibly non-zero out (a batch norm that is not a gate).
    Clear,
    /// Zero in, zero out (ReLU, GELU, pools, dropout, rotated activations that are not
    /// gates).
    Pass,
    /// `[N, C, H, W] -> [N, C*H*W]`: each channel becomes `H*W` consecutive features.
    Flatten,
}

/// A layer applied to a segment channel by channel.
#[derive(Debug)]
pub(crate) struct Member {
    /// The layer's path.
    pub path: String,
    /// What it is and its number of channels, for layers with per-channel parameters.
    pub scaled: Option<(PlanLayerKind, usize)>,
    /// What it does to zero channels.
    pub effect: Effect,
    /// Whether a [`Effect::Flatten`] comes before it in the segment.
    pub after_flatten: bool,
}

/// A layer that reads a segment.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// The layer's path.
    pub path: String,
    /// Its input channels (features, for a linear layer).
    pub in_width: usize,
    /// What it is ([`PlanLayerKind::Conv2d`] or [`PlanLayerKind::Linear`]).
    pub kind: PlanLayerKind,
}

/// A run of a stream between channel-changing layers (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Segment {
    /// Segments flowing in (forks and residual additions).
    pub inputs: Vec<usize>,
    /// The output channels of the convolution or linear layer writing this segment.
    pub producer_width: Option<usize>,
    /// The per-channel layers, in order.
    pub members: Vec<Member>,
    /// The layers reading this segment.
    pub consumers: Vec<Consumer>,
    /// Whether other segments read this one.
    pub flows_out: bool,
    /// Whether its channels must all stay (read or written by the model's boundary or by
    /// an opaque layer).
    pub pinned: bool,
}

/// A producer: a convolution or linear layer with the segments it reads and writes.
#[derive(Debug)]
pub(crate) struct Producer {
    /// The layer's path.
    pub path: String,
    /// What it is ([`PlanLayerKind::Conv2d`] or [`PlanLayerKind::Linear`]).
    pub kind: PlanLayerKind,
    /// The segment it reads.
    pub input: usize,
    /// Its input channels (features).
    pub in_width: usize,
    /// The segment it writes.
    pub output: usize,
    /// Its output channels (features).
    pub out_width: usize,
}

/// The channel graph of a network.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// All segments; a segment's inputs always come before it.
    pub segments: Vec<Segment>,
    /// All convolution and linear layers, in forward order.
    pub producers: Vec<Producer>,
}

impl Trace {
    /// Traces `net` for gates of kind `kind`, whose elements `dead` says are dead.
    pub fn new(net: &Sequential, kind: GateKind, dead: Dead) -> Self {
        let mut trace = Trace::default();
        let input = trace.segment(Vec::new());
        trace.segments[input].pinned = true;
        let output = trace.walk(net, "", kind, dead, input);
        trace.segments[output].pinned = true;
        trace
    }

    fn segment(&mut self, inputs: Vec<usize>) -> usize {
        for &i in &inputs {
            self.segments[i].flows_out = true;
        }
        self.segments.push(Segment {
            inputs,
            ..Segment::default()
        });
        self.segments.len() - 1
    }

    fn walk(
        &mut self,
        seq: &Sequential,
        prefix: &str,
        kind: GateKind,
        dead: Dead,
        at: usize,
    ) -> usize {
        seq.layers().iter().fold(at, |at, (name, layer)| {
            self.layer(layer, &join_path(prefix, name), kind, dead, at)
        })
    }

    fn consume(
        &mut self,
        at: usize,
        path: &str,
        (in_width, out_width): (usize, usize),
        kind: PlanLayerKind,
    ) -> usize {
        self.segments[at].consumers.push(Consumer {
            path: path.to_string(),
            in_width,
            kind,
        });
        let output = self.segment(Vec::new());
        self.segments[output].producer_width = Some(out_width);
        self.producers.push(Producer {
            path: path.to_string(),
            kind,
            input: at,
            in_width,
            output,
            out_width,
        });
        output
    }

    fn member(
        &mut self,
        at: usize,
        path: &str,
        scaled: Option<(PlanLayerKind, usize)>,
        effect: Effect,
    ) -> usize {
        let segment = &mut self.segments[at];
        let after_flatten = segment
            .members
            .iter()
            .any(|m| matches!(m.effect, Effect::Flatten));
        segment.members.push(Member {
            path: path.to_string(),
            scaled,
            effect,
            after_flatten,
        });
        at
    }

    /// A layer with a scale per channel: a gate if it is of kind `kind`.
    fn scaled(
        &mut self,
        at: usize,
        path: &str,
        layer: &Layer,
        scaled: (PlanLayerKind, usize),
        kind: GateKind,
        dead: Dead,
    ) -> usize {
        let effect = match kind.gate_of(layer) {
            Some(gate) => Effect::Gate(dead.of(gate)),
            None if matches!(layer, Layer::BatchNorm2d(_)) => Effect::Clear,
            None => Effect::Pass,
        };
        self.member(at, path, Some(scaled), effect)
    }

    fn layer(&mut self, layer: &Layer, path: &str, kind: GateKind, dead: Dead, at: usize) -> usize {
        match layer {
            Layer::Conv2d(conv) => {
                let widths = (conv.in_channels(), conv.out_channels());
                self.consume(at, path, widths, PlanLayerKind::Conv2d)
            }
            Layer::Linear(fc) => {
                let widths = (fc.in_features(), fc.out_features());
                self.consume(at, path, widths, PlanLayerKind::Linear)
            }
            Layer::BatchNorm2d(l) => {
                let scaled = (PlanLayerKind::BatchNorm2d, l.channels());
                self.scaled(at, path, layer, scaled, kind, dead)
            }
            Layer::RotatedRelu(l) => {
                let scaled = (PlanLayerKind::RotatedRelu, l.channels());
                self.scaled(at, path, layer, scaled, kind, dead)
            }
            Layer::RotatedGelu(l) => {
                let scaled = (PlanLayerKind::RotatedGelu, l.channels());
                self.scaled(at, path, layer, scaled, kind, dead)
            }
            Layer::Relu(_)
            | Layer::Gelu(_)
            | Layer::MaxPool2d(_)
            | Layer::AvgPool2d(_)
            | Layer::GlobalAvgPool(_)
            | Layer::Dropout(_) => self.member(at, path, None, Effect::Pass),
            Layer::Flatten(_) => self.member(at, path, None, Effect::Flatten),
            Layer::Sequential(inner) => self.walk(inner, path, kind, dead, at),
            Layer::Residual(block) => {
                let body_in = self.segment(vec![at]);
                let body_out =
                    self.walk(&block.body, &join_path(path, "body"), kind, dead, body_in);
                let skip_out = match &block.shortcut {
                    Some(shortcut) => {
                        let skip_in = self.segment(vec![at]);
                        self.walk(shortcut, &join_path(path, "shortcut"), kind, dead, skip_in)
                    }
                    None => at,
                };
                self.segment(vec![body_out, skip_out])
            }
            Layer::Custom(custom) if custom.channel_flow() == ChannelFlow::PerChannel => {
                self.member(at, path, None, Effect::Pass)
            }
            Layer::Custom(_) => {
                self.segments[at].pinned = true;
                let output = self.segment(Vec::new());
                self.segments[output].pinned = true;
                output
            }
        }
    }
}
