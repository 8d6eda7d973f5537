//! The universal attacks on the reference CNN and the first 200 bundled test images: the
//! adversarial patch (local, trained better than chance, targeted) and the universal
//! perturbation (one perturbation for every input, better than random noise of its size).

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

mod support;

use nnguard_attack::Norm;
use nnguard_attack::evasion::{PatchConfig, UapConfig};
use nnguard_model::Classifier;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::*;

const IMAGES: usize = 200;

#[test]
fn trained_patch_beats_an_untrained_one_and_stays_local() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, IMAGES);
    let run = |config: PatchConfig| {
        let patch = config.build().unwrap();
        let threat = patch.threat(model.bounds());
        let r = attack(&model, &patch, threat, &data.images, &data.labels, None, 0);
        check_result(&model, threat, &data.images, &data.labels, None, &r);
        (r, patch.trained().unwrap())
    };
    // One negligible step leaves the random initial patch: the chance baseline.
    let (untrained, _) = run(PatchConfig {
        steps: 1,
        lr: 1e-9,
        ..PatchConfig::default()
    });
    let (trained, patch) = run(PatchConfig::default());
    let (acc0, acc1) = (
        robust_accuracy(&correct, &untrained),
        robust_accuracy(&correct, &trained),
    );
    eprintln!(
        "patch of {:.1}% of the image: robust accuracy {acc1:.3}, untrained {acc0:.3}",
        100.0 * patch.area_fraction
    );
    assert_eq!(patch.side, 9);
    assert!((patch.area_fraction - 81.0 / 784.0).abs() < 1e-12);
    assert!(acc1 <= acc0 - 0.1, "trained {acc1} vs untrained {acc0}");
    // Only pixels within reach of the largest rotated placement change: a square of side
    // scale·side plus the bilinear border.
    let c = PatchConfig::default();
    let reach = c.scale.1 * patch.side as f32 + 2.0 * c.scale.1 + 2.0;
    let limit = (reach * reach) as usize;
    for (i, x0) in data.images.chunks(784).enumerate() {
        let changed = trained.x_adv[i * 784..(i + 1) * 784]
            .iter()
            .zip(x0)
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed <= limit, "input {i}: {changed} pixels changed");
    }
}

#[test]
fn targeted_patch_pulls_inputs_to_its_class() {
    let model = reference_cnn();
    let (data, _) = test_images(&model, IMAGES);
    let target = 8;
    let hits = |config: PatchConfig| {
        let patch = config.build().unwrap();
        let threat = patch.threat(model.bounds());
        let r = attack(&model, &patch, threat, &data.images, &data.labels, None, 0);
        (0..IMAGES)
            .filter(|&i| data.labels[i] != target && r.predicted[i] == target)
            .count()
    };
    let chance = hits(PatchConfig {
        steps: 1,
        lr: 1e-9,
        target: Some(target),
        ..PatchConfig::default()
    });
    let trained = hits(PatchConfig {
        target: Some(target),
        ..PatchConfig::default()
    });
    eprintln!("targeted patch: {trained} inputs moved to class {target} (untrained {chance})");
    assert!(
        trained >= 3 * chance.max(1) && trained >= chance + IMAGES / 10,
        "{trained} vs {chance}"
    );
}

#[test]
fn uap_is_one_perturbation_and_beats_random_noise() {
    let model = reference_cnn();
    let (data, correct) = test_images(&model, IMAGES);
    for (norm, eps) in [(Norm::Linf, 0.1f32), (Norm::L2, 2.0)] {
        let uap = UapConfig {
            norm,
            eps,
            ..UapConfig::default()
        }
        .build()
        .unwrap();
        let threat = uap.threat(model.bounds());
        let r = attack(&model, &uap, threat, &data.images, &data.labels, None, 0);
        check_result(&model, threat, &data.images, &data.labels, None, &r);
        let v = uap.perturbation().unwrap();
        assert!(norm.of_rows(&v, 784)[0] <= eps * (1.0 + 1e-5));
        // Every broken input carries the same v (clipped to the pixel range).
        for (i, x0) in data.images.chunks(784).enumerate() {
            if !r.success[i] || !correct[i] {
                continue;
            }
            for j in 0..784 {
                let expected = (x0[j] + v[j]).clamp(0.0, 1.0);
                assert!((r.x_adv[i * 784 + j] - expected).abs() < 1e-6, "input {i}");
            }
        }
        // Random noise of the same size: signs for L∞, a Gaussian direction for L2.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let noise: Vec<f32> = (0..784).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let noise: Vec<f32> = match norm {
            Norm::Linf => noise.iter().map(|n| eps * n.signum()).collect(),
            _ => {
                let len = Norm::L2.of_rows(&noise, 784)[0];
                noise.iter().map(|n| eps * n / len).collect()
            }
        };
        let noisy: Vec<f32> = data
            .images
            .chunks(784)
            .flat_map(|x0| x0.iter().zip(&noise).map(|(a, b)| (a + b).clamp(0.0, 1.0)))
            .collect();
        let pred = predictions(&model, &noisy);
        let noise_acc = (0..IMAGES)
            .filter(|&i| correct[i] && pred[i] == data.labels[i])
            .count() as f64
            / IMAGES as f64;
        let acc = robust_accuracy(&correct, &r);
        eprintln!("UAP {norm} ε={eps}: robust accuracy {acc:.3}, random noise {noise_acc:.3}");
        assert!(acc <= noise_acc - 0.2, "UAP {acc} vs noise {noise_acc}");
    }
}
