//! The `Module` trait: what every layer and model provides.

use rotor_engine::{Result, Tensor};

use crate::architecture::Architecture;
use crate::param::{Param, ParamVisitor, ParamVisitorMut};

/// A visitor over a module's buffers: state that is saved but not learned by gradient
/// (batch-norm running statistics), given with its dotted path and shape.
pub type BufferVisitor<'a> = dyn FnMut(&str, &[usize], &[f32]) + 'a;

/// A visitor over a module's buffers that may overwrite them (same length).
pub type BufferVisitorMut<'a> = dyn FnMut(&str, &mut [f32]) + 'a;

/// A layer or a model.
///
/// Training and evaluation are two methods rather than a mode flag: [`Module::forward`]
/// evaluates (running statistics, no dropout, no gradient record) through `&self`, so a
/// trained model can serve several threads at once; [`Module::forward_train`] takes
/// `&mut self` because training updates running statistics and dropout's generator.
pub trait Module: Send + Sync {
    /// Evaluation-mode forward pass. Records no gradients.
    ///
    /// # Errors
    /// If the input's shape does not fit the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Training-mode forward pass: the output records gradients to the parameters.
    ///
    /// # Errors
    /// If the input's shape does not fit the module.
    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor>;

    /// Calls `f` with each parameter and its path below `prefix`.
    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>);

    /// Calls `f` with each parameter, mutably, and its path below `prefix`.
    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>);

    /// Calls `f` with each buffer (non-learned saved state) and its path below `prefix`.
    fn visit_buffers(&self, _prefix: &str, _f: &mut BufferVisitor<'_>) {}

    /// Calls `f` with each buffer, mutably, and its path below `prefix`.
    fn visit_buffers_mut(&mut self, _prefix: &str, _f: &mut BufferVisitorMut<'_>) {}

    /// The module's layers as data, when it is a network of layers the library can
    /// rebuild ([`Sequential`](crate::Sequential) and the built-in models); a checkpoint
    /// stores it so that [`Sequential::load`](crate::Sequential::load) needs no code of
    /// the user's. `None` (the default): the checkpoint holds tensors only.
    fn architecture(&self) -> Option<Architecture> {
        None
    }

    /// The module's network of layers, when it is one ([`Sequential`](crate::Sequential)
    /// and the built-in models): what compaction while training
    /// ([`CompactEvery`](crate::train::CompactEvery)) replaces by a smaller one. `None`
    /// (the default): the module cannot be compacted.
    fn sequential_mut(&mut self) -> Option<&mut crate::layers::Sequential> {
        None
    }
}

/// Conveniences for every module.
pub trait ModuleExt: Module {
    /// The parameters with their paths, in visiting order.
    fn named_params(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |name, p| out.push((name.to_string(), p.clone())));
        out
    }

    /// The total number of learnable elements.
    fn param_count(&self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, p| n += p.tensor().numel());
        n
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}
