//! Attacks by name, built from the common command-line parameters. Adding an attack adds
//! one entry to [`ATTACKS`] and one arm to [`build`].

use nnguard_model::{Differentiable, Loss};

use super::{
    ApgdConfig, BlackBoxAttack, BoundaryConfig, CwL2Config, CwLinfConfig, DeepFoolConfig,
    EvasionAttack, FabConfig, FgsmConfig, HopSkipJumpConfig, PatchConfig, PgdConfig, SquareConfig,
    UapConfig,
};
use crate::AttackError;
use crate::norm::Norm;
use crate::oracle::Reveal;

/// The parameters users set on the command line; each attack reads the ones it needs and
/// falls back to its own defaults for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackParams {
    /// Norm of the threat model.
    pub norm: Norm,
    /// Radius of the ball (`--eps`); minimal-perturbation attacks ignore it while searching.
    pub eps: f32,
    /// Iterations (`--steps`), `None` for the attack's default.
    pub steps: Option<usize>,
    /// Step size (`--step`), `None` for the attack's default.
    pub step: Option<f32>,
    /// Random restarts (`--restarts`).
    pub restarts: Option<usize>,
    /// Query budget per input for black-box attacks (`--queries`).
    pub queries: Option<u64>,
    /// Loss for gradient attacks (`--loss`).
    pub loss: Option<Loss>,
    /// Initial window fraction of the Square attack (`--p-init`).
    pub p_init: Option<f32>,
    /// Classes of the model the attack will run on, when known: an attack whose loss needs
    /// more classes (DLR needs 3, targeted DLR 4) is then rejected when it is built.
    pub classes: Option<usize>,
}

impl Default for AttackParams {
    fn default() -> Self {
        Self {
            norm: Norm::Linf,
            eps: 8.0 / 255.0,
            steps: None,
            step: None,
            restarts: None,
            queries: None,
            loss: None,
            p_init: None,
            classes: None,
        }
    }
}

/// A built attack of either kind.
pub enum AnyAttack {
    /// Needs gradients.
    WhiteBox(Box<dyn EvasionAttack<dyn Differentiable>>),
    /// Needs only queries; runs through a budgeted oracle.
    BlackBox {
        /// The attack.
        attack: Box<dyn BlackBoxAttack>,
        /// Queries per input.
        budget: Option<u64>,
        /// Scores or labels only.
        reveal: Reveal,
    },
}

/// Every attack name with a one-line description.
pub const ATTACKS: &[(&str, &str)] = &[
    ("fgsm", "Fast Gradient Sign Method (one step; FGM for l2)"),
    ("bim", "Basic Iterative Method (PGD without random start)"),
    (
        "pgd",
        "Projected Gradient Descent with random start and restarts (linf, l2, l1)",
    ),
    ("mi-fgsm", "Momentum iterative FGSM"),
    (
        "cw-l2",
        "Carlini-Wagner L2: minimal perturbation, Adam in tanh space, binary search over c",
    ),
    ("cw-linf", "Carlini-Wagner L∞: PGD on the CW margin loss"),
    (
        "deepfool",
        "DeepFool: minimal perturbation by repeated linearisation (l2, linf)",
    ),
    ("apgd-ce", "Auto-PGD on the cross-entropy (linf, l2)"),
    ("apgd-dlr", "Auto-PGD on the DLR loss (linf, l2)"),
    (
        "apgd-t",
        "Targeted Auto-PGD on the targeted DLR loss, top 9 target classes (linf, l2)",
    ),
    (
        "fab-t",
        "Targeted FAB: minimal perturbation by projections onto the boundary (linf, l2)",
    ),
    (
        "patch",
        "Adversarial patch over 10% of the image, trained over random placements",
    ),
    (
        "uap",
        "Universal adversarial perturbation: one perturbation for all inputs (linf, l2)",
    ),
    (
        "square",
        "Square attack: score-based random search within a query budget (linf, l2)",
    ),
    ("square-l2", "Square attack in l2"),
    (
        "hopskipjump",
        "HopSkipJump: decision-based (labels only), minimal perturbation (l2, linf)",
    ),
    (
        "boundary",
        "Boundary attack: decision-based (labels only), minimal l2 perturbation",
    ),
];

