//! A [`Scorer`] for a model served over the Open Inference Protocol v2 (the REST protocol
//! of KServe, Triton and `nnguard serve`), so black-box attacks can query a deployed model.
//!
//! [`RemoteScorer::connect`] takes the inference URL (`http://HOST:PORT/v2/models/NAME/infer`),
//! reads the model metadata from `GET /v2/models/NAME` (input name and shape, output name
//! and number of classes) and then sends `POST .../infer` requests of at most
//! [`RemoteOptions::max_batch`] images, no faster than [`RemoteOptions::rate_limit`]
//! requests per second. Every failure (timeout, refused connection, non-2xx status,
//! malformed JSON, an answer of the wrong shape) is an [`AttackError::Remote`] naming the
//! URL and what was wrong. Plain HTTP only: put a TLS-terminating proxy in front of a
//! model served over HTTPS.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nnguard_model::tensor::{Tensor, TensorData, to_vec};
use serde::{Deserialize, Serialize};

use crate::AttackError;
use crate::oracle::Scorer;

/// Largest answer read from the server, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Most characters of a server's error body quoted in an error message.
const MAX_QUOTED_CHARS: usize = 200;

/// How to talk to a remote model.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// Longest one request may take, connecting and reading the answer included.
    pub timeout: Duration,
    /// Requests per second at most (a token bucket); `None` for no limit.
    pub rate_limit: Option<f64>,
    /// Requests that may go out back to back before the rate applies (the bucket's size).
    pub burst: u32,
    /// Images per request at most; larger batches are split.
    pub max_batch: usize,
    /// Valid input range; the protocol's metadata does not say, so it is an option.
    pub bounds: (f32, f32),
}

impl Default for RemoteOptions {
    /// 30 s timeout, no rate limit, bursts of 1, 64 images per request, inputs in [0, 1].
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            rate_limit: None,
            burst: 1,
            max_batch: 64,
            bounds: (0.0, 1.0),
        }
    }
}

impl RemoteOptions {
    /// Checks the options, naming the flag of the first invalid one.
    pub fn validate(&self) -> Result<(), AttackError> {
        if self.timeout.is_zero() {
            return Err(AttackError::config("--timeout", "must be longer than 0 s"));
        }
        if let Some(r) = self.rate_limit
            && !(r.is_finite() && r > 0.0)
        {
            return Err(AttackError::config(
                "--rate-limit",
                format!("must be a positive number of requests per second, got {r}"),
            ));
        }
        AttackError::at_least_one("--burst", self.burst as u64)?;
        AttackError::at_least_one("--batch", self.max_batch as u64)?;
        if self.bounds.0.partial_cmp(&self.bounds.1) != Some(std::cmp::Ordering::Less) {
            return Err(AttackError::config(
                "--bounds",
                format!("{:?} is empty", self.bounds),
            ));
        }
        Ok(())
    }
}

