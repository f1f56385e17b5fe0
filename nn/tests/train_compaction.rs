//! Compaction while training: the tracked compaction says where every element came from,
//! and a network compacted between epochs, with its optimizer's state carried along,
//! trains exactly as the masked network it replaces.

use std::cell::RefCell;
use std::rc::Rc;

use rotor_engine::{Gradients, SeedableRng, SeededRng, Tensor};
use rotor_nn::optim::{Optimizer, StateMove};
use rotor_nn::prune::{GateKind, PrunePlan, compact_tracked, freeze_dead, prune_at};
use rotor_nn::train::{CompactEvery, LabelledBatch, Trainer};
use rotor_nn::{
    Adam, Conv2d, Flatten, Linear, MaxPool2d, Module, ModuleExt, RotatedRelu, Sequential, Sgd,
};

const INPUT: [usize; 3] = [1, 8, 8];

/// conv (6 channels, 1 and 4 dead), pool, conv (5, 0 dead), flatten, linear (9 units, 2,
/// 7 dead), linear.
fn net(rng: &mut SeededRng) -> Sequential {
    let rotated = |channels: usize, dead: &[usize], rng: &mut SeededRng| {
        let mut act = RotatedRelu::new(channels, rng).unwrap();
        act.slope.update(|a| dead.iter().for_each(|&c| a[c] = 0.0));
        act
    };
    Sequential::new()
        .push("conv1", Conv2d::new(1, 6, 3, 1, 1, rng).unwrap())
        .push("act1", rotated(6, &[1, 4], rng))
        .push("pool", MaxPool2d::new(2))
        .push("conv2", Conv2d::new(6, 5, 3, 1, 1, rng).unwrap())
        .push("act2", rotated(5, &[0], rng))
        .push("flatten", Flatten)
        .push("fc1", Linear::new(5 * 4 * 4, 9, true, rng).unwrap())
        .push("act3", rotated(9, &[2, 7], rng))
        .push("fc2", Linear::new(9, 3, true, rng).unwrap())
}

fn batches(rng: &mut SeededRng) -> Vec<LabelledBatch> {
    (0..3)
        .map(|_| {
            let x = Tensor::rand_normal(&[6, 1, 8, 8], 0.0, 1.0, rng).unwrap();
            (x, vec![0, 1, 2, 2, 1, 0])
        })
        .collect()
}

fn values(net: &Sequential) -> Vec<(String, Vec<f32>)> {
    let mut all = Vec::new();
    net.visit_params("", &mut |name, p| {
        all.push((name.to_string(), p.tensor().to_vec()))
    });
    all
}

#[test]
fn tracked_compaction_says_where_every_element_came_from() {
    let mut rng = SeededRng::seed_from_u64(1);
    let net = net(&mut rng);
    let plan = PrunePlan::new(&net, GateKind::Slope, 0.0).unwrap();
    let copy = net.clone();
    let mut before = std::collections::HashMap::new();
    copy.visit_params("", &mut |_, p| {
        before.insert(p.tensor().id(), p.tensor().to_vec());
    });
    let (small, moves) = compact_tracked(copy, &plan).unwrap();
    let plain = prune_at(&net, GateKind::Slope, 0.0, &INPUT)
        .unwrap()
        .network;
    assert_eq!(values(&small), values(&plain));

    let mut checked = 0;
    small.visit_params("", &mut |name, p| {
        let m = moves.iter().find(|m| m.to == p.tensor().id()).unwrap();
        let old = &before[&m.from];
        assert_eq!(m.gather(old).unwrap(), p.tensor().to_vec(), "{name}");
        assert!(m.kept.iter().all(Option::is_some), "{name}");
        checked += 1;
    });
    assert_eq!(checked, moves.len());
    assert!(small.param_count() < net.param_count());
}

