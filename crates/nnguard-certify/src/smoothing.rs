//! Randomized smoothing (Cohen, Rosenfeld and Kolter 2019, "Certified Adversarial Robustness
//! via Randomized Smoothing"): the smoothed classifier g(x) = argmax_c P(f(x + δ) = c) with
//! δ ~ N(0, σ²I) is robust within the L2 radius σ·Φ⁻¹(p_A) whenever the top class has
//! probability at least p_A > ½.
//!
//! [`Smoothing::predict`] is the paper's PREDICT (abstain unless a two-sided binomial test
//! separates the top two classes at level α) and [`Smoothing::certify`] its CERTIFY (choose
//! the class on `n0` samples, bound its probability from below on `n` fresh samples with a
//! one-sided Clopper–Pearson bound, abstain when the bound is not above ½).
//!
//! Noise is drawn in batches of `batch` images per forward pass. Every noise sample has its
//! own ChaCha8 stream keyed by (seed, image index, phase, sample number), so results do not
//! depend on the batch size, the number of threads or how the data set is sharded, and noise
//! is generated on all cores while the model's batch runs on Burn's multi-threaded backend.
//!
//! ```
//! use nnguard_certify::smoothing::SmoothingConfig;
//! let err = SmoothingConfig { sigma: 0.0, ..Default::default() }.build().unwrap_err();
//! assert!(err.to_string().starts_with("--sigma"));
//! ```

use std::sync::Mutex;

use nnguard_model::tensor::{Tensor, TensorData, argmax_rows, batch_tensor, to_vec};
use nnguard_model::{Classifier, Differentiable, ModelError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::CertifyError;
use crate::stats::{binomial_test_half, clopper_pearson_lower, normal_quantile};

/// Settings of [`Smoothing`]; the defaults are those of Cohen et al. (2019).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothingConfig {
    /// Standard deviation σ of the Gaussian noise (pixel scale).
    pub sigma: f32,
    /// Noise samples used to choose the top class in CERTIFY.
    pub n0: usize,
    /// Noise samples used to estimate (CERTIFY) or test (PREDICT) the top class.
    pub n: usize,
    /// Failure probability α: a certificate or a prediction is wrong with probability ≤ α.
    pub alpha: f64,
    /// Noisy copies evaluated per forward pass.
    pub batch: usize,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SmoothingConfig {
    /// σ = 0.25, n0 = 100, α = 0.001 as in Cohen et al.; n = 10 000 (the paper's 100 000
    /// costs ten times the time for radii only slightly larger), batches of 1000, seed 0.
    fn default() -> Self {
        Self {
            sigma: 0.25,
            n0: 100,
            n: 10_000,
            alpha: 0.001,
            batch: 1000,
            seed: 0,
        }
    }
}

impl SmoothingConfig {
    /// Checks the parameters, naming the flag of the first invalid one.
    pub fn build(self) -> Result<Smoothing, CertifyError> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(CertifyError::config(
                "--sigma",
                format!("must be a finite number > 0, got {}", self.sigma),
            ));
        }
        if self.n0 == 0 {
            return Err(CertifyError::config(
                "--n0",
                "must be at least 1 (the selection samples choose the class to certify)",
            ));
        }
        if self.n < self.n0 {
            return Err(CertifyError::config(
                "--n",
                format!("must be at least --n0 ({}), got {}", self.n0, self.n),
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(CertifyError::config(
                "--alpha",
                format!("must lie strictly between 0 and 1, got {}", self.alpha),
            ));
        }
        if self.batch == 0 {
            return Err(CertifyError::config("--batch", "must be at least 1"));
        }
        Ok(Smoothing { config: self })
    }
}

/// Which draw of noise samples a count comes from; each has its own random streams, so
/// selection and estimation samples are independent as CERTIFY requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// CERTIFY's `n0` selection samples.
    Select,
    /// CERTIFY's `n` estimation samples.
    Estimate,
    /// PREDICT's `n` samples.
    Predict,
}

impl Phase {
    fn key(self) -> u64 {
        match self {
            Phase::Select => 1,
            Phase::Estimate => 2,
            Phase::Predict => 3,
        }
    }
}

/// The outcome of PREDICT for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothedPrediction {
    /// The predicted class, or `None` when PREDICT abstains.
    pub class: Option<u32>,
    /// Samples on which the base classifier chose each class.
    pub counts: Vec<u64>,
    /// p-value of the binomial test between the top two classes.
    pub p_value: f64,
}

