//! `nnguard eval`, `attack` and `report merge` as a user runs them: the robust accuracy with
//! its checks, the JSON and HTML reports, shards that merge into the unsharded numbers, the
//! saved adversarial batch, and clear errors (with the partial report kept) for bad input
//! and a remote target that breaks down.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

fn nnguard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nnguard"));
    c.args(args)
        .env("NNGUARD_DATA", "/nonexistent-nnguard-data")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run nnguard: {e}"))
}

fn cnn() -> String {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../testdata/reference/cnn.onnx")
        .to_string_lossy()
        .into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The common flags of a small, quick evaluation.
fn quick<'a>(extra: &[&'a str], model: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "--model",
        model,
        "--data",
        "bundled",
        "--limit",
        "64",
        "--batch-size",
        "32",
        "--attacks",
        "pgd,square",
        "--steps",
        "5",
        "--queries",
        "30",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn eval_prints_robust_accuracy_beside_its_checks_and_writes_both_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (json_path, html_path) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let model = cnn();
    let mut args = vec!["eval"];
    args.extend(quick(
        &[
            "--eps",
            "0.03,0.1",
            "--out",
            json_path.to_str().unwrap(),
            "--report",
            html_path.to_str().unwrap(),
        ],
        &model,
    ));
    let o = nnguard(&args, &[]);
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));
    for line in stdout.lines().filter(|l| l.starts_with("robust accuracy")) {
        assert!(line.contains("checks:"), "{line}");
    }
    assert!(stdout.contains("validity checks"), "{stdout}");
    let r = json_file(&json_path);
    assert_eq!(r["schema"], "nnguard-eval/v1");
    assert_eq!(r["summary"]["inputs"], 64);
    let curve = r["summary"]["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 2);
    assert!(curve[1]["robust"].as_u64() <= curve[0]["robust"].as_u64());
    assert_eq!(r["summary"]["monotone"], true);
    assert!(r["checks"].as_array().unwrap().len() >= 10);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("data:image/png;base64,"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}

#[test]
fn shards_merge_into_the_numbers_of_an_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = cnn();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (whole, a, b, merged) = (
        path("whole.json"),
        path("a.json"),
        path("b.json"),
        path("m.json"),
    );
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["eval"];
        args.extend(quick(extra, &model));
        let o = nnguard(&args, env);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    };
    run(&["--eps", "0.1", "--out", &whole], &[]);
    run(&["--eps", "0.1", "--out", &a, "--shard", "0/2"], &[]);
    // The second shard's index comes from a Kubernetes indexed job.
    run(
        &["--eps", "0.1", "--out", &b, "--shards", "2"],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    let part = json_file(Path::new(&b));
    assert_eq!(part["shards"], json!([{"index": 1, "count": 2}]));
    assert_eq!(part["summary"]["inputs"], 32);
    let html = path("m.html");
    let o = nnguard(
        &["report", "merge", &a, &b, "--out", &merged, "--html", &html],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (m, w) = (json_file(Path::new(&merged)), json_file(Path::new(&whole)));
    assert_eq!(m["summary"]["inputs"], 64);
    assert_eq!(m["summary"]["correct"], w["summary"]["correct"]);
    assert_eq!(m["summary"]["curve"], w["summary"]["curve"]);
    assert_eq!(m["inputs"], w["inputs"]);
    assert_eq!(m["checks"], w["checks"]);
    assert!(Path::new(&html).exists());
    // Merging a shard with itself is refused.
    let o = nnguard(&["report", "merge", &a, &a, "--out", &merged], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("more than one report"));
}

#[test]
fn attack_saves_the_adversarial_batch_as_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adv.safetensors");
    let model = cnn();
    let o = nnguard(
        &[
            "attack",
            "pgd",
            "--model",
            &model,
            "--data",
            "bundled",
            "--limit",
            "32",
            "--eps",
            "0.1",
            "--steps",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("checks:"));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x_adv = st.tensor("x_adv").unwrap();
    assert_eq!(x_adv.shape(), &[32, 1, 28, 28]);
    let x = st.tensor("x").unwrap();
    let f = |b: &[u8]| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (xa, x0) = (f(x_adv.data()), f(x.data()));
    let linf = xa
        .iter()
        .zip(&x0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(linf <= 0.1 + 1e-6 && linf > 0.05, "{linf}");
    let success = st.tensor("success").unwrap();
    assert!(success.data().contains(&1));
    assert_eq!(st.tensor("labels").unwrap().shape(), &[32]);
}

#[test]
fn invalid_parameters_are_rejected_with_the_flag_name() {
    let model = cnn();
    for (extra, flag) in [
        (vec!["--eps=-0.1"], "--eps"),
        (vec!["--eps", "0.1", "--steps", "0"], "--steps"),
        (vec!["--eps", "0.1", "--norm", "l3"], "--norm"),
        (vec!["--eps", "0.1", "--attacks", "nope"], "--attacks"),
        (
            vec!["--eps", "0.1", "--attacks", "square", "--queries", "0"],
            "--queries",
        ),
        (vec!["--eps", "0.1", "--shard", "2/2"], "--shard"),
    ] {
        let mut args = vec!["eval", "--model", model.as_str(), "--limit", "8"];
        args.extend(extra);
        let o = nnguard(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o.stdout));
        assert!(
            text(&o.stderr).contains(flag),
            "{flag}: {}",
            text(&o.stderr)
        );
    }
}

/// An Open Inference Protocol v2 server for 1×28×28 inputs that answers the first `good`
/// inference requests with scores for class 0 and then with malformed JSON.
fn breaking_server(good: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(stream) = stream else { continue };
            let served = served.clone();
            std::thread::spawn(move || handle(stream, good, &served));
        }
    });
    format!("http://{addr}/v2/models/m/infer")
}

