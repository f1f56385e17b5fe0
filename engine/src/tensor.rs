//! `Tensor`: an immutable n-dimensional array of `f32` that may record how it was made.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::autograd::Node;
use crate::error::{Error, Result};
use crate::shape::checked_numel;
use crate::storage;

/// Identifies a tensor in a computation graph and in [`Gradients`](crate::Gradients).
///
/// Clones of a tensor share its id; every operation's output gets a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        // NOTE: a process-wide counter only hands out unique names; it carries no
        // behaviour, so it is not the kind of global state that changes results.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A contiguous, row-major, immutable array of `f32` with a shape.
///
/// Cloning is cheap (reference counted) and clones share storage. A tensor that tracks
/// gradients (a leaf made with [`Tensor::requires_grad`], or the output of an operation
/// on such tensors) records the operation that made it, so that
/// [`Tensor::backward`] can compute gradients; a tensor that does not carries no record.
///
/// Operations whose operands can be incompatible return [`Result`]; the others (unary
/// maps, scalar arithmetic) cannot fail and return the tensor directly.
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) id: TensorId,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Arc<Vec<f32>>,
    pub(crate) grad: GradState,
}

/// How a tensor takes part in automatic differentiation.
pub(crate) enum GradState {
    /// Gradients do not flow through this tensor.
    Untracked,
    /// A leaf whose gradient `backward` reports.
    Leaf,
    /// The output of a recorded operation.
    Op(Node),
}

impl Drop for Inner {
    // NOTE: a graph is a chain of `Arc`s; dropping a long one recursively would overflow
    // the stack, so the inputs of nodes this tensor owns alone are released in a loop.
    fn drop(&mut self) {
        if let Some(data) = Arc::get_mut(&mut self.data) {
            storage::recycle(std::mem::take(data));
        }
        let GradState::Op(node) = &mut self.grad else {
            return;
        };
        let mut stack = node.take_inputs();
        while let Some(tensor) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(tensor.0)
                && let GradState::Op(node) = &mut inner.grad
            {
                stack.append(&mut node.take_inputs());
            }
        }
    }
}

impl Tensor {
    pub(crate) fn from_parts(shape: Vec<usize>, data: Arc<Vec<f32>>, grad: GradState) -> Self {
        debug_assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "internal: shape and data length disagree"
        );
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape,
            data,
            grad,
        }))
    }

    /// An untracked tensor from a vector whose length is known to match `shape`.
    pub(crate) fn from_raw(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self::from_parts(shape, Arc::new(data), GradState::Untracked)
    }

    /// A tensor holding `data` with the given shape.
    ///
    /// # Errors
    /// If `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let numel = checked_numel("from_vec", shape)?;
        if numel != data.len() {
            return Err(Error::shape(
                "from_vec",
                &[shape],
                format!(
                    "the shape holds {numel} elements but the data has {}",
                    data.len()
                ),
            ));
        }
        Ok(Self::from_raw(shape.to_vec(), data))
    }

    /// A tensor copied from a slice, with the given shape.
    ///
    /// # Errors
    /// If `data.len()` is not the product of `shape`.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Self> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A tensor of the given shape filled with `value`.
    ///
    /// # Errors
    /// If the number of elements overflows `usize`.
    pub fn full(shape: &[usize], value: f32) -> Result<Self> {
        let numel = checked_numel("full", shape)?;
        Ok(Self::from_raw(shape.to_vec(), vec![value; numel]))
    }

    /// A tensor of zeros.
    ///
    /// # Errors
    /// If the number of elements overflows `usize`.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        Self::full(shape, 0.0)
    }

    /// A tensor of ones.
    ///
    /// # Errors
    /// If the number of elements overflows `usize`.
    pub fn ones(shape: &[usize]) -> Result<Self> {
        Self::full(shape, 1.0)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self::from_raw(Vec::new(), vec![value])
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.0.data.len()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        &self.0.data
    }

    /// The elements copied into a vector.
    pub fn to_vec(&self) -> Vec<f32> {
        self.0.data.as_ref().clone()
    }

    /// The value of a tensor with exactly one element.
    ///
    /// # Errors
    /// If the tensor has more or fewer than one element.
    pub fn to_scalar(&self) -> Result<f32> {
        match self.as_slice() {
            [v] => Ok(*v),
            _ => Err(Error::shape(
                "to_scalar",
                &[self.shape()],
                "the tensor does not hold exactly one element",
            )),
        }
    }

    /// This tensor's identity in graphs and gradient stores.
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// Whether gradients flow through this tensor.
    pub fn tracks_grad(&self) -> bool {
        !matches!(self.0.grad, GradState::Untracked)
    }

    /// Whether this tensor is a leaf whose gradient [`Tensor::backward`] reports.
    pub fn is_leaf(&self) -> bool {
        matches!(self.0.grad, GradState::Leaf)
    }

    /// A leaf that tracks gradients, sharing this tensor's data (PyTorch's
    /// `requires_grad_()`). It has a new id.
    pub fn requires_grad(&self) -> Tensor {
        Self::from_parts(self.0.shape.clone(), self.0.data.clone(), GradState::Leaf)
    }

    /// The same data without any gradient record: gradients stop here.
    pub fn detach(&self) -> Tensor {
        Self::from_parts(
            self.0.shape.clone(),
            self.0.data.clone(),
            GradState::Untracked,
        )
    }

    /// Changes the elements in place, keeping this tensor's id and gradient role; the
    /// way an optimizer updates a parameter.
    ///
    /// The storage is copied first if anything else shares it (a clone of this tensor, or a
    /// graph that still holds it), so values others hold never change under them.
    pub fn update_data(&mut self, f: impl FnOnce(&mut [f32])) {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            f(Arc::make_mut(&mut inner.data).as_mut_slice());
            return;
        }
        let mut data = self.0.data.as_ref().clone();
        f(&mut data);
        let grad = match self.0.grad {
            GradState::Leaf => GradState::Leaf,
            // NOTE: an operation's output that gets new values is no longer that
            // operation's output, so it keeps no record.
            GradState::Untracked | GradState::Op(_) => GradState::Untracked,
        };
        self.0 = Arc::new(Inner {
            id: self.0.id,
            shape: self.0.shape.clone(),
            data: Arc::new(data),
            grad,
        });
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let data = self.as_slice();
        write!(f, "Tensor{:?}", self.shape())?;
        if self.tracks_grad() {
            write!(f, "(grad)")?;
        }
        write!(f, " {:?}", &data[..data.len().min(SHOWN)])?;
        if data.len() > SHOWN {
            write!(f, "..")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tensor>();
    }

    #[test]
    fn from_vec_checks_the_length() {
        let err = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "from_vec: [2, 3]: the shape holds 6 elements but the data has 5"
        );
    }

    #[test]
    fn update_data_copies_shared_storage() {
        let mut a = Tensor::from_vec(vec![1.0, 2.0], &[2])
            .unwrap()
            .requires_grad();
        let b = a.clone();
        a.update_data(|d| d[0] = 5.0);
        assert_eq!(a.as_slice(), &[5.0, 2.0]);
        assert_eq!(b.as_slice(), &[1.0, 2.0]);
        assert_eq!(a.id(), b.id());
        assert!(a.is_leaf());
    }
}