/// Builds attack `name` from `params`, rejecting invalid values by flag.
pub fn build(name: &str, p: &AttackParams) -> Result<AnyAttack, AttackError> {
    if let Some(k) = p.classes {
        let (needed, why) = min_classes(name, p);
        if k < needed {
            return Err(AttackError::config(
                "--model",
                format!(
                    "{name} needs a model with at least {needed} classes ({why}); the model has {k}"
                ),
            ));
        }
    }
    let white = |a: Box<dyn EvasionAttack<dyn Differentiable>>| Ok(AnyAttack::WhiteBox(a));
    let black = |attack: Box<dyn BlackBoxAttack>, budget: u64, reveal: Reveal| {
        Ok(AnyAttack::BlackBox {
            attack,
            budget: Some(budget),
            reveal,
        })
    };
    let pgd = |random_start: bool, momentum: Option<f32>| -> Result<AnyAttack, AttackError> {
        let d = PgdConfig::default();
        white(Box::new(
            PgdConfig {
                norm: p.norm,
                eps: p.eps,
                step: p.step,
                steps: p.steps.unwrap_or(d.steps),
                random_start,
                restarts: p.restarts.unwrap_or(d.restarts),
                loss: p.loss.unwrap_or(d.loss),
                momentum,
                early_stop: true,
            }
            .build()?,
        ))
    };
    match name {
        "fgsm" => white(Box::new(
            FgsmConfig {
                norm: p.norm,
                eps: p.eps,
                loss: p.loss.unwrap_or(Loss::CrossEntropy),
            }
            .build()?,
        )),
        "bim" => pgd(false, None),
        "pgd" => pgd(true, None),
        "mi-fgsm" => pgd(false, Some(1.0)),
        "cw-l2" => {
            check_eps(p.eps)?;
            let d = CwL2Config::default();
            white(Box::new(
                CwL2Config {
                    steps: p.steps.unwrap_or(d.steps),
                    lr: p.step.unwrap_or(d.lr),
                    ..d
                }
                .build()?,
            ))
        }
        "cw-linf" => {
            let d = CwLinfConfig::default();
            white(Box::new(
                CwLinfConfig {
                    eps: p.eps,
                    step: p.step,
                    steps: p.steps.unwrap_or(d.steps),
                    restarts: p.restarts.unwrap_or(d.restarts),
                    ..d
                }
                .build()?,
            ))
        }
        "deepfool" => {
            check_eps(p.eps)?;
            let d = DeepFoolConfig::default();
            white(Box::new(
                DeepFoolConfig {
                    norm: p.norm,
                    steps: p.steps.unwrap_or(d.steps),
                    ..d
                }
                .build()?,
            ))
        }
        "apgd-ce" | "apgd-dlr" | "apgd-t" => {
            let d = if name == "apgd-t" {
                ApgdConfig::targeted()
            } else {
                ApgdConfig::default()
            };
            let loss = match name {
                "apgd-ce" => Loss::CrossEntropy,
                "apgd-dlr" => Loss::Dlr,
                _ => p.loss.unwrap_or(d.loss),
            };
            white(Box::new(
                ApgdConfig {
                    norm: p.norm,
                    eps: p.eps,
                    steps: p.steps.unwrap_or(d.steps),
                    restarts: p.restarts.unwrap_or(d.restarts),
                    loss,
                    ..d
                }
                .build()?,
            ))
        }
        "fab-t" => {
            let d = FabConfig::default();
            white(Box::new(
                FabConfig {
                    norm: p.norm,
                    steps: p.steps.unwrap_or(d.steps),
                    restarts: p.restarts.unwrap_or(d.restarts),
                    start_radius: p.eps,
                    ..d
                }
                .build()?,
            ))
        }
        "patch" => {
            check_eps(p.eps)?;
            let d = PatchConfig::default();
            white(Box::new(
                PatchConfig {
                    steps: p.steps.unwrap_or(d.steps),
                    lr: p.step.unwrap_or(d.lr),
                    ..d
                }
                .build()?,
            ))
        }
        "uap" => {
            let d = UapConfig::default();
            white(Box::new(
                UapConfig {
                    norm: p.norm,
                    eps: p.eps,
                    epochs: p.steps.unwrap_or(d.epochs),
                    step: p.step,
                    ..d
                }
                .build()?,
            ))
        }
        "square" | "square-l2" => {
            let d = SquareConfig::default();
            let square = SquareConfig {
                norm: if name == "square-l2" {
                    Norm::L2
                } else {
                    p.norm
                },
                eps: p.eps,
                queries: p.queries.unwrap_or(d.queries),
                p_init: p.p_init.unwrap_or(d.p_init),
                restarts: p.restarts.unwrap_or(d.restarts),
            }
            .build()?;
            let budget = square.config().queries;
            black(Box::new(square), budget, Reveal::Scores)
        }
        "hopskipjump" => {
            check_eps(p.eps)?;
            let d = HopSkipJumpConfig::default();
            let hsj = HopSkipJumpConfig {
                norm: p.norm,
                queries: p.queries.unwrap_or(d.queries),
                steps: p.steps.unwrap_or(d.steps),
                ..d
            }
            .build()?;
            let budget = hsj.config().queries;
            black(Box::new(hsj), budget, Reveal::Labels)
        }
        "boundary" => {
            check_eps(p.eps)?;
            let d = BoundaryConfig::default();
            let boundary = BoundaryConfig {
                queries: p.queries.unwrap_or(d.queries),
                steps: p.steps.unwrap_or(d.steps),
                ..d
            }
            .build()?;
            let budget = boundary.config().queries;
            black(Box::new(boundary), budget, Reveal::Labels)
        }
        other => Err(AttackError::config(
            "ATTACK",
            format!(
                "unknown attack {other:?}; available: {}",
                ATTACKS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The fewest classes attack `name` works with, and why.
fn min_classes(name: &str, p: &AttackParams) -> (usize, &'static str) {
    match (name, p.loss) {
        ("apgd-t", Some(Loss::CrossEntropy)) => (2, "an adversarial example needs another class"),
        ("apgd-t", _) => (4, "the targeted DLR loss ranks four logits; use --loss ce"),
        ("apgd-dlr", _) => (3, "the DLR loss ranks three logits"),
        ("apgd-ce", _) => (2, "an adversarial example needs another class"),
        (_, Some(Loss::Dlr)) => (3, "the DLR loss ranks three logits; use --loss ce"),
        _ => (2, "an adversarial example needs another class"),
    }
}

/// Checks the evaluation radius of a minimal-perturbation attack, which does not use it
/// while searching but is judged by it.
fn check_eps(eps: f32) -> Result<(), AttackError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(AttackError::config(
            "--eps",
            format!("must be a finite number ≥ 0, got {eps}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag_of(r: Result<AnyAttack, AttackError>) -> &'static str {
        match r {
            Err(AttackError::InvalidConfig { flag, .. }) => flag,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("invalid parameters were accepted"),
        }
    }

    #[test]
    fn every_listed_attack_builds_with_defaults() {
        for (name, _) in ATTACKS {
            assert!(build(name, &AttackParams::default()).is_ok(), "{name}");
        }
    }

    #[test]
    fn attacks_reject_models_with_too_few_classes_when_built() {
        let with = |classes, loss| AttackParams {
            classes: Some(classes),
            loss,
            ..AttackParams::default()
        };
        // Targeted DLR ranks four logits, DLR three; everything else needs two.
        for (name, loss, needed) in [
            ("apgd-t", None, 4),
            ("apgd-t", Some(Loss::CrossEntropy), 2),
            ("apgd-dlr", None, 3),
            ("apgd-ce", Some(Loss::Dlr), 2),
            ("pgd", Some(Loss::Dlr), 3),
            ("pgd", None, 2),
            ("fab-t", None, 2),
            ("square", None, 2),
            ("cw-l2", None, 2),
        ] {
            assert_eq!(
                flag_of(build(name, &with(needed - 1, loss))),
                "--model",
                "{name} {loss:?} with {} classes",
                needed - 1
            );
            assert!(build(name, &with(needed, loss)).is_ok(), "{name} {loss:?}");
        }
        let Err(e) = build("apgd-t", &with(3, None)) else {
            panic!("accepted")
        };
        let message = e.to_string();
        assert!(
            message.contains("at least 4 classes") && message.contains("has 3"),
            "{message}"
        );
    }

    #[test]
    fn invalid_parameters_are_rejected_by_flag() {
        let p = AttackParams::default();
        for (name, _) in ATTACKS {
            assert_eq!(
                flag_of(build(
                    name,
                    &AttackParams {
                        eps: -0.1,
                        ..p.clone()
                    }
                )),
                "--eps",
                "{name}"
            );
        }
        assert_eq!(
            flag_of(build(
                "pgd",
                &AttackParams {
                    steps: Some(0),
                    ..p.clone()
                }
            )),
            "--steps"
        );
        assert_eq!(
            flag_of(build(
                "pgd",
                &AttackParams {
                    restarts: Some(0),
                    ..p.clone()
                }
            )),
            "--restarts"
        );
        assert_eq!(
            flag_of(build(
                "pgd",
                &AttackParams {
                    step: Some(f32::NAN),
                    ..p.clone()
                }
            )),
            "--step"
        );
        assert_eq!(
            flag_of(build(
                "fgsm",
                &AttackParams {
                    norm: Norm::L1,
                    ..p.clone()
                }
            )),
            "--norm"
        );
        assert_eq!(flag_of(build("nope", &p)), "ATTACK");
    }

    #[test]
    fn white_box_parameters_are_rejected_by_flag() {
        let p = AttackParams::default();
        let no_steps = AttackParams {
            steps: Some(0),
            ..p.clone()
        };
        let no_restarts = AttackParams {
            restarts: Some(0),
            ..p.clone()
        };
        let bad_step = AttackParams {
            step: Some(-1.0),
            ..p.clone()
        };
        let l1 = AttackParams {
            norm: Norm::L1,
            ..p.clone()
        };
        let margin = AttackParams {
            loss: Some(Loss::Margin),
            ..p.clone()
        };
        let names = [
            "cw-l2", "cw-linf", "deepfool", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "patch",
            "uap",
        ];
        for name in names {
            assert!(
                matches!(build(name, &p), Ok(AnyAttack::WhiteBox(_))),
                "{name}"
            );
            assert_eq!(flag_of(build(name, &no_steps)), "--steps", "{name}");
        }
        for name in ["cw-linf", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t"] {
            assert_eq!(flag_of(build(name, &no_restarts)), "--restarts", "{name}");
        }
        for name in ["cw-l2", "cw-linf", "patch", "uap"] {
            assert_eq!(flag_of(build(name, &bad_step)), "--step", "{name}");
        }
        for name in ["deepfool", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "uap"] {
            assert_eq!(flag_of(build(name, &l1)), "--norm", "{name}");
        }
        assert_eq!(flag_of(build("apgd-t", &margin)), "--loss");
    }

    #[test]
    fn attack_configs_reject_their_own_parameters_by_flag() {
        use crate::evasion::{
            ApgdConfig, CwL2Config, CwLinfConfig, DeepFoolConfig, FabConfig, PatchConfig, UapConfig,
        };
        fn flag<T>(r: Result<T, AttackError>) -> &'static str {
            match r {
                Err(AttackError::InvalidConfig { flag, .. }) => flag,
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("invalid parameters were accepted"),
            }
        }
        let cw = CwL2Config::default;
        assert_eq!(flag(CwL2Config { c: 0.0, ..cw() }.build()), "--c");
        assert_eq!(
            flag(
                CwL2Config {
                    kappa: -1.0,
                    ..cw()
                }
                .build()
            ),
            "--kappa"
        );
        assert_eq!(
            flag(
                CwL2Config {
                    lr: f32::NAN,
                    ..cw()
                }
                .build()
            ),
            "--step"
        );
        assert_eq!(
            flag(
                CwL2Config {
                    binary_search_steps: 0,
                    ..cw()
                }
                .build()
            ),
            "--binary-search-steps"
        );
        let cwi = CwLinfConfig::default;
        assert_eq!(
            flag(
                CwLinfConfig {
                    kappa: f32::INFINITY,
                    ..cwi()
                }
                .build()
            ),
            "--kappa"
        );
        let df = DeepFoolConfig::default;
        assert_eq!(
            flag(
                DeepFoolConfig {
                    overshoot: -0.1,
                    ..df()
                }
                .build()
            ),
            "--overshoot"
        );
        assert_eq!(
            flag(
                DeepFoolConfig {
                    candidates: 1,
                    ..df()
                }
                .build()
            ),
            "--candidates"
        );
        let apgd = ApgdConfig::default;
        assert_eq!(
            flag(
                ApgdConfig {
                    target_classes: Some(0),
                    ..apgd()
                }
                .build()
            ),
            "--target-classes"
        );
        assert_eq!(flag(ApgdConfig { rho: 0.0, ..apgd() }.build()), "--rho");
        assert_eq!(
            flag(
                ApgdConfig {
                    momentum: 1.5,
                    ..apgd()
                }
                .build()
            ),
            "--momentum"
        );
        let fab = FabConfig::default;
        assert_eq!(
            flag(
                FabConfig {
                    target_classes: 0,
                    ..fab()
                }
                .build()
            ),
            "--target-classes"
        );
        assert_eq!(
            flag(
                FabConfig {
                    alpha_max: 2.0,
                    ..fab()
                }
                .build()
            ),
            "--alpha-max"
        );
        assert_eq!(flag(FabConfig { eta: 0.5, ..fab() }.build()), "--eta");
        assert_eq!(flag(FabConfig { beta: 0.0, ..fab() }.build()), "--beta");
        let patch = PatchConfig::default;
        assert_eq!(
            flag(
                PatchConfig {
                    area: 0.0,
                    ..patch()
                }
                .build()
            ),
            "--patch-area"
        );
        assert_eq!(
            flag(
                PatchConfig {
                    area: 1.5,
                    ..patch()
                }
                .build()
            ),
            "--patch-area"
        );
        assert_eq!(
            flag(
                PatchConfig {
                    scale: (1.2, 0.8),
                    ..patch()
                }
                .build()
            ),
            "--patch-scale"
        );
        assert_eq!(
            flag(
                PatchConfig {
                    max_rotation_deg: 400.0,
                    ..patch()
                }
                .build()
            ),
            "--patch-rotation"
        );
        assert_eq!(
            flag(
                PatchConfig {
                    batch: 0,
                    ..patch()
                }
                .build()
            ),
            "--batch"
        );
        assert_eq!(
            flag(
                PatchConfig {
                    placements: 0,
                    ..patch()
                }
                .build()
            ),
            "--placements"
        );
        let uap = UapConfig::default;
        assert_eq!(flag(UapConfig { batch: 0, ..uap() }.build()), "--batch");
        assert_eq!(
            flag(
                UapConfig {
                    target_fooling_rate: 0.0,
                    ..uap()
                }
                .build()
            ),
            "--fooling-rate"
        );
    }

    #[test]
    fn black_box_parameters_are_rejected_by_flag() {
        let p = AttackParams::default();
        for name in ["square", "square-l2", "hopskipjump", "boundary"] {
            assert!(matches!(
                build(name, &p),
                Ok(AnyAttack::BlackBox {
                    budget: Some(_),
                    ..
                })
            ));
            let zero = AttackParams {
                queries: Some(0),
                ..p.clone()
            };
            assert_eq!(flag_of(build(name, &zero)), "--queries", "{name}");
        }
        for p_init in [0.0, -0.5, 1.5, f32::NAN] {
            let bad = AttackParams {
                p_init: Some(p_init),
                ..p.clone()
            };
            assert_eq!(flag_of(build("square", &bad)), "--p-init", "{p_init}");
        }
        let l1 = AttackParams {
            norm: Norm::L1,
            ..p.clone()
        };
        assert_eq!(flag_of(build("square", &l1)), "--norm");
        assert_eq!(flag_of(build("hopskipjump", &l1)), "--norm");
        let no_restarts = AttackParams {
            restarts: Some(0),
            ..p.clone()
        };
        assert_eq!(flag_of(build("square", &no_restarts)), "--restarts");
        let no_steps = AttackParams {
            steps: Some(0),
            ..p.clone()
        };
        assert_eq!(flag_of(build("hopskipjump", &no_steps)), "--steps");
        assert_eq!(flag_of(build("boundary", &no_steps)), "--steps");
        let no_eps = AttackParams { eps: 0.0, ..p };
        assert_eq!(flag_of(build("square", &no_eps)), "--eps");
    }
}