fn handle(stream: TcpStream, good: usize, served: &AtomicUsize) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let get = line.starts_with("GET");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        let payload = if get {
            json!({
                "name": "m",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}],
            })
            .to_string()
        } else if served.fetch_add(1, Ordering::SeqCst) < good {
            let req: Value = serde_json::from_slice(&body).unwrap();
            let n = req["inputs"][0]["shape"][0].as_u64().unwrap() as usize;
            // Class 0 for every image.
            let scores: Vec<f32> = (0..n * 10)
                .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
                .collect();
            json!({"outputs": [{"name": "y", "datatype": "FP32", "shape": [n, 10], "data": scores}]})
                .to_string()
        } else {
            r#"{"outputs": [{"name": "y", "data": [0.1, "#.to_string()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(payload.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_remote_target_that_breaks_down_keeps_the_partial_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("part.json");
    // The first batch of 8 has no image of class 0, so it costs exactly three requests
    // (two passes of the determinism check and the clean predictions); the second fails.
    let url = breaking_server(3);
    let o = nnguard(
        &[
            "eval",
            "--target",
            &url,
            "--data",
            "bundled",
            "--limit",
            "64",
            "--batch-size",
            "8",
            "--eps",
            "0.1",
            "--attacks",
            "square",
            "--queries",
            "20",
            "--timeout",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}\n{}", text(&o.stdout));
    assert!(stderr.contains("partial report"), "{stderr}");
    assert!(
        stderr.contains(&url[..url.find("/v2").unwrap()]),
        "{stderr}"
    );
    let r = json_file(&out);
    assert_eq!(r["complete"], false);
    assert_eq!(r["summary"]["inputs"], 8);
    assert_eq!(r["total_inputs"], 64);
    assert!(r["stopped"].as_str().unwrap().contains("http://"));
}

#[test]
fn assess_includes_the_evasion_evaluation_in_both_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = nnguard(
        &[
            "assess",
            "--limit",
            "100",
            "--epochs",
            "1",
            "--queries",
            "50",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains("robust accuracy") && stdout.contains("checks:"),
        "{stdout}"
    );
    let r = json_file(&out.join("report.json"));
    assert_eq!(r["schema"], "nnguard-assess/v2");
    assert_eq!(r["evasion"]["schema"], "nnguard-eval/v1");
    assert_eq!(r["evasion"]["summary"]["inputs"], 100);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Validity checks") && html.contains("<svg"));
}
