//! Data-parallel training across processes and machines through MPI (the `mpi` feature).
//!
//! Every process (a *rank*) holds a copy of the model, reads its shard of every batch
//! ([`shard`](crate::train::shard)), and runs the forward and backward passes on it; one
//! all-reduce per step sums the ranks' gradients, packed into a single flat buffer, and
//! every rank then applies the same optimizer step, so the copies stay equal. Batch-norm
//! running statistics stay per rank, as in PyTorch's `DistributedDataParallel` without
//! `SyncBatchNorm`: each rank normalises its shard by the shard's own statistics.
//!
//! ```no_run
//! use rotor_nn::distributed::Mpi;
//! use rotor_nn::train::{Trainer, shard};
//! # use rotor_engine::{SeedableRng, SeededRng, Tensor};
//! # use rotor_nn::{Linear, Sequential, Sgd};
//! # let mut rng = SeededRng::seed_from_u64(0);
//! # let mut model = Sequential::new().push("fc", Linear::new(2, 2, true, &mut rng)?);
//! # let x = Tensor::zeros(&[4, 2])?;
//! # let batches = |_epoch: usize| vec![(x.clone(), vec![0, 1, 0, 1])];
//!
//! let mpi = Mpi::init()?;
//! let (rank, ranks) = (mpi.rank(), mpi.size());
//! let mut trainer = Trainer::new(Sgd::new(0.1), 3).sync(mpi.gradient_sync());
//! trainer.fit(
//!     &mut model,
//!     |epoch| batches(epoch).into_iter().map(move |b| shard(b, rank, ranks)),
//!     &mut [],
//! )?;
//! if rank == 0 {
//!     model.save("model.safetensors")?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Run it with `mpirun -np 2 target/release/your-program` on one machine, or with
//! `mpirun --hostfile hosts -np 8 ...` across several.
//!
//! A rank that fails must not leave the others waiting in a collective: [`Mpi::init`]
//! makes a panic abort the whole job, and [`Mpi::exit_on_error`] does the same for an
//! error, after printing it with the rank's number.

use std::fmt::Display;
use std::rc::Rc;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use rotor_engine::Gradients;

use crate::module::Module;
use crate::train::{FlatGradients, GradientSync, LocalStep, TrainError};

/// What can go wrong starting MPI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// MPI was initialised before, in this process.
    #[error("MPI is already initialised in this process")]
    AlreadyInitialised,
}

/// This process's membership of an MPI job: its rank among the job's processes.
///
/// MPI is finalised when the last of this value and the [`MpiSync`]s made from it is
/// dropped.
pub struct Mpi {
    universe: Rc<Universe>,
    world: SimpleCommunicator,
}

impl Mpi {
    /// Initialises MPI (once per process) and makes a panic on any thread print the rank
    /// and abort the whole job, so that no other rank waits for this one forever.
    ///
    /// # Errors
    /// [`DistributedError::AlreadyInitialised`] on a second call.
    pub fn init() -> Result<Self, DistributedError> {
        let universe = mpi::initialize().ok_or(DistributedError::AlreadyInitialised)?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("rank {rank} of {size} panicked; aborting the job");
            previous(info);
            SimpleCommunicator::world().abort(101);
        }));
        Ok(Self {
            universe: Rc::new(universe),
            world,
        })
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    /// The number of processes in the job.
    pub fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// Whether this is rank 0, the one that writes checkpoints and reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The communicator of all the job's processes, for collectives of the caller's own.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// A [`GradientSync`] over all the job's processes, for
    /// [`Trainer::sync`](crate::train::Trainer::sync).
    pub fn gradient_sync(&self) -> MpiSync {
        MpiSync {
            _universe: Rc::clone(&self.universe),
            world: self.universe.world(),
            buffer: FlatGradients::new(),
            summed: Vec::new(),
        }
    }

    /// Rank 0's `values` on every rank (a decision made once: a pruning threshold, a
    /// stop).
    pub fn broadcast(&self, values: &mut [f32]) {
        self.world.process_at_rank(0).broadcast_into(values);
    }

    /// The value of `result`, or, for an error, prints it with this rank's number and
    /// aborts the whole job with exit code 1.
    pub fn exit_on_error<T, E: Display>(&self, result: Result<T, E>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => {
                eprintln!("error on rank {} of {}: {e}", self.rank(), self.size());
                self.world.abort(1)
            }
        }
    }
}

/// Sums gradients over all ranks of an MPI job with one all-reduce of a flat buffer per
/// step; made by [`Mpi::gradient_sync`].
pub struct MpiSync {
    _universe: Rc<Universe>,
    world: SimpleCommunicator,
    buffer: FlatGradients,
    summed: Vec<f32>,
}

impl GradientSync for MpiSync {
    /// Copies rank 0's parameters to every rank, in one broadcast.
    fn start(&mut self, model: &mut dyn Module) -> Result<(), TrainError> {
        let mut values = Vec::new();
        model.visit_params("", &mut |_, p| {
            values.extend_from_slice(p.tensor().as_slice())
        });
        self.world
            .process_at_rank(0)
            .broadcast_into(&mut values[..]);
        let mut offset = 0;
        model.visit_params_mut("", &mut |_, p| {
            let len = p.tensor().numel();
            p.update(|v| v.copy_from_slice(&values[offset..offset + len]));
            offset += len;
        });
        Ok(())
    }

    fn sync(
        &mut self,
        model: &dyn Module,
        grads: &mut Gradients,
        local: LocalStep,
    ) -> Result<LocalStep, TrainError> {
        let send = self.buffer.pack(model, grads, local);
        self.summed.resize(send.len(), 0.0);
        self.world
            .all_reduce_into(send, &mut self.summed[..], SystemOperation::sum());
        Ok(FlatGradients::unpack(&self.summed, model, grads)?)
    }
}
