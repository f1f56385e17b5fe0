//! Define-by-run reverse-mode automatic differentiation.
//!
//! An operation whose inputs track gradients stores a [`Node`] in its output: the inputs
//! and a backward rule. [`Tensor::backward`] orders the graph topologically (iteratively, so
//! deep graphs cannot overflow the stack), runs the rules from the output back, and
//! accumulates the gradient of a tensor used several times.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage;
use crate::tensor::{GradState, Tensor, TensorId};

/// What a backward rule sees besides the gradient of the output.
pub(crate) struct BackwardContext<'a> {
    /// The operation's inputs, in the order the operation recorded them.
    pub inputs: &'a [Tensor],
    /// The operation's output values.
    pub output: &'a [f32],
}

impl BackwardContext<'_> {
    /// Whether input `i` needs a gradient.
    pub fn wants(&self, i: usize) -> bool {
        self.inputs[i].tracks_grad()
    }
}

/// One gradient per input (`None` where the input does not track gradients), each with
/// the input's number of elements.
pub(crate) type InputGrads = Vec<Option<Vec<f32>>>;

type BackwardRule = Box<dyn Fn(&BackwardContext<'_>, &[f32]) -> InputGrads + Send + Sync>;

/// The record an operation leaves in its output.
pub(crate) struct Node {
    op: &'static str,
    inputs: Vec<Tensor>,
    rule: BackwardRule,
}

impl Node {
    /// Takes the inputs out, leaving the node empty; for dropping long chains iteratively.
    pub(crate) fn take_inputs(&mut self) -> Vec<Tensor> {
        std::mem::take(&mut self.inputs)
    }
}

/// Makes the output tensor of operation `op`: it records `inputs` and `rule` when any input
/// tracks gradients, and is a plain tensor otherwise (inference pays nothing).
pub(crate) fn record<F>(
    op: &'static str,
    shape: Vec<usize>,
    data: impl Into<Arc<Vec<f32>>>,
    inputs: &[&Tensor],
    rule: F,
) -> Tensor
where
    F: Fn(&BackwardContext<'_>, &[f32]) -> InputGrads + Send + Sync + 'static,
{
    let grad = if inputs.iter().any(|t| t.tracks_grad()) {
        GradState::Op(Node {
            op,
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
            rule: Box::new(rule),
        })
    } else {
        GradState::Untracked
    };
    Tensor::from_parts(shape, data.into(), grad)
}

/// The gradients of a backward pass, keyed by the leaves' [`TensorId`]s.
///
/// Usually made by [`Tensor::backward`]; [`Gradients::new`] and [`Gradients::insert`] build
/// one by hand, to drive an optimizer with gradients computed some other way:
///
/// ```
/// use rotor_engine::{Gradients, Tensor};
///
/// let w = Tensor::from_vec(vec![1.0, 2.0], &[2])?.requires_grad();
/// let mut grads = Gradients::new();
/// grads.insert(&w, Tensor::from_vec(vec![0.5, -0.5], &[2])?)?;
/// assert_eq!(grads.get(&w).unwrap().as_slice(), &[0.5, -0.5]);
/// # Ok::<(), rotor_engine::Error>(())
/// ```
#[derive(Default, Debug)]
pub struct Gradients {
    grads: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `grad` as the gradient of `leaf`, keyed by the leaf's id as
    /// [`Tensor::backward`] keys its results, and returns the gradient it replaces. The
    /// gradient is stored detached, like those `backward` computes, so it keeps no graph
    /// alive.
    ///
    /// # Errors
    /// If `leaf` is not a leaf that tracks gradients ([`Tensor::is_leaf`]), or `grad`'s
    /// shape differs from the leaf's.
    pub fn insert(&mut self, leaf: &Tensor, grad: Tensor) -> Result<Option<Tensor>> {
        let op = "Gradients::insert";
        if !leaf.is_leaf() {
            return Err(Error::invalid(
                op,
                format!(
                    "the {:?} tensor is not a leaf that tracks gradients (see requires_grad)",
                    leaf.shape()
                ),
            ));
        }
        if grad.shape() != leaf.shape() {
            return Err(Error::shape(
                op,
                &[leaf.shape(), grad.shape()],
                "the gradient must have the leaf's shape",
            ));
        }
        Ok(self.grads.insert(leaf.id(), grad.detach()))
    }

    /// The gradient of `leaf`, shaped like it, if the output depends on it.
    pub fn get(&self, leaf: &Tensor) -> Option<&Tensor> {
        self.grads.get(&leaf.id())
    }

    /// The gradient of the leaf with the given id.
    pub fn get_by_id(&self, id: TensorId) -> Option<&Tensor> {
        self.grads.get(&id)
    }

    /// Takes the gradient of `leaf` out of the store.
    pub fn remove(&mut self, leaf: &Tensor) -> Option<Tensor> {
        self.grads.remove(&leaf.id())
    }

    /// The number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no leaf received a gradient.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// All `(leaf id, gradient)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TensorId, &Tensor)> {
        self.grads.iter().map(|(id, g)| (*id, g))
    }
}

impl Tensor {
    /// Gradients of this one-element tensor (a loss) with respect to every leaf it depends
    /// on.
    ///
    /// # Errors
    /// If the tensor has more than one element: use [`Tensor::backward_with`] to give the
    /// gradient of a larger output.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                &[self.shape()],
                "backward() needs a one-element output; use backward_with for others",
            ));
        }
        self.run_backward(vec![1.0])
    }

    /// Gradients of `sum(self * grad_output)` with respect to every leaf: the vector-Jacobian
    /// product with `grad_output`.
    ///
    /// # Errors
    /// If `grad_output` does not have this tensor's shape.
    pub fn backward_with(&self, grad_output: &Tensor) -> Result<Gradients> {
        if grad_output.shape() != self.shape() {
            return Err(Error::shape(
                "backward_with",
                &[self.shape(), grad_output.shape()],
                "the gradient must have the output's shape",
            ));
        }
        self.run_backward(grad_output.to_vec())
    }

    fn run_backward(&self, seed: Vec<f32>) -> Result<Gradients> {
        let mut out = Gradients::default();
        if !self.tracks_grad() {
            return Ok(out);
        }
        let order = topological_order(self);
        let mut pending: HashMap<TensorId, Vec<f32>> = HashMap::new();
        pending.insert(self.id(), seed);
        for tensor in order.iter().rev() {
            let Some(grad) = pending.remove(&tensor.id()) else {
                continue;
            };
            match &tensor.0.grad {
                GradState::Untracked => {}
                GradState::Leaf => {
                    let g = Tensor::from_raw(tensor.shape().to_vec(), grad);
                    out.grads.insert(tensor.id(), g);
                }
                GradState::Op(node) => {
                    let ctx = BackwardContext {
                        inputs: &node.inputs,
                        output: tensor.as_slice(),
                    };
                    let input_grads = (node.rule)(&ctx, &grad);
                    storage::recycle(grad);
                    debug_assert_eq!(
                        input_grads.len(),
                        node.inputs.len(),
                        "internal: {}",
                        node.op
                    );
                    for (input, g) in node.inputs.iter().zip(input_grads) {
                        let Some(g) = g else { continue };
                        if !input.tracks_grad() {
                            storage::recycle(g);
                            continue;
                        }
                        debug_assert_eq!(g.len(), input.numel(), "internal: {} gradient", node.op);
                        accumulate(&mut pending, input.id(), g);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Adds `g` into the pending gradient of `id` (the same tensor may feed several ops).
fn accumulate(pending: &mut HashMap<TensorId, Vec<f32>>, id: TensorId, g: Vec<f32>) {
    match pending.get_mut(&id) {
        Some(acc) => {
            rotor_kernels::elementwise::axpy(1.0, &g, acc);
            storage::recycle(g);
        }
        None => {
            pending.insert(id, g);
        }
    }
}

/// The tensors that track gradients and that `root` depends on, each after all of its
/// inputs: a depth-first post-order built with an explicit stack.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Each stack entry is a tensor and whether its inputs have been pushed already.
    let mut stack = vec![(root.clone(), false)];
    while let Some((tensor, expanded)) = stack.pop() {
        if expanded {
            order.push(tensor);
            continue;
        }
        if !visited.insert(tensor.id()) {
            continue;
        }
        let inputs: &[Tensor] = match &tensor.0.grad {
            GradState::Op(node) => &node.inputs,
            _ => &[],
        };
        let children: Vec<Tensor> = inputs
            .iter()
            .filter(|t| t.tracks_grad() && !visited.contains(&t.id()))
            .cloned()
            .collect();
        stack.push((tensor, true));
        stack.extend(children.into_iter().map(|t| (t, false)));
    }
    order
}
