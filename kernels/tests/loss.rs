//! Softmax, log-softmax and cross-entropy kernels against their references, and the
//! references' backwards against finite differences of their forwards.

use proptest::prelude::*;
use rotor_kernels::loss;
use rotor_kernels::reference::loss as reference;

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

    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| scale * self.next()).collect()
    }

    fn targets(&mut self, rows: usize, cols: usize) -> Vec<u32> {
        (0..rows)
            .map(|_| (((self.next() + 1.0) / 2.0 * cols as f32) as u32).min(cols as u32 - 1))
            .collect()
    }
}

fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let same = (a.is_nan() && e.is_nan()) || (a - e).abs() <= tol * (1.0 + e.abs());
        assert!(same, "{what}[{i}]: got {a}, expected {e}");
    }
}

type Forward = fn(usize, usize, &[f32], &mut [f32]);
type Backward = fn(usize, usize, &[f32], &[f32], &mut [f32]);

/// Softmax and log-softmax, forward and backward, against the references; `scale` is the
/// logits' magnitude.
fn check_softmaxes(rows: usize, cols: usize, scale: f32, seed: u64) {
    let mut values = Values(seed);
    let x = values.vec(rows * cols, scale);
    let grad_y = values.vec(rows * cols, 1.0);
    let pairs: [(&str, Forward, Forward, Backward, Backward); 2] = [
        (
            "softmax",
            loss::softmax_forward,
            reference::softmax_forward,
            loss::softmax_backward,
            reference::softmax_backward,
        ),
        (
            "log_softmax",
            loss::log_softmax_forward,
            reference::log_softmax_forward,
            loss::log_softmax_backward,
            reference::log_softmax_backward,
        ),
    ];
    for (name, forward, ref_forward, backward, ref_backward) in pairs {
        let (mut y, mut ref_y) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
        forward(rows, cols, &x, &mut y);
        ref_forward(rows, cols, &x, &mut ref_y);
        assert!(y.iter().all(|v| v.is_finite()), "{name}: finite outputs");
        assert_close(&y, &ref_y, 1e-5, name);
        let (mut gx, mut ref_gx) = (vec![f32::NAN; x.len()], vec![0.0; x.len()]);
        backward(rows, cols, &ref_y, &grad_y, &mut gx);
        ref_backward(rows, cols, &ref_y, &grad_y, &mut ref_gx);
        assert_close(&gx, &ref_gx, 1e-5, &format!("{name} backward"));
    }
}

fn check_cross_entropy(rows: usize, cols: usize, scale: f32, seed: u64) {
    let mut values = Values(seed);
    let logits = values.vec(rows * cols, scale);
    let targets = values.targets(rows, cols);
    let (mut probs, mut ref_probs) = (vec![f32::NAN; logits.len()], vec![0.0; logits.len()]);
    let value = loss::cross_entropy_forward(rows, cols, &logits, &targets, &mut probs);
    let ref_value = reference::cross_entropy_forward(rows, cols, &logits, &targets, &mut ref_probs);
    if rows == 0 {
        assert!(
            value.is_nan() && ref_value.is_nan(),
            "the mean over no rows is NaN"
        );
    } else {
        assert!(
            value.is_finite(),
            "cross-entropy is finite for logits of magnitude {scale}"
        );
        assert_close(&[value], &[ref_value], 1e-5, "cross_entropy");
    }
    assert_close(&probs, &ref_probs, 1e-5, "cross_entropy probs");
    let (mut grad, mut ref_grad) = (vec![f32::NAN; logits.len()], vec![0.0; logits.len()]);
    loss::cross_entropy_backward(rows, cols, &ref_probs, &targets, 0.75, &mut grad);
    reference::cross_entropy_backward(rows, cols, &ref_probs, &targets, 0.75, &mut ref_grad);
    assert_close(&grad, &ref_grad, 1e-6, "cross_entropy backward");
}

#[test]
fn losses_match_reference_for_every_small_size() {
    for rows in 0..=20 {
        for cols in 0..=20 {
            check_softmaxes(rows, cols, 3.0, (rows * 21 + cols) as u64);
            if cols > 0 {
                check_cross_entropy(rows, cols, 3.0, (rows * 21 + cols) as u64);
            }
        }
    }
}

#[test]
fn losses_match_reference_on_large_multi_task_shapes() {
    for (rows, cols) in [(1000, 37), (3, 10_007), (4097, 10), (1, 40_000)] {
        check_softmaxes(rows, cols, 5.0, 21);
        check_cross_entropy(rows, cols, 5.0, 22);
    }
}

