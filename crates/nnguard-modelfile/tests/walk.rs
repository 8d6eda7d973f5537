//! Directory walks, unreadable paths and the overall verdict.

mod common;

use common::*;
use nnguard_modelfile::{Scanner, Verdict, report};

#[test]
fn walks_directories_and_keeps_going_after_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sub = dir.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(fixture("state_dict.pt"), dir.path().join("good.pt"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sub.join("evil.bin"), reduce_call("os", "system", "id"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("README.md"), "# a model\n").unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.pt");
    let r = Scanner::new().scan_paths(&[dir.path().to_path_buf(), missing]);
    assert_eq!(r.scanned(), 2);
    assert_eq!(r.finding_count(), 1);
    assert_eq!(r.verdict(), Verdict::Error);
    assert!(
        r.files
            .iter()
            .any(|f| f.error.as_deref() == Some("no such file or directory"))
    );
    let text = report::to_text(&r, false);
    assert!(text.contains("evil.bin: 1 finding(s) (pickle)"), "{text}");
    assert!(
        text.contains("NNG101 PickleGlobalNotAllowed at byte 0"),
        "{text}"
    );
}

#[test]
fn verdicts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Scanner::new().scan_paths(&[dir.path()]).verdict(),
        Verdict::NothingScanned
    );
    std::fs::write(dir.path().join("notes.txt"), "hello\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Scanner::new().scan_paths(&[dir.path()]).verdict(),
        Verdict::NothingScanned
    );
    std::fs::copy(fixture("array_f32.npy"), dir.path().join("a.npy"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Scanner::new().scan_paths(&[dir.path()]).verdict(),
        Verdict::Clean
    );
    std::fs::write(dir.path().join("x.pkl"), reduce_call("os", "system", "id"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Scanner::new().scan_paths(&[dir.path()]).verdict(),
        Verdict::Findings
    );
}

#[test]
fn sarif_and_json_shape() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("x.pkl");
    std::fs::write(&p, reduce_call("os", "system", "id")).unwrap_or_else(|e| panic!("{e}"));
    let r = Scanner::new().scan_paths(&[&p]);
    let s = report::to_sarif(&r);
    assert_eq!(s["version"], "2.1.0");
    let run = &s["runs"][0];
    assert_eq!(run["results"][0]["ruleId"], "NNG101");
    assert_eq!(run["results"][0]["level"], "error");
    assert_eq!(
        run["results"][0]["locations"][0]["physicalLocation"]["region"]["byteOffset"],
        0
    );
    let idx = run["results"][0]["ruleIndex"].as_u64().unwrap_or(u64::MAX) as usize;
    assert_eq!(
        run["tool"]["driver"]["rules"][idx]["name"],
        "PickleGlobalNotAllowed"
    );
    let j = report::to_json(&r);
    assert_eq!(j["verdict"], "findings");
    assert_eq!(
        j["files"][0]["findings"][0]["rule"]["name"],
        "PickleGlobalNotAllowed"
    );
    assert_eq!(j["files"][0]["findings"][0]["severity"], "critical");
}

#[test]
fn large_non_model_files_are_skipped_and_large_protocol0_pickles_are_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x01)
        .collect();
    std::fs::write(dir.path().join("video.mp4"), &noise).unwrap_or_else(|e| panic!("{e}"));
    let r = Scanner::new().scan_paths(&[dir.path()]);
    assert_eq!(r.verdict(), Verdict::NothingScanned, "{:?}", r.files);
    let big_arg = "x".repeat(2_000_000);
    std::fs::write(
        dir.path().join("blob"),
        reduce_call("os", "system", &big_arg),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = Scanner::new().scan_paths(&[dir.path()]);
    assert_eq!(r.finding_count(), 1);
    assert_eq!(
        r.files
            .iter()
            .find(|f| !f.findings.is_empty())
            .map(|f| rules(f)),
        Some(vec!["PickleGlobalNotAllowed"])
    );
}
