//! The CIFAR residual networks and VGGs: sizes against the published figures, shapes,
//! argument errors, a few training steps that lower the loss, and compaction equal to
//! masking.

use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::models::{Activation, cifar_resnet, cifar_vgg};
use rotor_nn::prune::{self, GateKind, PrunePlan, Savings};
use rotor_nn::{Module, ModuleExt, Optimizer, Sequential, Sgd};

/// Parameters and multiply-accumulates of one 3x32x32 image.
fn size(net: &Sequential) -> (u64, u64) {
    let plan = PrunePlan::new(net, GateKind::Slope, 0.0).unwrap();
    let savings = Savings::new(net, &plan, &[3, 32, 32]).unwrap();
    (savings.total.params_before, savings.total.flops_before / 2)
}

/// A plain-ReLU ResNet of `depth` for ten classes.
fn resnet(depth: usize) -> Sequential {
    cifar_resnet(
        depth,
        Activation::Relu,
        3,
        10,
        &mut SeededRng::seed_from_u64(0),
    )
    .unwrap()
}

/// A plain-ReLU VGG of `depth` for ten classes.
fn vgg(depth: usize) -> Sequential {
    cifar_vgg(
        depth,
        Activation::Relu,
        3,
        10,
        &mut SeededRng::seed_from_u64(0),
    )
    .unwrap()
}

/// `value` within `tolerance` (relative) of the `published` figure.
fn assert_near(what: &str, value: u64, published: f64, tolerance: f64) {
    let ratio = value as f64 / published;
    assert!(
        (ratio - 1.0).abs() <= tolerance,
        "{what}: {value} against about {published}"
    );
}

#[test]
fn sizes_match_the_published_figures() {
    // He et al. 2016, table 6: 0.27 M, 0.85 M and 1.7 M parameters; about 41 M and 125 M
    // multiply-accumulates for ResNet-20 and ResNet-56 (as FLOP counters report them).
    let (params, macs) = size(&resnet(20));
    assert_near("ResNet-20 parameters", params, 0.27e6, 0.02);
    assert_near("ResNet-20 multiply-accumulates", macs, 41e6, 0.02);
    let (params, macs) = size(&resnet(56));
    assert_near("ResNet-56 parameters", params, 0.85e6, 0.02);
    assert_near("ResNet-56 multiply-accumulates", macs, 125e6, 0.02);
    let (params, _) = size(&resnet(110));
    assert_near("ResNet-110 parameters", params, 1.7e6, 0.02);
    // Liu et al. 2017, table 1: VGG-19 on CIFAR-10, 20.04 M parameters and 7.97e8 FLOPs
    // (twice the multiply-accumulates). VGG-16 by the same recipe: 14.72 M and 6.27e8.
    let (params, macs) = size(&vgg(19));
    assert_near("VGG-19 parameters", params, 20.04e6, 0.001);
    assert_near("VGG-19 FLOPs", 2 * macs, 7.97e8, 0.002);
    let (params, macs) = size(&vgg(16));
    assert_near("VGG-16 parameters", params, 14.72e6, 0.001);
    assert_near("VGG-16 FLOPs", 2 * macs, 6.27e8, 0.002);
}

#[test]
fn logits_for_any_input_channels_and_classes() {
    let mut rng = SeededRng::seed_from_u64(1);
    let net = cifar_resnet(8, Activation::Rotated, 1, 7, &mut rng).unwrap();
    let x = Tensor::rand_normal(&[2, 1, 12, 12], 0.0, 1.0, &mut rng).unwrap();
    assert_eq!(net.forward(&x).unwrap().shape(), [2, 7]);
    let net = cifar_vgg(16, Activation::Rotated, 1, 7, &mut rng).unwrap();
    let x = Tensor::rand_normal(&[2, 1, 16, 16], 0.0, 1.0, &mut rng).unwrap();
    assert_eq!(net.forward(&x).unwrap().shape(), [2, 7]);
}

