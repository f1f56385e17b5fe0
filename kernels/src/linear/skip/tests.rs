//! Both paths of the channel-skipping linear forward (the dot products and the tiles), on
//! every instruction set this CPU runs, against the plain definition: batches that are not
//! multiples of the tiles' rows, active output counts that are not multiples of their
//! outputs, runs of features that are not multiples of the vector width, no, some and all
//! active channels, every epilogue with and without bias, on one thread and on two or
//! three. Inputs are small integers, so every sum is exact whatever its order; outputs
//! start as NaN, which the kernels must leave in the outputs they do not compute.

use std::ops::Range;

use super::{
    ActiveLinear, LinearGeometry, MicroKernel, forward_dots, forward_tiled, linear_forward_active,
    tile,
};
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

/// Checks the dispatching forward, and both paths on every instruction set, against
/// [`linear_reference`] on `threads` threads, with every epilogue, with and without bias.
fn check(g: &LinearGeometry, inputs: &[usize], outputs: &[usize], seed: u64, threads: usize) {
    let active = ActiveChannels { inputs, outputs };
    let (batch, ins, outs) = (g.batch, g.in_features, g.out_features);
    let input = integers(batch * ins, seed);
    let weight = integers(outs * ins, seed + 1);
    let bias = integers(outs, seed + 2);
    let slope: Vec<f32> = integers(outs, seed + 3).iter().map(|s| s * 0.5).collect();
    let runs = g.feature_runs(inputs);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    for epilogue in [
        Epilogue::Identity,
        Epilogue::Relu,
        Epilogue::RotatedRelu(&slope),
    ] {
        for bias in [None, Some(&bias[..])] {
            let expected = linear_reference(
                g,
                (&runs, outputs),
                (&input, &weight),
                (bias, epilogue),
                f32::NAN,
            );
            let what = format!(
                "{g:?}, {active:?}, {epilogue:?}, bias {}, {threads} threads",
                bias.is_some()
            );
            let mut got = vec![f32::NAN; batch * outs];
            let linear = ActiveLinear {
                geometry: *g,
                active,
                weight: &weight,
                bias,
                epilogue,
            };
            #[rustfmt::skip]
            pool.install(|| linear_forward_active(&linear, &input, &mut SkipScratch::new(), &mut got));
            assert!(same(&got, &expected), "forward of {what}");

            let layer = tile::Layer {
                weight: &weight,
                in_features: ins,
                out_features: outs,
                runs: &runs,
                outputs,
                bias,
                epilogue,
            };
            for isa in Isa::supported() {
                let mut dots = vec![f32::NAN; batch * outs];
                #[rustfmt::skip]
                pool.install(|| forward_dots(isa, &layer, batch, &input, &mut Vec::new(), &mut dots));
                assert!(same(&dots, &expected), "{isa} dot products of {what}");

                let kernel = MicroKernel::for_isa(isa);
                let mut tiled = vec![f32::NAN; batch * outs];
                #[rustfmt::skip]
                pool.install(|| forward_tiled(kernel, &layer, batch, &input, &mut Vec::new(), &mut tiled));
                assert!(same(&tiled, &expected), "{isa} tiles of {what}");
            }
        }
    }
}

/// Active output lists of `outs` outputs: none, one, counts around multiples of the
/// tiles' two or three outputs, every other one, and all.
fn output_lists(outs: usize) -> Vec<Vec<usize>> {
    let mut lists: Vec<Vec<usize>> = [0, 1, 2, 3, 4, 5, 7]
        .iter()
        .filter(|&&n| n < outs)
        .map(|&n| (outs - n..outs).collect())
        .collect();
    lists.push((0..outs).step_by(2).collect());
    lists.push((0..outs).collect());
    lists
}

/// Batches from 1 to past every set's tallest tile (8 rows), runs of features shorter than
/// a vector, a vector long or ragged.
#[test]
fn both_paths_match_the_definition() {
    let shapes = [
        (1, 3),
        (2, 16),
        (4, 37),
        (5, 1),
        (7, 7),
        (8, 16),
        (13, 37),
        (17, 3),
        (21, 16),
    ];
    for (k, (batch, group)) in shapes.into_iter().enumerate() {
        let channels = 5;
        let g = LinearGeometry {
            batch,
            in_features: channels * group,
            out_features: 8,
            group,
        };
        let input_lists: [&[usize]; 5] = [&[], &[0, 1, 2, 3, 4], &[1, 3], &[0, 1, 4], &[2]];
        for (i, inputs) in input_lists.iter().enumerate() {
            for (j, outputs) in output_lists(g.out_features).iter().enumerate() {
                let seed = (batch * 100 + group * 10 + i * 1000 + j) as u64;
                check(&g, inputs, outputs, seed, 2 + k % 2);
            }
        }
    }
}

/// A layer large enough to split its work between the threads, next to the same layer on
/// one thread (runs of 37 features, batches that are not multiples of the tiles' rows),
/// for both paths.
#[test]
fn both_paths_match_the_definition_on_one_thread_and_more() {
    for batch in [3, 37] {
        let g = LinearGeometry {
            batch,
            in_features: 64 * 37,
            out_features: 37,
            group: 37,
        };
        let inputs: Vec<usize> = (0..64).filter(|c| c % 3 != 1).collect();
        let outputs: Vec<usize> = (0..37).filter(|o| o % 4 != 2).collect();
        let runs = g.feature_runs(&inputs);
        let inner: usize = runs.iter().map(Range::len).sum();
        assert!(g.batch * outputs.len() * inner >= super::PARALLEL_MACS);
        for threads in [1, 2, 3] {
            check(&g, &inputs, &outputs, 11, threads);
        }
    }
}
