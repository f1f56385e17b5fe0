//! Per-pixel normalisation: `y = (x - mean) / std` with `x` the grey level scaled to [0, 1].

/// The affine map applied to every pixel before it reaches a network:
/// `y = (x - mean) / std`, where `x = byte / 255` lies in [0, 1].
///
/// The default is MNIST's training-set statistics (mean 0.1307, std 0.3081).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean grey level subtracted, on the [0, 1] scale.
    pub mean: f32,
    /// Standard deviation divided by, on the [0, 1] scale; finite and positive.
    pub std: f32,
}

impl Normalization {
    /// MNIST's training-set statistics: mean 0.1307, std 0.3081.
    pub const MNIST: Normalization = Normalization {
        mean: 0.1307,
        std: 0.3081,
    };

    /// No centring or scaling beyond `byte / 255`: pixels land in [0, 1].
    pub const UNIT_INTERVAL: Normalization = Normalization {
        mean: 0.0,
        std: 1.0,
    };

    /// The coefficients `(scale, offset)` with `y = x * scale + offset` equal to
    /// `(x - mean) / std`.
    ///
    /// # Panics
    /// When `std` is not finite and positive or `mean` is not finite.
    pub fn affine(&self) -> (f32, f32) {
        assert!(
            self.std.is_finite() && self.std > 0.0 && self.mean.is_finite(),
            "normalisation needs a finite mean and a finite positive std, got mean {} std {}",
            self.mean,
            self.std
        );
        (1.0 / self.std, -self.mean / self.std)
    }
}

impl Default for Normalization {
    /// [`Normalization::MNIST`].
    fn default() -> Self {
        Normalization::MNIST
    }
}
