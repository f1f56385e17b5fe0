//! The packed linear layer against the plain definition, on sizes that are not multiples of
//! the vector width or of the feature block, at every batch size the kernel tiles
//! differently, on one thread and on two (both ways of splitting the work). Inputs are small
//! integers, so every sum is exact whatever its order.

use proptest::prelude::*;

use crate::testing::{integers, linear_reference};

use super::{PackedLinear, avx512};
use crate::conv::SkipScratch;
use crate::skip::linear::{LinearGeometry, linear_forward_active};
use crate::skip::{ActiveChannels, Epilogue};

/// Checks the kernel (or the portable path) against [`reference`] on `threads` threads.
fn check(batch: usize, ins: usize, outs: usize, kind: u8, seed: u64, threads: usize) {
    let input = integers(batch * ins, seed);
    let weight = integers(outs * ins, seed + 1);
    let bias = integers(outs, seed + 2);
    let slope: Vec<f32> = integers(outs, seed + 3).iter().map(|s| s * 0.5).collect();
    let (bias, epilogue) = match kind % 3 {
        0 => (None, Epilogue::Identity),
        1 => (Some(&bias[..]), Epilogue::Relu),
        _ => (Some(&bias[..]), Epilogue::RotatedRelu(&slope)),
    };
    let g = LinearGeometry {
        batch,
        in_features: ins,
        out_features: outs,
        group: 1,
    };
    let (features, outputs) = (0..ins, (0..outs).collect::<Vec<_>>());
    let runs = std::slice::from_ref(&features);
    #[rustfmt::skip]
    let expected = linear_reference(&g, (runs, &outputs), (&input, &weight), (bias, epilogue), 0.0);
    let layer = PackedLinear::new(ins, outs, &weight);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let mut got = vec![f32::NAN; batch * outs];
    pool.install(|| {
        let mut scratch = SkipScratch::new();
        layer.forward(batch, &input, bias, epilogue, &mut scratch, &mut got);
    });
    assert_eq!(
        got, expected,
        "batch {batch}, {ins} -> {outs}, {threads} threads"
    );
    let mut portable = vec![f32::NAN; batch * outs];
    let all: Vec<usize> = (0..outs).collect();
    let activation = avx512::LaneActivation::new(bias, epilogue, &all);
    layer.forward_portable(batch, &input, &activation, &mut portable);
    assert_eq!(
        portable, expected,
        "portable: batch {batch}, {ins} -> {outs}"
    );
}

/// A layer packed over active channels against the index-list kernel on the same lists:
/// equal on the active outputs, the others untouched.
fn check_active(batch: usize, channels: usize, group: usize, outs: usize, masks: (u64, u64)) {
    let g = LinearGeometry {
        batch,
        in_features: channels * group,
        out_features: outs,
        group,
    };
    let inputs: Vec<usize> = (0..channels).filter(|c| masks.0 >> c & 1 == 1).collect();
    let outputs: Vec<usize> = (0..outs).filter(|o| masks.1 >> o & 1 == 1).collect();
    let active = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let input = integers(batch * g.in_features, masks.0);
    let weight = integers(outs * g.in_features, masks.1);
    let bias = integers(outs, 5);
    let slope = integers(outs, 6);
    let epilogue = Epilogue::RotatedRelu(&slope);
    let mut scratch = SkipScratch::new();
    let mut expected = vec![9.0; batch * outs];
    #[rustfmt::skip]
    linear_forward_active(&g, active, &input, &weight, Some(&bias), epilogue, &mut scratch, &mut expected);
    let layer = PackedLinear::with_active(&g, active, &weight);
    let mut got = vec![9.0; batch * outs];
    layer.forward(batch, &input, Some(&bias), epilogue, &mut scratch, &mut got);
    assert_eq!(got, expected, "{g:?} inputs {inputs:?} outputs {outputs:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packed_active_channels_match_the_index_list_kernel(
        batch in 0..20_usize,
        channels in 1..12_usize,
        group in 1..40_usize,
        outs in 1..60_usize,
        in_mask in prop_oneof![Just(0), Just(u64::MAX), any::<u64>()],
        out_mask in prop_oneof![Just(0), Just(u64::MAX), any::<u64>()],
    ) {
        check_active(batch, channels, group, outs, (in_mask, out_mask));
    }

    #[test]
    fn packed_linear_matches_the_definition(
        batch in 0..20_usize,
        ins in 1..600_usize,
        outs in 1..140_usize,
        kind in any::<u8>(),
        seed in any::<u64>(),
        threads in 1..3_usize,
    ) {
        check(batch, ins, outs, kind, seed, threads);
    }
}

/// MnistNet's first linear layer at batch 1 (the features split between two threads) and 64
/// (the rows split), and on one thread.
#[test]
fn packed_linear_matches_on_mnistnet_sizes() {
    for batch in [1, 3, 64] {
        for threads in [1, 2] {
            check(batch, 64 * 144, 128, 2, 7, threads);
        }
    }
}

#[test]
#[should_panic(expected = "weight length")]
fn packed_linear_checks_the_weight_length() {
    PackedLinear::new(3, 2, &[0.0; 5]);
}
