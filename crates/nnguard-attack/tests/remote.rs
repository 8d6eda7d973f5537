//! The remote oracle against a small Open Inference Protocol v2 server on 127.0.0.1 that
//! serves the reference CNN: the same scores and the same attack results as the local
//! model, the rate limit, and a clear error for each way a server can fail.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nnguard_attack::evasion::{Inputs, SquareConfig, run_black_box};
use nnguard_attack::{AttackError, RemoteOptions, RemoteScorer, Reveal, Scorer};
use nnguard_data::{DataSource, Split};
use nnguard_model::tensor::{batch_tensor, cpu, to_vec};
use nnguard_model::{Classifier, LoadOptions, Model};
use nnguard_testkit::testdata;
use serde_json::{Value, json};

/// Connections one test server accepts before it stops.
const MAX_CONNECTIONS: usize = 200;
/// How long a server connection waits for the next request.
const IDLE: Duration = Duration::from_secs(10);

fn cnn() -> &'static Model {
    static CNN: OnceLock<Model> = OnceLock::new();
    CNN.get_or_init(|| {
        Model::load(
            &testdata().join("reference/cnn.onnx"),
            &LoadOptions::default(),
        )
        .unwrap()
    })
}

/// How the test server answers inference requests.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Correctly.
    Serve,
    /// After this long.
    Stall(Duration),
    /// With a truncated JSON body.
    Garbage,
    /// With 5 scores per image instead of 10.
    WrongShape,
    /// With this status and a JSON error.
    Status(u16),
}

/// Starts a server on a free port; returns the inference URL.
fn serve(mode: Mode) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(MAX_CONNECTIONS) {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || handle(stream, mode));
        }
    });
    format!("http://{addr}/v2/models/cnn/infer")
}

/// Answers requests on one connection until the client closes it or goes idle.
fn handle(stream: TcpStream, mode: Mode) {
    stream.set_read_timeout(Some(IDLE)).unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
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
        let (status, payload) = route(&method, &path, &body, mode);
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(payload.as_bytes()).is_err() {
            return;
        }
    }
}

fn route(method: &str, path: &str, body: &[u8], mode: Mode) -> (u16, String) {
    match (method, path) {
        ("GET", "/v2/models/cnn") => (
            200,
            json!({
                "name": "cnn",
                "versions": ["1"],
                "platform": "onnx",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
            })
            .to_string(),
        ),
        ("POST", "/v2/models/cnn/infer") => infer(body, mode),
        _ => (
            404,
            json!({"error": format!("no route {method} {path}")}).to_string(),
        ),
    }
}

