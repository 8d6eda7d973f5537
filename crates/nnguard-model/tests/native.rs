//! Built-in architectures: PyTorch-compatible weight files, gradients against finite
//! differences, and clear errors for every kind of wrong file.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use nnguard_model::arch::{Arch, Network};
use nnguard_model::sidecar::Sidecar;
use nnguard_model::tensor::{batch_tensor, cpu, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model, ModelError, weights};
use nnguard_testkit::{Tol, assert_close_f32, testdata};

fn model(arch: Arch, shape: [usize; 3], seed: u64) -> Model {
    let d = cpu();
    Model::from_network(
        Network::init_seeded(arch, shape, 10, seed, &d).unwrap(),
        shape,
        10,
        None,
    )
}

fn random_batch(n: usize, shape: [usize; 3], seed: u64) -> Vec<f32> {
    // A small LCG keeps the inputs reproducible without another dependency.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n * shape.iter().product::<usize>())
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32) / (1u64 << 31) as f32
        })
        .collect()
}

#[test]
fn weight_files_use_pytorch_names_and_layouts() {
    let d = cpu();
    let net = Network::init_seeded(Arch::Cnn, [1, 28, 28], 10, 1, &d).unwrap();
    let names: Vec<(String, Vec<usize>)> = weights::expected_tensors(&net);
    let expected = [
        ("conv1.bias", vec![32]),
        ("conv1.weight", vec![32, 1, 3, 3]),
        ("conv2.bias", vec![64]),
        ("conv2.weight", vec![64, 32, 3, 3]),
        ("fc1.bias", vec![128]),
        ("fc1.weight", vec![128, 1600]),
        ("fc2.bias", vec![10]),
        ("fc2.weight", vec![10, 128]),
    ];
    let expected: Vec<(String, Vec<usize>)> = expected
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect();
    assert_eq!(names, expected);
    assert_eq!(weights::parameter_count(&net), 225_034);
    let resnet = Network::init(Arch::Resnet8, [3, 32, 32], 10, &d).unwrap();
    let names: Vec<String> = weights::expected_tensors(&resnet)
        .into_iter()
        .map(|t| t.0)
        .collect();
    for n in [
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.weight",
        "layer2.shortcut_conv.weight",
        "fc.weight",
    ] {
        assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
    }
}

#[test]
fn saved_weights_reload_to_identical_logits_for_every_arch() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, shape) in [
        (Arch::Mlp, [1, 28, 28]),
        (Arch::Cnn, [1, 28, 28]),
        (Arch::Resnet8, [3, 32, 32]),
    ] {
        let m = model(arch, shape, 3);
        let nnguard_model::Backbone::Native(net) = m.backbone() else {
            unreachable!()
        };
        let bytes = weights::to_bytes(net, &[]).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        weights::write_atomic(&path, &bytes).unwrap();
        let opts = LoadOptions {
            arch: Some(arch),
            input_shape: Some(shape),
            ..LoadOptions::default()
        };
        let back = Model::load(&path, &opts).unwrap();
        let x = batch_tensor(&random_batch(4, shape, 9), shape, m.device());
        let a = to_vec(m.logits(x.clone()));
        let b: Vec<f64> = to_vec(back.logits(x))
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close_f32(&a, &b, Tol::abs(0.0));
    }
}

