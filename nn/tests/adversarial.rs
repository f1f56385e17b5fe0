//! FGSM and PGD: the closed form on a linear model, PyTorch's input gradient and FGSM on a
//! small conv net, the budget and range PGD must keep, and reproducibility.

mod fixture;

use fixture::{Fixture, names_with_op};
use proptest::prelude::*;
use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::adversarial::{
    Attack, InputDomain, Pgd, RobustnessSettings, input_gradient, robust_accuracy,
};
use rotor_nn::{
    Conv2d, Flatten, Linear, MaxPool2d, Module, Param, ParamKind, RotatedRelu, Sequential,
};

/// Relative tolerance of the PyTorch comparisons (the layers' golden tolerance).
const REL_TOL: f64 = 1e-4;

fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape).unwrap()
}

/// A linear classifier `x W^T + b` with the given weights.
fn linear(weight: &[f32], bias: &[f32], inputs: usize) -> Linear {
    Linear {
        weight: Param::new(&tensor(weight, &[bias.len(), inputs]), ParamKind::Weight),
        bias: Some(Param::new(&tensor(bias, &[bias.len()]), ParamKind::Bias)),
    }
}

/// A small conv net with seeded weights: conv 3x3 to 4 channels, rotated ReLU, 2x2 max
/// pool, a linear layer to 3 classes, on `[N, 1, 6, 6]` inputs.
fn conv_net(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    Sequential::new()
        .push("conv", Conv2d::new(1, 4, 3, 1, 0, &mut rng).unwrap())
        .push("act", RotatedRelu::new(4, &mut rng).unwrap())
        .push("pool", MaxPool2d::new(2))
        .push("flatten", Flatten)
        .push("fc", Linear::new(16, 3, true, &mut rng).unwrap())
}

/// `n` images of `[1, 6, 6]` uniform in `[low, high]`, and labels in `0..3`.
fn images(n: usize, (low, high): (f32, f32), seed: u64) -> (Tensor, Vec<u32>) {
    let mut rng = SeededRng::seed_from_u64(seed);
    let x = Tensor::rand_uniform(&[n, 1, 6, 6], low, high, &mut rng).unwrap();
    let labels = (0..n as u32).map(|i| (i * 7 + seed as u32) % 3).collect();
    (x, labels)
}

#[test]
fn every_attack_fixture_is_tested() {
    assert_eq!(names_with_op("input_gradient"), ["input_gradient"]);
}

#[test]
fn input_gradient_and_fgsm_match_pytorch() {
    let f = Fixture::load("input_gradient");
    let model = Sequential::new()
        .push(
            "conv",
            Conv2d {
                weight: Param::new(&f.tensor("conv_weight"), ParamKind::Weight),
                bias: Some(Param::new(&f.tensor("conv_bias"), ParamKind::Bias)),
                stride: [1, 1],
                padding: [0, 0],
            },
        )
        .push("act", RotatedRelu::with_slopes(&f.tensor("slope")))
        .push("pool", MaxPool2d::new(2))
        .push("flatten", Flatten)
        .push(
            "fc",
            Linear {
                weight: Param::new(&f.tensor("linear_weight"), ParamKind::Weight),
                bias: Some(Param::new(&f.tensor("linear_bias"), ParamKind::Bias)),
            },
        );
    let input = f.tensor("input");
    let targets: Vec<u32> = f.f64s("targets").1.iter().map(|&t| t as u32).collect();
    let gradient = input_gradient(&model, &input, &targets).unwrap();
    f.check("grad_input", gradient.as_slice(), REL_TOL);

    let domain = InputDomain::new(f.meta_f64("low") as f32, f.meta_f64("high") as f32).unwrap();
    let epsilon = f.meta_f64("epsilon") as f32;
    let mut rng = SeededRng::seed_from_u64(0);
    let adversarial = Attack::Fgsm
        .perturb(&model, &input, &targets, epsilon, &domain, &mut rng)
        .unwrap();
    f.check("fgsm", adversarial.as_slice(), REL_TOL);
}

