//! The reference CNN (`cnn.json` of the reference models).
//!
//! PyTorch equivalent (same parameter names and layouts):
//! ```text
//! conv1 = nn.Conv2d(1, 32, 3); conv2 = nn.Conv2d(32, 64, 3)
//! fc1 = nn.Linear(64*5*5, 128); fc2 = nn.Linear(128, 10)
//! forward: x = max_pool2d(relu(conv1(x)), 2); x = max_pool2d(relu(conv2(x)), 2)
//!          fc2(relu(fc1(x.flatten(1))))
//! ```

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;

use super::{LayerFlow, tap};
use crate::error::ModelError;
use crate::tensor::{Device, Tensor};

/// Two conv/ReLU/max-pool stages (32 and 64 channels) and a 128-unit hidden layer.
#[derive(Module, Debug)]
pub struct Cnn {
    /// First 3×3 convolution.
    pub conv1: Conv2d,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// 2×2 max pooling, stride 2.
    pub pool: MaxPool2d,
    /// Flattened features to hidden layer.
    pub fc1: Linear,
    /// Hidden layer to logits.
    pub fc2: Linear,
}

impl Cnn {
    /// Layers whose outputs can be tapped.
    pub const LAYERS: &'static [&'static str] = &["conv1", "conv2", "fc1", "logits"];

    /// A new CNN for images of `input_shape` (at least 10×10).
    pub fn new(
        input_shape: [usize; 3],
        classes: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let [c, h, w] = input_shape;
        let side = |s: usize| (s.saturating_sub(2) / 2).saturating_sub(2) / 2;
        let (fh, fw) = (side(h), side(w));
        if fh == 0 || fw == 0 {
            return Err(ModelError::InvalidParameter {
                name: "--arch cnn",
                reason: format!(
                    "images of {h}×{w} are too small for two conv+pool stages (need at least 10×10)"
                ),
            });
        }
        Ok(Self {
            conv1: Conv2dConfig::new([c, 32], [3, 3]).init(device),
            conv2: Conv2dConfig::new([32, 64], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(64 * fh * fw, 128).init(device),
            fc2: LinearConfig::new(128, classes).init(device),
        })
    }

    pub(crate) fn layers(&self, x: Tensor<4>, stop: Option<&str>) -> LayerFlow {
        let x = tap(
            self.pool.forward(relu(self.conv1.forward(x))),
            "conv1",
            stop,
        )?;
        let x = tap(
            self.pool.forward(relu(self.conv2.forward(x))),
            "conv2",
            stop,
        )?;
        let b = x.dims()[0];
        let x: Tensor<2> = x.reshape([b as i64, -1]);
        let h = tap(relu(self.fc1.forward(x)), "fc1", stop)?;
        tap(self.fc2.forward(h), "logits", stop)
    }
}
