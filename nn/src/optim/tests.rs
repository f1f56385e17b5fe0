//! The rules every optimizer shares, seen through the optimizers: skipped parameters,
//! frozen elements, the slope L1 penalty, denormal flushing. (The update rules themselves
//! are checked against PyTorch in `tests/optim_golden.rs`.)

use rotor_engine::{Gradients, Tensor};

use super::*;
use crate::layers::{Linear, RotatedRelu, Sequential};
use crate::param::{Param, ParamKind};

/// A linear layer `2 -> 3` without bias (`fc.weight`, 6 values) and a rotated ReLU
/// (`act.slope`, 3 values), holding the given values.
fn model(weight: &[f32], slopes: &[f32]) -> Sequential {
    let weight = Tensor::from_slice(weight, &[3, 2]).expect("weight");
    let fc = Linear {
        weight: Param::new(&weight, ParamKind::Weight),
        bias: None,
    };
    let slopes = Tensor::from_slice(slopes, &[3]).expect("slopes");
    Sequential::new()
        .push("fc", fc)
        .push("act", RotatedRelu::with_slopes(&slopes))
}

fn values(model: &Sequential, name: &str) -> Vec<f32> {
    let mut out = None;
    model.visit_params("", &mut |n, p| {
        if n == name {
            out = Some(p.tensor().to_vec());
        }
    });
    out.unwrap_or_else(|| panic!("no parameter {name}"))
}

fn set_frozen(model: &mut Sequential, name: &str, mask: Option<Vec<bool>>) {
    let mut mask = Some(mask);
    model.visit_params_mut("", &mut |n, p| {
        if n == name {
            p.set_frozen(mask.take().expect("one parameter of that name"));
        }
    });
}

/// Gradients equal to the given vectors for the named parameters (and none for the
/// others): those of `sum over (name, g) of sum(param * g)`.
fn gradients(model: &Sequential, given: &[(&str, &[f32])]) -> Gradients {
    let mut loss: Option<Tensor> = None;
    model.visit_params("", &mut |name, p| {
        if let Some((_, g)) = given.iter().find(|(n, _)| *n == name) {
            let g = Tensor::from_slice(g, p.shape()).expect("gradient shape");
            let term = p.tensor().mul(&g).expect("same shape").sum();
            loss = Some(match loss.take() {
                Some(l) => l.add(&term).expect("scalars"),
                None => term,
            });
        }
    });
    loss.expect("at least one gradient")
        .backward()
        .expect("backward")
}

/// One step of `opt` on `model` with the given gradients.
fn step(opt: &mut impl Optimizer, model: &mut Sequential, given: &[(&str, &[f32])]) {
    let grads = gradients(model, given);
    opt.step(model, &grads);
}

const WEIGHT: [f32; 6] = [0.5, -0.25, 1.0, 2.0, -1.5, 0.75];

#[test]
fn parameters_without_a_gradient_are_skipped_and_keep_fresh_state() {
    let mut m = model(&WEIGHT, &[1.0, -1.0, 0.5]);
    let mut opt = Sgd::new(0.5).momentum(0.9);
    for _ in 0..3 {
        step(&mut opt, &mut m, &[("fc.weight", &[1.0; 6])]);
    }
    assert_eq!(
        values(&m, "act.slope"),
        [1.0, -1.0, 0.5],
        "no gradient, no change"
    );
    step(&mut opt, &mut m, &[("act.slope", &[2.0; 3])]);
    // A fresh momentum buffer makes the first step plain SGD: a - 0.5 * 2.
    assert_eq!(values(&m, "act.slope"), [0.0, -2.0, -0.5]);
}

#[test]
fn slope_l1_pulls_slopes_towards_zero_and_leaves_other_parameters() {
    let slopes = [2.0, -0.5, 0.0];
    let zeros = [("fc.weight", &[0.0; 6][..]), ("act.slope", &[0.0; 3][..])];

    let mut m = model(&WEIGHT, &slopes);
    let mut sgd = Sgd::new(1.0).slope_l1(0.25);
    step(&mut sgd, &mut m, &zeros);
    assert_eq!(values(&m, "act.slope"), [1.75, -0.25, 0.0]);
    assert_eq!(values(&m, "fc.weight"), WEIGHT);

    // Adam's first step moves each element by lr times the sign of its gradient (to
    // within eps / slope_l1 = 1e-6 relative).
    let mut m = model(&WEIGHT, &slopes);
    let mut adam = Adam::new(0.125).slope_l1(1e-2);
    step(&mut adam, &mut m, &zeros);
    let got = values(&m, "act.slope");
    for (g, want) in got.iter().zip([1.875, -0.375, 0.0]) {
        assert!((g - want).abs() < 1e-5, "{got:?}");
    }
    assert_eq!(values(&m, "fc.weight"), WEIGHT);
}

