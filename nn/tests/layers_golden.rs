//! The layers against PyTorch: each layer is built with a fixture's parameters, run
//! through `forward_train` (or `forward` for evaluation-mode batch norm), then
//! `backward_with` the fixture's upstream gradient; outputs, running statistics and the
//! gradients of the input and of every parameter are compared to 1e-4 relative (the
//! kernels' golden tolerance, defined in `fixture/mod.rs`).

mod fixture;

use fixture::{Fixture, names_with_op};
use rotor_engine::{Gradients, RunningStats, Tensor};
use rotor_nn::{BatchNorm2d, Conv2d, Linear, Module, Param, ParamKind, RotatedGelu, RotatedRelu};

/// Relative tolerance of every comparison.
const REL_TOL: f64 = 1e-4;

/// The fixture ops this file covers, with the fixtures of each.
const LAYER_FIXTURES: &[(&str, &[&str])] = &[
    ("batch_norm_eval", &["batch_norm2d_eval"]),
    (
        "batch_norm_train",
        &["batch_norm1d_train", "batch_norm2d_train"],
    ),
    (
        "conv2d",
        &[
            "conv2d_k1_s1_p0",
            "conv2d_k2x3_s1x2_p1x0",
            "conv2d_k3_s1_p0",
            "conv2d_k3_s2_p1",
        ],
    ),
    ("linear", &["linear"]),
    ("rotated_gelu", &["rotated_gelu_2d", "rotated_gelu_4d"]),
    ("rotated_relu", &["rotated_relu_2d", "rotated_relu_4d"]),
];

fn fixtures_of(op: &str) -> &'static [&'static str] {
    let (_, names) = LAYER_FIXTURES
        .iter()
        .find(|(o, _)| *o == op)
        .expect("a listed op");
    names
}

fn param(f: &Fixture, name: &str, kind: ParamKind) -> Param {
    Param::new(&f.tensor(name), kind)
}

fn grad_of<'a>(grads: &'a Gradients, f: &Fixture, leaf: &Tensor, what: &str) -> &'a [f32] {
    grads
        .get(leaf)
        .unwrap_or_else(|| panic!("{}: no gradient for {what}", f.name()))
        .as_slice()
}

/// Runs `layer` in training mode on the fixture's input and checks the output and the
/// input's gradient; returns the gradients for the parameter checks.
fn run_train(f: &Fixture, layer: &mut dyn Module) -> Gradients {
    let input = f.tensor("input").requires_grad();
    let output = layer.forward_train(&input).expect("forward_train");
    f.check("output", output.as_slice(), REL_TOL);
    let grads = output
        .backward_with(&f.tensor("grad_output"))
        .expect("backward");
    f.check(
        "grad_input",
        grad_of(&grads, f, &input, "the input"),
        REL_TOL,
    );
    grads
}

#[test]
fn every_layer_fixture_is_tested() {
    for (op, names) in LAYER_FIXTURES {
        assert_eq!(&names_with_op(op), names, "fixtures of {op}");
    }
}

#[test]
fn conv2d_matches_pytorch() {
    for name in fixtures_of("conv2d") {
        let f = Fixture::load(name);
        let mut layer = Conv2d {
            weight: param(&f, "weight", ParamKind::Weight),
            bias: Some(param(&f, "bias", ParamKind::Bias)),
            stride: [f.meta_usize("stride_h"), f.meta_usize("stride_w")],
            padding: [f.meta_usize("pad_h"), f.meta_usize("pad_w")],
        };
        let grads = run_train(&f, &mut layer);
        f.check(
            "grad_weight",
            grad_of(&grads, &f, layer.weight.tensor(), "weight"),
            REL_TOL,
        );
        let bias = layer.bias.as_ref().expect("a bias").tensor();
        f.check("grad_bias", grad_of(&grads, &f, bias, "bias"), REL_TOL);
    }
}

