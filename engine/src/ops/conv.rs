//! 2-D convolution over NCHW tensors.

use rotor_kernels::conv::{Conv2dGeometry, Conv2dGradients, conv2d_backward, conv2d_forward};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::Tensor;

/// Checks a window of `kernel` with `stride` and `pad` against an input extent, for the
/// convolution and pooling ops.
pub(crate) fn check_window(
    op: &'static str,
    shapes: &[&[usize]],
    axis: &str,
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Result<()> {
    if kernel == 0 || stride == 0 {
        return Err(Error::invalid(
            op,
            format!("{axis}: kernel {kernel} and stride {stride} must be at least 1"),
        ));
    }
    if input + 2 * pad < kernel {
        return Err(Error::shape(
            op,
            shapes,
            format!("{axis}: kernel {kernel} exceeds the padded input {input} + 2 x {pad}"),
        ));
    }
    Ok(())
}

impl Tensor {
    /// 2-D cross-correlation (PyTorch's `conv2d`): `self` is `[N, C, H, W]`, `weight` is
    /// `[O, C, kh, kw]`, `bias` is `[O]`; zero padding `padding = [ph, pw]` on each side;
    /// the result is `[N, O, (H + 2ph - kh) / sh + 1, (W + 2pw - kw) / sw + 1]`.
    ///
    /// # Errors
    /// If the ranks or channel counts do not fit, a stride or kernel size is 0, or the kernel
    /// is larger than the padded input.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let (x, w) = (self.shape(), weight.shape());
        if x.len() != 4 || w.len() != 4 || w[1] != x[1] {
            return Err(Error::shape(
                "conv2d",
                &[x, w],
                "expected input [N, C, H, W] and weight [O, C, kh, kw]",
            ));
        }
        if let Some(b) = bias
            && b.shape() != [w[0]]
        {
            return Err(Error::shape(
                "conv2d",
                &[x, w, b.shape()],
                format!("the bias must be [{}]", w[0]),
            ));
        }
        check_window(
            "conv2d",
            &[x, w],
            "height",
            x[2],
            w[2],
            stride[0],
            padding[0],
        )?;
        check_window(
            "conv2d",
            &[x, w],
            "width",
            x[3],
            w[3],
            stride[1],
            padding[1],
        )?;
        let g = Conv2dGeometry {
            batch: x[0],
            in_channels: x[1],
            out_channels: w[0],
            in_h: x[2],
            in_w: x[3],
            kernel_h: w[2],
            kernel_w: w[3],
            stride_h: stride[0],
            stride_w: stride[1],
            pad_h: padding[0],
            pad_w: padding[1],
        };
        let mut out = storage::for_overwrite(g.output_len());
        conv2d_forward(
            &g,
            self.as_slice(),
            weight.as_slice(),
            bias.map(Tensor::as_slice),
            &mut out,
        );
        let shape = vec![g.batch, g.out_channels, g.out_h(), g.out_w()];
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(record("conv2d", shape, out, &inputs, move |ctx, grad| {
            let mut gx = ctx.wants(0).then(|| storage::for_overwrite(g.input_len()));
            let mut gw = ctx.wants(1).then(|| storage::for_overwrite(g.weight_len()));
            let mut gb = (ctx.inputs.len() == 3 && ctx.wants(2))
                .then(|| storage::for_overwrite(g.out_channels));
            let wanted = Conv2dGradients {
                input: gx.as_deref_mut(),
                weight: gw.as_deref_mut(),
                bias: gb.as_deref_mut(),
            };
            let (input, weight) = (ctx.inputs[0].as_slice(), ctx.inputs[1].as_slice());
            conv2d_backward(&g, input, weight, grad, wanted);
            let mut grads = vec![gx, gw];
            if ctx.inputs.len() == 3 {
                grads.push(gb);
            }
            grads
        }))
    }
}
