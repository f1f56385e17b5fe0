//! A network's architecture as data: the kind, name and sizes of every layer of a
//! [`Sequential`], stored in a checkpoint's metadata so that [`Sequential::load`] can
//! rebuild a network, pruned widths included, without any code of the user's.
//!
//! The description is JSON under the safetensors metadata key [`METADATA_KEY`]:
//!
//! ```json
//! {"version": 1, "layers": [{"name": "conv1", "kind": "Conv2d", "in_channels": 1, ...}]}
//! ```
//!
//! Custom layers are stored by their [`CustomLayer::kind`] and
//! [`CustomLayer::config`], and rebuilt by a [`CustomLayers`] registry the loader passes.

use std::collections::HashMap;
use std::fmt;

use rotor_engine::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::layers::{
    AvgPool2d, BatchNorm2d, Conv2d, CustomLayer, Dropout, Flatten, Gelu, GlobalAvgPool, Layer,
    Linear, MaxPool2d, Relu, Residual, RotatedGelu, RotatedRelu, Sequential,
};
use crate::param::{Param, ParamKind, join_path};

#[cfg(doc)]
use crate::checkpoint;

/// The safetensors metadata key under which [`checkpoint::save`] stores the architecture.
pub const METADATA_KEY: &str = "rotor.architecture";

/// The version of the description this library writes and reads.
const VERSION: u32 = 1;

/// A [`Sequential`]'s layers as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// The description's format version (1).
    pub version: u32,
    /// The layers, in order.
    pub layers: Vec<NamedLayerSpec>,
}

/// One layer of an [`Architecture`] with its name in the sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedLayerSpec {
    /// The layer's name (`"conv1"`).
    pub name: String,
    /// What the layer is.
    #[serde(flatten)]
    pub spec: LayerSpec,
}

/// What one layer is: its kind and the sizes and constants its parameters do not carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
#[allow(missing_docs)]
pub enum LayerSpec {
    /// See [`Linear`].
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// See [`Conv2d`].
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        bias: bool,
    },
    /// See [`BatchNorm2d`].
    BatchNorm2d {
        channels: usize,
        momentum: f32,
        eps: f32,
    },
    /// See [`MaxPool2d`].
    MaxPool2d {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// See [`AvgPool2d`].
    AvgPool2d {
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    /// See [`GlobalAvgPool`].
    GlobalAvgPool,
    /// See [`Dropout`].
    Dropout { p: f32 },
    /// See [`Flatten`].
    Flatten,
    /// See [`Relu`].
    Relu,
    /// See [`Gelu`].
    Gelu,
    /// See [`RotatedRelu`].
    RotatedRelu { channels: usize },
    /// See [`RotatedGelu`].
    RotatedGelu { channels: usize },
    /// A nested [`Sequential`].
    Sequential { layers: Vec<NamedLayerSpec> },
    /// See [`Residual`].
    Residual {
        body: Vec<NamedLayerSpec>,
        shortcut: Option<Vec<NamedLayerSpec>>,
    },
    /// A [`CustomLayer`], rebuilt by the [`CustomLayers`] registry entry for its kind.
    Custom {
        custom_kind: String,
        config: serde_json::Value,
    },
}

/// A function that rebuilds a custom layer from its [`CustomLayer::config`]; its
/// parameters' values are loaded afterwards, so they may start at anything of the right
/// shape.
pub type CustomLayerBuilder =
    dyn Fn(&serde_json::Value) -> Result<Box<dyn CustomLayer>> + Send + Sync;

/// The custom layer kinds a loader knows how to rebuild, by [`CustomLayer::kind`].
#[derive(Default)]
pub struct CustomLayers {
    builders: HashMap<String, Box<CustomLayerBuilder>>,
}

impl CustomLayers {
    /// An empty registry (networks of built-in layers only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `build` for custom layers of kind `kind` (builder style).
    pub fn register(
        mut self,
        kind: impl Into<String>,
        build: impl Fn(&serde_json::Value) -> Result<Box<dyn CustomLayer>> + Send + Sync + 'static,
    ) -> Self {
        self.builders.insert(kind.into(), Box::new(build));
        self
    }
}

impl fmt::Debug for CustomLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&str> = self.builders.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        f.debug_struct("CustomLayers")
            .field("kinds", &kinds)
            .finish()
    }
}

impl Architecture {
    /// The architecture of `net`.
    pub fn of(net: &Sequential) -> Self {
        Self {
            version: VERSION,
            layers: specs(net),
        }
    }

