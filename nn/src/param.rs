//! Named parameters and the visitors that reach them.

use rotor_engine::Tensor;

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

    /// The current value, a leaf that tracks gradients (use it in training forwards).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// The current value without a gradient record (use it in inference forwards).
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
