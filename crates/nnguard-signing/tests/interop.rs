//! Interoperability with the Python reference implementation (`model-signing` 1.1.1):
//! bundles it signed verify here, and manifests built here are the ones it builds.
//! See testdata/README.md for how the fixtures were made.

mod common;

use common::{
    TestResult, fixture_model, python_bundle, test_public_key, test_signing_key, testdata,
};
use nnguard_signing::manifest::Method;
use nnguard_signing::{
    HashOptions, MODEL_SIGNING_PREDICATE_TYPE, Manifest, NoProgress, Statement, VerifyOptions,
    hash_model, sign_model, verify_model,
};

fn python_manifest(name: &str) -> Result<Manifest, Box<dyn std::error::Error>> {
    let bundle = python_bundle(name)?;
    let statement = Statement::verify(&bundle, &test_public_key()?, MODEL_SIGNING_PREDICATE_TYPE)?;
    Ok(Manifest::from_statement(&statement)?)
}

#[test]
fn python_signed_directory_verifies() -> TestResult {
    let bundle = python_bundle("model.sig")?;
    let verification = verify_model(
        &fixture_model(),
        &bundle,
        &test_public_key()?,
        &VerifyOptions::default(),
        &NoProgress,
    )?;
    assert_eq!(verification.findings, []);
    assert_eq!(verification.manifest.model_name, "model");
    let names: Vec<_> = verification
        .manifest
        .resources
        .iter()
        .map(|r| r.key.name())
        .collect();
    assert_eq!(
        names,
        [
            "config.json",
            "tokenizer/empty.txt",
            "tokenizer/vocab.txt",
            "weights.bin"
        ]
    );
    Ok(())
}

#[test]
fn python_signed_single_file_verifies() -> TestResult {
    let bundle = python_bundle("weights.bin.sig")?;
    let verification = verify_model(
        &fixture_model().join("weights.bin"),
        &bundle,
        &test_public_key()?,
        &VerifyOptions::default(),
        &NoProgress,
    )?;
    assert!(verification.is_verified(), "{:?}", verification.findings);
    assert_eq!(verification.manifest.model_name, "weights.bin");
    assert_eq!(verification.manifest.resources.len(), 1);
    assert_eq!(verification.manifest.resources[0].key.name(), ".");
    Ok(())
}

#[test]
fn python_signed_shards_verify() -> TestResult {
    let bundle = python_bundle("model-shards-1024.sig")?;
    let verification = verify_model(
        &fixture_model(),
        &bundle,
        &test_public_key()?,
        &VerifyOptions::default(),
        &NoProgress,
    )?;
    assert!(verification.is_verified(), "{:?}", verification.findings);
    assert_eq!(
        verification.manifest.serialization.method,
        Method::Shards { shard_size: 1024 }
    );
    // 5000 bytes of weights in 5 shards, 2 small files, and no item for the empty file.
    assert_eq!(verification.manifest.resources.len(), 7);
    Ok(())
}

#[test]
fn manifests_built_here_equal_the_python_ones_item_for_item() -> TestResult {
    for (signature, model, method) in [
        ("model.sig", fixture_model(), Method::Files),
        (
            "weights.bin.sig",
            fixture_model().join("weights.bin"),
            Method::Files,
        ),
        (
            "model-shards-1024.sig",
            fixture_model(),
            Method::Shards { shard_size: 1024 },
        ),
    ] {
        let theirs = python_manifest(signature)?;
        let options = HashOptions {
            method,
            ..HashOptions::default()
        };
        let ours = hash_model(&model, &options, &NoProgress)?.manifest;
        // Same items in the same order, so the same subject digest.
        assert_eq!(ours.resources, theirs.resources, "{signature}");
        assert_eq!(ours.root_digest(), theirs.root_digest(), "{signature}");
        assert_eq!(ours.model_name, theirs.model_name, "{signature}");
        let mut their_ignores = theirs.serialization.ignore_paths.clone();
        their_ignores.sort();
        assert_eq!(
            ours.serialization.ignore_paths, their_ignores,
            "{signature}"
        );
    }
    Ok(())
}

#[test]
fn key_hint_matches_the_one_python_records() -> TestResult {
    let bundle = python_bundle("model.sig")?;
    let recorded = bundle
        .verification_material
        .public_key
        .and_then(|pk| pk.hint)
        .ok_or("the Python bundle has no public-key hint")?;
    assert_eq!(test_public_key()?.hint(), recorded);
    assert_eq!(test_signing_key()?.verifying_key().hint(), recorded);
    Ok(())
}

/// The bundle nnguard writes for the fixture model is deterministic (RFC 6979 signatures,
/// fixed JSON layout), so it is a golden file; `testdata/interop.sh` checks that the Python
/// verifier accepts it. Regenerate with `UPDATE_GOLDENS=1`.
#[test]
fn nnguard_signed_bundle_matches_the_golden_checked_by_python() -> TestResult {
    let golden_path = testdata().join("nnguard-signed/model.sig");
    let signed = sign_model(
        &fixture_model(),
        &test_signing_key()?,
        &HashOptions::default(),
        &NoProgress,
    )?;
    let json = signed.bundle.to_json()?;
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(golden_path.parent().ok_or("no parent")?)?;
        std::fs::write(&golden_path, &json)?;
    }
    let golden = std::fs::read_to_string(&golden_path)?;
    assert_eq!(
        json, golden,
        "regenerate with UPDATE_GOLDENS=1 if the change is intended"
    );

    // Same manifest as the Python signature of the same model.
    assert_eq!(
        signed.manifest.root_digest(),
        python_manifest("model.sig")?.root_digest()
    );
    Ok(())
}
