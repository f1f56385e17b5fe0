//! Trains `MnistNet` with rotated ReLUs on the MNIST copy shipped in the repository,
//! then prunes the channels training switched off: chooses the threshold zeta on a
//! validation split held out of the training set, removes the dead channels, fine-tunes
//! the smaller network, measures dense against compacted inference, and writes a report
//! (`.report.json`, `.report.md`, `.report.png` or, with `--svg`, `.report.svg`) next to
//! the checkpoint.
//!
//! ```sh
//! cargo run --release --example mnist_rrelu
//! cargo run --release --example mnist_rrelu -- --epochs 1 --train-limit 10000
//! cargo run --release --example mnist_rrelu -- --l1 1e-3 --baselines
//! cargo run --release --example mnist_rrelu -- --attack fgsm,pgd --baselines
//! ```

mod cluster;
mod pruning;
mod robustness;
mod training;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rotor::datasets::{self, Subset, ValidationSize};
use rotor::engine::{SeedableRng, SeededRng};
use rotor::nn::prune::{self, GateKind};
use rotor::nn::report::{ImageFormat, PruneReport, RunReport};
use rotor::nn::{Activation, MnistNet, ModuleExt, ParamKind, Sequential, checkpoint};

use cluster::{Cluster, say};
use pruning::{Method, Splits, prune_method};
use robustness::AttackKind;
use training::{AnyResult, Phase, make_optimizer, train};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ActivationKind {
    Relu,
    Rotated,
}

/// Train MnistNet (rotated ReLU by default) on MNIST, prune it and report the savings.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Initial learning rate, annealed to 0 by a cosine schedule over the epochs
    /// [default: 2e-3 for Adam and AdamW, 0.05 for SGD].
    #[arg(long)]
    lr: Option<f32>,
    /// The optimizer (SGD uses momentum 0.9).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    /// Seed of the initialisation, the validation split and the shuffling: the same seed
    /// gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads [default: RAYON_NUM_THREADS, or one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// A directory of IDX files (MNIST layout, e.g. Fashion-MNIST) instead of the shipped MNIST.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The activation after each hidden layer.
    #[arg(long, value_enum, default_value_t = ActivationKind::Rotated)]
    activation: ActivationKind,
    /// Weight decay on every parameter, slopes included: an L2 term in the gradient for SGD
    /// and Adam, decoupled for AdamW. It is what lets training switch channels off: a
    /// channel's slope, its filter and the next layer's weights trade scale freely, so the
    /// decay shrinks all of them together wherever the loss does not hold them up
    /// [default: 5e-4 for Adam, 2e-3 for SGD, 1e-2 for AdamW].
    #[arg(long)]
    weight_decay: Option<f32>,
    /// L1 penalty on the rotated-ReLU slopes (adds s * sign(a) to their gradients), the
    /// paper's push towards zero: with weight decay alone the number of channels a short
    /// run switches off varies widely from seed to seed.
    #[arg(long, default_value_t = 5e-4)]
    l1: f32,
    /// Where to write the trained model (safetensors); the pruned model and the reports
    /// go next to it.
    #[arg(long, default_value = "mnist_rrelu.safetensors")]
    save: PathBuf,
    /// Start from this checkpoint instead of a fresh initialisation.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Training images held out for validation (choosing zeta, per-epoch accuracy).
    #[arg(long, default_value_t = 5000)]
    val_size: usize,
    /// Train on only the first N of the remaining training images (quick runs).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Prune at this threshold instead of choosing one on the validation split.
    #[arg(long)]
    zeta: Option<f32>,
    /// Largest validation-accuracy drop, in percentage points, the chosen zeta may cost.
    #[arg(long, default_value_t = 0.1)]
    max_drop: f64,
    /// Thresholds tried per round of the coarse-to-fine search for zeta.
    #[arg(long, default_value_t = 8)]
    candidates: usize,
    /// Epochs of fine-tuning after pruning, dead slopes frozen at zero (cheap: the
    /// compacted network trains several times faster).
    #[arg(long, default_value_t = 3)]
    finetune_epochs: usize,
    /// The paper's two-step training: train only the slopes (weights frozen at their
    /// initialisation) for --epochs, prune, then train only the weights for --epochs.
    #[arg(long)]
    two_step: bool,
    /// Also train and prune the baselines: the plain-ReLU net and Network Slimming.
    #[arg(long)]
    baselines: bool,
    /// Network Slimming's L1 penalty on the batch-norm scales.
    #[arg(long, default_value_t = 1e-4)]
    slimming_l1: f32,
    /// Adversarial attacks (untargeted, L-infinity) to measure each network's robust
    /// accuracy with on the test set, before and after pruning, e.g. `fgsm,pgd`.
    #[arg(long, value_enum, value_delimiter = ',')]
    attack: Vec<AttackKind>,
    /// Attack budgets, in pixel units on [0, 1].
    #[arg(long, value_delimiter = ',', default_values_t = [0.05, 0.1, 0.2, 0.3])]
    epsilons: Vec<f32>,
    /// PGD's gradient steps.
    #[arg(long, default_value_t = 10)]
    pgd_steps: usize,
    /// PGD's step size as a fraction of epsilon.
    #[arg(long, default_value_t = 0.25)]
    pgd_step: f32,
    /// Start PGD from the clean images instead of a random point of the epsilon ball.
    #[arg(long)]
    pgd_no_random_start: bool,
    /// Attack only the first N test images (quick runs).
    #[arg(long)]
    attack_limit: Option<usize>,
    /// Draw the report's pictures as SVG (text stays text) instead of PNG.
    #[arg(long)]
    svg: bool,
    /// Compact the network every N epochs while it trains: channels whose rotated-ReLU
    /// slopes are at or under --compact-zeta go, the optimizer's state follows the rest,
    /// and later epochs run the smaller network (0: never).
    #[arg(long, default_value_t = 0)]
    compact_every: usize,
    /// The threshold of --compact-every.
    #[arg(long, default_value_t = 0.05)]
    compact_zeta: f32,
    /// Train data-parallel as one rank of an MPI job: build with `--features mpi` and start
    /// with `mpirun -np N` (each rank's shard of a batch is 1/N of --batch-size; give each
    /// rank its share of the cores with --threads or RAYON_NUM_THREADS).
    #[arg(long)]
    distributed: bool,
}

