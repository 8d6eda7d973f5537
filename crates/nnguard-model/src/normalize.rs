//! Per-channel normalisation inside the model wrapper, so that attacks, bounds and
//! certificates all live in pixel space `[0, 1]` while the network sees `(x − mean) / std`.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::tensor::{Device, Tensor, TensorData};

/// Per-channel mean and standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// One mean per channel (or one for all).
    pub mean: Vec<f32>,
    /// One standard deviation per channel (or one for all).
    pub std: Vec<f32>,
}

impl Normalize {
    /// Parses `MEAN,STD`, where each side is one number or a `/`-separated list with one
    /// number per channel: `0.2860,0.3530` or `0.4914/0.4822/0.4465,0.2470/0.2435/0.2616`.
    pub fn parse(spec: &str) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::InvalidParameter {
            name: "--normalize",
            reason,
        };
        let (m, s) = spec
            .split_once(',')
            .ok_or_else(|| bad(format!("expected MEAN,STD, got {spec:?}")))?;
        let list = |part: &str| -> Result<Vec<f32>, ModelError> {
            part.split('/')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| bad(format!("{v:?} is not a number")))
                })
                .collect()
        };
        let n = Self {
            mean: list(m)?,
            std: list(s)?,
        };
        n.check(None)?;
        Ok(n)
    }

    /// Checks finiteness, positive standard deviations, and (given `channels`) that there is
    /// one value per channel or a single shared one.
    pub fn check(&self, channels: Option<usize>) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::InvalidParameter {
            name: "--normalize",
            reason,
        };
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(bad(format!(
                "{} means but {} standard deviations",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|v| !v.is_finite())
            || self.std.iter().any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(bad(
                "means must be finite and standard deviations positive".into()
            ));
        }
        if let Some(c) = channels
            && self.mean.len() != 1
            && self.mean.len() != c
        {
            return Err(bad(format!(
                "{} values given but the model's input has {c} channels",
                self.mean.len()
            )));
        }
        Ok(())
    }

    /// `(x − mean) / std` per channel of an NCHW batch.
    pub fn apply(&self, x: Tensor<4>, device: &Device) -> Tensor<4> {
        let c = x.dims()[1];
        let expand = |v: &[f32]| -> Tensor<4> {
            let vals: Vec<f32> = (0..c)
                .map(|i| v[if v.len() == 1 { 0 } else { i }])
                .collect();
            Tensor::from_data(TensorData::new(vals, [1, c, 1, 1]), device)
        };
        x.sub(expand(&self.mean)).div(expand(&self.std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{cpu, to_vec};

    #[test]
    fn parses_and_applies_per_channel_values() {
        let n = Normalize::parse("0.5/0.25,0.5/2").unwrap();
        let d = cpu();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 0.25], [1, 2, 1, 1]), &d);
        assert_eq!(to_vec(n.apply(x, &d)), vec![1.0, 0.0]);
        assert!(n.check(Some(3)).is_err());
        for bad in ["0.5", "a,b", "0.5,0", "0.5,-1", "0.1/0.2,0.3"] {
            assert!(Normalize::parse(bad).is_err(), "{bad}");
        }
    }
}
