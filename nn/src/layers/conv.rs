//! 2-D convolution layer.

use rand::Rng;
use rotor_engine::{Error, Result, Tensor};

use crate::init::fan_in_uniform;
use crate::module::Module;
use crate::param::{Param, ParamKind, ParamVisitor, ParamVisitorMut, join_path};

/// A 2-D convolution over `[N, C, H, W]` (PyTorch's `nn.Conv2d` without groups or dilation).
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, kernel_h, kernel_w]`.
    pub weight: Param,
    /// `[out_channels]`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Step between windows, `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Zeros added on each side, `[vertical, horizontal]`.
    pub padding: [usize; 2],
}

impl Conv2d {
    /// A square-kernel convolution initialised as PyTorch's (uniform in `±1/sqrt(fan_in)`,
    /// `fan_in = in_channels * kernel * kernel`), with a bias; the same as
    /// [`Conv2d::options`] with these arguments.
    ///
    /// # Errors
    /// If `kernel` or `stride` is 0, or the sizes overflow.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::options(in_channels, out_channels, kernel)
            .stride(stride)
            .padding(padding)
            .build(rng)
    }

    /// A builder for a convolution with a `kernel = [height, width]` window (or a square
    /// one from a single size), stride 1, no padding and a bias until told otherwise.
    ///
    /// ```
    /// # use rotor_engine::{SeedableRng, SeededRng};
    /// # use rotor_nn::Conv2d;
    /// let mut rng = SeededRng::seed_from_u64(0);
    /// let conv = Conv2d::options(3, 8, [1, 5])
    ///     .stride([1, 2])
    ///     .padding([0, 2])
    ///     .bias(false)
    ///     .build(&mut rng)?;
    /// assert_eq!(conv.weight.shape(), [8, 3, 1, 5]);
    /// # Ok::<(), rotor_engine::Error>(())
    /// ```
    pub fn options(
        in_channels: usize,
        out_channels: usize,
        kernel: impl Into<Size2>,
    ) -> Conv2dOptions {
        Conv2dOptions {
            in_channels,
            out_channels,
            kernel: kernel.into().0,
            stride: [1; 2],
            padding: [0; 2],
            bias: true,
        }
    }

    /// The same layer without a bias (as before a batch norm).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }
}

/// A pair of sizes `[vertical, horizontal]` for a kernel, stride or padding; a single
/// size stands for both, so `.stride(2)` and `.stride([2, 1])` both read naturally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size2(pub [usize; 2]);

impl From<usize> for Size2 {
    fn from(size: usize) -> Self {
        Self([size; 2])
    }
}

impl From<[usize; 2]> for Size2 {
    fn from(sizes: [usize; 2]) -> Self {
        Self(sizes)
    }
}

/// The settings of a [`Conv2d`] to build, from [`Conv2d::options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a Conv2dOptions does nothing until `build`"]
pub struct Conv2dOptions {
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    bias: bool,
}

