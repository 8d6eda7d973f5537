//! `nnguard info`: what a model file contains.

use clap::Args;
use nnguard_model::arch::Network;
use nnguard_model::tensor::Tensor;
use nnguard_model::{Backbone, Classifier, Differentiable, Model};
use serde::Serialize;

use super::common::{ModelArgs, print_json};
use crate::exit::Outcome;

/// Arguments of `nnguard info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print the description as JSON.
    #[arg(long)]
    json: bool,
}

/// One layer or node of the model.
#[derive(Debug, Serialize)]
pub struct LayerInfo {
    /// Name.
    pub name: String,
    /// Operator or layer kind.
    pub op: String,
    /// Output shape for one image.
    pub output_shape: Vec<usize>,
    /// Parameters it holds.
    pub parameters: usize,
}

/// What `nnguard info --json` prints.
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    /// The file.
    pub file: String,
    /// `onnx` or `safetensors`.
    pub format: String,
    /// Built-in architecture, for safetensors.
    pub arch: Option<String>,
    /// ONNX opset, for ONNX.
    pub opset: Option<i64>,
    /// ONNX producer, for ONNX.
    pub producer: Option<String>,
    /// Input shape (batch first, symbolic batch shown as "N").
    pub input_shape: [usize; 3],
    /// Valid input range.
    pub input_range: [f32; 2],
    /// Normalisation inside the model.
    pub normalize: Option<nnguard_model::Normalize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, when known.
    pub class_names: Option<Vec<String>>,
    /// Total parameters.
    pub parameters: usize,
    /// Layers or nodes in order.
    pub layers: Vec<LayerInfo>,
    /// Test accuracy recorded in the sidecar.
    pub recorded_test_accuracy: Option<f64>,
}

fn native_layers(model: &Model, net: &Network) -> anyhow::Result<Vec<LayerInfo>> {
    let [c, h, w] = model.input_shape();
    let x = Tensor::<4>::zeros([1, c, h, w], model.device());
    let tensors = nnguard_model::weights::expected_tensors(net);
    let mut out = Vec::new();
    for name in model.layer_names() {
        let f = model.features(x.clone(), &name)?;
        let prefixes = net.layer_prefixes(&name);
        let parameters = tensors
            .iter()
            .filter(|(t, _)| prefixes.iter().any(|p| t.starts_with(p)))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        out.push(LayerInfo {
            op: format!("{} layer", net.arch()),
            output_shape: f.dims().to_vec(),
            name,
            parameters,
        });
    }
    Ok(out)
}

/// Describes a loaded model.
pub fn describe(model: &Model, file: &str) -> anyhow::Result<ModelInfo> {
    let (format, arch, opset, producer, layers) = match model.backbone() {
        Backbone::Native(net) => (
            "safetensors",
            Some(net.arch().to_string()),
            None,
            None,
            native_layers(model, net)?,
        ),
        Backbone::Onnx(g) => (
            "onnx",
            None,
            Some(g.opset()),
            Some(g.producer().to_string()),
            g.summary()
                .iter()
                .map(|n| LayerInfo {
                    name: n.name.clone(),
                    op: n.op.clone(),
                    output_shape: n.output_shape.clone(),
                    parameters: n.parameters,
                })
                .collect(),
        ),
    };
    let (lo, hi) = model.bounds();
    Ok(ModelInfo {
        file: file.into(),
        format: format.into(),
        arch,
        opset,
        producer,
        input_shape: model.input_shape(),
        input_range: [lo, hi],
        normalize: model.normalization().cloned(),
        num_classes: model.num_classes(),
        class_names: model.class_names().map(<[String]>::to_vec),
        parameters: model.parameter_count(),
        layers,
        recorded_test_accuracy: model.sidecar().and_then(|s| s.test_accuracy),
    })
}

/// Runs `nnguard info`.
pub fn run(args: InfoArgs) -> anyhow::Result<Outcome> {
    let model = args.model.load()?;
    let info = describe(&model, &args.model.model.display().to_string())?;
    if args.json {
        print_json(&info)?;
        return Ok(Outcome::Clean);
    }
    println!("{} ({})", info.file, info.format);
    if let Some(a) = &info.arch {
        println!("  architecture: {a}");
    }
    if let (Some(o), Some(p)) = (info.opset, &info.producer) {
        println!(
            "  ONNX opset {o}, produced by {}",
            if p.is_empty() { "unknown" } else { p }
        );
    }
    let [c, h, w] = info.input_shape;
    println!(
        "  input: [N, {c}, {h}, {w}] in [{}, {}]",
        info.input_range[0], info.input_range[1]
    );
    if let Some(n) = &info.normalize {
        println!(
            "  normalisation inside the model: mean {:?}, std {:?}",
            n.mean, n.std
        );
    }
    match &info.class_names {
        Some(names) => println!("  classes: {} ({})", info.num_classes, names.join(", ")),
        None => println!("  classes: {}", info.num_classes),
    }
    println!("  parameters: {}", info.parameters);
    if let Some(a) = info.recorded_test_accuracy {
        println!("  recorded test accuracy: {:.2}%", 100.0 * a);
    }
    println!(
        "  {:<28} {:<20} {:<18} {:>10}",
        "layer", "op", "output (1 image)", "params"
    );
    for l in &info.layers {
        println!(
            "  {:<28} {:<20} {:<18} {:>10}",
            l.name,
            l.op,
            format!("{:?}", l.output_shape),
            l.parameters
        );
    }
    Ok(Outcome::Clean)
}