/// The masked network trained alone, and its copy compacted after the first epoch, end at
/// the same values on the channels both have.
fn compare(optimizer: impl Fn() -> Box<dyn Optimizer>, carry: bool) -> f32 {
    let mut rng = SeededRng::seed_from_u64(2);
    let mut masked = net(&mut rng);
    freeze_dead(&mut masked, GateKind::Slope);
    let data = batches(&mut rng);
    let epochs = |_: usize| data.clone().into_iter().map(Ok);

    let mut compacted = masked.clone();
    Trainer::with_boxed(optimizer(), 3)
        .fit(&mut masked, epochs, &mut [])
        .unwrap();

    let events = Rc::new(RefCell::new(Vec::new()));
    let seen = Rc::clone(&events);
    let mut compact = CompactEvery::new(1, GateKind::Slope, 0.0, &INPUT)
        .on_compact(move |c| seen.borrow_mut().push(*c));
    let inner = optimizer();
    let optimizer: Box<dyn Optimizer> = if carry {
        inner
    } else {
        Box::new(Forgetful(inner))
    };
    Trainer::with_boxed(optimizer, 3)
        .fit(&mut compacted, epochs, &mut [&mut compact])
        .unwrap();
    // Only the first compaction removes anything: the dead slopes are gone after it.
    assert_eq!(compact.compactions(), &events.borrow()[..]);
    assert_eq!(compact.compactions().len(), 1);
    let first = compact.compactions()[0];
    assert_eq!(first.epoch, 0);
    assert!(first.flops_after < first.flops_before && first.params_after < first.params_before);
    assert_eq!(first.params_after as usize, compacted.param_count());

    let expected = prune_at(&masked, GateKind::Slope, 0.0, &INPUT)
        .unwrap()
        .network;
    let mut worst = 0.0f32;
    for ((name, a), (_, b)) in values(&compacted).iter().zip(values(&expected)) {
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs() / (1.0 + y.abs()));
        }
    }
    worst
}

/// An optimizer that drops its state when parameters are replaced.
struct Forgetful(Box<dyn Optimizer>);

impl Optimizer for Forgetful {
    fn step(&mut self, model: &mut dyn Module, grads: &Gradients) {
        self.0.step(model, grads);
    }
    fn lr(&self) -> f32 {
        self.0.lr()
    }
    fn set_lr(&mut self, lr: f32) {
        self.0.set_lr(lr);
    }
    fn carry_state(&mut self, _: &[StateMove]) {}
}

#[test]
fn compacting_between_epochs_trains_as_the_masked_network_with_sgd() {
    let sgd = || Box::new(Sgd::new(0.05).momentum(0.9).weight_decay(1e-3)) as Box<dyn Optimizer>;
    let worst = compare(sgd, true);
    assert!(worst < 1e-5, "largest relative difference {worst}");
    // Without the momentum carried over, training takes another path.
    let forgetful = compare(sgd, false);
    assert!(forgetful > 1e-3, "largest relative difference {forgetful}");
}

#[test]
fn compacting_between_epochs_trains_as_the_masked_network_with_adam() {
    let adam = || Box::new(Adam::new(1e-2).weight_decay(1e-3)) as Box<dyn Optimizer>;
    let worst = compare(adam, true);
    assert!(worst < 1e-5, "largest relative difference {worst}");
    let forgetful = compare(adam, false);
    assert!(forgetful > 1e-3, "largest relative difference {forgetful}");
}

/// A model that does not expose its network.
struct Opaque(Sequential);

impl Module for Opaque {
    fn forward(&self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        self.0.forward(x)
    }
    fn forward_train(&mut self, x: &Tensor) -> rotor_engine::Result<Tensor> {
        self.0.forward_train(x)
    }
    fn visit_params(&self, prefix: &str, f: &mut rotor_nn::param::ParamVisitor<'_>) {
        self.0.visit_params(prefix, f);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut rotor_nn::param::ParamVisitorMut<'_>) {
        self.0.visit_params_mut(prefix, f);
    }
}

#[test]
fn a_model_that_hides_its_network_cannot_be_compacted() {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut model = Opaque(net(&mut rng));
    let data = batches(&mut rng);
    let mut compact = CompactEvery::new(1, GateKind::Slope, 0.0, &INPUT);
    let err = Trainer::new(Sgd::new(0.01), 1)
        .fit(
            &mut model,
            |_| data.clone().into_iter().map(Ok),
            &mut [&mut compact],
        )
        .unwrap_err();
    assert!(err.to_string().contains("sequential_mut"), "{err}");
}

#[test]
fn compaction_happens_after_every_nth_epoch_only() {
    for (every, expected_epoch) in [(0, None), (2, Some(1)), (4, None)] {
        let mut rng = SeededRng::seed_from_u64(4);
        let mut model = net(&mut rng);
        freeze_dead(&mut model, GateKind::Slope);
        let before = model.param_count();
        let data = batches(&mut rng);
        let mut compact = CompactEvery::new(every, GateKind::Slope, 0.0, &INPUT);
        Trainer::new(Sgd::new(0.01), 3)
            .fit(
                &mut model,
                |_| data.clone().into_iter().map(Ok),
                &mut [&mut compact],
            )
            .unwrap();
        let epochs: Vec<usize> = compact.compactions().iter().map(|c| c.epoch).collect();
        assert_eq!(epochs, Vec::from_iter(expected_epoch), "every {every}");
        assert_eq!(model.param_count() < before, expected_epoch.is_some());
    }
}
