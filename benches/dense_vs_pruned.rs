//! MnistNet inference with the compiled plan, four ways, reported as images per second:
//!
//! - `dense`: the full model;
//! - `masked`: the slopes of the pruned channels set to 0, every channel still computed;
//! - `skipping`: the masked model with its zero-slope channels skipped by the
//!   channel-skipping kernels (no compacted copy);
//! - `compacted`: a model built at the kept widths, the compute a compacted model does.
//!
//! The kept channels follow a fixed pattern: for a keep fraction `f`, `round(f C)` channels
//! of each rotated layer spread evenly (every other channel at 50%). Groups
//! `inference_batch{1,64,256}` compare the four ways at 50% kept; `keep_sweep_batch64`
//! sweeps 100%, 75%, 50% and 25% kept. The FLOP ratio of each fraction is printed first, to
//! read the measured speedups against, and so are the sweep's speedups measured in
//! alternating rounds, which a drift of the machine's speed between criterion's benchmarks
//! does not move.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rotor::datasets::{BatchOptions, Subset, load_mnist};
use rotor::engine::{SeedableRng, SeededRng, Tensor};
use rotor::nn::inference::{InferencePlan, PlanOptions, Workspace};
use rotor::nn::{Activation, Layer, MnistNet};

const SAMPLE: [usize; 3] = [1, 28, 28];
const FULL_WIDTHS: [usize; 3] = [32, 64, 128];
const FRACTIONS: [f64; 4] = [1.0, 0.75, 0.5, 0.25];
/// Rounds of [`alternating_speedups`] (after one discarded, which warms up), and the time
/// each plan runs in a round.
const ROUNDS: usize = 21;
const ROUND_TIME: Duration = Duration::from_millis(100);

/// `round(f C)` channels of `0..C`, spread evenly.
fn kept(channels: usize, fraction: f64) -> Vec<usize> {
    let keep = (fraction * channels as f64).round() as usize;
    (0..keep).map(|i| i * channels / keep).collect()
}

/// The full MnistNet (fixed seed), with the slopes of the channels outside the keep pattern
/// set to 0 when `fraction < 1`.
fn masked_model(fraction: f64) -> MnistNet {
    let mut model = MnistNet::new(Activation::Rotated, &mut SeededRng::seed_from_u64(0))
        .expect("MnistNet builds");
    for (_, layer) in model.as_sequential_mut().layers_mut() {
        if let Layer::RotatedRelu(act) = layer {
            let keep = kept(act.channels(), fraction);
            act.slope.update(|slopes| {
                for (c, slope) in slopes.iter_mut().enumerate() {
                    if !keep.contains(&c) {
                        *slope = 0.0;
                    }
                }
            });
        }
    }
    model
}

