//! Robust training: one [`TrainObjective`] per method, each in its own file, chosen by name
//! with [`DefenseConfig`] (what `nnguard train --defense NAME` builds).
//!
//! | name | method |
//! |---|---|
//! | `pgd-at` | [`PgdAt`]: PGD adversarial training (Madry et al. 2018) |
//! | `trades` | [`Trades`]: TRADES (Zhang et al. 2019) |
//! | `fgsm-at` | [`FgsmAt`]: fast adversarial training with a random start (Wong et al. 2020) |
//! | `noise` | [`NoiseAugmentation`]: Gaussian data augmentation, the base of randomized smoothing |
//! | `distill` | [`Distillation`]: defensive distillation (Papernot et al. 2016) |
//! | `ibp` | [`Ibp`]: interval bound propagation training (Gowal et al. 2018) |
//!
//! Every objective draws its randomness from a ChaCha RNG seeded by the training seed, so a
//! run is deterministic for a seed.

mod distill;
mod fgsm_at;
mod ibp;
mod noise;
mod pgd_at;
mod trades;

pub use distill::{Distillation, DistillationConfig};
pub use fgsm_at::{FgsmAt, FgsmAtConfig};
pub use ibp::{
    Ibp, IbpConfig, Interval, interval_logits, model_interval_logits, worst_case_logits,
};
pub use noise::{NoiseAugmentation, NoiseConfig};
pub use pgd_at::{PgdAt, PgdAtConfig};
pub use trades::{Trades, TradesConfig, kl_input_gradient};

use std::path::PathBuf;
use std::sync::Arc;

use nnguard_attack::norm::{Norm, Threat};
use nnguard_attack::steps::random_start;
use nnguard_model::tensor::{Tensor, TensorData};
use nnguard_model::train::TrainObjective;
use nnguard_model::{Differentiable, Loss};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::DefenseError;

/// The robust-training methods, by the name `--defense` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defense {
    /// PGD adversarial training.
    PgdAt,
    /// TRADES.
    Trades,
    /// Fast FGSM adversarial training with a random start.
    FgsmAt,
    /// Gaussian noise augmentation.
    Noise,
    /// Defensive distillation.
    Distill,
    /// Interval bound propagation training.
    Ibp,
}

impl Defense {
    /// Every method.
    pub const ALL: [Defense; 6] = [
        Defense::PgdAt,
        Defense::Trades,
        Defense::FgsmAt,
        Defense::Noise,
        Defense::Distill,
        Defense::Ibp,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Defense::PgdAt => "pgd-at",
            Defense::Trades => "trades",
            Defense::FgsmAt => "fgsm-at",
            Defense::Noise => "noise",
            Defense::Distill => "distill",
            Defense::Ibp => "ibp",
        }
    }

    /// Whether the method trains against an ε-ball (and so needs `--eps`).
    pub fn uses_eps(self) -> bool {
        matches!(
            self,
            Defense::PgdAt | Defense::Trades | Defense::FgsmAt | Defense::Ibp
        )
    }
}

impl std::fmt::Display for Defense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Defense {
    type Err = DefenseError;
    fn from_str(s: &str) -> Result<Self, DefenseError> {
        Defense::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                DefenseError::config(
                    "--defense",
                    format!(
                        "unknown defence {s:?}; available: {}",
                        Defense::ALL.map(Defense::name).join(", ")
                    ),
                )
            })
    }
}

/// How the training radius grows over a run: 0 until `start`, then linearly to the full ε
/// at `end` (both fractions of the run), then constant. Gowal et al. (2018) ramp ε this
/// way for IBP training; `--eps-schedule START,END`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpsSchedule {
    /// Fraction of the run before which ε is 0.
    pub start: f64,
    /// Fraction of the run from which ε is at its full value.
    pub end: f64,
}

impl EpsSchedule {
    /// The full ε from the first batch.
    pub const CONSTANT: EpsSchedule = EpsSchedule {
        start: 0.0,
        end: 0.0,
    };

