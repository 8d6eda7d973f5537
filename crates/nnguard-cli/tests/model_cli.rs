//! `nnguard train`, `predict`, `info` and `assess` as a user runs them: outputs, numbers,
//! determinism, and one clear error line with exit code 2 for every kind of bad input.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .env("NNGUARD_DATA", "/nonexistent-nnguard-data")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nnguard: {e}"))
}

fn reference(name: &str) -> String {
    let p = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../testdata/reference")
        .join(name);
    p.to_string_lossy().into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code 2 and a single `error:` line on stderr (progress lines may precede it)
/// containing every needle.
#[track_caller]
fn assert_error(o: &Output, needles: &[&str]) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        out(o),
        err(o)
    );
    let e = err(o);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from: {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", out(o)))
}

#[test]
fn predict_reports_the_reference_accuracy_on_the_bundled_test_images() {
    let o = nnguard(&[
        "predict",
        "--model",
        &reference("cnn.onnx"),
        "--data",
        "bundled",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v = json(&o);
    // attacks-cnn.json: clean accuracy of cnn.onnx on the first 1000 test images.
    assert_eq!(v["correct"], 898);
    assert_eq!(v["n"], 1000);
    assert_eq!(v["per_class"].as_array().map(Vec::len), Some(10));
    let text = nnguard(&[
        "predict",
        "--model",
        &reference("mlp.onnx"),
        "--limit",
        "100",
    ]);
    assert_eq!(text.status.code(), Some(0), "{}", err(&text));
    assert!(out(&text).contains("accuracy"), "{}", out(&text));
    assert!(out(&text).contains("Ankle boot"), "{}", out(&text));
}

#[test]
fn info_describes_onnx_and_safetensors_models() {
    let o = nnguard(&["info", "--model", &reference("cnn.onnx"), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v = json(&o);
    assert_eq!(v["parameters"], 225_034);
    assert_eq!(v["num_classes"], 10);
    assert_eq!(v["opset"], 17);
    assert_eq!(v["input_shape"], serde_json::json!([1, 28, 28]));
    let ops: Vec<&str> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        [
            "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Reshape", "Gemm", "Relu", "Gemm"
        ]
    );
    let o = nnguard(&["info", "--model", &reference("cnn.safetensors")]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("architecture: cnn"), "{}", out(&o));
    assert!(out(&o).contains("225034"), "{}", out(&o));
}

fn train_small(dir: &Path, name: &str, arch: &str) -> (PathBuf, Output) {
    let path = dir.join(name);
    let o = nnguard(&[
        "train",
        "--arch",
        arch,
        "--data",
        "bundled",
        "--limit",
        "384",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--seed",
        "7",
        "--out",
        path.to_str().unwrap(),
    ]);
    (path, o)
}

#[test]
fn training_is_deterministic_and_writes_a_loadable_model_with_its_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["mlp", "cnn"] {
        let (a, oa) = train_small(dir.path(), &format!("{arch}-a.safetensors"), arch);
        assert_eq!(oa.status.code(), Some(0), "{}", err(&oa));
        let (b, ob) = train_small(dir.path(), &format!("{arch}-b.safetensors"), arch);
        assert_eq!(ob.status.code(), Some(0), "{}", err(&ob));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{arch} is not deterministic"
        );
        let sidecar: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(a.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(sidecar["arch"], arch);
        assert_eq!(sidecar["training"]["seed"], 7);
        assert_eq!(sidecar["training"]["train_images"], 384);
        let acc = sidecar["test_accuracy"].as_f64().unwrap();
        assert!(
            acc > 0.2,
            "{arch}: one epoch on 384 images should beat chance (0.1), got {acc}"
        );
        // The model it wrote predicts exactly the accuracy the sidecar records.
        let p = nnguard(&["predict", "--model", a.to_str().unwrap(), "--json"]);
        assert_eq!(p.status.code(), Some(0), "{}", err(&p));
        assert_eq!(json(&p)["accuracy"].as_f64(), Some(acc));
    }
    let (_, other) = {
        let path = dir.path().join("seed8.safetensors");
        let o = nnguard(&[
            "train",
            "--arch",
            "mlp",
            "--limit",
            "384",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--seed",
            "8",
            "--out",
            path.to_str().unwrap(),
        ]);
        (path.clone(), (o, path))
    };
    assert_ne!(
        std::fs::read(&other.1).unwrap(),
        std::fs::read(dir.path().join("mlp-a.safetensors")).unwrap(),
        "a different seed must give different weights"
    );
}

#[test]
fn assess_runs_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let o = nnguard(&[
        "assess",
        "--limit",
        "200",
        "--out",
        report.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v = json(&o);
    assert_eq!(v["images"], 200);
    assert!(v["clean_accuracy"].as_f64().unwrap() > 0.7, "{v}");
    assert!(report.join("report.json").is_file());
    assert!(report.join("model.safetensors").is_file());
    assert!(report.join("model.json").is_file());
}

#[test]
fn bad_model_files_give_one_error_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    assert_error(
        &nnguard(&["info", "--model", missing.to_str().unwrap()]),
        &["missing.onnx"],
    );
    assert_error(
        &nnguard(&["info", "--model", dir.path().to_str().unwrap()]),
        &["directory"],
    );

    let bytes = std::fs::read(reference("cnn.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    assert_error(
        &nnguard(&["predict", "--model", cut.to_str().unwrap(), "--arch", "cnn"]),
        &["cut.safetensors"],
    );

    let wrong_arch = dir.path().join("w.safetensors");
    std::fs::write(&wrong_arch, &bytes).unwrap();
    assert_error(
        &nnguard(&[
            "predict",
            "--model",
            wrong_arch.to_str().unwrap(),
            "--arch",
            "mlp",
        ]),
        &["w.safetensors", "fc1."],
    );
    assert_error(
        &nnguard(&["predict", "--model", wrong_arch.to_str().unwrap()]),
        &["--arch"],
    );

    let onnx = std::fs::read(reference("cnn.onnx")).unwrap();
    let short = dir.path().join("short.onnx");
    std::fs::write(&short, &onnx[..5000]).unwrap();
    assert_error(
        &nnguard(&["info", "--model", short.to_str().unwrap()]),
        &["short.onnx"],
    );

    let unsupported = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../testdata/onnx/unsupported.onnx");
    assert_error(
        &nnguard(&["info", "--model", unsupported.to_str().unwrap()]),
        &["Resize", "node"],
    );
}

#[test]
fn bad_data_gives_one_error_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let model = reference("cnn.onnx");
    // A truncated images file, a label count mismatch, an out-of-range label.
    let idx = |dims: &[u32], body: &[u8]| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(body);
        b
    };
    let write = |imgs: Vec<u8>, labels: Vec<u8>| {
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), imgs).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels).unwrap();
    };
    let spec = format!("idx:{}", dir.path().display());
    write(idx(&[2, 28, 28], &[0; 784]), idx(&[2], &[1, 2]));
    assert_error(
        &nnguard(&["predict", "--model", &model, "--data", &spec]),
        &["t10k-images-idx3-ubyte", "truncated"],
    );
    write(idx(&[2, 28, 28], &[0; 1568]), idx(&[3], &[1, 2, 3]));
    assert_error(
        &nnguard(&["predict", "--model", &model, "--data", &spec]),
        &["2 images", "3 labels"],
    );
    write(
        idx(&[1, 28, 28], &[0; 784]),
        vec![0, 0, 9, 1, 0, 0, 0, 1, 5],
    );
    assert_error(
        &nnguard(&["predict", "--model", &model, "--data", &spec]),
        &["t10k-labels-idx1-ubyte", "magic"],
    );
    // Images of another size than the model takes.
    write(idx(&[1, 32, 32], &[0; 1024]), idx(&[1], &[0]));
    assert_error(
        &nnguard(&["predict", "--model", &model, "--data", &spec]),
        &["--data", &spec, "1×32×32", "1×28×28"],
    );
    // A data set that is not installed says how to get it.
    assert_error(
        &nnguard(&["predict", "--model", &model, "--data", "mnist"]),
        &["MNIST", "NNGUARD_DATA"],
    );
    // An unknown --data spelling is a usage error.
    let o = nnguard(&["predict", "--model", &model, "--data", "imagenet"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
}

#[test]
fn failed_training_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diverged.safetensors");
    let o = nnguard(&[
        "train",
        "--arch",
        "mlp",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--lr",
        "1e30",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_error(&o, &["diverged", "--lr"]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "files left behind"
    );
    let nodir = dir.path().join("no/such/dir/m.safetensors");
    assert_error(
        &nnguard(&[
            "train",
            "--arch",
            "mlp",
            "--limit",
            "64",
            "--out",
            nodir.to_str().unwrap(),
        ]),
        &["--out", "does not exist"],
    );
    assert_error(
        &nnguard(&["train", "--epochs", "0", "--out", path.to_str().unwrap()]),
        &["--epochs"],
    );
}

/// Writes a small CIFAR-10 binary directory: random pixels, labels cycling through 0..10.
fn synthetic_cifar(dir: &Path, train: usize, test: usize) {
    let mut state = 12345u32;
    let mut batch = |n: usize| {
        let mut b = Vec::with_capacity(n * 3073);
        for i in 0..n {
            b.push((i % 10) as u8);
            for _ in 0..3072 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b.push((state >> 24) as u8);
            }
        }
        b
    };
    std::fs::write(dir.join("data_batch_1.bin"), batch(train)).unwrap();
    std::fs::write(dir.join("test_batch.bin"), batch(test)).unwrap();
}

#[test]
fn resnet8_trains_on_cifar10_binaries_and_reloads_with_its_batch_norm_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("cifar");
    std::fs::create_dir(&data_dir).unwrap();
    synthetic_cifar(&data_dir, 96, 40);
    let spec = format!("cifar10:{}", data_dir.display());
    let out = dir.path().join("r8.safetensors");
    let o = nnguard(&[
        "train",
        "--arch",
        "resnet8",
        "--data",
        &spec,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--normalize",
        "0.5/0.5/0.5,0.25/0.25/0.25",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["input_shape"], serde_json::json!([3, 32, 32]));
    assert_eq!(
        sidecar["normalize"]["std"],
        serde_json::json!([0.25, 0.25, 0.25])
    );
    assert_eq!(sidecar["class_names"][0], "airplane");
    let keys: Vec<&str> = sidecar["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(keys.contains(&"layer3.bn2.running_var"), "{keys:?}");
    // The reloaded model (running statistics, normalisation from the sidecar) scores exactly
    // what training measured.
    let p = nnguard(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &spec,
        "--json",
    ]);
    assert_eq!(p.status.code(), Some(0), "{}", err(&p));
    assert_eq!(json(&p)["accuracy"], sidecar["test_accuracy"]);
    assert_eq!(json(&p)["n"], 40);
    // A three-channel model refuses one-channel images, naming both shapes.
    let p = nnguard(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--data",
        "bundled",
    ]);
    assert_error(&p, &["[3, 32, 32]"]);
}
