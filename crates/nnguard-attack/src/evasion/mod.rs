//! Evasion attacks: one file per attack, each a `XxxConfig` with documented defaults whose
//! `build()` rejects invalid parameters by flag name, and an [`EvasionAttack`] impl.
//!
//! White-box attacks are `impl<M: Differentiable + ?Sized> EvasionAttack<M>`; black-box
//! attacks are `impl EvasionAttack<dyn Oracle>` and see nothing but the oracle, so the
//! compiler refuses a gradient attack on a query-only model.

mod apgd;
mod boundary;
mod cw;
mod decision;
mod deepfool;
mod fab;
mod fgsm;
mod hopskipjump;
mod patch;
mod pgd;
pub mod registry;
mod square;
mod uap;

pub use apgd::{Apgd, ApgdConfig, targeted_dlr_loss};
pub use boundary::{Boundary, BoundaryConfig};
pub use cw::{CwL2, CwL2Config, CwLinf, CwLinfConfig};
pub use deepfool::{DeepFool, DeepFoolConfig};
pub use fab::{Fab, FabConfig};
pub use fgsm::{Fgsm, FgsmConfig};
pub use hopskipjump::{HopSkipJump, HopSkipJumpConfig};
pub use patch::{Patch, PatchConfig, TrainedPatch};
pub use pgd::{Pgd, PgdConfig};
pub use registry::{ATTACKS, AnyAttack, AttackParams, build};
pub use square::{Square, SquareConfig, margins, p_selection};
pub use uap::{Uap, UapConfig};

use nnguard_model::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::AttackError;
use crate::norm::Threat;
use crate::oracle::{Oracle, QueryOracle, Reveal, Scorer};
use crate::tracker::{Tracker, TrackerResult};

/// An attack that proposes adversarial examples. It offers candidates to the context's
/// [`Tracker`], which projects, scores and keeps the best; an attack never decides success.
pub trait EvasionAttack<M: ?Sized> {
    /// The attack's name in reports (`pgd`, `apgd-ce`, `square`, ...).
    fn name(&self) -> String;
    /// Runs on every input of `ctx` that is not adversarial yet.
    fn run(&self, model: &M, ctx: &mut AttackContext<'_>) -> Result<(), AttackError>;
}

/// A black-box attack: implemented as `impl<'o> EvasionAttack<dyn Oracle + 'o> for X`, so it
/// runs against an oracle of any lifetime and sees nothing but the oracle.
pub trait BlackBoxAttack: for<'o> EvasionAttack<dyn Oracle + 'o> {}
impl<T: ?Sized + for<'o> EvasionAttack<dyn Oracle + 'o>> BlackBoxAttack for T {}

/// Progress of a running attack, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Steps done.
    pub done: usize,
    /// Steps in total (an estimate for adaptive attacks).
    pub total: usize,
}

/// What an attack works with: the tracker (inputs, labels, best examples) and a seeded RNG.
pub struct AttackContext<'a> {
    /// The harness's record of the best example per input.
    pub tracker: Tracker<'a>,
    /// The only source of randomness an attack may use.
    pub rng: ChaCha8Rng,
    progress: Option<&'a mut dyn FnMut(Progress)>,
}

impl<'a> AttackContext<'a> {
    /// A context around `tracker`, with randomness from `rng`.
    pub fn new(tracker: Tracker<'a>, rng: ChaCha8Rng) -> Self {
        Self {
            tracker,
            rng,
            progress: None,
        }
    }

    /// Reports progress to `f`.
    pub fn with_progress(mut self, f: &'a mut dyn FnMut(Progress)) -> Self {
        self.progress = Some(f);
        self
    }

    /// Tells the progress observer how far the attack is.
    pub fn tick(&mut self, done: usize, total: usize) {
        if let Some(f) = self.progress.as_mut() {
            f(Progress { done, total });
        }
    }
}

/// The inputs of one attack run.
pub struct Inputs<'a> {
    /// Clean inputs, NCHW.
    pub x: Tensor<4>,
    /// True labels.
    pub labels: &'a [u32],
    /// Targets, for a targeted run.
    pub targets: Option<&'a [u32]>,
}

/// A [`Scorer`] view of any classifier, sized or not (`&dyn Differentiable` included).
pub struct ScorerOf<'a, M: ?Sized>(pub &'a M);

impl<M: nnguard_model::Classifier + ?Sized> Scorer for ScorerOf<'_, M> {
    fn input_shape(&self) -> [usize; 3] {
        self.0.input_shape()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn bounds(&self) -> (f32, f32) {
        self.0.bounds()
    }
    fn scores(&self, x: Tensor<4>) -> Result<nnguard_model::tensor::Tensor<2>, AttackError> {
        Ok(self.0.logits(x))
    }
}

/// Runs a white-box attack on `inputs` within `threat` and returns the tracker's verdict.
pub fn run_white_box<M: nnguard_model::Classifier + ?Sized>(
    model: &M,
    attack: &dyn EvasionAttack<M>,
    threat: Threat,
    inputs: Inputs<'_>,
    seed: u64,
) -> Result<TrackerResult, AttackError> {
    let judge = ScorerOf(model);
    let tracker = Tracker::new(
        &judge,
        threat,
        inputs.x,
        inputs.labels.to_vec(),
        inputs.targets.map(<[u32]>::to_vec),
    )?;
    let mut ctx = AttackContext::new(tracker, ChaCha8Rng::seed_from_u64(seed));
    attack.run(model, &mut ctx)?;
    ctx.tracker.finish()
}

/// Runs a black-box attack through a [`QueryOracle`] over `scorer` with a per-input
/// `budget`; returns the verdict and the queries each input used.
pub fn run_black_box(
    scorer: &dyn Scorer,
    attack: &dyn BlackBoxAttack,
    threat: Threat,
    inputs: Inputs<'_>,
    budget: Option<u64>,
    reveal: Reveal,
    seed: u64,
) -> Result<(TrackerResult, Vec<u64>), AttackError> {
    let n = inputs.labels.len();
    let oracle = QueryOracle::new(scorer, n, budget, reveal)?;
    let tracker = Tracker::new(
        scorer,
        threat,
        inputs.x,
        inputs.labels.to_vec(),
        inputs.targets.map(<[u32]>::to_vec),
    )?;
    let mut ctx = AttackContext::new(tracker, ChaCha8Rng::seed_from_u64(seed));
    attack.run(&oracle, &mut ctx)?;
    let used = oracle.used();
    Ok((ctx.tracker.finish()?, used))
}