    /// Parses `START,END` (fractions of the run, `0 ≤ START ≤ END ≤ 1`) or `constant`.
    pub fn parse(s: &str) -> Result<Self, DefenseError> {
        let bad = |reason: String| DefenseError::config("--eps-schedule", reason);
        if s.trim() == "constant" {
            return Ok(Self::CONSTANT);
        }
        let (a, b) = s
            .split_once(',')
            .ok_or_else(|| bad(format!("expected START,END or constant, got {s:?}")))?;
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("{v:?} is not a number")))
        };
        Self {
            start: num(a)?,
            end: num(b)?,
        }
        .checked()
    }

    /// Checks `0 ≤ start ≤ end ≤ 1`.
    pub fn checked(self) -> Result<Self, DefenseError> {
        if !(self.start.is_finite()
            && self.end.is_finite()
            && 0.0 <= self.start
            && self.start <= self.end
            && self.end <= 1.0)
        {
            return Err(DefenseError::config(
                "--eps-schedule",
                format!(
                    "need 0 ≤ START ≤ END ≤ 1 (fractions of the run), got {},{}",
                    self.start, self.end
                ),
            ));
        }
        Ok(self)
    }

    /// The fraction of the full ε at `progress` (in `[0, 1]`).
    pub fn factor(&self, progress: f64) -> f64 {
        if progress >= self.end {
            1.0
        } else if progress < self.start {
            0.0
        } else {
            (progress - self.start) / (self.end - self.start).max(f64::MIN_POSITIVE)
        }
    }
}

/// What `nnguard train --defense ...` gives: the method and every flag that can apply. Flags
/// left `None` take the method's documented default; a flag the method does not use is an
/// error, so that nothing the user asked for is silently ignored.
#[derive(Debug, Clone)]
pub struct DefenseConfig {
    /// The method.
    pub defense: Defense,
    /// `--eps`: training radius (L∞), required by the ε-ball methods.
    pub eps: Option<f32>,
    /// `--attack-steps`: steps of the inner attack (pgd-at, trades).
    pub attack_steps: Option<usize>,
    /// `--attack-step`: step size of the inner attack (pgd-at, trades, fgsm-at).
    pub attack_step: Option<f32>,
    /// `--beta`: TRADES' weight of the robustness term.
    pub beta: Option<f32>,
    /// `--sigma`: standard deviation of the Gaussian noise.
    pub sigma: Option<f32>,
    /// `--teacher`: the teacher model of distillation (without it, `distill` trains the
    /// teacher: hard labels at the temperature).
    pub teacher: Option<PathBuf>,
    /// `--temperature`: the distillation temperature.
    pub temperature: Option<f32>,
    /// `--eps-schedule`: how ε ramps up over the run.
    pub eps_schedule: Option<EpsSchedule>,
    /// Seed of the objective's randomness (the training seed).
    pub seed: u64,
}

impl DefenseConfig {
    /// A configuration of `defense` with every flag at its default.
    pub fn new(defense: Defense, seed: u64) -> Self {
        Self {
            defense,
            eps: None,
            attack_steps: None,
            attack_step: None,
            beta: None,
            sigma: None,
            teacher: None,
            temperature: None,
            eps_schedule: None,
            seed,
        }
    }

