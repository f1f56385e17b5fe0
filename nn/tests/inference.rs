//! The inference plan against the model's own forward (evaluation mode): dense, with dead
//! channels skipped, across batch sizes and threads, and its errors.

use rand::SeedableRng;
use rotor_engine::{SeededRng, Tensor};
use rotor_nn::inference::{InferencePlan, PlanOptions, Workspace};
use rotor_nn::{
    Activation, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Gelu, GlobalAvgPool, Layer,
    Linear, MaxPool2d, MnistNet, Module, Relu, Residual, RotatedGelu, RotatedRelu, Sequential,
};

const DENSE: PlanOptions = PlanOptions {
    skip_threshold: None,
};
const SKIP_ZERO_SLOPES: PlanOptions = PlanOptions {
    skip_threshold: Some(0.0),
};

fn random_input(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SeededRng::seed_from_u64(seed);
    Tensor::rand_normal(shape, 0.0, 1.0, &mut rng).expect("input")
}

/// Asserts `|actual - expected| <= 1e-5 * max(1, |expected|)` elementwise (the outputs are
/// sums of many terms, reassociated by the plan's fused kernels and batch-norm folding).
fn assert_close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes");
    for (i, (&a, &e)) in actual
        .as_slice()
        .iter()
        .zip(expected.as_slice())
        .enumerate()
    {
        assert!(
            (a - e).abs() <= 1e-5 * e.abs().max(1.0),
            "{what}: element {i} is {a}, expected {e}"
        );
    }
}

/// Sets to zero the slopes of every other channel (from `first`) of every rotated layer.
fn kill_every_other_channel(model: &mut Sequential, first: usize) {
    for (_, layer) in model.layers_mut() {
        match layer {
            Layer::RotatedRelu(act) => act.slope.update(|s| {
                s.iter_mut().skip(first).step_by(2).for_each(|a| *a = 0.0);
            }),
            Layer::RotatedGelu(act) => act.slope.update(|s| {
                s.iter_mut().skip(first).step_by(2).for_each(|a| *a = 0.0);
            }),
            Layer::Sequential(inner) => kill_every_other_channel(inner, first),
            _ => {}
        }
    }
}

/// Compiles `model` with `options` and checks the plan against `Module::forward` on several
/// batch sizes with one reused workspace.
fn check(model: &Sequential, sample: &[usize], options: PlanOptions, what: &str) {
    let plan = InferencePlan::compile(model, sample, options).expect("compile");
    let mut workspace = plan.workspace();
    for (batch, seed) in [(3, 1), (1, 2), (5, 3), (2, 4)] {
        let mut shape = vec![batch];
        shape.extend_from_slice(sample);
        let x = random_input(&shape, seed);
        let expected = model.forward(&x).expect("forward");
        let actual = plan.forward(&x, &mut workspace).expect("plan");
        assert_close(&actual, &expected, &format!("{what}, batch {batch}"));
    }
}

fn mnist(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    MnistNet::new(Activation::Rotated, &mut rng)
        .expect("model")
        .into_sequential()
}