fn infer(body: &[u8], mode: Mode) -> (u16, String) {
    match mode {
        Mode::Stall(d) => std::thread::sleep(d),
        Mode::Garbage => {
            return (
                200,
                r#"{"outputs": [{"name": "logits", "data": [0.1, "#.into(),
            );
        }
        Mode::Status(s) => return (s, json!({"error": "the model crashed"}).to_string()),
        Mode::Serve | Mode::WrongShape => {}
    }
    let req: Value = serde_json::from_slice(body).unwrap();
    let input = &req["inputs"][0];
    assert_eq!(input["name"], "input");
    assert_eq!(input["datatype"], "FP32");
    let shape: Vec<usize> = input["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let b = shape[0];
    let logits = to_vec(cnn().logits(batch_tensor(&data, [1, 28, 28], cnn().device())));
    let (k, values) = match mode {
        Mode::WrongShape => (5, logits.chunks(10).flat_map(|r| r[..5].to_vec()).collect()),
        _ => (10, logits),
    };
    let answer = json!({
        "model_name": "cnn",
        "outputs": [{"name": "logits", "shape": [b, k], "datatype": "FP32", "data": values}],
    });
    (200, answer.to_string())
}

fn images(n: usize) -> (Vec<f32>, Vec<u32>) {
    let data = DataSource::Bundled.load(Split::Test).unwrap().take(n);
    (data.images, data.labels)
}

fn remote_error(r: Result<impl std::fmt::Debug, AttackError>) -> (String, String) {
    match r {
        Err(AttackError::Remote { url, reason }) => (url, reason),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn remote_scores_equal_the_local_model() {
    let url = serve(Mode::Serve);
    let remote = RemoteScorer::connect(&url, RemoteOptions::default()).unwrap();
    assert_eq!(remote.input_name(), "input");
    assert_eq!(remote.output_name(), "logits");
    assert_eq!(Scorer::input_shape(&remote), [1, 28, 28]);
    assert_eq!(Scorer::num_classes(&remote), 10);
    let (x, _) = images(20);
    let t = batch_tensor(&x, [1, 28, 28], &cpu());
    let local = to_vec(cnn().logits(t.clone()));
    let got = to_vec(remote.scores(t).unwrap());
    // Same images, same batch: the JSON round trip of f32 values is exact.
    assert_eq!(got, local);
}

#[test]
fn square_through_the_remote_oracle_matches_the_local_run() {
    let url = serve(Mode::Serve);
    let remote = RemoteScorer::connect(
        &url,
        RemoteOptions {
            max_batch: 256,
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let (x, y) = images(16);
    let square = SquareConfig {
        eps: 0.1,
        queries: 60,
        ..SquareConfig::default()
    }
    .build()
    .unwrap();
    let threat = square.threat((0.0, 1.0));
    let run = |scorer: &dyn Scorer| {
        run_black_box(
            scorer,
            &square,
            threat,
            Inputs {
                x: batch_tensor(&x, [1, 28, 28], &cpu()),
                labels: &y,
                targets: None,
            },
            Some(60),
            Reveal::Scores,
            3,
        )
        .unwrap()
    };
    let (local, local_used) = run(cnn());
    let (far, far_used) = run(&remote);
    assert_eq!(far.success, local.success);
    assert_eq!(far.x_adv, local.x_adv);
    assert_eq!(far_used, local_used);
    assert!(local.success.iter().any(|&s| s) && local.success.iter().any(|&s| !s));
}

#[test]
fn the_rate_limit_holds() {
    let url = serve(Mode::Serve);
    let rate = 20.0;
    let remote = RemoteScorer::connect(
        &url,
        RemoteOptions {
            rate_limit: Some(rate),
            burst: 1,
            max_batch: 1,
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let (x, _) = images(7);
    let start = Instant::now();
    remote
        .scores(batch_tensor(&x, [1, 28, 28], &cpu()))
        .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(remote.requests(), 7);
    // The first request uses the bucket's one token; the six others wait 1/rate each.
    assert!(
        elapsed >= 6.0 / rate,
        "7 requests in {elapsed} s at {rate}/s"
    );
}

#[test]
fn a_stalling_server_times_out_with_the_url_in_the_error() {
    let url = serve(Mode::Stall(Duration::from_secs(3)));
    let remote = RemoteScorer::connect(
        &url,
        RemoteOptions {
            timeout: Duration::from_millis(300),
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let (x, _) = images(2);
    let start = Instant::now();
    let err = remote.scores(batch_tensor(&x, [1, 28, 28], &cpu()));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the timeout did not fire"
    );
    let (at, reason) = remote_error(err);
    assert_eq!(at, url);
    assert!(reason.contains("timeout"), "{reason}");
}

#[test]
fn garbage_json_wrong_shapes_and_error_statuses_are_named() {
    let (x, _) = images(3);
    let batch = || batch_tensor(&x, [1, 28, 28], &cpu());
    let cases: [(Mode, &[&str]); 3] = [
        (Mode::Garbage, &["malformed JSON"]),
        (Mode::WrongShape, &["shape [3, 5]", "expected [3, 10]"]),
        (Mode::Status(500), &["500", "the model crashed"]),
    ];
    for (mode, words) in cases {
        let url = serve(mode);
        let remote = RemoteScorer::connect(&url, RemoteOptions::default()).unwrap();
        let (at, reason) = remote_error(remote.scores(batch()));
        assert_eq!(at, url, "{mode:?}");
        for w in words {
            assert!(reason.contains(w), "{mode:?}: {reason:?} lacks {w:?}");
        }
        let shown = AttackError::Remote { url: at, reason }.to_string();
        assert!(shown.contains(&url), "{shown}");
    }
}

#[test]
fn refused_connections_and_unknown_models_fail_at_connect() {
    // A port that was free a moment ago and has no listener now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}/v2/models/cnn/infer");
    let (at, reason) = remote_error(RemoteScorer::connect(&target, RemoteOptions::default()));
    assert_eq!(at, format!("http://127.0.0.1:{port}/v2/models/cnn"));
    assert!(reason.contains("connection refused"), "{reason}");

    let url = serve(Mode::Serve).replace("/cnn/", "/nope/");
    let (_, reason) = remote_error(RemoteScorer::connect(&url, RemoteOptions::default()));
    assert!(reason.contains("404"), "{reason}");
}
