//! Batch-norm kernels against their references, and the references' backwards against
//! finite differences of their forwards.

use proptest::prelude::*;
use rotor_kernels::norm::{
    self, BatchNormGeometry, BatchNormGradients, BatchNormParams, RunningStatsUpdate,
};
use rotor_kernels::reference::norm as reference;

const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

/// Deterministic uniform values in `[-1, 1)` (SplitMix64).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next()).collect()
    }

    /// Values in `offset +- spread`.
    fn around(&mut self, len: usize, offset: f32, spread: f32) -> Vec<f32> {
        (0..len).map(|_| offset + spread * self.next()).collect()
    }
}

fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{what}[{i}]: got {a}, expected {e}"
        );
    }
}

/// Everything one batch-norm layer needs, with random parameters.
struct Case {
    g: BatchNormGeometry,
    input: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    grad_output: Vec<f32>,
}

impl Case {
    fn new(g: BatchNormGeometry, seed: u64, offset: f32, spread: f32) -> Self {
        let mut values = Values(seed);
        Case {
            g,
            input: values.around(g.input_len(), offset, spread),
            gamma: values.around(g.channels, 1.0, 0.5),
            beta: values.vec(g.channels),
            running_mean: values.vec(g.channels),
            running_var: values.around(g.channels, 1.0, 0.5),
            grad_output: values.vec(g.input_len()),
        }
    }
}

/// The layer parameters `gamma` and `beta` with the tests' `eps`.
fn params<'a>(gamma: &'a [f32], beta: &'a [f32]) -> BatchNormParams<'a> {
    BatchNormParams {
        gamma,
        beta,
        eps: EPS,
    }
}

/// Outputs of the training forward: output, save_mean, save_invstd, running_mean, running_var.
type TrainOutputs = [Vec<f32>; 5];

type TrainForward = fn(
    &BatchNormGeometry,
    &[f32],
    BatchNormParams<'_>,
    RunningStatsUpdate<'_>,
    &mut [f32],
    &mut [f32],
    &mut [f32],
);