/// A small net using every supported layer: odd sizes, padding and strides, batch norms
/// (folded and not), nested sequences, and activations fused and not.
fn small_net(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut norm = BatchNorm2d::new(5).expect("norm");
    norm.weight.update(|g| {
        g.iter_mut()
            .enumerate()
            .for_each(|(i, g)| *g = 0.5 + 0.2 * i as f32)
    });
    norm.bias.update(|b| {
        b.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = 0.1 * i as f32 - 0.2)
    });
    norm.stats.mean = vec![0.3, -0.1, 0.0, 0.2, -0.4];
    norm.stats.var = vec![1.5, 0.7, 1.0, 2.0, 0.9];
    let mut loose_norm = BatchNorm2d::new(4).expect("norm");
    loose_norm.stats.mean = vec![0.1, 0.2, -0.3, 0.0];
    loose_norm.stats.var = vec![0.5, 1.2, 1.0, 3.0];
    let features = Sequential::new()
        .push("conv1", Conv2d::new(3, 5, 3, 1, 1, &mut rng).expect("conv"))
        .push("bn1", norm)
        .push("act1", RotatedRelu::new(5, &mut rng).expect("act"))
        .push("pool1", MaxPool2d::new(2))
        .push(
            "conv2",
            Conv2d::new(5, 4, 2, 2, 1, &mut rng)
                .expect("conv")
                .without_bias(),
        )
        .push("act2", Relu)
        .push("bn2", loose_norm)
        .push("act3", RotatedRelu::new(4, &mut rng).expect("act"))
        .push("pool2", AvgPool2d::new(2));
    Sequential::new()
        .push("features", features)
        .push("conv3", Conv2d::new(4, 6, 1, 1, 0, &mut rng).expect("conv"))
        .push("act4", RotatedRelu::new(6, &mut rng).expect("act"))
        .push("gap", GlobalAvgPool)
        .push("drop", Dropout::new(0.5, 1).expect("dropout"))
        .push("fc1", Linear::new(6, 7, true, &mut rng).expect("linear"))
        .push("act5", Gelu)
        .push("fc2", Linear::new(7, 9, false, &mut rng).expect("linear"))
        .push("act6", RotatedGelu::new(9, &mut rng).expect("act"))
        .push("fc3", Linear::new(9, 5, true, &mut rng).expect("linear"))
        .push("act7", RotatedRelu::new(5, &mut rng).expect("act"))
        .push("flat", Flatten)
        .push("fc4", Linear::new(5, 3, true, &mut rng).expect("linear"))
}

/// A conv net whose rotated channels feed a flatten and a linear layer, with odd sizes.
fn conv_flatten_net(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    Sequential::new()
        .push("conv1", Conv2d::new(2, 7, 3, 1, 0, &mut rng).expect("conv"))
        .push("act1", RotatedRelu::new(7, &mut rng).expect("act"))
        .push("conv2", Conv2d::new(7, 6, 3, 1, 1, &mut rng).expect("conv"))
        .push("act2", RotatedRelu::new(6, &mut rng).expect("act"))
        .push("pool", MaxPool2d::new(2))
        .push("flatten", Flatten)
        .push(
            "fc1",
            Linear::new(6 * 4 * 3, 11, true, &mut rng).expect("linear"),
        )
        .push("act3", RotatedRelu::new(11, &mut rng).expect("act"))
        .push("fc2", Linear::new(11, 4, true, &mut rng).expect("linear"))
}

#[test]
fn mnist_net_plan_matches_the_model() {
    let model = mnist(1);
    check(&model, &[1, 28, 28], DENSE, "dense MnistNet");
    check(&model, &[1, 28, 28], SKIP_ZERO_SLOPES, "skipping MnistNet");
}

/// A batch larger than the chunks the convolutions run on, so that their outputs are
/// assembled from several chunks.
#[test]
fn mnist_net_plan_matches_the_model_over_several_chunks() {
    let mut model = mnist(5);
    kill_every_other_channel(&mut model, 1);
    for options in [DENSE, SKIP_ZERO_SLOPES] {
        let plan = InferencePlan::compile(&model, &[1, 28, 28], options).expect("plan");
        let x = random_input(&[29, 1, 28, 28], 6);
        let expected = model.forward(&x).expect("forward");
        let actual = plan.forward(&x, &mut plan.workspace()).expect("plan");
        assert_close(&actual, &expected, "MnistNet at batch 29");
    }
}

#[test]
fn mnist_net_with_dead_channels_matches_the_model_when_skipping() {
    for first in [0, 1] {
        let mut model = mnist(2);
        kill_every_other_channel(&mut model, first);
        check(&model, &[1, 28, 28], DENSE, "masked MnistNet");
        check(&model, &[1, 28, 28], SKIP_ZERO_SLOPES, "skipping MnistNet");
        let plan = InferencePlan::compile(&model, &[1, 28, 28], SKIP_ZERO_SLOPES).expect("plan");
        let dense = InferencePlan::compile(&model, &[1, 28, 28], DENSE).expect("plan");
        assert!(plan.flops_per_sample() * 3 < dense.flops_per_sample());
    }
}

