//! Which attacks an evaluation runs: registered attacks by name, and the standard ensemble
//! in the spirit of AutoAttack (Croce & Hein 2020: APGD-CE, APGD-T, FAB-T, Square).
//!
//! Ensemble slots name the attack they want; when that attack is not registered in
//! [`nnguard_attack::evasion::ATTACKS`], a registered stand-in runs in its place (PGD with
//! the slot's loss) and the report says so. New attacks in the registry are picked up
//! without a change here.

use std::sync::Arc;

use nnguard_attack::evasion::{ATTACKS, AnyAttack, AttackParams, build};
use nnguard_attack::{AttackError, Norm};
use nnguard_model::Loss;

use crate::EvalError;

/// Builds an attack for the given parameters (ε, norm, steps, ...).
pub type Builder = Arc<dyn Fn(&AttackParams) -> Result<AnyAttack, AttackError> + Send + Sync>;

/// One attack of an evaluation.
#[derive(Clone)]
pub struct AttackSpec {
    /// The name reports use for what runs.
    pub name: String,
    /// The ensemble slot it fills (the registered attack's own name when not a stand-in).
    pub role: String,
    /// Whether `name` stands in for `role`, which is not registered.
    pub stand_in: bool,
    builder: Builder,
}

impl std::fmt::Debug for AttackSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttackSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("stand_in", &self.stand_in)
            .finish()
    }
}

/// Whether `name` is a registered attack.
pub fn is_registered(name: &str) -> bool {
    ATTACKS.iter().any(|(n, _)| *n == name)
}

impl AttackSpec {
    /// A registered attack by name.
    pub fn registered(name: &str) -> Result<Self, EvalError> {
        if !is_registered(name) {
            return Err(EvalError::config(
                "--attacks",
                format!(
                    "unknown attack {name:?}; available: {}",
                    ATTACKS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let owned = name.to_string();
        Ok(Self {
            name: name.into(),
            role: name.into(),
            stand_in: false,
            builder: Arc::new(move |p| build(&owned, p)),
        })
    }

    /// Any attack, built by `builder` (tests and library users with their own attacks).
    pub fn custom(
        name: &str,
        builder: impl Fn(&AttackParams) -> Result<AnyAttack, AttackError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            role: name.into(),
            stand_in: false,
            builder: Arc::new(builder),
        }
    }

    /// Registered attack `name` run with `loss` in place of the unregistered `role`.
    fn stand_in(role: &str, name: &str, loss: Loss) -> Self {
        let owned = name.to_string();
        Self {
            name: format!("{name}-{}", loss_name(loss)),
            role: role.into(),
            stand_in: true,
            builder: Arc::new(move |p| {
                let mut p = p.clone();
                p.loss = Some(loss);
                build(&owned, &p)
            }),
        }
    }

    /// Builds the attack for `params`.
    pub fn build(&self, params: &AttackParams) -> Result<AnyAttack, AttackError> {
        (self.builder)(params)
    }

    /// The attack for `slot`: itself when registered, otherwise PGD with `loss`.
    fn slot(slot: &str, loss: Loss) -> Option<Self> {
        if is_registered(slot) {
            Self::registered(slot).ok()
        } else if is_registered("pgd") {
            Some(Self::stand_in(slot, "pgd", loss))
        } else {
            None
        }
    }
}

fn loss_name(loss: Loss) -> &'static str {
    match loss {
        Loss::CrossEntropy => "ce",
        Loss::Margin => "margin",
        Loss::Dlr => "dlr",
        Loss::TargetedCrossEntropy => "tce",
    }
}

/// The standard ensemble: APGD-CE, APGD-T, FAB-T (white-box, where gradients exist) and
/// Square (black-box), with PGD stand-ins for white-box slots not yet registered. Square for
/// L2 uses `square-l2` when registered.
pub fn standard_ensemble(norm: Norm, white_box: bool) -> Vec<AttackSpec> {
    let mut out = Vec::new();
    if white_box {
        out.extend(AttackSpec::slot("apgd-ce", Loss::CrossEntropy));
        out.extend(AttackSpec::slot("apgd-t", Loss::Margin));
        out.extend(AttackSpec::slot("fab-t", Loss::Dlr));
    }
    out.extend(square(norm));
    out
}

/// A fast ensemble for quick looks (`nnguard assess`): APGD-CE (or PGD) and Square.
pub fn fast_ensemble(norm: Norm, white_box: bool) -> Vec<AttackSpec> {
    let mut out = Vec::new();
    if white_box {
        out.extend(AttackSpec::slot("apgd-ce", Loss::CrossEntropy));
    }
    out.extend(square(norm));
    out
}

fn square(norm: Norm) -> Option<AttackSpec> {
    let name = match norm {
        Norm::L2 if is_registered("square-l2") => "square-l2",
        _ => "square",
    };
    if is_registered(name) {
        AttackSpec::registered(name).ok()
    } else {
        None
    }
}

/// Parses `--attacks a,b,...`; `standard` and `fast` expand to the ensembles.
pub fn parse_attacks(
    list: &str,
    norm: Norm,
    white_box: bool,
) -> Result<Vec<AttackSpec>, EvalError> {
    let mut out: Vec<AttackSpec> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "standard" => out.extend(standard_ensemble(norm, white_box)),
            "fast" => out.extend(fast_ensemble(norm, white_box)),
            other => out.push(AttackSpec::registered(other)?),
        }
    }
    if out.is_empty() {
        return Err(EvalError::config("--attacks", "no attack given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_ensemble_fills_every_white_box_slot() {
        let e = standard_ensemble(Norm::Linf, true);
        let roles: Vec<&str> = e.iter().map(|a| a.role.as_str()).collect();
        assert_eq!(&roles[..3], ["apgd-ce", "apgd-t", "fab-t"]);
        for a in &e {
            assert_eq!(a.stand_in, !is_registered(&a.role), "{a:?}");
            assert!(a.build(&AttackParams::default()).is_ok(), "{a:?}");
        }
        assert!(
            standard_ensemble(Norm::Linf, false)
                .iter()
                .all(|a| matches!(
                    a.build(&AttackParams::default()),
                    Ok(AnyAttack::BlackBox { .. })
                ))
        );
    }

    #[test]
    fn unknown_attacks_are_rejected_by_flag() {
        let e = parse_attacks("pgd,nope", Norm::Linf, true).unwrap_err();
        assert!(e.to_string().contains("--attacks") && e.to_string().contains("nope"));
        assert!(parse_attacks(" , ", Norm::Linf, true).is_err());
        assert_eq!(
            parse_attacks("fgsm,pgd", Norm::Linf, true).unwrap().len(),
            2
        );
    }
}
