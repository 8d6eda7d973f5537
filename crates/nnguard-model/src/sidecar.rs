//! The JSON sidecar written beside a weights file (`model.safetensors` → `model.json`).
//!
//! It records what the weights alone cannot say: the architecture, the input shape and
//! range, the normalisation, the class names, how the model was trained, its test accuracy
//! and the SHA-256 of the weights. The reader also understands the sidecars of the PyTorch
//! reference models (`architecture.input_shape`, `training.arch`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::error::ModelError;
use crate::normalize::Normalize;

/// The sidecar format identifier written by this version.
pub const SIDECAR_FORMAT: &str = "nnguard-model/v1";

/// One epoch of a training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Test accuracy after the epoch, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_acc: Option<f64>,
    /// Wall-clock seconds the epoch took.
    pub epoch_seconds: f64,
    /// Training images per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_second: Option<f64>,
}

/// How a model was trained.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The architecture trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// The data set (as given to `--data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Epochs requested.
    #[serde(default)]
    pub epochs: usize,
    /// Learning rate.
    #[serde(default)]
    pub lr: f64,
    /// Batch size.
    #[serde(default)]
    pub batch_size: usize,
    /// RNG seed.
    #[serde(default)]
    pub seed: u64,
    /// The optimiser.
    #[serde(default)]
    pub optimizer: String,
    /// Training images seen per epoch.
    #[serde(default)]
    pub train_images: usize,
    /// Threads used.
    #[serde(default)]
    pub threads: usize,
    /// Total training seconds.
    #[serde(default)]
    pub train_seconds: f64,
    /// Per-epoch log.
    #[serde(default)]
    pub log: Vec<EpochLog>,
    /// The training objective (`clean`, `pgd-at`, `trades`, ...).
    #[serde(default)]
    pub mode: String,
    /// The robust-training settings, when not plain training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense: Option<serde_json::Value>,
}

/// The nested `architecture` object of the reference sidecars (only what nnguard reads).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArchitectureInfo {
    /// Shape of one input image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<[usize; 3]>,
    /// Valid input range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_range: Option<[f32; 2]>,
}

/// A weights file's sidecar.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sidecar {
    /// Format identifier ([`SIDECAR_FORMAT`]).
    #[serde(default)]
    pub format: String,
    /// The architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Shape of one input image (C, H, W).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<[usize; 3]>,
    /// Valid input range (pixel space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_range: Option<[f32; 2]>,
    /// Number of classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    /// Class names, in label order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Per-channel normalisation applied inside the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// Parameter count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_parameters: Option<usize>,
    /// Tensor names and shapes in the weights file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorEntry>,
    /// How the model was trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRecord>,
    /// Test accuracy measured after training.
    #[serde(
        default,
        alias = "clean_test_accuracy",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_accuracy: Option<f64>,
    /// SHA-256 of the weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The reference sidecars' nested architecture description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<ArchitectureInfo>,
}

/// One tensor of the weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// PyTorch name.
    pub key: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: String,
}

impl Sidecar {
    /// The sidecar path for a weights file: the same path with a `.json` extension.
    pub fn path_for(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }

    /// Reads a sidecar; `Ok(None)` if the file does not exist.
    pub fn read(path: &Path) -> Result<Option<Self>, ModelError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ModelError::io(path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ModelError::BadSidecar {
                path: path.into(),
                reason: format!("invalid sidecar JSON: {e}"),
            })
    }

    /// The architecture, from the top level or the training record.
    pub fn arch(&self) -> Option<Arch> {
        self.arch
            .or_else(|| self.training.as_ref().and_then(|t| t.arch))
    }

    /// The input shape, from the top level or the nested architecture.
    pub fn input_shape(&self) -> Option<[usize; 3]> {
        self.input_shape
            .or_else(|| self.architecture.as_ref().and_then(|a| a.input_shape))
    }

    /// The input range, from the top level or the nested architecture.
    pub fn input_range(&self) -> Option<[f32; 2]> {
        self.input_range
            .or_else(|| self.architecture.as_ref().and_then(|a| a.input_range))
    }

    /// Writes the sidecar as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| ModelError::BadSidecar {
            path: path.into(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        crate::weights::write_atomic(path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_sidecar_layout() {
        let json = r#"{"name":"cnn","architecture":{"input_shape":[1,28,28],"input_range":[0.0,1.0]},
            "training":{"arch":"cnn","epochs":3,"lr":0.001,"batch_size":128,"seed":0,
            "optimizer":"Adam","log":[{"epoch":1,"train_loss":0.5,"test_acc":0.84,"epoch_seconds":10.0}]},
            "clean_test_accuracy":0.8818}"#;
        let s: Sidecar = serde_json::from_str(json).unwrap();
        assert_eq!(s.arch(), Some(Arch::Cnn));
        assert_eq!(s.input_shape(), Some([1, 28, 28]));
        assert_eq!(s.test_accuracy, Some(0.8818));
    }
}
