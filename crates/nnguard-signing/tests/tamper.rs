//! Every way a signed model can be tampered with fails verification with its own finding
//! or error.

mod common;

use std::fs;
use std::path::Path;

use base64::Engine as _;
use common::{
    TestResult, copy_of_fixture_model, other_public_key, python_bundle, test_public_key,
    test_signing_key,
};
use nnguard_signing::dsse::IN_TOTO_PAYLOAD_TYPE;
use nnguard_signing::{
    Bundle, Finding, NoProgress, SigningError, Statement, Verification, VerifyOptions,
    path_inside_model, verify_model,
};

fn verify_copy(model: &Path) -> Result<Verification, SigningError> {
    verify_with(
        model,
        &python_bundle("model.sig")?,
        &VerifyOptions::default(),
    )
}

fn verify_with(
    model: &Path,
    bundle: &Bundle,
    options: &VerifyOptions,
) -> Result<Verification, SigningError> {
    verify_model(model, bundle, &test_public_key()?, options, &NoProgress)
}

/// The statement of the Python-signed fixture, as JSON to alter and re-sign.
fn fixture_statement() -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let bundle = python_bundle("model.sig")?;
    let payload = bundle.verify_in_toto(&test_public_key()?)?;
    Ok(serde_json::from_slice(&payload)?)
}

/// Signs an altered statement with the test-only key, as a buggy or hostile signer would.
fn resign(statement: &serde_json::Value) -> Result<Bundle, Box<dyn std::error::Error>> {
    let statement: Statement = serde_json::from_value(statement.clone())?;
    Ok(statement.sign(&test_signing_key()?)?)
}

#[test]
fn an_untouched_copy_verifies() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    assert_eq!(verify_copy(&model)?.findings, []);
    Ok(())
}

#[test]
fn a_changed_byte_is_content_changed() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let path = model.join("weights.bin");
    let mut bytes = fs::read(&path)?;
    bytes[4321] ^= 0x01;
    fs::write(&path, bytes)?;
    let findings = verify_copy(&model)?.findings;
    assert!(
        matches!(findings.as_slice(), [Finding::ContentChanged { path, expected, actual }]
            if path == "weights.bin" && expected != actual),
        "{findings:?}"
    );
    assert!(
        findings[0]
            .to_string()
            .starts_with("content changed: weights.bin")
    );
    Ok(())
}

#[test]
fn an_added_file_is_file_added() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    fs::write(model.join("tokenizer/merges.txt"), b"a b\n")?;
    let findings = verify_copy(&model)?.findings;
    assert_eq!(
        findings,
        [Finding::FileAdded {
            path: "tokenizer/merges.txt".into()
        }]
    );
    assert!(findings[0].to_string().starts_with("file added:"));
    Ok(())
}

#[test]
fn unsigned_files_can_be_left_out_on_request() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    fs::write(model.join("README.md"), b"notes\n")?;
    fs::rename(model.join("config.json"), model.join("config.old.json"))?;
    let options = VerifyOptions {
        ignore_unsigned_files: true,
        ..VerifyOptions::default()
    };
    let findings = verify_with(&model, &python_bundle("model.sig")?, &options)?.findings;
    // The rename now shows as a missing file, since the new name is not signed.
    assert_eq!(
        findings,
        [Finding::FileMissing {
            path: "config.json".into()
        }]
    );
    Ok(())
}

#[test]
fn a_missing_file_is_file_missing() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    fs::remove_file(model.join("config.json"))?;
    let findings = verify_copy(&model)?.findings;
    assert_eq!(
        findings,
        [Finding::FileMissing {
            path: "config.json".into()
        }]
    );
    assert!(findings[0].to_string().starts_with("file missing:"));
    Ok(())
}

