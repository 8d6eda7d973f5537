//! The evaluation harness: attacks an ensemble on a data set batch by batch, judges every
//! result itself, gathers the checks' evidence and writes the report.
//!
//! Per batch: the clean predictions and the pre-attack checks (outputs, randomness,
//! gradients); then, for every ε, each attack of the ensemble on the inputs still robust
//! (white-box attacks first, black-box attacks on what they leave), so the result is the
//! per-input worst case; then the diagnostic runs the checks need (FGSM, a longer run of the
//! first iterative attack, an unbounded attack, repeated predictions for randomised models).
//! Every attack result is re-queried and checked against the ε-ball and the input range by
//! the harness, never taken from the attack.

use std::sync::Arc;
use std::time::Instant;

use nnguard_attack::evasion::{
    AnyAttack, AttackParams, Inputs, ScorerOf, run_black_box, run_white_box,
};
use nnguard_attack::{Norm, Scorer, Threat};
use nnguard_model::tensor::{Device, argmax_rows, batch_tensor, cpu, to_vec};
use nnguard_model::{Differentiable, Loss};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::EvalError;
use crate::adapt::{Eot, LogProbabilities, Spsa};
use crate::checks::Evidence;
use crate::images::{perturbation_base64, png_base64};
use crate::plan::{AttackSpec, is_registered};
use crate::report::{
    AttackInfo, AttackStats, EpsRecord, Example, InputRecord, Report, SCHEMA, Settings, Summary,
    Timings,
};
use crate::shard::Shard;

/// What is evaluated: a model with gradients, or a query-only scorer (a remote target).
#[derive(Clone)]
pub enum Subject {
    /// White-box and black-box attacks apply.
    WhiteBox(Arc<dyn Differentiable>),
    /// Only black-box attacks apply.
    BlackBox(Arc<dyn Scorer>),
}

impl Subject {
    fn shape(&self) -> [usize; 3] {
        match self {
            Subject::WhiteBox(m) => m.input_shape(),
            Subject::BlackBox(s) => s.input_shape(),
        }
    }
    fn classes(&self) -> usize {
        match self {
            Subject::WhiteBox(m) => m.num_classes(),
            Subject::BlackBox(s) => s.num_classes(),
        }
    }
    fn bounds(&self) -> (f32, f32) {
        match self {
            Subject::WhiteBox(m) => m.bounds(),
            Subject::BlackBox(s) => s.bounds(),
        }
    }
    fn device(&self) -> Device {
        match self {
            Subject::WhiteBox(m) => m.device().clone(),
            Subject::BlackBox(_) => cpu(),
        }
    }
    /// Whether gradients are available.
    pub fn is_white_box(&self) -> bool {
        matches!(self, Subject::WhiteBox(_))
    }
}

/// Settings of an evaluation; the defaults are what `nnguard eval` uses.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Norm of the threat model.
    pub norm: Norm,
    /// Radii to evaluate (sorted and deduplicated; the largest is the headline).
    pub eps: Vec<f32>,
    /// The ensemble, in order (white-box attacks run before black-box ones).
    pub attacks: Vec<AttackSpec>,
    /// `--steps` for every attack (`None`: each attack's default).
    pub steps: Option<usize>,
    /// `--step` for every attack.
    pub step: Option<f32>,
    /// `--restarts` for every attack.
    pub restarts: Option<usize>,
    /// `--queries`: per-input budget of black-box attacks.
    pub queries: Option<u64>,
    /// `--loss` for the attacks that take one (`None`: each attack's own).
    pub loss: Option<Loss>,
    /// Inputs per batch.
    pub batch_size: usize,
    /// Base seed; every batch, ε and attack derive their own.
    pub seed: u64,
    /// Passes averaged by EOT when the model is randomised.
    pub eot_samples: usize,
    /// Repeated predictions per input when the model is randomised.
    pub repeats: usize,
    /// Antithetic direction pairs per SPSA gradient estimate.
    pub spsa_pairs: usize,
    /// Inputs per batch the pre-attack checks look at.
    pub preflight_rows: usize,
    /// Inputs per batch attacked with an unbounded ε.
    pub unbounded_rows: usize,
    /// Robust inputs per batch attacked again by the convergence check.
    pub convergence_rows: usize,
    /// Adversarial examples kept for the HTML page.
    pub examples: usize,
    /// Keep the adversarial images of the headline ε in [`Report::adversarials`].
    pub keep_adversarials: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: vec![8.0 / 255.0],
            attacks: Vec::new(),
            steps: None,
            step: None,
            restarts: None,
            queries: None,
            loss: None,
            batch_size: 250,
            seed: 0,
            eot_samples: 8,
            repeats: 5,
            spsa_pairs: 16,
            preflight_rows: 32,
            unbounded_rows: 8,
            convergence_rows: 64,
            examples: 8,
            keep_adversarials: false,
        }
    }
}

