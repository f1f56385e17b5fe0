//! The implicit convolution, with the micro-kernel of every instruction set this CPU runs,
//! against the im2col path, on geometries whose rows are not multiples of any vector width
//! and active sets of any size (none, some, all). Inputs are small integers, so both sides
//! are exact and must agree bit for bit; outputs start as NaN where they are written.

use proptest::prelude::*;

use crate::testing::integers;

use super::super::skip::{ActiveForward, forward_im2col};
use super::super::{ActiveConv2d, Conv2dGeometry};
use super::{Filters, MicroKernel, forward_implicit, input_offsets, pack_filters};
use crate::simd::Isa;
use crate::skip::{ActiveChannels, Epilogue, SkipScratch};

/// Runs both paths on the same layer and compares every output element.
fn check(g: &Conv2dGeometry, in_mask: u32, out_mask: u32, pool: bool, seed: u64) {
    let inputs: Vec<usize> = (0..g.in_channels)
        .filter(|c| in_mask >> c & 1 == 1)
        .collect();
    let outputs: Vec<usize> = (0..g.out_channels)
        .filter(|c| out_mask >> c & 1 == 1)
        .collect();
    let active = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let input = integers(g.input_len(), seed);
    let weight = integers(g.weight_len(), seed + 1);
    let bias = integers(g.out_channels, seed + 2);
    let slope: Vec<f32> = integers(g.out_channels, seed + 3)
        .iter()
        .map(|s| s * 0.5)
        .collect();
    let epilogue = Epilogue::RotatedRelu(&slope);
    let len = if pool {
        g.batch * g.out_channels * (g.out_h() / 2) * (g.out_w() / 2)
    } else {
        g.output_len()
    };
    // Inactive channels are not written: both sides keep 7 there, NaN elsewhere is
    // overwritten.
    let mut expected = vec![7.0; len];
    let layer = ActiveConv2d {
        geometry: *g,
        active,
        weight: &weight,
        bias: Some(&bias),
        epilogue,
    };
    let call = ActiveForward {
        layer: &layer,
        input: &input,
        pool,
    };
    let mut scratch = SkipScratch::new();
    forward_im2col(&call, &mut scratch, &mut expected);
    for isa in Isa::supported() {
        let kernel = MicroKernel::for_isa(isa);
        let mut got: Vec<f32> = expected
            .iter()
            .map(|&e| if e == 7.0 { 7.0 } else { f32::NAN })
            .collect();
        let (mut packed, mut offsets) = (Vec::new(), Vec::new());
        let filters = Filters {
            kernel,
            packed: pack_filters(g, active, &weight, kernel, &mut packed),
            offsets: input_offsets(g, active, &mut offsets),
        };
        forward_implicit(&call, filters, &scratch.threads, &mut got);
        assert_eq!(
            got, expected,
            "{isa}: {g:?} inputs {inputs:?} outputs {outputs:?} pool {pool}"
        );
    }
}

fn geometry() -> impl Strategy<Value = (Conv2dGeometry, bool)> {
    (
        (1..4_usize, 1..12_usize, 1..20_usize),
        (1..12_usize, 1..40_usize),
        (1..4_usize, 1..4_usize),
        any::<bool>(),
    )
        .prop_filter_map(
            "kernel larger than the input, or an odd map to pool",
            |((batch, in_channels, out_channels), (in_h, in_w), (kh, kw), pool)| {
                let fits = kh <= in_h && kw <= in_w && (!pool || (in_h - kh + 1) % 2 == 0);
                fits.then_some((
                    Conv2dGeometry {
                        batch,
                        in_channels,
                        out_channels,
                        in_h,
                        in_w,
                        kernel_h: kh,
                        kernel_w: kw,
                        stride_h: 1,
                        stride_w: 1,
                        pad_h: 0,
                        pad_w: 0,
                    },
                    pool,
                ))
            },
        )
}

fn mask() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(u32::MAX), any::<u32>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn implicit_matches_im2col(
        (g, pool) in geometry(),
        in_mask in mask(),
        out_mask in mask(),
        seed in any::<u64>(),
    ) {
        check(&g, in_mask, out_mask, pool, seed);
    }
}

/// MnistNet's second convolution at batch `batch`.
fn mnist_conv2(batch: usize) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
        in_channels: 32,
        out_channels: 64,
        in_h: 26,
        in_w: 26,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 0,
        pad_w: 0,
    }
}

/// MnistNet's second convolution at batch 5, in parallel tiles that span images.
#[test]
fn implicit_matches_im2col_on_a_parallel_sized_layer() {
    let g = mnist_conv2(5);
    check(&g, u32::MAX, 0x5555_5555, true, 3);
    check(&g, 0x3333_3333, u32::MAX, false, 4);
}

/// MnistNet's second convolution at batches of one and two images, which run split across
/// the threads by blocks of filters instead of by positions, with active sets that leave
/// partial blocks and groups of unequal size.
#[test]
fn implicit_matches_im2col_when_split_by_filters() {
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("a thread pool");
    threads.install(|| {
        for batch in [1, 2] {
            let g = mnist_conv2(batch);
            check(&g, u32::MAX, u32::MAX, true, 5);
            check(&g, 0x0F0F_00FF, 0x8003_A00F, false, 6);
            check(&g, 0x3333_3333, 0x00FF_F0F0, true, 7);
        }
    });
}
