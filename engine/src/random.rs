//! Seeded random tensors.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::shape::checked_numel;
use crate::tensor::Tensor;

/// The random generator the engine's seeded constructors are tested with: ChaCha8, whose
/// stream is fixed for a given seed on every platform. Make one with
/// `SeededRng::seed_from_u64(seed)` ([`rand::SeedableRng`]).
///
/// The crate re-exports [`rand::Rng`] and [`rand::SeedableRng`], so drawing numbers and
/// passing the generator to constructors that take `&mut impl Rng` needs no `rand`
/// dependency of its own:
///
/// ```
/// use rotor_engine::{Rng, SeedableRng, SeededRng, Tensor};
///
/// let mut rng = SeededRng::seed_from_u64(7);
/// let v: f32 = rng.random_range(0.0..1.0);
/// assert!((0.0..1.0).contains(&v));
/// let t = Tensor::rand_uniform(&[2], -1.0, 1.0, &mut rng)?;
/// assert_eq!(t.shape(), &[2]);
/// # Ok::<(), rotor_engine::Error>(())
/// ```
pub type SeededRng = rand_chacha::ChaCha8Rng;

impl Tensor {
    /// Samples from the normal distribution with the given mean and standard deviation.
    ///
    /// # Errors
    /// If `std` is negative or not finite, or the number of elements overflows.
    pub fn rand_normal(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Result<Self> {
        let numel = checked_numel("rand_normal", shape)?;
        let dist = Normal::new(mean, std)
            .map_err(|e| Error::invalid("rand_normal", format!("mean {mean}, std {std}: {e}")))?;
        let data = (0..numel).map(|_| dist.sample(rng)).collect();
        Ok(Self::from_raw(shape.to_vec(), data))
    }

    /// Samples uniformly from `[low, high)`.
    ///
    /// # Errors
    /// If `low >= high` or a bound is not finite, or the number of elements overflows.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Result<Self> {
        let numel = checked_numel("rand_uniform", shape)?;
        let dist = Uniform::new(low, high)
            .map_err(|e| Error::invalid("rand_uniform", format!("range [{low}, {high}): {e}")))?;
        let data = (0..numel).map(|_| dist.sample(rng)).collect();
        Ok(Self::from_raw(shape.to_vec(), data))
    }
}
