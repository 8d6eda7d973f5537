//! A small residual network with batch normalisation for 3×32×32 images.
//!
//! PyTorch equivalent (same parameter names and layouts; convolutions have no bias):
//! ```text
//! conv1 = Conv2d(C, 16, 3, padding=1); bn1 = BatchNorm2d(16)
//! layer1 = Block(16, 16, stride=1); layer2 = Block(16, 32, stride=2); layer3 = Block(32, 64, stride=2)
//! fc = Linear(64, classes)
//! Block: conv1 = Conv2d(i, o, 3, stride, padding=1); bn1; conv2 = Conv2d(o, o, 3, padding=1); bn2
//!        shortcut_conv = Conv2d(i, o, 1, stride); shortcut_bn   (only when i != o or stride != 1)
//!        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
//! forward: x = relu(bn1(conv1(x))); layer1..3; adaptive_avg_pool2d(1); fc
//! ```

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;

use super::{LayerFlow, tap};
use crate::tensor::{Device, Tensor};

/// A basic residual block: two 3×3 conv/batch-norm layers and an identity or 1×1 shortcut.
#[derive(Module, Debug)]
pub struct Block {
    /// First 3×3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm,
    /// 1×1 projection when the shape changes.
    pub shortcut_conv: Option<Conv2d>,
    /// Its batch norm.
    pub shortcut_bn: Option<BatchNorm>,
}

fn conv(i: usize, o: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .with_bias(false)
        .init(device)
}

impl Block {
    fn new(i: usize, o: usize, stride: usize, device: &Device) -> Self {
        let project = i != o || stride != 1;
        Self {
            conv1: conv(i, o, 3, stride, device),
            bn1: BatchNormConfig::new(o).init(device),
            conv2: conv(o, o, 3, 1, device),
            bn2: BatchNormConfig::new(o).init(device),
            shortcut_conv: project.then(|| conv(i, o, 1, stride, device)),
            shortcut_bn: project.then(|| BatchNormConfig::new(o).init(device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let h = self.bn2.forward(self.conv2.forward(h));
        let s = match (&self.shortcut_conv, &self.shortcut_bn) {
            (Some(c), Some(b)) => b.forward(c.forward(x)),
            _ => x,
        };
        relu(h + s)
    }
}

/// Stem, three residual stages (16, 32, 64 channels), global average pooling, linear head.
#[derive(Module, Debug)]
pub struct Resnet8 {
    /// Stem convolution.
    pub conv1: Conv2d,
    /// Stem batch norm.
    pub bn1: BatchNorm,
    /// Stage 1 (16 channels).
    pub layer1: Block,
    /// Stage 2 (32 channels, stride 2).
    pub layer2: Block,
    /// Stage 3 (64 channels, stride 2).
    pub layer3: Block,
    /// Linear head.
    pub fc: Linear,
}

impl Resnet8 {
    /// Layers whose outputs can be tapped.
    pub const LAYERS: &'static [&'static str] =
        &["stem", "layer1", "layer2", "layer3", "pool", "logits"];

    /// A new network for images with `input_shape[0]` channels.
    pub fn new(input_shape: [usize; 3], classes: usize, device: &Device) -> Self {
        Self {
            conv1: conv(input_shape[0], 16, 3, 1, device),
            bn1: BatchNormConfig::new(16).init(device),
            layer1: Block::new(16, 16, 1, device),
            layer2: Block::new(16, 32, 2, device),
            layer3: Block::new(32, 64, 2, device),
            fc: LinearConfig::new(64, classes).init(device),
        }
    }

    pub(crate) fn layers(&self, x: Tensor<4>, stop: Option<&str>) -> LayerFlow {
        let x = tap(relu(self.bn1.forward(self.conv1.forward(x))), "stem", stop)?;
        let x = tap(self.layer1.forward(x), "layer1", stop)?;
        let x = tap(self.layer2.forward(x), "layer2", stop)?;
        let x = tap(self.layer3.forward(x), "layer3", stop)?;
        let b = x.dims()[0];
        let x: Tensor<2> = adaptive_avg_pool2d(x, [1, 1]).reshape([b as i64, -1]);
        let x = tap(x, "pool", stop)?;
        tap(self.fc.forward(x), "logits", stop)
    }
}
