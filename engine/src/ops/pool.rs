//! Pooling over NCHW tensors: max, average and global average.

use rotor_kernels::pool::{self, Pool2dGeometry};

use super::conv::check_window;
use crate::autograd::record;
use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::Tensor;

fn geometry(
    op: &'static str,
    t: &Tensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<Pool2dGeometry> {
    let x = t.shape();
    if x.len() != 4 {
        return Err(Error::shape(op, &[x], "expected an input [N, C, H, W]"));
    }
    for (axis, i) in [("height", 0), ("width", 1)] {
        check_window(op, &[x], axis, x[2 + i], kernel[i], stride[i], padding[i])?;
        if 2 * padding[i] > kernel[i] {
            return Err(Error::invalid(
                op,
                format!(
                    "{axis}: padding {} must be at most half the kernel {}",
                    padding[i], kernel[i]
                ),
            ));
        }
    }
    Ok(Pool2dGeometry {
        batch: x[0],
        channels: x[1],
        in_h: x[2],
        in_w: x[3],
        kernel_h: kernel[0],
        kernel_w: kernel[1],
        stride_h: stride[0],
        stride_w: stride[1],
        pad_h: padding[0],
        pad_w: padding[1],
    })
}

impl Tensor {
    /// Max pooling over `kernel` windows moved by `stride`, with `padding` that never wins
    /// (PyTorch's `max_pool2d`). The gradient goes to the first maximum of each window.
    ///
    /// # Errors
    /// If the input is not `[N, C, H, W]`, a kernel or stride is 0, padding exceeds half the
    /// kernel, or the kernel exceeds the padded input.
    pub fn max_pool2d(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let g = geometry("max_pool2d", self, kernel, stride, padding)?;
        let mut out = storage::for_overwrite(g.output_len());
        let mut argmax = vec![0u32; g.output_len()];
        pool::max_pool2d_forward(&g, self.as_slice(), &mut out, &mut argmax);
        let shape = vec![g.batch, g.channels, g.out_h(), g.out_w()];
        Ok(record("max_pool2d", shape, out, &[self], move |_, grad| {
            let mut d = storage::for_overwrite(g.input_len());
            pool::max_pool2d_backward(&g, grad, &argmax, &mut d);
            vec![Some(d)]
        }))
    }

    /// The rotated ReLU and max pooling fused, for training: the same as
    /// `self.rotated_relu(slope)?.max_pool2d(kernel, stride, padding)`, in one pass that
    /// never writes the activation's output, and one backward pass for both.
    ///
    /// # Errors
    /// As [`Tensor::max_pool2d`], or if the slope is not `[C]`.
    pub fn rotated_relu_max_pool2d(
        &self,
        slope: &Tensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let op = "rotated_relu_max_pool2d";
        let g = geometry(op, self, kernel, stride, padding)?;
        if slope.shape() != [g.channels] {
            return Err(Error::shape(
                op,
                &[self.shape(), slope.shape()],
                format!("the slope must be [{}]", g.channels),
            ));
        }
        let mut out = storage::for_overwrite(g.output_len());
        let mut argmax = vec![0u32; g.output_len()];
        pool::rotated_relu_max_pool2d_forward(
            &g,
            self.as_slice(),
            slope.as_slice(),
            &mut out,
            &mut argmax,
        );
        let shape = vec![g.batch, g.channels, g.out_h(), g.out_w()];
        Ok(record(op, shape, out, &[self, slope], move |ctx, grad| {
            let (x, a) = (ctx.inputs[0].as_slice(), ctx.inputs[1].as_slice());
            let mut gx = storage::for_overwrite(g.input_len());
            let mut ga = storage::for_overwrite(g.channels);
            pool::rotated_relu_max_pool2d_backward(&g, x, a, grad, &argmax, &mut gx, &mut ga);
            vec![ctx.wants(0).then_some(gx), ctx.wants(1).then_some(ga)]
        }))
    }

    /// Average pooling, zero padding counted in the divisor (PyTorch's `avg_pool2d` default).
    ///
    /// # Errors
    /// As [`Tensor::max_pool2d`].
    pub fn avg_pool2d(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Tensor> {
        let g = geometry("avg_pool2d", self, kernel, stride, padding)?;
        let mut out = storage::for_overwrite(g.output_len());
        pool::avg_pool2d_forward(&g, self.as_slice(), &mut out);
        let shape = vec![g.batch, g.channels, g.out_h(), g.out_w()];
        Ok(record("avg_pool2d", shape, out, &[self], move |_, grad| {
            let mut d = storage::for_overwrite(g.input_len());
            pool::avg_pool2d_backward(&g, grad, &mut d);
            vec![Some(d)]
        }))
    }

    /// The mean of each channel's plane: `[N, C, H, W] -> [N, C]`.
    ///
    /// # Errors
    /// If the input is not `[N, C, H, W]`.
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        let x = self.shape();
        if x.len() != 4 {
            return Err(Error::shape(
                "global_avg_pool2d",
                &[x],
                "expected an input [N, C, H, W]",
            ));
        }
        let (n, c, plane) = (x[0], x[1], x[2] * x[3]);
        let mut out = storage::for_overwrite(n * c);
        pool::global_avg_pool2d_forward(n, c, plane, self.as_slice(), &mut out);
        Ok(record(
            "global_avg_pool2d",
            vec![n, c],
            out,
            &[self],
            move |_, grad| {
                let mut d = storage::for_overwrite(n * c * plane);
                pool::global_avg_pool2d_backward(n, c, plane, grad, &mut d);
                vec![Some(d)]
            },
        ))
    }
}
