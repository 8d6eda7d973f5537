//! Median filtering, the second squeezer of feature squeezing (Xu, Evans and Qi 2018): each
//! value becomes the median of the K×K window around it (for even K the window reaches one
//! further up and left, and the upper median is taken, as SciPy's `median_filter` does;
//! borders are mirrored). The filter picks one input value per output, so it is computed as
//! a gather on the (tracked) input and its exact gradient flows to the chosen values.

use nnguard_model::tensor::{Int, Tensor, TensorData, to_vec};

use super::{InputTransform, misfit};
use crate::DefenseError;

/// Settings of [`MedianFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MedianConfig {
    /// Window side K (at least 1, at most the image's height and width).
    pub size: usize,
}

impl Default for MedianConfig {
    /// A 2×2 window (Xu et al.'s choice for MNIST and CIFAR-10).
    fn default() -> Self {
        Self { size: 2 }
    }
}

impl MedianConfig {
    /// Checks that the window fits the images.
    pub fn build(self, shape: [usize; 3]) -> Result<MedianFilter, DefenseError> {
        if self.size == 0 {
            return Err(DefenseError::config(
                "--transform",
                "median: the window size must be at least 1",
            ));
        }
        if self.size > shape[1] || self.size > shape[2] {
            return Err(misfit(
                &format!("median:{}", self.size),
                shape,
                format!(
                    "a {0}×{0} window is larger than the {1}×{2} image",
                    self.size, shape[1], shape[2]
                ),
            ));
        }
        Ok(MedianFilter { size: self.size })
    }
}

/// A K×K median filter.
#[derive(Debug, Clone)]
pub struct MedianFilter {
    size: usize,
}

/// Mirrors an index into `0..n` the way SciPy's `reflect` mode does (`d c b a | a b c d`).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

impl MedianFilter {
    /// For every output value of one `[H, W]` plane, the index of the input value it takes.
    fn plane_indices(&self, plane: &[f32], h: usize, w: usize, out: &mut Vec<i64>) {
        let k = self.size as isize;
        let before = k / 2;
        let rank = (self.size * self.size) / 2;
        let mut window: Vec<(f32, usize)> = Vec::with_capacity(self.size * self.size);
        for i in 0..h as isize {
            for j in 0..w as isize {
                window.clear();
                for di in 0..k {
                    for dj in 0..k {
                        let r = reflect(i + di - before, h);
                        let c = reflect(j + dj - before, w);
                        let idx = r * w + c;
                        window.push((plane[idx], idx));
                    }
                }
                window.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                out.push(window[rank].1 as i64);
            }
        }
    }
}

impl InputTransform for MedianFilter {
    fn name(&self) -> String {
        format!("median:{}", self.size)
    }

    fn is_differentiable(&self) -> bool {
        true
    }

    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let values = to_vec(x.clone().detach());
        let mut idx = Vec::with_capacity(values.len());
        if h * w > 0 {
            for plane in values.chunks(h * w) {
                self.plane_indices(plane, h, w, &mut idx);
            }
        }
        let device = x.device();
        let idx = Tensor::<3, Int>::from_data(TensorData::new(idx, [b, c, h * w]), &device);
        x.reshape([b, c, h * w])
            .gather(2, idx)
            .reshape([b, c, h, w])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnguard_model::tensor::cpu;

    #[test]
    fn matches_a_hand_computed_3x3_median_with_mirrored_borders() {
        let t = MedianConfig { size: 3 }.build([1, 3, 3]).unwrap();
        let v = vec![1.0f32, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0];
        let x = Tensor::<4>::from_data(TensorData::new(v, [1, 1, 3, 3]), &cpu());
        let y = to_vec(t.apply(x));
        // Centre: median of all nine values is 5.
        assert_eq!(y[4], 5.0);
        // Top-left window with mirrored borders: rows {0,0,1} × cols {0,0,1}:
        // 1 1 9 / 1 1 9 / 8 8 3 → sorted 1 1 1 1 3 8 8 9 9 → median 3.
        assert_eq!(y[0], 3.0);
    }

    #[test]
    fn even_windows_take_the_upper_median_of_the_window_up_and_left() {
        let t = MedianConfig { size: 2 }.build([1, 2, 2]).unwrap();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &cpu(),
        );
        // Output (1,1): window rows {0,1} × cols {0,1} → 1 2 3 4 → rank 2 → 3.
        // Output (0,0): rows {0,0} × cols {0,0} (mirrored) → all 1.
        assert_eq!(to_vec(t.apply(x)), vec![1.0, 2.0, 3.0, 3.0]);
    }
}
