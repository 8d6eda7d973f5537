//! Query access to a model: [`Scorer`] (fallible scores, no accounting) and [`Oracle`],
//! the only view black-box attacks get, which counts queries per input and enforces a budget.

use std::sync::Mutex;

use nnguard_model::Classifier;
use nnguard_model::tensor::{Tensor, argmax_rows, to_vec};

use crate::AttackError;

/// A model that can be asked for scores, possibly failing (a remote model).
pub trait Scorer {
    /// Shape of one input image.
    fn input_shape(&self) -> [usize; 3];
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Valid input range.
    fn bounds(&self) -> (f32, f32);
    /// Scores `[B, K]` (logits or probabilities; only their order is used) for a batch.
    fn scores(&self, x: Tensor<4>) -> Result<Tensor<2>, AttackError>;
}

impl<M: Classifier + ?Sized> Scorer for M {
    fn input_shape(&self) -> [usize; 3] {
        Classifier::input_shape(self)
    }
    fn num_classes(&self) -> usize {
        Classifier::num_classes(self)
    }
    fn bounds(&self) -> (f32, f32) {
        Classifier::bounds(self)
    }
    fn scores(&self, x: Tensor<4>) -> Result<Tensor<2>, AttackError> {
        Ok(self.logits(x))
    }
}

/// What a black-box attack may ask.
pub trait Oracle {
    /// Shape of one input image.
    fn input_shape(&self) -> [usize; 3];
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Valid input range.
    fn bounds(&self) -> (f32, f32);
    /// Scores for candidates of the inputs `rows` (one candidate per row, in order); each
    /// image costs one query of its row's budget.
    fn scores(&self, rows: &[usize], x: Tensor<4>) -> Result<Tensor<2>, AttackError>;
    /// Predicted labels only (what decision-based attacks see); one query per image.
    fn labels(&self, rows: &[usize], x: Tensor<4>) -> Result<Vec<u32>, AttackError>;
    /// Queries left for input `row` (`u64::MAX` when unlimited).
    fn remaining(&self, row: usize) -> u64;
    /// Queries used so far, per input.
    fn used(&self) -> Vec<u64>;
}

/// What an [`Oracle`] reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Scores (score-based attacks).
    Scores,
    /// Only the top label (decision-based attacks).
    Labels,
}

/// An [`Oracle`] over any [`Scorer`] with a per-input query budget.
pub struct QueryOracle<'a> {
    scorer: &'a dyn Scorer,
    budget: Option<u64>,
    reveal: Reveal,
    used: Mutex<Vec<u64>>,
}

impl<'a> QueryOracle<'a> {
    /// An oracle for `inputs` inputs, each allowed `budget` queries (`None`: unlimited).
    pub fn new(
        scorer: &'a dyn Scorer,
        inputs: usize,
        budget: Option<u64>,
        reveal: Reveal,
    ) -> Result<Self, AttackError> {
        if budget == Some(0) {
            return Err(AttackError::config(
                "--queries",
                "the query budget must be at least 1",
            ));
        }
        Ok(Self {
            scorer,
            budget,
            reveal,
            used: Mutex::new(vec![0; inputs]),
        })
    }

    fn charge(&self, rows: &[usize]) -> Result<(), AttackError> {
        let mut used = self.used.lock().map_err(|_| AttackError::Unsupported {
            attack: "oracle".into(),
            reason: "query counter poisoned".into(),
        })?;
        for &r in rows {
            let Some(u) = used.get_mut(r) else {
                return Err(AttackError::config(
                    "rows",
                    format!("input {r} is out of range"),
                ));
            };
            if let Some(b) = self.budget
                && *u >= b
            {
                return Err(AttackError::BudgetExhausted { row: r, budget: b });
            }
            *u += 1;
        }
        Ok(())
    }
}

impl Oracle for QueryOracle<'_> {
    fn input_shape(&self) -> [usize; 3] {
        self.scorer.input_shape()
    }
    fn num_classes(&self) -> usize {
        self.scorer.num_classes()
    }
    fn bounds(&self) -> (f32, f32) {
        self.scorer.bounds()
    }
    fn scores(&self, rows: &[usize], x: Tensor<4>) -> Result<Tensor<2>, AttackError> {
        if self.reveal == Reveal::Labels {
            return Err(AttackError::ScoresUnavailable {
                attack: "this attack".into(),
            });
        }
        self.charge(rows)?;
        self.scorer.scores(x)
    }
    fn labels(&self, rows: &[usize], x: Tensor<4>) -> Result<Vec<u32>, AttackError> {
        self.charge(rows)?;
        let k = self.scorer.num_classes();
        Ok(argmax_rows(&to_vec(self.scorer.scores(x)?), k))
    }
    fn remaining(&self, row: usize) -> u64 {
        let used = self
            .used
            .lock()
            .map(|u| u.get(row).copied().unwrap_or(0))
            .unwrap_or(0);
        self.budget.map_or(u64::MAX, |b| b.saturating_sub(used))
    }
    fn used(&self) -> Vec<u64> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }
}
