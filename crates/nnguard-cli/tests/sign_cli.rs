//! `nnguard keygen`, `nnguard sign` and `nnguard verify` as a user runs them: output and
//! exit codes (0 verified, 1 verification failed, 2 bad input, 4 usage).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn nnguard(dir: &Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
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

fn signing_testdata() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../nnguard-signing/testdata")
}

/// A temporary directory holding a copy of the fixture model as `model/` and a fresh key pair.
fn workspace() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    fs::create_dir_all(model.join("tokenizer"))?;
    for file in [
        "config.json",
        "weights.bin",
        "tokenizer/vocab.txt",
        "tokenizer/empty.txt",
    ] {
        fs::copy(
            signing_testdata().join("model").join(file),
            model.join(file),
        )?;
    }
    let out = nnguard(tmp.path(), &["keygen"])?;
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    Ok(tmp)
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites_it() -> TestResult {
    let tmp = workspace()?;
    let private = tmp.path().join("signing-key.pem");
    let before = fs::read(&private)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&private)?.permissions().mode() & 0o777, 0o600);
    }
    let again = nnguard(tmp.path(), &["keygen"])?;
    assert_eq!(code(&again), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read(&private)?, before);

    let forced = nnguard(tmp.path(), &["keygen", "--force"])?;
    assert_eq!(code(&forced), Some(0), "{}", stderr(&forced));
    assert_ne!(fs::read(&private)?, before);
    Ok(())
}

#[test]
fn sign_then_verify_then_tamper() -> TestResult {
    let tmp = workspace()?;
    let dir = tmp.path();
    let signed = nnguard(
        dir,
        &[
            "sign",
            "model",
            "--key",
            "signing-key.pem",
            "--signature",
            "model.sig",
        ],
    )?;
    assert_eq!(code(&signed), Some(0), "{}", stderr(&signed));
    assert!(
        stdout(&signed).starts_with("signed model (4 files"),
        "{}",
        stdout(&signed)
    );

    let verify = [
        "verify",
        "model",
        "--key",
        "signing-key.pub.pem",
        "--signature",
        "model.sig",
    ];
    let ok = nnguard(dir, &verify)?;
    assert_eq!(code(&ok), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).starts_with("verified: model matches model.sig"));

    fs::write(dir.join("model/extra.py"), b"import os\n")?;
    fs::rename(
        dir.join("model/config.json"),
        dir.join("model/config2.json"),
    )?;
    let failed = nnguard(dir, &verify)?;
    assert_eq!(code(&failed), Some(1), "{}", stderr(&failed));
    let text = stdout(&failed);
    assert!(text.contains("verification FAILED"), "{text}");
    assert!(
        text.contains(
            "file renamed: config.json is signed, but its content is now at config2.json"
        ),
        "{text}"
    );
    assert!(text.contains("file added: extra.py"), "{text}");
    Ok(())
}

#[test]
fn verify_json_lists_findings_by_kind() -> TestResult {
    let tmp = workspace()?;
    let dir = tmp.path();
    let signed = nnguard(dir, &["sign", "model", "--key", "signing-key.pem"])?;
    assert_eq!(code(&signed), Some(0), "{}", stderr(&signed));
    fs::remove_file(dir.join("model/tokenizer/vocab.txt"))?;
    let out = nnguard(
        dir,
        &[
            "verify",
            "model",
            "--key",
            "signing-key.pub.pem",
            "--signature",
            "model.sig",
            "--json",
        ],
    )?;
    assert_eq!(code(&out), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["verified"], serde_json::json!(false));
    assert_eq!(
        report["findings"],
        serde_json::json!([{"kind": "file_missing", "path": "tokenizer/vocab.txt"}])
    );
    Ok(())
}

#[test]
fn a_signature_written_inside_the_model_is_not_part_of_it() -> TestResult {
    let tmp = workspace()?;
    let dir = tmp.path();
    let signed = nnguard(
        dir,
        &[
            "sign",
            "model",
            "--key",
            "signing-key.pem",
            "--signature",
            "model/model.sig",
        ],
    )?;
    assert_eq!(code(&signed), Some(0), "{}", stderr(&signed));
    let out = nnguard(
        dir,
        &[
            "verify",
            "model",
            "--key",
            "signing-key.pub.pem",
            "--signature",
            "model/model.sig",
        ],
    )?;
    assert_eq!(code(&out), Some(0), "{}{}", stdout(&out), stderr(&out));
    Ok(())
}

#[test]
fn a_bundle_signed_by_the_python_tool_verifies() -> TestResult {
    let data = signing_testdata();
    let out = nnguard(
        &data,
        &[
            "verify",
            "model",
            "--public_key",
            "keys/test-only-public-key.pem",
            "--signature",
            "python-signed/model.sig",
        ],
    )?;
    assert_eq!(code(&out), Some(0), "{}{}", stdout(&out), stderr(&out));
    Ok(())
}

#[test]
fn wrong_key_is_a_failure_and_bad_input_is_an_error() -> TestResult {
    let data = signing_testdata();
    let wrong = nnguard(
        &data,
        &[
            "verify",
            "model",
            "--key",
            "keys/other-public-key.pem",
            "--signature",
            "python-signed/model.sig",
        ],
    )?;
    assert_eq!(code(&wrong), Some(1), "{}", stderr(&wrong));
    assert!(stdout(&wrong).contains("wrong key"), "{}", stdout(&wrong));

    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("bad.sig");
    fs::write(&bad, b"{\"mediaType\":")?;
    let bad = bad.to_string_lossy().into_owned();
    let malformed = nnguard(
        &data,
        &[
            "verify",
            "model",
            "--key",
            "keys/test-only-public-key.pem",
            "--signature",
            &bad,
        ],
    )?;
    assert_eq!(code(&malformed), Some(2));
    assert!(
        stderr(&malformed).contains("malformed signature bundle"),
        "{}",
        stderr(&malformed)
    );
    assert!(
        stderr(&malformed).contains("bad.sig"),
        "{}",
        stderr(&malformed)
    );

    let no_key = nnguard(
        &data,
        &[
            "verify",
            "model",
            "--key",
            "keys/absent.pem",
            "--signature",
            "python-signed/model.sig",
        ],
    )?;
    assert_eq!(code(&no_key), Some(2));
    assert!(
        stderr(&no_key).contains("absent.pem"),
        "{}",
        stderr(&no_key)
    );

    let private_as_public = nnguard(
        &data,
        &[
            "verify",
            "model",
            "--key",
            "keys/test-only-private-key.pem",
            "--signature",
            "python-signed/model.sig",
        ],
    )?;
    assert_eq!(code(&private_as_public), Some(2));
    assert!(stderr(&private_as_public).contains("this is a private key"));

    let usage = nnguard(&data, &["verify", "model"])?;
    assert_eq!(code(&usage), Some(4));
    Ok(())
}

#[cfg(unix)]
#[test]
fn sign_refuses_symlinks_unless_allowed() -> TestResult {
    let tmp = workspace()?;
    let dir = tmp.path();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("model/linked"))?;
    let refused = nnguard(dir, &["sign", "model", "--key", "signing-key.pem"])?;
    assert_eq!(code(&refused), Some(2));
    assert!(
        stderr(&refused).contains("is a symbolic link"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("model.sig").exists());
    Ok(())
}
