//! Mini-batches over a [`Dataset`], in order or shuffled with a seeded RNG.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::Dataset;

/// The order in which [`Batches`] visits the records.
#[derive(Debug, Clone, Copy)]
pub enum BatchOrder {
    /// Record 0, 1, 2, ...
    Sequential,
    /// A permutation drawn from ChaCha8 seeded with this value, so runs are reproducible.
    Shuffled(u64),
}

/// An iterator of `(pixels, labels)` mini-batches; the last batch may be smaller.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
}

impl<'a> Batches<'a> {
    /// Batches of `batch_size` (at least 1) records of `data` in the given order.
    pub fn new(data: &'a Dataset, batch_size: usize, order: BatchOrder) -> Self {
        let mut indices: Vec<usize> = (0..data.len()).collect();
        if let BatchOrder::Shuffled(seed) = order {
            indices.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        Self {
            data,
            order: indices,
            batch_size: batch_size.max(1),
            pos: 0,
        }
    }

    /// Number of batches in total.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = (Vec<f32>, Vec<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let batch = self.data.gather(&self.order[self.pos..end]);
        self.pos = end;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_batches_are_a_reproducible_permutation() {
        let images = (0..10).map(|v| v as f32 / 10.0).collect();
        let d = Dataset::new("toy", [1, 1, 1], images, vec![0; 10], 1).unwrap();
        let collect = |seed| {
            Batches::new(&d, 3, BatchOrder::Shuffled(seed))
                .flat_map(|(x, _)| x)
                .collect::<Vec<_>>()
        };
        let a = collect(7);
        assert_eq!(a, collect(7));
        assert_ne!(a, collect(8));
        let mut sorted = a.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, d.images);
        assert_eq!(Batches::new(&d, 3, BatchOrder::Sequential).num_batches(), 4);
    }
}
