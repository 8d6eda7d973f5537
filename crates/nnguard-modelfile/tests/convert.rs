//! Conversion of real torch checkpoints to safetensors, checked against values torch printed.

mod common;

use common::*;
use nnguard_modelfile::{ModelFileError, Scanner, convert::convert};
use safetensors::SafeTensors;

fn sum_f32(bytes: &[u8]) -> f64 {
    bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .sum()
}

fn check_against_expected(out: &std::path::Path) {
    let data = std::fs::read(out).unwrap_or_else(|e| panic!("{e}"));
    let st = SafeTensors::deserialize(&data).unwrap_or_else(|e| panic!("{e}"));
    let expected = std::fs::read_to_string(fixture("state_dict_expected.txt"))
        .unwrap_or_else(|e| panic!("{e}"));
    for line in expected.lines() {
        let mut parts = line.splitn(2, ' ');
        let name = parts.next().unwrap_or_default();
        let rest = parts.next().unwrap_or_default();
        let (shape, sum) = rest.rsplit_once(' ').unwrap_or_default();
        let sum: f64 = sum.parse().unwrap_or(f64::NAN);
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{:?}", t.shape()), shape, "{name}");
        let got = sum_f32(t.data());
        assert!(
            (got - sum).abs() <= 1e-5 * (1.0 + sum.abs()),
            "{name}: {got} vs {sum}"
        );
    }
}

#[test]
fn converts_zip_state_dict() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let s = convert(&Scanner::new(), &fixture("state_dict.pt"), &out, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.tensors, 4);
    check_against_expected(&out);
    // The output scans clean.
    assert!(Scanner::new().scan_file(&out).findings.is_empty());
}

#[test]
fn converts_legacy_state_dict() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let s = convert(
        &Scanner::new(),
        &fixture("state_dict_legacy.pt"),
        &out,
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.tensors, 4);
    check_against_expected(&out);
}

#[test]
fn converts_nested_checkpoint_with_strided_view() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let s = convert(
        &Scanner::new(),
        &fixture("checkpoint_nested.pt"),
        &out,
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.tensors, 6);
    assert_eq!(s.skipped, ["epoch"]);
    let data = std::fs::read(&out).unwrap_or_else(|e| panic!("{e}"));
    let st = SafeTensors::deserialize(&data).unwrap_or_else(|e| panic!("{e}"));
    let t = st
        .tensor("model.transposed")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.shape(), [4, 3]);
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(v, [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
    let steps = st.tensor("model.steps").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(steps.data(), 7i64.to_le_bytes());
}

#[test]
fn refuses_a_checkpoint_with_findings_unless_forced() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut evil = vec![0x80, 2];
    evil.extend(reduce_call("os", "system", "id"));
    let original = std::fs::read(fixture("state_dict.pt")).unwrap_or_else(|e| panic!("{e}"));
    let mut a =
        zip::ZipArchive::new(std::io::Cursor::new(original)).unwrap_or_else(|e| panic!("{e}"));
    let mut entries = Vec::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap_or_else(|e| panic!("{e}"));
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap_or_else(|e| panic!("{e}"));
        entries.push((f.name().unwrap_or_default().to_string(), v));
    }
    entries.push(("state_dict/extra.pkl".into(), evil));
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let input = dir.path().join("evil.pt");
    std::fs::write(&input, make_zip(&refs)).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let err = convert(&Scanner::new(), &input, &out, false);
    assert!(
        matches!(err, Err(ModelFileError::HasFindings { count: 1, .. })),
        "{err:?}"
    );
    assert!(!out.exists());
    let s = convert(&Scanner::new(), &input, &out, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.tensors, s.findings), (4, 1));
}

#[test]
fn not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("m.safetensors");
    let err = convert(&Scanner::new(), &fixture("array_f32.npy"), &out, false);
    assert!(
        matches!(err, Err(ModelFileError::NotConvertible { .. })),
        "{err:?}"
    );
}
