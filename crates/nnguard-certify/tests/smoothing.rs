//! Soundness of randomized smoothing: certified radii never exceed the true robust radius of
//! an analytically known smoothed classifier, abstention when p_A ≤ ½, and, on the reference
//! MLP, random and PGD perturbations inside certified radii do not change the smoothed
//! prediction beyond the α rate.

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use nnguard_attack::Norm;
use nnguard_attack::norm::Threat;
use nnguard_attack::steps::ascent_direction;
use nnguard_certify::smoothing::{SmoothedSoft, Smoothing, SmoothingConfig};
use nnguard_certify::stats::normal_quantile;
use nnguard_data::{DataSource, Split};
use nnguard_model::tensor::{Device, Tensor, batch_tensor, cpu, to_vec};
use nnguard_model::{Classifier, Differentiable, LoadOptions, Loss, Model};
use nnguard_testkit::testdata;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Class 0 when the first of four values is at least ½, else class 1. Its smoothed
/// classifier at noise σ gives class 0 probability Φ((x₀ − ½)/σ), so the true L2 robust
/// radius of g at x is |x₀ − ½|.
struct Threshold {
    device: Device,
}

impl Classifier for Threshold {
    fn input_shape(&self) -> [usize; 3] {
        [1, 1, 4]
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let b = x.dims()[0];
        let z: Tensor<2> = x.reshape([b, 4]).slice([0..b, 0..1]).sub_scalar(0.5);
        Tensor::cat(vec![z.clone(), z.neg()], 1)
    }
}

fn smoothing(sigma: f32, n0: usize, n: usize, batch: usize) -> Smoothing {
    SmoothingConfig {
        sigma,
        n0,
        n,
        alpha: 0.001,
        batch,
        seed: 0,
    }
    .build()
    .unwrap()
}

#[test]
fn certified_radius_never_exceeds_the_true_radius_of_a_threshold_classifier() {
    let model = Threshold { device: cpu() };
    let sigma = 0.25f32;
    let s = smoothing(sigma, 100, 20_000, 5000);
    for (i, d) in [0.02f32, 0.1, 0.25, 0.5, 1.0].into_iter().enumerate() {
        let x = [0.5 + d, 0.3, 0.7, 0.1];
        let c = s.certify(&model, &x, i as u64).unwrap();
        assert_eq!(c.class, Some(0), "d = {d}: {c:?}");
        assert!(
            c.radius <= f64::from(d),
            "d = {d}: radius {} too large",
            c.radius
        );
        // Within a few standard errors of the exact σ·Φ⁻¹(p), here p = Φ(d/σ).
        assert!(
            c.radius >= 0.8 * f64::from(d) - 0.05,
            "d = {d}: radius {} too small",
            c.radius
        );
        // Class 1 on the other side.
        let x = [0.5 - d, 0.3, 0.7, 0.1];
        assert_eq!(
            s.certify(&model, &x, 100 + i as u64).unwrap().class,
            Some(1)
        );
    }
    // The radius of the returned certificate is σ·Φ⁻¹(p_A) for its own p_A.
    let c = s.certify(&model, &[0.6, 0.0, 0.0, 0.0], 9).unwrap();
    let expected = f64::from(sigma) * normal_quantile(c.p_lower);
    assert!((c.radius - expected).abs() < 1e-12);
}

#[test]
fn abstains_on_the_decision_boundary() {
    let model = Threshold { device: cpu() };
    let s = smoothing(0.25, 100, 4000, 1000);
    let x = [0.5, 0.0, 0.0, 0.0];
    for index in 0..5 {
        let c = s.certify(&model, &x, index).unwrap();
        assert!(c.p_lower <= 0.5, "{c:?}");
        assert_eq!((c.class, c.radius), (None, 0.0));
        let p = s.predict(&model, &x, index).unwrap();
        assert_eq!(p.class, None, "{p:?}");
        assert!(p.p_value > 0.001);
    }
}

