//! The CIFAR residual networks: sizes against the published figures, shapes, argument
//! errors, a few training steps that lower the loss, and compaction equal to masking.

use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::models::{Activation, cifar_resnet};
use rotor_nn::prune::{self, GateKind, PrunePlan, Savings};
use rotor_nn::{Module, ModuleExt, Optimizer, Sgd};

/// Parameters and multiply-accumulates of one 3x32x32 image, ten classes.
fn size(depth: usize) -> (u64, u64) {
    let net = cifar_resnet(
        depth,
        Activation::Relu,
        3,
        10,
        &mut SeededRng::seed_from_u64(0),
    )
    .unwrap();
    let plan = PrunePlan::new(&net, GateKind::Slope, 0.0).unwrap();
    let savings = Savings::new(&net, &plan, &[3, 32, 32]).unwrap();
    (savings.total.params_before, savings.total.flops_before / 2)
}

fn assert_near(what: &str, value: u64, published: f64) {
    let ratio = value as f64 / published;
    assert!(
        (0.98..=1.02).contains(&ratio),
        "{what}: {value} against about {published}"
    );
}

#[test]
fn sizes_match_the_published_figures() {
    // He et al. 2016, table 6: 0.27 M, 0.85 M and 1.7 M parameters; about 41 M and 125 M
    // multiply-accumulates for ResNet-20 and ResNet-56 (as FLOP counters report them).
    let (params, macs) = size(20);
    assert_near("ResNet-20 parameters", params, 0.27e6);
    assert_near("ResNet-20 multiply-accumulates", macs, 41e6);
    let (params, macs) = size(56);
    assert_near("ResNet-56 parameters", params, 0.85e6);
    assert_near("ResNet-56 multiply-accumulates", macs, 125e6);
    let (params, _) = size(110);
    assert_near("ResNet-110 parameters", params, 1.7e6);
}

#[test]
fn logits_for_any_input_channels_and_classes() {
    let mut rng = SeededRng::seed_from_u64(1);
    let net = cifar_resnet(8, Activation::Rotated, 1, 7, &mut rng).unwrap();
    let x = Tensor::rand_normal(&[2, 1, 12, 12], 0.0, 1.0, &mut rng).unwrap();
    assert_eq!(net.forward(&x).unwrap().shape(), [2, 7]);
}

#[test]
fn depths_other_than_6n_plus_2_are_errors() {
    let mut rng = SeededRng::seed_from_u64(2);
    for (depth, channels, classes) in [(2, 3, 10), (21, 3, 10), (0, 3, 10), (20, 0, 10), (20, 3, 0)]
    {
        let error = cifar_resnet(depth, Activation::Relu, channels, classes, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(error.contains("6n + 2"), "{error}");
    }
}

#[test]
fn a_few_steps_lower_the_loss() {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut net = cifar_resnet(8, Activation::Rotated, 3, 4, &mut rng).unwrap();
    let x = Tensor::rand_normal(&[8, 3, 16, 16], 0.0, 1.0, &mut rng).unwrap();
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
fn compacting_dead_channels_equals_masking_them() {
    let mut rng = SeededRng::seed_from_u64(4);
    let mut net = cifar_resnet(14, Activation::Rotated, 3, 10, &mut rng).unwrap();
    // Dead channels inside blocks and on the residual stream, in every stage.
    let mut gates = 0;
    net.visit_params_mut("", &mut |name, param| {
        if name.ends_with("slope") {
            gates += 1;
            let channels = param.tensor().numel();
            param.update(|a| (0..channels).step_by(3).for_each(|c| a[c] = 0.0));
        }
    });
    assert_eq!(gates, 1 + 2 * 6);
    let plan = PrunePlan::new(&net, GateKind::Slope, 0.0).unwrap();
    prune::mask(&mut net, &plan);
    let x = Tensor::rand_normal(&[2, 3, 16, 16], 0.0, 1.0, &mut rng).unwrap();
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
}