#[test]
fn a_renamed_file_is_file_renamed() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    fs::rename(model.join("config.json"), model.join("config.old.json"))?;
    let findings = verify_copy(&model)?.findings;
    assert_eq!(
        findings,
        [Finding::FileRenamed {
            from: "config.json".into(),
            to: "config.old.json".into()
        }]
    );
    assert!(findings[0].to_string().starts_with("file renamed:"));
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_symlink_swapped_in_is_symlink_found() -> TestResult {
    let (tmp, model) = copy_of_fixture_model()?;
    // Same bytes, but now controlled from outside the model.
    let outside = tmp.path().join("elsewhere.bin");
    fs::rename(model.join("weights.bin"), &outside)?;
    std::os::unix::fs::symlink(&outside, model.join("weights.bin"))?;
    let findings = verify_copy(&model)?.findings;
    assert_eq!(
        findings,
        [Finding::SymlinkFound {
            path: "weights.bin".into()
        }]
    );
    assert!(findings[0].to_string().starts_with("symbolic link:"));

    // Following links on request hashes the target, which has the signed content.
    let options = VerifyOptions {
        allow_symlinks: true,
        ..VerifyOptions::default()
    };
    assert_eq!(
        verify_with(&model, &python_bundle("model.sig")?, &options)?.findings,
        []
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_model_path_that_is_a_symlink_is_one_finding() -> TestResult {
    let (tmp, model) = copy_of_fixture_model()?;
    let link = tmp.path().join("latest");
    std::os::unix::fs::symlink(&model, &link)?;
    assert_eq!(
        verify_copy(&link)?.findings,
        [Finding::SymlinkFound { path: ".".into() }]
    );
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_hard_link_swapped_in_is_hard_link_found() -> TestResult {
    let (tmp, model) = copy_of_fixture_model()?;
    let outside = tmp.path().join("elsewhere.bin");
    fs::rename(model.join("weights.bin"), &outside)?;
    fs::hard_link(&outside, model.join("weights.bin"))?;
    let findings = verify_copy(&model)?.findings;
    assert_eq!(
        findings,
        [Finding::HardLinkFound {
            path: "weights.bin".into(),
            links: 2
        }]
    );
    assert!(findings[0].to_string().starts_with("hard link:"));
    Ok(())
}

#[test]
fn a_wrong_key_is_a_key_mismatch_or_an_invalid_signature() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let bundle = python_bundle("model.sig")?;
    let other = other_public_key()?;
    let err = verify_model(
        &model,
        &bundle,
        &other,
        &VerifyOptions::default(),
        &NoProgress,
    )
    .err();
    assert!(
        matches!(err, Some(SigningError::KeyMismatch { .. })),
        "{err:?}"
    );
    assert!(
        err.is_some_and(|e| e.is_verification_failure() && e.to_string().starts_with("wrong key"))
    );

    // Without the hint, the signature check itself catches the wrong key.
    let mut hintless = bundle;
    hintless.verification_material.public_key = None;
    let err = verify_model(
        &model,
        &hintless,
        &other,
        &VerifyOptions::default(),
        &NoProgress,
    )
    .err();
    assert!(
        matches!(err, Some(SigningError::SignatureInvalid)),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn an_altered_payload_is_an_invalid_signature() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let mut statement = fixture_statement()?;
    statement["predicate"]["resources"][0]["digest"] = serde_json::json!("00".repeat(32));
    let mut bundle = python_bundle("model.sig")?;
    let envelope = bundle.dsse_envelope.as_mut().ok_or("no envelope")?;
    envelope.payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement)?);
    let err = verify_with(&model, &bundle, &VerifyOptions::default()).err();
    assert!(
        matches!(err, Some(SigningError::SignatureInvalid)),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_different_predicate_type_is_a_predicate_type_mismatch() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let mut statement = fixture_statement()?;
    statement["predicateType"] = serde_json::json!("https://model_signing/Digests/v0.1");
    let err = verify_with(&model, &resign(&statement)?, &VerifyOptions::default()).err();
    assert!(
        matches!(err, Some(SigningError::PredicateTypeMismatch { .. })),
        "{err:?}"
    );
    assert!(err.is_some_and(
        |e| e.is_verification_failure() && e.to_string().starts_with("predicate type")
    ));
    Ok(())
}

#[test]
fn a_wrong_subject_digest_is_a_subject_digest_mismatch() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let mut statement = fixture_statement()?;
    statement["subject"][0]["digest"]["sha256"] = serde_json::json!("ab".repeat(32));
    let err = verify_with(&model, &resign(&statement)?, &VerifyOptions::default()).err();
    assert!(
        matches!(err, Some(SigningError::SubjectDigestMismatch { .. })),
        "{err:?}"
    );
    assert!(err.is_some_and(
        |e| e.is_verification_failure() && e.to_string().starts_with("subject digest mismatch")
    ));
    Ok(())
}

/// A named alteration of a statement.
type Edit = (&'static str, fn(&mut serde_json::Value));

#[test]
fn a_manifest_that_contradicts_itself_is_inconsistent() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let edits: [Edit; 5] = [
        ("duplicate", |s| {
            let first = s["predicate"]["resources"][0].clone();
            if let Some(list) = s["predicate"]["resources"].as_array_mut() {
                list.push(first);
            }
        }),
        ("escaping path", |s| {
            s["predicate"]["resources"][0]["name"] = serde_json::json!("../config.json")
        }),
        ("algorithm", |s| {
            s["predicate"]["resources"][0]["algorithm"] = serde_json::json!("sha512")
        }),
        ("digest", |s| {
            s["predicate"]["resources"][0]["digest"] = serde_json::json!("xyz")
        }),
        ("two subjects", |s| {
            let first = s["subject"][0].clone();
            if let Some(list) = s["subject"].as_array_mut() {
                list.push(first);
            }
        }),
    ];
    for (what, edit) in edits {
        let mut statement = fixture_statement()?;
        edit(&mut statement);
        let err = verify_with(&model, &resign(&statement)?, &VerifyOptions::default()).err();
        assert!(
            matches!(err, Some(SigningError::InconsistentManifest { .. })),
            "{what}: {err:?}"
        );
        assert!(
            err.is_some_and(|e| e.to_string().starts_with("inconsistent manifest")),
            "{what}"
        );
    }
    Ok(())
}

#[test]
fn a_non_in_toto_payload_type_is_a_payload_type_mismatch() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let payload = serde_json::to_vec(&fixture_statement()?)?;
    let bundle = Bundle::sign("application/json", &payload, &test_signing_key()?);
    let err = verify_with(&model, &bundle, &VerifyOptions::default()).err();
    assert!(
        matches!(err, Some(SigningError::PayloadTypeMismatch { .. })),
        "{err:?}"
    );
    let ok = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &test_signing_key()?);
    assert!(verify_with(&model, &ok, &VerifyOptions::default())?.is_verified());
    Ok(())
}

