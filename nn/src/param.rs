//! Named parameters and the visitors that reach them.

use rotor_engine::{Gradients, Tensor};

/// What role a parameter plays, so that optimizers and pruning can treat roles differently
/// (weight decay on weights, the L1 penalty on rotated-activation slopes, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A convolution or linear layer's weight.
    Weight,
    /// A convolution or linear layer's bias.
    Bias,
    /// A batch-norm layer's scale (`gamma`).
    NormScale,
    /// A batch-norm layer's shift (`beta`).
    NormShift,
    /// A rotated activation's per-channel slope.
    Slope,
}

/// A learnable tensor of a module: a gradient-tracking leaf with a role and, optionally, a
/// mask of elements held fixed.
///
/// `Clone` gives a second handle to the same parameter (same gradient identity);
/// [`Param::duplicate`] gives an independent one.
#[derive(Clone, Debug)]
pub struct Param {
    tensor: Tensor,
    kind: ParamKind,
    frozen: Option<Vec<bool>>,
}

impl Param {
    /// A parameter holding `value` (which becomes a gradient-tracking leaf).
    pub fn new(value: &Tensor, kind: ParamKind) -> Self {
        Self {
            tensor: value.requires_grad(),
            kind,
            frozen: None,
        }
    }

    /// A parameter whose tensor is computed from other parameters and recorded (a view of
    /// part of one), so that the gradient flows through it to them.
    pub(crate) fn derived(tensor: Tensor, kind: ParamKind) -> Self {
        Self {
            tensor,
            kind,
            frozen: None,
        }
    }

    /// The parameter itself: the gradient-tracking leaf that a backward pass computes a
    /// gradient for. Use it in training forwards, so that the loss reaches the parameter.
    ///
    /// To read this parameter's gradient, use [`Param::grad`] (the same as
    /// `grads.get(param.tensor())`), never a lookup by [`Param::value`].
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// A detached copy of the current values, outside any gradient record. Use it in
    /// inference forwards and to read the numbers, where tracking gradients would only cost.
    ///
    /// The copy is a new tensor with its own identity: `grads.get(&param.value())` finds
    /// nothing, even after a backward pass through [`Param::tensor`]; use [`Param::grad`].
    pub fn value(&self) -> Tensor {
        self.tensor.detach()
    }

    /// An independent copy: the same values, role and frozen mask in a new leaf with its
    /// own gradient identity (a `clone` shares the identity: it is the same parameter).
    /// The values are shared until either side changes them.
    pub fn duplicate(&self) -> Self {
        Self {
            tensor: self.tensor.detach().requires_grad(),
            kind: self.kind,
            frozen: self.frozen.clone(),
        }
    }

    /// This parameter's gradient among a backward pass's results, if the loss depended on
    /// it through [`Param::tensor`] (a forward by [`Param::value`] leaves it out).
    ///
    /// ```
    /// # use rotor_engine::{SeedableRng, SeededRng, Tensor};
    /// # use rotor_nn::{Linear, Module};
    /// let mut rng = SeededRng::seed_from_u64(0);
    /// let mut layer = Linear::new(3, 2, true, &mut rng)?;
    /// let x = Tensor::rand_uniform(&[4, 3], -1.0, 1.0, &mut rng)?;
    /// let grads = layer.forward_train(&x)?.sum().backward()?;
    /// let grad = layer.weight.grad(&grads).expect("the loss depends on the weight");
    /// assert_eq!(grad.shape(), layer.weight.shape());
    /// // The detached copy is another tensor, unknown to the backward pass.
    /// assert!(grads.get(&layer.weight.value()).is_none());
    /// # Ok::<(), rotor_engine::Error>(())
    /// ```
    pub fn grad<'g>(&self, grads: &'g Gradients) -> Option<&'g Tensor> {
        grads.get(&self.tensor)
    }

    /// The role.
    pub fn kind(&self) -> ParamKind {
        self.kind
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }

    /// Per element, whether an optimizer must leave it unchanged (`None`: nothing frozen).
    pub fn frozen(&self) -> Option<&[bool]> {
        self.frozen.as_deref()
    }

    /// Holds the elements where `mask` is true fixed from now on (`None` unfreezes all).
    ///
    /// # Panics
    /// If the mask's length is not the parameter's number of elements.
    pub fn set_frozen(&mut self, mask: Option<Vec<bool>>) {
        if let Some(m) = &mask {
            assert_eq!(m.len(), self.tensor.numel(), "frozen mask length");
        }
        self.frozen = mask;
    }

    /// Changes the values in place, keeping the parameter's identity (its gradient key).
    pub fn update(&mut self, f: impl FnOnce(&mut [f32])) {
        self.tensor.update_data(f);
    }
}

/// A visitor over a module's parameters, given each with its dotted path
/// (`"conv1.weight"`).
pub type ParamVisitor<'a> = dyn FnMut(&str, &Param) + 'a;

/// A visitor over a module's parameters that may change them.
pub type ParamVisitorMut<'a> = dyn FnMut(&str, &mut Param) + 'a;

/// Joins a module path and a name with a dot (no dot after an empty path).
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use rotor_engine::{SeedableRng, SeededRng, Tensor};

    use crate::{BatchNorm2d, Conv2d, Module, Sequential};

    #[test]
    fn grad_finds_each_parameters_gradient_after_a_training_pass() {
        let mut rng = SeededRng::seed_from_u64(4);
        let mut model = Sequential::new()
            .push("conv", Conv2d::new(2, 3, 3, 1, 1, &mut rng).unwrap())
            .push("bn", BatchNorm2d::new(3).unwrap());
        let x = Tensor::rand_uniform(&[2, 2, 4, 4], -1.0, 1.0, &mut rng).unwrap();
        let loss = model.forward_train(&x).unwrap().square().sum();
        let grads = loss.backward().unwrap();
        let mut seen = 0;
        model.visit_params("", &mut |name, param| {
            let grad = param
                .grad(&grads)
                .unwrap_or_else(|| panic!("no gradient of {name}"));
            assert_eq!(grad.shape(), param.shape(), "{name}");
            assert!(grads.get(&param.value()).is_none(), "{name}");
            seen += 1;
        });
        assert_eq!(seen, 4);
    }
}