#[test]
fn unknown_depths_and_empty_sizes_are_errors() {
    let mut rng = SeededRng::seed_from_u64(2);
    for (depth, channels, classes) in [(2, 3, 10), (21, 3, 10), (0, 3, 10), (20, 0, 10), (20, 3, 0)]
    {
        let error = cifar_resnet(depth, Activation::Relu, channels, classes, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(error.contains("6n + 2"), "{error}");
    }
    for (depth, channels, classes) in [(11, 3, 10), (20, 3, 10), (16, 0, 10), (19, 3, 0)] {
        let error = cifar_vgg(depth, Activation::Relu, channels, classes, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(error.contains("16 or 19"), "{error}");
    }
}

/// Ten SGD steps on one batch of 8 random 3x16x16 images halve the loss.
fn lowers_the_loss(mut net: Sequential, rng: &mut SeededRng) {
    let x = Tensor::rand_normal(&[8, 3, 16, 16], 0.0, 1.0, rng).unwrap();
    let labels = [0, 1, 2, 3, 3, 2, 1, 0];
    let mut sgd = Sgd::new(0.05).momentum(0.9);
    let mut losses = Vec::new();
    for _ in 0..10 {
        let loss = net
            .forward_train(&x)
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        losses.push(loss.to_vec()[0]);
        let grads = loss.backward().unwrap();
        sgd.step(&mut net, &grads);
    }
    assert!(
        losses[9] < 0.5 * losses[0],
        "losses did not fall by half: {losses:?}"
    );
}

#[test]
fn a_few_steps_lower_the_loss() {
    let mut rng = SeededRng::seed_from_u64(3);
    let resnet = cifar_resnet(8, Activation::Rotated, 3, 4, &mut rng).unwrap();
    lowers_the_loss(resnet, &mut rng);
    let vgg = cifar_vgg(16, Activation::Rotated, 3, 4, &mut rng).unwrap();
    lowers_the_loss(vgg, &mut rng);
}

/// Zeroes every third channel of each gate (the parameters `is_gate` picks by name), then
/// checks that the compacted network computes what the masked one does
/// and is smaller; returns the number of gates.
fn compaction_equals_masking(
    mut net: Sequential,
    gate: GateKind,
    is_gate: impl Fn(&str) -> bool,
    rng: &mut SeededRng,
) -> usize {
    let mut gates = 0;
    net.visit_params_mut("", &mut |name, param| {
        if is_gate(name) {
            gates += 1;
            let channels = param.tensor().numel();
            param.update(|a| (0..channels).step_by(3).for_each(|c| a[c] = 0.0));
        }
    });
    let plan = PrunePlan::new(&net, gate, 0.0).unwrap();
    prune::mask(&mut net, &plan);
    let x = Tensor::rand_normal(&[2, 3, 16, 16], 0.0, 1.0, rng).unwrap();
    let masked = net.forward(&x).unwrap();
    let dense_params = net.param_count();
    let small = prune::compact(net, &plan).unwrap();
    assert!(small.param_count() < dense_params);
    let compacted = small.forward(&x).unwrap();
    for (m, c) in masked.as_slice().iter().zip(compacted.as_slice()) {
        assert!(
            (m - c).abs() <= 1e-5 * (1.0 + m.abs()),
            "masked {m}, compacted {c}"
        );
    }
    gates
}

#[test]
fn compacting_dead_channels_equals_masking_them() {
    let mut rng = SeededRng::seed_from_u64(4);
    // Rotated-ReLU gates inside blocks and on the residual stream, in every stage.
    let resnet = cifar_resnet(14, Activation::Rotated, 3, 10, &mut rng).unwrap();
    let slope = |name: &str| name.ends_with("slope");
    let gates = compaction_equals_masking(resnet, GateKind::Slope, slope, &mut rng);
    assert_eq!(gates, 1 + 2 * 6);
    let vgg = cifar_vgg(16, Activation::Rotated, 3, 10, &mut rng).unwrap();
    let gates = compaction_equals_masking(vgg, GateKind::Slope, slope, &mut rng);
    assert_eq!(gates, 13);
    // Network Slimming's gates, the batch-norm scales, on the plain-ReLU VGG.
    let vgg = cifar_vgg(16, Activation::Relu, 3, 10, &mut rng).unwrap();
    let scale = |name: &str| name.starts_with("bn") && name.ends_with("weight");
    let gates = compaction_equals_masking(vgg, GateKind::NormScale, scale, &mut rng);
    assert_eq!(gates, 13);
}
