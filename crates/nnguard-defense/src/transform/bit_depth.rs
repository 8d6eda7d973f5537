//! Colour-depth reduction, the first squeezer of feature squeezing (Xu, Evans and Qi 2018,
//! "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"): every value
//! is rounded to one of `2^bits` evenly spaced levels of the input range. Rounding has a zero
//! gradient almost everywhere, so attacks go through it with BPDA.

use nnguard_model::tensor::Tensor;

use super::InputTransform;
use crate::DefenseError;

/// Settings of [`BitDepth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitDepthConfig {
    /// Bits per value, 1 to 8.
    pub bits: u32,
}

impl Default for BitDepthConfig {
    /// 4 bits (16 levels).
    fn default() -> Self {
        Self { bits: 4 }
    }
}

impl BitDepthConfig {
    /// Checks `1 ≤ bits ≤ 8` and a non-empty input range.
    pub fn build(self, _shape: [usize; 3], bounds: (f32, f32)) -> Result<BitDepth, DefenseError> {
        if !(1..=8).contains(&self.bits) {
            return Err(DefenseError::config(
                "--transform",
                format!("squeeze: bits must be 1 to 8, got {}", self.bits),
            ));
        }
        if !(bounds.0.is_finite() && bounds.1.is_finite() && bounds.0 < bounds.1) {
            return Err(DefenseError::config(
                "--transform",
                format!("squeeze: the input range {bounds:?} is empty"),
            ));
        }
        Ok(BitDepth {
            levels: ((1u32 << self.bits) - 1) as f32,
            bits: self.bits,
            bounds,
        })
    }
}

/// Rounds every value to `2^bits` levels of the input range.
#[derive(Debug, Clone)]
pub struct BitDepth {
    bits: u32,
    levels: f32,
    bounds: (f32, f32),
}

impl InputTransform for BitDepth {
    fn name(&self) -> String {
        format!("squeeze:bits={}", self.bits)
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let (lo, hi) = self.bounds;
        let span = hi - lo;
        x.clamp(lo, hi)
            .sub_scalar(lo)
            .mul_scalar(self.levels / span)
            .round()
            .mul_scalar(span / self.levels)
            .add_scalar(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::{TensorData, cpu, to_vec};

    #[test]
    fn rounds_to_evenly_spaced_levels() {
        let t = BitDepthConfig { bits: 1 }
            .build([1, 1, 4], (0.0, 1.0))
            .unwrap();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.1f32, 0.49, 0.51, 0.9], [1, 1, 1, 4]),
            &cpu(),
        );
        assert_eq!(to_vec(t.apply(x.clone())), vec![0.0, 0.0, 1.0, 1.0]);
        let t = BitDepthConfig { bits: 2 }
            .build([1, 1, 4], (0.0, 1.0))
            .unwrap();
        // Levels 0, 1/3, 2/3, 1.
        let y = to_vec(t.apply(x));
        let want = [0.0f32, 1.0 / 3.0, 2.0 / 3.0, 1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}
