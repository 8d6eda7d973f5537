//! `nnguard scan` and `nnguard convert` as a user runs them: exit codes, formats, messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nnguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnguard"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nnguard: {e}"))
}

fn testdata(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../nnguard-modelfile/testdata")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `os.system("id")` as a protocol-0 pickle.
const EVIL: &[u8] = b"cos\nsystem\n(S'id'\ntR.";

#[test]
fn clean_checkpoint_exits_0() {
    let o = nnguard(&["scan", s(&testdata("state_dict.pt"))]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("scanned 1 file(s): 0 finding(s), 0 error(s)"));
}

#[test]
fn hostile_pickle_exits_1_and_names_the_import() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("model.bin");
    std::fs::write(&p, EVIL).unwrap_or_else(|e| panic!("{e}"));
    let o = nnguard(&["scan", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("critical NNG101 PickleGlobalNotAllowed at byte 0"),
        "{out}"
    );
    assert!(out.contains("`os.system`"), "{out}");
}

#[test]
fn json_and_sarif_formats() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("x.pkl");
    std::fs::write(&p, EVIL).unwrap_or_else(|e| panic!("{e}"));
    let o = nnguard(&["scan", "--format", "json", s(&p)]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j["verdict"], "findings");
    assert_eq!(j["files"][0]["findings"][0]["rule"]["code"], "NNG101");
    let sarif = dir.path().join("out.sarif");
    let o = nnguard(&["scan", "--format", "sarif", "-o", s(&sarif), s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&sarif).unwrap_or_default();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j["version"], "2.1.0");
    assert_eq!(j["runs"][0]["results"][0]["ruleId"], "NNG101");
}

#[test]
fn unreadable_path_exits_2_and_the_rest_is_still_scanned() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("x.pkl");
    std::fs::write(&p, EVIL).unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.pt");
    let o = nnguard(&["scan", s(&missing), s(&p)]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    assert!(
        out.contains("missing.pt: error: no such file or directory"),
        "{out}"
    );
    assert!(out.contains("x.pkl: 1 finding(s)"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("could not be scanned"));
}

#[test]
fn empty_directory_exits_3() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("README.md"), "# notes\n").unwrap_or_else(|e| panic!("{e}"));
    let o = nnguard(&["scan", s(dir.path())]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn allow_flag() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("x.pkl");
    std::fs::write(&p, b"\x80\x02cargparse\nNamespace\n)R.").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nnguard(&["scan", s(&p)]).status.code(), Some(1));
    assert_eq!(
        nnguard(&["scan", "--allow", "argparse.Namespace", s(&p)])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        nnguard(&["scan", "--allow", "nodot", s(&p)]).status.code(),
        Some(2)
    );
}

#[test]
fn convert_writes_safetensors_and_refuses_hostile_input() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let o = nnguard(&["convert", s(&testdata("state_dict.pt")), s(&out)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("wrote 4 tensor(s)"));
    assert_eq!(nnguard(&["scan", s(&out)]).status.code(), Some(0));
    let evil = dir.path().join("evil.pt");
    std::fs::write(&evil, EVIL).unwrap_or_else(|e| panic!("{e}"));
    let o = nnguard(&["convert", s(&evil), s(&dir.path().join("e.safetensors"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to convert"), "{err}");
}
