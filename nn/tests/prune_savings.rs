//! Savings accounting on MnistNet against counts worked out by hand.

use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::prune::{self, GateKind, PrunePlan, Savings, SavingsRow};
use rotor_nn::{Activation, Layer, MnistNet, Module, ModuleExt};

fn row<'a>(savings: &'a Savings, layer: &str) -> &'a SavingsRow {
    savings.rows.iter().find(|r| r.layer == layer).unwrap()
}

fn assert_totals_are_row_sums(savings: &Savings) {
    let sum = |f: fn(&SavingsRow) -> u64| savings.rows.iter().map(f).sum::<u64>();
    let t = &savings.total;
    assert_eq!(t.params_before, sum(|r| r.params_before));
    assert_eq!(t.params_after, sum(|r| r.params_after));
    assert_eq!(t.flops_before, sum(|r| r.flops_before));
    assert_eq!(t.flops_after, sum(|r| r.flops_after));
    assert_eq!(t.bytes_before, sum(|r| r.bytes_before));
    assert_eq!(t.bytes_after, sum(|r| r.bytes_after));
    assert_eq!(t.channels_kept, sum(|r| r.channels_kept));
}

#[test]
fn mnist_net_at_full_width() {
    let mut rng = SeededRng::seed_from_u64(0);
    let net = MnistNet::new(Activation::Rotated, &mut rng).unwrap();
    // Initial slopes have |a| >= 0.7: nothing is dead at zeta = 0.1.
    let plan = PrunePlan::new(net.as_sequential(), GateKind::Slope, 0.1).unwrap();
    assert!(!plan.removes_anything());
    let savings = Savings::new(net.as_sequential(), &plan, &[1, 28, 28]).unwrap();
    // conv1: 32 filters of 1x3x3 plus 32 biases = 320; output 26x26 = 676 positions,
    //        2 * 32 * 9 * 676 = 389,376 FLOPs.
    // conv2: 64 x 32 x 3 x 3 = 18,432 weights + 64 biases = 18,496; output 24x24 = 576,
    //        2 * 64 * 288 * 576 = 21,233,664 FLOPs.
    // fc1:   128 x 9216 (64 x 12 x 12) = 1,179,648 weights + 128 = 1,179,776;
    //        2 * 1,179,648 = 2,359,296 FLOPs.
    // fc2:   10 x 128 + 10 = 1,290; 2,560 FLOPs.
    // Weights and biases: 320 + 18,496 + 1,179,776 + 1,290 = 1,199,882;
    // with the 32 + 64 + 128 = 224 slopes, 1,200,106 parameters.
    // FLOPs: 389,376 + 21,233,664 + 2,359,296 + 2,560 = 23,984,896 (24.0 MFLOP).
    let expect = [
        ("conv1", 320, 389_376),
        ("act1", 32, 0),
        ("conv2", 18_496, 21_233_664),
        ("act2", 64, 0),
        ("fc1", 1_179_776, 2_359_296),
        ("act3", 128, 0),
        ("fc2", 1_290, 2_560),
    ];
    assert_eq!(savings.rows.len(), expect.len());
    for (layer, params, flops) in expect {
        let r = row(&savings, layer);
        assert_eq!(
            (r.params_before, r.flops_before),
            (params, flops),
            "{layer}"
        );
        assert_eq!((r.params_after, r.flops_after), (params, flops), "{layer}");
        assert_eq!(r.bytes_before, 4 * params);
    }
    assert_eq!(savings.total.params_before, 1_200_106);
    assert_eq!(savings.total.params_before, net.param_count() as u64);
    assert_eq!(savings.total.flops_before, 23_984_896);
    assert_eq!(savings.memory_saving_percent(), 0.0);
    assert_totals_are_row_sums(&savings);
}

#[test]
fn mnist_net_with_half_of_conv2_dead() {
    let mut rng = SeededRng::seed_from_u64(1);
    let mut net = MnistNet::new(Activation::Rotated, &mut rng).unwrap();
    for (name, layer) in net.as_sequential_mut().layers_mut() {
        if let (Layer::RotatedRelu(act), "act2") = (layer, name.as_str()) {
            act.slope
                .update(|a| a[..32].iter_mut().for_each(|v| *v *= 0.01));
        }
    }
    let plan = PrunePlan::new(net.as_sequential(), GateKind::Slope, 0.1).unwrap();
    let savings = Savings::new(net.as_sequential(), &plan, &[1, 28, 28]).unwrap();
    // conv2 keeps 32 filters: 32 x 288 + 32 = 9,248 parameters, half the FLOPs,
    // 10,616,832. fc1 keeps 32 x 144 = 4,608 inputs: 128 x 4,608 + 128 = 589,952
    // parameters, 2 * 589,824 = 1,179,648 FLOPs. act2 keeps 32 slopes.
    let conv2 = row(&savings, "conv2");
    assert_eq!((conv2.channels_total, conv2.channels_kept), (64, 32));
    assert_eq!((conv2.params_after, conv2.flops_after), (9_248, 10_616_832));
    let fc1 = row(&savings, "fc1");
    assert_eq!((fc1.params_after, fc1.flops_after), (589_952, 1_179_648));
    assert_eq!(row(&savings, "act2").params_after, 32);
    assert_eq!(row(&savings, "conv1").params_after, 320);
    // 1,200,106 - 9,248 - 589,824 - 32 = 601,002 parameters remain;
    // 23,984,896 - 10,616,832 - 1,179,648 = 12,188,416 FLOPs.
    assert_eq!(savings.total.params_after, 601_002);
    assert_eq!(savings.total.flops_after, 12_188_416);
    let memory = 100.0 * (1_200_106.0 - 601_002.0) / 1_200_106.0;
    assert!((savings.memory_saving_percent() - memory).abs() < 1e-9);
    let compute = 100.0 * (23_984_896.0 - 12_188_416.0) / 23_984_896.0;
    assert!((savings.compute_saving_percent() - compute).abs() < 1e-9);
    assert_totals_are_row_sums(&savings);

    // The compacted network is MnistNet with widths [32, 32, 128], and computes what
    // the masked one does.
    let narrow = MnistNet::with_widths(Activation::Rotated, [32, 32, 128], &mut rng).unwrap();
    let mut masked = net.into_sequential();
    prune::mask(&mut masked, &plan);
    let x = Tensor::rand_uniform(&[2, 1, 28, 28], -1.0, 1.0, &mut rng).unwrap();
    let want = masked.forward(&x).unwrap();
    let small = prune::compact(masked, &plan).unwrap();
    assert_eq!(small.param_count(), narrow.param_count());
    assert_eq!(small.param_count() as u64, savings.total.params_after);
    let got = small.forward(&x).unwrap();
    for (w, g) in want.as_slice().iter().zip(got.as_slice()) {
        assert!((w - g).abs() <= 1e-5 * (1.0 + w.abs()), "{w} vs {g}");
    }
}