#[test]
fn small_nets_plan_matches_the_model() {
    for seed in 0..3 {
        let model = small_net(seed);
        check(&model, &[3, 9, 7], DENSE, "dense small net");
        let mut model = small_net(seed);
        kill_every_other_channel(&mut model, seed as usize % 2);
        check(&model, &[3, 9, 7], DENSE, "masked small net");
        check(&model, &[3, 9, 7], SKIP_ZERO_SLOPES, "skipping small net");

        let mut model = conv_flatten_net(seed);
        check(&model, &[2, 10, 8], DENSE, "dense conv-flatten net");
        kill_every_other_channel(&mut model, seed as usize % 2);
        check(
            &model,
            &[2, 10, 8],
            SKIP_ZERO_SLOPES,
            "skipping conv-flatten net",
        );
    }
}

#[test]
fn a_threshold_prunes_small_slopes() {
    let mut model = conv_flatten_net(7);
    let plan = InferencePlan::compile(
        &model,
        &[2, 10, 8],
        PlanOptions {
            skip_threshold: Some(0.9),
        },
    )
    .expect("plan");
    // Pruning with the threshold is what zeroing the small slopes does.
    for (_, layer) in model.layers_mut() {
        if let Layer::RotatedRelu(act) = layer {
            act.slope.update(|s| {
                s.iter_mut()
                    .filter(|a| a.abs() <= 0.9)
                    .for_each(|a| *a = 0.0)
            });
        }
    }
    let x = random_input(&[4, 2, 10, 8], 5);
    let expected = model.forward(&x).expect("forward");
    let actual = plan.forward(&x, &mut plan.workspace()).expect("plan");
    assert_close(&actual, &expected, "thresholded plan");
}

#[test]
fn plans_serve_several_threads_each_with_its_own_workspace() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let model = mnist(3);
    let plan = InferencePlan::compile(&model, &[1, 28, 28], DENSE).expect("plan");
    shareable(&plan);
    let x = random_input(&[4, 1, 28, 28], 9);
    let expected = model.forward(&x).expect("forward");
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let mut workspace: Workspace = plan.workspace();
                    (0..3)
                        .map(|_| plan.forward(&x, &mut workspace).expect("plan"))
                        .last()
                        .expect("ran")
                })
            })
            .collect();
        for run in runs {
            assert_close(&run.join().expect("thread"), &expected, "threaded plan");
        }
    });
}

#[test]
fn unsupported_layers_and_bad_shapes_are_errors() {
    let mut rng = SeededRng::seed_from_u64(4);
    let residual = Sequential::new().push(
        "block",
        Residual {
            body: Sequential::new().push("relu", Relu),
            shortcut: None,
        },
    );
    let error = InferencePlan::compile(&residual, &[2, 3, 3], DENSE).unwrap_err();
    assert!(error.to_string().contains("block"), "{error}");

    let conv = Sequential::new().push("conv", Conv2d::new(3, 4, 3, 1, 0, &mut rng).expect("conv"));
    let error = InferencePlan::compile(&conv, &[2, 8, 8], DENSE).unwrap_err();
    assert!(error.to_string().contains("conv"), "{error}");
    let error = InferencePlan::compile(&conv, &[3, 2, 8], DENSE).unwrap_err();
    assert!(error.to_string().contains("kernel"), "{error}");

    let plan = InferencePlan::compile(&conv, &[3, 8, 8], DENSE).expect("plan");
    let other = InferencePlan::compile(&conv, &[3, 8, 8], DENSE).expect("plan");
    let input = vec![0.0; 2 * 3 * 8 * 8];
    assert!(plan.run(&input[1..], 2, &mut plan.workspace()).is_err());
    assert!(plan.run(&input, 2, &mut other.workspace()).is_err());
    assert_eq!(plan.output_shape(), &[4, 6, 6]);
}
