//! Built-in architectures, as Burn modules whose parameter names and layouts match the
//! PyTorch definitions given in each file (so weights move between the two unchanged).

mod cnn;
mod mlp;
mod resnet8;

pub use cnn::Cnn;
pub use mlp::Mlp;
pub use resnet8::Resnet8;

use burn::module::Module;

use crate::error::ModelError;
use crate::tensor::{Device, Tensor};

/// The built-in architectures, by the name users give to `--arch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 784-256-10 multilayer perceptron (flattened input, one hidden ReLU layer).
    Mlp,
    /// The reference CNN: two 3×3 conv + ReLU + 2×2 max-pool stages, then 128 ReLU units.
    Cnn,
    /// A small residual CNN with batch norm (3 stages of 16/32/64 channels) for 32×32 input.
    Resnet8,
}

impl Arch {
    /// Every built-in architecture.
    pub const ALL: [Arch; 3] = [Arch::Mlp, Arch::Cnn, Arch::Resnet8];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
            Arch::Resnet8 => "resnet8",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ModelError::UnknownArch { name: s.into() })
    }
}

/// A built-in network of any architecture.
// One network is held per model, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// See [`Mlp`].
    Mlp(Mlp),
    /// See [`Cnn`].
    Cnn(Cnn),
    /// See [`Resnet8`].
    Resnet8(Resnet8),
}

/// Early exit of a forward pass at a named layer: `Err` carries that layer's flattened output.
pub(crate) type LayerFlow = Result<Tensor<2>, Box<Tensor<2>>>;

/// Passes `x` on, or stops the forward pass with it flattened if `name` is the stop layer.
pub(crate) fn tap<const D: usize>(
    x: Tensor<D>,
    name: &str,
    stop: Option<&str>,
) -> Result<Tensor<D>, Box<Tensor<2>>> {
    if stop == Some(name) {
        let b = x.dims()[0];
        Err(Box::new(x.reshape([b as i64, -1])))
    } else {
        Ok(x)
    }
}

/// Serialises seeding the backend's process-wide RNG with drawing initial weights from it.
static INIT_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Network {
    /// [`Network::init`] with weights drawn from `seed`: the same seed gives the same weights
    /// even while other threads initialise networks, because seeding the backend's
    /// process-wide RNG and drawing from it happen under one lock.
    pub fn init_seeded(
        arch: Arch,
        input_shape: [usize; 3],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let _guard = INIT_RNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        device.seed(seed);
        Self::init(arch, input_shape, classes, device)
    }

    /// A freshly initialised network for images of `input_shape` and `classes` classes.
    ///
    /// Weights are drawn from the device's RNG (seed it first for reproducible runs) with
    /// PyTorch's default initialisation bounds.
    pub fn init(
        arch: Arch,
        input_shape: [usize; 3],
        classes: usize,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if classes < 2 {
            return Err(ModelError::InvalidParameter {
                name: "classes",
                reason: format!("a classifier needs at least 2 classes, got {classes}"),
            });
        }
        Ok(match arch {
            Arch::Mlp => Network::Mlp(Mlp::new(input_shape, classes, device)),
            Arch::Cnn => Network::Cnn(Cnn::new(input_shape, classes, device)?),
            Arch::Resnet8 => Network::Resnet8(Resnet8::new(input_shape, classes, device)),
        })
    }

    /// Which architecture this is.
    pub fn arch(&self) -> Arch {
        match self {
            Network::Mlp(_) => Arch::Mlp,
            Network::Cnn(_) => Arch::Cnn,
            Network::Resnet8(_) => Arch::Resnet8,
        }
    }

    /// Logits for a batch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self.layers(x, None) {
            Ok(z) => z,
            Err(z) => *z,
        }
    }

    /// The forward pass, stopping early at layer `stop` if given.
    pub(crate) fn layers(&self, x: Tensor<4>, stop: Option<&str>) -> LayerFlow {
        match self {
            Network::Mlp(m) => m.layers(x, stop),
            Network::Cnn(m) => m.layers(x, stop),
            Network::Resnet8(m) => m.layers(x, stop),
        }
    }

    /// Prefixes of the stored tensors that belong to `layer` (for per-layer parameter counts).
    pub fn layer_prefixes(&self, layer: &str) -> &'static [&'static str] {
        match (self, layer) {
            (Network::Mlp(_) | Network::Cnn(_), "logits") => &["fc2."],
            (Network::Resnet8(_), "logits") => &["fc."],
            (Network::Resnet8(_), "stem") => &["conv1.", "bn1."],
            (_, "conv1") => &["conv1."],
            (_, "conv2") => &["conv2."],
            (_, "fc1") => &["fc1."],
            (_, "layer1") => &["layer1."],
            (_, "layer2") => &["layer2."],
            (_, "layer3") => &["layer3."],
            _ => &[],
        }
    }

    /// Names of the layers whose outputs can be tapped (see `Differentiable::features`), input
    /// to output.
    pub fn layer_names(&self) -> &'static [&'static str] {
        match self {
            Network::Mlp(_) => Mlp::LAYERS,
            Network::Cnn(_) => Cnn::LAYERS,
            Network::Resnet8(_) => Resnet8::LAYERS,
        }
    }
}
