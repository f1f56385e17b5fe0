//! Parameter initialisation.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rotor_engine::{Result, Tensor};

/// PyTorch's default for linear and convolution layers (`kaiming_uniform_` with
/// `a = sqrt(5)`, which reduces to this): uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`,
/// used for the weight and the bias alike.
pub fn fan_in_uniform(shape: &[usize], fan_in: usize, rng: &mut impl Rng) -> Result<Tensor> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, rng)
}

/// The rotated-activation slope initialisation of Nayak & Kalyani (TMLR 2024).
///
/// Each slope independently: positive or negative with probability 1/2, of magnitude
/// `1 + sqrt(3) t`, `t` a standard normal truncated to
/// `[(tan 35° - 1) / sqrt 3, (tan 55° - 1) / sqrt 3]`; so `|a|` lies in
/// `[tan 35°, tan 55°] = [0.700, 1.428]`, a rotation of 35 to 55 degrees either way.
pub fn rotated_slopes(channels: usize, rng: &mut impl Rng) -> Vec<f32> {
    let sqrt3 = 3f64.sqrt();
    let low = (35f64.to_radians().tan() - 1.0) / sqrt3;
    let high = (55f64.to_radians().tan() - 1.0) / sqrt3;
    (0..channels)
        .map(|_| {
            // NOTE: rejection keeps the exact truncated normal; the interval holds about
            // a sixth of the mass, so about six draws are needed on average.
            let t = loop {
                let t: f64 = StandardNormal.sample(rng);
                if (low..=high).contains(&t) {
                    break t;
                }
            };
            let magnitude = (1.0 + sqrt3 * t) as f32;
            if rng.random::<bool>() {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotor_engine::{SeedableRng, SeededRng};

    #[test]
    fn slopes_follow_the_papers_initialisation() {
        let mut rng = SeededRng::seed_from_u64(7);
        let slopes = rotated_slopes(10_000, &mut rng);
        let (lo, hi) = (35f32.to_radians().tan(), 55f32.to_radians().tan());
        assert!((lo - 0.700).abs() < 1e-3 && (hi - 1.428).abs() < 1e-3);
        assert!(
            slopes
                .iter()
                .all(|a| (lo - 1e-6..=hi + 1e-6).contains(&a.abs()))
        );
        let positive = slopes.iter().filter(|&&a| a > 0.0).count();
        // Binomial(10000, 1/2): 5 standard deviations are 250.
        assert!((4_750..=5_250).contains(&positive), "{positive} positive");
        // Seeded: the same seed gives the same slopes.
        let again = rotated_slopes(10_000, &mut SeededRng::seed_from_u64(7));
        assert_eq!(slopes, again);
    }
}
