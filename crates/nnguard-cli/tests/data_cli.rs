//! `nnguard data manifest` and `nnguard data check` as a user runs them: output, JSON and
//! exit codes (0 clean, 1 findings, 2 bad input, 4 usage).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use nnguard_data::{DataSource, Split};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn nnguard(dir: &Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes the first `n` bundled training images as an IDX training split in `dir`, with
/// `edit` applied to the pixel bytes and labels first.
fn write_idx(dir: &Path, n: usize, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) -> TestResult {
    let data = DataSource::Bundled.load(Split::Train)?.take(n);
    let mut pixels: Vec<u8> = data
        .images
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect();
    let mut labels: Vec<u8> = data.labels.iter().map(|&l| l as u8).collect();
    edit(&mut pixels, &mut labels);
    let count = labels.len() as u32;
    let mut images = vec![0, 0, 8, 3];
    for d in [count, 28, 28] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend_from_slice(&pixels);
    let mut label_file = vec![0, 0, 8, 1];
    label_file.extend_from_slice(&count.to_be_bytes());
    label_file.extend_from_slice(&labels);
    fs::create_dir_all(dir)?;
    fs::write(dir.join("train-images-idx3-ubyte"), images)?;
    fs::write(dir.join("train-labels-idx1-ubyte"), label_file)?;
    Ok(())
}

#[test]
fn a_signed_manifest_checks_clean_and_verifies_like_a_model() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    assert_eq!(code(&nnguard(dir, &["keygen"])?), Some(0));
    let out = nnguard(
        dir,
        &[
            "data",
            "manifest",
            "--data",
            "bundled",
            "--split",
            "test",
            "--out",
            "m.json",
            "--key",
            "signing-key.pem",
        ],
    )?;
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("test: 1000 records of 1×28×28"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("signed: m.json.sig"),
        "{}",
        stdout(&out)
    );
    // Written atomically: no temporary file is left behind.
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(
        names,
        [
            "m.json",
            "m.json.sig",
            "signing-key.pem",
            "signing-key.pub.pem"
        ]
    );
    assert!(
        fs::read_to_string(dir.join("m.json"))?.contains("\"created\": \"2023-11-14T22:13:20Z\"")
    );

    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "bundled",
            "--manifest",
            "m.json",
            "--pubkey",
            "signing-key.pub.pem",
        ],
    )?;
    assert_eq!(code(&out), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("signature: verified m.json.sig"), "{text}");
    assert!(
        text.contains("test: 1000 records, 1000 of the manifest's 1000 unchanged"),
        "{text}"
    );
    assert!(text.contains("no findings"), "{text}");

    // The signature is an OpenSSF model-signing bundle over the manifest file.
    let out = nnguard(
        dir,
        &[
            "verify",
            "m.json",
            "--signature",
            "m.json.sig",
            "--key",
            "signing-key.pub.pem",
        ],
    )?;
    assert_eq!(code(&out), Some(0), "{}{}", stdout(&out), stderr(&out));
    Ok(())
}

#[test]
fn a_wrong_key_or_an_edited_manifest_fails_with_exit_1() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    assert_eq!(code(&nnguard(dir, &["keygen"])?), Some(0));
    let other = nnguard(
        dir,
        &[
            "keygen",
            "--private-key",
            "other.pem",
            "--public-key",
            "other.pub.pem",
        ],
    )?;
    assert_eq!(code(&other), Some(0));
    let made = nnguard(
        dir,
        &[
            "data",
            "manifest",
            "--data",
            "bundled",
            "--split",
            "test",
            "--out",
            "m.json",
            "--key",
            "signing-key.pem",
        ],
    )?;
    assert_eq!(code(&made), Some(0), "{}", stderr(&made));

    let check = |key: &str| {
        nnguard(
            dir,
            &[
                "data",
                "check",
                "--data",
                "bundled",
                "--manifest",
                "m.json",
                "--pubkey",
                key,
                "--json",
            ],
        )
    };
    let out = check("other.pub.pem")?;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(report["signature"]["verified"], false);
    assert_eq!(report["findings"][0]["kind"], "ManifestSignatureInvalid");
    assert_eq!(report["findings"][0]["severity"], "critical");
    assert!(
        report["findings"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("wrong key")),
        "{report}"
    );

    // An edit that keeps the manifest consistent still breaks the signature.
    let path = dir.join("m.json");
    let text = fs::read_to_string(&path)?.replace("2023-11-14T22:13:20Z", "2023-11-15T00:00:00Z");
    fs::write(&path, text)?;
    let out = check("signing-key.pub.pem")?;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(report["findings"][0]["kind"], "ManifestSignatureInvalid");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[test]