    /// Calls `f` with the path and shape of every parameter and buffer the architecture's
    /// built-in layers hold, in the order a built network visits them, without building
    /// it (custom layers are skipped: only their builder knows). `None` if a shape's size
    /// overflows.
    pub fn visit_tensors(&self, f: &mut dyn FnMut(&str, &[usize])) -> Option<()> {
        visit_specs(&self.layers, "", f)
    }

    /// A network of this architecture whose parameters are all zero, ready to have a
    /// checkpoint loaded into it.
    ///
    /// # Errors
    /// If the version is not one this library reads, a size is zero where a layer needs
    /// it positive (a kernel or stride), a custom layer's kind is not in `custom`, or a
    /// builder fails.
    pub fn build(&self, custom: &CustomLayers) -> Result<Sequential> {
        if self.version != VERSION {
            return Err(invalid(format!(
                "architecture version {} is not the {VERSION} this library reads",
                self.version
            )));
        }
        build_sequential(&self.layers, custom)
    }
}

fn specs(net: &Sequential) -> Vec<NamedLayerSpec> {
    net.layers()
        .iter()
        .map(|(name, layer)| NamedLayerSpec {
            name: name.clone(),
            spec: LayerSpec::of(layer),
        })
        .collect()
}

impl LayerSpec {
    /// What `layer` is.
    pub fn of(layer: &Layer) -> Self {
        match layer {
            Layer::Linear(l) => LayerSpec::Linear {
                in_features: l.in_features(),
                out_features: l.out_features(),
                bias: l.bias.is_some(),
            },
            Layer::Conv2d(c) => {
                let shape = c.weight.shape();
                LayerSpec::Conv2d {
                    in_channels: c.in_channels(),
                    out_channels: c.out_channels(),
                    kernel: [shape[2], shape[3]],
                    stride: c.stride,
                    padding: c.padding,
                    bias: c.bias.is_some(),
                }
            }
            Layer::BatchNorm2d(b) => LayerSpec::BatchNorm2d {
                channels: b.channels(),
                momentum: b.momentum,
                eps: b.eps,
            },
            Layer::MaxPool2d(p) => LayerSpec::MaxPool2d {
                kernel: p.kernel,
                stride: p.stride,
                padding: p.padding,
            },
            Layer::AvgPool2d(p) => LayerSpec::AvgPool2d {
                kernel: p.kernel,
                stride: p.stride,
                padding: p.padding,
            },
            Layer::GlobalAvgPool(_) => LayerSpec::GlobalAvgPool,
            Layer::Dropout(d) => LayerSpec::Dropout { p: d.p() },
            Layer::Flatten(_) => LayerSpec::Flatten,
            Layer::Relu(_) => LayerSpec::Relu,
            Layer::Gelu(_) => LayerSpec::Gelu,
            Layer::RotatedRelu(a) => LayerSpec::RotatedRelu {
                channels: a.channels(),
            },
            Layer::RotatedGelu(a) => LayerSpec::RotatedGelu {
                channels: a.channels(),
            },
            Layer::Sequential(s) => LayerSpec::Sequential { layers: specs(s) },
            Layer::Residual(r) => LayerSpec::Residual {
                body: specs(&r.body),
                shortcut: r.shortcut.as_ref().map(specs),
            },
            Layer::Custom(c) => LayerSpec::Custom {
                custom_kind: c.kind().to_string(),
                config: c.config(),
            },
        }
    }
}

fn visit_specs(
    layers: &[NamedLayerSpec],
    prefix: &str,
    f: &mut dyn FnMut(&str, &[usize]),
) -> Option<()> {
    for NamedLayerSpec { name, spec } in layers {
        let path = join_path(prefix, name);
        let mut tensor = |leaf: &str, shape: &[usize]| -> Option<()> {
            shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
            f(&join_path(&path, leaf), shape);
            Some(())
        };
        match spec {
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => {
                tensor("weight", &[*out_features, *in_features])?;
                if *bias {
                    tensor("bias", &[*out_features])?;
                }
            }
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                bias,
                ..
            } => {
                tensor(
                    "weight",
                    &[*out_channels, *in_channels, kernel[0], kernel[1]],
                )?;
                if *bias {
                    tensor("bias", &[*out_channels])?;
                }
            }
            LayerSpec::BatchNorm2d { channels, .. } => {
                for leaf in ["weight", "bias", "running_mean", "running_var"] {
                    tensor(leaf, &[*channels])?;
                }
            }
            LayerSpec::RotatedRelu { channels } | LayerSpec::RotatedGelu { channels } => {
                tensor("slope", &[*channels])?;
            }
            LayerSpec::Sequential { layers } => visit_specs(layers, &path, f)?,
            LayerSpec::Residual { body, shortcut } => {
                visit_specs(body, &join_path(&path, "body"), f)?;
                if let Some(shortcut) = shortcut {
                    visit_specs(shortcut, &join_path(&path, "shortcut"), f)?;
                }
            }
            LayerSpec::MaxPool2d { .. }
            | LayerSpec::AvgPool2d { .. }
            | LayerSpec::GlobalAvgPool
            | LayerSpec::Dropout { .. }
            | LayerSpec::Flatten
            | LayerSpec::Relu
            | LayerSpec::Gelu
            | LayerSpec::Custom { .. } => {}
        }
    }
    Some(())
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        op: "architecture",
        reason,
    }
}

