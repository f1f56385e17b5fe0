//! Both batch paths of the channel-skipping linear forward (the AVX-512 tiles where the CPU
//! has them, and the repacked fallback everywhere) against the plain definition: batches
//! that are not multiples of the tile's rows, active output counts that are not multiples
//! of its outputs, runs of features that are not multiples of the vector width, every
//! epilogue with and without bias, on one thread and on two. Inputs are small integers, so
//! every sum is exact whatever its order.

use std::ops::Range;

use super::{LinearGeometry, avx512, forward_repacked, forward_tiled, linear_forward_active};
use crate::conv::SkipScratch;
use crate::skip::{ActiveChannels, Epilogue};
use crate::testing::{integers, linear_reference};

/// A value the kernels must leave in the outputs they do not compute.
const UNTOUCHED: f32 = 12345.0;

/// Checks the dispatching forward and both batch paths against [`reference`] on `threads`
/// threads, with every epilogue, with and without bias.
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
                UNTOUCHED,
            );
            let what = format!("{g:?}, {active:?}, {epilogue:?}, bias {}", bias.is_some());
            let mut got = vec![UNTOUCHED; batch * outs];
            #[rustfmt::skip]
            pool.install(|| linear_forward_active(g, active, &input, &weight, bias, epilogue, &mut SkipScratch::new(), &mut got));
            assert_eq!(got, expected, "forward of {what}");

            let mut repacked = vec![UNTOUCHED; batch * outs];
            #[rustfmt::skip]
            pool.install(|| forward_repacked(g, active, &input, &weight, bias, epilogue, &mut SkipScratch::new(), &mut repacked));
            assert_eq!(repacked, expected, "repacked forward of {what}");

            if avx512::available() {
                let layer = avx512::Layer {
                    weight: &weight,
                    in_features: ins,
                    out_features: outs,
                    runs: &runs,
                    outputs,
                    bias,
                    epilogue,
                };
                let mut tiled = vec![UNTOUCHED; batch * outs];
                pool.install(|| forward_tiled(&layer, batch, &input, &mut Vec::new(), &mut tiled));
                assert_eq!(tiled, expected, "tiled forward of {what}");
            }
        }
    }
}

/// Active output lists of `outs` outputs: none, one, counts around multiples of the
/// tile's three outputs, every other one, and all.
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

#[test]
fn batch_paths_match_the_definition() {
    for (batch, group) in [(5, 1), (7, 7), (8, 16), (13, 37), (17, 3), (21, 16)] {
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
                check(&g, inputs, outputs, seed, 2);
            }
        }
    }
}

/// A layer large enough to split its rows between two threads, next to the same layer on
/// one thread (runs of 37 features and a batch that is not a multiple of the tile's rows).
#[test]
fn batch_paths_match_the_definition_on_one_thread_and_two() {
    let g = LinearGeometry {
        batch: 37,
        in_features: 64 * 37,
        out_features: 23,
        group: 37,
    };
    let inputs: Vec<usize> = (0..64).filter(|c| c % 3 != 1).collect();
    let outputs: Vec<usize> = (0..23).filter(|o| o % 4 != 2).collect();
    let runs = g.feature_runs(&inputs);
    let inner: usize = runs.iter().map(Range::len).sum();
    assert!(g.batch * outputs.len() * inner >= super::PARALLEL_MACS);
    for threads in [1, 2] {
        check(&g, &inputs, &outputs, 11, threads);
    }
}
