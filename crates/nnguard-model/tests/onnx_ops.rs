//! The ONNX interpreter on small PyTorch exports that together use every supported operator
//! family (testdata/onnx/make_models.py): logits against onnxruntime, input gradients against
//! float64 PyTorch autograd, and the error for an operator it does not evaluate.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use nnguard_model::tensor::{batch_tensor, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model, ModelError};
use nnguard_testkit::{Tol, assert_close_f32, floats, json, testdata};

fn check(name: &str) {
    let fixture = json(&format!("onnx/{name}.json"));
    let model = Model::load(
        &testdata().join(format!("onnx/{name}.onnx")),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape: Vec<usize> = floats(&fixture["input_shape"])
        .iter()
        .map(|&v| v as usize)
        .collect();
    assert_eq!(
        model.input_shape(),
        [shape[1], shape[2], shape[3]],
        "{name}"
    );
    let input: Vec<f32> = floats(&fixture["input"])
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x = batch_tensor(&input, model.input_shape(), model.device());

    let logits = to_vec(model.logits(x.clone()));
    assert_close_f32(
        &logits,
        &floats(&fixture["logits_onnxruntime"]),
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
    );

    let labels: Vec<u32> = floats(&fixture["labels"])
        .iter()
        .map(|&v| v as u32)
        .collect();
    let out = model.input_gradient(x, &labels, Loss::CrossEntropy);
    let loss: f32 = to_vec(out.loss).iter().sum();
    assert_close_f32(
        &[loss],
        &[fixture["ce_sum_float64"].as_f64().unwrap()],
        Tol::rel(1e-4),
    );
    let grad: Vec<f64> = to_vec(out.grad).iter().map(|&v| f64::from(v)).collect();
    let expected = floats(&fixture["input_grad_float64"]);
    let num: f64 = grad
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).powi(2))
        .sum();
    let den: f64 = expected.iter().map(|e| e * e).sum();
    assert!(
        (num / den).sqrt() < 1e-4,
        "{name}: gradient relative error {}",
        (num / den).sqrt()
    );
}

#[test]
fn conv_batchnorm_residual_and_global_pooling() {
    check("residual_bn");
}

#[test]
fn pooling_activations_concat_matmul_and_shape_arithmetic() {
    check("ops_mix");
}

#[test]
fn average_pooling_padding_transpose_and_elementwise_math() {
    check("avg_pad");
}

#[test]
fn an_unsupported_operator_is_named_with_its_node() {
    let path = testdata().join("onnx/unsupported.onnx");
    match Model::load(&path, &LoadOptions::default()) {
        Err(ModelError::UnsupportedOp { op, node, .. }) => {
            assert_eq!(op, "Resize");
            assert!(!node.is_empty());
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
}
