//! The channel-skipping kernels against the dense kernels run on the same layer with its
//! inactive channels zeroed.
//!
//! Inputs are small integers, so every product and sum is exact in f32 and both sides must
//! agree bit for bit whatever the summation order.
//!
//! The kernels run the instruction set the process chose (`ROTOR_ISA`, or the detected
//! one); `linear_checks_pass_on_every_instruction_set` runs the linear checks again in a
//! child process for each other set this CPU runs.

use std::process::Command;

use proptest::prelude::*;
use rotor_kernels::conv::{self, ActiveConv2d, Conv2dGeometry, Conv2dGradients};
use rotor_kernels::gemm::{MatrixView, MatrixViewMut, sgemm};
use rotor_kernels::linear::{
    ActiveLinear, LinearGeometry, LinearGradients, linear_backward_active, linear_forward_active,
};
use rotor_kernels::pool::{Pool2dGeometry, max_pool2d_forward};
use rotor_kernels::simd::{self, ISA_VARIABLE, Isa};
use rotor_kernels::skip::{ActiveChannels, Epilogue, SkipScratch};

/// A value the kernels must leave in the outputs they do not compute.
const UNTOUCHED: f32 = 12345.0;

/// Deterministic integers in -3..=3 as f32.
fn integers(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 7) as f32 - 3.0
        })
        .collect()
}

/// Bit patterns, with -0 taken as +0.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| (v + 0.0).to_bits()).collect()
}

/// The channels whose bit is set in `mask` (channels past 63 take bit 63).
fn listed(mask: u64, channels: usize) -> Vec<usize> {
    (0..channels)
        .filter(|&c| mask >> c.min(63) & 1 == 1)
        .collect()
}

/// A mask over up to 8 channels (bit `c` for channel `c`): none, all, or any subset.
fn mask() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), 0..256_u64]
}

/// Zeroes `data[.., c, ..]` (channels of `plane` elements, `channels` per item) for every
/// channel `c` not in `active`.
fn zero_inactive(data: &mut [f32], channels: usize, plane: usize, active: &[usize]) {
    for (i, value) in data.iter_mut().enumerate() {
        if !active.contains(&(i / plane % channels)) {
            *value = 0.0;
        }
    }
}

/// A filter-major weight `[outs, ins * plane]` with every row of an inactive output and
/// every column block of an inactive input zeroed.
fn zero_inactive_weight(weight: &mut [f32], ins: usize, plane: usize, active: ActiveChannels) {
    for (i, value) in weight.iter_mut().enumerate() {
        let (o, c) = (i / (ins * plane), i / plane % ins);
        if !active.outputs.contains(&o) || !active.inputs.contains(&c) {
            *value = 0.0;
        }
    }
}

/// The epilogue a check runs (the rotated ReLU with `slope`, or the identity) and the
/// active outputs it expects: the dense output passed through that epilogue, and
/// [`UNTOUCHED`] elsewhere.
fn epilogue_and_expected<'a>(
    rotated: bool,
    slope: &'a [f32],
    dense: &[f32],
    channels: usize,
    plane: usize,
    outputs: &[usize],
) -> (Epilogue<'a>, Vec<f32>) {
    let epilogue = if rotated {
        Epilogue::RotatedRelu(slope)
    } else {
        Epilogue::Identity
    };
    let expected = dense
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let o = i / plane % channels;
            match (outputs.contains(&o), rotated) {
                (false, _) => UNTOUCHED,
                (true, false) => x,
                (true, true) => slope[o] * x.max(0.0),
            }
        })
        .collect();
    (epilogue, expected)
}

fn conv_geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        (0..3_usize, 1..7_usize, 1..7_usize),
        (1..10_usize, 1..10_usize),
        (1..4_usize, 1..4_usize),
        (1..3_usize, 1..3_usize),
        (0..2_usize, 0..2_usize),
    )
        .prop_filter_map(
            "kernel larger than the padded input",
            |((batch, in_channels, out_channels), (in_h, in_w), (kh, kw), (sh, sw), (ph, pw))| {
                (kh <= in_h + 2 * ph && kw <= in_w + 2 * pw).then_some(Conv2dGeometry {
                    batch,
                    in_channels,
                    out_channels,
                    in_h,
                    in_w,
                    kernel_h: kh,
                    kernel_w: kw,
                    stride_h: sh,
                    stride_w: sw,
                    pad_h: ph,
                    pad_w: pw,
                })
            },
        )
}

