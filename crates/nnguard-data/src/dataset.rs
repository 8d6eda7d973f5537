//! The in-memory data set every loader produces.

use crate::{DataError, Result};

/// Which part of a data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split.
    Train,
    /// The held-out test split.
    Test,
}

impl Split {
    /// The split's name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split {other:?} (expected train or test)")),
        }
    }
}

/// Labelled images in memory: pixels as `f32` in `[0, 1]`, NCHW, one label per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A human-readable name, e.g. `fashion-mnist/test`.
    pub name: String,
    /// Shape of one image: channels, height, width.
    pub shape: [usize; 3],
    /// All pixels, image after image, each `C*H*W` long.
    pub images: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<u32>,
    /// Number of classes; every label is below it.
    pub num_classes: usize,
    /// Optional class names, `num_classes` long.
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Builds a data set after checking that sizes and labels are consistent.
    pub fn new(
        name: impl Into<String>,
        shape: [usize; 3],
        images: Vec<f32>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self> {
        let name = name.into();
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != per * labels.len() {
            return Err(DataError::malformed(
                &name,
                format!(
                    "{} pixel values do not make {} images of shape {:?}",
                    images.len(),
                    labels.len(),
                    shape
                ),
            ));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: name.into(),
                index,
                label: i64::from(label),
                num_classes,
            });
        }
        Ok(Self {
            name,
            shape,
            images,
            labels,
            num_classes,
            class_names: None,
        })
    }

    /// Attaches class names (ignored unless there is one per class).
    pub fn with_class_names(mut self, names: &[&str]) -> Self {
        if names.len() == self.num_classes {
            self.class_names = Some(names.iter().map(|s| s.to_string()).collect());
        }
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of values in one image (`C*H*W`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The name of class `c`, or its number.
    pub fn class_name(&self, c: usize) -> String {
        self.class_names
            .as_ref()
            .and_then(|names| names.get(c).cloned())
            .unwrap_or_else(|| c.to_string())
    }

    /// Keeps the first `n` images (all of them if `n` is larger).
    pub fn take(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
        self
    }

    /// A copy of the images with indices in `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        let n = self.image_len();
        Self {
            name: self.name.clone(),
            shape: self.shape,
            images: self.images[start * n..end * n].to_vec(),
            labels: self.labels[start..end].to_vec(),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// The contiguous slice of shard `index` out of `count` (both as in `--shard I/N`, 0-based
    /// index). Shards cover the data set exactly once and differ in size by at most one.
    pub fn shard_range(&self, index: usize, count: usize) -> std::ops::Range<usize> {
        let count = count.max(1);
        let len = self.len();
        let start = len * index.min(count) / count;
        let end = len * (index + 1).min(count) / count;
        start..end
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Copies the images at `indices` into one contiguous NCHW buffer with their labels.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let n = self.image_len();
        let mut x = Vec::with_capacity(indices.len() * n);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(self.image(i));
            y.push(self.labels[i]);
        }
        (x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let images = (0..n * 4).map(|v| v as f32 / (n * 4) as f32).collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        Dataset::new("toy", [1, 2, 2], images, labels, 3).unwrap()
    }

    #[test]
    fn new_rejects_labels_outside_the_classes() {
        let err = Dataset::new("toy", [1, 1, 1], vec![0.0, 0.0], vec![0, 3], 3).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 3,
                ..
            }
        ));
    }

    #[test]
    fn new_rejects_pixel_count_that_does_not_match() {
        assert!(Dataset::new("toy", [1, 2, 2], vec![0.0; 7], vec![0, 1], 2).is_err());
    }

    #[test]
    fn shards_cover_every_record_exactly_once() {
        let d = toy(10);
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.extend(d.shard_range(i, 3));
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(d.shard_range(0, 3), 0..3);
        assert_eq!(d.shard_range(2, 3), 6..10);
    }

    #[test]
    fn take_slice_and_gather_keep_images_with_their_labels() {
        let d = toy(5);
        let s = d.slice(1..3);
        assert_eq!(s.labels, vec![1, 2]);
        assert_eq!(s.image(0), d.image(1));
        let (x, y) = d.gather(&[4, 0]);
        assert_eq!(y, vec![1, 0]);
        assert_eq!(&x[..4], d.image(4));
        assert_eq!(d.clone().take(2).len(), 2);
        assert_eq!(d.class_counts(), vec![2, 2, 1]);
    }
}