impl EvalConfig {
    /// The attack parameters at radius `eps`.
    pub fn params(&self, eps: f32) -> AttackParams {
        AttackParams {
            norm: self.norm,
            eps,
            steps: self.steps,
            step: self.step,
            restarts: self.restarts,
            queries: self.queries,
            loss: self.loss,
            ..AttackParams::default()
        }
    }

    /// The radii sorted ascending and deduplicated, after checking them.
    pub fn sorted_eps(&self) -> Result<Vec<f32>, EvalError> {
        if self.eps.is_empty() {
            return Err(EvalError::config("--eps", "give at least one radius"));
        }
        if let Some(bad) = self.eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
            return Err(EvalError::config(
                "--eps",
                format!("must be finite and ≥ 0, got {bad}"),
            ));
        }
        let mut eps = self.eps.clone();
        eps.sort_by(f32::total_cmp);
        eps.dedup();
        Ok(eps)
    }
}

/// The inputs of an evaluation (one shard's, when sharded).
#[derive(Debug, Clone)]
pub struct EvalInputs<'a> {
    /// Images, NCHW, contiguous.
    pub images: &'a [f32],
    /// Their labels.
    pub labels: &'a [u32],
    /// Shape of one image.
    pub shape: [usize; 3],
    /// Index in the data set of the first image.
    pub first_index: usize,
    /// Inputs of the whole evaluation (all shards).
    pub total: usize,
    /// The shard these inputs are, if sharded.
    pub shard: Option<Shard>,
    /// Name of the model in the report.
    pub model: String,
    /// Name of the data set in the report.
    pub data: String,
    /// The user's own predictions or logits, to check the wrapped model against.
    pub reference: Option<&'a Reference>,
}

/// The user's clean predictions or logits, indexed like the data set.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// Predicted classes.
    pub predictions: Option<Vec<u32>>,
    /// Logits, `classes` per input.
    pub logits: Option<Vec<f32>>,
    /// Classes per row of `logits`.
    pub classes: usize,
}

/// Progress of an evaluation: batches done out of the total.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Inputs done.
    pub done: usize,
    /// Inputs in total.
    pub total: usize,
}

/// Whether an attack needs gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    White,
    Black,
}

/// What the batches share.
struct Ctx<'a> {
    subject: &'a Subject,
    inputs: &'a EvalInputs<'a>,
    config: &'a EvalConfig,
    eps: Vec<f32>,
    members: Vec<(AttackSpec, Kind)>,
    per: usize,
    classes: usize,
    bounds: (f32, f32),
    device: Device,
}

/// Runs the evaluation. On a failure part way (a remote target that stops answering), the
/// error is [`EvalError::Interrupted`] and holds the report of the batches finished.
pub fn evaluate(
    subject: &Subject,
    inputs: &EvalInputs<'_>,
    config: &EvalConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, EvalError> {
    let started = Instant::now();
    let eps = config.sorted_eps()?;
    if config.batch_size == 0 {
        return Err(EvalError::config("--batch-size", "must be at least 1"));
    }
    let shape = subject.shape();
    let per: usize = shape.iter().product();
    if inputs.shape != shape {
        return Err(EvalError::config(
            "--data",
            format!(
                "images are {:?} but the model expects {:?}",
                inputs.shape, shape
            ),
        ));
    }
    if inputs.images.len() != inputs.labels.len() * per {
        return Err(EvalError::config(
            "--data",
            format!(
                "{} labels for {} values of {per} per image",
                inputs.labels.len(),
                inputs.images.len()
            ),
        ));
    }
    let classes = subject.classes();
    if let Some(bad) = inputs.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(EvalError::config(
            "--data",
            format!("label {bad} but the model has only {classes} classes"),
        ));
    }
    let members = plan_members(subject, config, &eps)?;
    let ctx = Ctx {
        subject,
        inputs,
        config,
        eps,
        members,
        per,
        classes,
        bounds: subject.bounds(),
        device: subject.device(),
    };
    let mut report = empty_report(&ctx);
    let n = inputs.labels.len();
    let mut start = 0;
    while start < n {
        let end = (start + config.batch_size).min(n);
        match run_batch(&ctx, start, end) {
            Ok(b) => absorb(&mut report, b, config.examples),
            Err(e) => {
                report.complete = false;
                report.stopped = Some(e.to_string());
                report.timings.total_seconds = started.elapsed().as_secs_f64();
                report.finalize();
                return Err(EvalError::Interrupted {
                    source: Box::new(e),
                    done: start,
                    total: n,
                    partial: Box::new(report),
                });
            }
        }
        start = end;
        progress(Progress {
            done: end,
            total: n,
        });
    }
    report.timings.total_seconds = started.elapsed().as_secs_f64();
    report.finalize();
    Ok(report)
}