#[test]
fn linear_matches_pytorch() {
    for name in fixtures_of("linear") {
        let f = Fixture::load(name);
        let mut layer = Linear {
            weight: param(&f, "weight", ParamKind::Weight),
            bias: Some(param(&f, "bias", ParamKind::Bias)),
        };
        let grads = run_train(&f, &mut layer);
        f.check(
            "grad_weight",
            grad_of(&grads, &f, layer.weight.tensor(), "weight"),
            REL_TOL,
        );
        let bias = layer.bias.as_ref().expect("a bias").tensor();
        f.check("grad_bias", grad_of(&grads, &f, bias, "bias"), REL_TOL);
    }
}

fn batch_norm(f: &Fixture) -> BatchNorm2d {
    let channels = f.meta_usize("channels");
    let mut layer = BatchNorm2d::new(channels).expect("batch norm");
    layer.weight = param(f, "gamma", ParamKind::NormScale);
    layer.bias = param(f, "beta", ParamKind::NormShift);
    layer.stats = RunningStats {
        mean: f.f32s("running_mean"),
        var: f.f32s("running_var"),
    };
    layer.eps = f.meta_f64("eps") as f32;
    layer
}

#[test]
fn batch_norm_training_matches_pytorch() {
    for name in fixtures_of("batch_norm_train") {
        let f = Fixture::load(name);
        let mut layer = batch_norm(&f);
        layer.momentum = f.meta_f64("momentum") as f32;
        let grads = run_train(&f, &mut layer);
        f.check("running_mean_after", &layer.stats.mean, REL_TOL);
        f.check("running_var_after", &layer.stats.var, REL_TOL);
        f.check(
            "grad_gamma",
            grad_of(&grads, &f, layer.weight.tensor(), "gamma"),
            REL_TOL,
        );
        f.check(
            "grad_beta",
            grad_of(&grads, &f, layer.bias.tensor(), "beta"),
            REL_TOL,
        );
    }
}

#[test]
fn batch_norm_evaluation_matches_pytorch() {
    for name in fixtures_of("batch_norm_eval") {
        let f = Fixture::load(name);
        let layer = batch_norm(&f);
        let input = f.tensor("input").requires_grad();
        let grad_output = f.tensor("grad_output");

        // The layer's evaluation forward: the output, and the input's gradient through it.
        let output = layer.forward(&input).expect("forward");
        f.check("output", output.as_slice(), REL_TOL);
        let grads = output.backward_with(&grad_output).expect("backward");
        f.check(
            "grad_input",
            grad_of(&grads, &f, &input, "the input"),
            REL_TOL,
        );
        assert!(
            layer.weight.grad(&grads).is_none(),
            "{name}: an evaluation forward records no parameter gradient"
        );

        // The same operation on the layer's own parameter leaves, for their gradients.
        let (gamma, beta) = (layer.weight.tensor(), layer.bias.tensor());
        let tracked = input.batch_norm_eval(gamma, beta, &layer.stats, layer.eps);
        let grads = tracked
            .expect("batch_norm_eval")
            .backward_with(&grad_output);
        let grads = grads.expect("backward");
        f.check("grad_gamma", grad_of(&grads, &f, gamma, "gamma"), REL_TOL);
        f.check("grad_beta", grad_of(&grads, &f, beta, "beta"), REL_TOL);
        assert_eq!(
            layer.stats.mean,
            f.f32s("running_mean"),
            "{name}: evaluation changes no statistics"
        );
    }
}

#[test]
fn rotated_relu_matches_pytorch() {
    for name in fixtures_of("rotated_relu") {
        let f = Fixture::load(name);
        let mut layer = RotatedRelu::with_slopes(&f.tensor("slope"));
        let grads = run_train(&f, &mut layer);
        f.check(
            "grad_slope",
            grad_of(&grads, &f, layer.slope.tensor(), "slope"),
            REL_TOL,
        );
    }
}

#[test]
fn rotated_gelu_matches_pytorch() {
    for name in fixtures_of("rotated_gelu") {
        let f = Fixture::load(name);
        let mut layer = RotatedGelu::with_slopes(&f.tensor("slope"));
        let grads = run_train(&f, &mut layer);
        f.check(
            "grad_slope",
            grad_of(&grads, &f, layer.slope.tensor(), "slope"),
            REL_TOL,
        );
    }
}
