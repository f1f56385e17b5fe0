//! The tiled, parallel convolution against the reference loops, and the reference backward
//! against finite differences of the reference forward.
//!
//! Inputs are small integers, so every product and sum is exact in f32 and fast and
//! reference results must agree bit for bit whatever the summation order.

use proptest::prelude::*;
use rotor_kernels::conv::{self, Conv2dGeometry, Conv2dGradients};
use rotor_kernels::reference;

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

/// Bit patterns, with -0 taken as +0; a NaN left in an output shows up as a mismatch.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| (v + 0.0).to_bits()).collect()
}

fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

fn geometry(
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    (in_h, in_w): (usize, usize),
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (pad_h, pad_w): (usize, usize),
) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
        in_channels,
        out_channels,
        in_h,
        in_w,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
    }
}

struct Data {
    input: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    grad_output: Vec<f32>,
}

impl Data {
    fn new(g: &Conv2dGeometry, seed: u64) -> Self {
        Self {
            input: integers(g.input_len(), seed),
            weight: integers(g.weight_len(), seed + 1),
            bias: integers(g.out_channels, seed + 2),
            grad_output: integers(g.output_len(), seed + 3),
        }
    }
}

/// The forward output, computed with the output buffer full of NaN.
fn forward(g: &Conv2dGeometry, data: &Data, with_bias: bool) -> Vec<f32> {
    let mut output = vec![f32::NAN; g.output_len()];
    let bias = with_bias.then_some(&data.bias[..]);
    conv::conv2d_forward(g, &data.input, &data.weight, bias, &mut output);
    output
}

/// The requested gradients (input, weight, bias), computed in buffers full of NaN.
type Gradients = [Option<Vec<f32>>; 3];

fn backward(g: &Conv2dGeometry, data: &Data, wanted: [bool; 3], fast: bool) -> Gradients {
    let lens = [g.input_len(), g.weight_len(), g.out_channels];
    let mut buffers: Gradients =
        std::array::from_fn(|i| wanted[i].then(|| vec![f32::NAN; lens[i]]));
    let [grad_input, grad_weight, grad_bias] = &mut buffers;
    let run = if fast {
        conv::conv2d_backward
    } else {
        reference::conv::conv2d_backward
    };
    let grads = Conv2dGradients {
        input: grad_input.as_deref_mut(),
        weight: grad_weight.as_deref_mut(),
        bias: grad_bias.as_deref_mut(),
    };
    run(g, &data.input, &data.weight, &data.grad_output, grads);
    buffers
}

fn check_forward(g: &Conv2dGeometry, data: &Data, with_bias: bool) {
    let mut expected = vec![0.0; g.output_len()];
    let bias = with_bias.then_some(&data.bias[..]);
    reference::conv::conv2d_forward(g, &data.input, &data.weight, bias, &mut expected);
    assert_eq!(
        bits(&forward(g, data, with_bias)),
        bits(&expected),
        "forward of {g:?}, bias {with_bias}"
    );
}

fn check_backward(g: &Conv2dGeometry, data: &Data, wanted: [bool; 3]) {
    let actual = backward(g, data, wanted, true);
    let expected = backward(g, data, wanted, false);
    for (name, (actual, expected)) in ["grad_input", "grad_weight", "grad_bias"]
        .iter()
        .zip(actual.iter().zip(&expected))
    {
        assert_eq!(
            actual.as_deref().map(bits),
            expected.as_deref().map(bits),
            "{name} of {g:?}"
        );
    }
}

fn valid_geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        1..=3_usize,
        1..=5_usize,
        1..=5_usize,
        (1..=12_usize, 1..=12_usize),
    )
        .prop_flat_map(|(batch, in_c, out_c, in_size)| {
            (
                Just((batch, in_c, out_c, in_size)),
                (1..=5_usize, 1..=5_usize),
                (1..=3_usize, 1..=3_usize),
                (0..=2_usize, 0..=2_usize),
            )
        })
        .prop_map(|((batch, in_c, out_c, in_size), kernel, stride, pad)| {
            geometry(batch, in_c, out_c, in_size, kernel, stride, pad)
        })
        .prop_filter("the kernel must fit the padded input", |g| {
            g.kernel_h <= g.in_h + 2 * g.pad_h && g.kernel_w <= g.in_w + 2 * g.pad_w
        })
}