/// A token bucket: `burst` requests may go at once, then one every `1/rate` seconds.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, sleeping until it is due. A token is reserved before the sleep, so
    /// concurrent callers queue up instead of all waking at once.
    pub fn acquire(&self) {
        let wait = match self.state.lock() {
            Ok(mut s) => {
                let now = Instant::now();
                let (tokens, last) = *s;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate)
                    .min(self.burst)
                    - 1.0;
                *s = (tokens, now);
                if tokens < 0.0 {
                    Duration::from_secs_f64(-tokens / self.rate)
                } else {
                    Duration::ZERO
                }
            }
            // A panic elsewhere poisoned the bucket: fall back to the plain interval.
            Err(_) => Duration::from_secs_f64(1.0 / self.rate),
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// A model behind an Open Inference Protocol v2 endpoint.
#[derive(Debug)]
pub struct RemoteScorer {
    agent: ureq::Agent,
    infer_url: String,
    input_name: String,
    output_name: String,
    input_shape: [usize; 3],
    num_classes: usize,
    options: RemoteOptions,
    limiter: Option<RateLimiter>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct ModelMetadata {
    #[serde(default)]
    inputs: Vec<TensorMetadata>,
    #[serde(default)]
    outputs: Vec<TensorMetadata>,
}

#[derive(Deserialize)]
struct TensorMetadata {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

#[derive(Serialize)]
struct InferRequest<'a> {
    inputs: [InputTensor<'a>; 1],
}

#[derive(Serialize)]
struct InputTensor<'a> {
    name: &'a str,
    shape: [usize; 4],
    datatype: &'static str,
    data: &'a [f32],
}

#[derive(Deserialize)]
struct InferResponse {
    outputs: Vec<OutputTensor>,
}

#[derive(Deserialize)]
struct OutputTensor {
    name: String,
    shape: Vec<i64>,
    #[serde(default)]
    datatype: Option<String>,
    data: serde_json::Value,
}

/// Splits `http://HOST:PORT/v2/models/NAME[/versions/V][/infer]` into the inference URL
/// and the model-metadata URL.
fn parse_target(target: &str) -> Result<(String, String), AttackError> {
    let bad = |why: &str| {
        AttackError::config(
            "--target",
            format!("{target:?}: {why}; expected http://HOST:PORT/v2/models/NAME/infer"),
        )
    };
    let t = target.trim();
    if t.starts_with("https://") {
        return Err(bad(
            "HTTPS is not supported; reach the model over plain HTTP (for example through a TLS-terminating proxy on this host)",
        ));
    }
    let rest = t
        .strip_prefix("http://")
        .ok_or_else(|| bad("not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no model path"))?;
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return Err(bad("invalid host"));
    }
    let path = path.trim_end_matches('/');
    let model = path.strip_suffix("/infer").unwrap_or(path);
    let parts: Vec<&str> = model.split('/').collect();
    let well_formed = match parts.as_slice() {
        ["v2", "models", name] => !name.is_empty(),
        ["v2", "models", name, "versions", v] => !name.is_empty() && !v.is_empty(),
        _ => false,
    };
    if !well_formed || model.contains(['?', '#', ' ']) {
        return Err(bad("the path is not /v2/models/NAME/infer"));
    }
    let model_url = format!("http://{authority}/{model}");
    Ok((format!("{model_url}/infer"), model_url))
}

/// Appends every number of a (possibly nested) JSON array to `out`.
fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        serde_json::Value::Number(x) => {
            out.push(x.as_f64().ok_or("a number out of range")? as f32);
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        other => Err(format!("data holds a non-number ({other})")),
    }
}

/// A fixed, positive dimension of a shape from the metadata.
fn dim(v: i64) -> Option<usize> {
    usize::try_from(v).ok().filter(|&d| d > 0)
}

impl RemoteScorer {
    /// Connects to the model at `target` (`http://HOST:PORT/v2/models/NAME/infer`) and
    /// reads its metadata.
    pub fn connect(target: &str, options: RemoteOptions) -> Result<Self, AttackError> {
        options.validate()?;
        let (infer_url, model_url) = parse_target(target)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let remote = |reason: String| AttackError::Remote {
            url: model_url.clone(),
            reason,
        };
        let body = {
            let mut resp = agent
                .get(&model_url)
                .call()
                .map_err(|e| transport(&model_url, options.timeout, e))?;
            let status = resp.status();
            let body = read_body(&mut resp, &model_url, options.timeout)?;
            if !status.is_success() {
                return Err(remote(status_reason(status, &body)));
            }
            body
        };
        let meta: ModelMetadata = serde_json::from_slice(&body)
            .map_err(|e| remote(format!("malformed model metadata JSON: {e}")))?;
        let [input] = meta.inputs.as_slice() else {
            return Err(remote(format!(
                "the model has {} inputs; attacks need a model with one image input",
                meta.inputs.len()
            )));
        };
        if input.datatype != "FP32" {
            return Err(remote(format!(
                "input {:?} has datatype {}; attacks send FP32",
                input.name, input.datatype
            )));
        }
        let chw = match input.shape.as_slice() {
            [_, c, h, w] | [c, h, w] => [dim(*c), dim(*h), dim(*w)],
            _ => [None; 3],
        };
        let [Some(c), Some(h), Some(w)] = chw else {
            return Err(remote(format!(
                "input {:?} has shape {:?}; expected [batch, C, H, W] with fixed C, H, W",
                input.name, input.shape
            )));
        };
        let Some(output) = meta.outputs.first() else {
            return Err(remote("the model metadata lists no output".into()));
        };
        let classes = match output.shape.as_slice() {
            [_, k] | [k] => dim(*k).filter(|&k| k >= 2),
            _ => None,
        };
        let Some(num_classes) = classes else {
            return Err(remote(format!(
                "output {:?} has shape {:?}; expected [batch, classes] with at least 2 fixed classes",
                output.name, output.shape
            )));
        };
        Ok(Self {
            agent,
            infer_url,
            input_name: input.name.clone(),
            output_name: output.name.clone(),
            input_shape: [c, h, w],
            num_classes,
            limiter: options
                .rate_limit
                .map(|r| RateLimiter::new(r, options.burst)),
            options,
            requests: AtomicU64::new(0),
        })
    }