fn check_conv(g: &Conv2dGeometry, in_mask: u64, out_mask: u64, seed: u64, rotated: bool) {
    let inputs = listed(in_mask, g.in_channels);
    let outputs = listed(out_mask, g.out_channels);
    let active = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let taps = g.kernel_h * g.kernel_w;
    let plane = g.in_h * g.in_w;
    let out_plane = g.output_len() / (g.batch * g.out_channels).max(1);
    let input = integers(g.input_len(), seed);
    let weight = integers(g.weight_len(), seed + 1);
    let bias = integers(g.out_channels, seed + 2);
    let grad_output = integers(g.output_len(), seed + 3);
    let slope = integers(g.out_channels, seed + 4);

    let mut input_z = input.clone();
    zero_inactive(&mut input_z, g.in_channels, plane, &inputs);
    let mut weight_z = weight.clone();
    zero_inactive_weight(&mut weight_z, g.in_channels, taps, active);
    let mut grad_output_z = grad_output.clone();
    zero_inactive(&mut grad_output_z, g.out_channels, out_plane, &outputs);

    // Forward.
    let mut dense = vec![0.0; g.output_len()];
    conv::conv2d_forward(g, &input_z, &weight_z, Some(&bias), &mut dense);
    let (epilogue, expected) =
        epilogue_and_expected(rotated, &slope, &dense, g.out_channels, out_plane, &outputs);
    let layer = ActiveConv2d {
        geometry: *g,
        active,
        weight: &weight,
        bias: Some(&bias),
        epilogue,
    };
    let mut actual = vec![UNTOUCHED; g.output_len()];
    let mut scratch = SkipScratch::new();
    // Twice, to check that reused scratch buffers give the same result.
    for _ in 0..2 {
        conv::conv2d_forward_active(&layer, &input, &mut scratch, &mut actual);
        assert_eq!(
            bits(&actual),
            bits(&expected),
            "forward of {g:?} {active:?}"
        );
    }
    let packed = conv::PackedConv2d::new(g, active, &weight);
    let mut from_packed = vec![UNTOUCHED; g.output_len()];
    #[rustfmt::skip]
    packed.forward(g.batch, &input, Some(&bias), epilogue, &mut scratch, &mut from_packed);
    assert_eq!(
        bits(&from_packed),
        bits(&expected),
        "packed forward of {g:?} {active:?}"
    );
    if g.out_h().is_multiple_of(2) && g.out_w() >= 2 {
        check_pooled(&layer, &input, &actual);
    }

    // Backward.
    let mut dense = [
        vec![0.0; g.input_len()],
        vec![0.0; g.weight_len()],
        vec![0.0; g.out_channels],
    ];
    let [di, dw, db] = &mut dense;
    let grads = Conv2dGradients {
        input: Some(di),
        weight: Some(dw),
        bias: Some(db),
    };
    conv::conv2d_backward(g, &input_z, &weight_z, &grad_output_z, grads);
    let mut skipped = [
        vec![f32::NAN; g.input_len()],
        vec![f32::NAN; g.weight_len()],
        vec![f32::NAN; g.out_channels],
    ];
    let [si, sw, sb] = &mut skipped;
    let grads = Conv2dGradients {
        input: Some(si),
        weight: Some(sw),
        bias: Some(sb),
    };
    conv::conv2d_backward_active(g, active, &input, &weight, &grad_output, grads);
    for (name, (actual, expected)) in ["grad_input", "grad_weight", "grad_bias"]
        .iter()
        .zip(skipped.iter().zip(&dense))
    {
        assert_eq!(bits(actual), bits(expected), "{name} of {g:?} {active:?}");
    }
}

/// The fused max-pooling forward of `layer` against the unpooled forward's output
/// `unpooled`, pooled by the pooling kernel (inactive channels pool the untouched marker to
/// itself).
fn check_pooled(layer: &ActiveConv2d, input: &[f32], unpooled: &[f32]) {
    let (g, active) = (&layer.geometry, layer.active);
    let pool = Pool2dGeometry {
        batch: g.batch,
        channels: g.out_channels,
        in_h: g.out_h(),
        in_w: g.out_w(),
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
        pad_h: 0,
        pad_w: 0,
    };
    let mut expected = vec![0.0; pool.output_len()];
    let mut argmax = vec![0; pool.output_len()];
    max_pool2d_forward(&pool, unpooled, &mut expected, &mut argmax);
    let mut actual = vec![UNTOUCHED; pool.output_len()];
    conv::conv2d_forward_active_max_pool2(layer, input, &mut SkipScratch::new(), &mut actual);
    assert_eq!(
        bits(&actual),
        bits(&expected),
        "pooled forward of {g:?} {active:?}"
    );
    let packed = conv::PackedConv2d::new(g, active, layer.weight);
    let mut from_packed = vec![UNTOUCHED; pool.output_len()];
    #[rustfmt::skip]
    packed.forward_max_pool2(g.batch, input, layer.bias, layer.epilogue, &mut SkipScratch::new(), &mut from_packed);
    assert_eq!(
        bits(&from_packed),
        bits(&expected),
        "packed pooled forward of {g:?} {active:?}"
    );
}

