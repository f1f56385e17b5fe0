//! A finite-difference gradient checker shared by the engine's tests.

#![allow(dead_code)] // NOTE: each test binary uses a different part of this module.

use rotor_engine::{Result, Rng, SeedableRng, SeededRng, Tensor};

/// Values of a kind that suits the op under test.
#[derive(Clone, Copy, Debug)]
pub enum Values {
    /// Uniform in [-2, 2].
    Any,
    /// Uniform in [0.5, 2]: for logarithms, square roots and divisors.
    Positive,
    /// Magnitude in [0.1, 2] with either sign: away from the kink of ReLU and abs.
    AwayFromZero,
    /// A shuffled ladder with steps of 0.05: no two values closer than the finite-difference
    /// step, so maxima never tie or swap under perturbation.
    Distinct,
    /// A shuffled ladder with steps of 0.5: any two values at least 0.5 apart, so that
    /// statistics over a few values (batch norm) stay well conditioned.
    Spread,
}

/// A tensor of the given shape with values of the given kind, from `seed`.
pub fn tensor(shape: &[usize], values: Values, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut rng = SeededRng::seed_from_u64(seed);
    let data: Vec<f32> = match values {
        Values::Any => (0..n).map(|_| rng.random_range(-2.0..2.0)).collect(),
        Values::Positive => (0..n).map(|_| rng.random_range(0.5..2.0)).collect(),
        Values::AwayFromZero => (0..n)
            .map(|_| {
                let m: f32 = rng.random_range(0.1..2.0);
                if rng.random::<bool>() { m } else { -m }
            })
            .collect(),
        Values::Distinct | Values::Spread => {
            let step = if matches!(values, Values::Distinct) {
                0.05
            } else {
                0.5
            };
            let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * step).collect();
            for i in (1..n).rev() {
                v.swap(i, rng.random_range(0..=i));
            }
            v
        }
    };
    Tensor::from_vec(data, shape).unwrap()
}

/// `t` with every value rounded to a multiple of 0.1 and then shifted by `offset`: values
/// snapped with offsets 0 and 0.05 are at least 0.05 apart, five finite-difference steps,
/// so maxima and clamps can be checked without crossing a kink.
pub fn snapped(t: &Tensor, offset: f32) -> Tensor {
    let data = t
        .as_slice()
        .iter()
        .map(|&v| (v * 10.0).round() / 10.0 + offset)
        .collect();
    Tensor::from_vec(data, t.shape()).unwrap()
}

/// Weights in [-1, 1] that make the checked loss `sum(w * f(x))`, so the gradient flowing
/// into the op is not all ones.
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x5eed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn weighted_sum(out: &Tensor, w: &[f32]) -> f64 {
    out.as_slice()
        .iter()
        .zip(w)
        .map(|(&y, &w)| f64::from(y) * f64::from(w))
        .sum()
}

/// Checks the gradients `backward` computes for `f` at `inputs` against central finite
/// differences of `sum(w * f(inputs))`, for every element of every input.
///
/// The loss is accumulated in f64 so that only the op's own f32 rounding limits the
/// finite differences. Panics with the input, index and both values on a mismatch.
pub fn check_gradients(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    const EPS: f32 = 1e-2;
    let leaves: Vec<Tensor> = inputs.iter().map(Tensor::requires_grad).collect();
    let out = f(&leaves).expect("the op under test failed");
    let w = weights(out.numel(), out.numel() as u64);
    let w_tensor = Tensor::from_vec(w.clone(), out.shape()).unwrap();
    let grads = out.backward_with(&w_tensor).unwrap();
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = grads
            .get(leaf)
            .map(Tensor::to_vec)
            .unwrap_or_else(|| vec![0.0; leaf.numel()]);
        assert_eq!(
            analytic.len(),
            leaf.numel(),
            "gradient {i} has the wrong size"
        );
        for j in 0..leaf.numel() {
            let eval = |delta: f32| {
                let mut moved: Vec<Tensor> = inputs.to_vec();
                let mut data = moved[i].to_vec();
                data[j] += delta;
                moved[i] = Tensor::from_vec(data, moved[i].shape()).unwrap();
                weighted_sum(&f(&moved).unwrap(), &w)
            };
            let numeric = ((eval(EPS) - eval(-EPS)) / (2.0 * f64::from(EPS))) as f32;
            let a = analytic[j];
            let tol = 1e-2 + 1e-2 * a.abs().max(numeric.abs());
            assert!(
                (a - numeric).abs() <= tol,
                "input {i} {:?}, element {j}: analytic {a} vs numeric {numeric}",
                leaf.shape()
            );
        }
    }
}