    /// Checks the flags and builds the objective. `load_teacher` loads `--teacher` (the
    /// caller knows how model files are opened).
    pub fn build(
        self,
        load_teacher: impl FnOnce(&std::path::Path) -> Result<Arc<dyn Differentiable>, DefenseError>,
    ) -> Result<Box<dyn TrainObjective>, DefenseError> {
        let d = self.defense;
        let unused = |flag: &'static str| {
            DefenseError::config(flag, format!("does not apply to --defense {d}"))
        };
        let applies: &[&str] = match d {
            Defense::PgdAt => &["--eps", "--attack-steps", "--attack-step", "--eps-schedule"],
            Defense::Trades => &[
                "--eps",
                "--attack-steps",
                "--attack-step",
                "--beta",
                "--eps-schedule",
            ],
            Defense::FgsmAt => &["--eps", "--attack-step", "--eps-schedule"],
            Defense::Noise => &["--sigma"],
            Defense::Distill => &["--teacher", "--temperature"],
            Defense::Ibp => &["--eps", "--eps-schedule"],
        };
        let given: [(&'static str, bool); 8] = [
            ("--eps", self.eps.is_some()),
            ("--attack-steps", self.attack_steps.is_some()),
            ("--attack-step", self.attack_step.is_some()),
            ("--beta", self.beta.is_some()),
            ("--sigma", self.sigma.is_some()),
            ("--teacher", self.teacher.is_some()),
            ("--temperature", self.temperature.is_some()),
            ("--eps-schedule", self.eps_schedule.is_some()),
        ];
        if let Some((flag, _)) = given
            .iter()
            .find(|(flag, set)| *set && !applies.contains(flag))
        {
            return Err(unused(flag));
        }
        let eps = || {
            self.eps.ok_or_else(|| {
                DefenseError::config(
                    "--eps",
                    format!("--defense {d} trains against an ε-ball; give its radius"),
                )
            })
        };
        let schedule = self.eps_schedule;
        Ok(match d {
            Defense::PgdAt => {
                let c = PgdAtConfig::default();
                Box::new(
                    PgdAtConfig {
                        eps: eps()?,
                        steps: self.attack_steps.unwrap_or(c.steps),
                        step: self.attack_step,
                        schedule: schedule.unwrap_or(c.schedule),
                        seed: self.seed,
                    }
                    .build()?,
                )
            }
            Defense::Trades => {
                let c = TradesConfig::default();
                Box::new(
                    TradesConfig {
                        eps: eps()?,
                        steps: self.attack_steps.unwrap_or(c.steps),
                        step: self.attack_step,
                        beta: self.beta.unwrap_or(c.beta),
                        schedule: schedule.unwrap_or(c.schedule),
                        seed: self.seed,
                    }
                    .build()?,
                )
            }
            Defense::FgsmAt => {
                let c = FgsmAtConfig::default();
                Box::new(
                    FgsmAtConfig {
                        eps: eps()?,
                        step: self.attack_step,
                        schedule: schedule.unwrap_or(c.schedule),
                        seed: self.seed,
                    }
                    .build()?,
                )
            }
            Defense::Noise => {
                let c = NoiseConfig::default();
                Box::new(
                    NoiseConfig {
                        sigma: self.sigma.unwrap_or(c.sigma),
                        seed: self.seed,
                    }
                    .build()?,
                )
            }
            Defense::Distill => {
                let teacher = match &self.teacher {
                    Some(path) => Some(load_teacher(path)?),
                    None => None,
                };
                let c = DistillationConfig::default();
                Box::new(
                    DistillationConfig {
                        temperature: self.temperature.unwrap_or(c.temperature),
                        teacher_name: self.teacher.map(|p| p.display().to_string()),
                    }
                    .build(teacher)?,
                )
            }
            Defense::Ibp => {
                let c = IbpConfig::default();
                Box::new(
                    IbpConfig {
                        eps: eps()?,
                        schedule: schedule.unwrap_or(c.schedule),
                        kappa_end: c.kappa_end,
                    }
                    .build()?,
                )
            }
        })
    }
}

/// Checks a training radius.
pub(crate) fn check_eps(eps: f32) -> Result<(), DefenseError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(DefenseError::config(
            "--eps",
            format!("must be a finite number ≥ 0, got {eps}"),
        ))
    }
}

/// Checks an optional step size.
pub(crate) fn check_step(step: Option<f32>) -> Result<(), DefenseError> {
    match step {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(DefenseError::config(
            "--attack-step",
            format!("must be a positive number, got {s}"),
        )),
        _ => Ok(()),
    }
}

/// The L∞ ball of radius `eps` around `x0` inside the model's bounds.
pub(crate) fn linf_threat(eps: f32, bounds: (f32, f32)) -> Threat {
    Threat {
        norm: Norm::Linf,
        eps: Some(eps),
        bounds,
    }
}

/// L∞ PGD on `model` for training (Madry et al. 2018): a uniform random start in the ball,
/// `steps` signed-gradient steps of `step` on `loss`, each projected onto the ball and the
/// bounds; returns the last iterate (no early stop: training wants the loss maximiser, not
/// the first misclassified point).
pub(crate) fn pgd_linf(
    model: &dyn Differentiable,
    x0: &Tensor<4>,
    labels: &[u32],
    eps: f32,
    step: f32,
    steps: usize,
    rng: &mut ChaCha8Rng,
) -> Tensor<4> {
    if eps <= 0.0 {
        return x0.clone();
    }
    let threat = linf_threat(eps, model.bounds());
    let mut x = random_start(x0, &threat, rng);
    for _ in 0..steps {
        let g = model
            .input_gradient(x.clone(), labels, Loss::CrossEntropy)
            .grad;
        x = threat.project(x0, x.add(g.sign().mul_scalar(step)));
    }
    x
}