fn run_train(
    forward: TrainForward,
    case: &Case,
    input: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> TrainOutputs {
    let (n, c) = (case.g.input_len(), case.g.channels);
    let (mut running_mean, mut running_var) = (case.running_mean.clone(), case.running_var.clone());
    let (mut output, mut save_mean, mut save_invstd) =
        (vec![f32::NAN; n], vec![f32::NAN; c], vec![f32::NAN; c]);
    forward(
        &case.g,
        input,
        params(gamma, beta),
        RunningStatsUpdate {
            mean: &mut running_mean,
            var: &mut running_var,
            momentum: MOMENTUM,
        },
        &mut output,
        &mut save_mean,
        &mut save_invstd,
    );
    [output, save_mean, save_invstd, running_mean, running_var]
}

fn run_eval(case: &Case, input: &[f32], gamma: &[f32], beta: &[f32], fast: bool) -> Vec<f32> {
    let mut output = vec![f32::NAN; case.g.input_len()];
    let forward = if fast {
        norm::batch_norm_forward_eval
    } else {
        reference::batch_norm_forward_eval
    };
    forward(
        &case.g,
        input,
        params(gamma, beta),
        &case.running_mean,
        &case.running_var,
        &mut output,
    );
    output
}

type TrainBackward =
    fn(&BatchNormGeometry, &[f32], &[f32], &[f32], &[f32], &[f32], BatchNormGradients<'_>);

type EvalBackward = fn(
    &BatchNormGeometry,
    &[f32],
    &[f32],
    BatchNormParams<'_>,
    &[f32],
    &[f32],
    BatchNormGradients<'_>,
);

/// The gradients `[input, gamma, beta]` that `backward` writes into NaN-filled buffers.
fn run_backward(case: &Case, backward: impl FnOnce(BatchNormGradients<'_>)) -> [Vec<f32>; 3] {
    let (n, c) = (case.g.input_len(), case.g.channels);
    let (mut input, mut gamma, mut beta) =
        (vec![f32::NAN; n], vec![f32::NAN; c], vec![f32::NAN; c]);
    backward(BatchNormGradients {
        input: &mut input,
        gamma: &mut gamma,
        beta: &mut beta,
    });
    [input, gamma, beta]
}

/// An evaluation backward of the case's input and running statistics.
fn run_eval_backward(
    backward: EvalBackward,
    case: &Case,
    grad_output: &[f32],
    grads: BatchNormGradients<'_>,
) {
    backward(
        &case.g,
        &case.input,
        grad_output,
        params(&case.gamma, &case.beta),
        &case.running_mean,
        &case.running_var,
        grads,
    );
}

/// Training forward and backward of the kernels against the references; `tol` bounds the
/// relative error of the normalised outputs and the gradients.
fn check_train(case: &Case, tol: f32) {
    let fast = run_train(
        norm::batch_norm_forward_train,
        case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
    let slow = run_train(
        reference::batch_norm_forward_train,
        case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
    for (i, what) in [
        "output",
        "save_mean",
        "save_invstd",
        "running_mean",
        "running_var",
    ]
    .iter()
    .enumerate()
    {
        let tol = if i == 0 { tol } else { 1e-6 };
        assert_close(&fast[i], &slow[i], tol, what);
    }

    let backwards = [
        norm::batch_norm_backward_train as TrainBackward,
        reference::batch_norm_backward_train,
    ];
    let [fast_grads, slow_grads] = backwards.map(|backward| {
        run_backward(case, |grads| {
            backward(
                &case.g,
                &case.input,
                &case.grad_output,
                &case.gamma,
                &slow[1],
                &slow[2],
                grads,
            );
        })
    });
    let scale = tol * (case.g.batch * case.g.plane) as f32;
    assert_close(&fast_grads[0], &slow_grads[0], tol, "grad_input");
    assert_close(&fast_grads[1], &slow_grads[1], scale, "grad_gamma");
    assert_close(&fast_grads[2], &slow_grads[2], scale, "grad_beta");
}

fn check_eval(case: &Case) {
    let fast = run_eval(case, &case.input, &case.gamma, &case.beta, true);
    let slow = run_eval(case, &case.input, &case.gamma, &case.beta, false);
    assert_close(&fast, &slow, 1e-5, "eval output");

    let backwards = [
        norm::batch_norm_backward_eval as EvalBackward,
        reference::batch_norm_backward_eval,
    ];
    let [fast_grads, slow_grads] = backwards.map(|backward| {
        run_backward(case, |grads| {
            run_eval_backward(backward, case, &case.grad_output, grads)
        })
    });
    let scale = 1e-6 * (case.g.batch * case.g.plane) as f32;
    assert_close(&fast_grads[0], &slow_grads[0], 1e-6, "eval grad_input");
    assert_close(&fast_grads[1], &slow_grads[1], scale, "eval grad_gamma");
    assert_close(&fast_grads[2], &slow_grads[2], scale, "eval grad_beta");
}

fn geometry(batch: usize, channels: usize, plane: usize) -> BatchNormGeometry {
    BatchNormGeometry {
        batch,
        channels,
        plane,
    }
}

#[test]
fn batch_norm_matches_reference_for_every_small_size() {
    for batch in 0..=3 {
        for channels in 0..=4 {
            for plane in 0..=20 {
                let case = Case::new(
                    geometry(batch, channels, plane),
                    (batch * 100 + channels * 30 + plane) as u64,
                    0.0,
                    1.0,
                );
                if batch * plane >= 2 {
                    check_train(&case, 1e-5);
                }
                check_eval(&case);
            }
        }
    }
}

#[test]
fn batch_norm_matches_reference_on_large_multi_task_shapes() {
    // Rows of a matrix (plane 1), long planes split across tasks, and an odd conv-like shape.
    for g in [
        geometry(67, 131, 1),
        geometry(1000, 37, 1),
        geometry(5, 3, 4099),
        geometry(3, 37, 577),
    ] {
        let case = Case::new(g, 11, 0.5, 2.0);
        check_train(&case, 1e-5);
        check_eval(&case);
    }
}

#[test]
fn batch_norm_with_two_values_per_channel() {
    for g in [geometry(2, 3, 1), geometry(1, 2, 2)] {
        let case = Case::new(g, 12, 0.0, 1.0);
        check_train(&case, 1e-5);
        let [output, save_mean, _, running_mean, running_var] = run_train(
            norm::batch_norm_forward_train,
            &case,
            &case.input,
            &case.gamma,
            &case.beta,
        );
        for c in 0..g.channels {
            let at = |k: usize| {
                if g.plane == 2 {
                    c * 2 + k
                } else {
                    k * g.channels + c
                }
            };
            let (a, b) = (case.input[at(0)], case.input[at(1)]);
            let half = (a - b) / 2.0;
            let expected_out = half / (half * half + EPS).sqrt() * case.gamma[c] + case.beta[c];
            assert_close(
                &[output[at(0)], save_mean[c]],
                &[expected_out, (a + b) / 2.0],
                1e-5,
                "two values",
            );
            let unbiased = (a - b) * (a - b) / 2.0;
            let expected_var = (1.0 - MOMENTUM) * case.running_var[c] + MOMENTUM * unbiased;
            let expected_mean = (1.0 - MOMENTUM) * case.running_mean[c] + MOMENTUM * (a + b) / 2.0;
            assert_close(
                &[running_mean[c], running_var[c]],
                &[expected_mean, expected_var],
                1e-6,
                "running statistics",
            );
        }
    }
}

#[test]
fn statistics_survive_a_large_mean() {
    // NOTE: with a mean of 1e4 and a spread of 0.5, E[x^2] - E[x]^2 in f32 loses every digit
    // of the variance; two passes keep it.
    let case = Case::new(geometry(8, 3, 100), 13, 1e4, 0.5);
    let fast = run_train(
        norm::batch_norm_forward_train,
        &case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
    let slow = run_train(
        reference::batch_norm_forward_train,
        &case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
    assert_close(&fast[2], &slow[2], 1e-6, "save_invstd");
    assert_close(&fast[4], &slow[4], 1e-6, "running_var");
    check_train(&case, 1e-5);
}

proptest! {
    #[test]
    fn batch_norm_matches_reference(
        batch in 1..5usize, channels in 0..6usize, plane in 1..40usize, offset in -50.0f32..50.0,
        spread in 0.01f32..10.0, seed in any::<u64>()
    ) {
        let case = Case::new(geometry(batch, channels, plane), seed, offset, spread);
        if batch * plane >= 2 {
            check_train(&case, 1e-5);
        }
        check_eval(&case);
    }
}

/// Central differences of `loss(x)` against `grad` for every element of `x`.
fn check_finite_differences(
    x0: &[f32],
    grad: &[f32],
    h: f32,
    tol: f64,
    what: &str,
    loss: impl Fn(&[f32]) -> f64,
) {
    let mut x = x0.to_vec();
    for i in 0..x.len() {
        x[i] = x0[i] + h;
        let up = loss(&x);
        x[i] = x0[i] - h;
        let down = loss(&x);
        x[i] = x0[i];
        let numeric = (up - down) / (2.0 * f64::from(h));
        let analytic = f64::from(grad[i]);
        assert!(
            (numeric - analytic).abs() <= tol * (1.0 + analytic.abs()),
            "{what}[{i}]: numeric {numeric}, analytic {analytic}"
        );
    }
}

fn weighted_sum(out: &[f32], weights: &[f32]) -> f64 {
    out.iter()
        .zip(weights)
        .map(|(&o, &w)| f64::from(o) * f64::from(w))
        .sum()
}

/// The gradients `[input, gamma, beta]` against central differences of the loss
/// `forward(input, gamma, beta)` in each of the case's values: for the input with the
/// `(step, tolerance)` given, for gamma and beta with `(1e-2, 1e-3)`.
fn check_against_differences(
    case: &Case,
    [grad_input, grad_gamma, grad_beta]: &[Vec<f32>; 3],
    (step, tolerance): (f32, f64),
    forward: impl Fn(&[f32], &[f32], &[f32]) -> f64,
) {
    let (input, gamma, beta) = (&case.input, &case.gamma, &case.beta);
    check_finite_differences(input, grad_input, step, tolerance, "grad_input", |x| {
        forward(x, gamma, beta)
    });
    check_finite_differences(gamma, grad_gamma, 1e-2, 1e-3, "grad_gamma", |g| {
        forward(input, g, beta)
    });
    check_finite_differences(beta, grad_beta, 1e-2, 1e-3, "grad_beta", |b| {
        forward(input, gamma, b)
    });
}

/// The reference training backward against central differences of the reference training
/// forward, for the input, gamma and beta, with the loss `sum(output * grad_output)`.
fn check_train_gradients(case: &Case) -> Result<(), TestCaseError> {
    let w = &case.grad_output;
    let forward = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        let train = run_train(reference::batch_norm_forward_train, case, x, gamma, beta);
        weighted_sum(&train[0], w)
    };
    let [_, save_mean, save_invstd, _, _] = run_train(
        reference::batch_norm_forward_train,
        case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
    // NOTE: the output bends on the scale of each channel's spread; keep the step well
    // below it so the differences measure the slope, not the curvature.
    prop_assume!(save_invstd.iter().all(|&s| s <= 10.0));
    let grads = run_backward(case, |grads| {
        reference::batch_norm_backward_train(
            &case.g,
            &case.input,
            w,
            &case.gamma,
            &save_mean,
            &save_invstd,
            grads,
        );
    });
    check_against_differences(case, &grads, (1e-3, 5e-3), forward);
    Ok(())
}

/// The reference eval backward against central differences of the reference eval forward.
fn check_eval_gradients(case: &Case) {
    let w = &case.grad_output;
    let forward = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        weighted_sum(&run_eval(case, x, gamma, beta, false), w)
    };
    let grads = run_backward(case, |grads| {
        run_eval_backward(reference::batch_norm_backward_eval, case, w, grads);
    });
    check_against_differences(case, &grads, (1e-2, 1e-3), forward);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn reference_train_backward_matches_finite_differences(
        batch in 1..4usize, channels in 1..4usize, plane in 1..6usize, seed in any::<u64>()
    ) {
        prop_assume!(batch * plane >= 2);
        check_train_gradients(&Case::new(geometry(batch, channels, plane), seed, 0.3, 1.0))?;
    }

    #[test]
    fn reference_eval_backward_matches_finite_differences(
        batch in 0..4usize, channels in 1..4usize, plane in 1..6usize, seed in any::<u64>()
    ) {
        check_eval_gradients(&Case::new(geometry(batch, channels, plane), seed, 0.3, 1.0));
    }
}

#[test]
#[should_panic(expected = "at least 2 values per channel")]
fn training_needs_two_values_per_channel() {
    let case = Case::new(geometry(1, 3, 1), 14, 0.0, 1.0);
    run_train(
        norm::batch_norm_forward_train,
        &case,
        &case.input,
        &case.gamma,
        &case.beta,
    );
}

#[test]
#[should_panic(expected = "gamma length")]
fn training_rejects_a_short_gamma() {
    let case = Case::new(geometry(2, 3, 2), 15, 0.0, 1.0);
    run_train(
        norm::batch_norm_forward_train,
        &case,
        &case.input,
        &case.gamma[..2],
        &case.beta,
    );
}
