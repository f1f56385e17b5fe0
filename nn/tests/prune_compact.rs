//! Dead-channel analysis and compaction: a compacted network computes what the masked
//! network computes, on random networks of several shapes.

use rand::Rng;
use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::layers::{ChannelFlow, CustomLayer};
use rotor_nn::param::{ParamVisitor, ParamVisitorMut};
use rotor_nn::prune::{self, GateKind, PrunePlan};
use rotor_nn::{
    AvgPool2d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d, Module,
    ModuleExt, Relu, Residual, RotatedRelu, Sequential,
};

const ZETA: f32 = 0.1;

/// A rotated ReLU whose slopes are random in `±[0.3, 1.5]`, except the channels in `dead`,
/// whose slopes are below `ZETA` (some exactly zero, some not).
fn rotated(channels: usize, dead: &[usize], rng: &mut SeededRng) -> RotatedRelu {
    let slopes: Vec<f32> = (0..channels)
        .map(|c| {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            if dead.contains(&c) {
                sign * rng.random_range(0.0..ZETA)
            } else {
                sign * rng.random_range(0.3..1.5)
            }
        })
        .collect();
    RotatedRelu::with_slopes(&Tensor::from_vec(slopes, &[channels]).unwrap())
}

/// A batch norm with random scales, shifts and running statistics.
fn batch_norm(channels: usize, rng: &mut SeededRng) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(channels).unwrap();
    bn.weight
        .update(|g| g.iter_mut().for_each(|v| *v = rng.random_range(0.5..1.5)));
    bn.bias
        .update(|b| b.iter_mut().for_each(|v| *v = rng.random_range(-0.5..0.5)));
    for m in &mut bn.stats.mean {
        *m = rng.random_range(-0.2..0.2);
    }
    for v in &mut bn.stats.var {
        *v = rng.random_range(0.5..2.0);
    }
    bn
}

fn conv(i: usize, o: usize, k: usize, pad: usize, rng: &mut SeededRng) -> Conv2d {
    Conv2d::new(i, o, k, 1, pad, rng).unwrap()
}

/// Masks a network, compacts it and checks that both compute the same on random input;
/// returns the compacted network and the plan.
fn check_compaction(
    mut net: Sequential,
    gate: GateKind,
    input: &[usize],
    rng: &mut SeededRng,
) -> (Sequential, PrunePlan) {
    let plan = PrunePlan::new(&net, gate, ZETA).unwrap();
    let dense_params = net.param_count();
    prune::mask(&mut net, &plan);
    let x = Tensor::rand_uniform(input, -1.0, 1.0, rng).unwrap();
    let masked = net.forward(&x).unwrap();
    let small = prune::compact(net, &plan).unwrap();
    let compacted = small.forward(&x).unwrap();
    assert_eq!(masked.shape(), compacted.shape());
    for (m, c) in masked.as_slice().iter().zip(compacted.as_slice()) {
        assert!(
            (m - c).abs() <= 1e-5 * (1.0 + m.abs()),
            "masked {m}, compacted {c}"
        );
    }
    if plan.removes_anything() {
        assert!(small.param_count() < dense_params);
    }
    (small, plan)
}

#[test]
fn conv_to_conv() {
    let mut rng = SeededRng::seed_from_u64(1);
    let net = Sequential::new()
        .push("conv1", conv(2, 6, 3, 1, &mut rng))
        .push("act1", rotated(6, &[0, 3, 4], &mut rng))
        .push("conv2", Conv2d::new(6, 5, 3, 2, 1, &mut rng).unwrap())
        .push("act2", rotated(5, &[4], &mut rng))
        .push("conv3", conv(5, 3, 1, 0, &mut rng));
    let (small, plan) = check_compaction(net, GateKind::Slope, &[2, 2, 9, 9], &mut rng);
    assert_eq!(plan.layer("conv1").unwrap().kept_out, [1, 2, 5]);
    assert_eq!(plan.layer("act1").unwrap().kept_out, [1, 2, 5]);
    assert_eq!(plan.layer("conv2").unwrap().kept_in, [1, 2, 5]);
    assert_eq!(plan.layer("conv2").unwrap().kept_out, [0, 1, 2, 3]);
    assert_eq!(plan.layer("conv3").unwrap().kept_in, [0, 1, 2, 3]);
    // The output layer keeps all its outputs.
    assert_eq!(plan.layer("conv3").unwrap().kept_out, [0, 1, 2]);
    let Layer::Conv2d(c2) = &small.layers()[2].1 else {
        panic!("conv2 is a convolution")
    };
    assert_eq!(c2.weight.shape(), [4, 3, 3, 3]);
}