/// Unit-stride geometries with 1x1, 3x3 and 5x5 kernels (square or not), padding 0 to 2,
/// and channel counts on both sides of a vector or a block of filters: the forwards that run
/// the implicit product (unpadded), and the input gradients that run it as a convolution
/// of their own (8 or more input channels, padding at least half the kernel).
fn unit_stride_geometry() -> impl Strategy<Value = Conv2dGeometry> {
    let side = prop_oneof![Just(1_usize), Just(3), Just(5)];
    (
        1..=3_usize,
        prop_oneof![1..=5_usize, 7..=13_usize],
        prop_oneof![
            Just(1_usize),
            Just(3),
            Just(5),
            Just(7),
            Just(13),
            2..=17_usize
        ],
        (1..=13_usize, 1..=13_usize),
        (side.clone(), side),
        (0..=2_usize, 0..=2_usize),
    )
        .prop_map(|(batch, in_c, out_c, in_size, kernel, pad)| {
            geometry(batch, in_c, out_c, in_size, kernel, (1, 1), pad)
        })
        .prop_filter("the kernel must fit the padded input", |g| {
            g.kernel_h <= g.in_h + 2 * g.pad_h && g.kernel_w <= g.in_w + 2 * g.pad_w
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unit_stride_forward_matches_the_reference(g in unit_stride_geometry(), seed in 0..1000_u64, with_bias: bool) {
        check_forward(&g, &Data::new(&g, seed), with_bias);
    }

    #[test]
    fn unit_stride_backward_matches_the_reference(g in unit_stride_geometry(), seed in 0..1000_u64, subset in 1..8_u8) {
        let wanted = [subset & 1 != 0, subset & 2 != 0, subset & 4 != 0];
        check_backward(&g, &Data::new(&g, seed), wanted);
    }

    #[test]
    fn forward_matches_the_reference(g in valid_geometry(), seed in 0..1000_u64, with_bias: bool) {
        check_forward(&g, &Data::new(&g, seed), with_bias);
    }

    #[test]
    fn backward_matches_the_reference(g in valid_geometry(), seed in 0..1000_u64, subset in 1..8_u8) {
        let wanted = [subset & 1 != 0, subset & 2 != 0, subset & 4 != 0];
        check_backward(&g, &Data::new(&g, seed), wanted);
    }
}

/// Geometries large enough to be cut into several tiles, channel blocks and tasks (with the
/// tiling constants of `conv/plan.rs` and `tuning.rs`), the 1x1 shapes that skip im2col, and
/// padded unit-stride layers whose input gradient runs on the implicit product.
fn larger_geometries() -> Vec<Conv2dGeometry> {
    vec![
        // MnistNet's second convolution, one image: tiles and channel blocks.
        geometry(1, 32, 64, (26, 26), (3, 3), (1, 1), (0, 0)),
        // Strided and padded, tiles whose col2im writes overlap across tile borders.
        geometry(3, 16, 8, (40, 40), (5, 5), (2, 2), (2, 2)),
        // Asymmetric kernel, strides and padding.
        geometry(2, 6, 10, (17, 23), (3, 5), (2, 1), (1, 2)),
        // Pointwise: no im2col, several tiles.
        geometry(2, 200, 20, (25, 25), (1, 1), (1, 1), (0, 0)),
        geometry(5, 3, 17, (9, 11), (1, 1), (1, 1), (0, 0)),
        // 1x1 but strided or padded: through im2col.
        geometry(2, 8, 8, (15, 15), (1, 1), (2, 2), (0, 0)),
        geometry(1, 4, 9, (6, 5), (1, 1), (1, 1), (2, 1)),
        // Many images, few channels: more tasks than threads, one tile each.
        geometry(17, 2, 3, (8, 8), (3, 3), (1, 1), (1, 1)),
        // Input gradients as convolutions: "same" padding, odd channels and sizes, one image
        // (split by filters) and several (split by positions), square and not.
        geometry(1, 13, 7, (19, 17), (3, 3), (1, 1), (1, 1)),
        geometry(3, 9, 5, (23, 21), (5, 5), (1, 1), (2, 2)),
        geometry(2, 8, 19, (15, 9), (3, 5), (1, 1), (1, 2)),
    ]
}

#[test]
fn larger_geometries_match_the_reference_on_any_number_of_threads() {
    for (index, g) in larger_geometries().iter().enumerate() {
        let data = Data::new(g, index as u64);
        let mut expected_forward = vec![0.0; g.output_len()];
        reference::conv::conv2d_forward(
            g,
            &data.input,
            &data.weight,
            Some(&data.bias),
            &mut expected_forward,
        );
        let expected_backward = backward(g, &data, [true; 3], false);
        for threads in [1, 2, 3] {
            let (output, gradients) = with_threads(threads, || {
                (forward(g, &data, true), backward(g, &data, [true; 3], true))
            });
            assert_eq!(
                bits(&output),
                bits(&expected_forward),
                "forward of {g:?} on {threads} threads"
            );
            for (actual, expected) in gradients.iter().zip(&expected_backward) {
                assert_eq!(
                    actual.as_deref().map(bits),
                    expected.as_deref().map(bits),
                    "backward of {g:?} on {threads} threads"
                );
            }
        }
    }
}

#[test]
fn gradients_are_the_same_bits_on_any_number_of_threads() {
    // Padded unit-stride layers (input gradients on the implicit product, cut by positions
    // for 5 images, by filters for 1), and a strided one (col2im).
    let layers = [
        geometry(5, 12, 24, (20, 20), (3, 3), (1, 1), (1, 1)),
        geometry(1, 13, 24, (21, 19), (5, 5), (1, 1), (2, 2)),
        geometry(3, 12, 16, (20, 20), (3, 3), (2, 2), (1, 1)),
    ];
    for g in layers {
        // Non-integer data, so that a change in summation order would show.
        let mut data = Data::new(&g, 7);
        for values in [&mut data.input, &mut data.weight, &mut data.grad_output] {
            for (i, v) in values.iter_mut().enumerate() {
                *v = *v * 0.37 + (i % 13) as f32 * 0.011;
            }
        }
        let one = with_threads(1, || backward(&g, &data, [true; 3], true));
        for threads in [2, 3, 4] {
            let many = with_threads(threads, || backward(&g, &data, [true; 3], true));
            for (a, b) in one.iter().zip(&many) {
                assert_eq!(
                    a.as_deref().map(bits),
                    b.as_deref().map(bits),
                    "{g:?} on {threads} threads"
                );
            }
        }
    }
}

#[test]
fn an_empty_batch_gives_zero_weight_and_bias_gradients() {
    let g = geometry(0, 3, 4, (5, 5), (3, 3), (1, 1), (0, 0));
    let data = Data::new(&g, 1);
    assert!(forward(&g, &data, true).is_empty());
    let [grad_input, grad_weight, grad_bias] = backward(&g, &data, [true; 3], true);
    assert_eq!(grad_input, Some(vec![]));
    assert_eq!(grad_weight, Some(vec![0.0; g.weight_len()]));
    assert_eq!(grad_bias, Some(vec![0.0; 4]));
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denormal_products_are_flushed_to_zero() {
    let g = geometry(1, 1, 1, (1, 1), (1, 1), (1, 1), (0, 0));
    let tiny = f32::MIN_POSITIVE;
    let mut output = [f32::NAN];
    conv::conv2d_forward(&g, &[0.5], &[tiny], None, &mut output);
    assert!(0.5 * tiny > 0.0, "the product is denormal, not zero");
    assert_eq!(output, [0.0]);
}

#[test]
#[should_panic(expected = "exceeds the padded input")]
fn a_kernel_larger_than_the_padded_input_is_refused() {
    let g = geometry(1, 1, 1, (2, 2), (4, 1), (1, 1), (0, 0));
    conv::conv2d_forward(&g, &[0.0; 4], &[0.0; 4], None, &mut []);
}

#[test]
#[should_panic(expected = "grad_weight length")]
fn backward_checks_every_length_before_writing() {
    let g = geometry(1, 1, 1, (3, 3), (3, 3), (1, 1), (0, 0));
    let mut grad_bias = [f32::NAN];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let grads = Conv2dGradients {
            input: None,
            weight: Some(&mut [0.0; 8]),
            bias: Some(&mut grad_bias),
        };
        conv::conv2d_backward(&g, &[0.0; 9], &[0.0; 9], &[1.0], grads);
    }));
    assert!(grad_bias[0].is_nan(), "nothing was written");
    std::panic::resume_unwind(result.expect_err("a wrong length panics"));
}

