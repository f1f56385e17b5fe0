//! Elementwise arithmetic and maxima between two tensors, with NumPy broadcasting.

use rotor_kernels::elementwise;

use super::broadcast::{channel_view, expand, reduce_to};
use crate::autograd::record;
use crate::error::Result;
use crate::shape::broadcast_shape;
use crate::storage;
use crate::tensor::Tensor;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
        }
    }

    fn apply(self, a: &[f32], b: &[f32], out: &mut [f32]) {
        match self {
            Arith::Add => elementwise::add(a, b, out),
            Arith::Sub => elementwise::sub(a, b, out),
            Arith::Mul => elementwise::mul(a, b, out),
            Arith::Div => elementwise::div(a, b, out),
        }
    }
}

impl Tensor {
    /// `self + rhs`, broadcasting.
    ///
    /// # Errors
    /// If the shapes do not broadcast.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        arith(Arith::Add, self, rhs)
    }

    /// `self - rhs`, broadcasting.
    ///
    /// # Errors
    /// If the shapes do not broadcast.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        arith(Arith::Sub, self, rhs)
    }

    /// `self * rhs` elementwise, broadcasting.
    ///
    /// # Errors
    /// If the shapes do not broadcast.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        arith(Arith::Mul, self, rhs)
    }

    /// `self / rhs` elementwise, broadcasting.
    ///
    /// # Errors
    /// If the shapes do not broadcast.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        arith(Arith::Div, self, rhs)
    }

    /// The larger of `self` and `other` elementwise, broadcasting (PyTorch's `maximum`);
    /// NaN if either is NaN.
    ///
    /// The gradient goes to the larger operand; where they are equal it is split half and
    /// half, as PyTorch does, so the two halves still add up to the output's gradient.
    ///
    /// # Errors
    /// If the shapes do not broadcast.
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        let op = "maximum";
        let out_shape = broadcast_shape(op, self.shape(), other.shape())?;
        let a = expand(self.as_slice(), self.shape(), &out_shape);
        let b = expand(other.as_slice(), other.shape(), &out_shape);
        let out: Vec<f32> = a
            .iter()
            .zip(&b)
            // NOTE: not `f32::max`, which returns the other operand when one is NaN.
            .map(|(&x, &y)| if x.is_nan() || y < x { x } else { y })
            .collect();
        let (a_shape, b_shape) = (self.shape().to_vec(), other.shape().to_vec());
        let shape = out_shape.clone();
        Ok(record(op, out_shape, out, &[self, other], move |ctx, g| {
            let full = |t: &Tensor| expand(t.as_slice(), t.shape(), &shape);
            let (a, b) = (full(&ctx.inputs[0]), full(&ctx.inputs[1]));
            // The gradient of the operand holding `mine`, against the one holding `theirs`.
            let grad_of = |mine: &[f32], theirs: &[f32], own_shape: &[usize]| {
                let d = g
                    .iter()
                    .zip(mine.iter().zip(theirs))
                    .map(|(&g, (&x, &y))| {
                        if x == y {
                            0.5 * g
                        } else if x < y {
                            0.0
                        } else {
                            g
                        }
                    })
                    .collect();
                reduce_to(d, &shape, own_shape)
            };
            vec![
                ctx.wants(0).then(|| grad_of(&a, &b, &a_shape)),
                ctx.wants(1).then(|| grad_of(&b, &a, &b_shape)),
            ]
        }))
    }
}

fn arith(kind: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out_shape = broadcast_shape(kind.name(), a.shape(), b.shape())?;
    let total: usize = out_shape.iter().product();
    let mut out = storage::zeroed(total);
    let per_channel = (a.shape() == out_shape.as_slice())
        .then(|| channel_view(b.shape(), &out_shape))
        .flatten();
    match (kind, per_channel) {
        (Arith::Add, Some((n, c, p))) => {
            elementwise::add_channels(n, c, p, a.as_slice(), b.as_slice(), &mut out)
        }
        (Arith::Mul, Some((n, c, p))) => {
            elementwise::mul_channels(n, c, p, a.as_slice(), b.as_slice(), &mut out)
        }
        _ => {
            let ad = expand(a.as_slice(), a.shape(), &out_shape);
            let bd = expand(b.as_slice(), b.shape(), &out_shape);
            kind.apply(&ad, &bd, &mut out);
        }
    }
    let (a_shape, b_shape) = (a.shape().to_vec(), b.shape().to_vec());
    let shape = out_shape.clone();
    Ok(record(
        kind.name(),
        out_shape,
        out,
        &[a, b],
        move |ctx, g| {
            let (ta, tb) = (&ctx.inputs[0], &ctx.inputs[1]);
            let full = |t: &Tensor| expand(t.as_slice(), t.shape(), &shape);
            let mut ga = None;
            let mut gb = None;
            match kind {
                Arith::Add => {
                    if ctx.wants(0) {
                        ga = Some(reduce_to(storage::copy_of(g), &shape, &a_shape));
                    }
                    if ctx.wants(1) {
                        gb = Some(reduce_to(storage::copy_of(g), &shape, &b_shape));
                    }
                }
                Arith::Sub => {
                    if ctx.wants(0) {
                        ga = Some(reduce_to(storage::copy_of(g), &shape, &a_shape));
                    }
                    if ctx.wants(1) {
                        let mut neg = storage::zeroed(g.len());
                        elementwise::scale(g, -1.0, &mut neg);
                        gb = Some(reduce_to(neg, &shape, &b_shape));
                    }
                }
                Arith::Mul => {
                    if ctx.wants(0) {
                        let mut d = storage::zeroed(g.len());
                        elementwise::mul(g, &full(tb), &mut d);
                        ga = Some(reduce_to(d, &shape, &a_shape));
                    }
                    if ctx.wants(1) {
                        let mut d = storage::zeroed(g.len());
                        elementwise::mul(g, &full(ta), &mut d);
                        gb = Some(reduce_to(d, &shape, &b_shape));
                    }
                }
                Arith::Div => {
                    let bd = full(tb);
                    let mut g_over_b = storage::zeroed(g.len());
                    elementwise::div(g, &bd, &mut g_over_b);
                    if ctx.wants(1) {
                        // d(a/b)/db = -(a/b)/b = -out/b
                        let mut d = storage::zeroed(g.len());
                        elementwise::mul(&g_over_b, ctx.output, &mut d);
                        d.iter_mut().for_each(|v| *v = -*v);
                        gb = Some(reduce_to(d, &shape, &b_shape));
                    }
                    if ctx.wants(0) {
                        ga = Some(reduce_to(g_over_b, &shape, &a_shape));
                    }
                }
            }
            vec![ga, gb]
        },
    ))
}
