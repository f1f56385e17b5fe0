//! Data-parallel training under MPI, against one process training on the same batches.
//!
//! Run by `cargo test -p rotor-nn --features mpi --release --test distributed` on a machine
//! with Open MPI's `mpirun`: without a harness, `main` starts itself under
//! `mpirun -np 2` (or 1) for each scenario and checks what the ranks wrote. Started by
//! `mpirun`, it is one rank of the scenario its environment names.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rotor_engine::{SeedableRng, SeededRng, Tensor};
use rotor_nn::distributed::Mpi;
use rotor_nn::prune::{GateKind, gate_magnitudes, prune_at};
use rotor_nn::train::{Callback, LabelledBatch, SaveEveryEpoch, Trainer, shard};
use rotor_nn::{
    Conv2d, Flatten, Linear, MaxPool2d, Module, ModuleExt, RotatedRelu, Sequential, Sgd,
};

/// The scenario a rank runs.
const SCENARIO: &str = "ROTOR_DISTRIBUTED_SCENARIO";
/// The directory the ranks write to.
const OUT: &str = "ROTOR_DISTRIBUTED_OUT";
/// The seed of rank 0's initialisation (and of the single process's).
const SEED: u64 = 100;
/// Epochs of the training run.
const EPOCHS: usize = 2;

fn model(seed: u64) -> Sequential {
    let mut rng = SeededRng::seed_from_u64(seed);
    Sequential::new()
        .push("conv1", Conv2d::new(1, 6, 3, 1, 1, &mut rng).unwrap())
        .push("act1", RotatedRelu::new(6, &mut rng).unwrap())
        .push("pool", MaxPool2d::new(2))
        .push("flatten", Flatten)
        .push("fc1", Linear::new(6 * 4 * 4, 12, true, &mut rng).unwrap())
        .push("act2", RotatedRelu::new(12, &mut rng).unwrap())
        .push("fc2", Linear::new(12, 3, true, &mut rng).unwrap())
}

/// The epoch's batches: sizes 10, 7 (uneven shards) and 1 (an empty shard for one of two
/// ranks), reshuffled per epoch.
fn batches(epoch: usize) -> Vec<LabelledBatch> {
    let mut rng = SeededRng::seed_from_u64(7 + epoch as u64);
    [10, 7, 1]
        .into_iter()
        .map(|n| {
            let x = Tensor::rand_normal(&[n, 1, 8, 8], 0.0, 1.0, &mut rng).unwrap();
            let labels = (0..n).map(|i| ((i + epoch) % 3) as u32).collect();
            (x, labels)
        })
        .collect()
}

fn optimizer() -> Sgd {
    Sgd::new(0.05).momentum(0.9).weight_decay(1e-3)
}

/// Trains `net` for `epochs` epochs on the batches, sharded when `ranks` is given.
fn train(
    net: &mut Sequential,
    epochs: usize,
    mpi: Option<&Mpi>,
    callbacks: &mut [&mut dyn Callback],
) {
    let mut trainer = Trainer::new(optimizer(), epochs);
    let (rank, ranks) = mpi.map_or((0, 1), |m| (m.rank(), m.size()));
    if let Some(mpi) = mpi {
        trainer = trainer.sync(mpi.gradient_sync());
    }
    let history = trainer
        .fit(
            net,
            |epoch| {
                batches(epoch)
                    .into_iter()
                    .map(move |b| shard(b, rank, ranks))
            },
            callbacks,
        )
        .unwrap();
    // Every rank counts the whole batches' inputs.
    assert!(history.epochs.iter().all(|e| e.images == 18));
}

/// The threshold rank 0 decides: the median slope magnitude.
fn median_slope(net: &Sequential) -> f32 {
    let mut all: Vec<f32> = gate_magnitudes(net, GateKind::Slope)
        .into_iter()
        .flat_map(|(_, m)| m)
        .collect();
    all.sort_by(f32::total_cmp);
    all[all.len() / 2]
}

