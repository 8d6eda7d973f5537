//! [`Model`]: one wrapper for built-in networks and ONNX graphs, with the normalisation
//! inside, implementing [`Classifier`] and [`Differentiable`] in pixel space.

use std::path::{Path, PathBuf};

use burn::module::Module;

use crate::arch::{Arch, Network};
use crate::error::ModelError;
use crate::normalize::Normalize;
use crate::onnx::OnnxGraph;
use crate::sidecar::Sidecar;
use crate::tensor::{Device, Tensor};
use crate::traits::{Classifier, Differentiable};
use crate::weights;

/// What computes the logits.
// One backbone is held per model, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Backbone {
    /// A built-in Burn network (inference mode).
    Native(Network),
    /// An ONNX graph interpreted with Burn ops.
    Onnx(OnnxGraph),
}

/// Options for [`Model::load`] that override or complete what the file says.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Architecture of a `.safetensors` file without a sidecar (`--arch`).
    pub arch: Option<Arch>,
    /// Normalisation to put inside the model (`--normalize`).
    pub normalize: Option<Normalize>,
    /// Per-image input shape, when neither the file nor the sidecar gives it.
    pub input_shape: Option<[usize; 3]>,
}

/// A classifier in pixel space: normalisation (if any) followed by a backbone.
#[derive(Debug, Clone)]
pub struct Model {
    backbone: Backbone,
    normalize: Option<Normalize>,
    input_shape: [usize; 3],
    num_classes: usize,
    bounds: (f32, f32),
    class_names: Option<Vec<String>>,
    device: Device,
    source: Option<PathBuf>,
    sidecar: Option<Sidecar>,
}

enum Format {
    Onnx,
    Safetensors,
}

/// Recognises a model file by its first bytes (extension only as a tie-breaker).
fn detect_format(path: &Path) -> Result<Format, ModelError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.is_dir() {
        return Err(ModelError::io(
            path,
            std::io::Error::other("is a directory, not a model file"),
        ));
    }
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)
        .map_err(|e| ModelError::io(path, e))?
        .take(9)
        .read_to_end(&mut head)
        .map_err(|e| ModelError::io(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    // safetensors: a little-endian u64 header length, then the JSON header's '{'.
    if head.len() == 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    // ONNX ModelProto: field 1 (ir_version, varint) comes first in exporters' output.
    if head.first() == Some(&0x08) || ext == "onnx" {
        return Ok(Format::Onnx);
    }
    if ext == "safetensors" {
        return Ok(Format::Safetensors);
    }
    Err(ModelError::UnknownFormat { path: path.into() })
}

/// The input shape assumed for an architecture when nothing else says.
pub fn default_input_shape(arch: Arch) -> [usize; 3] {
    match arch {
        Arch::Mlp | Arch::Cnn => [1, 28, 28],
        Arch::Resnet8 => [3, 32, 32],
    }
}

/// The name of the tensor whose length is the number of classes.
fn head_bias(arch: Arch) -> &'static str {
    match arch {
        Arch::Mlp | Arch::Cnn => "fc2.bias",
        Arch::Resnet8 => "fc.bias",
    }
}

impl Model {
    /// Wraps a built-in network (switched to inference mode).
    pub fn from_network(
        net: Network,
        input_shape: [usize; 3],
        num_classes: usize,
        normalize: Option<Normalize>,
    ) -> Self {
        let net = net.valid();
        Self {
            backbone: Backbone::Native(net),
            normalize,
            input_shape,
            num_classes,
            bounds: (0.0, 1.0),
            class_names: None,
            device: crate::tensor::cpu(),
            source: None,
            sidecar: None,
        }
    }