#[test]
fn conv_flatten_linear() {
    let mut rng = SeededRng::seed_from_u64(2);
    let net = Sequential::new()
        .push("conv", conv(1, 5, 3, 0, &mut rng))
        .push("act", rotated(5, &[1, 2], &mut rng))
        .push("pool", MaxPool2d::new(2))
        .push("flatten", Flatten)
        .push("fc1", Linear::new(5 * 3 * 3, 7, true, &mut rng).unwrap())
        .push("act_fc", rotated(7, &[0, 6], &mut rng))
        .push("fc2", Linear::new(7, 3, true, &mut rng).unwrap());
    let (_, plan) = check_compaction(net, GateKind::Slope, &[3, 1, 8, 8], &mut rng);
    let fc1 = plan.layer("fc1").unwrap();
    // Channels 0, 3 and 4 own features 0..9, 27..36 and 36..45.
    let expected: Vec<usize> = (0..9).chain(27..45).collect();
    assert_eq!(fc1.kept_in, expected);
    assert_eq!(fc1.kept_out, [1, 2, 3, 4, 5]);
    assert_eq!(plan.layer("fc2").unwrap().kept_in, [1, 2, 3, 4, 5]);
}

#[test]
fn a_linear_layer_after_flatten_must_read_whole_channels() {
    let mut rng = SeededRng::seed_from_u64(3);
    let net = Sequential::new()
        .push("conv", conv(1, 4, 3, 0, &mut rng))
        .push("act", rotated(4, &[1], &mut rng))
        .push("flatten", Flatten)
        .push("fc", Linear::new(10, 2, true, &mut rng).unwrap());
    let err = PrunePlan::new(&net, GateKind::Slope, ZETA).unwrap_err();
    assert!(
        err.to_string().contains("`fc` has 10 input features"),
        "{err}"
    );
}

#[test]
fn conv_batch_norm_rotated_and_global_pool() {
    let mut rng = SeededRng::seed_from_u64(4);
    let net = Sequential::new()
        .push("conv1", conv(3, 6, 3, 1, &mut rng).without_bias())
        .push("bn1", batch_norm(6, &mut rng))
        .push("act1", rotated(6, &[2, 5], &mut rng))
        .push("pool", AvgPool2d::new(2))
        .push("conv2", conv(6, 4, 3, 1, &mut rng))
        .push("act2", rotated(4, &[1], &mut rng))
        .push("gap", GlobalAvgPool)
        .push("fc", Linear::new(4, 2, true, &mut rng).unwrap());
    let (_, plan) = check_compaction(net, GateKind::Slope, &[2, 3, 8, 8], &mut rng);
    assert_eq!(plan.layer("bn1").unwrap().kept_out, [0, 1, 3, 4]);
    assert_eq!(plan.layer("conv2").unwrap().kept_in, [0, 1, 3, 4]);
    assert_eq!(plan.layer("fc").unwrap().kept_in, [0, 2, 3]);
}

#[test]
fn a_batch_norm_after_a_gate_keeps_the_channel() {
    let mut rng = SeededRng::seed_from_u64(5);
    let net = Sequential::new()
        .push("conv1", conv(2, 4, 3, 1, &mut rng))
        .push("act1", rotated(4, &[0], &mut rng))
        .push("bn", batch_norm(4, &mut rng))
        .push("conv2", conv(4, 2, 3, 1, &mut rng));
    let (_, plan) = check_compaction(net, GateKind::Slope, &[1, 2, 6, 6], &mut rng);
    assert!(!plan.removes_anything());
    // Still masked: the slope is zero in the compacted copy.
    assert_eq!(plan.layer("act1").unwrap().dead, [0]);
}

#[test]
fn residual_channels_go_only_where_dead_in_every_writer() {
    let mut rng = SeededRng::seed_from_u64(6);
    // Channels 1 and 3 are dead before the block; channels 1 and 2 at the end of the
    // body: only channel 1 is zero in the sum.
    let block = Residual {
        body: Sequential::new()
            .push("conv1", conv(4, 3, 3, 1, &mut rng))
            .push("act1", rotated(3, &[0], &mut rng))
            .push("conv2", conv(3, 4, 3, 1, &mut rng))
            .push("act2", rotated(4, &[1, 2], &mut rng)),
        shortcut: None,
    };
    let net = Sequential::new()
        .push("stem", conv(2, 4, 3, 1, &mut rng))
        .push("act", rotated(4, &[1, 3], &mut rng))
        .push("block", block)
        .push(
            "head",
            Sequential::new().push("conv", conv(4, 2, 1, 0, &mut rng)),
        );
    let (_, plan) = check_compaction(net, GateKind::Slope, &[2, 2, 7, 7], &mut rng);
    assert_eq!(plan.layer("stem").unwrap().kept_out, [0, 2, 3]);
    assert_eq!(plan.layer("block.body.conv1").unwrap().kept_in, [0, 2, 3]);
    assert_eq!(plan.layer("block.body.conv1").unwrap().kept_out, [1, 2]);
    assert_eq!(plan.layer("block.body.conv2").unwrap().kept_out, [0, 2, 3]);
    assert_eq!(plan.layer("block.body.act2").unwrap().kept_out, [0, 2, 3]);
    assert_eq!(plan.layer("head.conv").unwrap().kept_in, [0, 2, 3]);
}

