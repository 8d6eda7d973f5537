//! Batched prediction over a data set and the accuracy figures users ask for first.

use nnguard_data::{BatchOrder, Batches, Dataset};
use serde::Serialize;

use crate::error::ModelError;
use crate::tensor::{argmax_rows, batch_tensor, to_vec};
use crate::traits::Classifier;

/// Checks that a data set's images and labels fit a model.
pub fn check_fit(model: &dyn Classifier, data: &Dataset) -> Result<(), ModelError> {
    if data.shape != model.input_shape() {
        let [c, h, w] = data.shape;
        let [mc, mh, mw] = model.input_shape();
        return Err(ModelError::InvalidParameter {
            name: "--data",
            reason: format!(
                "{} has {c}×{h}×{w} images but the model takes {mc}×{mh}×{mw} ([{mc}, {mh}, {mw}])",
                data.name
            ),
        });
    }
    if data.num_classes > model.num_classes() {
        return Err(ModelError::InvalidParameter {
            name: "--data",
            reason: format!(
                "{} has labels up to {} but the model has only {} classes",
                data.name,
                data.num_classes - 1,
                model.num_classes()
            ),
        });
    }
    Ok(())
}

/// Predicted class for every image of `data`, in order, `batch` images at a time; `progress`
/// is called with the number of images done after each batch.
pub fn predict(
    model: &dyn Classifier,
    data: &Dataset,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u32>, ModelError> {
    check_fit(model, data)?;
    let k = model.num_classes();
    let mut out = Vec::with_capacity(data.len());
    for (x, _) in Batches::new(data, batch, BatchOrder::Sequential) {
        let logits = to_vec(model.logits(batch_tensor(&x, data.shape, model.device())));
        out.extend(argmax_rows(&logits, k));
        progress(out.len());
    }
    Ok(out)
}

/// Accuracy overall and per class, with the confusion matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    /// Number of images.
    pub n: usize,
    /// Correctly classified images.
    pub correct: usize,
    /// `correct / n`.
    pub accuracy: f64,
    /// Accuracy of each class (NaN-free: classes without images report 0 with `support` 0).
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// One class's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// Class index.
    pub class: usize,
    /// Class name (or its index).
    pub name: String,
    /// Images of this class.
    pub support: usize,
    /// Correctly classified images of this class.
    pub correct: usize,
    /// `correct / support` (0 when there is no support).
    pub accuracy: f64,
}

impl Accuracy {
    /// Scores `predicted` against `labels`; `classes` is the number of classes and
    /// `name(c)` names class `c`.
    pub fn score(
        predicted: &[u32],
        labels: &[u32],
        classes: usize,
        name: impl Fn(usize) -> String,
    ) -> Self {
        let mut confusion = vec![vec![0usize; classes]; classes];
        for (&p, &l) in predicted.iter().zip(labels) {
            if (l as usize) < classes && (p as usize) < classes {
                confusion[l as usize][p as usize] += 1;
            }
        }
        let per_class: Vec<ClassAccuracy> = (0..classes)
            .map(|c| {
                let support: usize = confusion[c].iter().sum();
                let correct = confusion[c][c];
                ClassAccuracy {
                    class: c,
                    name: name(c),
                    support,
                    correct,
                    accuracy: if support == 0 {
                        0.0
                    } else {
                        correct as f64 / support as f64
                    },
                }
            })
            .collect();
        let n = predicted.len().min(labels.len());
        let correct = per_class.iter().map(|c| c.correct).sum();
        Self {
            n,
            correct,
            accuracy: if n == 0 {
                0.0
            } else {
                correct as f64 / n as f64
            },
            per_class,
            confusion,
        }
    }
}

/// Predicts every image of `data` and scores the predictions.
pub fn evaluate_accuracy(
    model: &dyn Classifier,
    data: &Dataset,
    batch: usize,
) -> Result<Accuracy, ModelError> {
    let predicted = predict(model, data, batch, |_| {})?;
    Ok(Accuracy::score(
        &predicted,
        &data.labels,
        model.num_classes(),
        |c| data.class_name(c),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_hand() {
        let a = Accuracy::score(&[0, 1, 1, 2], &[0, 1, 2, 2], 3, |c| c.to_string());
        assert_eq!((a.n, a.correct), (4, 3));
        assert_eq!(a.accuracy, 0.75);
        assert_eq!(a.per_class[2].accuracy, 0.5);
        assert_eq!(a.confusion[2], vec![0, 1, 1]);
    }
}