    /// The inference URL requests go to.
    pub fn url(&self) -> &str {
        &self.infer_url
    }

    /// The model's input tensor name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The output tensor read as scores.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// Inference requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn error(&self, reason: impl Into<String>) -> AttackError {
        AttackError::Remote {
            url: self.infer_url.clone(),
            reason: reason.into(),
        }
    }

    /// Scores of `b` images stored contiguously in `pixels`, in one request.
    fn infer(&self, pixels: &[f32], b: usize) -> Result<Vec<f32>, AttackError> {
        let [c, h, w] = self.input_shape;
        let request = InferRequest {
            inputs: [InputTensor {
                name: &self.input_name,
                shape: [b, c, h, w],
                datatype: "FP32",
                data: pixels,
            }],
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| self.error(format!("cannot encode the request: {e}")))?;
        if let Some(l) = &self.limiter {
            l.acquire();
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut resp = self
            .agent
            .post(&self.infer_url)
            .header("content-type", "application/json")
            .send(&body[..])
            .map_err(|e| transport(&self.infer_url, self.options.timeout, e))?;
        let status = resp.status();
        let text = read_body(&mut resp, &self.infer_url, self.options.timeout)?;
        if !status.is_success() {
            return Err(self.error(status_reason(status, &text)));
        }
        let answer: InferResponse = serde_json::from_slice(&text)
            .map_err(|e| self.error(format!("malformed JSON in the answer: {e}")))?;
        let output = match answer.outputs.as_slice() {
            [only] => only,
            many => many
                .iter()
                .find(|o| o.name == self.output_name)
                .ok_or_else(|| {
                    self.error(format!(
                        "the answer has no output {:?} (outputs: {:?})",
                        self.output_name,
                        many.iter().map(|o| o.name.as_str()).collect::<Vec<_>>()
                    ))
                })?,
        };
        if let Some(t) = &output.datatype
            && matches!(t.as_str(), "BYTES" | "BOOL")
        {
            return Err(self.error(format!(
                "output {:?} has datatype {t}; expected numeric scores",
                output.name
            )));
        }
        let k = self.num_classes;
        if output.shape != [b as i64, k as i64] {
            return Err(self.error(format!(
                "output {:?} has shape {:?}; expected [{b}, {k}] for {b} images",
                output.name, output.shape
            )));
        }
        let mut values = Vec::with_capacity(b * k);
        flatten(&output.data, &mut values)
            .map_err(|e| self.error(format!("output {:?}: {e}", output.name)))?;
        if values.len() != b * k {
            return Err(self.error(format!(
                "output {:?} has {} values; shape [{b}, {k}] needs {}",
                output.name,
                values.len(),
                b * k
            )));
        }
        Ok(values)
    }
}

impl Scorer for RemoteScorer {
    fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn bounds(&self) -> (f32, f32) {
        self.options.bounds
    }

    fn scores(&self, x: Tensor<4>) -> Result<Tensor<2>, AttackError> {
        let dims = x.dims();
        let device = x.device();
        if dims[1..] != self.input_shape {
            return Err(self.error(format!(
                "a batch of shape {dims:?} was given; the model takes [batch, {}, {}, {}]",
                self.input_shape[0], self.input_shape[1], self.input_shape[2]
            )));
        }
        let pixels = to_vec(x);
        if pixels.iter().any(|v| !v.is_finite()) {
            return Err(
                self.error("the batch holds NaN or infinite values, which JSON cannot carry")
            );
        }
        let n = self.input_shape.iter().product::<usize>();
        let mut scores = Vec::with_capacity(dims[0] * self.num_classes);
        for chunk in pixels.chunks(self.options.max_batch * n) {
            scores.extend(self.infer(chunk, chunk.len() / n)?);
        }
        Ok(Tensor::from_data(
            TensorData::new(scores, [dims[0], self.num_classes]),
            &device,
        ))
    }
}

