//! Elementwise maps of one tensor and arithmetic with a scalar. Only `clamp` can fail, on
//! bounds that make no interval.

use rotor_kernels::{activation, elementwise};

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::Tensor;

/// Applies `forward` to produce the output and records `local` as the derivative rule: the
/// input gradient is `grad * local(x, y)` elementwise.
fn map(
    t: &Tensor,
    op: &'static str,
    forward: impl Fn(&[f32], &mut [f32]),
    local: impl Fn(f32, f32) -> f32 + Send + Sync + 'static,
) -> Tensor {
    let mut out = storage::zeroed(t.numel());
    forward(t.as_slice(), &mut out);
    record(op, t.shape().to_vec(), out, &[t], move |ctx, g| {
        let x = ctx.inputs[0].as_slice();
        let d = g
            .iter()
            .zip(x.iter().zip(ctx.output))
            .map(|(&g, (&x, &y))| g * local(x, y))
            .collect();
        vec![Some(d)]
    })
}

/// Applies a scalar function elementwise (for maps without a kernel of their own).
fn scalar_map(f: impl Fn(f32) -> f32) -> impl Fn(&[f32], &mut [f32]) {
    move |x, out| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f(v);
        }
    }
}

impl Tensor {
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.mul_scalar(-1.0)
    }

    /// `self * alpha`.
    pub fn mul_scalar(&self, alpha: f32) -> Tensor {
        let mut out = storage::for_overwrite(self.numel());
        elementwise::scale(self.as_slice(), alpha, &mut out);
        record(
            "mul_scalar",
            self.shape().to_vec(),
            out,
            &[self],
            move |_, g| {
                let mut d = storage::for_overwrite(g.len());
                elementwise::scale(g, alpha, &mut d);
                vec![Some(d)]
            },
        )
    }

    /// `self + value`.
    pub fn add_scalar(&self, value: f32) -> Tensor {
        let mut out = storage::for_overwrite(self.numel());
        elementwise::add_scalar(self.as_slice(), value, &mut out);
        record("add_scalar", self.shape().to_vec(), out, &[self], |_, g| {
            vec![Some(storage::copy_of(g))]
        })
    }

    /// `e^self`.
    pub fn exp(&self) -> Tensor {
        map(self, "exp", elementwise::exp, |_, y| y)
    }

    /// The natural logarithm.
    pub fn ln(&self) -> Tensor {
        map(self, "ln", elementwise::ln, |x, _| 1.0 / x)
    }

    /// The square root.
    pub fn sqrt(&self) -> Tensor {
        map(self, "sqrt", elementwise::sqrt, |_, y| 0.5 / y)
    }

    /// `self * self`.
    pub fn square(&self) -> Tensor {
        map(
            self,
            "square",
            |x, out| elementwise::mul(x, x, out),
            |x, _| 2.0 * x,
        )
    }

    /// The absolute value (derivative 0 at 0, as PyTorch).
    pub fn abs(&self) -> Tensor {
        map(self, "abs", scalar_map(f32::abs), |x, _| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        map(self, "tanh", scalar_map(f32::tanh), |_, y| 1.0 - y * y)
    }

    /// The logistic sigmoid `1 / (1 + e^-x)`.
    pub fn sigmoid(&self) -> Tensor {
        map(
            self,
            "sigmoid",
            scalar_map(|x| 1.0 / (1.0 + (-x).exp())),
            |_, y| y * (1.0 - y),
        )
    }

    /// `max(0, self)` (derivative 0 at 0, as PyTorch).
    pub fn relu(&self) -> Tensor {
        let mut out = storage::for_overwrite(self.numel());
        activation::relu_forward(self.as_slice(), &mut out);
        record("relu", self.shape().to_vec(), out, &[self], |ctx, g| {
            let mut d = storage::for_overwrite(g.len());
            activation::relu_backward(ctx.inputs[0].as_slice(), g, &mut d);
            vec![Some(d)]
        })
    }

    /// GELU in its exact form `x * Phi(x)` (PyTorch's default `nn.GELU()`).
    pub fn gelu(&self) -> Tensor {
        let mut out = storage::for_overwrite(self.numel());
        activation::gelu_forward(self.as_slice(), &mut out);
        record("gelu", self.shape().to_vec(), out, &[self], |ctx, g| {
            let mut d = storage::for_overwrite(g.len());
            activation::gelu_backward(ctx.inputs[0].as_slice(), g, &mut d);
            vec![Some(d)]
        })
    }

    /// `self` raised to the power `exponent`, elementwise (PyTorch's `pow` with a scalar
    /// exponent).
    ///
    /// Values follow [`f32::powf`], as PyTorch's do: a negative base with a non-integer
    /// exponent gives NaN (its real power is undefined), and 0 to a negative power gives
    /// infinity. The derivative is `exponent * x^(exponent - 1)`, except that for
    /// `exponent == 0` it is 0 everywhere, as in PyTorch: the constant `x^0 = 1` passes no
    /// gradient, even at `x = 0` where the formula would give `0 * inf = NaN`.
    pub fn pow(&self, exponent: f32) -> Tensor {
        map(
            self,
            "pow",
            scalar_map(move |x| x.powf(exponent)),
            move |x, _| {
                if exponent == 0.0 {
                    0.0
                } else {
                    exponent * x.powf(exponent - 1.0)
                }
            },
        )
    }

    /// Each element limited to `[min, max]` (PyTorch's `clamp`); NaN elements stay NaN.
    /// Infinite bounds are allowed, so `clamp(0.0, f32::INFINITY)` limits from below only.
    ///
    /// The gradient passes where `min <= x <= max`, bounds included, and is 0 elsewhere
    /// (and at NaN), as PyTorch's.
    ///
    /// # Errors
    /// If a bound is NaN or `min > max`.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(Error::invalid(
                "clamp",
                format!("bounds [{min}, {max}] do not make an interval"),
            ));
        }
        Ok(map(
            self,
            "clamp",
            scalar_map(move |x| x.clamp(min, max)),
            move |x, _| {
                if (min..=max).contains(&x) { 1.0 } else { 0.0 }
            },
        ))
    }
}