/// `sum(output * weights)` in f64, for a fixed set of output weights.
fn weighted_sum(output: &[f32], weights: &[f32]) -> f64 {
    output
        .iter()
        .zip(weights)
        .map(|(&o, &w)| f64::from(o) * f64::from(w))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The reference backward is the gradient of `L = sum(forward * grad_output)`: each
    /// central difference of L (exact, since L is linear in each argument and the data are
    /// integers) equals the matching gradient entry.
    #[test]
    fn reference_backward_matches_finite_differences_of_the_forward(
        g in valid_geometry().prop_filter("small", |g| g.input_len() + g.weight_len() <= 400),
        seed in 0..1000_u64,
    ) {
        let data = Data::new(&g, seed);
        let loss = |input: &[f32], weight: &[f32], bias: &[f32]| {
            let mut output = vec![0.0; g.output_len()];
            reference::conv::conv2d_forward(&g, input, weight, Some(bias), &mut output);
            weighted_sum(&output, &data.grad_output)
        };
        let central = |which: usize, index: usize| {
            let mut args = [data.input.clone(), data.weight.clone(), data.bias.clone()];
            args[which][index] += 1.0;
            let up = loss(&args[0], &args[1], &args[2]);
            args[which][index] -= 2.0;
            let down = loss(&args[0], &args[1], &args[2]);
            (up - down) / 2.0
        };
        let [grad_input, grad_weight, grad_bias] = backward(&g, &data, [true; 3], false);
        for (which, grad) in [grad_input, grad_weight, grad_bias].into_iter().enumerate() {
            for (index, &value) in grad.expect("requested").iter().enumerate() {
                prop_assert_eq!(f64::from(value), central(which, index), "argument {} index {}", which, index);
            }
        }
    }
}
