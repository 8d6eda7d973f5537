//! The capabilities the rest of nnguard builds on.
//!
//! A black-box attack, the evaluator and the server need only a [`Classifier`]; white-box
//! attacks, adversarial training and detectors need a [`Differentiable`] model. Built-in
//! architectures and ONNX graphs implement both through [`crate::Model`].

use crate::error::ModelError;
use crate::loss::Loss;
use crate::tensor::{Device, Tensor, batch_tensor, to_vec};

/// A model that maps a batch of images (NCHW, values in [`Classifier::bounds`]) to logits.
pub trait Classifier: Send + Sync {
    /// Shape of one input image: channels, height, width.
    fn input_shape(&self) -> [usize; 3];
    /// Number of output classes.
    fn num_classes(&self) -> usize;
    /// The valid range of every input value (pixel space, `[0, 1]` for images).
    fn bounds(&self) -> (f32, f32) {
        (0.0, 1.0)
    }
    /// The device the model's weights live on.
    fn device(&self) -> &Device;
    /// Logits `[B, K]` for a batch `[B, C, H, W]`, without recording an autodiff graph.
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;

    /// Logits for `n` images stored contiguously, checked against the input shape.
    fn logits_vec(&self, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        let shape = self.input_shape();
        let per = shape.iter().product::<usize>();
        if per == 0 || !pixels.len().is_multiple_of(per) {
            return Err(ModelError::InputShape {
                expected: shape,
                found: vec![pixels.len()],
            });
        }
        Ok(to_vec(self.logits(batch_tensor(
            pixels,
            shape,
            self.device(),
        ))))
    }
}

/// What [`Differentiable::input_gradient`] returns for a batch.
#[derive(Debug, Clone)]
pub struct InputGradient {
    /// ∂ loss_i / ∂ x_i for every image, same shape as the input.
    pub grad: Tensor<4>,
    /// The per-sample loss values `[B]`.
    pub loss: Tensor<1>,
    /// The logits `[B, K]` computed on the way.
    pub logits: Tensor<2>,
}

/// A classifier whose input gradients and intermediate features are available.
pub trait Differentiable: Classifier {
    /// Logits for `x`, recording the autodiff graph when `x` is tracked. The weights are
    /// constants: gradients flow to the input only.
    fn forward(&self, x: Tensor<4>) -> Tensor<2>;

    /// Names of the layers whose outputs [`Differentiable::features`] can return, input to
    /// output; the last one before the logits is the penultimate layer.
    fn layer_names(&self) -> Vec<String>;

    /// The output of layer `layer` for `x`, flattened to `[B, features]`.
    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError>;

    /// The gradient of the per-sample `loss` with respect to each input image.
    ///
    /// `labels` are the true classes (or the targets for targeted losses). Since every
    /// sample's loss depends only on its own image, the gradient of the summed loss is the
    /// per-sample gradient.
    fn input_gradient(&self, x: Tensor<4>, labels: &[u32], loss: Loss) -> InputGradient {
        let x = x.detach().autodiff().require_grad();
        let logits = self.forward(x.clone());
        let per_sample = loss.per_sample(logits.clone(), labels);
        let grads = per_sample.clone().sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap_or_else(|| x.clone().without_autodiff().zeros_like());
        InputGradient {
            grad,
            loss: per_sample.detach().without_autodiff(),
            logits: logits.detach().without_autodiff(),
        }
    }
}

/// Implements [`Classifier::input_shape`], [`Classifier::num_classes`],
/// [`Classifier::bounds`] and [`Classifier::device`] inside an `impl Classifier` block by
/// forwarding to the wrapped classifier in field `$inner` (a name or a tuple index): what
/// every wrapper (EOT, BPDA, input transforms, smoothing) shares, leaving `logits` to it.
#[macro_export]
macro_rules! delegate_classifier_geometry {
    ($inner:tt) => {
        fn input_shape(&self) -> [usize; 3] {
            self.$inner.input_shape()
        }
        fn num_classes(&self) -> usize {
            self.$inner.num_classes()
        }
        fn bounds(&self) -> (f32, f32) {
            self.$inner.bounds()
        }
        fn device(&self) -> &$crate::tensor::Device {
            self.$inner.device()
        }
    };
}