/// One rank's part of `scenario`.
fn rank_main(scenario: &str, out: &Path) {
    let mpi = Mpi::init().unwrap();
    let rank = mpi.rank();
    match scenario {
        "train" => {
            // Every rank starts from different values: the trainer's start makes them
            // rank 0's.
            let mut net = model(SEED + rank as u64);
            train(&mut net, EPOCHS, Some(&mpi), &mut []);
            net.save(out.join(format!("trained-{rank}.safetensors")))
                .unwrap();
            let mut zeta = [if mpi.is_root() {
                median_slope(&net)
            } else {
                f32::NAN
            }];
            mpi.broadcast(&mut zeta);
            let pruned = prune_at(&net, GateKind::Slope, zeta[0], &[1, 8, 8]).unwrap();
            pruned
                .network
                .save(out.join(format!("pruned-{rank}.safetensors")))
                .unwrap();
        }
        "checkpoint" => {
            let mut net = model(SEED);
            let mut save = SaveEveryEpoch {
                path: out.join("checkpoint.safetensors"),
            };
            let mut callbacks: Vec<&mut dyn Callback> = Vec::new();
            if mpi.is_root() {
                callbacks.push(&mut save);
            }
            train(&mut net, EPOCHS, Some(&mpi), &mut callbacks);
        }
        "resume" => {
            let mut net = Sequential::load(out.join("checkpoint.safetensors")).unwrap();
            train(&mut net, 1, Some(&mpi), &mut []);
            net.save(out.join(format!("resumed-{rank}.safetensors")))
                .unwrap();
        }
        "fail" => {
            let mut net = model(SEED);
            if rank == 1 {
                mpi.exit_on_error(Err::<(), _>("the data source broke"));
            }
            // Rank 0 waits in the first all-reduce for a rank that is gone.
            train(&mut net, EPOCHS, Some(&mpi), &mut []);
        }
        "kill" => {
            let mut net = model(SEED);
            if rank == 1 {
                let pid = std::process::id().to_string();
                Command::new("kill").args(["-9", &pid]).status().unwrap();
            }
            train(&mut net, EPOCHS, Some(&mpi), &mut []);
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs `scenario` on `ranks` processes under `mpirun`.
fn mpirun(scenario: &str, ranks: usize, out: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .arg(std::env::current_exe().unwrap())
        .env(SCENARIO, scenario)
        .env(OUT, out)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("mpirun (Open MPI) must be on the PATH");
    (output, started.elapsed())
}

fn succeeds(scenario: &str, ranks: usize, out: &Path) {
    let (output, _) = mpirun(scenario, ranks, out);
    assert!(
        output.status.success(),
        "{scenario} on {ranks} ranks failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn params(path: &Path) -> Vec<(String, Vec<f32>)> {
    let net = Sequential::load(path).unwrap();
    let mut all = Vec::new();
    net.visit_params("", &mut |name, p| {
        all.push((name.to_string(), p.tensor().to_vec()))
    });
    all
}

fn assert_close(what: &str, got: &Path, expected: &Sequential) {
    let mut want = Vec::new();
    expected.visit_params("", &mut |name, p| {
        want.push((name.to_string(), p.tensor().to_vec()))
    });
    let got = params(got);
    assert_eq!(got.len(), want.len(), "{what}");
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert_eq!(a.len(), b.len(), "{what}: {name}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{what}: {name}[{i}]: {x} on the ranks, {y} in one process"
            );
        }
    }
}

fn bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Two ranks train as one process on the union of their shards, prune alike, and stop
/// together when one fails; a checkpoint they write resumes on another number of ranks.
fn parent_main() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();

    succeeds("train", 2, out);
    let mut single = model(SEED);
    train(&mut single, EPOCHS, None, &mut []);
    for rank in 0..2 {
        assert_close(
            &format!("rank {rank} after training"),
            &out.join(format!("trained-{rank}.safetensors")),
            &single,
        );
    }
    assert_eq!(
        bytes(out.join("trained-0.safetensors")),
        bytes(out.join("trained-1.safetensors")),
        "the ranks' models differ"
    );
    let pruned = bytes(out.join("pruned-0.safetensors"));
    assert_eq!(pruned, bytes(out.join("pruned-1.safetensors")));
    let rank0 = Sequential::load(out.join("trained-0.safetensors")).unwrap();
    let from_rank0 = prune_at(&rank0, GateKind::Slope, median_slope(&rank0), &[1, 8, 8]).unwrap();
    assert!(from_rank0.network.param_count() < single.param_count());
    assert_eq!(
        pruned,
        rotor_nn::checkpoint::to_bytes(&from_rank0.network).unwrap()
    );
    // The single process, deciding for itself, removes the same channels.
    let alone = prune_at(&single, GateKind::Slope, median_slope(&single), &[1, 8, 8]).unwrap();
    let kept = |plan: &rotor_nn::prune::PrunePlan| {
        plan.layers
            .iter()
            .map(|l| (l.kept_in.clone(), l.kept_out.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&alone.plan), kept(&from_rank0.plan));

    succeeds("checkpoint", 2, out);
    succeeds("resume", 1, out);
    let mut continued = single.clone();
    train(&mut continued, 1, None, &mut []);
    assert_close(
        "resumed on 1 rank",
        &out.join("resumed-0.safetensors"),
        &continued,
    );

    for (scenario, says) in [
        ("fail", "error on rank 1 of 2: the data source broke"),
        ("kill", "rank 1"),
    ] {
        let (output, took) = mpirun(scenario, 2, out);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "{scenario}: mpirun succeeded:\n{text}"
        );
        assert!(text.contains(says), "{scenario}: no `{says}` in:\n{text}");
        assert!(took < Duration::from_secs(30), "{scenario} took {took:?}");
        println!(
            "{scenario}: mpirun exited with {} after {took:.1?}",
            output.status
        );
    }
    println!("distributed: every scenario passed");
}

fn main() {
    match (std::env::var(SCENARIO), std::env::var(OUT)) {
        (Ok(scenario), Ok(out)) => rank_main(&scenario, Path::new(&out)),
        _ => parent_main(),
    }
}
