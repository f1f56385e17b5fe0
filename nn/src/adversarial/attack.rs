//! FGSM and PGD: untargeted attacks under an L-infinity budget.

use rand::Rng;
use rotor_engine::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::InputDomain;
use crate::Module;

/// Projected gradient descent's settings (Madry et al., 2018): from a start in the
/// epsilon ball, `steps` steps along the sign of the loss's gradient, each followed by a
/// projection back into the ball and the valid range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pgd {
    /// Gradient steps.
    pub steps: usize,
    /// Each step's size as a fraction of epsilon.
    pub relative_step: f32,
    /// Start from a uniformly random point of the epsilon ball rather than the clean input.
    pub random_start: bool,
}

impl Default for Pgd {
    /// 10 steps of `epsilon / 4` (2.5 epsilon in all, Madry et al.'s rule that lets the
    /// walk reach the ball's far side from any start), random start.
    fn default() -> Self {
        Self {
            steps: 10,
            relative_step: 0.25,
            random_start: true,
        }
    }
}

/// An untargeted L-infinity attack: it raises the cross-entropy loss of the true label.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Attack {
    /// The fast gradient sign method (Goodfellow et al., 2015): one step of `epsilon`
    /// along the sign of the loss's gradient.
    Fgsm,
    /// Projected gradient descent.
    Pgd(Pgd),
}

impl Attack {
    /// A short name for reports: `FGSM`, `PGD-10`.
    pub fn name(&self) -> String {
        match self {
            Attack::Fgsm => "FGSM".into(),
            Attack::Pgd(pgd) => format!("PGD-{}", pgd.steps),
        }
    }

    /// Forward and backward passes the attack runs per image.
    pub fn gradient_passes(&self) -> usize {
        match self {
            Attack::Fgsm => 1,
            Attack::Pgd(pgd) => pgd.steps,
        }
    }

    /// Adversarial versions of `images` (the model's inputs, `[N, ...]`) for the true
    /// `labels`: every value within `epsilon` (in the data's units, see [`InputDomain`]) of
    /// the clean one and inside the valid range. The model runs in evaluation mode; `rng`
    /// draws PGD's random start (FGSM uses none).
    ///
    /// Values are projected into the ball first and into the valid range last, so the
    /// result is always in the range, and in the ball too when the clean images are in
    /// the range.
    ///
    /// # Errors
    /// If `epsilon` (or PGD's relative step) is negative or not finite, or the model
    /// rejects the images or the labels.
    pub fn perturb(
        &self,
        model: &dyn Module,
        images: &Tensor,
        labels: &[u32],
        epsilon: f32,
        domain: &InputDomain,
        rng: &mut impl Rng,
    ) -> Result<Tensor> {
        check_budget("epsilon", epsilon)?;
        let ball = Ball {
            clean: images.as_slice(),
            radius: domain.model_distance(epsilon),
            range: domain.model_bounds(),
        };
        let shape = images.shape();
        match self {
            Attack::Fgsm => {
                let gradient = input_gradient(model, images, labels)?;
                let mut x = ball.clean.to_vec();
                ball.step(&mut x, gradient.as_slice(), ball.radius);
                Tensor::from_vec(x, shape)
            }
            Attack::Pgd(pgd) => {
                check_budget("PGD's relative step", pgd.relative_step)?;
                let mut x = ball.clean.to_vec();
                if pgd.random_start && ball.radius > 0.0 {
                    for v in &mut x {
                        *v += rng.random_range(-ball.radius..=ball.radius);
                    }
                    ball.project(&mut x);
                }
                let step = ball.radius * pgd.relative_step;
                for _ in 0..pgd.steps {
                    let current = Tensor::from_vec(x, shape)?;
                    let gradient = input_gradient(model, &current, labels)?;
                    x = current.to_vec();
                    ball.step(&mut x, gradient.as_slice(), step);
                }
                Tensor::from_vec(x, shape)
            }
        }
    }
}

/// The gradient of the mean cross-entropy loss of `model(images)` for `labels` with
/// respect to `images`, the model in evaluation mode (PyTorch's `torch.autograd.grad` of
/// `F.cross_entropy(model(x), y)` after `model.eval()`).
///
/// # Errors
/// If the model rejects the images, or `labels` does not hold one class per image.
pub fn input_gradient(model: &dyn Module, images: &Tensor, labels: &[u32]) -> Result<Tensor> {
    Ok(logits_and_input_gradient(model, images, labels)?.1)
}

/// The logits of `model(images)` and [`input_gradient`], from one forward and backward pass.
pub(super) fn logits_and_input_gradient(
    model: &dyn Module,
    images: &Tensor,
    labels: &[u32],
) -> Result<(Tensor, Tensor)> {
    let input = images.requires_grad();
    let logits = model.forward(&input)?;
    let mut grads = logits.cross_entropy(labels)?.backward()?;
    let gradient = match grads.remove(&input) {
        Some(gradient) => gradient,
        // NOTE: a model whose output does not depend on its input has a zero gradient.
        None => Tensor::zeros(images.shape())?,
    };
    Ok((logits.detach(), gradient))
}

/// The set an attack may reach: within `radius` of each clean value and inside `range`.
struct Ball<'a> {
    clean: &'a [f32],
    radius: f32,
    range: (f32, f32),
}

impl Ball<'_> {
    /// Moves `x` by `size` along the sign of `gradient` (no move where it is zero or NaN),
    /// then projects it.
    fn step(&self, x: &mut [f32], gradient: &[f32], size: f32) {
        for (v, &g) in x.iter_mut().zip(gradient) {
            if g > 0.0 {
                *v += size;
            } else if g < 0.0 {
                *v -= size;
            }
        }
        self.project(x);
    }

    /// Clamps `x` into the ball, then into the valid range.
    fn project(&self, x: &mut [f32]) {
        let (low, high) = self.range;
        for (v, &c) in x.iter_mut().zip(self.clean) {
            // NOTE: max and min, not clamp, which panics on a NaN bound (a NaN image).
            *v = v
                .max(c - self.radius)
                .min(c + self.radius)
                .max(low)
                .min(high);
        }
    }
}

/// Rejects a budget or step that is negative or not finite.
pub(super) fn check_budget(what: &str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            op: "attack",
            reason: format!("{what} must be finite and >= 0, got {value}"),
        })
    }
}