    /// Loads a `.onnx` or `.safetensors` file (the format is recognised by content).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self, ModelError> {
        let device = crate::tensor::cpu();
        let format = detect_format(path)?;
        let mut model = match format {
            Format::Onnx => Self::load_onnx(path, opts, &device)?,
            Format::Safetensors => Self::load_safetensors(path, opts, &device)?,
        };
        model.source = Some(path.into());
        Ok(model)
    }

    fn load_onnx(path: &Path, opts: &LoadOptions, device: &Device) -> Result<Self, ModelError> {
        let mut graph = OnnxGraph::load(path, device)?;
        let declared = graph.declared_input().to_vec();
        let shape = match (opts.input_shape, &declared[..]) {
            (Some(s), _) => s,
            (None, [_, Some(c), Some(h), Some(w)]) => [*c, *h, *w],
            (None, [_, Some(784)]) => [1, 28, 28],
            (None, [_, Some(3072)]) => [3, 32, 32],
            (None, [_, Some(d)]) => [1, 1, *d],
            (None, _) => {
                return Err(ModelError::BadOnnx {
                    path: path.into(),
                    reason: format!(
                        "input {:?} has symbolic image dimensions {declared:?}; give the image shape explicitly",
                        graph.input_name()
                    ),
                });
            }
        };
        if let Some(n) = &opts.normalize {
            n.check(Some(shape[0]))?;
        }
        let classes = graph.validate(shape, device)?;
        Ok(Self {
            backbone: Backbone::Onnx(graph),
            normalize: opts.normalize.clone(),
            input_shape: shape,
            num_classes: classes,
            bounds: (0.0, 1.0),
            class_names: None,
            device: device.clone(),
            source: None,
            sidecar: None,
        })
    }

    fn load_safetensors(
        path: &Path,
        opts: &LoadOptions,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let sidecar_path = Sidecar::path_for(path);
        let sidecar = Sidecar::read(&sidecar_path)?;
        let arch = opts
            .arch
            .or_else(|| sidecar.as_ref().and_then(Sidecar::arch))
            .ok_or_else(|| ModelError::BadSidecar {
                path: sidecar_path.clone(),
                reason: "no sidecar names the architecture; pass --arch mlp|cnn|resnet8".into(),
            })?;
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let header = weights::read_header(path, &bytes)?;
        let head = head_bias(arch);
        let classes = header
            .iter()
            .find(|(n, _, _)| n == head)
            .and_then(|(_, s, _)| s.first().copied())
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.into(),
                name: head.into(),
                arch: arch.to_string(),
            })?;
        if let Some(sc) = &sidecar {
            check_sidecar(&sidecar_path, sc, &header, classes, &bytes)?;
        }
        let shape = opts
            .input_shape
            .or_else(|| sidecar.as_ref().and_then(Sidecar::input_shape))
            .unwrap_or_else(|| default_input_shape(arch));
        let normalize = opts
            .normalize
            .clone()
            .or_else(|| sidecar.as_ref().and_then(|s| s.normalize.clone()));
        if let Some(n) = &normalize {
            n.check(Some(shape[0]))?;
        }
        let net = Network::init(arch, shape, classes, device)?;
        let net = weights::load_into(path, bytes, net)?;
        let mut model = Self::from_network(net, shape, classes, normalize);
        if let Some(range) = sidecar.as_ref().and_then(Sidecar::input_range) {
            model.bounds = (range[0], range[1]);
        }
        model.class_names = sidecar.as_ref().and_then(|s| s.class_names.clone());
        model.sidecar = sidecar;
        Ok(model)
    }

    /// Attaches class names (ignored unless there is one per class).
    pub fn with_class_names(mut self, names: Option<Vec<String>>) -> Self {
        if names.as_ref().is_some_and(|n| n.len() == self.num_classes) {
            self.class_names = names;
        }
        self
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The normalisation inside the model, if any.
    pub fn normalization(&self) -> Option<&Normalize> {
        self.normalize.as_ref()
    }

    /// Class names, when known.
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// The file the model was loaded from.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The sidecar read with a `.safetensors` file.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        self.sidecar.as_ref()
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        match &self.backbone {
            Backbone::Native(n) => weights::parameter_count(n),
            Backbone::Onnx(g) => g.parameter_count(),
        }
    }

    fn prepare(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.normalize {
            Some(n) => n.apply(x, &self.device),
            None => x,
        }
    }
}

/// Checks a sidecar against the weights it describes.
fn check_sidecar(
    path: &Path,
    sc: &Sidecar,
    header: &[(String, Vec<usize>, String)],
    classes: usize,
    bytes: &[u8],
) -> Result<(), ModelError> {
    let disagree = |reason: String| ModelError::BadSidecar {
        path: path.into(),
        reason,
    };
    if let Some(k) = sc.num_classes
        && k != classes
    {
        return Err(disagree(format!(
            "sidecar says {k} classes but the weights have {classes}"
        )));
    }
    for t in &sc.tensors {
        match header.iter().find(|(n, _, _)| *n == t.key) {
            None => {
                return Err(disagree(format!(
                    "sidecar lists tensor {:?}, which the weights lack",
                    t.key
                )));
            }
            Some((_, shape, _)) if *shape != t.shape => {
                return Err(disagree(format!(
                    "sidecar says tensor {:?} has shape {:?} but the weights hold {:?}",
                    t.key, t.shape, shape
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(expected) = &sc.sha256 {
        let actual = weights::sha256_hex(bytes);
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(disagree(format!(
                "the weights' SHA-256 is {actual}, not the {expected} the sidecar recorded: the file changed after it was written"
            )));
        }
    }
    Ok(())
}

impl Classifier for Model {
    fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn bounds(&self) -> (f32, f32) {
        self.bounds
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x.without_autodiff())
    }
}

impl Differentiable for Model {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.prepare(x);
        match &self.backbone {
            Backbone::Native(n) => n.forward(x),
            Backbone::Onnx(g) => {
                let b = x.dims()[0];
                // The graph ran on this input shape at load time; an error here is an internal
                // fault, reported and turned into NaN logits that every evaluation flags.
                g.run(x, None).unwrap_or_else(|e| {
                    tracing::error!("ONNX evaluation failed: {e}");
                    Tensor::full([b, self.num_classes], f32::NAN, &self.device)
                })
            }
        }
    }

    fn layer_names(&self) -> Vec<String> {
        match &self.backbone {
            Backbone::Native(n) => n.layer_names().iter().map(|s| s.to_string()).collect(),
            Backbone::Onnx(g) => g.layer_names(),
        }
    }

    fn features(&self, x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        let x = self.prepare(x);
        match &self.backbone {
            Backbone::Native(n) => {
                if !n.layer_names().contains(&layer) {
                    return Err(ModelError::UnknownLayer {
                        name: layer.into(),
                        available: n.layer_names().join(", "),
                    });
                }
                match n.layers(x, Some(layer)) {
                    Ok(z) => Ok(z),
                    Err(z) => Ok(*z),
                }
            }
            Backbone::Onnx(g) => g.run(x, Some(layer)),
        }
    }
}
