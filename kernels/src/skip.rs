//! Channel skipping: convolution and linear kernels that compute only the active output
//! channels and read only the active input channels of a partly pruned layer.
//!
//! A rotated-ReLU channel whose slope is zero outputs zero, so the filter that feeds it need
//! not run and the layers that consume it need not read it. These kernels take the weights
//! of the full layer with two sorted lists of channel indices and gather the active rows and
//! columns into the operands of each matrix product as they pack them, so a partly pruned
//! model runs at the cost of its surviving channels without a compacted copy of the model.
//!
//! This module holds what the kernel families share: the active-channel lists, the
//! epilogue, and the caller-held scratch. The kernels live with their families:
//! `conv::conv2d_forward_active`, `conv::conv2d_backward_active` and `conv::PackedConv2d`;
//! `linear::linear_forward_active`, `linear::linear_backward_active` and
//! `linear::PackedLinear`.

pub use crate::scratch::SkipScratch;

/// The channels a channel-skipping kernel computes (outputs) and reads (inputs), as
/// strictly increasing lists of channel indices.
#[derive(Clone, Copy, Debug)]
pub struct ActiveChannels<'a> {
    /// Input channels that are read; the others are treated as zero.
    pub inputs: &'a [usize],
    /// Output channels that are computed; the others are treated as pruned.
    pub outputs: &'a [usize],
}

impl ActiveChannels<'_> {
    /// Panics unless both lists are strictly increasing and within `in_channels` and
    /// `out_channels`.
    #[track_caller]
    pub(crate) fn check(&self, op: &str, in_channels: usize, out_channels: usize) {
        check_list(op, "inputs", self.inputs, in_channels);
        check_list(op, "outputs", self.outputs, out_channels);
    }
}

/// The checks a channel-skipping forward makes against its layer's `(in_channels,
/// out_channels)`: the active lists, and one bias and one slope per output channel. The
/// lengths of the input, weight and output are the family's to check.
#[track_caller]
pub(crate) fn check_channel_operands(
    op: &str,
    (in_channels, out_channels): (usize, usize),
    active: ActiveChannels<'_>,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) {
    active.check(op, in_channels, out_channels);
    epilogue.check(op, out_channels);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), out_channels, "{op}: bias length");
    }
}

#[track_caller]
fn check_list(op: &str, what: &str, list: &[usize], channels: usize) {
    assert!(
        list.windows(2).all(|pair| pair[0] < pair[1]),
        "{op}: active {what} must be strictly increasing"
    );
    if let Some(&last) = list.last() {
        assert!(
            last < channels,
            "{op}: active {what} index {last} out of 0..{channels}"
        );
    }
}

/// What a forward kernel applies to each computed output channel after adding its bias,
/// while the product is still in cache.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Nothing: `y = x W + b`.
    Identity,
    /// `y = max(0, x W + b)`.
    Relu,
    /// The rotated ReLU `y[o] = slope[o] * max(0, x W + b)`, with one slope per output
    /// channel of the full layer.
    RotatedRelu(&'a [f32]),
}

impl Epilogue<'_> {
    /// Panics unless a slope list has one slope per output channel.
    #[track_caller]
    pub(crate) fn check(&self, op: &str, out_channels: usize) {
        if let Epilogue::RotatedRelu(slope) = self {
            assert_eq!(slope.len(), out_channels, "{op}: slope length");
        }
    }

    /// `dst = epilogue(src + bias)` for output channel `channel`.
    pub(crate) fn apply(&self, channel: usize, bias: f32, src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
        self.apply_in_place(channel, bias, dst);
    }

    /// `row = epilogue(row + bias)` for output channel `channel`.
    pub(crate) fn apply_in_place(&self, channel: usize, bias: f32, row: &mut [f32]) {
        let (relu, scale) = (self.relu(), self.scale(channel));
        row.iter_mut()
            .for_each(|x| *x = activate(*x, bias, relu, scale));
    }

    /// Whether sums are cut at zero: every epilogue but the identity.
    pub(crate) fn relu(&self) -> bool {
        !matches!(self, Epilogue::Identity)
    }

    /// The factor output channel `channel` is multiplied by after the cut: its slope, or 1.
    pub(crate) fn scale(&self, channel: usize) -> f32 {
        match *self {
            Epilogue::RotatedRelu(slope) => slope[channel],
            Epilogue::Identity | Epilogue::Relu => 1.0,
        }
    }
}

/// The epilogue's one scalar step, `scale * max(0, x + bias)` (without the `max` unless
/// `relu`), for the remainders the vector micro-kernels leave and the paths that have none.
/// The cut is a select that keeps NaN, as the vector ReLU of [`crate::activation`] computes
/// it, and vectorises over a row; a scale of 1 is exact, so the identity epilogue can use it.
#[inline(always)]
pub(crate) fn activate(x: f32, bias: f32, relu: bool, scale: f32) -> f32 {
    let sum = x + bias;
    let cut = if relu && sum <= 0.0 { 0.0 } else { sum };
    cut * scale
}

/// The maximal runs of consecutive indices of a strictly increasing list, as ranges.
pub(crate) fn runs(list: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for &i in list {
        match runs.last_mut() {
            Some(run) if run.end == i => run.end += 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}