/// On `x W^T + b` with mean cross-entropy, the input gradient is `(softmax - onehot) W / N`,
/// and FGSM moves each input by `epsilon / std` (model units) along its sign, then clamps
/// to the normalised range.
#[test]
fn fgsm_on_a_linear_model_is_the_closed_form() {
    let (n, inputs, classes) = (4, 5, 3);
    let weight: Vec<f32> = (0..classes * inputs)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let bias = [0.1, -0.2, 0.3];
    let model = linear(&weight, &bias, inputs);
    let domain = InputDomain::new(0.0, 1.0)
        .unwrap()
        .normalized(0.25, 0.5)
        .unwrap();
    let (low, high) = domain.model_bounds();
    let x: Vec<f32> = (0..n * inputs)
        .map(|i| low + (high - low) * ((i * 13 % 17) as f32 / 16.0))
        .collect();
    let labels = [0u32, 2, 1, 2];
    let epsilon = 0.1;

    let mut expected = Vec::new();
    for r in 0..n {
        let row = &x[r * inputs..(r + 1) * inputs];
        let logits: Vec<f64> = (0..classes)
            .map(|k| {
                let w = &weight[k * inputs..(k + 1) * inputs];
                f64::from(bias[k])
                    + row
                        .iter()
                        .zip(w)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum::<f64>()
            })
            .collect();
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|l| (l - top).exp()).sum();
        for i in 0..inputs {
            let gradient: f64 = (0..classes)
                .map(|k| {
                    let p = (logits[k] - top).exp() / total;
                    let onehot = if k as u32 == labels[r] { 1.0 } else { 0.0 };
                    (p - onehot) * f64::from(weight[k * inputs + i]) / n as f64
                })
                .sum();
            let moved = f64::from(row[i]) + f64::from(epsilon / 0.5) * gradient.signum();
            expected.push(moved.clamp(f64::from(low), f64::from(high)) as f32);
        }
    }
    let images = tensor(&x, &[n, inputs]);
    let mut rng = SeededRng::seed_from_u64(0);
    let got = Attack::Fgsm
        .perturb(&model, &images, &labels, epsilon, &domain, &mut rng)
        .unwrap();
    for (i, (&g, &e)) in got.as_slice().iter().zip(&expected).enumerate() {
        assert!((g - e).abs() <= 1e-6, "element {i}: {g} against {e}");
    }
}

#[test]
fn a_strong_attack_defeats_a_linear_classifier() {
    // Class 0 when x0 > x1; PGD with a budget of half the range flips every image.
    let model = linear(&[1.0, -1.0, -1.0, 1.0], &[0.0, 0.0], 2);
    let images = tensor(&[0.7, 0.4, 0.2, 0.6, 0.9, 0.55], &[3, 2]);
    let labels = [0u32, 1, 0];
    let domain = InputDomain::new(0.0, 1.0).unwrap();
    let clean = model.forward(&images).unwrap().argmax(-1).unwrap();
    assert_eq!(clean, [0, 1, 0]);
    let mut rng = SeededRng::seed_from_u64(1);
    let adversarial = Attack::Pgd(Pgd::default())
        .perturb(&model, &images, &labels, 0.5, &domain, &mut rng)
        .unwrap();
    let predicted = model.forward(&adversarial).unwrap().argmax(-1).unwrap();
    assert_eq!(predicted, [1, 0, 1]);
}

#[test]
fn pgd_with_zero_steps_and_no_random_start_leaves_the_images_alone() {
    let model = conv_net(3);
    let domain = InputDomain::new(0.0, 1.0)
        .unwrap()
        .normalized(0.13, 0.31)
        .unwrap();
    let (x, labels) = images(20, domain.model_bounds(), 4);
    let pgd = Attack::Pgd(Pgd {
        steps: 0,
        relative_step: 0.25,
        random_start: false,
    });
    let mut rng = SeededRng::seed_from_u64(5);
    let same = pgd
        .perturb(&model, &x, &labels, 0.3, &domain, &mut rng)
        .unwrap();
    assert_eq!(same.as_slice(), x.as_slice());

    let batches = vec![Ok((x.clone(), labels.clone()))];
    let settings = RobustnessSettings {
        attacks: vec![pgd],
        epsilons: vec![0.1, 0.3],
        domain,
        seed: 0,
    };
    let robustness = robust_accuracy(&model, batches, &settings, &mut |_| {}).unwrap();
    let clean = model.forward(&x).unwrap().argmax(-1).unwrap();
    let correct = clean
        .iter()
        .zip(&labels)
        .filter(|&(&p, &l)| p == l as usize)
        .count();
    assert_eq!(robustness.clean_accuracy, correct as f64 / 20.0);
    for point in &robustness.curves[0].points {
        assert_eq!(point.accuracy, robustness.clean_accuracy);
    }
}

#[test]
fn robust_accuracy_counts_every_batch_and_reports_progress() {
    let model = conv_net(6);
    let domain = InputDomain::new(0.0, 1.0).unwrap();
    let batches: Vec<_> = (0..3)
        .map(|b| Ok(images(7 + b, (0.0, 1.0), b as u64)))
        .collect();
    let settings = RobustnessSettings {
        attacks: vec![Attack::Fgsm, Attack::Pgd(Pgd::default())],
        epsilons: vec![0.0, 0.2, 1.0],
        domain,
        seed: 9,
    };
    let mut seen = Vec::new();
    let r = robust_accuracy(&model, batches, &settings, &mut |n| seen.push(n)).unwrap();
    assert_eq!(seen, [7, 15, 24]);
    assert_eq!(r.images, 24);
    assert_eq!(r.curves.len(), 2);
    for curve in &r.curves {
        let accuracies: Vec<f64> = curve.points.iter().map(|p| p.accuracy).collect();
        // No budget, no change; the whole range as budget leaves a 3-class net little.
        assert_eq!(accuracies[0], r.clean_accuracy, "{}", curve.attack.name());
        assert!(accuracies[2] <= r.clean_accuracy, "{}", curve.attack.name());
        assert!(curve.points.iter().all(|p| p.seconds_per_image > 0.0));
    }
    assert!(r.seconds_per_gradient_pass > 0.0);
}