/// The outcome of CERTIFY for one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothedCertificate {
    /// The certified class, or `None` when CERTIFY abstains (p_A ≤ ½).
    pub class: Option<u32>,
    /// Certified L2 radius σ·Φ⁻¹(p_A) (0 when abstaining).
    pub radius: f64,
    /// The class chosen on the selection samples (certified or not).
    pub selected: u32,
    /// Estimation samples on which the base classifier chose `selected`.
    pub count: u64,
    /// Estimation samples drawn.
    pub n: u64,
    /// The (1 − α) Clopper–Pearson lower bound p_A on the probability of `selected`.
    pub p_lower: f64,
}

/// The certified L2 radius σ·Φ⁻¹(p_A) of Cohen et al. (2019, Theorem 1), or `None` when
/// p_A ≤ ½ (no certificate: the smoothed classifier abstains).
///
/// ```
/// use nnguard_certify::smoothing::radius;
/// assert_eq!(radius(0.5, 0.25), None);
/// let r = radius(0.975, 0.5).unwrap();
/// assert!((r - 0.5 * 1.959963984540054).abs() < 1e-12);
/// ```
pub fn radius(p_lower: f64, sigma: f64) -> Option<f64> {
    (p_lower > 0.5).then(|| sigma * normal_quantile(p_lower))
}

/// A built randomized-smoothing certifier.
#[derive(Debug, Clone)]
pub struct Smoothing {
    config: SmoothingConfig,
}

impl Smoothing {
    /// The settings.
    pub fn config(&self) -> &SmoothingConfig {
        &self.config
    }

    /// How often the base classifier `model` chooses each class over `num` noisy copies of
    /// `image` (one image, `C·H·W` values). `index` identifies the image (its position in the
    /// whole data set) so that every image gets its own noise.
    pub fn counts<M: Classifier + ?Sized>(
        &self,
        model: &M,
        image: &[f32],
        index: u64,
        phase: Phase,
        num: usize,
    ) -> Result<Vec<u64>, CertifyError> {
        let shape = model.input_shape();
        let per: usize = shape.iter().product();
        if per == 0 || image.len() != per {
            return Err(CertifyError::InputShape {
                expected: shape,
                found: image.len(),
            });
        }
        let classes = model.num_classes();
        let mut counts = vec![0u64; classes];
        let sigma = self.config.sigma;
        let mut done = 0usize;
        let mut buf: Vec<f32> = Vec::new();
        while done < num {
            let b = self.config.batch.min(num - done);
            buf.resize(b * per, 0.0);
            buf.par_chunks_mut(per).enumerate().for_each(|(j, row)| {
                let mut rng = noise_rng(self.config.seed, index, phase, (done + j) as u64);
                for (v, &x) in row.iter_mut().zip(image) {
                    let z: f32 = rng.sample(StandardNormal);
                    *v = x + sigma * z;
                }
            });
            let logits = to_vec(model.logits(batch_tensor(&buf, shape, model.device())));
            if logits.len() != b * classes {
                return Err(CertifyError::Model(ModelError::InputShape {
                    expected: shape,
                    found: vec![b, classes, logits.len()],
                }));
            }
            for c in argmax_rows(&logits, classes) {
                counts[c as usize] += 1;
            }
            done += b;
        }
        Ok(counts)
    }

    /// PREDICT (Cohen et al. 2019, §3.2): the top class on `n` noisy samples, or abstention
    /// when the two-sided binomial test between the top two counts has p-value > α. It
    /// returns a class other than g(x) with probability at most α.
    pub fn predict<M: Classifier + ?Sized>(
        &self,
        model: &M,
        image: &[f32],
        index: u64,
    ) -> Result<SmoothedPrediction, CertifyError> {
        let counts = self.counts(model, image, index, Phase::Predict, self.config.n)?;
        let (top, second) = top_two(&counts);
        let (na, nb) = (counts[top], second.map_or(0, |s| counts[s]));
        let p_value = binomial_test_half(na, na + nb);
        Ok(SmoothedPrediction {
            class: (p_value <= self.config.alpha).then_some(top as u32),
            counts,
            p_value,
        })
    }

    /// CERTIFY (Cohen et al. 2019, §3.2): choose ĉ_A on `n0` samples, count it on `n`
    /// independent samples, bound its probability from below by the one-sided
    /// Clopper–Pearson bound p_A at level α, and certify the radius σ·Φ⁻¹(p_A) if p_A > ½.
    /// With probability at least 1 − α, a returned class is g(x) and g is constant on the
    /// L2 ball of the returned radius.
    pub fn certify<M: Classifier + ?Sized>(
        &self,
        model: &M,
        image: &[f32],
        index: u64,
    ) -> Result<SmoothedCertificate, CertifyError> {
        let c = &self.config;
        let select = self.counts(model, image, index, Phase::Select, c.n0)?;
        let (top, _) = top_two(&select);
        let estimate = self.counts(model, image, index, Phase::Estimate, c.n)?;
        let count = estimate[top];
        let n = c.n as u64;
        let p_lower = clopper_pearson_lower(count, n, c.alpha);
        let r = radius(p_lower, f64::from(c.sigma));
        Ok(SmoothedCertificate {
            class: r.map(|_| top as u32),
            radius: r.unwrap_or(0.0),
            selected: top as u32,
            count,
            n,
            p_lower,
        })
    }
}

