//! `nnguard certify smooth|ibp|crown` as a user runs them: reports, shards, and one clear
//! error naming the flag or the operator for every kind of bad input.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;

fn nnguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .env("NNGUARD_DATA", "/nonexistent-nnguard-data")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nnguard: {e}"))
}

fn testdata(rel: &str) -> String {
    let p = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../testdata")
        .join(rel);
    p.to_string_lossy().into_owned()
}

fn json_of(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[track_caller]
fn assert_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    for n in needles {
        assert!(line.contains(n), "{line:?} lacks {n:?}");
    }
}

#[test]
fn ibp_and_crown_report_verified_accuracy_per_eps() {
    let mlp = testdata("reference/mlp.onnx");
    let run = |method: &str| {
        json_of(&nnguard(&[
            "certify",
            method,
            "--model",
            &mlp,
            "--data",
            "bundled",
            "--limit",
            "60",
            "--eps",
            "0,0.01,0.03",
            "--json",
        ]))
    };
    let (ibp, crown) = (run("ibp"), run("crown"));
    for (r, method) in [(&ibp, "ibp"), (&crown, "crown")] {
        assert_eq!(r["schema_version"], 1);
        assert_eq!(r["method"], method);
        assert_eq!(r["images"], 60);
        assert_eq!(r["inputs"].as_array().unwrap().len(), 60);
        let acc: Vec<f64> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["verified_accuracy"].as_f64().unwrap())
            .collect();
        // At ε = 0 exactly the correctly classified inputs are verified.
        assert_eq!(acc[0], r["clean_accuracy"].as_f64().unwrap(), "{method}");
        assert!(acc[0] >= acc[1] && acc[1] >= acc[2], "{method}: {acc:?}");
    }
    let verified = |r: &Value, i: usize| r["results"][i]["verified"].as_u64().unwrap();
    assert!(verified(&crown, 2) > verified(&ibp, 2));
    // The human-readable table.
    let o = nnguard(&[
        "certify", "ibp", "--model", &mlp, "--limit", "20", "--eps", "0.01",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("IBP verification") && text.contains("0.01"),
        "{text}"
    );
}

#[test]
fn smoothing_reports_certified_accuracy_by_radius_and_shards_cover_the_run() {
    let mlp = testdata("reference/mlp.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smooth.json");
    let base = [
        "certify", "smooth", "--model", &mlp, "--limit", "6", "--n0", "20", "--n", "300",
        "--alpha", "0.01", "--batch", "128", "--json",
    ];
    let mut args = base.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    let full = json_of(&nnguard(&args));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written, full);
    assert_eq!(full["method"], "randomized-smoothing");
    assert_eq!(full["norm"], "l2");
    assert_eq!(full["params"]["n"], 300);
    let curve = full["curve"].as_array().unwrap();
    assert!(!curve.is_empty());
    assert_eq!(curve[0]["radius"], 0.0);
    let inputs = full["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 6);
    for inp in inputs {
        let (r, p) = (
            inp["radius"].as_f64().unwrap(),
            inp["p_lower"].as_f64().unwrap(),
        );
        assert_eq!(inp["class"].is_null(), p <= 0.5, "{inp}");
        assert!(r >= 0.0 && (r > 0.0) == (p > 0.5), "{inp}");
    }
    // Two shards give exactly the per-input records of the whole run.
    let mut merged = Vec::new();
    for shard in ["0/2", "1/2"] {
        let mut args = base.to_vec();
        args.extend(["--shard", shard]);
        let part = json_of(&nnguard(&args));
        assert_eq!(part["shard"], shard);
        merged.extend(part["inputs"].as_array().unwrap().clone());
    }
    assert_eq!(&merged, inputs);
}

#[test]
fn bad_parameters_are_refused_naming_the_flag() {
    let mlp = testdata("reference/mlp.onnx");
    let smooth = |extra: &[&str]| {
        let mut a = vec!["certify", "smooth", "--model", &mlp, "--limit", "1"];
        a.extend_from_slice(extra);
        nnguard(&a)
    };
    assert_error(&smooth(&["--sigma", "0"]), &["--sigma"]);
    assert_error(&smooth(&["--sigma", "-0.5"]), &["--sigma"]);
    assert_error(&smooth(&["--sigma", "inf"]), &["--sigma"]);
    assert_error(&smooth(&["--sigma", "NaN"]), &["--sigma"]);
    assert_error(&smooth(&["--n0", "0"]), &["--n0"]);
    assert_error(&smooth(&["--n0", "100", "--n", "50"]), &["--n", "--n0"]);
    assert_error(&smooth(&["--alpha", "0"]), &["--alpha"]);
    assert_error(&smooth(&["--alpha", "1.5"]), &["--alpha"]);
    assert_error(&smooth(&["--batch", "0"]), &["--batch"]);
    let ibp = |extra: &[&str]| {
        let mut a = vec!["certify", "ibp", "--model", &mlp, "--limit", "1"];
        a.extend_from_slice(extra);
        nnguard(&a)
    };
    assert_error(&ibp(&["--eps=-0.1"]), &["--eps"]);
    assert_error(&ibp(&["--eps", "0.1,NaN"]), &["--eps"]);
    assert_eq!(
        ibp(&["--eps", "0.1", "--shard", "2/2"]).status.code(),
        Some(4)
    );
}

#[test]
fn unsupported_architectures_are_named_before_any_work() {
    for (method, rel) in [("ibp", "onnx/ops_mix.onnx"), ("crown", "onnx/avg_pad.onnx")] {
        let o = nnguard(&[
            "certify",
            method,
            "--model",
            &testdata(rel),
            "--eps",
            "0.01",
        ]);
        let name = method.to_uppercase();
        assert_error(
            &o,
            &[
                &format!("{name} does not support ONNX op \""),
                "\" in node \"",
            ],
        );
    }
}
