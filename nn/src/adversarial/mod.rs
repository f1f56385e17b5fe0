//! Adversarial robustness: untargeted L-infinity attacks (FGSM and PGD) on a model in
//! evaluation mode, and robust accuracy over a test set for a list of budgets.
//!
//! An attack moves every input value by at most `epsilon` (in the data's units, e.g.
//! pixels on [0, 1]) in the direction that raises the model's cross-entropy loss on the
//! true label, and keeps the result inside the data's valid range. The gradient with
//! respect to the input comes from the engine's own backward pass ([`input_gradient`]).
//!
//! ```
//! use rotor_engine::{SeedableRng, SeededRng, Tensor};
//! use rotor_nn::adversarial::{Attack, InputDomain, Pgd};
//! use rotor_nn::{Flatten, Linear, Sequential};
//!
//! let mut rng = SeededRng::seed_from_u64(0);
//! let model = Sequential::new()
//!     .push("flatten", Flatten)
//!     .push("fc", Linear::new(4, 3, true, &mut rng)?);
//! let images = Tensor::full(&[2, 1, 2, 2], 0.5)?;
//! // Pixels on [0, 1], normalised as MNIST is before they reach the model.
//! let domain = InputDomain::new(0.0, 1.0)?.normalized(0.1307, 0.3081)?;
//! let images = domain.to_model(&images)?;
//! let attack = Attack::Pgd(Pgd::default());
//! let adversarial = attack.perturb(&model, &images, &[0, 2], 0.1, &domain, &mut rng)?;
//! assert_eq!(adversarial.shape(), images.shape());
//! # Ok::<(), rotor_engine::Error>(())
//! ```

mod attack;
mod domain;
mod evaluate;

pub use attack::{Attack, Pgd, input_gradient};
pub use domain::InputDomain;
pub use evaluate::{RobustPoint, Robustness, RobustnessCurve, RobustnessSettings, robust_accuracy};