/// The random stream of one noise sample.
fn noise_rng(seed: u64, index: u64, phase: Phase, sample: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(&phase.key().to_le_bytes());
    key[24..].copy_from_slice(&sample.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Indices of the largest and second-largest counts (ties go to the lower class index).
fn top_two(counts: &[u64]) -> (usize, Option<usize>) {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    (order.first().copied().unwrap_or(0), order.get(1).copied())
}

/// One row of the certified-accuracy table: the fraction of inputs whose smoothed
/// prediction is correct with a certified radius of at least `radius`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The radius.
    pub radius: f64,
    /// Inputs certified correct at this radius.
    pub certified: usize,
    /// `certified` over all inputs.
    pub certified_accuracy: f64,
}

/// Certified accuracy at each of `radii` (Cohen et al. 2019, §4) for certificates given as
/// (true label, certified class or abstention, radius).
///
/// ```
/// use nnguard_certify::smoothing::certified_accuracy;
/// let certs = [(1, Some(1), 0.6), (2, Some(2), 0.2), (0, Some(3), 0.9), (4, None, 0.0)];
/// let curve = certified_accuracy(&certs, &[0.0, 0.5, 1.0]);
/// let acc: Vec<f64> = curve.iter().map(|p| p.certified_accuracy).collect();
/// assert_eq!(acc, vec![0.5, 0.25, 0.0]);
/// ```
pub fn certified_accuracy(certs: &[(u32, Option<u32>, f64)], radii: &[f64]) -> Vec<CurvePoint> {
    let total = certs.len().max(1) as f64;
    radii
        .iter()
        .map(|&r| {
            let certified = certs
                .iter()
                .filter(|(label, class, radius)| *class == Some(*label) && *radius >= r)
                .count();
            CurvePoint {
                radius: r,
                certified,
                certified_accuracy: certified as f64 / total,
            }
        })
        .collect()
}

/// Radii 0, `step`, 2·`step`, … up to the first multiple of `step` at or above `max`.
pub fn radius_grid(max: f64, step: f64) -> Vec<f64> {
    if !(step.is_finite() && step > 0.0) {
        return vec![0.0];
    }
    let top = if max.is_finite() && max > 0.0 {
        (max / step).ceil() as usize
    } else {
        0
    };
    (0..=top.min(10_000)).map(|i| i as f64 * step).collect()
}

/// The smoothed soft classifier G(x) = E_δ[softmax f(x + δ)], estimated on `samples` noise
/// draws per forward pass, with log G as its logits: the differentiable surrogate that
/// attacks on smoothed classifiers ascend (Salman et al. 2019, "Provably Robust Deep Learning
/// via Adversarially Trained Smoothed Classifiers", SmoothAdv). Fresh noise is drawn on every
/// call, from a seeded ChaCha stream.
pub struct SmoothedSoft<'a, M: ?Sized> {
    base: &'a M,
    sigma: f32,
    samples: usize,
    rng: Mutex<ChaCha8Rng>,
}

impl<'a, M: Differentiable + ?Sized> SmoothedSoft<'a, M> {
    /// Wraps `base` with noise of standard deviation `sigma`, averaging over `samples` draws.
    pub fn new(base: &'a M, sigma: f32, samples: usize, seed: u64) -> Result<Self, CertifyError> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(CertifyError::config(
                "--sigma",
                format!("must be a finite number > 0, got {sigma}"),
            ));
        }
        if samples == 0 {
            return Err(CertifyError::config("--samples", "must be at least 1"));
        }
        Ok(Self {
            base,
            sigma,
            samples,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }

    fn noise(&self, len: usize) -> Vec<f32> {
        // A poisoned lock only means another thread panicked mid-draw; the stream is intact.
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        (0..len)
            .map(|_| self.sigma * rng.sample::<f32, _>(StandardNormal))
            .collect()
    }
}

impl<M: Differentiable + ?Sized> Classifier for SmoothedSoft<'_, M> {
    nnguard_model::delegate_classifier_geometry!(base);
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x.without_autodiff())
    }
}