#[test]
fn results_do_not_depend_on_the_batch_size() {
    let model = Model::load(
        &testdata().join("reference/mlp.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    let d = DataSource::Bundled.load(Split::Test).unwrap().take(3);
    for i in 0..3 {
        let a = smoothing(0.25, 50, 700, 700).certify(&model, d.image(i), i as u64);
        let b = smoothing(0.25, 50, 700, 128).certify(&model, d.image(i), i as u64);
        assert_eq!(a.unwrap(), b.unwrap());
    }
}

/// L2 PGD on the smoothed soft classifier (SmoothAdv, Salman et al. 2019) away from `class`,
/// inside the ball of radius `eps` around `x0` and the pixel range.
fn pgd_on_smoothed(
    model: &Model,
    x0: &[f32],
    class: u32,
    eps: f32,
    seed: u64,
) -> (Vec<f32>, f32, f32) {
    let soft = SmoothedSoft::new(model, 0.25, 64, seed).unwrap();
    let shape = model.input_shape();
    let device = model.device();
    let x0t = batch_tensor(x0, shape, device);
    let threat = Threat {
        norm: Norm::L2,
        eps: Some(eps),
        bounds: (0.0, 1.0),
    };
    let prob = |x: &Tensor<4>| to_vec(soft.logits(x.clone()))[class as usize].exp();
    let before = prob(&x0t);
    let mut x = x0t.clone();
    for _ in 0..15 {
        let g = soft.input_gradient(x.clone(), &[class], Loss::CrossEntropy);
        let step = ascent_direction(g.grad, Norm::L2).mul_scalar(eps / 4.0);
        x = threat.project(&x0t, x.add(step));
    }
    let after = prob(&x);
    (to_vec(x), before, after)
}

#[test]
fn perturbations_inside_certified_radii_keep_the_smoothed_prediction() {
    let model = Model::load(
        &testdata().join("reference/mlp.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    let d = DataSource::Bundled.load(Split::Test).unwrap().take(40);
    let per: usize = model.input_shape().iter().product();
    let certify = smoothing(0.25, 64, 2000, 1000);
    let predict = smoothing(0.25, 64, 1000, 1000);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut trials, mut wrong, mut certified, mut weakened) = (0usize, 0usize, 0usize, 0usize);
    for i in 0..d.len() {
        let x0 = d.image(i);
        let c = certify.certify(&model, x0, i as u64).unwrap();
        let Some(class) = c.class else { continue };
        certified += 1;
        let r = 0.95 * c.radius as f32;
        let mut candidates = Vec::new();
        // Random directions on the sphere of radius r (no clipping: g is defined on ℝᵈ).
        for _ in 0..3 {
            let z: Vec<f32> = (0..per).map(|_| rng.sample(StandardNormal)).collect();
            let norm = z.iter().map(|v| v * v).sum::<f32>().sqrt();
            candidates.push(
                x0.iter()
                    .zip(&z)
                    .map(|(x, v)| x + r * v / norm)
                    .collect::<Vec<f32>>(),
            );
        }
        let (adv, before, after) = pgd_on_smoothed(&model, x0, class, r, i as u64);
        if after < before {
            weakened += 1;
        }
        candidates.push(adv);
        for (j, x) in candidates.iter().enumerate() {
            let p = predict
                .predict(&model, x, 1_000_000 + (i * 10 + j) as u64)
                .unwrap();
            trials += 1;
            if p.class.is_some_and(|k| k != class) {
                wrong += 1;
            }
        }
    }
    assert!(
        certified >= 10,
        "only {certified} of 40 certified: the check is too weak"
    );
    assert!(
        weakened * 2 >= certified,
        "PGD lowered the smoothed probability on only {weakened} of {certified}"
    );
    // Each certificate and each PREDICT is wrong with probability ≤ α = 0.001, so over
    // ~200 trials more than one error is a failure of soundness (P < 0.02 otherwise).
    assert!(
        wrong <= 1,
        "{wrong} of {trials} perturbations inside certified radii changed the prediction"
    );
}

/// The same attack far outside the radius does change predictions: the check above can
/// fail when a radius is overstated.
#[test]
fn pgd_on_the_smoothed_classifier_breaks_it_outside_the_radius() {
    let model = Model::load(
        &testdata().join("reference/mlp.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    let d = DataSource::Bundled.load(Split::Test).unwrap().take(8);
    let predict = smoothing(0.25, 64, 1000, 1000);
    let mut changed = 0;
    for i in 0..d.len() {
        let x0 = d.image(i);
        let p0 = predict.predict(&model, x0, i as u64).unwrap();
        let Some(class) = p0.class else { continue };
        let (adv, _, _) = pgd_on_smoothed(&model, x0, class, 4.0, i as u64);
        let p = predict.predict(&model, &adv, 500 + i as u64).unwrap();
        if p.class != Some(class) {
            changed += 1;
        }
    }
    assert!(
        changed >= 4,
        "PGD at L2 radius 4 changed only {changed} of 8 predictions"
    );
}