#[test]
fn residual_with_projection_and_batch_norm_gates() {
    let mut rng = SeededRng::seed_from_u64(7);
    let mut bn_body = batch_norm(5, &mut rng);
    let mut bn_skip = batch_norm(5, &mut rng);
    // Network Slimming: small scales mark dead channels (0 in both branches, 4 in one).
    bn_body.weight.update(|g| {
        g[0] = 0.05;
        g[4] = -0.01;
    });
    bn_skip.weight.update(|g| g[0] = 0.0);
    let block = Residual {
        body: Sequential::new()
            .push("conv", conv(3, 5, 3, 1, &mut rng).without_bias())
            .push("bn", bn_body),
        shortcut: Some(
            Sequential::new()
                .push("conv", conv(3, 5, 1, 0, &mut rng).without_bias())
                .push("bn", bn_skip),
        ),
    };
    let net = Sequential::new()
        .push("block", block)
        .push("relu", Relu)
        .push("conv", conv(5, 2, 3, 0, &mut rng));
    let (_, plan) = check_compaction(net, GateKind::NormScale, &[2, 3, 6, 6], &mut rng);
    assert_eq!(
        plan.layer("block.body.conv").unwrap().kept_out,
        [1, 2, 3, 4]
    );
    assert_eq!(
        plan.layer("block.shortcut.bn").unwrap().kept_out,
        [1, 2, 3, 4]
    );
    assert_eq!(plan.layer("block.body.bn").unwrap().dead, [0, 4]);
    assert_eq!(plan.layer("conv").unwrap().kept_in, [1, 2, 3, 4]);
}

/// A ReLU of the user's own, declaring the channel flow it is given.
#[derive(Clone)]
struct UserRelu(ChannelFlow);

impl Module for UserRelu {
    fn forward(&self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        Ok(x.relu())
    }

    fn forward_train(&mut self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        Ok(x.relu())
    }