fn check_linear(g: &LinearGeometry, in_mask: u64, out_mask: u64, seed: u64, rotated: bool) {
    let inputs = listed(in_mask, g.in_channels());
    let outputs = listed(out_mask, g.out_features);
    let active = ActiveChannels {
        inputs: &inputs,
        outputs: &outputs,
    };
    let (batch, features, outs) = (g.batch, g.in_features, g.out_features);
    let input = integers(batch * features, seed);
    let weight = integers(outs * features, seed + 1);
    let bias = integers(outs, seed + 2);
    let grad_output = integers(batch * outs, seed + 3);
    let slope = integers(outs, seed + 4);

    let mut input_z = input.clone();
    zero_inactive(&mut input_z, g.in_channels(), g.group, &inputs);
    let mut weight_z = weight.clone();
    zero_inactive_weight(&mut weight_z, g.in_channels(), g.group, active);
    let mut grad_output_z = grad_output.clone();
    zero_inactive(&mut grad_output_z, outs, 1, &outputs);

    let x = MatrixView::row_major(&input_z, batch, features);
    let w = MatrixView::row_major(&weight_z, outs, features);
    let grad = MatrixView::row_major(&grad_output_z, batch, outs);
    let mut dense: Vec<f32> = (0..batch).flat_map(|_| bias.iter().copied()).collect();
    let y = MatrixViewMut::row_major(&mut dense, batch, outs);
    sgemm(1.0, x, w.t(), 1.0, y);
    let (epilogue, expected) = epilogue_and_expected(rotated, &slope, &dense, outs, 1, &outputs);
    // Outputs start as NaN, which the kernel must leave in the inactive ones.
    let expected: Vec<f32> = expected
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            if outputs.contains(&(i % outs)) {
                y
            } else {
                f32::NAN
            }
        })
        .collect();
    let mut actual = vec![f32::NAN; batch * outs];
    let mut scratch = SkipScratch::new();
    let layer = ActiveLinear {
        geometry: *g,
        active,
        weight: &weight,
        bias: Some(&bias),
        epilogue,
    };
    linear_forward_active(&layer, &input, &mut scratch, &mut actual);
    assert_eq!(
        bits(&actual),
        bits(&expected),
        "forward of {g:?} {active:?}"
    );

    let mut dense_input = vec![0.0; batch * features];
    let view = MatrixViewMut::row_major(&mut dense_input, batch, features);
    sgemm(1.0, grad, w, 0.0, view);
    let mut dense_weight = vec![0.0; outs * features];
    let view = MatrixViewMut::row_major(&mut dense_weight, outs, features);
    sgemm(1.0, grad.t(), x, 0.0, view);
    let dense_bias: Vec<f32> = (0..outs)
        .map(|o| (0..batch).map(|n| grad_output_z[n * outs + o]).sum())
        .collect();
    let mut skipped = [
        vec![f32::NAN; batch * features],
        vec![f32::NAN; outs * features],
        vec![f32::NAN; outs],
    ];
    let [si, sw, sb] = &mut skipped;
    let grads = LinearGradients {
        input: Some(si),
        weight: Some(sw),
        bias: Some(sb),
    };
    linear_backward_active(g, active, &input, &weight, &grad_output, grads);
    for (name, (actual, expected)) in
        ["grad_input", "grad_weight", "grad_bias"]
            .iter()
            .zip(
                skipped
                    .iter()
                    .zip([&dense_input, &dense_weight, &dense_bias]),
            )
    {
        assert_eq!(bits(actual), bits(expected), "{name} of {g:?} {active:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv_matches_dense_with_inactive_channels_zeroed(
        g in conv_geometry(),
        in_mask in mask(),
        out_mask in mask(),
        seed in any::<u64>(),
        rotated in any::<bool>(),
    ) {
        check_conv(&g, in_mask, out_mask, seed, rotated);
    }

    #[test]
    fn linear_matches_dense_with_inactive_channels_zeroed(
        batch in 0..9_usize,
        in_channels in 1..7_usize,
        group in 1..5_usize,
        out_features in 1..8_usize,
        in_mask in mask(),
        out_mask in mask(),
        seed in any::<u64>(),
        rotated in any::<bool>(),
    ) {
        let g = LinearGeometry { batch, in_features: in_channels * group, out_features, group };
        check_linear(&g, in_mask, out_mask, seed, rotated);
    }

    /// Batches past the dot products' (tiled by rows and outputs), with channels of
    /// features that are shorter than a vector, a vector long, or longer and ragged.
    #[test]
    fn linear_batches_match_dense_with_inactive_channels_zeroed(
        batch in 5..20_usize,
        in_channels in 1..6_usize,
        group in prop_oneof![Just(1_usize), Just(7), Just(16), Just(37)],
        out_features in 1..10_usize,
        in_mask in mask(),
        out_mask in mask(),
        seed in any::<u64>(),
        rotated in any::<bool>(),
    ) {
        let g = LinearGeometry { batch, in_features: in_channels * group, out_features, group };
        check_linear(&g, in_mask, out_mask, seed, rotated);
    }
}