#[test]
fn huge_logits_stay_finite_and_exact() {
    for scale in [1e4, 3e4] {
        check_softmaxes(7, 13, scale, 23);
        check_cross_entropy(7, 13, scale, 24);
    }
    let logits = [1e4, -1e4, 0.0, -1e4, 1e4, 1e4];
    let mut probs = [f32::NAN; 6];
    let value = loss::cross_entropy_forward(2, 3, &logits, &[1, 2], &mut probs);
    // Row 0 puts all its mass on class 0 (loss 2e4 for class 1); row 1 splits it between
    // classes 1 and 2 (loss ln 2).
    assert_close(
        &[value],
        &[(2e4 + std::f32::consts::LN_2) / 2.0],
        1e-6,
        "loss",
    );
    assert_eq!(probs, [1.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
    let mut log_probs = [f32::NAN; 6];
    loss::log_softmax_forward(2, 3, &logits, &mut log_probs);
    assert_close(&log_probs[..3], &[0.0, -2e4, -1e4], 1e-6, "log_softmax");
}

#[test]
fn nan_logits_poison_their_row_and_masked_logits_get_zero() {
    // NOTE: 13 columns: one group of eight (vector path) and a tail of five (scalar path).
    let mut logits = Values(25).vec(4 * 13, 3.0);
    logits[13 + 3] = f32::NAN;
    logits[2 * 13 + 10] = f32::NAN;
    logits[3 * 13 + 2] = f32::NEG_INFINITY;
    logits[3 * 13 + 11] = f32::NEG_INFINITY;
    let mut probs = vec![f32::NAN; logits.len()];
    loss::softmax_forward(4, 13, &logits, &mut probs);
    assert!(probs[..13].iter().all(|p| p.is_finite()));
    assert!(probs[13..3 * 13].iter().all(|p| p.is_nan()));
    assert_eq!((probs[3 * 13 + 2], probs[3 * 13 + 11]), (0.0, 0.0));
    let mut ref_probs = vec![0.0; logits.len()];
    reference::softmax_forward(4, 13, &logits, &mut ref_probs);
    assert_close(&probs, &ref_probs, 1e-5, "softmax");
    let value = loss::cross_entropy_forward(4, 13, &logits, &[0, 1, 2, 3], &mut probs);
    assert!(value.is_nan());
}

#[test]
fn cross_entropy_of_no_rows_is_nan() {
    assert!(loss::cross_entropy_forward(0, 5, &[], &[], &mut []).is_nan());
}

proptest! {
    #[test]
    fn losses_match_reference(
        rows in 0..40usize, cols in 1..70usize, scale in 0.01f32..100.0, seed in any::<u64>()
    ) {
        check_softmaxes(rows, cols, scale, seed);
        check_cross_entropy(rows, cols, scale, seed);
    }
}

/// Central differences of `loss(x)` against `grad` for every element of `x`.
fn check_finite_differences(x0: &[f32], grad: &[f32], what: &str, loss: impl Fn(&[f32]) -> f64) {
    let h = 1e-2_f32;
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
            (numeric - analytic).abs() <= 1e-3 * (1.0 + analytic.abs()),
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

/// The reference backwards against central differences of the reference forwards, with the
/// losses `sum(y * weights)` and `grad_loss * cross_entropy`.
fn check_gradients(rows: usize, cols: usize, seed: u64) {
    let mut values = Values(seed);
    let x = values.vec(rows * cols, 2.0);
    let weights = values.vec(rows * cols, 1.0);
    let pairs: [(&str, Forward, Backward); 2] = [
        (
            "softmax",
            reference::softmax_forward,
            reference::softmax_backward,
        ),
        (
            "log_softmax",
            reference::log_softmax_forward,
            reference::log_softmax_backward,
        ),
    ];
    for (name, forward, backward) in pairs {
        let run = |x: &[f32]| {
            let mut y = vec![0.0; x.len()];
            forward(rows, cols, x, &mut y);
            y
        };
        let mut grad = vec![0.0; x.len()];
        backward(rows, cols, &run(&x), &weights, &mut grad);
        check_finite_differences(&x, &grad, name, |x| weighted_sum(&run(x), &weights));
    }

    let targets = values.targets(rows, cols);
    let grad_loss = 1.0 + values.next();
    let cross_entropy = |x: &[f32]| {
        let mut probs = vec![0.0; x.len()];
        let value = reference::cross_entropy_forward(rows, cols, x, &targets, &mut probs);
        (value, probs)
    };
    let mut grad = vec![0.0; x.len()];
    reference::cross_entropy_backward(
        rows,
        cols,
        &cross_entropy(&x).1,
        &targets,
        grad_loss,
        &mut grad,
    );
    check_finite_differences(&x, &grad, "cross_entropy", |x| {
        f64::from(grad_loss) * f64::from(cross_entropy(x).0)
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reference_backwards_match_finite_differences(
        rows in 1..5usize, cols in 1..8usize, seed in any::<u64>()
    ) {
        check_gradients(rows, cols, seed);
    }
}

#[test]
#[should_panic(expected = "target 3 of row 1 is not below the 3 classes")]
fn cross_entropy_rejects_a_target_out_of_range() {
    loss::cross_entropy_forward(2, 3, &[0.0; 6], &[0, 3], &mut [0.0; 6]);
}

#[test]
#[should_panic(expected = "target 5 of row 0")]
fn cross_entropy_backward_rejects_a_target_out_of_range() {
    loss::cross_entropy_backward(1, 5, &[0.2; 5], &[5], 1.0, &mut [0.0; 5]);
}

#[test]
#[should_panic(expected = "y length")]
fn softmax_rejects_a_short_output() {
    loss::softmax_forward(2, 3, &[0.0; 6], &mut [0.0; 5]);
}
