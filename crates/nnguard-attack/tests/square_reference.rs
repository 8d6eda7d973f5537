//! The Square attack against the reference CNN on the first 1000 bundled Fashion-MNIST test
//! images, compared with torchattacks' Square (testdata/reference/attacks-cnn.json,
//! `cnn|square_linf|torchattacks`: ε = 0.1, 1000 queries, `p_init` 0.8, one run).

// Test helpers panic on a broken fixture; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use nnguard_attack::evasion::{Inputs, SquareConfig, run_black_box};
use nnguard_attack::{Norm, Reveal};
use nnguard_data::{DataSource, Split};
use nnguard_model::predict::predict;
use nnguard_model::tensor::batch_tensor;
use nnguard_model::{Classifier, LoadOptions, Model};
use nnguard_testkit::{json, testdata};

#[test]
fn square_linf_matches_torchattacks_within_a_few_points() {
    let reference = &json("reference/attacks-cnn.json")["runs"]["cnn|square_linf|torchattacks"];
    let n = reference["n_images"].as_u64().unwrap() as usize;
    let expected = reference["robust_accuracy"].as_f64().unwrap();
    let params = &json("reference/attacks-cnn.json")["meta"]["attacks"]["square_linf"];
    let queries = params["queries"].as_u64().unwrap();

    let model = Model::load(
        &testdata().join("reference/cnn.onnx"),
        &LoadOptions::default(),
    )
    .unwrap();
    let data = DataSource::Bundled.load(Split::Test).unwrap().take(n);
    let pred = predict(&model, &data, 500, |_| {}).unwrap();
    let square = SquareConfig {
        norm: Norm::Linf,
        eps: params["eps"].as_f64().unwrap() as f32,
        queries,
        p_init: params["p_init"].as_f64().unwrap() as f32,
        restarts: params["restarts"].as_u64().unwrap() as usize,
    }
    .build()
    .unwrap();
    let x = batch_tensor(&data.images, data.shape, model.device());
    let start = Instant::now();
    let (r, used) = run_black_box(
        &model,
        &square,
        square.threat(model.bounds()),
        Inputs {
            x,
            labels: &data.labels,
            targets: None,
        },
        Some(queries),
        Reveal::Scores,
        0,
    )
    .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert!(r.not_reproduced.is_empty());
    assert!(r.distance.iter().all(|&d| d <= 0.1 * (1.0 + 1e-5)));
    let robust = (0..n)
        .filter(|&i| pred[i] == data.labels[i] && !r.success[i])
        .count() as f64
        / n as f64;
    let mean_queries = used.iter().sum::<u64>() as f64 / n as f64;
    eprintln!(
        "square linf: robust accuracy {robust:.3} (torchattacks {expected:.3}), \
         {mean_queries:.0} queries per image, {:.1} images/s",
        n as f64 / seconds
    );
    assert!(
        (robust - expected).abs() <= 0.03,
        "Square L∞ robust accuracy {robust} vs torchattacks {expected}"
    );
}
