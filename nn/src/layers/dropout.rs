//! Dropout.

use rand::Rng;
use rotor_engine::{Error, Result, SeedableRng, SeededRng, Tensor};

use crate::module::Module;
use crate::param::{ParamVisitor, ParamVisitorMut};

/// Zeroes each element with probability `p` in training and scales the rest by
/// `1 / (1 - p)`; the identity in evaluation.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    rng: SeededRng,
}

impl Dropout {
    /// Dropout with probability `p`, its masks drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If `p` is not in `[0, 1)`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument {
                op: "dropout",
                reason: format!("the probability {p} is not in [0, 1)"),
            });
        }
        Ok(Self {
            p,
            rng: SeededRng::seed_from_u64(seed),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..x.numel())
            .map(|_| {
                if self.rng.random::<f32>() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        x.mul(&Tensor::from_vec(mask, x.shape())?)
    }

    fn visit_params(&self, _: &str, _: &mut ParamVisitor<'_>) {}

    fn visit_params_mut(&mut self, _: &str, _: &mut ParamVisitorMut<'_>) {}
}
