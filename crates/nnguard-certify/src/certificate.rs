//! [`Certifier`]: the common face of every certification method, per-input certificates
//! that reports and the evaluation harness consume without knowing the method.

use nnguard_model::{Classifier, Model};
use serde::{Deserialize, Serialize};

use crate::bounds::{BoundNet, Verifier};
use crate::error::CertifyError;
use crate::smoothing::Smoothing;

/// The norm a certified radius is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertNorm {
    /// Euclidean (randomized smoothing).
    L2,
    /// Largest absolute change of any pixel (IBP, CROWN).
    Linf,
}

/// What a certifier guarantees for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// The class guaranteed on the whole ball, or `None` (abstain / not verified).
    pub class: Option<u32>,
    /// Radius of the ball around the input (0 without a certificate).
    pub radius: f64,
    /// The norm of the ball.
    pub norm: CertNorm,
    /// Probability with which the guarantee holds: 1 − α for smoothing, 1 for bounds.
    pub confidence: f64,
}

/// A certification method: per-input certificates for a batch of images.
pub trait Certifier<M: ?Sized> {
    /// Certificates for `images` (contiguous, `C·H·W` values each) with their `labels`;
    /// `first_index` is the position of the first image in the whole data set (randomised
    /// methods key their randomness on it, so shards reproduce an unsharded run).
    fn certify_batch(
        &self,
        model: &M,
        images: &[f32],
        labels: &[u32],
        first_index: usize,
    ) -> Result<Vec<Certificate>, CertifyError>;
}

impl<M: Classifier + ?Sized> Certifier<M> for Smoothing {
    fn certify_batch(
        &self,
        model: &M,
        images: &[f32],
        labels: &[u32],
        first_index: usize,
    ) -> Result<Vec<Certificate>, CertifyError> {
        let per: usize = model.input_shape().iter().product();
        if per == 0 || images.len() != per * labels.len() {
            return Err(CertifyError::InputShape {
                expected: model.input_shape(),
                found: images.len(),
            });
        }
        images
            .chunks(per)
            .enumerate()
            .map(|(i, img)| {
                let c = self.certify(model, img, (first_index + i) as u64)?;
                Ok(Certificate {
                    class: c.class,
                    radius: c.radius,
                    norm: CertNorm::L2,
                    confidence: 1.0 - self.config().alpha,
                })
            })
            .collect()
    }
}

impl Certifier<Model> for Verifier {
    /// A verified input is certified for its label at radius ε; others get no certificate.
    fn certify_batch(
        &self,
        model: &Model,
        images: &[f32],
        labels: &[u32],
        _first_index: usize,
    ) -> Result<Vec<Certificate>, CertifyError> {
        let net = BoundNet::from_model(model, self.config().method)?;
        let verdicts = self.verify(&net, images, labels, &mut |_| {})?;
        Ok(verdicts
            .iter()
            .zip(labels)
            .map(|(v, &y)| Certificate {
                class: v.verified.then_some(y),
                radius: if v.verified {
                    f64::from(self.config().eps)
                } else {
                    0.0
                },
                norm: CertNorm::Linf,
                confidence: 1.0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::{BoundMethod, VerifierConfig};
    use nnguard_model::arch::{Arch, Network};
    use nnguard_model::tensor::cpu;

    #[test]
    fn both_methods_give_certificates_through_one_trait() {
        let device = cpu();
        let net = Network::init_seeded(Arch::Mlp, [1, 4, 4], 3, 0, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        let model = Model::from_network(net, [1, 4, 4], 3, None);
        let images = vec![0.5f32; 2 * 16];
        let logits = model.logits_vec(&images).unwrap_or_default();
        let label = nnguard_model::tensor::argmax_rows(&logits, 3)[0];
        let labels = [label, label];
        let certifiers: Vec<Box<dyn Certifier<Model>>> = vec![
            Box::new(
                crate::SmoothingConfig {
                    n0: 10,
                    n: 50,
                    ..Default::default()
                }
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            ),
            Box::new(
                VerifierConfig {
                    method: BoundMethod::Crown,
                    eps: 0.0,
                    batch: 2,
                }
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        ];
        for c in certifiers {
            let certs = c
                .certify_batch(&model, &images, &labels, 0)
                .unwrap_or_default();
            assert_eq!(certs.len(), 2);
        }
        // At ε = 0 the verifier certifies exactly the correctly classified inputs.
        let v = VerifierConfig {
            method: BoundMethod::Ibp,
            eps: 0.0,
            batch: 2,
        }
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
        let certs = v
            .certify_batch(&model, &images, &labels, 0)
            .unwrap_or_default();
        assert!(
            certs
                .iter()
                .all(|c| c.class == Some(label) && c.norm == CertNorm::Linf)
        );
    }
}
