//! Composition: `Layer` (every built-in layer as one type), `Sequential` and `Residual`.

use std::path::Path;

use rotor_engine::{Result, Tensor};

use super::custom::CustomLayer;
use super::{
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Gelu, GlobalAvgPool, Linear, MaxPool2d, Relu,
    RotatedGelu, RotatedRelu,
};
use crate::architecture::{Architecture, CustomLayers};
use crate::checkpoint::{self, CheckpointError};
use crate::module::{BufferVisitor, BufferVisitorMut, Module};
use crate::param::{ParamVisitor, ParamVisitorMut, join_path};

/// Any layer. Built-in layers are variants, so that tools which rewrite a network's
/// structure (pruning, compaction) can see what each layer is; `Custom` holds a layer of
/// the user's own, which such tools see through the [`CustomLayer`] trait.
///
/// `clone` copies the layer with new parameters (see [`Param::duplicate`]), so a copy
/// trains, prunes and compacts independently of the original.
///
/// [`Param::duplicate`]: crate::param::Param::duplicate
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
    Custom(Box<dyn CustomLayer>),
}

impl Layer {
    /// Wraps a layer of the user's own.
    pub fn custom(layer: impl CustomLayer + 'static) -> Self {
        Layer::Custom(Box::new(layer))
    }

    /// The layer's kind as the architecture and error messages name it (`"Conv2d"`, or a
    /// custom layer's own [`CustomLayer::kind`]).
    pub fn kind(&self) -> &str {
        match self {
            Layer::Linear(_) => "Linear",
            Layer::Conv2d(_) => "Conv2d",
            Layer::BatchNorm2d(_) => "BatchNorm2d",
            Layer::MaxPool2d(_) => "MaxPool2d",
            Layer::AvgPool2d(_) => "AvgPool2d",
            Layer::GlobalAvgPool(_) => "GlobalAvgPool",
            Layer::Dropout(_) => "Dropout",
            Layer::Flatten(_) => "Flatten",
            Layer::Relu(_) => "Relu",
            Layer::Gelu(_) => "Gelu",
            Layer::RotatedRelu(_) => "RotatedRelu",
            Layer::RotatedGelu(_) => "RotatedGelu",
            Layer::Sequential(_) => "Sequential",
            Layer::Residual(_) => "Residual",
            Layer::Custom(l) => l.kind(),
        }
    }

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

/// `layer` with every parameter replaced by an independent duplicate.
fn duplicated<M: Module + Clone>(layer: &M) -> M {
    let mut copy = layer.clone();
    copy.visit_params_mut("", &mut |_, p| *p = p.duplicate());
    copy
}

impl Clone for Layer {
    fn clone(&self) -> Self {
        match self {
            Layer::Linear(l) => Layer::Linear(duplicated(l)),
            Layer::Conv2d(l) => Layer::Conv2d(duplicated(l)),
            Layer::BatchNorm2d(l) => Layer::BatchNorm2d(duplicated(l)),
            Layer::MaxPool2d(l) => Layer::MaxPool2d(*l),
            Layer::AvgPool2d(l) => Layer::AvgPool2d(*l),
            Layer::GlobalAvgPool(l) => Layer::GlobalAvgPool(*l),
            Layer::Dropout(l) => Layer::Dropout(l.clone()),
            Layer::Flatten(l) => Layer::Flatten(*l),
            Layer::Relu(l) => Layer::Relu(*l),
            Layer::Gelu(l) => Layer::Gelu(*l),
            Layer::RotatedRelu(l) => Layer::RotatedRelu(duplicated(l)),
            Layer::RotatedGelu(l) => Layer::RotatedGelu(duplicated(l)),
            // Nested layers duplicate their own parameters through this impl.
            Layer::Sequential(l) => Layer::Sequential(l.clone()),
            Layer::Residual(l) => Layer::Residual(l.clone()),
            Layer::Custom(l) => Layer::Custom(l.clone_layer()),
        }
    }
}

impl From<Box<dyn CustomLayer>> for Layer {
    fn from(layer: Box<dyn CustomLayer>) -> Self {
        Layer::Custom(layer)
    }
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Sequential(s) => s.fmt(f),
            Layer::Residual(r) => r.fmt(f),
            other => f.write_str(other.kind()),
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
///
/// An error raised inside a layer names it: `fc1: linear: [2, 100] x [128, 9216]: ...`,
/// with the full dotted path for nested networks (`block1.body.conv2: ...`).
///
/// `clone` is a deep copy with new parameters, e.g. to keep a dense network beside the
/// one [`prune::compact`](crate::prune::compact) consumes.
///
/// The training forward ([`Module::forward_train`]) computes what the layers compute one
/// after the other, faster: a rotated ReLU followed by a max pool runs as one fused op,
/// and channels whose gates are frozen at zero (masked fine-tuning, see
/// [`prune::freeze_dead`](crate::prune::freeze_dead)) are skipped, forward and backward;
/// their frozen gates then get a zero gradient.
#[derive(Clone, Default)]
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