impl Conv2dOptions {
    /// Sets the step between windows, `[vertical, horizontal]` or one for both.
    pub fn stride(mut self, stride: impl Into<Size2>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Sets the zeros added on each side, `[vertical, horizontal]` or one for both.
    pub fn padding(mut self, padding: impl Into<Size2>) -> Self {
        self.padding = padding.into().0;
        self
    }

    /// Sets whether the layer has a bias (none before a batch norm, which cancels it).
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// The layer, initialised as PyTorch's: weight and bias uniform in `±1/sqrt(fan_in)`,
    /// `fan_in = in_channels * kernel_h * kernel_w`.
    ///
    /// # Errors
    /// If a side of the kernel or of the stride is 0, or the sizes overflow.
    pub fn build(self, rng: &mut impl Rng) -> Result<Conv2d> {
        if self.kernel.contains(&0) || self.stride.contains(&0) {
            return Err(Error::InvalidArgument {
                op: "Conv2d",
                reason: format!(
                    "kernel {:?} and stride {:?} must be at least 1 on each side",
                    self.kernel, self.stride
                ),
            });
        }
        let [kh, kw] = self.kernel;
        let fan_in = self.in_channels.saturating_mul(kh).saturating_mul(kw);
        let w = fan_in_uniform(&[self.out_channels, self.in_channels, kh, kw], fan_in, rng)?;
        // The bias is drawn even when it is dropped, so that the generator ends in the same
        // state either way: turning a bias off does not change how later layers initialise.
        let b = fan_in_uniform(&[self.out_channels], fan_in, rng)?;
        Ok(Conv2d {
            weight: Param::new(&w, ParamKind::Weight),
            bias: self.bias.then(|| Param::new(&b, ParamKind::Bias)),
            stride: self.stride,
            padding: self.padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::value);
        x.conv2d(
            &self.weight.value(),
            bias.as_ref(),
            self.stride,
            self.padding,
        )
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.conv2d(self.weight.tensor(), bias, self.stride, self.padding)
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        f(&join_path(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join_path(prefix, "bias"), b);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        f(&join_path(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join_path(prefix, "bias"), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use rotor_engine::{SeedableRng, SeededRng};

    use super::*;

    fn values(p: &Param) -> Vec<f32> {
        p.tensor().to_vec()
    }

    #[test]
    fn options_initialise_as_new() {
        let new = Conv2d::new(3, 5, 3, 2, 1, &mut SeededRng::seed_from_u64(11)).unwrap();
        let built = Conv2d::options(3, 5, [3, 3])
            .stride(2)
            .padding([1, 1])
            .build(&mut SeededRng::seed_from_u64(11))
            .unwrap();
        assert_eq!(values(&built.weight), values(&new.weight));
        assert_eq!(
            built.bias.as_ref().map(values),
            new.bias.as_ref().map(values)
        );
        assert_eq!((built.stride, built.padding), (new.stride, new.padding));

        let mut rng_new = SeededRng::seed_from_u64(12);
        let mut rng_built = SeededRng::seed_from_u64(12);
        let new = Conv2d::new(2, 4, 1, 1, 0, &mut rng_new)
            .unwrap()
            .without_bias();
        let built = Conv2d::options(2, 4, 1)
            .bias(false)
            .build(&mut rng_built)
            .unwrap();
        assert_eq!(values(&built.weight), values(&new.weight));
        assert!(built.bias.is_none());
        // Dropping the bias leaves the generator where `new` leaves it.
        assert_eq!(rng_built.random::<u64>(), rng_new.random::<u64>());
    }

    #[test]
    fn zero_kernel_or_stride_is_an_error() {
        let mut rng = SeededRng::seed_from_u64(0);
        for options in [
            Conv2d::options(1, 1, [0, 3]),
            Conv2d::options(1, 1, 3).stride([1, 0]),
        ] {
            let err = options.build(&mut rng).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        }
        assert!(Conv2d::new(1, 1, 3, 0, 0, &mut rng).is_err());
    }

    #[test]
    fn non_square_kernel_matches_the_engine_op() {
        let mut rng = SeededRng::seed_from_u64(5);
        let conv = Conv2d::options(2, 3, [2, 3])
            .stride([2, 1])
            .padding([1, 0])
            .build(&mut rng)
            .unwrap();
        assert_eq!(conv.weight.shape(), [3, 2, 2, 3]);
        let x = Tensor::rand_uniform(&[2, 2, 5, 6], -1.0, 1.0, &mut rng).unwrap();
        let y = conv.forward(&x).unwrap();
        // Height (5 + 2 - 2) / 2 + 1 = 3, width (6 - 3) / 1 + 1 = 4.
        assert_eq!(y.shape(), [2, 3, 3, 4]);
        let bias = conv.bias.as_ref().map(Param::value);
        let direct = x
            .conv2d(&conv.weight.value(), bias.as_ref(), [2, 1], [1, 0])
            .unwrap();
        assert_eq!(y.to_vec(), direct.to_vec());
    }
}