/// Reads an answer's body, at most [`MAX_RESPONSE_BYTES`].
fn read_body(
    resp: &mut ureq::http::Response<ureq::Body>,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, AttackError> {
    resp.body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| transport(url, timeout, e))
}

/// A non-2xx status with the start of the server's explanation.
fn status_reason(status: ureq::http::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    let more = if text.chars().count() > MAX_QUOTED_CHARS {
        "…"
    } else {
        ""
    };
    let reason = status.canonical_reason().unwrap_or("");
    if quoted.is_empty() {
        format!("HTTP status {} {reason}", status.as_u16())
    } else {
        format!("HTTP status {} {reason}: {quoted}{more}", status.as_u16())
    }
}

/// A transport failure as an [`AttackError::Remote`] saying what happened.
fn transport(url: &str, timeout: Duration, e: ureq::Error) -> AttackError {
    use std::io::ErrorKind;
    let reason = match &e {
        ureq::Error::Timeout(_) => {
            format!("no answer within the timeout of {timeout:?} ({e})")
        }
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            "connection refused: is the server running and listening on this address?".into()
        }
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            format!("no answer within the timeout of {timeout:?} ({io})")
        }
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "could not connect".into(),
        ureq::Error::BodyExceedsLimit(_) => {
            format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        }
        other => format!("request failed: {other}"),
    };
    AttackError::Remote {
        url: url.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_into_infer_and_metadata_urls() {
        let (infer, meta) = parse_target("http://127.0.0.1:8000/v2/models/cnn/infer").unwrap();
        assert_eq!(infer, "http://127.0.0.1:8000/v2/models/cnn/infer");
        assert_eq!(meta, "http://127.0.0.1:8000/v2/models/cnn");
        let (infer, _) = parse_target("http://h:1/v2/models/cnn/versions/3/").unwrap();
        assert_eq!(infer, "http://h:1/v2/models/cnn/versions/3/infer");
        for bad in [
            "https://h/v2/models/cnn/infer",
            "ftp://h/v2/models/cnn/infer",
            "http://h:1",
            "http://h:1/v1/models/cnn:predict",
            "http:///v2/models/cnn/infer",
            "http://h/v2/models//infer",
        ] {
            match parse_target(bad) {
                Err(AttackError::InvalidConfig { flag, .. }) => assert_eq!(flag, "--target"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_options_name_their_flag() {
        let d = RemoteOptions::default();
        let cases = [
            (
                RemoteOptions {
                    rate_limit: Some(0.0),
                    ..d.clone()
                },
                "--rate-limit",
            ),
            (
                RemoteOptions {
                    timeout: Duration::ZERO,
                    ..d.clone()
                },
                "--timeout",
            ),
            (
                RemoteOptions {
                    max_batch: 0,
                    ..d.clone()
                },
                "--batch",
            ),
            (RemoteOptions { burst: 0, ..d }, "--burst"),
        ];
        for (o, want) in cases {
            match o.validate() {
                Err(AttackError::InvalidConfig { flag, .. }) => assert_eq!(flag, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn nested_and_flat_data_flatten_alike() {
        let mut a = Vec::new();
        flatten(&serde_json::json!([[1.0, 2.5], [3, -4]]), &mut a).unwrap();
        assert_eq!(a, vec![1.0, 2.5, 3.0, -4.0]);
        assert!(flatten(&serde_json::json!([1.0, "x"]), &mut Vec::new()).is_err());
    }

    #[test]
    fn the_bucket_spaces_requests_after_the_burst() {
        let l = RateLimiter::new(50.0, 2);
        let t = Instant::now();
        for _ in 0..6 {
            l.acquire();
        }
        // Two at once, then four at 20 ms each.
        assert!(
            t.elapsed() >= Duration::from_millis(78),
            "{:?}",
            t.elapsed()
        );
    }
}
