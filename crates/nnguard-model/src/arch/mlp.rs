//! The reference multilayer perceptron.
//!
//! PyTorch equivalent (same parameter names and layouts):
//! ```text
//! nn.Sequential-like: fc1 = nn.Linear(784, 256); fc2 = nn.Linear(256, 10)
//! forward: fc2(relu(fc1(x.flatten(1))))
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;

use super::{LayerFlow, tap};
use crate::tensor::{Device, Tensor};

/// Flatten, a hidden layer of 256 ReLU units, then the logits.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Input to hidden layer.
    pub fc1: Linear,
    /// Hidden layer to logits.
    pub fc2: Linear,
}

impl Mlp {
    /// Width of the hidden layer.
    pub const HIDDEN: usize = 256;
    /// Layers whose outputs can be tapped.
    pub const LAYERS: &'static [&'static str] = &["fc1", "logits"];

    /// A new MLP for flattened inputs of `input_shape`.
    pub fn new(input_shape: [usize; 3], classes: usize, device: &Device) -> Self {
        let inputs = input_shape.iter().product();
        Self {
            fc1: LinearConfig::new(inputs, Self::HIDDEN).init(device),
            fc2: LinearConfig::new(Self::HIDDEN, classes).init(device),
        }
    }

    pub(crate) fn layers(&self, x: Tensor<4>, stop: Option<&str>) -> LayerFlow {
        let b = x.dims()[0];
        let x: Tensor<2> = x.reshape([b as i64, -1]);
        let h = tap(relu(self.fc1.forward(x)), "fc1", stop)?;
        tap(self.fc2.forward(h), "logits", stop)
    }
}