/// The four plans for keep fraction `fraction`: dense, masked, skipping, compacted.
fn plans(fraction: f64) -> [(&'static str, InferencePlan); 4] {
    let dense = PlanOptions::default();
    let skip = PlanOptions {
        skip_threshold: Some(0.0),
    };
    let compile = |model: &MnistNet, options| {
        InferencePlan::compile(model.as_sequential(), &SAMPLE, options).expect("plan compiles")
    };
    let masked = masked_model(fraction);
    let widths = FULL_WIDTHS.map(|c| kept(c, fraction).len());
    let compacted = MnistNet::with_widths(
        Activation::Rotated,
        widths,
        &mut SeededRng::seed_from_u64(0),
    )
    .expect("MnistNet builds");
    [
        ("dense", compile(&masked_model(1.0), dense)),
        ("masked", compile(&masked, dense)),
        ("skipping", compile(&masked, skip)),
        ("compacted", compile(&compacted, dense)),
    ]
}

/// The first `batch` MNIST test images as one `[batch * 784]` buffer.
fn images(batch: usize) -> Vec<f32> {
    let data = load_mnist(Subset::Test).expect("the shipped MNIST loads");
    let options = BatchOptions {
        batch_size: batch,
        ..BatchOptions::default()
    };
    let batch = data.batches(&options, 0).next().expect("one batch");
    let (images, _): (Tensor, _) = batch.into_tensor().expect("a well-formed batch");
    images.to_vec()
}

/// Prints the FLOP ratio (dense over kept) of each keep fraction: computed from the plans,
/// so that the criterion groups' speedups can be read against it.
fn flop_ratios() {
    let dense_flops = plans(1.0)[0].1.flops_per_sample() as f64;
    eprintln!("{}", rotor::kernels::simd::describe());
    eprintln!("FLOP ratio (dense / kept), MnistNet forward, {dense_flops:.0} FLOP per image:");
    for fraction in FRACTIONS {
        let [_, _, (_, skipping), _] = plans(fraction);
        let ratio = dense_flops / skipping.flops_per_sample() as f64;
        eprintln!("  keep {:>3.0}%: {ratio:.2}x", fraction * 100.0);
    }
}

/// Prints the sweep's speedups (each pruned plan over the 100% plan of its kind, batch 64)
/// measured in alternating rounds: the median of the rounds' ratios and their range.
///
/// NOTE: criterion measures one benchmark after another, the sweep's 100% and 25% plans a
/// minute apart, and on a shared machine the speed drifts by 5 to 10% within a minute, which
/// moves a ratio of two criterion medians by as much. Here each round times both plans back
/// to back, in turn first, so a drift slower than a round cancels out of its ratio.
fn alternating_speedups(input: &[f32]) {
    eprintln!(
        "Speedup over keep 100%, batch 64, in alternating rounds (median of {ROUNDS}, range):"
    );
    let full = plans(1.0);
    for fraction in FRACTIONS.into_iter().filter(|&f| f < 1.0) {
        let pruned = plans(fraction);
        let mut line = format!("  keep {:>3.0}%:", fraction * 100.0);
        // The skipping and compacted plans.
        for kind in [2, 3] {
            let ((name, base), (_, plan)) = (&full[kind], &pruned[kind]);
            let mut workspaces = (base.workspace(), plan.workspace());
            let mut ratios: Vec<f64> = (0..=ROUNDS)
                .map(|round| {
                    let mut time_base = || seconds_per_call(base, &mut workspaces.0, input);
                    let (base_time, time) = if round % 2 == 0 {
                        (
                            time_base(),
                            seconds_per_call(plan, &mut workspaces.1, input),
                        )
                    } else {
                        let time = seconds_per_call(plan, &mut workspaces.1, input);
                        (time_base(), time)
                    };
                    base_time / time
                })
                .skip(1)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let (low, median, high) = (ratios[0], ratios[ROUNDS / 2], ratios[ROUNDS - 1]);
            line += &format!(" {name} {median:.2}x ({low:.2} to {high:.2})");
        }
        eprintln!("{line}");
    }
}

/// Seconds per call of `plan` on the batch of 64 images `input`, over the calls that fill
/// [`ROUND_TIME`].
fn seconds_per_call(plan: &InferencePlan, workspace: &mut Workspace, input: &[f32]) -> f64 {
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < ROUND_TIME {
        black_box(
            plan.run(black_box(input), 64, workspace)
                .expect("the plan runs"),
        );
        calls += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(calls)
}

fn inference(c: &mut Criterion) {
    let input = images(256);
    flop_ratios();
    alternating_speedups(&input[..64 * 784]);
    for batch in [1, 64, 256] {
        let input = &input[..batch * 784];
        let mut group = c.benchmark_group(format!("inference_batch{batch}"));
        group.throughput(Throughput::Elements(batch as u64));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (name, plan) in plans(0.5) {
            let mut workspace = plan.workspace();
            group.bench_function(BenchmarkId::new(name, "keep50"), |b| {
                b.iter(|| {
                    black_box(plan.run(black_box(input), batch, &mut workspace).unwrap());
                })
            });
        }
        group.finish();
    }

    let input = &input[..64 * 784];
    let mut group = c.benchmark_group("keep_sweep_batch64");
    group.throughput(Throughput::Elements(64));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for fraction in FRACTIONS {
        let percent = format!("keep{:.0}", fraction * 100.0);
        let [_, _, skipping, compacted] = plans(fraction);
        for (name, plan) in [skipping, compacted] {
            let mut workspace = plan.workspace();
            group.bench_function(BenchmarkId::new(name, &percent), |b| {
                b.iter(|| {
                    black_box(plan.run(black_box(input), 64, &mut workspace).unwrap());
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
