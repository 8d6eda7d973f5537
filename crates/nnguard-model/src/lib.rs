//! Models for nnguard.
//!
//! - [`Classifier`] and [`Differentiable`]: what attacks, defences and the server build on.
//! - [`Model`]: a built-in network ([`arch`]) or an ONNX graph ([`onnx`]) with the user's
//!   normalisation inside, so every attack and bound works in pixel space `[0, 1]`.
//! - [`weights`] and [`sidecar`]: safetensors files with PyTorch names plus a JSON sidecar.
//! - [`train()`](train::train): Adam training of the built-in architectures.
//!
//! ```
//! use nnguard_model::{Classifier, Model, arch::{Arch, Network}, tensor::{Tensor, cpu}};
//! let device = cpu();
//! let net = Network::init_seeded(Arch::Mlp, [1, 28, 28], 10, 0, &device).unwrap();
//! let model = Model::from_network(net, [1, 28, 28], 10, None);
//! let logits = model.logits(Tensor::zeros([2, 1, 28, 28], &device));
//! assert_eq!(logits.dims(), [2, 10]);
//! ```

pub mod arch;
pub mod error;
pub mod loss;
pub mod model;
pub mod normalize;
pub mod onnx;
pub mod predict;
pub mod sidecar;
pub mod tensor;
pub mod train;
pub mod traits;
pub mod weights;

pub use error::ModelError;
pub use loss::Loss;
pub use model::{Backbone, LoadOptions, Model};
pub use normalize::Normalize;
pub use traits::{Classifier, Differentiable, InputGradient};