fn zeros(shape: &[usize], kind: ParamKind) -> Result<Param> {
    Ok(Param::new(&Tensor::zeros(shape)?, kind))
}

fn positive(name: &str, what: &str, values: &[usize]) -> Result<()> {
    if values.contains(&0) {
        return Err(invalid(format!("layer {name}: a {what} of 0")));
    }
    Ok(())
}

fn build_sequential(layers: &[NamedLayerSpec], custom: &CustomLayers) -> Result<Sequential> {
    layers.iter().try_fold(Sequential::new(), |net, named| {
        let layer = build_layer(named, custom).map_err(|e| e.in_layer(&named.name))?;
        Ok(net.push(named.name.clone(), layer))
    })
}

fn build_layer(named: &NamedLayerSpec, custom: &CustomLayers) -> Result<Layer> {
    let name = named.name.as_str();
    Ok(match &named.spec {
        LayerSpec::Linear {
            in_features,
            out_features,
            bias,
        } => Layer::Linear(Linear {
            weight: zeros(&[*out_features, *in_features], ParamKind::Weight)?,
            bias: bias
                .then(|| zeros(&[*out_features], ParamKind::Bias))
                .transpose()?,
        }),
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            bias,
        } => {
            positive(name, "kernel size", kernel)?;
            positive(name, "stride", stride)?;
            let shape = [*out_channels, *in_channels, kernel[0], kernel[1]];
            Layer::Conv2d(Conv2d {
                weight: zeros(&shape, ParamKind::Weight)?,
                bias: bias
                    .then(|| zeros(&[*out_channels], ParamKind::Bias))
                    .transpose()?,
                stride: *stride,
                padding: *padding,
            })
        }
        LayerSpec::BatchNorm2d {
            channels,
            momentum,
            eps,
        } => {
            let mut norm = BatchNorm2d::new(*channels)?;
            norm.momentum = *momentum;
            norm.eps = *eps;
            Layer::BatchNorm2d(norm)
        }
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
        } => {
            positive(name, "kernel size or stride", &[*kernel, *stride])?;
            Layer::MaxPool2d(MaxPool2d {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            })
        }
        LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
        } => {
            positive(name, "kernel size or stride", &[*kernel, *stride])?;
            Layer::AvgPool2d(AvgPool2d {
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            })
        }
        LayerSpec::GlobalAvgPool => Layer::GlobalAvgPool(GlobalAvgPool),
        // NOTE: a dropout's generator state is not part of a checkpoint; a rebuilt one
        // starts from seed 0.
        LayerSpec::Dropout { p } => Layer::Dropout(Dropout::new(*p, 0)?),
        LayerSpec::Flatten => Layer::Flatten(Flatten),
        LayerSpec::Relu => Layer::Relu(Relu),
        LayerSpec::Gelu => Layer::Gelu(Gelu),
        LayerSpec::RotatedRelu { channels } => {
            Layer::RotatedRelu(RotatedRelu::with_slopes(&Tensor::zeros(&[*channels])?))
        }
        LayerSpec::RotatedGelu { channels } => {
            Layer::RotatedGelu(RotatedGelu::with_slopes(&Tensor::zeros(&[*channels])?))
        }
        LayerSpec::Sequential { layers } => Layer::Sequential(build_sequential(layers, custom)?),
        LayerSpec::Residual { body, shortcut } => Layer::Residual(Residual {
            body: build_sequential(body, custom).map_err(|e| e.in_layer("body"))?,
            shortcut: shortcut
                .as_ref()
                .map(|s| build_sequential(s, custom).map_err(|e| e.in_layer("shortcut")))
                .transpose()?,
        }),
        LayerSpec::Custom {
            custom_kind,
            config,
        } => {
            let Some(build) = custom.builders.get(custom_kind) else {
                return Err(invalid(format!(
                    "layer {name} is a custom layer of kind \"{custom_kind}\", which the loader's CustomLayers registry does not know"
                )));
            };
            Layer::Custom(build(config)?)
        }
    })
}
