//! The packed linear layer against the plain definition, on every instruction set this CPU
//! runs: sizes that are not multiples of the vector width or of the feature block, every
//! batch size the tiles cut differently, no, some and all active channels, every epilogue,
//! on one thread and on two or three (both ways of splitting the work). Inputs are small
//! integers, so every sum is exact whatever its order; outputs start as NaN, so that one
//! the kernel should write but does not (or reads before writing) shows.

use proptest::prelude::*;

use super::PackedLinear;
use crate::linear::LinearGeometry;
use crate::simd::Isa;
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};
use crate::testing::{integers, linear_reference};

/// Whether two outputs agree: equal values, or NaN in both (an output left untouched).
fn same(got: &[f32], expected: &[f32]) -> bool {
    got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(a, b)| a == b || a.is_nan() && b.is_nan())
}

/// Checks the layer `g` packed over the active `inputs` and `outputs` (or with
/// [`PackedLinear::new`] when `dense`) on every instruction set, on pools of each of
/// `threads` threads, with epilogue `kind % 3` (identity without bias, ReLU and rotated
/// ReLU with).
fn check(
    g: &LinearGeometry,
    (inputs, outputs): (&[usize], &[usize]),
    (kind, seed): (u8, u64),
    threads: &[usize],
) {
    let (batch, ins, outs) = (g.batch, g.in_features, g.out_features);
    let active = ActiveChannels { inputs, outputs };
    let dense = g.group == 1 && inputs.len() == ins && outputs.len() == outs;
    let input = integers(batch * ins, seed);
    let weight = integers(outs * ins, seed.wrapping_add(1));
    let bias = integers(outs, seed.wrapping_add(2));
    let slope: Vec<f32> = integers(outs, seed.wrapping_add(3))
        .iter()
        .map(|s| s * 0.5)
        .collect();
    let (bias, epilogue) = match kind % 3 {
        0 => (None, Epilogue::Identity),
        1 => (Some(&bias[..]), Epilogue::Relu),
        _ => (Some(&bias[..]), Epilogue::RotatedRelu(&slope)),
    };
    let runs = g.feature_runs(inputs);
    #[rustfmt::skip]
    let expected = linear_reference(g, (&runs, outputs), (&input, &weight), (bias, epilogue), f32::NAN);
    let packed = if dense {
        PackedLinear::new(ins, outs, &weight)
    } else {
        PackedLinear::with_active(g, active, &weight)
    };
    for (isa, &threads) in Isa::supported()
        .into_iter()
        .flat_map(|isa| threads.iter().map(move |t| (isa, t)))
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        let layer = packed.clone().with_isa(isa);
        assert_eq!(layer.isa(), isa);
        let mut got = vec![f32::NAN; batch * outs];
        pool.install(|| {
            let mut scratch = SkipScratch::new();
            layer.forward(batch, &input, bias, epilogue, &mut scratch, &mut got);
        });
        assert!(
            same(&got, &expected),
            "{isa}: {g:?}, inputs {inputs:?}, outputs {outputs:?}, {epilogue:?}, \
             {threads} threads:\n got {got:?}\nwant {expected:?}"
        );
    }
}

/// A dense layer of `ins` features into `outs`.
fn dense(batch: usize, ins: usize, outs: usize, (kind, seed): (u8, u64), threads: &[usize]) {
    let g = LinearGeometry {
        batch,
        in_features: ins,
        out_features: outs,
        group: 1,
    };
    let (inputs, outputs): (Vec<usize>, Vec<usize>) = ((0..ins).collect(), (0..outs).collect());
    check(&g, (&inputs, &outputs), (kind, seed), threads);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packed_active_channels_match_the_definition(
        batch in 0..20_usize,
        channels in 1..12_usize,
        group in 1..40_usize,
        outs in 1..60_usize,
        in_mask in prop_oneof![Just(0), Just(u64::MAX), any::<u64>()],
        out_mask in prop_oneof![Just(0), Just(u64::MAX), any::<u64>()],
        kind in any::<u8>(),
        threads in 1..4_usize,
    ) {
        let g = LinearGeometry { batch, in_features: channels * group, out_features: outs, group };
        let inputs: Vec<usize> = (0..channels).filter(|c| in_mask >> c & 1 == 1).collect();
        let outputs: Vec<usize> = (0..outs).filter(|o| out_mask >> o & 1 == 1).collect();
        check(&g, (&inputs, &outputs), (kind, in_mask ^ out_mask), &[threads]);
    }

    #[test]
    fn packed_linear_matches_the_definition(
        batch in 0..20_usize,
        ins in 1..600_usize,
        outs in 1..140_usize,
        kind in any::<u8>(),
        seed in any::<u64>(),
        threads in 1..4_usize,
    ) {
        dense(batch, ins, outs, (kind, seed), &[threads]);
    }
}

/// MnistNet's first linear layer at batches 1, 3, 17 and 64 on one thread, two and three
/// (the work split by features below 8 rows a thread, by rows from there), with every
/// epilogue (the rotated ReLU only at 64); and with every other channel and output active.
#[test]
fn packed_linear_matches_on_mnistnet_sizes() {
    for batch in [1, 3, 17] {
        for kind in 0..3 {
            dense(batch, 64 * 144, 128, (kind, 7), &[1, 2, 3]);
        }
    }
    dense(64, 64 * 144, 128, (2, 7), &[1, 2, 3]);
    let g = LinearGeometry {
        batch: 37,
        in_features: 64 * 144,
        out_features: 128,
        group: 144,
    };
    let inputs: Vec<usize> = (0..64).step_by(2).collect();
    let outputs: Vec<usize> = (0..128).step_by(2).collect();
    check(&g, (&inputs, &outputs), (2, 8), &[1, 2]);
}

#[test]
#[should_panic(expected = "weight length")]
fn packed_linear_checks_the_weight_length() {
    PackedLinear::new(3, 2, &[0.0; 5]);
}

/// Asking for an instruction set this CPU lacks panics and names it (NEON on x86-64, the
/// x86 sets on AArch64).
#[test]
fn packed_linear_refuses_an_instruction_set_the_cpu_lacks() {
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
        let layer = PackedLinear::new(3, 2, &[1.0; 6]);
        let result = std::panic::catch_unwind(|| layer.with_isa(isa));
        let message = result.expect_err("an unsupported set accepted");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(
            message.contains("cannot run") && message.contains(isa.name()),
            "{message}"
        );
    }
}