impl Args {
    /// The initial learning rate and the optimizer it belongs to.
    fn learning_rate(&self) -> (f32, OptimizerKind) {
        let default = match self.optimizer {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adam | OptimizerKind::Adamw => 2e-3,
        };
        (self.lr.unwrap_or(default), self.optimizer)
    }

    /// The weight decay of the chosen optimizer.
    fn decay(&self) -> f32 {
        let default = match self.optimizer {
            OptimizerKind::Sgd => 2e-3,
            OptimizerKind::Adam => 5e-4,
            OptimizerKind::Adamw => 1e-2,
        };
        self.weight_decay.unwrap_or(default)
    }
}

fn main() {
    let args = Args::parse();
    let cluster = Cluster::new(args.distributed).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    if let Err(e) = run(args, &cluster) {
        cluster.fail(&e);
    }
}

fn run(args: Args, cluster: &Cluster) -> AnyResult<()> {
    let started = Instant::now();
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if args.compact_every > 0 && args.two_step {
        // NOTE: compaction drops frozen masks, which two-step training relies on.
        return Err("--compact-every and --two-step cannot be combined".into());
    }
    if !(args.decay().is_finite() && args.decay() >= 0.0) {
        return Err(format!(
            "--weight-decay must be a finite number >= 0, not {}",
            args.decay()
        )
        .into());
    }
    if let Some(bad) = args
        .epsilons
        .iter()
        .chain([&args.pgd_step])
        .find(|v| !(v.is_finite() && **v >= 0.0))
    {
        return Err(format!("--epsilons and --pgd-step must be finite and >= 0, not {bad}").into());
    }
    let data = load_data(&args)?;
    say!(
        "data: {} training, {} validation and {} test images of {}x{}; {}; {}",
        data.train.len(),
        data.val.len(),
        data.test.len(),
        data.train.rows(),
        data.train.cols(),
        cluster.describe(),
        rotor::kernels::simd::describe()
    );

    let activation = match args.activation {
        ActivationKind::Relu => Activation::Relu,
        ActivationKind::Rotated => Activation::Rotated,
    };
    let mut rng = SeededRng::seed_from_u64(args.seed);
    let mut model = MnistNet::new(activation, &mut rng)?;
    if let Some(path) = &args.load {
        checkpoint::load(&mut model, path)?;
        say!("loaded {}", path.display());
    }
    let (lr, optimizer_kind) = args.learning_rate();
    say!(
        "model: MnistNet ({activation:?}), {} parameters; optimizer {optimizer_kind:?}, lr {lr}, weight decay {}, batch {}",
        model.param_count(),
        args.decay(),
        args.batch_size
    );
    let two_step = args.two_step && activation == Activation::Rotated;
    if two_step {
        prune::train_only(&mut model, &[ParamKind::Slope]);
    }
    let optimizer = make_optimizer(optimizer_kind, lr, args.decay(), args.l1, 0.0);
    let what = if two_step { "slopes" } else { "epoch" };
    let phase = Phase {
        what,
        epochs: args.epochs,
        compact: (activation == Activation::Rotated).then_some(GateKind::Slope),
    };
    let trained = train(
        &mut model,
        optimizer,
        &phase,
        (&data.train, &data.val),
        &args,
        cluster,
    )?;
    if cluster.is_root() {
        checkpoint::save(&model, &args.save)?;
        say!("saved {}", args.save.display());
    }

    let (name, gate) = match activation {
        Activation::Rotated => ("rotated ReLU", Some(GateKind::Slope)),
        Activation::Relu => ("ReLU", None),
    };
    let main_method = Method {
        name,
        gate,
        weights_only: two_step,
        time_inference: true,
    };
    let (main_run, small) = prune_method(
        &main_method,
        model.as_sequential(),
        &trained,
        &data,
        &args,
        cluster,
    )?;
    let pruned_path = args.save.with_extension("pruned.safetensors");
    if cluster.is_root() {
        checkpoint::save(&small, &pruned_path)?;
        say!(
            "saved {} ({} parameters; `Sequential::load` rebuilds it at these widths)",
            pruned_path.display(),
            small.param_count()
        );
    }

    say!(
        "main run done after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut runs = vec![main_run];
    if args.baselines {
        if activation == Activation::Rotated {
            runs.push(relu_baseline(&args, &data, cluster)?);
        }
        runs.push(slimming_baseline(&args, &data, cluster)?);
    }
    if !cluster.is_root() {
        return Ok(());
    }
    let report = PruneReport {
        model: "MnistNet".into(),
        dataset: match &args.data {
            Some(dir) => dir.display().to_string(),
            None => "MNIST".into(),
        },
        runs,
    };
    say!("\n{}", report.to_markdown());
    let format = if args.svg {
        ImageFormat::Svg
    } else {
        ImageFormat::Png
    };
    let paths = report.write_with(&args.save, format)?;
    say!(
        "wrote {}, {} and {}",
        paths.json.display(),
        paths.markdown.display(),
        paths.figure(format).display()
    );
    if report.has_robustness() {
        say!("wrote {}", paths.robustness_figure(format).display());
    }
    say!("finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Trains the plain-ReLU net with the same epochs, optimizer and data as the main run
/// (nothing to prune: the reference accuracy and cost).
fn relu_baseline(args: &Args, data: &Splits, cluster: &Cluster) -> AnyResult<RunReport> {
    let relu = MnistNet::new(Activation::Relu, &mut SeededRng::seed_from_u64(args.seed))?;
    let method = Method {
        name: "ReLU",
        gate: None,
        weights_only: false,
        time_inference: false,
    };
    baseline(&method, relu.into_sequential(), 0.0, args, data, cluster)
}

/// Trains, prunes and fine-tunes the Network Slimming net with the same epochs, optimizer
/// and data as the main run.
fn slimming_baseline(args: &Args, data: &Splits, cluster: &Cluster) -> AnyResult<RunReport> {
    let slimming =
        MnistNet::with_batch_norm([32, 64, 128], &mut SeededRng::seed_from_u64(args.seed))?;
    let method = Method {
        name: "Network Slimming",
        gate: Some(GateKind::NormScale),
        weights_only: false,
        time_inference: false,
    };
    baseline(
        &method,
        slimming.into_sequential(),
        args.slimming_l1,
        args,
        data,
        cluster,
    )
}

/// Trains `net` with the main run's epochs, optimizer and data (and an L1 penalty of
/// `scale_l1` on batch-norm scales), then prunes it as `method` says.
fn baseline(
    method: &Method<'_>,
    mut net: Sequential,
    scale_l1: f32,
    args: &Args,
    data: &Splits,
    cluster: &Cluster,
) -> AnyResult<RunReport> {
    let (lr, kind) = args.learning_rate();
    let optimizer = make_optimizer(kind, lr, args.decay(), 0.0, scale_l1);
    let phase = Phase {
        what: method.name,
        epochs: args.epochs,
        compact: None,
    };
    let trained = train(
        &mut net,
        optimizer,
        &phase,
        (&data.train, &data.val),
        args,
        cluster,
    )?;
    Ok(prune_method(method, &net, &trained, data, args, cluster)?.0)
}

/// Training (less the validation split, optionally limited), validation and test sets.
fn load_data(args: &Args) -> AnyResult<Splits> {
    let (train_full, test) = match &args.data {
        Some(dir) => (
            datasets::load_idx_dir(dir, Subset::Train)?,
            datasets::load_idx_dir(dir, Subset::Test)?,
        ),
        None => (
            datasets::load_mnist(Subset::Train)?,
            datasets::load_mnist(Subset::Test)?,
        ),
    };
    if args.val_size >= train_full.len() {
        return Err(format!(
            "--val-size {} leaves nothing of the {} training images",
            args.val_size,
            train_full.len()
        )
        .into());
    }
    let (mut train, val) = train_full.split(ValidationSize::Count(args.val_size), args.seed);
    if let Some(limit) = args.train_limit.filter(|&n| n < train.len()) {
        train = train.subset(&(0..limit).collect::<Vec<_>>());
    }
    Ok(Splits { train, val, test })
}