/// Central finite differences of the summed per-sample loss: along the normalised gradient
/// (where the derivative must equal the gradient's norm) and along single coordinates.
fn check_gradient(m: &Model, loss: Loss) {
    let shape = m.input_shape();
    let pixels = random_batch(2, shape, 5);
    let labels = [3u32, 7];
    let x = batch_tensor(&pixels, shape, m.device());
    let grad = to_vec(m.input_gradient(x, &labels, loss).grad);
    let loss_at = |p: &[f32]| -> f64 {
        let z = m.forward(batch_tensor(p, shape, m.device()));
        to_vec(loss.per_sample(z, &labels))
            .iter()
            .map(|&v| f64::from(v))
            .sum()
    };
    let shifted = |dir: &[f32], h: f32| -> f64 {
        let plus: Vec<f32> = pixels.iter().zip(dir).map(|(p, d)| p + h * d).collect();
        let minus: Vec<f32> = pixels.iter().zip(dir).map(|(p, d)| p - h * d).collect();
        (loss_at(&plus) - loss_at(&minus)) / (2.0 * f64::from(h))
    };
    let norm = grad.iter().map(|g| f64::from(g * g)).sum::<f64>().sqrt();
    assert!(
        norm > 0.0 && norm.is_finite(),
        "{loss:?}: gradient norm {norm}"
    );
    let unit: Vec<f32> = grad.iter().map(|g| (f64::from(*g) / norm) as f32).collect();
    let along = shifted(&unit, 1e-2);
    assert!(
        (along - norm).abs() <= 0.03 * norm,
        "{:?} {loss:?}: derivative along the gradient {along} vs its norm {norm}",
        m.layer_names()
    );
    let max = grad.iter().fold(0.0f32, |a, g| a.max(g.abs()));
    for i in (0..grad.len()).step_by(grad.len() / 7) {
        let mut e = vec![0.0f32; grad.len()];
        e[i] = 1.0;
        let fd = shifted(&e, 1e-2);
        assert!(
            (fd - f64::from(grad[i])).abs() <= 0.05 * f64::from(max),
            "{loss:?}: coordinate {i}: finite difference {fd} vs gradient {}",
            grad[i]
        );
    }
}

#[test]
fn input_gradients_match_finite_differences() {
    // Piecewise-linear networks: the directional derivative is exact up to rounding unless a
    // ReLU or max-pool switches inside ±h, so the tolerance is a few percent.
    for (arch, shape) in [
        (Arch::Mlp, [1, 28, 28]),
        (Arch::Cnn, [1, 28, 28]),
        (Arch::Resnet8, [3, 32, 32]),
    ] {
        let m = model(arch, shape, 21);
        for loss in [
            Loss::CrossEntropy,
            Loss::Margin,
            Loss::Dlr,
            Loss::TargetedCrossEntropy,
        ] {
            check_gradient(&m, loss);
        }
    }
}

#[test]
fn normalisation_lives_inside_the_model() {
    let shape = [1, 28, 28];
    let d = cpu();
    let net = Network::init_seeded(Arch::Mlp, shape, 10, 4, &d).unwrap();
    let norm = nnguard_model::Normalize::parse("0.5,0.25").unwrap();
    let wrapped = Model::from_network(net.clone(), shape, 10, Some(norm));
    let plain = Model::from_network(net, shape, 10, None);
    let px = random_batch(3, shape, 2);
    let normalised: Vec<f32> = px.iter().map(|v| (v - 0.5) / 0.25).collect();
    let a = to_vec(wrapped.logits(batch_tensor(&px, shape, &d)));
    let b: Vec<f64> = to_vec(plain.logits(batch_tensor(&normalised, shape, &d)))
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    assert_close_f32(
        &a,
        &b,
        Tol {
            rel: 1e-5,
            abs: 1e-5,
        },
    );
    // The gradient is taken in pixel space: chain rule gives a factor 1/std.
    let labels = [1, 2, 3];
    let ga = to_vec(
        wrapped
            .input_gradient(batch_tensor(&px, shape, &d), &labels, Loss::CrossEntropy)
            .grad,
    );
    let gb: Vec<f64> = to_vec(
        plain
            .input_gradient(
                batch_tensor(&normalised, shape, &d),
                &labels,
                Loss::CrossEntropy,
            )
            .grad,
    )
    .iter()
    .map(|&v| f64::from(v) / 0.25)
    .collect();
    assert_close_f32(
        &ga,
        &gb,
        Tol {
            rel: 1e-4,
            abs: 1e-6,
        },
    );
}

fn load(path: &Path, arch: Option<Arch>) -> Result<Model, ModelError> {
    Model::load(
        path,
        &LoadOptions {
            arch,
            ..LoadOptions::default()
        },
    )
}

