//! Trains `MnistNet` with rotated ReLUs on the MNIST copy shipped in the repository,
//! reports accuracy and throughput per epoch, and saves a checkpoint.
//!
//! ```sh
//! cargo run --release --example mnist_rrelu
//! cargo run --release --example mnist_rrelu -- --activation relu --epochs 1
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rotor::datasets::{self, BatchOptions, ImageDataset, Subset};
use rotor::engine::{SeedableRng, SeededRng};
use rotor::nn::metrics::count_correct;
use rotor::nn::{
    Activation, Adam, AdamW, CosineAnnealingLr, Layer, LrSchedule, MnistNet, Module, Optimizer,
    Sgd, checkpoint,
};

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

/// Train MnistNet (rotated ReLU by default) on MNIST.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
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
    /// Seed of the initialisation and of the shuffling: the same seed gives the same run.
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
    /// L1 penalty on the rotated-ReLU slopes (adds s * sign(a) to their gradients).
    #[arg(long, default_value_t = 0.0)]
    l1: f32,
    /// Where to write the trained model (safetensors).
    #[arg(long, default_value = "mnist_rrelu.safetensors")]
    save: PathBuf,
    /// Start from this checkpoint instead of a fresh initialisation.
    #[arg(long)]
    load: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let (train, test) = load_data(&args)?;
    println!(
        "data: {} training and {} test images of {}x{}; {} threads; {}",
        train.len(),
        test.len(),
        train.rows(),
        train.cols(),
        rayon::current_num_threads(),
        rotor::kernels::simd::describe()
    );

    let mut rng = SeededRng::seed_from_u64(args.seed);
    let activation = match args.activation {
        ActivationKind::Relu => Activation::Relu,
        ActivationKind::Rotated => Activation::Rotated,
    };
    let mut model = MnistNet::new(activation, &mut rng)?;
    if let Some(path) = &args.load {
        checkpoint::load(&mut model, path)?;
        println!("loaded {}", path.display());
    }
    let (mut optimizer, base_lr) = make_optimizer(&args);
    let schedule = CosineAnnealingLr::new(base_lr, args.epochs.max(1));
    println!(
        "model: MnistNet ({activation:?}), {} parameters; optimizer {:?}, lr {base_lr}, batch {}",
        rotor::nn::ModuleExt::param_count(&model),
        args.optimizer,
        args.batch_size
    );

    for epoch in 0..args.epochs {
        optimizer.set_lr(schedule.lr(epoch));
        let started = Instant::now();
        let loss = train_epoch(&mut model, optimizer.as_mut(), &train, &args, epoch)?;
        let seconds = started.elapsed().as_secs_f64();
        let accuracy = evaluate(&model, &test)?;
        println!(
            "epoch {}/{}: train loss {loss:.4}, test accuracy {:.2}%, {seconds:.1} s, {:.0} images/s",
            epoch + 1,
            args.epochs,
            100.0 * accuracy,
            train.len() as f64 / seconds
        );
    }
    if args.epochs == 0 {
        println!("test accuracy {:.2}%", 100.0 * evaluate(&model, &test)?);
    }
    report_slopes(&model);
    checkpoint::save(&model, &args.save)?;
    println!("saved {}", args.save.display());
    Ok(())
}

fn load_data(args: &Args) -> Result<(ImageDataset, ImageDataset), datasets::DatasetError> {
    match &args.data {
        Some(dir) => Ok((
            datasets::load_idx_dir(dir, Subset::Train)?,
            datasets::load_idx_dir(dir, Subset::Test)?,
        )),
        None => Ok((
            datasets::load_mnist(Subset::Train)?,
            datasets::load_mnist(Subset::Test)?,
        )),
    }
}

fn make_optimizer(args: &Args) -> (Box<dyn Optimizer>, f32) {
    match args.optimizer {
        OptimizerKind::Sgd => {
            let lr = args.lr.unwrap_or(0.05);
            let opt = Sgd::new(lr).momentum(0.9).slope_l1(args.l1);
            (Box::new(opt), lr)
        }
        OptimizerKind::Adam => {
            let lr = args.lr.unwrap_or(2e-3);
            (Box::new(Adam::new(lr).slope_l1(args.l1)), lr)
        }
        OptimizerKind::Adamw => {
            let lr = args.lr.unwrap_or(2e-3);
            (Box::new(AdamW::new(lr).slope_l1(args.l1)), lr)
        }
    }
}

/// One pass over the shuffled training set; returns the mean training loss.
fn train_epoch(
    model: &mut MnistNet,
    optimizer: &mut dyn Optimizer,
    train: &ImageDataset,
    args: &Args,
    epoch: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let options = BatchOptions {
        batch_size: args.batch_size,
        shuffle_seed: Some(args.seed),
        ..BatchOptions::default()
    };
    let batches = train.batches(&options, epoch as u64);
    let bar = ProgressBar::new(batches.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {}/{}", epoch + 1, args.epochs));
    let started = Instant::now();
    let (mut loss_sum, mut seen) = (0.0f64, 0usize);
    for batch in batches {
        let (images, labels) = batch.into_tensor()?;
        let loss = model.forward_train(&images)?.cross_entropy(&labels)?;
        let grads = loss.backward()?;
        optimizer.step(model, &grads);
        loss_sum += f64::from(loss.to_scalar()?) * labels.len() as f64;
        seen += labels.len();
        bar.inc(1);
        if bar.position() % 20 == 0 {
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4}, {rate:.0} images/s",
                loss_sum / seen as f64
            ));
        }
    }
    bar.finish_and_clear();
    Ok(loss_sum / seen.max(1) as f64)
}

/// The fraction of `data` classified correctly, in evaluation mode.
fn evaluate(model: &MnistNet, data: &ImageDataset) -> Result<f64, Box<dyn std::error::Error>> {
    let options = BatchOptions {
        batch_size: 500,
        ..BatchOptions::default()
    };
    let mut correct = 0;
    for batch in data.batches(&options, 0) {
        let (images, labels) = batch.into_tensor()?;
        correct += count_correct(&model.forward(&images)?, &labels)?;
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// How many channels of each rotated ReLU training has switched (nearly) off.
fn report_slopes(model: &MnistNet) {
    const ZETA: f32 = 0.1;
    for (name, layer) in model.as_sequential().layers() {
        if let Layer::RotatedRelu(act) = layer {
            let slopes = act.slope.tensor().as_slice();
            let dead = slopes.iter().filter(|a| a.abs() <= ZETA).count();
            println!(
                "{name}: {dead} of {} slopes with |a| <= {ZETA}",
                slopes.len()
            );
        }
    }
}
