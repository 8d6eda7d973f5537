//! `--shard I/N`: which slice of the inputs one job evaluates.
//!
//! Shards are cut on batch boundaries so that every batch, and with it every random start
//! and every per-batch decision, is the same as in an unsharded run; merged partial reports
//! therefore equal the unsharded report exactly.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// One shard of `count`, `index` 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = EvalError;
    /// Parses `I/N` (0-based `I < N`).
    fn from_str(s: &str) -> Result<Self, EvalError> {
        let bad = |reason: String| EvalError::config("--shard", reason);
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad(format!("expected I/N (e.g. 0/4), got {s:?}")))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| bad(format!("{i:?} is not a shard index")))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("{n:?} is not a shard count")))?;
        Shard::new(index, count)
    }
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, EvalError> {
        if count == 0 {
            return Err(EvalError::config(
                "--shard",
                "the shard count must be at least 1",
            ));
        }
        if index >= count {
            return Err(EvalError::config(
                "--shard",
                format!("index {index} is not below the count {count} (indices are 0-based)"),
            ));
        }
        Ok(Self { index, count })
    }

    /// The shard named by a job scheduler, if any: Kubernetes indexed jobs
    /// (`JOB_COMPLETION_INDEX`, with the count from `shards` or `NNGUARD_SHARDS`) or Slurm
    /// job arrays (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`, or of `shards`).
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        shards: Option<usize>,
    ) -> Result<Option<Self>, EvalError> {
        let num = |name: &'static str| -> Result<Option<usize>, EvalError> {
            match env(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    EvalError::config("--shard", format!("{name}={v:?} is not a number"))
                }),
            }
        };
        let count = |fallback: Option<usize>| {
            shards.or(fallback).ok_or_else(|| {
                EvalError::config(
                    "--shards",
                    "a job index is set but not the number of shards; pass --shards N",
                )
            })
        };
        if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let n = count(num("NNGUARD_SHARDS")?)?;
            return Shard::new(i, n).map(Some);
        }
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = count(num("SLURM_ARRAY_TASK_COUNT")?)?;
            return Shard::new(id.saturating_sub(min), n).map(Some);
        }
        Ok(None)
    }

    /// The inputs of this shard out of `len`, cut on multiples of `batch` so that batches
    /// are the same as in an unsharded run. Shards cover every input exactly once.
    pub fn range(&self, len: usize, batch: usize) -> Range<usize> {
        let batch = batch.max(1);
        let batches = len.div_ceil(batch);
        let lo = batches * self.index / self.count;
        let hi = batches * (self.index + 1) / self.count;
        (lo * batch).min(len)..(hi * batch).min(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_flag_name() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("--shard"), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_cover_every_input_once_on_batch_boundaries() {
        for (len, batch, n) in [(1000, 250, 3), (10, 4, 5), (7, 100, 2), (0, 3, 2)] {
            let mut next = 0;
            for i in 0..n {
                let r = Shard::new(i, n).unwrap().range(len, batch);
                assert_eq!(r.start, next, "{len} {batch} {n}");
                assert!(r.start.is_multiple_of(batch) || r.start == len);
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }

    #[test]
    fn reads_kubernetes_and_slurm_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_env(env(&[]), None).unwrap(), None);
        assert_eq!(
            Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")]), Some(3)).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        let e = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")]), None).unwrap_err();
        assert!(e.to_string().contains("--shards"));
        assert_eq!(
            Shard::from_env(
                env(&[
                    ("SLURM_ARRAY_TASK_ID", "5"),
                    ("SLURM_ARRAY_TASK_MIN", "4"),
                    ("SLURM_ARRAY_TASK_COUNT", "3")
                ]),
                None
            )
            .unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
    }
}
