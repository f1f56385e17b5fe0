//! Training after pruning: dead gates stay at zero, and two-step training trains one
//! role of parameters at a time.

use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::prune::{self, GateKind, PrunePlan};
use rotor_nn::{
    Adam, BatchNorm2d, Conv2d, Linear, Module, Optimizer, ParamKind, RotatedRelu, Sequential,
};

fn params(net: &Sequential) -> Vec<(String, ParamKind, Vec<f32>)> {
    let mut out = Vec::new();
    net.visit_params("", &mut |name, p| {
        out.push((name.to_string(), p.kind(), p.tensor().to_vec()))
    });
    out
}

fn train_steps(net: &mut Sequential, steps: usize) {
    let mut rng = SeededRng::seed_from_u64(11);
    let mut opt = Adam::new(1e-2);
    for _ in 0..steps {
        let x = Tensor::rand_uniform(&[4, 2, 5, 5], -1.0, 1.0, &mut rng).unwrap();
        let loss = net
            .forward_train(&x)
            .unwrap()
            .cross_entropy(&[0, 1, 2, 1])
            .unwrap();
        let grads = loss.backward().unwrap();
        drop(loss);
        opt.step(net, &grads);
    }
}

/// Checks the slopes of the network's gate after fine-tuning from the slopes of [`net`]:
/// the two dead ones (below the 0.1 threshold) still zero, the two live ones trained.
fn assert_dead_slopes_stay_zero(net: &Sequential) {
    let slopes = params(net)
        .into_iter()
        .find(|p| p.0 == "act.slope")
        .unwrap()
        .2;
    assert_eq!(&slopes[1..3], [0.0, 0.0]);
    assert!(
        slopes[0] != 0.9 && slopes[3] != 1.2,
        "live slopes train: {slopes:?}"
    );
}

fn net(rng: &mut SeededRng) -> Sequential {
    let slopes = Tensor::from_vec(vec![0.9, 0.01, -0.05, 1.2], &[4]).unwrap();
    Sequential::new()
        .push("conv", Conv2d::new(2, 4, 3, 1, 1, rng).unwrap())
        .push("bn", BatchNorm2d::new(4).unwrap())
        .push("act", RotatedRelu::with_slopes(&slopes))
        .push("pool", rotor_nn::GlobalAvgPool)
        .push("fc", Linear::new(4, 3, true, rng).unwrap())
}

#[test]
fn masked_fine_tuning_keeps_dead_slopes_at_zero() {
    let mut rng = SeededRng::seed_from_u64(1);
    let mut masked = net(&mut rng);
    let plan = PrunePlan::new(&masked, GateKind::Slope, 0.1).unwrap();
    prune::mask(&mut masked, &plan);
    prune::freeze_dead(&mut masked, GateKind::Slope);
    train_steps(&mut masked, 5);
    assert_dead_slopes_stay_zero(&masked);
}

#[test]
fn fine_tuning_a_compacted_network_keeps_the_dead_slopes_it_kept_at_zero() {
    let mut rng = SeededRng::seed_from_u64(2);
    let slopes = Tensor::from_vec(vec![0.9, 0.01, -0.05, 1.2], &[4]).unwrap();
    // A batch norm after the gate turns zero into a constant: the dead channels stay,
    // their slopes zeroed.
    let dense = Sequential::new()
        .push("conv", Conv2d::new(2, 4, 3, 1, 1, &mut rng).unwrap())
        .push("act", RotatedRelu::with_slopes(&slopes))
        .push("bn", BatchNorm2d::new(4).unwrap())
        .push("pool", rotor_nn::GlobalAvgPool)
        .push("fc", Linear::new(4, 3, true, &mut rng).unwrap());
    let plan = PrunePlan::new(&dense, GateKind::Slope, 0.1).unwrap();
    assert!(!plan.removes_anything());
    let mut small = prune::compact(dense, &plan).unwrap();
    prune::freeze_dead(&mut small, GateKind::Slope);
    train_steps(&mut small, 3);
    assert_dead_slopes_stay_zero(&small);
}

#[test]
fn two_step_training_trains_one_role_at_a_time() {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut model = net(&mut rng);
    let before = params(&model);

    prune::train_only(&mut model, &[ParamKind::Slope]);
    train_steps(&mut model, 3);
    let after_slopes = params(&model);
    for ((name, kind, b), (_, _, a)) in before.iter().zip(&after_slopes) {
        if *kind == ParamKind::Slope {
            assert_ne!(a, b, "{name} trains in the first step");
        } else {
            assert_eq!(a, b, "{name} is frozen in the first step");
        }
    }

    let others = [
        ParamKind::Weight,
        ParamKind::Bias,
        ParamKind::NormScale,
        ParamKind::NormShift,
    ];
    prune::train_only(&mut model, &others);
    train_steps(&mut model, 3);
    for ((name, kind, b), (_, _, a)) in after_slopes.iter().zip(&params(&model)) {
        if *kind == ParamKind::Slope {
            assert_eq!(a, b, "{name} is frozen in the second step");
        } else {
            assert_ne!(a, b, "{name} trains in the second step");
        }
    }
}
