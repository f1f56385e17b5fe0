//! Training that skips channels whose gates are frozen at zero: the forward, every
//! gradient the optimizer uses, the step and the batch-norm statistics agree with the full
//! computation, and the network is whole again after every forward, even a failed one.

use rotor_engine::{Gradients, SeedableRng, SeededRng, Tensor};
use rotor_nn::prune::{GateKind, freeze_dead};
use rotor_nn::{
    BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d, Module,
    Optimizer, Residual, RotatedRelu, Sequential, Sgd,
};

/// A rotated ReLU over `channels` with the slopes of `dead` at zero.
fn rotated(channels: usize, dead: &[usize], rng: &mut SeededRng) -> RotatedRelu {
    let mut act = RotatedRelu::new(channels, rng).unwrap();
    act.slope.update(|a| dead.iter().for_each(|&c| a[c] = 0.0));
    act
}

/// conv, pool, conv, flatten, linear, linear, with dead channels in every hidden layer.
fn chain(rng: &mut SeededRng) -> Sequential {
    Sequential::new()
        .push("conv1", Conv2d::new(2, 6, 3, 1, 1, rng).unwrap())
        .push("act1", rotated(6, &[1, 4], rng))
        .push("pool", MaxPool2d::new(2))
        .push("conv2", Conv2d::new(6, 5, 3, 1, 1, rng).unwrap())
        .push("act2", rotated(5, &[0, 3], rng))
        .push("flatten", Flatten)
        .push("drop", Dropout::new(0.0, 7).unwrap())
        .push("fc1", Linear::new(5 * 4 * 4, 9, true, rng).unwrap())
        .push("act3", rotated(9, &[2, 7, 8], rng))
        .push("fc2", Linear::new(9, 3, true, rng).unwrap())
}

/// A stem, a residual block whose branch has dead channels of its own and whose output
/// shares a dead channel with the stem, batch norms, and a head.
fn residual(rng: &mut SeededRng) -> Sequential {
    let body = Sequential::new()
        .push("conv1", Conv2d::new(4, 6, 3, 1, 1, rng).unwrap())
        .push("bn1", BatchNorm2d::new(6).unwrap())
        .push("act1", rotated(6, &[0, 5], rng))
        .push("conv2", Conv2d::new(6, 4, 3, 1, 1, rng).unwrap())
        .push("bn2", BatchNorm2d::new(4).unwrap())
        .push("act2", rotated(4, &[2], rng));
    Sequential::new()
        .push("stem", Conv2d::new(2, 4, 3, 1, 1, rng).unwrap())
        .push("stem_act", rotated(4, &[2], rng))
        .push(
            "block",
            Residual {
                body,
                shortcut: None,
            },
        )
        .push("pool", GlobalAvgPool)
        .push("fc", Linear::new(4, 3, true, rng).unwrap())
}

/// The same network with nothing frozen: it runs every channel.
fn unfrozen(net: &Sequential) -> Sequential {
    let mut full = net.clone();
    full.visit_params_mut("", &mut |_, p| p.set_frozen(None));
    full
}

fn grads_by_name(net: &Sequential, grads: &Gradients) -> Vec<(String, Vec<f32>, bool)> {
    let mut out = Vec::new();
    net.visit_params("", &mut |name, p| {
        let frozen = p.frozen().is_some_and(|f| f.iter().any(|&f| f));
        let grad = p.grad(grads).map(Tensor::to_vec).unwrap_or_default();
        out.push((name.to_string(), grad, frozen));
    });
    out
}

fn assert_close(name: &str, a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * (1.0 + y.abs()),
            "{name}[{i}]: {x} against {y}"
        );
    }
}

fn loss(net: &mut Sequential, x: &Tensor) -> Tensor {
    net.forward_train(x)
        .unwrap()
        .cross_entropy(&[0, 1, 2, 1])
        .unwrap()
}

