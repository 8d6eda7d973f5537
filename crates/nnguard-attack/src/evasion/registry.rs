//! Attacks by name, built from the common command-line parameters. Adding an attack adds
//! one entry to [`ATTACKS`] and one arm to [`build`].

use nnguard_model::{Differentiable, Loss};

use super::{BlackBoxAttack, EvasionAttack, FgsmConfig, PgdConfig};
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
];

/// Builds attack `name` from `params`, rejecting invalid values by flag.
pub fn build(name: &str, p: &AttackParams) -> Result<AnyAttack, AttackError> {
    let white = |a: Box<dyn EvasionAttack<dyn Differentiable>>| Ok(AnyAttack::WhiteBox(a));
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
}