impl<M: Differentiable + ?Sized> Differentiable for SmoothedSoft<'_, M> {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let m = self.samples;
        let noise = Tensor::<4>::from_data(
            TensorData::new(self.noise(m * b * c * h * w), [m * b, c, h, w]),
            self.base.device(),
        );
        // Rows ordered (sample, image): copy s of image i is row s·b + i.
        let noisy = x.repeat_dim(0, m).add(noise);
        let probs = burn::tensor::activation::softmax(self.base.forward(noisy), 1);
        let k = probs.dims()[1];
        let mean: Tensor<2> = probs.reshape([m, b, k]).mean_dim(0).reshape([b, k]);
        mean.clamp_min(1e-30).log()
    }

    fn layer_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn features(&self, _x: Tensor<4>, layer: &str) -> Result<Tensor<2>, ModelError> {
        Err(ModelError::UnknownLayer {
            name: layer.into(),
            available: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_each_invalid_parameter_by_flag() {
        let base = SmoothingConfig::default();
        let cases = [
            (
                SmoothingConfig {
                    sigma: -0.1,
                    ..base.clone()
                },
                "--sigma",
            ),
            (
                SmoothingConfig {
                    sigma: f32::NAN,
                    ..base.clone()
                },
                "--sigma",
            ),
            (
                SmoothingConfig {
                    sigma: f32::INFINITY,
                    ..base.clone()
                },
                "--sigma",
            ),
            (
                SmoothingConfig {
                    n0: 0,
                    ..base.clone()
                },
                "--n0",
            ),
            (
                SmoothingConfig {
                    n: 50,
                    n0: 100,
                    ..base.clone()
                },
                "--n",
            ),
            (
                SmoothingConfig {
                    alpha: 0.0,
                    ..base.clone()
                },
                "--alpha",
            ),
            (
                SmoothingConfig {
                    alpha: 1.0,
                    ..base.clone()
                },
                "--alpha",
            ),
            (
                SmoothingConfig {
                    alpha: f64::NAN,
                    ..base.clone()
                },
                "--alpha",
            ),
            (
                SmoothingConfig {
                    batch: 0,
                    ..base.clone()
                },
                "--batch",
            ),
        ];
        for (cfg, flag) in cases {
            match cfg.clone().build() {
                Err(CertifyError::Config { flag: f, .. }) => assert_eq!(f, flag, "{cfg:?}"),
                other => panic!("{cfg:?} gave {other:?}"),
            }
        }
        assert!(base.build().is_ok());
    }

    #[test]
    fn radius_matches_hand_computed_values() {
        // Φ⁻¹(0.975) = 1.959963984540054, Φ⁻¹(0.9) = 1.2815515655446004 (tables).
        let cases = [
            (0.975, 0.25, 0.25 * 1.959_963_984_540_054),
            (0.975, 1.0, 1.959_963_984_540_054),
            (0.9, 0.5, 0.5 * 1.281_551_565_544_600_4),
            (0.841_344_746_068_542_9, 0.12, 0.12), // Φ(1) = 0.8413447460685429
        ];
        for (p, sigma, expected) in cases {
            let r = radius(p, sigma).unwrap();
            assert!(
                (r - expected).abs() < 1e-12,
                "p {p} σ {sigma}: {r} vs {expected}"
            );
        }
    }

    #[test]
    fn abstains_exactly_when_the_lower_bound_is_at_most_one_half() {
        assert_eq!(radius(0.5, 0.25), None);
        assert_eq!(radius(0.3, 0.25), None);
        assert_eq!(radius(0.0, 1.0), None);
        assert!(radius(0.500_001, 0.25).is_some_and(|r| r > 0.0 && r < 1e-5));
    }

    #[test]
    fn top_two_breaks_ties_by_class_index() {
        assert_eq!(top_two(&[3, 5, 5, 1]), (1, Some(2)));
        assert_eq!(top_two(&[7]), (0, None));
    }

    #[test]
    fn noise_streams_differ_by_every_key_part() {
        let draw = |s, i, p, j| noise_rng(s, i, p, j).random::<u64>();
        let a = draw(0, 0, Phase::Select, 0);
        assert_eq!(a, draw(0, 0, Phase::Select, 0));
        for other in [
            draw(1, 0, Phase::Select, 0),
            draw(0, 1, Phase::Select, 0),
            draw(0, 0, Phase::Estimate, 0),
            draw(0, 0, Phase::Select, 1),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn radius_grid_covers_the_maximum() {
        assert_eq!(radius_grid(0.26, 0.25), vec![0.0, 0.25, 0.5]);
        assert_eq!(radius_grid(0.0, 0.25), vec![0.0]);
        assert_eq!(radius_grid(1.0, 0.0), vec![0.0]);
    }
}