/// Forward, gradients, an SGD step and the batch-norm statistics of the skipping network
/// against the full one.
fn agrees_with_the_full_computation(mut net: Sequential, x: &Tensor, skipped_statistics: usize) {
    freeze_dead(&mut net, GateKind::Slope);
    let mut initial = Vec::new();
    net.visit_buffers("", &mut |name, _, b| {
        initial.push((name.to_string(), b.to_vec()))
    });
    let mut full = unfrozen(&net);
    let (skipping_loss, full_loss) = (loss(&mut net, x), loss(&mut full, x));
    assert_close("loss", &skipping_loss.to_vec(), &full_loss.to_vec(), 1e-5);
    let skipping_grads = skipping_loss.backward().unwrap();
    let full_grads = full_loss.backward().unwrap();
    let skipping = grads_by_name(&net, &skipping_grads);
    let reference = grads_by_name(&full, &full_grads);
    for ((name, grad, frozen), (_, full_grad, _)) in skipping.iter().zip(&reference) {
        // NOTE: a frozen gate's gradient is never used; the skipped dead ones get zero.
        if !frozen {
            assert_close(name, grad, full_grad, 1e-4);
        }
    }
    drop((skipping_loss, full_loss));
    // The full computation's step with the same frozen gates.
    freeze_dead(&mut full, GateKind::Slope);
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    let mut full_sgd = Sgd::new(0.1).momentum(0.9);
    sgd.step(&mut net, &skipping_grads);
    full_sgd.step(&mut full, &full_grads);
    let mut after = Vec::new();
    net.visit_params("", &mut |name, p| {
        after.push((name.to_string(), p.tensor().to_vec()))
    });
    let mut index = 0;
    full.visit_params("", &mut |name, p| {
        assert_eq!(after[index].0, name);
        assert_close(name, &after[index].1, &p.tensor().to_vec(), 1e-5);
        index += 1;
    });
    // The running statistics of skipped channels stay as they were: nothing reads them.
    let mut stats = Vec::new();
    net.visit_buffers("", &mut |name, _, b| {
        stats.push((name.to_string(), b.to_vec()))
    });
    let (mut index, mut unchanged) = (0, 0);
    full.visit_buffers("", &mut |name, _, b| {
        let (stats_name, values) = &stats[index];
        assert_eq!(stats_name, name);
        for (i, (&v, &full)) in values.iter().zip(b).enumerate() {
            if v != full && (v - full).abs() > 1e-5 * (1.0 + full.abs()) {
                assert_eq!(
                    v, initial[index].1[i],
                    "{name}[{i}] is either updated or skipped"
                );
                unchanged += 1;
            }
        }
        index += 1;
    });
    assert_eq!(unchanged, skipped_statistics, "skipped statistics");
    assert_eq!(
        net.architecture(),
        full.architecture(),
        "every layer is back"
    );
}

#[test]
fn a_chain_trains_on_its_live_channels_as_on_all() {
    let mut rng = SeededRng::seed_from_u64(3);
    let net = chain(&mut rng);
    let x = Tensor::rand_normal(&[4, 2, 8, 8], 0.0, 1.0, &mut rng).unwrap();
    agrees_with_the_full_computation(net, &x, 0);
}

#[test]
fn a_residual_net_with_batch_norms_trains_on_its_live_channels_as_on_all() {
    let mut rng = SeededRng::seed_from_u64(4);
    let net = residual(&mut rng);
    let x = Tensor::rand_normal(&[4, 2, 6, 6], 0.0, 1.0, &mut rng).unwrap();
    // bn1's channels 0 and 5 and bn2's channel 2 (dead in the stem too), mean and variance.
    agrees_with_the_full_computation(net, &x, 6);
}

#[test]
fn skipped_channels_get_no_gradient_and_a_failed_forward_leaves_the_net_whole() {
    let mut rng = SeededRng::seed_from_u64(5);
    let mut net = chain(&mut rng);
    freeze_dead(&mut net, GateKind::Slope);
    let x = Tensor::rand_normal(&[4, 2, 8, 8], 0.0, 1.0, &mut rng).unwrap();
    let before = net.forward(&x).unwrap().to_vec();
    let architecture = net.architecture();

    let grads = loss(&mut net, &x).backward().unwrap();
    let Some((_, Layer::Conv2d(conv1))) = net.layers().first() else {
        panic!("conv1 is a convolution");
    };
    let weight = conv1.weight.grad(&grads).unwrap().to_vec();
    let filter = 2 * 3 * 3;
    for dead in [1, 4] {
        let rows = &weight[dead * filter..(dead + 1) * filter];
        assert!(rows.iter().all(|&g| g == 0.0), "dead filter {dead}");
    }
    assert!(weight.iter().any(|&g| g != 0.0));

    let wrong = Tensor::zeros(&[4, 3, 8, 8]).unwrap();
    let error = net.forward_train(&wrong).unwrap_err().to_string();
    assert!(error.contains("conv1"), "{error}");
    assert_eq!(net.architecture(), architecture);
    assert_eq!(net.forward(&x).unwrap().to_vec(), before);
}
