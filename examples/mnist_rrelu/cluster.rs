//! Where the example runs: alone, or (`--distributed`, built with `--features mpi`, started
//! by `mpirun`) as one rank of an MPI job that trains data-parallel. Every rank trains and
//! fine-tunes on its shard of each batch; rank 0 alone chooses the pruning threshold
//! (which it broadcasts), prints, measures, saves and reports.

use std::sync::atomic::{AtomicBool, Ordering};

use rotor::engine::Result;
use rotor::nn::train::{LabelledBatch, Trainer, shard};

use crate::training::AnyResult;

/// Set on ranks other than 0, which keep quiet.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether this process keeps quiet (a rank other than 0).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` on rank 0 only.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::cluster::quiet() {
            println!($($arg)*);
        }
    };
}
pub(crate) use say;

/// This process's place in the job.
pub struct Cluster {
    #[cfg(feature = "mpi")]
    mpi: Option<rotor::nn::distributed::Mpi>,
}

impl Cluster {
    /// Joins the MPI job when `distributed`, else runs alone.
    pub fn new(distributed: bool) -> AnyResult<Self> {
        #[cfg(feature = "mpi")]
        {
            let mpi = if distributed {
                let mpi = rotor::nn::distributed::Mpi::init()?;
                QUIET.store(!mpi.is_root(), Ordering::Relaxed);
                Some(mpi)
            } else {
                None
            };
            Ok(Self { mpi })
        }
        #[cfg(not(feature = "mpi"))]
        {
            if distributed {
                return Err("--distributed needs a build with `--features mpi`".into());
            }
            Ok(Self {})
        }
    }

    /// This process's rank and the number of ranks.
    pub fn rank_and_size(&self) -> (usize, usize) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return (mpi.rank(), mpi.size());
        }
        (0, 1)
    }

    /// Whether this process prints, measures, saves and reports.
    pub fn is_root(&self) -> bool {
        self.rank_and_size().0 == 0
    }

    /// How the example runs, for its first line.
    pub fn describe(&self) -> String {
        let threads = rayon::current_num_threads();
        match self.rank_and_size() {
            (_, 1) => format!("{threads} threads"),
            (_, size) => format!("{size} MPI ranks (data-parallel) of {threads} threads"),
        }
    }

    /// `trainer`, combining gradients across the ranks when there are several.
    pub fn join(&self, trainer: Trainer) -> Trainer {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return trainer.sync(mpi.gradient_sync());
        }
        trainer
    }

    /// This rank's shard of `batch`.
    pub fn shard(&self, batch: Result<LabelledBatch>) -> Result<LabelledBatch> {
        let (rank, size) = self.rank_and_size();
        shard(batch?, rank, size)
    }

    /// Rank 0's `value` on every rank (a decision made once).
    pub fn share(&self, value: f32) -> f32 {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            let mut value = [value];
            mpi.broadcast(&mut value);
            return value[0];
        }
        value
    }

    /// Reports `error` and ends the process, and with it, under MPI, the whole job.
    pub fn fail(&self, error: &dyn std::fmt::Display) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.exit_on_error(Err::<(), _>(error));
        }
        eprintln!("error: {error}");
        std::process::exit(1)
    }
}