#[test]
fn a_malformed_bundle_is_an_input_error_not_a_verification_failure() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("model.sig");
    fs::write(
        &path,
        b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\"",
    )?;
    let err = Bundle::read(&path).err();
    assert!(
        matches!(err, Some(SigningError::MalformedBundle { ref reason }) if reason.contains("model.sig")),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| !e.is_verification_failure()));
    Ok(())
}

#[test]
fn git_metadata_at_the_root_is_ignored_but_not_deeper() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    fs::create_dir_all(model.join(".git/objects"))?;
    fs::write(model.join(".git/HEAD"), b"ref: refs/heads/main\n")?;
    fs::write(model.join(".gitattributes"), b"*.bin filter=lfs\n")?;
    assert_eq!(verify_copy(&model)?.findings, []);
    fs::create_dir_all(model.join("tokenizer/.git"))?;
    fs::write(model.join("tokenizer/.git/HEAD"), b"x")?;
    assert_eq!(
        verify_copy(&model)?.findings,
        [Finding::FileAdded {
            path: "tokenizer/.git/HEAD".into()
        }]
    );
    Ok(())
}

#[test]
fn a_signature_stored_inside_the_model_is_left_out() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let signature = model.join("model.sig");
    python_bundle("model.sig")?.write(&signature)?;
    let rel = path_inside_model(&model, &signature).ok_or("signature not inside the model")?;
    assert_eq!(rel, "model.sig");
    let options = VerifyOptions {
        ignore_paths: vec![rel],
        ..VerifyOptions::default()
    };
    assert_eq!(
        verify_with(&model, &Bundle::read(&signature)?, &options)?.findings,
        []
    );
    Ok(())
}

#[test]
fn a_changed_shard_names_its_byte_range() -> TestResult {
    let (_tmp, model) = copy_of_fixture_model()?;
    let path = model.join("weights.bin");
    let mut bytes = fs::read(&path)?;
    bytes[1500] ^= 0x80;
    fs::write(&path, bytes)?;
    let bundle = python_bundle("model-shards-1024.sig")?;
    let findings = verify_with(&model, &bundle, &VerifyOptions::default())?.findings;
    assert!(
        matches!(findings.as_slice(), [Finding::ContentChanged { path, .. }] if path == "weights.bin:1024:2048"),
        "{findings:?}"
    );
    Ok(())
}

#[test]
fn every_failure_has_its_own_message() {
    let messages = [
        Finding::ContentChanged {
            path: "f".into(),
            expected: "a".into(),
            actual: "b".into(),
        }
        .to_string(),
        Finding::FileAdded { path: "f".into() }.to_string(),
        Finding::FileMissing { path: "f".into() }.to_string(),
        Finding::FileRenamed {
            from: "f".into(),
            to: "g".into(),
        }
        .to_string(),
        Finding::SymlinkFound { path: "f".into() }.to_string(),
        Finding::HardLinkFound {
            path: "f".into(),
            links: 2,
        }
        .to_string(),
        SigningError::KeyMismatch {
            in_bundle: "a".into(),
            given: "b".into(),
        }
        .to_string(),
        SigningError::SignatureInvalid.to_string(),
        SigningError::PredicateTypeMismatch {
            expected: "a".into(),
            found: "b".into(),
        }
        .to_string(),
        SigningError::SubjectDigestMismatch {
            recorded: "a".into(),
            computed: "b".into(),
        }
        .to_string(),
        SigningError::InconsistentManifest { reason: "r".into() }.to_string(),
    ];
    let prefixes: std::collections::HashSet<_> = messages
        .iter()
        .map(|m| m.split(':').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(prefixes.len(), messages.len(), "{messages:#?}");
}