fn a_flipped_label_is_reported_in_text_and_json_with_exit_1() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let data = dir.join("data");
    write_idx(&data, 200, |_, _| {})?;
    let made = nnguard(
        dir,
        &["data", "manifest", "--data", "idx:data", "--out", "m.json"],
    )?;
    assert_eq!(code(&made), Some(0), "{}", stderr(&made));
    assert!(
        stdout(&made).contains("train: 200 records"),
        "{}",
        stdout(&made)
    );

    let mut was = 0;
    write_idx(&data, 200, |_, labels| {
        was = labels[3];
        labels[3] = (labels[3] + 1) % 10;
    })?;
    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "idx:data",
            "--manifest",
            "m.json",
        ],
    )?;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("signature: not checked"), "{text}");
    assert!(text.contains("2 findings (2 high):"), "{text}");
    assert!(
        text.contains(&format!(
            "LabelFlipped                       train: record 3: label changed from {was} to {}",
            (was + 1) % 10
        )),
        "{text}"
    );
    assert!(text.contains("train-labels-idx1-ubyte: SHA-256"), "{text}");

    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "idx:data",
            "--manifest",
            "m.json",
            "--json",
        ],
    )?;
    assert_eq!(code(&out), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(report["clean"], false);
    assert_eq!(report["summary"]["high"], 2);
    let flipped = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "LabelFlipped"))
        .ok_or("no LabelFlipped finding")?;
    assert_eq!(flipped["index"], 3);
    assert_eq!(flipped["manifest_label"], u64::from(was));
    Ok(())
}

#[test]
fn a_removed_class_is_found_against_a_reference_manifest() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    write_idx(&dir.join("approved"), 300, |_, _| {})?;
    write_idx(&dir.join("batch"), 300, |pixels, labels| {
        let keep: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != 7).collect();
        *pixels = keep
            .iter()
            .flat_map(|&i| pixels[i * 784..(i + 1) * 784].to_vec())
            .collect();
        *labels = keep.iter().map(|&i| labels[i]).collect();
    })?;
    let made = nnguard(
        dir,
        &[
            "data",
            "manifest",
            "--data",
            "idx:approved",
            "--out",
            "ref.json",
        ],
    )?;
    assert_eq!(code(&made), Some(0), "{}", stderr(&made));
    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "idx:batch",
            "--reference",
            "ref.json",
        ],
    )?;
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("no manifest: validation only"), "{text}");
    assert!(text.contains("ClassMissing"), "{text}");
    assert!(text.contains("class 7 has no records"), "{text}");
    assert!(text.contains("ClassBalanceShift"), "{text}");

    let same = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "idx:approved",
            "--reference",
            "ref.json",
        ],
    )?;
    assert_eq!(code(&same), Some(0), "{}", stdout(&same));
    Ok(())
}

#[test]
fn bad_input_is_exit_2_naming_the_flag_and_the_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec![
                "data",
                "check",
                "--data",
                "bundled",
                "--manifest",
                "missing.json",
            ],
            &["--manifest", "missing.json"],
        ),
        (
            vec![
                "data",
                "check",
                "--data",
                "bundled",
                "--manifest",
                "other.json",
            ],
            &["--manifest", "other.json", "not a data manifest"],
        ),
        (
            vec![
                "data",
                "check",
                "--data",
                "bundled",
                "--manifest",
                "future.json",
            ],
            &["future.json", "newer than this nnguard reads"],
        ),
        (
            vec!["data", "check", "--data", "idx:short"],
            &["--data idx:short", "train-images-idx3-ubyte", "truncated"],
        ),
        (
            vec![
                "data",
                "check",
                "--data",
                "bundled",
                "--near-threshold",
                "2",
            ],
            &["--near-threshold"],
        ),
        (
            vec![
                "data",
                "check",
                "--data",
                "bundled",
                "--balance-threshold",
                "-1",
            ],
            &["--balance-threshold"],
        ),
        (
            vec![
                "data",
                "manifest",
                "--data",
                "bundled",
                "--out",
                "no/such/dir/m.json",
            ],
            &["--out", "does not exist"],
        ),
        (
            vec![
                "data",
                "manifest",
                "--data",
                "bundled",
                "--out",
                "m.json",
                "--key",
                "nokey.pem",
            ],
            &["--key", "nokey.pem"],
        ),
    ];
    fs::write(dir.join("other.json"), r#"{"mediaType": "something else"}"#)?;
    fs::write(
        dir.join("future.json"),
        r#"{"schema": "nnguard-data-manifest", "schema_version": 7}"#,
    )?;
    write_idx(&dir.join("short"), 10, |pixels, _| {
        pixels.truncate(9 * 784 + 100)
    })?;
    for (args, expected) in cases {
        let out = nnguard(dir, &args)?;
        assert_eq!(
            code(&out),
            Some(2),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let err = stderr(&out);
        for e in expected {
            assert!(err.contains(e), "{args:?}: {err:?} lacks {e:?}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    // A missing signature file is an error, not a failed verification.
    assert_eq!(code(&nnguard(dir, &["keygen"])?), Some(0));
    let made = nnguard(
        dir,
        &[
            "data", "manifest", "--data", "bundled", "--split", "test", "--out", "m.json",
        ],
    )?;
    assert_eq!(code(&made), Some(0));
    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "bundled",
            "--manifest",
            "m.json",
            "--pubkey",
            "signing-key.pub.pem",
        ],
    )?;
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("--signature m.json.sig: no such file"),
        "{}",
        stderr(&out)
    );
    // --pubkey needs --manifest: a usage error.
    let out = nnguard(
        dir,
        &[
            "data",
            "check",
            "--data",
            "bundled",
            "--pubkey",
            "signing-key.pub.pem",
        ],
    )?;
    assert_eq!(code(&out), Some(4));
    Ok(())
}
