//! Where an attack may move the inputs: the data's valid range, and the normalisation
//! between the data's units and the model's.

use rotor_engine::{Error, Result, Tensor};

/// The valid values of the data (`[low, high]`, e.g. pixels on `[0, 1]`) and the
/// normalisation `x = (p - mean) / std` that turns a data value `p` into the model's input
/// `x`.
///
/// Attack budgets (`epsilon`) are given in the data's units, as the literature quotes
/// them; an attack works on the model's inputs, with the budget and the bounds mapped
/// through the normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputDomain {
    low: f32,
    high: f32,
    mean: f32,
    std: f32,
}

impl InputDomain {
    /// Data valid on `[low, high]`, fed to the model as it is.
    ///
    /// # Errors
    /// If a bound is not finite or `low >= high`.
    pub fn new(low: f32, high: f32) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(invalid(format!(
                "the valid range needs finite bounds with low < high, got [{low}, {high}]"
            )));
        }
        Ok(Self {
            low,
            high,
            mean: 0.0,
            std: 1.0,
        })
    }

    /// The same data normalised to `(p - mean) / std` before it reaches the model.
    ///
    /// # Errors
    /// If `mean` is not finite or `std` is not finite and positive.
    pub fn normalized(self, mean: f32, std: f32) -> Result<Self> {
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(invalid(format!(
                "normalisation needs a finite mean and a finite positive std, got mean {mean} std {std}"
            )));
        }
        Ok(Self { mean, std, ..self })
    }

    /// The valid range in the model's units: `[(low - mean) / std, (high - mean) / std]`.
    pub fn model_bounds(&self) -> (f32, f32) {
        (self.model_value(self.low), self.model_value(self.high))
    }

    /// A distance in the data's units (a budget or a step) in the model's units.
    pub fn model_distance(&self, distance: f32) -> f32 {
        distance / self.std
    }

    /// Data values (e.g. images on `[0, 1]`) as the model's inputs.
    ///
    /// # Errors
    /// Never for a tensor the engine built; the `Result` is the tensor constructor's.
    pub fn to_model(&self, data: &Tensor) -> Result<Tensor> {
        let values = data
            .as_slice()
            .iter()
            .map(|&p| self.model_value(p))
            .collect();
        Tensor::from_vec(values, data.shape())
    }

    fn model_value(&self, p: f32) -> f32 {
        (p - self.mean) / self.std
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        op: "InputDomain",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_bounds_and_distances_through_the_normalisation() {
        let domain = InputDomain::new(0.0, 1.0)
            .unwrap()
            .normalized(0.5, 0.25)
            .unwrap();
        assert_eq!(domain.model_bounds(), (-2.0, 2.0));
        assert_eq!(domain.model_distance(0.1), 0.4);
        let data = Tensor::from_vec(vec![0.0, 0.75], &[2]).unwrap();
        assert_eq!(domain.to_model(&data).unwrap().to_vec(), vec![-2.0, 1.0]);
    }

    #[test]
    fn rejects_empty_ranges_and_bad_normalisations() {
        assert!(InputDomain::new(1.0, 1.0).is_err());
        assert!(InputDomain::new(0.0, f32::INFINITY).is_err());
        let unit = InputDomain::new(0.0, 1.0).unwrap();
        assert!(unit.normalized(0.0, 0.0).is_err());
        assert!(unit.normalized(f32::NAN, 1.0).is_err());
    }
}
