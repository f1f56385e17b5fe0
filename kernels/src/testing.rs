//! Values shared by the unit tests of the kernels that are checked against another path
//! bit for bit.

use std::ops::Range;

use crate::linear::LinearGeometry;
use crate::skip::Epilogue;

/// Deterministic integers in -2..=2 as f32: small enough that every product and sum the
/// tests form is exact, whatever the order of summation.
pub(crate) fn integers(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 5) as f32 - 2.0
        })
        .collect()
}

/// `epilogue(bias + x W^T)` of a linear layer `g`, over the features of `runs` only and for
/// the `outputs` listed, element by element; `untouched` everywhere else in the output.
pub(crate) fn linear_reference(
    g: &LinearGeometry,
    (runs, outputs): (&[Range<usize>], &[usize]),
    (input, weight): (&[f32], &[f32]),
    (bias, epilogue): (Option<&[f32]>, Epilogue<'_>),
    untouched: f32,
) -> Vec<f32> {
    let (ins, outs) = (g.in_features, g.out_features);
    let mut out = vec![untouched; g.batch * outs];
    for n in 0..g.batch {
        for &o in outputs {
            let mut sum = 0.0;
            for f in runs.iter().flat_map(Range::clone) {
                sum += input[n * ins + f] * weight[o * ins + f];
            }
            sum += bias.map_or(0.0, |b| b[o]);
            let relu = if sum <= 0.0 { 0.0 } else { sum };
            out[n * outs + o] = match epilogue {
                Epilogue::Identity => sum,
                Epilogue::Relu => relu,
                Epilogue::RotatedRelu(slope) => slope[o] * relu,
            };
        }
    }
    out
}
