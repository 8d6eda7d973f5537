//! Defences as a user runs them: `nnguard eval` must show which defences only hide gradients.
//! A distilled model is broken by C&W where the cross-entropy attack fails, squeezing and
//! JPEG fall to BPDA where their true gradient stops the attack, and the reports say so;
//! robust-training and transform flags that cannot work are rejected by name.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nnguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nnguard: {e}"))
}

fn reference(name: &str) -> String {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../testdata/reference")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&ok(out).stdout).unwrap()
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} check in {:#}", report["checks"]))
}

/// Inputs broken by each attack at the headline ε, in ensemble order.
fn broken(report: &Value) -> Vec<(String, u64)> {
    report["summary"]["curve"][0]["after_attack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attack"].as_str().unwrap().to_string(),
                a["broken"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn robust_accuracy(report: &Value) -> f64 {
    report["summary"]["curve"][0]["robust_accuracy"]
        .as_f64()
        .unwrap()
}

fn train(dir: &Path, name: &str, extra: &[&str]) -> String {
    let out = dir.join(name).to_string_lossy().into_owned();
    let mut args = vec![
        "train", "--arch", "mlp", "--data", "bundled", "--epochs", "5", "--lr", "0.01", "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    let run = nnguard(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

#[test]
fn eval_shows_cw_breaking_a_distilled_model_and_calls_it_gradient_masking() {
    let dir = tempfile::tempdir().unwrap();
    // Defensive distillation at T = 100 (Papernot et al. 2016): a teacher on hard labels at
    // T, then a student on its soft labels, deployed at T = 1.
    let teacher = train(
        dir.path(),
        "teacher.safetensors",
        &["--defense", "distill", "--temperature", "100"],
    );
    let student = train(
        dir.path(),
        "student.safetensors",
        &[
            "--defense",
            "distill",
            "--teacher",
            &teacher,
            "--temperature",
            "100",
            "--seed",
            "1",
        ],
    );
    let out = nnguard(&[
        "eval",
        "--model",
        &student,
        "--data",
        "bundled",
        "--limit",
        "100",
        "--eps",
        "0.1",
        "--attacks",
        "apgd-ce,cw-linf",
        "--json",
    ]);
    let r = report(&out);
    let by = broken(&r);
    assert_eq!(by[0].0, "apgd-ce");
    assert_eq!(by[1].0, "cw-linf");
    assert!(
        by[1].1 > by[0].1,
        "C&W should break more of the distilled model than cross-entropy: {by:?}"
    );
    let finding = check(&r, "distillation");
    assert_eq!(finding["status"], "failed", "{finding:#}");
    assert!(
        finding["detail"]
            .as_str()
            .unwrap()
            .contains("gradient masking"),
        "{finding:#}"
    );
    assert_eq!(out.status.code(), Some(1), "a failed check is a finding");
}

#[test]
fn bpda_breaks_squeezing_and_jpeg_where_their_true_gradient_does_not() {
    let cnn = reference("cnn.onnx");
    for transform in ["squeeze:bits=4", "jpeg:quality=50"] {
        let run = |gradient: &str| {
            report(&nnguard(&[
                "eval",
                "--model",
                &cnn,
                "--transform",
                transform,
                "--transform-gradient",
                gradient,
                "--data",
                "bundled",
                "--limit",
                "64",
                "--eps",
                "0.1",
                "--attacks",
                "apgd-ce",
                "--json",
            ]))
        };
        let plain = run("plain");
        let bpda = run("bpda");
        assert_eq!(
            plain["summary"]["clean_accuracy"],
            bpda["summary"]["clean_accuracy"]
        );
        // On the true (zero) gradient APGD-CE barely moves; through BPDA it breaks most
        // inputs. The harness adds a gradient-free SPSA attack to the naive run when it sees
        // zero gradients, which is why the naive run's final number is not the plain one.
        let (plain_apgd, bpda_apgd) = (broken(&plain)[0].clone(), broken(&bpda)[0].clone());
        assert_eq!(plain_apgd.0, "apgd-ce");
        assert!(
            2 * plain_apgd.1 < bpda_apgd.1,
            "{transform}: APGD-CE broke {} on the true gradient, {} through BPDA",
            plain_apgd.1,
            bpda_apgd.1
        );
        assert!(
            robust_accuracy(&bpda) < robust_accuracy(&plain),
            "{transform}: BPDA {} vs true gradient {}",
            robust_accuracy(&bpda),
            robust_accuracy(&plain)
        );
        for r in [&plain, &bpda] {
            let finding = check(r, "gradient-masking");
            assert_eq!(finding["status"], "failed", "{transform}: {finding:#}");
        }
        // The naive run is told that its number overstates robustness.
        assert!(
            check(&plain, "gradient-masking")["action"]
                .as_str()
                .unwrap()
                .contains("--transform-gradient bpda")
        );
        assert!(
            check(&bpda, "defence")["detail"]
                .as_str()
                .unwrap()
                .contains("BPDA")
        );
    }
}

#[test]
fn defence_flags_that_cannot_work_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let out = out.to_str().unwrap();
    let cnn = reference("cnn.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--data", "bundled", "--eps", "0.1", "--out", out],
            "--eps needs --defense",
        ),
        (
            vec![
                "train",
                "--data",
                "bundled",
                "--defense",
                "pgd-at",
                "--sigma",
                "0.5",
                "--out",
                out,
            ],
            "--sigma",
        ),
        (
            vec![
                "train",
                "--data",
                "bundled",
                "--defense",
                "distill",
                "--teacher",
                "/nonexistent/teacher.onnx",
                "--out",
                out,
            ],
            "teacher.onnx",
        ),
        (
            vec![
                "eval",
                "--model",
                &cnn,
                "--data",
                "bundled",
                "--transform",
                "median:40",
            ],
            "median:40",
        ),
        (
            vec![
                "eval",
                "--model",
                &cnn,
                "--data",
                "bundled",
                "--transform",
                "blur:3",
            ],
            "--transform",
        ),
    ];
    for (args, needle) in cases {
        let run = nnguard(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(
        !Path::new(out).exists(),
        "a rejected run must not write a model"
    );
}
