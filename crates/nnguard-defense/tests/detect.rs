#![allow(clippy::unwrap_used)]
// Tests unwrap: a failure is a test failure with the error shown.

//! The detectors on the reference CNN and the bundled Fashion-MNIST subset: every detector
//! separates PGD examples from clean inputs better than chance, the threshold keeps its
//! false positive rate on fresh clean data, and a stand-in for C&W is reported as such.

use std::sync::Arc;

use nnguard_attack::evasion::ATTACKS;
use nnguard_data::{DataSource, Split};
use nnguard_defense::detect::{DetectConfig, DetectorKind, MahalanobisConfig, run};
use nnguard_model::tensor::cpu;
use nnguard_model::{Differentiable, LoadOptions, Model};
use nnguard_testkit::testdata;

fn reference_cnn() -> Arc<dyn Differentiable> {
    Arc::new(
        Model::load(
            &testdata().join("reference/cnn.safetensors"),
            &LoadOptions::default(),
        )
        .unwrap(),
    )
}

#[test]
fn every_detector_beats_chance_on_pgd_with_a_calibrated_threshold() {
    let model = reference_cnn();
    let train = DataSource::Bundled.load(Split::Train).unwrap();
    let test = DataSource::Bundled.load(Split::Test).unwrap().take(60);
    let cw_registered = ATTACKS.iter().any(|(n, _)| *n == "cw" || *n == "cw-l2");
    for detector in DetectorKind::ALL {
        let config = DetectConfig {
            detector,
            fit_images: 300,
            calibration_images: 400,
            steps: 10,
            cw_steps: Some(10),
            ..DetectConfig::default()
        };
        let r = run(model.as_ref(), &config, &train, &test).unwrap();
        assert_eq!(r.detector, detector.name());
        assert_eq!(r.attacks.len(), 2);
        let pgd = &r.attacks[0];
        assert_eq!(pgd.attack, "pgd");
        assert!(pgd.adversarial >= pgd.attempted / 2, "{pgd:?}");
        let auc = pgd.auc.unwrap();
        assert!(auc > 0.6, "{}: PGD AUC {auc}", r.detector);
        let tpr = pgd.tpr.unwrap();
        assert!((0.0..=1.0).contains(&tpr));
        // Calibrated on 400 clean training images for 5%: on fresh clean test images the rate
        // stays near it (binomial noise on ~50 images allows a few points more).
        let fpr = r.test_fpr.unwrap();
        assert!(fpr <= 0.2, "{}: FPR {fpr} on clean test images", r.detector);
        let second = &r.attacks[1];
        assert_eq!(second.role, "cw");
        assert_eq!(second.stand_in, !cw_registered);
        if second.stand_in {
            assert_eq!(second.attack, "pgd-l2");
            assert!(
                r.notes.iter().any(|n| n.contains("stands in")),
                "{:?}",
                r.notes
            );
        }
    }
}

#[test]
fn detection_settings_are_checked_by_flag() {
    let model = reference_cnn();
    let train = DataSource::Bundled.load(Split::Train).unwrap().take(100);
    let test = DataSource::Bundled.load(Split::Test).unwrap().take(10);
    let flag = |c: DetectConfig| {
        run(model.as_ref(), &c, &train, &test)
            .err()
            .unwrap()
            .to_string()
    };
    let base = DetectConfig {
        fit_images: 50,
        calibration_images: 40,
        ..DetectConfig::default()
    };
    assert!(
        flag(DetectConfig {
            eps: -1.0,
            ..base.clone()
        })
        .contains("--eps")
    );
    assert!(
        flag(DetectConfig {
            steps: 0,
            ..base.clone()
        })
        .contains("--steps")
    );
    assert!(
        flag(DetectConfig {
            fpr: 1.0,
            ..base.clone()
        })
        .contains("--fpr")
    );
    assert!(
        flag(DetectConfig {
            fit_images: 90,
            ..base.clone()
        })
        .contains("--fit")
    );
    let m = MahalanobisConfig {
        layer: Some("nope".into()),
        ..MahalanobisConfig::default()
    }
    .fit(
        model.as_ref(),
        &train.images[..784 * 20],
        &train.labels[..20],
        10,
    );
    assert!(m.err().unwrap().to_string().contains("nope"));
    assert!("nope".parse::<DetectorKind>().is_err());
    let _ = cpu();
}
