//! The values the layers pass around: activations, parameters with their gradients, and the
//! BatchNorm buffers, all named by their PyTorch state_dict keys.

use std::sync::Arc;

use super::backend::{Backend, Cpu, Elements, Named};
use super::storage::Storage;

/// An activation: a shape and float32 values in C order, in a backend's storage (host memory by
/// default, see [`super::backend`]). Cloning shares the values, so a layer can keep its input
/// for the backward pass without copying it.
#[derive(Debug)]
pub struct Tensor<S = Storage> {
    shape: Vec<usize>,
    data: Arc<S>,
}

impl<S> Clone for Tensor<S> {
    fn clone(&self) -> Self {
        Self {
            shape: self.shape.clone(),
            data: Arc::clone(&self.data),
        }
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: impl Into<Storage>) -> Self {
        Self::from_storage(shape, data.into())
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The storage, copied only when another holder still shares it.
    pub fn into_storage(self) -> Storage {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// The values as a plain vector (leaving the storage pool).
    pub fn into_vec(self) -> Vec<f32> {
        self.into_storage().into_vec()
    }
}

impl<S: Elements> Tensor<S> {
    /// A tensor over `data`, which must hold exactly the shape's element count.
    pub fn from_storage(shape: Vec<usize>, data: S) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor of shape {shape:?} cannot hold {} values",
            data.len()
        );
        Self {
            shape,
            data: Arc::new(data),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn storage(&self) -> &S {
        &self.data
    }

    /// The storage when no other holder shares it (to be written in place), else the tensor.
    pub fn try_into_storage(self) -> Result<S, Self> {
        let shape = self.shape;
        Arc::try_unwrap(self.data).map_err(|data| Self { shape, data })
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same values under another shape of the same size (PyTorch's `view`).
    pub fn reshaped(&self, shape: Vec<usize>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), self.len());
        Self {
            shape,
            data: Arc::clone(&self.data),
        }
    }

    /// (n, c, h, w) of a 4-d activation.
    pub fn dims4(&self) -> (usize, usize, usize, usize) {
        match self.shape[..] {
            [n, c, h, w] => (n, c, h, w),
            _ => panic!(
                "expected an (n, c, h, w) tensor, got shape {:?}",
                self.shape
            ),
        }
    }
}

/// A trainable tensor and the gradient the backward pass adds into.
#[derive(Debug, Clone)]
pub struct Param {
    /// The PyTorch state_dict key, e.g. `Unet1_encoder.block1.conv1.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    pub fn new(name: String, shape: Vec<usize>, value: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), value.len(), "{name}");
        let grad = vec![0.0; value.len()];
        Self {
            name,
            shape,
            value,
            grad,
        }
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// A non-trainable float tensor saved with the model (BatchNorm's running statistics).
#[derive(Debug, Clone)]
pub struct Buffer {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
}

/// One state_dict entry, borrowed from the layer that owns it, in PyTorch's order.
pub enum StateEntry<'a, B: Backend = Cpu> {
    Param(&'a mut B::Param),
    Buffer(&'a mut B::Stat),
    /// An int64 scalar buffer (BatchNorm's `num_batches_tracked`).
    Count {
        name: &'a str,
        value: &'a mut i64,
    },
}

impl<B: Backend> StateEntry<'_, B> {
    pub fn name(&self) -> &str {
        match self {
            StateEntry::Param(p) => p.name(),
            StateEntry::Buffer(b) => b.name(),
            StateEntry::Count { name, .. } => name,
        }
    }
}

/// Training uses batch statistics in BatchNorm and keeps what backward needs; evaluation uses
/// the running statistics and keeps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}