#[test]
fn bad_budgets_and_empty_data_are_errors() {
    let model = conv_net(1);
    let domain = InputDomain::new(0.0, 1.0).unwrap();
    let (x, labels) = images(2, (0.0, 1.0), 0);
    let mut rng = SeededRng::seed_from_u64(0);
    for epsilon in [-0.1, f32::NAN, f32::INFINITY] {
        let e = Attack::Fgsm.perturb(&model, &x, &labels, epsilon, &domain, &mut rng);
        assert!(e.unwrap_err().to_string().contains("epsilon"));
    }
    let bad_step = Attack::Pgd(Pgd {
        relative_step: -1.0,
        ..Pgd::default()
    });
    assert!(
        bad_step
            .perturb(&model, &x, &labels, 0.1, &domain, &mut rng)
            .is_err()
    );
    let settings = RobustnessSettings {
        attacks: vec![Attack::Fgsm],
        epsilons: vec![0.1],
        domain,
        seed: 0,
    };
    let none: Vec<rotor_engine::Result<(Tensor, Vec<u32>)>> = Vec::new();
    let e = robust_accuracy(&model, none, &settings, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("no images"));
    let wrong_labels = vec![Ok((x, vec![0u32]))];
    assert!(robust_accuracy(&model, wrong_labels, &settings, &mut |_| {}).is_err());
}

#[test]
fn attacks_are_reproducible_for_a_seed() {
    let model = conv_net(2);
    let domain = InputDomain::new(0.0, 1.0).unwrap();
    let (x, labels) = images(5, (0.0, 1.0), 8);
    let pgd = Attack::Pgd(Pgd {
        steps: 3,
        ..Pgd::default()
    });
    let run = |seed| {
        let mut rng = SeededRng::seed_from_u64(seed);
        pgd.perturb(&model, &x, &labels, 0.2, &domain, &mut rng)
            .unwrap()
            .to_vec()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12), "the random start follows the seed");

    let settings = |seed| RobustnessSettings {
        attacks: vec![pgd],
        epsilons: vec![0.05, 0.2],
        domain,
        seed,
    };
    let evaluate = |s: &RobustnessSettings| {
        let batches = vec![Ok((x.clone(), labels.clone()))];
        robust_accuracy(&model, batches, s, &mut |_| {}).unwrap()
    };
    let accuracies = |s| -> Vec<f64> {
        evaluate(&settings(s)).curves[0]
            .points
            .iter()
            .map(|p| p.accuracy)
            .collect()
    };
    assert_eq!(accuracies(4), accuracies(4));
    // A budget's result does not depend on the other budgets asked.
    let alone = RobustnessSettings {
        epsilons: vec![0.2],
        ..settings(4)
    };
    assert_eq!(
        evaluate(&alone).curves[0].points[0].accuracy,
        accuracies(4)[1]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every value PGD returns is within epsilon of the clean one and inside the range,
    /// clean images at the range's edges included.
    #[test]
    fn pgd_stays_in_the_ball_and_the_range(
        epsilon in 0.0f32..1.5,
        relative_step in 0.0f32..1.0,
        steps in 0usize..4,
        random_start: bool,
        seed: u64,
        mean in -0.5f32..0.5,
        std in 0.1f32..2.0,
        edges in proptest::collection::vec(0usize..3, 36),
    ) {
        let model = conv_net(seed % 5);
        let domain = InputDomain::new(0.0, 1.0).unwrap().normalized(mean, std).unwrap();
        let (low, high) = domain.model_bounds();
        let (x, labels) = images(1, (low, high), seed);
        let x: Vec<f32> = x
            .as_slice()
            .iter()
            .zip(&edges)
            .map(|(&v, &e)| [v, low, high][e])
            .collect();
        let x = tensor(&x, &[1, 1, 6, 6]);
        let attack = Attack::Pgd(Pgd { steps, relative_step, random_start });
        let mut rng = SeededRng::seed_from_u64(seed);
        let adversarial = attack.perturb(&model, &x, &labels, epsilon, &domain, &mut rng).unwrap();
        let radius = domain.model_distance(epsilon);
        for (&a, &c) in adversarial.as_slice().iter().zip(x.as_slice()) {
            prop_assert!(a >= low && a <= high, "{a} outside [{low}, {high}]");
            let slack = 1e-6 * c.abs().max(1.0);
            prop_assert!((a - c).abs() <= radius + slack, "{a} is {} from {c}, budget {radius}", (a - c).abs());
        }
    }
}
