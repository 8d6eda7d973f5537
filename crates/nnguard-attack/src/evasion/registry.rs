//! Attacks by name, built from the common command-line parameters. Adding an attack adds
//! one entry to [`ATTACKS`] and one arm to [`build`].

use nnguard_model::{Differentiable, Loss};

use super::{
    BlackBoxAttack, BoundaryConfig, EvasionAttack, FgsmConfig, HopSkipJumpConfig, PgdConfig,
    SquareConfig,
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