    fn visit_params(&self, _: &str, _: &mut ParamVisitor<'_>) {}

    fn visit_params_mut(&mut self, _: &str, _: &mut ParamVisitorMut<'_>) {}
}

impl CustomLayer for UserRelu {
    fn kind(&self) -> &str {
        "UserRelu"
    }

    fn clone_layer(&self) -> Box<dyn CustomLayer> {
        Box::new(self.clone())
    }

    fn channel_flow(&self) -> ChannelFlow {
        self.0
    }
}

/// conv1, act1 (channel 1 dead), a custom layer, conv2, act2 (channel 2 dead), conv3.
fn net_around_custom(flow: ChannelFlow, rng: &mut SeededRng) -> Sequential {
    Sequential::new()
        .push("conv1", conv(1, 3, 3, 1, rng))
        .push("act1", rotated(3, &[1], rng))
        .push("mine", Layer::custom(UserRelu(flow)))
        .push("conv2", conv(3, 3, 3, 1, rng))
        .push("act2", rotated(3, &[2], rng))
        .push("conv3", conv(3, 2, 3, 1, rng))
}

#[test]
fn custom_layers_are_opaque_by_default() {
    let mut rng = SeededRng::seed_from_u64(8);
    let net = net_around_custom(ChannelFlow::Opaque, &mut rng);
    let (small, plan) = check_compaction(net, GateKind::Slope, &[1, 1, 5, 5], &mut rng);
    assert_eq!(plan.layer("conv1").unwrap().kept_out, [0, 1, 2]);
    assert_eq!(plan.layer("conv2").unwrap().kept_in, [0, 1, 2]);
    assert_eq!(plan.layer("conv2").unwrap().kept_out, [0, 1]);
    assert!(matches!(small.layers()[2].1, Layer::Custom(_)));
}

#[test]
fn per_channel_custom_layers_let_channels_through() {
    let mut rng = SeededRng::seed_from_u64(8);
    let net = net_around_custom(ChannelFlow::PerChannel, &mut rng);
    let (small, plan) = check_compaction(net, GateKind::Slope, &[1, 1, 5, 5], &mut rng);
    assert_eq!(plan.layer("conv1").unwrap().kept_out, [0, 2]);
    assert_eq!(plan.layer("conv2").unwrap().kept_in, [0, 2]);
    assert_eq!(plan.layer("conv2").unwrap().kept_out, [0, 1]);
    assert_eq!(small.layers()[2].1.kind(), "UserRelu");
}

/// A per-channel layer with parameters cannot be compacted: the plan says so.
#[derive(Clone)]
struct UserScale(Linear);

impl Module for UserScale {
    fn forward(&self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        self.0.forward(x)
    }

    fn forward_train(&mut self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        self.0.forward_train(x)
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        self.0.visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        self.0.visit_params_mut(prefix, f);
    }
}

impl CustomLayer for UserScale {
    fn kind(&self) -> &str {
        "UserScale"
    }

    fn clone_layer(&self) -> Box<dyn CustomLayer> {
        Box::new(self.clone())
    }

    fn channel_flow(&self) -> ChannelFlow {
        ChannelFlow::PerChannel
    }
}

#[test]
fn a_per_channel_claim_with_parameters_is_an_error() {
    let mut rng = SeededRng::seed_from_u64(8);
    let net = Sequential::new()
        .push("fc", Linear::new(3, 3, true, &mut rng).unwrap())
        .push(
            "scale",
            Layer::custom(UserScale(Linear::new(3, 3, false, &mut rng).unwrap())),
        );
    let err = PrunePlan::new(&net, GateKind::Slope, ZETA).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("scale") && message.contains("UserScale"),
        "{message}"
    );
}

#[test]
fn nested_sequences_and_the_model_boundary() {
    let mut rng = SeededRng::seed_from_u64(9);
    // A gate on the model's input cannot shrink the input; one on its output cannot
    // shrink the output.
    let net = Sequential::new()
        .push("act_in", rotated(2, &[0], &mut rng))
        .push(
            "features",
            Sequential::new()
                .push("conv", conv(2, 4, 3, 1, &mut rng))
                .push("act", rotated(4, &[3], &mut rng)),
        )
        .push("conv", conv(4, 3, 3, 1, &mut rng))
        .push("act_out", rotated(3, &[1], &mut rng));
    let (_, plan) = check_compaction(net, GateKind::Slope, &[2, 2, 5, 5], &mut rng);
    assert_eq!(plan.layer("features.conv").unwrap().kept_in, [0, 1]);
    assert_eq!(plan.layer("features.conv").unwrap().kept_out, [0, 1, 2]);
    assert_eq!(plan.layer("act_out").unwrap().kept_out, [0, 1, 2]);
}

#[test]
fn a_plan_for_another_network_is_an_error() {
    let mut rng = SeededRng::seed_from_u64(10);
    let build = |width: usize, rng: &mut SeededRng| {
        Sequential::new()
            .push("conv1", conv(1, width, 3, 1, rng))
            .push("act1", rotated(width, &[0], rng))
            .push("conv2", conv(width, 2, 3, 1, rng))
    };
    let plan = PrunePlan::new(&build(4, &mut rng), GateKind::Slope, ZETA).unwrap();
    let Err(err) = prune::compact(build(6, &mut rng), &plan) else {
        panic!("compacted with another network's plan")
    };
    assert!(err.to_string().contains("`conv1`"), "{err}");

    let mut broken = build(4, &mut rng);
    if let Layer::Conv2d(c) = &mut broken.layers_mut()[0].1 {
        let short = Tensor::zeros(&[3]).unwrap();
        c.bias = Some(rotor_nn::Param::new(&short, rotor_nn::ParamKind::Bias));
    }
    let Err(err) = prune::compact(broken, &plan) else {
        panic!("compacted a convolution with a short bias")
    };
    assert!(
        err.to_string().contains("a bias of 3 values for 4 outputs"),
        "{err}"
    );
}

#[test]
fn mlp_with_rotated_gelu_and_dropout() {
    let mut rng = SeededRng::seed_from_u64(11);
    let slopes = Tensor::from_vec(vec![0.8, 0.0, -0.02, 1.1, -0.9, 0.05], &[6]).unwrap();
    let net = Sequential::new()
        .push("fc1", Linear::new(5, 6, true, &mut rng).unwrap())
        .push("act", rotor_nn::RotatedGelu::with_slopes(&slopes))
        .push("drop", rotor_nn::Dropout::new(0.5, 1).unwrap())
        .push("fc2", Linear::new(6, 4, true, &mut rng).unwrap());
    let (_, plan) = check_compaction(net, GateKind::Slope, &[3, 5], &mut rng);
    assert_eq!(plan.layer("fc1").unwrap().kept_out, [0, 3, 4]);
    assert_eq!(plan.layer("fc2").unwrap().kept_in, [0, 3, 4]);
}