/// Orders the ensemble (white-box first) and builds every attack at every ε once, so that
/// invalid parameters are rejected, by flag, before any work.
fn plan_members(
    subject: &Subject,
    config: &EvalConfig,
    eps: &[f32],
) -> Result<Vec<(AttackSpec, Kind)>, EvalError> {
    if config.attacks.is_empty() {
        return Err(EvalError::config(
            "--attacks",
            if subject.is_white_box() {
                "no attack to run".to_string()
            } else {
                "no black-box attack is available for a query-only target".to_string()
            },
        ));
    }
    let mut members = Vec::new();
    for spec in &config.attacks {
        let mut kind = None;
        for &e in eps {
            let params = AttackParams {
                classes: Some(subject.classes()),
                ..config.params(e)
            };
            let k = match spec.build(&params)? {
                AnyAttack::WhiteBox(_) => Kind::White,
                AnyAttack::BlackBox { .. } => Kind::Black,
            };
            kind = Some(k);
        }
        let Some(kind) = kind else { continue };
        if kind == Kind::White && !subject.is_white_box() {
            return Err(EvalError::config(
                "--attacks",
                format!(
                    "{} needs gradients, which a query-only target does not give; use black-box attacks",
                    spec.name
                ),
            ));
        }
        members.push((spec.clone(), kind));
    }
    members.sort_by_key(|(_, k)| *k == Kind::Black);
    Ok(members)
}

fn empty_report(ctx: &Ctx<'_>) -> Report {
    let c = ctx.config;
    Report {
        schema: SCHEMA.into(),
        nnguard_version: env!("CARGO_PKG_VERSION").into(),
        model: ctx.inputs.model.clone(),
        data: ctx.inputs.data.clone(),
        norm: c.norm,
        eps: ctx.eps.clone(),
        bounds: ctx.bounds,
        attacks: ctx
            .members
            .iter()
            .map(|(s, k)| AttackInfo {
                name: s.name.clone(),
                role: s.role.clone(),
                stand_in: s.stand_in,
                kind: match k {
                    Kind::White => "white-box",
                    Kind::Black => "black-box",
                }
                .into(),
            })
            .collect(),
        settings: Settings {
            seed: c.seed,
            batch_size: c.batch_size,
            steps: c.steps,
            step: c.step,
            restarts: c.restarts,
            queries: c.queries,
            loss: c.loss,
            eot_samples: c.eot_samples,
            repeats: c.repeats,
        },
        total_inputs: ctx.inputs.total,
        shards: ctx.inputs.shard.into_iter().collect(),
        complete: true,
        stopped: None,
        summary: Summary::default(),
        checks: Vec::new(),
        attack_stats: Vec::new(),
        evidence: Evidence::new(ctx.eps.len()),
        timings: Timings::default(),
        examples: Vec::new(),
        inputs: Vec::new(),
        adversarials: c.keep_adversarials.then(Vec::new),
    }
}

/// One batch's results.
struct BatchOutcome {
    records: Vec<InputRecord>,
    stats: Vec<AttackStats>,
    evidence: Evidence,
    examples: Vec<Example>,
    timings: Timings,
    adversarials: Vec<f32>,
}

fn absorb(report: &mut Report, b: BatchOutcome, max_examples: usize) {
    report.inputs.extend(b.records);
    for s in b.stats {
        match report
            .attack_stats
            .iter_mut()
            .find(|o| o.attack == s.attack && o.eps_index == s.eps_index)
        {
            Some(o) => {
                o.attempted += s.attempted;
                o.successes += s.successes;
                o.queries += s.queries;
                o.seconds += s.seconds;
            }
            None => report.attack_stats.push(s),
        }
    }
    report.evidence.merge(&b.evidence);
    let room = max_examples.saturating_sub(report.examples.len());
    report.examples.extend(b.examples.into_iter().take(room));
    report.timings.preflight_seconds += b.timings.preflight_seconds;
    report.timings.attack_seconds += b.timings.attack_seconds;
    report.timings.check_seconds += b.timings.check_seconds;
    if let Some(a) = report.adversarials.as_mut() {
        a.extend(b.adversarials);
    }
}

