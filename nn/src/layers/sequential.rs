//! Composition: `Layer` (every built-in layer as one type), `Sequential` and `Residual`.

use rotor_engine::{Result, Tensor};

use super::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Gelu, GlobalAvgPool, Linear, MaxPool2d, Relu,
    RotatedGelu, RotatedRelu,
};
use crate::module::{BufferVisitor, BufferVisitorMut, Module};
use crate::param::{ParamVisitor, ParamVisitorMut, join_path};

/// Any layer. Built-in layers are variants, so that tools which rewrite a network's
/// structure (pruning, compaction) can see what each layer is; `Custom` holds a layer of
/// the user's own, which such tools treat as opaque.
pub enum Layer {
    /// See [`Linear`].
    Linear(Linear),
    /// See [`Conv2d`].
    Conv2d(Conv2d),
    /// See [`BatchNorm2d`].
    BatchNorm2d(BatchNorm2d),
    /// See [`MaxPool2d`].
    MaxPool2d(MaxPool2d),
    /// See [`AvgPool2d`].
    AvgPool2d(AvgPool2d),
    /// See [`GlobalAvgPool`].
    GlobalAvgPool(GlobalAvgPool),
    /// See [`Dropout`].
    Dropout(Dropout),
    /// See [`Flatten`].
    Flatten(Flatten),
    /// See [`Relu`].
    Relu(Relu),
    /// See [`Gelu`].
    Gelu(Gelu),
    /// See [`RotatedRelu`].
    RotatedRelu(RotatedRelu),
    /// See [`RotatedGelu`].
    RotatedGelu(RotatedGelu),
    /// See [`Sequential`].
    Sequential(Sequential),
    /// See [`Residual`].
    Residual(Residual),
    /// A layer of the user's own.
    Custom(Box<dyn Module>),
}

impl Layer {
    fn as_module(&self) -> &dyn Module {
        match self {
            Layer::Linear(l) => l,
            Layer::Conv2d(l) => l,
            Layer::BatchNorm2d(l) => l,
            Layer::MaxPool2d(l) => l,
            Layer::AvgPool2d(l) => l,
            Layer::GlobalAvgPool(l) => l,
            Layer::Dropout(l) => l,
            Layer::Flatten(l) => l,
            Layer::Relu(l) => l,
            Layer::Gelu(l) => l,
            Layer::RotatedRelu(l) => l,
            Layer::RotatedGelu(l) => l,
            Layer::Sequential(l) => l,
            Layer::Residual(l) => l,
            Layer::Custom(l) => l.as_ref(),
        }
    }

    fn as_module_mut(&mut self) -> &mut dyn Module {
        match self {
            Layer::Linear(l) => l,
            Layer::Conv2d(l) => l,
            Layer::BatchNorm2d(l) => l,
            Layer::MaxPool2d(l) => l,
            Layer::AvgPool2d(l) => l,
            Layer::GlobalAvgPool(l) => l,
            Layer::Dropout(l) => l,
            Layer::Flatten(l) => l,
            Layer::Relu(l) => l,
            Layer::Gelu(l) => l,
            Layer::RotatedRelu(l) => l,
            Layer::RotatedGelu(l) => l,
            Layer::Sequential(l) => l,
            Layer::Residual(l) => l,
            Layer::Custom(l) => l.as_mut(),
        }
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.as_module().forward(x)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.as_module_mut().forward_train(x)
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        self.as_module().visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        self.as_module_mut().visit_params_mut(prefix, f);
    }

    fn visit_buffers(&self, prefix: &str, f: &mut BufferVisitor<'_>) {
        self.as_module().visit_buffers(prefix, f);
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut BufferVisitorMut<'_>) {
        self.as_module_mut().visit_buffers_mut(prefix, f);
    }
}

macro_rules! layer_from {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Layer {
            fn from(l: $ty) -> Self {
                Layer::$ty(l)
            }
        }
    )*};
}

layer_from!(
    Linear,
    Conv2d,
    BatchNorm2d,
    MaxPool2d,
    AvgPool2d,
    GlobalAvgPool,
    Dropout,
    Flatten,
    Relu,
    Gelu,
    RotatedRelu,
    RotatedGelu,
    Sequential,
    Residual
);

/// Named layers applied one after the other. Parameter paths are `name.param`
/// (`"conv1.weight"`).
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Layer)>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer under `name` (builder style).
    pub fn push(mut self, name: impl Into<String>, layer: impl Into<Layer>) -> Self {
        self.layers.push((name.into(), layer.into()));
        self
    }

    /// The layers with their names, in order.
    pub fn layers(&self) -> &[(String, Layer)] {
        &self.layers
    }

    /// The layers with their names, mutably.
    pub fn layers_mut(&mut self) -> &mut [(String, Layer)] {
        &mut self.layers
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers
            .iter()
            .try_fold(x.clone(), |h, (_, layer)| layer.forward(&h))
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.layers
            .iter_mut()
            .try_fold(x.clone(), |h, (_, layer)| layer.forward_train(&h))
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        for (name, layer) in &self.layers {
            layer.visit_params(&join_path(prefix, name), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        for (name, layer) in &mut self.layers {
            layer.visit_params_mut(&join_path(prefix, name), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut BufferVisitor<'_>) {
        for (name, layer) in &self.layers {
            layer.visit_buffers(&join_path(prefix, name), f);
        }
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut BufferVisitorMut<'_>) {
        for (name, layer) in &mut self.layers {
            layer.visit_buffers_mut(&join_path(prefix, name), f);
        }
    }
}

/// `body(x) + shortcut(x)`, the shortcut being the identity when absent: a residual block.
/// Parameter paths are `body.*` and `shortcut.*`.
pub struct Residual {
    /// The residual branch.
    pub body: Sequential,
    /// The projection on the skip path (`None`: identity).
    pub shortcut: Option<Sequential>,
}

impl Module for Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        self.body.forward(x)?.add(&skip)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let skip = match &mut self.shortcut {
            Some(s) => s.forward_train(x)?,
            None => x.clone(),
        };
        self.body.forward_train(x)?.add(&skip)
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        self.body.visit_params(&join_path(prefix, "body"), f);
        if let Some(s) = &self.shortcut {
            s.visit_params(&join_path(prefix, "shortcut"), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        self.body.visit_params_mut(&join_path(prefix, "body"), f);
        if let Some(s) = &mut self.shortcut {
            s.visit_params_mut(&join_path(prefix, "shortcut"), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut BufferVisitor<'_>) {
        self.body.visit_buffers(&join_path(prefix, "body"), f);
        if let Some(s) = &self.shortcut {
            s.visit_buffers(&join_path(prefix, "shortcut"), f);
        }
    }

    fn visit_buffers_mut(&mut self, prefix: &str, f: &mut BufferVisitorMut<'_>) {
        self.body.visit_buffers_mut(&join_path(prefix, "body"), f);
        if let Some(s) = &mut self.shortcut {
            s.visit_buffers_mut(&join_path(prefix, "shortcut"), f);
        }
    }
}
