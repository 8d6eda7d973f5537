//! Values flowing through the ONNX interpreter.
//!
//! Float tensors of rank 0 to 4 are held as rank-4 Burn tensors padded with leading
//! dimensions of size 1 (`[N, K]` is stored as `[1, 1, N, K]`). ONNX broadcasting aligns
//! shapes from the right, so padding on the left keeps elementwise broadcasting and batched
//! matrix products correct with a single Burn rank. Integer tensors only ever carry shape
//! arithmetic (`Shape` → `Gather` → `Concat` → `Reshape`) and stay on the host.

use crate::tensor::{Device, Tensor, TensorData, to_vec};

/// The highest tensor rank the interpreter handles.
pub(crate) const MAX_RANK: usize = 4;

/// A float tensor with its logical rank.
#[derive(Debug, Clone)]
pub(crate) struct FloatVal {
    /// The values, padded to rank 4 with leading 1s.
    pub t: Tensor<4>,
    /// The logical rank (0..=4).
    pub rank: usize,
}

impl FloatVal {
    /// Wraps a tensor of logical `shape` (rank ≤ 4) given as a padded rank-4 tensor.
    pub fn new(t: Tensor<4>, rank: usize) -> Self {
        Self { t, rank }
    }

    /// The logical shape.
    pub fn shape(&self) -> Vec<usize> {
        self.t.dims()[MAX_RANK - self.rank..].to_vec()
    }

    /// Builds a float value from host data of logical `shape`.
    pub fn from_host(data: Vec<f32>, shape: &[usize], device: &Device) -> Self {
        let padded = pad_shape(shape);
        Self::new(
            Tensor::from_data(TensorData::new(data, padded), device),
            shape.len(),
        )
    }

    /// Reshapes to a new logical shape with the same element count.
    pub fn reshape(self, shape: &[usize]) -> Self {
        let padded = pad_shape(shape);
        Self::new(self.t.reshape(padded), shape.len())
    }

    /// Maps a logical axis (negative counts from the end) to the padded tensor's axis.
    pub fn axis(&self, axis: i64) -> Option<usize> {
        let r = self.rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        (0..r)
            .contains(&a)
            .then(|| (a as usize) + MAX_RANK - self.rank)
    }
}

/// `shape` padded on the left with 1s to rank 4.
pub(crate) fn pad_shape(shape: &[usize]) -> [usize; MAX_RANK] {
    let mut out = [1; MAX_RANK];
    out[MAX_RANK - shape.len()..].copy_from_slice(shape);
    out
}

/// A value in the graph: a float tensor, or a host-side integer tensor.
// Values are mostly floats; boxing them would add an allocation per node for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Float data (activations, weights).
    Float(FloatVal),
    /// Integer data (shapes, indices, axes).
    Int {
        /// Row-major values.
        data: Vec<i64>,
        /// Logical shape.
        shape: Vec<usize>,
    },
}

impl Value {
    /// The logical shape.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Float(f) => f.shape(),
            Value::Int { shape, .. } => shape.clone(),
        }
    }

    /// Converts an integer value to float (a float value is returned unchanged).
    pub fn into_float(self, device: &Device) -> FloatVal {
        match self {
            Value::Float(f) => f,
            Value::Int { data, shape } => {
                FloatVal::from_host(data.iter().map(|&v| v as f32).collect(), &shape, device)
            }
        }
    }

    /// Integer values (float values are truncated; used for shapes computed in float).
    pub fn into_ints(self) -> (Vec<i64>, Vec<usize>) {
        match self {
            Value::Int { data, shape } => (data, shape),
            Value::Float(f) => {
                let shape = f.shape();
                (to_vec(f.t).into_iter().map(|v| v as i64).collect(), shape)
            }
        }
    }
}