/// A seed for one (batch, ε, attack) from the base seed (SplitMix64 finaliser).
fn derive_seed(base: u64, parts: &[u64]) -> u64 {
    let mut z = base;
    for &p in parts {
        z = z.wrapping_add(p.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// The harness's own verdict on one attack result.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    success: bool,
    predicted: u32,
    distance: f32,
    l2: f32,
    linf: f32,
}

/// What one attack run on some rows of a batch returns, after the harness's re-check.
struct RunOutcome {
    adv: Vec<f32>,
    verdicts: Vec<Verdict>,
    queries: Vec<u64>,
}

/// The per-batch models and scorers.
struct Models {
    /// The model attacks differentiate (after log-probabilities and EOT where needed).
    attack: Option<Arc<dyn Differentiable>>,
    /// The user's model as given.
    base: Option<Arc<dyn Differentiable>>,
    /// Query access for the remote case.
    remote: Option<Arc<dyn Scorer>>,
}

impl Models {
    /// Runs `f` with the scorer that judges results (the attacked model's outputs).
    fn with_judge<T>(&self, f: impl FnOnce(&dyn Scorer) -> T) -> T {
        match (&self.attack, &self.remote) {
            (Some(m), _) => f(&ScorerOf(m.as_ref())),
            (None, Some(r)) => f(r.as_ref()),
            (None, None) => f(&Nothing),
        }
    }
    /// Runs `f` with the unwrapped model's scorer.
    fn with_base<T>(&self, f: impl FnOnce(&dyn Scorer) -> T) -> T {
        match (&self.base, &self.remote) {
            (Some(m), _) => f(&ScorerOf(m.as_ref())),
            (None, Some(r)) => f(r.as_ref()),
            (None, None) => f(&Nothing),
        }
    }
}

/// A scorer that is never used (both arms of [`Subject`] give one).
struct Nothing;

impl Scorer for Nothing {
    fn input_shape(&self) -> [usize; 3] {
        [0, 0, 0]
    }
    fn num_classes(&self) -> usize {
        0
    }
    fn bounds(&self) -> (f32, f32) {
        (0.0, 1.0)
    }
    fn scores(
        &self,
        _x: nnguard_model::tensor::Tensor<4>,
    ) -> Result<nnguard_model::tensor::Tensor<2>, nnguard_attack::AttackError> {
        Err(nnguard_attack::AttackError::Unsupported {
            attack: "evaluation".into(),
            reason: "no model".into(),
        })
    }
}

impl Ctx<'_> {
    fn rows_host(&self, host: &[f32], rows: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.per);
        for &r in rows {
            out.extend_from_slice(&host[r * self.per..(r + 1) * self.per]);
        }
        out
    }

    fn predict(&self, scorer: &dyn Scorer, host: &[f32]) -> Result<Vec<u32>, EvalError> {
        let x = batch_tensor(host, self.inputs.shape, &self.device);
        Ok(argmax_rows(&to_vec(scorer.scores(x)?), self.classes))
    }

    /// Re-queries `judge` on `adv` and checks each row against `threat`.
    fn verify(
        &self,
        judge: &dyn Scorer,
        x0: &[f32],
        adv: &[f32],
        labels: &[u32],
        threat: &Threat,
        ev: &mut Evidence,
    ) -> Result<Vec<Verdict>, EvalError> {
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        let predicted = self.predict(judge, adv)?;
        let (lo, hi) = self.bounds;
        let mut out = Vec::with_capacity(labels.len());
        for (i, &y) in labels.iter().enumerate() {
            let a = &adv[i * self.per..(i + 1) * self.per];
            let delta: Vec<f32> = a
                .iter()
                .zip(&x0[i * self.per..(i + 1) * self.per])
                .map(|(p, q)| p - q)
                .collect();
            let non_finite = a.iter().any(|v| !v.is_finite());
            let out_of_range = a.iter().any(|&v| v < lo - 1e-6 || v > hi + 1e-6);
            let distance = threat.norm.of_rows(&delta, self.per)[0];
            let outside = threat
                .eps
                .is_some_and(|e| distance.is_nan() || distance > e * (1.0 + 1e-6) + 1e-6);
            ev.integrity.checked += 1;
            ev.integrity.non_finite += u64::from(non_finite);
            ev.integrity.outside_bounds += u64::from(out_of_range && !non_finite);
            ev.integrity.outside_ball += u64::from(outside && !non_finite);
            let valid = !(non_finite || out_of_range || outside);
            out.push(Verdict {
                success: valid && predicted[i] != y,
                predicted: predicted[i],
                distance,
                l2: Norm::L2.of_rows(&delta, self.per)[0],
                linf: Norm::Linf.of_rows(&delta, self.per)[0],
            });
        }
        Ok(out)
    }

    /// Runs `attack` on `rows` of the batch and re-checks every result.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        attack: AnyAttack,
        name: &str,
        model: Option<&Arc<dyn Differentiable>>,
        models: &Models,
        x_host: &[f32],
        labels: &[u32],
        rows: &[usize],
        threat: Threat,
        seed: u64,
        ev: &mut Evidence,
    ) -> Result<RunOutcome, EvalError> {
        if rows.is_empty() {
            return Ok(RunOutcome {
                adv: Vec::new(),
                verdicts: Vec::new(),
                queries: Vec::new(),
            });
        }
        let x0 = self.rows_host(x_host, rows);
        let y: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
        let x = batch_tensor(&x0, self.inputs.shape, &self.device);
        let inputs = Inputs {
            x,
            labels: &y,
            targets: None,
        };
        let (result, queries) = match attack {
            AnyAttack::WhiteBox(a) => {
                let m = model.or(models.attack.as_ref()).ok_or_else(|| {
                    EvalError::config("--attacks", format!("{name} needs gradients"))
                })?;
                let r = run_white_box(m.as_ref(), a.as_ref(), threat, inputs, seed)?;
                (r, vec![0; rows.len()])
            }
            AnyAttack::BlackBox {
                attack,
                budget,
                reveal,
            } => models.with_judge(|judge| {
                run_black_box(judge, attack.as_ref(), threat, inputs, budget, reveal, seed)
            })?,
        };
        if !result.not_reproduced.is_empty() {
            ev.integrity.not_reproduced += result.not_reproduced.len() as u64;
            ev.integrity.blame(name);
        }
        let before = ev.integrity.violations();
        let verdicts =
            models.with_judge(|judge| self.verify(judge, &x0, &result.x_adv, &y, &threat, ev))?;
        if ev.integrity.violations() > before {
            ev.integrity.blame(name);
        }
        Ok(RunOutcome {
            adv: result.x_adv,
            verdicts,
            queries,
        })
    }
}

