//! Layers of the user's own inside a [`Sequential`](super::Sequential): the small trait
//! that lets pruning, compiled inference plans, cloning and self-describing checkpoints
//! work with them.

use rotor_engine::Result;

use crate::module::Module;

/// How a custom layer treats the channels (dimension 1) of its input, which decides what
/// pruning may do around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelFlow {
    /// Anything may happen between channels. Pruning keeps every channel of the layer's
    /// input and output (the default, always safe).
    #[default]
    Opaque,
    /// Output channel `c` depends only on input channel `c`, the shape is unchanged, and
    /// the layer holds nothing per channel (a custom activation such as `x * sigmoid(x)`,
    /// a scaling by a constant). Pruning traces the channels straight through it and moves
    /// it into the compacted network unchanged.
    PerChannel,
}

/// A user-defined layer that can live inside a [`Sequential`](super::Sequential) as
/// [`Layer::Custom`](super::Layer::Custom).
///
/// Beyond [`Module`], a custom layer names its kind and configuration (so that a
/// checkpoint can describe the network and [`Sequential::load_with`](super::Sequential::load_with)
/// can rebuild it), copies itself (so that a `Sequential` is `Clone`), and says how it
/// treats channels (so that pruning can look through it). Compiled inference plans run it
/// through its [`Module::forward`].
///
/// ```
/// use rotor_engine::{Result, Tensor};
/// use rotor_nn::layers::{ChannelFlow, CustomLayer};
/// use rotor_nn::module::Module;
/// use rotor_nn::param::{ParamVisitor, ParamVisitorMut};
/// use rotor_nn::{Layer, Sequential};
///
/// /// `x * sigmoid(x)`, channel by channel.
/// #[derive(Clone)]
/// struct Swish;
///
/// impl Module for Swish {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         x.mul(&x.sigmoid())
///     }
///     fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
///         self.forward(x)
///     }
///     fn visit_params(&self, _: &str, _: &mut ParamVisitor<'_>) {}
///     fn visit_params_mut(&mut self, _: &str, _: &mut ParamVisitorMut<'_>) {}
/// }
///
/// impl CustomLayer for Swish {
///     fn kind(&self) -> &str {
///         "Swish"
///     }
///     fn clone_layer(&self) -> Box<dyn CustomLayer> {
///         Box::new(self.clone())
///     }
///     fn channel_flow(&self) -> ChannelFlow {
///         ChannelFlow::PerChannel
///     }
/// }
///
/// let net = Sequential::new().push("act", Layer::custom(Swish));
/// let y = net.forward(&Tensor::zeros(&[1, 2])?)?;
/// assert_eq!(y.as_slice(), &[0.0, 0.0]);
/// # Ok::<(), rotor_engine::Error>(())
/// ```
pub trait CustomLayer: Module {
    /// The layer's kind, the key under which a checkpoint's architecture records it and a
    /// [`CustomLayers`](crate::architecture::CustomLayers) registry rebuilds it
    /// (`"Swish"`).
    fn kind(&self) -> &str;

    /// What, besides the parameters and buffers, rebuilding the layer needs (sizes,
    /// constants), stored in a checkpoint's architecture. `Null` by default.
    fn config(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// An independent copy: the same values in new parameters (new gradient identities),
    /// so that training one copy never changes the other.
    ///
    /// Implementations over parameters should call
    /// [`Param::duplicate`](crate::param::Param::duplicate) on each.
    fn clone_layer(&self) -> Box<dyn CustomLayer>;

    /// How the layer treats channels; [`ChannelFlow::Opaque`] unless it says otherwise.
    fn channel_flow(&self) -> ChannelFlow {
        ChannelFlow::Opaque
    }
}

/// Checks a custom layer's claim of [`ChannelFlow::PerChannel`] where it can be checked
/// cheaply: such a layer holds no parameters.
pub(crate) fn check_per_channel(path: &str, layer: &dyn CustomLayer) -> Result<()> {
    let mut params = 0;
    layer.visit_params("", &mut |_, _| params += 1);
    if layer.channel_flow() == ChannelFlow::PerChannel && params > 0 {
        return Err(rotor_engine::Error::InvalidArgument {
            op: "prune",
            reason: format!(
                "custom layer {path} ({}) says its channels flow through unchanged but it has {params} parameters, which compaction cannot slice",
                layer.kind()
            ),
        });
    }
    Ok(())
}