/// MnistNet's second convolution at batch 3, large enough to run in parallel tiles that
/// span images, with every other channel active.
#[test]
fn conv_matches_dense_on_a_parallel_sized_layer() {
    let g = Conv2dGeometry {
        batch: 3,
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
    };
    let every_other = 0x5555_5555_5555_5555;
    check_conv(&g, u64::MAX, every_other, 7, true);
    check_conv(&g, every_other, u64::MAX, 8, false);
}

/// MnistNet's first linear layer at batch 1 (dot products), 16 and 37 (tiles of rows),
/// with every other input channel active, on one thread and in parallel on three.
#[test]
fn linear_matches_dense_on_a_parallel_sized_layer() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        for batch in [1, 16, 37] {
            let g = LinearGeometry {
                batch,
                in_features: 64 * 144,
                out_features: 128,
                group: 144,
            };
            pool.install(|| check_linear(&g, 0x5555_5555_5555_5555, u64::MAX, 9, true));
        }
    }
}

/// Runs this binary's linear checks again in a child process for every other instruction
/// set this CPU runs, forced with `ROTOR_ISA` (a process chooses its set once), through
/// the runner cargo ran this binary with, if any (qemu for a cross-built one). In a child,
/// or when the variable forces one set for the whole run, it only checks that the set
/// asked for is the one the kernels run.
#[test]
fn linear_checks_pass_on_every_instruction_set() {
    if let Some(name) = std::env::var_os(ISA_VARIABLE) {
        let name = name.to_string_lossy();
        assert_eq!(simd::active().name(), name.trim().to_lowercase());
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    // Cargo's `CARGO_TARGET_<TRIPLE>_RUNNER` for a triple of this architecture.
    let arch = format!("CARGO_TARGET_{}_", std::env::consts::ARCH.to_uppercase());
    let runner: Vec<String> = std::env::vars()
        .find(|(key, _)| key.starts_with(&arch) && key.ends_with("_RUNNER"))
        .map(|(_, runner)| runner.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let chosen = simd::active();
    for isa in Isa::supported().into_iter().filter(|&isa| isa != chosen) {
        let mut command = match runner.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        let run = command
            .args(["linear", "--test-threads=2"])
            .env(ISA_VARIABLE, isa.name())
            .output()
            .expect("the test binary runs");
        let report = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success() && report.contains("test result: ok"),
            "the linear checks with {ISA_VARIABLE}={isa}:\n{report}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn unsorted_active_lists_are_rejected() {
    let g = LinearGeometry {
        batch: 1,
        in_features: 4,
        out_features: 2,
        group: 1,
    };
    let active = ActiveChannels {
        inputs: &[2, 1],
        outputs: &[0],
    };
    let layer = ActiveLinear {
        geometry: g,
        active,
        weight: &[0.0; 8],
        bias: None,
        epilogue: Epilogue::Identity,
    };
    let mut output = vec![0.0; 2];
    linear_forward_active(&layer, &[0.0; 4], &mut SkipScratch::new(), &mut output);
}