/// The record of a broken input.
fn broken(name: &str, v: &Verdict, queries: u64) -> EpsRecord {
    EpsRecord {
        broken_by: Some(name.to_string()),
        predicted: v.predicted,
        distance: v.distance,
        l2: v.l2,
        linf: v.linf,
        queries,
    }
}

fn stat(
    name: &str,
    ei: usize,
    attempted: usize,
    successes: usize,
    queries: u64,
    t: Instant,
) -> AttackStats {
    AttackStats {
        attack: name.to_string(),
        eps_index: ei,
        attempted: attempted as u64,
        successes: successes as u64,
        queries,
        seconds: t.elapsed().as_secs_f64(),
    }
}

fn run_batch(ctx: &Ctx<'_>, start: usize, end: usize) -> Result<BatchOutcome, EvalError> {
    let cfg = ctx.config;
    let per = ctx.per;
    let b = end - start;
    let x_host = &ctx.inputs.images[start * per..end * per];
    let labels = &ctx.inputs.labels[start..end];
    let global0 = ctx.inputs.first_index + start;
    let batch_seed = derive_seed(cfg.seed, &[global0 as u64]);
    let mut rng = ChaCha8Rng::seed_from_u64(batch_seed);
    let mut ev = Evidence::new(ctx.eps.len());
    let mut timings = Timings::default();
    let mut stats = Vec::new();

    // Pre-attack checks on the model as given.
    let t = Instant::now();
    let (base, remote) = match ctx.subject {
        Subject::WhiteBox(m) => (Some(m.clone()), None),
        Subject::BlackBox(s) => (None, Some(s.clone())),
    };
    let plain = Models {
        attack: base.clone(),
        base: base.clone(),
        remote: remote.clone(),
    };
    let sample = cfg.preflight_rows.clamp(1, b);
    let xs = batch_tensor(&x_host[..sample * per], ctx.inputs.shape, &ctx.device);
    let (o1, o2) = plain.with_base(|s| -> Result<_, EvalError> {
        Ok((to_vec(s.scores(xs.clone())?), to_vec(s.scores(xs.clone())?)))
    })?;
    ev.outputs.observe(&o1, ctx.classes);
    ev.randomness.observe(&o1, &o2, ctx.classes);
    let probabilities = ev.outputs.is_probabilities();
    let random = ev.randomness.is_random();
    if random {
        ev.randomness.eot_samples = cfg.eot_samples;
        ev.randomness.repeats = cfg.repeats;
    }
    let attack_model: Option<Arc<dyn Differentiable>> = base.as_ref().map(|m| {
        let mut m = m.clone();
        if probabilities {
            m = Arc::new(LogProbabilities(m));
        }
        if random {
            m = Arc::new(Eot::new(m, cfg.eot_samples));
        }
        m
    });
    let models = Models {
        attack: attack_model.clone(),
        base: base.clone(),
        remote,
    };
    let clean = models.with_judge(|j| ctx.predict(j, x_host))?;
    let correct: Vec<usize> = (0..b).filter(|&i| clean[i] == labels[i]).collect();
    if let Some(reference) = ctx.inputs.reference {
        if let Some(p) = &reference.predictions {
            for (i, &ours) in clean.iter().enumerate() {
                if let Some(&theirs) = p.get(global0 + i) {
                    ev.reproduction
                        .compare_prediction(global0 + i, ours, theirs);
                }
            }
        }
        if let Some(l) = &reference.logits {
            let k = reference.classes.max(1);
            let ours = models.with_base(|s| {
                s.scores(batch_tensor(x_host, ctx.inputs.shape, &ctx.device))
                    .map(to_vec)
            })?;
            for i in 0..b {
                if let Some(theirs) = l.get((global0 + i) * k..(global0 + i + 1) * k) {
                    ev.reproduction
                        .compare_logits(&ours[i * ctx.classes..(i + 1) * ctx.classes], theirs);
                }
            }
        }
    }
    let headline = ctx.eps.len() - 1;
    let headline_eps = ctx.eps[headline];
    if let Some(m) = &base {
        let rows: Vec<usize> = correct.iter().copied().filter(|&r| r < sample).collect();
        if !rows.is_empty() {
            let xg = batch_tensor(&ctx.rows_host(x_host, &rows), ctx.inputs.shape, &ctx.device);
            let yg: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            let probe = headline_eps.clamp(0.01, 0.1) * (ctx.bounds.1 - ctx.bounds.0);
            ev.gradients.observe(m.as_ref(), xg, &yg, probe, &mut rng);
        }
    }
    let obfuscated = ev.gradients.obfuscated();
    timings.preflight_seconds = t.elapsed().as_secs_f64();

    let mut eps_records: Vec<Vec<EpsRecord>> = Vec::with_capacity(ctx.eps.len());
    let mut examples = Vec::new();
    let mut adversarials = Vec::new();
    for (ei, &eps) in ctx.eps.iter().enumerate() {
        let threat = Threat {
            norm: cfg.norm,
            eps: Some(eps),
            bounds: ctx.bounds,
        };
        let params = cfg.params(eps);
        let mut rec: Vec<EpsRecord> = (0..b)
            .map(|i| EpsRecord {
                broken_by: None,
                predicted: clean[i],
                distance: 0.0,
                l2: 0.0,
                linf: 0.0,
                queries: 0,
            })
            .collect();
        let mut adv_host = x_host.to_vec();
        let mut active = correct.clone();
        let mut white_ran = false;
        let mut survivors_after_white: Option<usize> = None;
        let mut black_successes = 0usize;
        let t_attacks = Instant::now();
        for (mi, (spec, kind)) in ctx.members.iter().enumerate() {
            if *kind == Kind::Black && survivors_after_white.is_none() {
                survivors_after_white = Some(active.len());
            }
            white_ran |= *kind == Kind::White;
            let t = Instant::now();
            let seed = derive_seed(batch_seed, &[ei as u64, mi as u64]);
            let out = ctx.run(
                spec.build(&params)?,
                &spec.name,
                None,
                &models,
                x_host,
                labels,
                &active,
                threat,
                seed,
                &mut ev,
            )?;
            let n = apply(&mut rec, &mut adv_host, &mut active, &out, &spec.name, per);
            if *kind == Kind::Black {
                black_successes += n;
            }
            stats.push(stat(
                &spec.name,
                ei,
                out.verdicts.len(),
                n,
                out.queries.iter().sum(),
                t,
            ));
        }
        if obfuscated && is_registered("pgd") && !active.is_empty() {
            let t = Instant::now();
            let m = attack_model.as_ref().map(|m| {
                Arc::new(Spsa::new(
                    m.clone(),
                    cfg.spsa_pairs,
                    0.05 * (ctx.bounds.1 - ctx.bounds.0),
                    derive_seed(batch_seed, &[ei as u64, 1000]),
                )) as Arc<dyn Differentiable>
            });
            let name = "spsa-pgd";
            let out = ctx.run(
                nnguard_attack::evasion::build("pgd", &params)?,
                name,
                m.as_ref(),
                &models,
                x_host,
                labels,
                &active,
                threat,
                derive_seed(batch_seed, &[ei as u64, 1001]),
                &mut ev,
            )?;
            let n = apply(&mut rec, &mut adv_host, &mut active, &out, name, per);
            stats.push(stat(name, ei, out.verdicts.len(), n, 0, t));
        }
        timings.attack_seconds += t_attacks.elapsed().as_secs_f64();
        let t_checks = Instant::now();
        ev.black_box[ei] = crate::checks::black_box::BlackBoxEvidence {
            correct: correct.len() as u64,
            white_box_survivors: survivors_after_white.unwrap_or(0) as u64,
            black_box_successes: black_successes as u64,
            compared: white_ran && survivors_after_white.is_some(),
        };
        let iterative = ctx
            .members
            .iter()
            .find(|(s, k)| *k == Kind::White && s.role != "fgsm" && s.name != "fgsm");
        if attack_model.is_some() && is_registered("fgsm") && iterative.is_some() {
            let t = Instant::now();
            let out = ctx.run(
                nnguard_attack::evasion::build("fgsm", &params)?,
                "fgsm",
                None,
                &models,
                x_host,
                labels,
                &correct,
                threat,
                derive_seed(batch_seed, &[ei as u64, 2000]),
                &mut ev,
            )?;
            let successes = out.verdicts.iter().filter(|v| v.success).count();
            let (rows, sub) = out_for(&out, &correct, &active);
            let only = apply_rows(
                &mut rec,
                &mut adv_host,
                &mut active,
                &rows,
                &sub,
                "fgsm",
                per,
            );
            ev.single_step[ei] = crate::checks::single_step::SingleStepEvidence {
                correct: correct.len() as u64,
                fgsm_successes: successes as u64,
                fgsm_only: only as u64,
                compared: true,
            };
            stats.push(stat("fgsm", ei, out.verdicts.len(), only, 0, t));
        }
        if ei == headline
            && let (Some(_), Some((spec, _))) = (&attack_model, iterative)
        {
            let t = Instant::now();
            let rows: Vec<usize> = active.iter().copied().take(cfg.convergence_rows).collect();
            let mut longer = params.clone();
            longer.restarts = Some(cfg.restarts.unwrap_or(1) + 2);
            longer.steps = cfg.steps.map(|s| 2 * s);
            let name = format!("{}+restarts", spec.name);
            let out = ctx.run(
                spec.build(&longer)?,
                &name,
                None,
                &models,
                x_host,
                labels,
                &rows,
                threat,
                derive_seed(batch_seed, &[ei as u64, 3000]),
                &mut ev,
            )?;
            let n = apply(&mut rec, &mut adv_host, &mut active, &out, &name, per);
            ev.convergence = crate::checks::convergence::ConvergenceEvidence {
                correct: correct.len() as u64,
                attempted: rows.len() as u64,
                extra_successes: n as u64,
                attack: name.clone(),
            };
            stats.push(stat(&name, ei, rows.len(), n, 0, t));
        }
        if random {
            let t = Instant::now();
            let x0 = ctx.rows_host(x_host, &correct);
            let adv = ctx.rows_host(&adv_host, &correct);
            let mut wrong = vec![None; correct.len()];
            for _ in 0..cfg.repeats {
                let p = models.with_base(|s| ctx.predict(s, &adv))?;
                for (j, &r) in correct.iter().enumerate() {
                    if p[j] != labels[r] && wrong[j].is_none() {
                        wrong[j] = Some(p[j]);
                    }
                }
            }
            let mut n = 0;
            for (j, &r) in correct.iter().enumerate() {
                if let (Some(p), None) = (wrong[j], &rec[r].broken_by) {
                    let delta: Vec<f32> = adv[j * per..(j + 1) * per]
                        .iter()
                        .zip(&x0[j * per..(j + 1) * per])
                        .map(|(a, c)| a - c)
                        .collect();
                    rec[r] = EpsRecord {
                        broken_by: Some("repeated-evaluation".into()),
                        predicted: p,
                        distance: cfg.norm.of_rows(&delta, per)[0],
                        l2: Norm::L2.of_rows(&delta, per)[0],
                        linf: Norm::Linf.of_rows(&delta, per)[0],
                        queries: rec[r].queries,
                    };
                    n += 1;
                }
            }
            active.retain(|&r| rec[r].broken_by.is_none());
            stats.push(stat("repeated-evaluation", ei, correct.len(), n, 0, t));
        }
        if ei == headline && attack_model.is_some() {
            let unbounded = ["bim", "pgd"].into_iter().find(|n| is_registered(n));
            if let Some(name) = unbounded {
                let rows: Vec<usize> = correct.iter().copied().take(cfg.unbounded_rows).collect();
                let span = ctx.bounds.1 - ctx.bounds.0;
                let big = match cfg.norm {
                    Norm::Linf => span,
                    Norm::L2 => span * (per as f32).sqrt(),
                    Norm::L1 => span * per as f32,
                };
                let mut p = cfg.params(big);
                p.step = None;
                let threat_big = Threat {
                    norm: cfg.norm,
                    eps: Some(big),
                    bounds: ctx.bounds,
                };
                let out = ctx.run(
                    nnguard_attack::evasion::build(name, &p)?,
                    name,
                    None,
                    &models,
                    x_host,
                    labels,
                    &rows,
                    threat_big,
                    derive_seed(batch_seed, &[4000]),
                    &mut ev,
                )?;
                ev.unbounded = crate::checks::unbounded::UnboundedEvidence {
                    attempted: rows.len() as u64,
                    survived: out.verdicts.iter().filter(|v| !v.success).count() as u64,
                    eps: big,
                    attack: name.to_string(),
                };
            }
        }
        timings.check_seconds += t_checks.elapsed().as_secs_f64();
        if ei == headline {
            for (r, e) in rec.iter().enumerate() {
                if examples.len() >= cfg.examples {
                    break;
                }
                if let Some(attack) = &e.broken_by {
                    let x = &x_host[r * per..(r + 1) * per];
                    let a = &adv_host[r * per..(r + 1) * per];
                    let delta: Vec<f32> = a.iter().zip(x).map(|(p, q)| p - q).collect();
                    examples.push(Example {
                        index: global0 + r,
                        label: labels[r],
                        adversarial: e.predicted,
                        attack: attack.clone(),
                        distance: e.distance,
                        clean_png: png_base64(x, ctx.inputs.shape, ctx.bounds),
                        adversarial_png: png_base64(a, ctx.inputs.shape, ctx.bounds),
                        perturbation_png: perturbation_base64(&delta, ctx.inputs.shape),
                    });
                }
            }
            if cfg.keep_adversarials {
                adversarials = adv_host.clone();
            }
        }
        eps_records.push(rec);
    }
    let records = (0..b)
        .map(|i| InputRecord {
            index: global0 + i,
            label: labels[i],
            clean: clean[i],
            eps: if clean[i] == labels[i] {
                eps_records.iter().map(|r| r[i].clone()).collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    Ok(BatchOutcome {
        records,
        stats,
        evidence: ev,
        examples,
        timings,
        adversarials,
    })
}

/// The part of `out` (run on `ran`) that concerns the rows of `keep`, as if run on them.
fn out_for(out: &RunOutcome, ran: &[usize], keep: &[usize]) -> (Vec<usize>, RunOutcome) {
    let mut rows = Vec::new();
    let mut adv = Vec::new();
    let mut verdicts = Vec::new();
    let mut queries = Vec::new();
    let per = if ran.is_empty() {
        0
    } else {
        out.adv.len() / ran.len()
    };
    for (j, r) in ran.iter().enumerate() {
        if keep.contains(r) {
            rows.push(*r);
            adv.extend_from_slice(&out.adv[j * per..(j + 1) * per]);
            verdicts.push(out.verdicts[j]);
            queries.push(out.queries[j]);
        }
    }
    (
        rows,
        RunOutcome {
            adv,
            verdicts,
            queries,
        },
    )
}

/// Records the successes of `out` (run on the rows `active` held at the call) and removes
/// them from `active`; returns how many there were.
fn apply(
    rec: &mut [EpsRecord],
    adv_host: &mut [f32],
    active: &mut Vec<usize>,
    out: &RunOutcome,
    name: &str,
    per: usize,
) -> usize {
    apply_rows(rec, adv_host, active, &active.clone(), out, name, per)
}

fn apply_rows(
    rec: &mut [EpsRecord],
    adv_host: &mut [f32],
    active: &mut Vec<usize>,
    rows: &[usize],
    out: &RunOutcome,
    name: &str,
    per: usize,
) -> usize {
    let mut n = 0;
    for (j, &r) in rows.iter().enumerate().take(out.verdicts.len()) {
        let v = &out.verdicts[j];
        let q = out.queries.get(j).copied().unwrap_or(0);
        rec[r].queries += q;
        if v.success && rec[r].broken_by.is_none() {
            let queries = rec[r].queries;
            rec[r] = broken(name, v, queries);
            adv_host[r * per..(r + 1) * per].copy_from_slice(&out.adv[j * per..(j + 1) * per]);
            n += 1;
        }
    }
    active.retain(|&r| rec[r].broken_by.is_none());
    n
}