/// Standard normal noise of `dims` scaled by `sigma`, drawn from `rng`, on `x`'s device.
pub(crate) fn gaussian_like(x: &Tensor<4>, sigma: f32, rng: &mut ChaCha8Rng) -> Tensor<4> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            sigma * z
        })
        .collect();
    Tensor::from_data(TensorData::new(v, dims), &x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(r: Result<Box<dyn TrainObjective>, DefenseError>) -> &'static str {
        match r {
            Err(DefenseError::InvalidConfig { flag, .. }) => flag,
            Err(e) => panic!("unexpected error {e}"),
            Ok(o) => panic!("accepted an invalid configuration ({})", o.name()),
        }
    }

    fn no_teacher(_: &std::path::Path) -> Result<Arc<dyn Differentiable>, DefenseError> {
        Err(DefenseError::config("--teacher", "not in this test"))
    }

    #[test]
    fn schedules_ramp_linearly_between_their_fractions() {
        let s = EpsSchedule::parse("0.2,0.6").unwrap();
        assert_eq!(s.factor(0.0), 0.0);
        assert_eq!(s.factor(0.1999), 0.0);
        assert!((s.factor(0.4) - 0.5).abs() < 1e-12);
        assert_eq!(s.factor(0.6), 1.0);
        assert_eq!(s.factor(0.9), 1.0);
        assert_eq!(EpsSchedule::parse("constant").unwrap().factor(0.0), 1.0);
        for bad in ["0.6,0.2", "-0.1,0.5", "0.1,1.5", "a,b", "0.5", "nan,1"] {
            assert!(EpsSchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_defence_builds_from_its_flags_and_rejects_others() {
        let base = |d: Defense| DefenseConfig {
            eps: d.uses_eps().then_some(0.1),
            ..DefenseConfig::new(d, 0)
        };
        for d in Defense::ALL {
            let o = base(d).build(no_teacher).unwrap();
            assert_eq!(o.name(), d.name());
            assert!(!o.settings().is_null(), "{d}");
        }
        let pgd = base(Defense::PgdAt);
        assert_eq!(
            flag(
                DefenseConfig {
                    eps: None,
                    ..pgd.clone()
                }
                .build(no_teacher)
            ),
            "--eps"
        );
        for (bad, want) in [
            (
                DefenseConfig {
                    eps: Some(-0.1),
                    ..pgd.clone()
                },
                "--eps",
            ),
            (
                DefenseConfig {
                    attack_steps: Some(0),
                    ..pgd.clone()
                },
                "--attack-steps",
            ),
            (
                DefenseConfig {
                    attack_step: Some(0.0),
                    ..pgd.clone()
                },
                "--attack-step",
            ),
            (
                DefenseConfig {
                    beta: Some(6.0),
                    ..pgd.clone()
                },
                "--beta",
            ),
            (
                DefenseConfig {
                    sigma: Some(0.5),
                    ..pgd.clone()
                },
                "--sigma",
            ),
            (
                DefenseConfig {
                    temperature: Some(10.0),
                    ..pgd.clone()
                },
                "--temperature",
            ),
            (
                DefenseConfig {
                    beta: Some(-1.0),
                    ..base(Defense::Trades)
                },
                "--beta",
            ),
            (
                DefenseConfig {
                    sigma: Some(0.0),
                    ..base(Defense::Noise)
                },
                "--sigma",
            ),
            (
                DefenseConfig {
                    eps: Some(0.1),
                    ..base(Defense::Noise)
                },
                "--eps",
            ),
            (
                DefenseConfig {
                    eps_schedule: Some(EpsSchedule::CONSTANT),
                    ..base(Defense::Noise)
                },
                "--eps-schedule",
            ),
            (
                DefenseConfig {
                    teacher: Some("teacher.onnx".into()),
                    ..base(Defense::Distill)
                },
                "--teacher",
            ),
            (
                DefenseConfig {
                    temperature: Some(0.5),
                    ..base(Defense::Distill)
                },
                "--temperature",
            ),
            (
                DefenseConfig {
                    attack_steps: Some(3),
                    ..base(Defense::FgsmAt)
                },
                "--attack-steps",
            ),
        ] {
            assert_eq!(flag(bad.build(no_teacher)), want);
        }
        assert!("nope".parse::<Defense>().is_err());
        assert_eq!("trades".parse::<Defense>().unwrap(), Defense::Trades);
    }
}