#[test]
fn frozen_elements_keep_their_value_and_their_momentum() {
    let mut m = model(&WEIGHT, &[1.0, 1.0, 1.0]);
    set_frozen(&mut m, "act.slope", Some(vec![true, false, false]));
    let mut opt = Sgd::new(0.1).momentum(0.5);
    let ones = [("act.slope", &[1.0; 3][..])];
    for _ in 0..2 {
        step(&mut opt, &mut m, &ones);
    }
    // Buffers of the free elements: 1, then 1.5; values 1 - 0.1 - 0.15.
    let got = values(&m, "act.slope");
    assert_eq!(got[0], 1.0);
    assert!((got[1] - 0.75).abs() < 1e-6, "{got:?}");

    set_frozen(&mut m, "act.slope", None);
    step(&mut opt, &mut m, &ones);
    let got = values(&m, "act.slope");
    // The formerly frozen element starts from an empty buffer; the others continue.
    assert!((got[0] - 0.9).abs() < 1e-6, "{got:?}");
    assert!((got[1] - (0.75 - 0.1 * 1.75)).abs() < 1e-6, "{got:?}");
}

#[test]
fn a_wholly_frozen_parameter_does_not_advance_its_step_count() {
    let ones = [("fc.weight", &[1.0; 6][..]), ("act.slope", &[1.0; 3][..])];
    let mut frozen_first = model(&WEIGHT, &[1.0, -1.0, 0.5]);
    set_frozen(&mut frozen_first, "act.slope", Some(vec![true; 3]));
    let mut opt = AdamW::new(0.01);
    for _ in 0..3 {
        step(&mut opt, &mut frozen_first, &ones);
    }
    assert_eq!(values(&frozen_first, "act.slope"), [1.0, -1.0, 0.5]);
    set_frozen(&mut frozen_first, "act.slope", None);

    let mut fresh = model(&WEIGHT, &[1.0, -1.0, 0.5]);
    let mut fresh_opt = AdamW::new(0.01);
    for _ in 0..2 {
        step(&mut opt, &mut frozen_first, &ones);
        step(&mut fresh_opt, &mut fresh, &ones);
    }
    assert_eq!(
        values(&frozen_first, "act.slope"),
        values(&fresh, "act.slope")
    );
}

#[test]
fn decayed_weights_become_zero_never_denormal() {
    let tiny = 1e-36;
    let mut m = model(&[tiny, -tiny, tiny, tiny, tiny, tiny], &[1.0; 3]);
    let mut opt = Sgd::new(0.5).momentum(0.5).weight_decay(1.0);
    let mut reached_zero = false;
    for _ in 0..40 {
        step(&mut opt, &mut m, &[("fc.weight", &[0.0; 6])]);
        let w = values(&m, "fc.weight");
        assert!(w.iter().all(|v| *v == 0.0 || v.is_normal()), "{w:?}");
        reached_zero |= w.iter().all(|v| *v == 0.0);
    }
    assert!(
        reached_zero,
        "weight decay drives the weights to exactly zero"
    );
}

#[test]
fn the_learning_rate_can_be_read_and_set() {
    let mut opts: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::default()),
        Box::new(Adam::default()),
        Box::new(AdamW::default()),
    ];
    for opt in &mut opts {
        assert_eq!(opt.lr(), 1e-3, "PyTorch's default");
        opt.set_lr(0.5);
        assert_eq!(opt.lr(), 0.5);
    }
}

#[test]
#[should_panic(expected = "Nesterov momentum needs a non-zero momentum")]
fn nesterov_without_momentum_is_refused() {
    let mut m = model(&WEIGHT, &[1.0; 3]);
    step(
        &mut Sgd::new(0.1).nesterov(true),
        &mut m,
        &[("act.slope", &[1.0; 3])],
    );
}

#[test]
fn norm_scale_l1_pulls_batch_norm_scales_and_leaves_slopes() {
    use rotor_engine::{SeedableRng, SeededRng};

    let mut rng = SeededRng::seed_from_u64(3);
    let mut bn = crate::BatchNorm2d::new(3).unwrap();
    bn.weight.update(|g| g.copy_from_slice(&[2.0, -0.5, 0.0]));
    let x = Tensor::rand_uniform(&[4, 3], -1.0, 1.0, &mut rng).unwrap();
    // A loss whose gradient with respect to gamma is zero: the sum of a batch norm's
    // output does not depend on its scale.
    let grads = bn.forward_train(&x).unwrap().sum().backward().unwrap();
    let mut sgd = Sgd::new(1.0).norm_scale_l1(0.25).slope_l1(10.0);
    sgd.step(&mut bn, &grads);
    let got = bn.weight.tensor().to_vec();
    for (g, want) in got.iter().zip([1.75, -0.25, 0.0]) {
        assert!((g - want).abs() < 1e-5, "{got:?}");
    }
}