    /// Writes the network to `path` as a safetensors checkpoint that describes its layers,
    /// so that [`Sequential::load`] rebuilds it (same as [`checkpoint::save`]).
    ///
    /// # Errors
    /// As [`checkpoint::save`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        checkpoint::save(self, path.as_ref())
    }

    /// Rebuilds the network a checkpoint at `path` describes, with its tensors: a pruned
    /// network comes back at its pruned widths. For networks with custom layers, see
    /// [`Sequential::load_with`].
    ///
    /// ```
    /// use rotor_engine::{SeedableRng, SeededRng, Tensor};
    /// use rotor_nn::{Linear, Module, Relu, Sequential};
    ///
    /// let mut rng = SeededRng::seed_from_u64(0);
    /// let net = Sequential::new()
    ///     .push("fc1", Linear::new(4, 3, true, &mut rng)?)
    ///     .push("act", Relu)
    ///     .push("fc2", Linear::new(3, 2, true, &mut rng)?);
    /// let dir = std::env::temp_dir().join(format!("rotor-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("net.safetensors");
    /// net.save(&path)?;
    /// let loaded = Sequential::load(&path)?;
    /// let x = Tensor::ones(&[1, 4])?;
    /// assert_eq!(loaded.forward(&x)?.to_vec(), net.forward(&x)?.to_vec());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`checkpoint::load_network`]; in particular
    /// [`CheckpointError::NoArchitecture`] for a file that holds tensors only.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        checkpoint::load_network(path.as_ref(), &CustomLayers::new())
    }

    /// [`Sequential::load`] for networks with custom layers, which `custom` rebuilds.
    ///
    /// # Errors
    /// As [`checkpoint::load_network`].
    pub fn load_with(
        path: impl AsRef<Path>,
        custom: &CustomLayers,
    ) -> Result<Self, CheckpointError> {
        checkpoint::load_network(path.as_ref(), custom)
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.iter().try_fold(x.clone(), |h, (name, layer)| {
            layer.forward(&h).map_err(|e| e.in_layer(name))
        })
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        if let Some(result) = crate::prune::forward_train_live(self, x) {
            return result;
        }
        let mut h = x.clone();
        let mut layers = self.layers.iter_mut().peekable();
        while let Some((name, layer)) = layers.next() {
            // NOTE: a rotated ReLU that a max pool follows runs fused with it: the
            // activation's output is never written, and one backward pass serves both.
            if let Layer::RotatedRelu(act) = layer
                && let Some((_, Layer::MaxPool2d(pool))) = layers.peek()
                && h.shape().len() == 4
            {
                let (k, s, p) = (pool.kernel, pool.stride, pool.padding);
                h = h
                    .rotated_relu_max_pool2d(act.slope.tensor(), [k, k], [s, s], [p, p])
                    .map_err(|e| e.in_layer(name))?;
                layers.next();
                continue;
            }
            h = layer.forward_train(&h).map_err(|e| e.in_layer(name))?;
        }
        Ok(h)
    }

    fn sequential_mut(&mut self) -> Option<&mut Sequential> {
        Some(self)
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

    fn architecture(&self) -> Option<Architecture> {
        Some(Architecture::of(self))
    }
}

/// `body(x) + shortcut(x)`, the shortcut being the identity when absent: a residual block.
/// Parameter paths are `body.*` and `shortcut.*`.
#[derive(Clone)]
pub struct Residual {
    /// The residual branch.
    pub body: Sequential,
    /// The projection on the skip path (`None`: identity).
    pub shortcut: Option<Sequential>,
}

impl Module for Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x).map_err(|e| e.in_layer("shortcut"))?,
            None => x.clone(),
        };
        let body = self.body.forward(x).map_err(|e| e.in_layer("body"))?;
        body.add(&skip)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let skip = match &mut self.shortcut {
            Some(s) => s.forward_train(x).map_err(|e| e.in_layer("shortcut"))?,
            None => x.clone(),
        };
        let body = self.body.forward_train(x).map_err(|e| e.in_layer("body"))?;
        body.add(&skip)
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

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.layers.iter().map(|(name, layer)| (name, layer)))
            .finish()
    }
}

impl std::fmt::Debug for Residual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Residual")
            .field("body", &self.body)
            .field("shortcut", &self.shortcut)
            .finish()
    }
}