#[test]
fn wrong_files_give_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read(testdata().join("reference/cnn.safetensors")).unwrap();

    // Missing file, directory.
    assert!(matches!(
        load(&dir.path().join("nope.onnx"), None),
        Err(ModelError::Io { .. })
    ));
    assert!(matches!(load(dir.path(), None), Err(ModelError::Io { .. })));

    // Truncated safetensors.
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &reference[..reference.len() / 2]).unwrap();
    assert!(matches!(
        load(&cut, Some(Arch::Cnn)),
        Err(ModelError::BadSafetensors { .. })
    ));

    // No sidecar and no --arch.
    let bare = dir.path().join("bare.safetensors");
    std::fs::write(&bare, &reference).unwrap();
    let err = load(&bare, None).unwrap_err();
    assert!(err.to_string().contains("--arch"), "{err}");

    // The weights of one architecture loaded as another.
    match load(&bare, Some(Arch::Mlp)) {
        Err(ModelError::ShapeMismatch { name, .. } | ModelError::MissingTensor { name, .. }) => {
            assert!(name.starts_with("fc"), "{name}")
        }
        other => panic!("expected a tensor error, got {other:?}"),
    }

    // A sidecar that disagrees with the weights' shapes.
    let mut sc = Sidecar::read(&testdata().join("reference/cnn.json"))
        .unwrap()
        .unwrap();
    sc.tensors[0].shape = vec![16, 1, 3, 3];
    sc.write(&Sidecar::path_for(&bare)).unwrap();
    match load(&bare, None) {
        Err(ModelError::BadSidecar { reason, .. }) => {
            assert!(reason.contains("conv1.weight"), "{reason}")
        }
        other => panic!("expected BadSidecar, got {other:?}"),
    }

    // A sidecar whose recorded digest no longer matches the weights.
    let mut sc = Sidecar::read(&testdata().join("reference/cnn.json"))
        .unwrap()
        .unwrap();
    sc.sha256 = Some("00".repeat(32));
    sc.write(&Sidecar::path_for(&bare)).unwrap();
    assert!(matches!(
        load(&bare, None),
        Err(ModelError::BadSidecar { .. })
    ));

    // Not a model at all; an ONNX file cut short.
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "hello world").unwrap();
    assert!(matches!(
        load(&junk, None),
        Err(ModelError::UnknownFormat { .. })
    ));
    let onnx = std::fs::read(testdata().join("reference/cnn.onnx")).unwrap();
    let short = dir.path().join("short.onnx");
    std::fs::write(&short, &onnx[..1000]).unwrap();
    assert!(matches!(
        load(&short, None),
        Err(ModelError::BadOnnx { .. })
    ));
}

#[test]
fn an_unsupported_opset_is_rejected_by_number() {
    use onnx_ir::{Message, ModelProto};
    let bytes = std::fs::read(testdata().join("reference/cnn.onnx")).unwrap();
    let mut proto = ModelProto::parse_from_bytes(&bytes).unwrap();
    for o in proto.opset_import.iter_mut() {
        if o.domain.is_empty() {
            o.version = 5;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.onnx");
    std::fs::write(&path, proto.write_to_bytes().unwrap()).unwrap();
    match load(&path, None) {
        Err(ModelError::UnsupportedOpset { found: 5, .. }) => {}
        other => panic!("expected UnsupportedOpset, got {other:?}"),
    }
}

#[test]
fn a_custom_domain_op_is_reported_with_its_domain() {
    use onnx_ir::{Message, ModelProto};
    let bytes = std::fs::read(testdata().join("reference/cnn.onnx")).unwrap();
    let mut proto = ModelProto::parse_from_bytes(&bytes).unwrap();
    if let Some(g) = proto.graph.as_mut() {
        g.node[1].domain = "com.example".into();
        g.node[1].op_type = "Evil".into();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.onnx");
    std::fs::write(&path, proto.write_to_bytes().unwrap()).unwrap();
    let err = load(&path, None).unwrap_err();
    assert!(err.to_string().contains("com.example::Evil"), "{err}");
    assert!(err.to_string().contains("node_relu"), "{err}");
}
