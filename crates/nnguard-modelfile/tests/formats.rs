//! Benign real files (written by torch and numpy, see testdata/README.md) and hostile
//! archives, arrays, safetensors and ONNX models built here.

mod common;

use common::*;
use nnguard_modelfile::{Format, Limits, Scanner};
use prost::Message;

#[test]
fn benign_fixtures_are_clean() {
    let s = Scanner::new();
    for (name, format) in [
        ("state_dict.pt", Format::TorchZip),
        ("checkpoint_nested.pt", Format::TorchZip),
        ("state_dict_legacy.pt", Format::TorchLegacy),
        ("array_f32.npy", Format::Npy),
        ("arrays.npz", Format::Zip),
        ("plain_p4.pkl", Format::Pickle),
    ] {
        let r = s.scan_file(&fixture(name));
        assert_eq!(r.format, Some(format), "{name}");
        assert!(r.findings.is_empty(), "{name}: {:?}", r.findings);
        assert!(r.error.is_none(), "{name}");
    }
}

fn torch_zip_with(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let original = fixture_bytes("state_dict.pt");
    let mut a =
        zip::ZipArchive::new(std::io::Cursor::new(original)).unwrap_or_else(|e| panic!("{e}"));
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap_or_else(|e| panic!("{e}"));
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap_or_else(|e| panic!("{e}"));
        entries.push((f.name().unwrap_or_default().to_string(), v));
    }
    for (n, d) in extra {
        entries.push(((*n).to_owned(), d.to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    make_zip(&refs)
}

#[test]
fn torch_zip_with_renamed_pickle_entries() {
    let mut evil_p2 = vec![0x80, 2];
    evil_p2.extend(reduce_call("os", "system", "id"));
    let evil_p0 = reduce_call("builtins", "exec", "import os");
    let data = torch_zip_with(&[
        ("state_dict/weights.bin", &evil_p2),
        ("state_dict/notes", &evil_p0),
    ]);
    let r = scan("model.pt", &data);
    assert_eq!(r.format, Some(Format::TorchZip));
    assert_eq!(
        rules(&r),
        ["PickleGlobalNotAllowed", "PickleGlobalNotAllowed"]
    );
    assert_eq!(r.findings[0].location.entry, ["state_dict/weights.bin"]);
    assert_eq!(r.findings[0].location.offset, Some(2));
    assert_eq!(r.findings[1].location.entry, ["state_dict/notes"]);
}

#[test]
fn evil_data_pkl_in_a_torch_zip() {
    let data = make_zip(&[
        ("archive/data.pkl", &reduce_call("os", "system", "id")),
        ("archive/version", b"3\n"),
    ]);
    let r = scan("model.pt", &data);
    assert_eq!(r.format, Some(Format::TorchZip));
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert_eq!(r.findings[0].location.entry, ["archive/data.pkl"]);
}

#[test]
fn zip_entry_escaping_the_root() {
    let data = make_zip(&[("../../.bashrc", b"echo hi\n"), ("/etc/cron.d/x", b"x")]);
    let r = scan("x.zip", &data);
    assert_eq!(rules(&r), ["ZipEntryEscapesRoot", "ZipEntryEscapesRoot"]);
}

#[test]
fn zip_symlink_entry() {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.add_symlink("data/0", "/etc/passwd", stored())
        .unwrap_or_else(|e| panic!("{e}"));
    let data = w.finish().unwrap_or_else(|e| panic!("{e}")).into_inner();
    assert_eq!(rules(&scan("x.zip", &data)), ["ZipEntryIsLink"]);
}

#[test]
fn zip_crc_mismatch() {
    let payload = b"some tensor bytes that will be altered";
    let mut data = make_zip(&[("archive/data/0", payload)]);
    let at = data.windows(4).position(|w| w == b"some").unwrap_or(0);
    data[at] ^= 0x20;
    let r = scan("x.zip", &data);
    assert_eq!(rules(&r), ["ZipCrcMismatch"]);
}

#[test]
fn zip_bomb_is_reported_not_decompressed() {
    let zeros = vec![0u8; 8 << 20];
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let data = make_zip_with(&[("bomb.bin", &zeros)], opts);
    assert!(data.len() < 100_000);
    let r = scan("x.zip", &data);
    assert_eq!(rules(&r), ["ZipCompressionRatio"]);
}

#[test]
fn zip_with_too_many_entries() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let data = make_zip(&entries);
    let limits = Limits {
        zip_entries: 10,
        ..Limits::default()
    };
    let r = Scanner::new()
        .with_limits(limits)
        .scan_bytes("x.zip", &data);
    assert_eq!(rules(&r), ["ZipTooManyEntries"]);
}

#[test]
fn zip_nesting_depth() {
    let mut data = make_zip(&[("inner.pkl", &reduce_call("os", "system", "id"))]);
    for i in 0..6 {
        data = make_zip(&[(&format!("level{i}.zip"), &data)]);
    }
    let r = scan("x.zip", &data);
    assert_eq!(rules(&r), ["NestingTooDeep"]);
    // Two levels deep is followed and the payload found.
    let shallow = make_zip(&[(
        "a.zip",
        &make_zip(&[("inner.pkl", &reduce_call("os", "system", "id"))]),
    )]);
    let r = scan("x.zip", &shallow);
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert_eq!(r.findings[0].location.entry, ["a.zip", "inner.pkl"]);
}

#[test]
fn zip_encrypted_entry() {
    let mut data = make_zip(&[("archive/data.pkl", b"\x80\x02N.")]);
    // Set the "encrypted" flag in the local header and the central directory.
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let at = data.windows(4).position(|w| w == sig).unwrap_or(0);
        let flag_at = if sig == b"PK\x03\x04" { at + 6 } else { at + 8 };
        data[flag_at] |= 1;
    }
    let r = scan("x.pt", &data);
    assert_eq!(rules(&r), ["ZipEntryEncrypted"]);
}

#[test]
fn truncated_zip() {
    let data = fixture_bytes("state_dict.pt");
    let r = scan("x.pt", &data[..data.len() / 2]);
    assert_eq!(rules(&r), ["ZipArchiveInvalid"]);
}

#[test]
fn npz_with_object_array() {
    let header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend([0x80, 2]);
    npy.extend(reduce_call("os", "system", "id"));
    let r = scan("x.npy", &npy);
    assert_eq!(rules(&r), ["NpyObjectArray", "PickleGlobalNotAllowed"]);
    let npz = make_zip(&[("arr_0.npy", &npy)]);
    let r = scan("x.npz", &npz);
    assert_eq!(rules(&r), ["NpyObjectArray", "PickleGlobalNotAllowed"]);
    assert_eq!(r.findings[1].location.entry, ["arr_0.npy"]);
}

#[test]
fn npy_size_mismatch_and_bad_header() {
    let mut data = fixture_bytes("array_f32.npy");
    data.truncate(data.len() - 4);
    assert_eq!(rules(&scan("x.npy", &data)), ["NpyDataSizeMismatch"]);
    let mut bad = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': eval('1'), }";
    bad.extend((h.len() as u16).to_le_bytes());
    bad.extend(h.as_bytes());
    assert_eq!(rules(&scan("x.npy", &bad)), ["NpyHeaderInvalid"]);
}

fn safetensors_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend(header.as_bytes());
    v.extend(vec![0u8; data_len]);
    v
}

#[test]
fn safetensors_checks() {
    let ok = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#;
    let r = scan("m.safetensors", &safetensors_file(ok, 12));
    assert_eq!(r.format, Some(Format::Safetensors));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let cases: &[(&str, usize, &[&str])] = &[
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            &["SafetensorsOffsetsOverlap"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            16,
            &["SafetensorsOffsetsGap"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            &["SafetensorsOffsetsGap"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            4,
            &["SafetensorsOffsetOutOfBounds", "SafetensorsOffsetsGap"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            8,
            &["SafetensorsShapeOverflow"],
        ),
        (
            r#"{"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}"#,
            8,
            &["SafetensorsUnknownDtype"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
            &["SafetensorsSizeMismatch"],
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            8,
            &["SafetensorsDuplicateKey", "SafetensorsOffsetsOverlap"],
        ),
        (
            r#"{"a":{"dtype":"F32"}}  "#,
            0,
            &["SafetensorsHeaderInvalid"],
        ),
        (r#"{"a": nope}"#, 0, &["SafetensorsHeaderInvalid"]),
    ];
    for (header, len, expected) in cases {
        let r = scan("m.safetensors", &safetensors_file(header, *len));
        assert_eq!(&rules(&r), expected, "{header}");
    }
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    assert_eq!(
        rules(&scan("m.safetensors", &huge)),
        ["SafetensorsHeaderTooLarge"]
    );
}

fn onnx_model(location: Option<&str>, domain: &str) -> Vec<u8> {
    use nnguard_modelfile::onnx::*;
    let mut init = TensorProto {
        name: "w".into(),
        ..Default::default()
    };
    if let Some(loc) = location {
        init.data_location = 1;
        init.external_data.push(StringStringEntryProto {
            key: "location".into(),
            value: loc.into(),
        });
    }
    let body = GraphProto {
        node: vec![NodeProto {
            op_type: "Exec".into(),
            domain: domain.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            initializer: vec![init],
            node: vec![NodeProto {
                op_type: "If".into(),
                attribute: vec![AttributeProto {
                    name: "then_branch".into(),
                    g: Some(body),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        functions: vec![],
    };
    model.encode_to_vec()
}

#[test]
fn onnx_checks() {
    let r = scan("m.onnx", &onnx_model(Some("weights.bin"), ""));
    assert_eq!(r.format, Some(Format::Onnx));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    // Recognised by content without the extension.
    assert_eq!(
        scan("model", &onnx_model(None, "")).format,
        Some(Format::Onnx)
    );
    assert_eq!(
        rules(&scan("m.onnx", &onnx_model(Some("../../etc/passwd"), ""))),
        ["OnnxExternalDataEscapes"]
    );
    assert_eq!(
        rules(&scan("m.onnx", &onnx_model(Some("/etc/passwd"), ""))),
        ["OnnxExternalDataEscapes"]
    );
    // The custom op sits in a subgraph.
    assert_eq!(
        rules(&scan("m.onnx", &onnx_model(None, "com.evil"))),
        ["OnnxCustomOpDomain"]
    );
    assert_eq!(
        rules(&scan("m.onnx", b"\x0a\xff\xff\xff")),
        ["OnnxParseError"]
    );
}

#[cfg(unix)]
#[test]
fn onnx_external_data_symlink() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("m.onnx"),
        onnx_model(Some("weights.bin"), ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("weights.bin"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = Scanner::new().scan_file(&dir.path().join("m.onnx"));
    assert_eq!(rules(&r), ["OnnxExternalDataLink"]);
}

#[test]
fn legacy_checkpoint_with_appended_pickle() {
    let mut data = fixture_bytes("state_dict_legacy.pt");
    let end = data.len() as u64;
    let mut evil = vec![0x80, 2];
    evil.extend(reduce_call("os", "system", "id"));
    data.extend(&evil);
    let r = scan("old.pt", &data);
    assert_eq!(r.format, Some(Format::TorchLegacy));
    assert_eq!(
        rules(&r),
        ["TorchLegacyStorageMismatch", "PickleGlobalNotAllowed"]
    );
    assert_eq!(r.findings[0].location.offset, Some(end));
}

#[test]
fn legacy_checkpoint_truncated() {
    let data = fixture_bytes("state_dict_legacy.pt");
    let r = scan("old.pt", &data[..data.len() - 10]);
    assert_eq!(rules(&r), ["TorchLegacyStorageMismatch"]);
}

#[test]
fn tar_with_links_and_escapes() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "storages", "/dev/zero")
        .unwrap_or_else(|e| panic!("{e}"));
    let evil = reduce_call("os", "system", "id");
    let mut h = tar::Header::new_gnu();
    h.set_size(evil.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "pickle", &evil[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let data = b.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let r = scan("old.tar", &data);
    assert_eq!(r.format, Some(Format::Tar));
    assert_eq!(rules(&r), ["TarEntryIsLink", "PickleGlobalNotAllowed"]);
    assert_eq!(r.findings[1].location.entry, ["pickle"]);
}

fn torch_entries() -> Vec<(String, Vec<u8>)> {
    let original = fixture_bytes("state_dict.pt");
    let mut a =
        zip::ZipArchive::new(std::io::Cursor::new(original)).unwrap_or_else(|e| panic!("{e}"));
    let mut entries = Vec::new();
    for i in 0..a.len() {
        let mut f = a.by_index(i).unwrap_or_else(|e| panic!("{e}"));
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap_or_else(|e| panic!("{e}"));
        entries.push((f.name().unwrap_or_default().to_string(), v));
    }
    entries
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    make_zip(&refs)
}

#[test]
fn torch_storage_missing_or_short() {
    let entries: Vec<_> = torch_entries()
        .into_iter()
        .filter(|(n, _)| n != "state_dict/data/3")
        .collect();
    let r = scan("m.pt", &zip_of(&entries));
    assert_eq!(rules(&r), ["TorchStorageMismatch"]);
    assert!(
        r.findings[0].message.contains("state_dict/data/3"),
        "{}",
        r.findings[0].message
    );
    let mut entries = torch_entries();
    for (n, d) in &mut entries {
        if n == "state_dict/data/2" {
            d.truncate(100);
        }
    }
    assert_eq!(
        rules(&scan("m.pt", &zip_of(&entries))),
        ["TorchStorageMismatch"]
    );
}

#[test]
fn torch_storage_crc_is_checked_on_request() {
    let mut data = fixture_bytes("state_dict.pt");
    let storage = torch_entries()
        .into_iter()
        .find(|(n, _)| n == "state_dict/data/2")
        .map(|(_, d)| d)
        .unwrap_or_default();
    let at = data
        .windows(64)
        .position(|w| w == &storage[..64])
        .unwrap_or(0);
    data[at + 10] ^= 0x01;
    assert!(scan("m.pt", &data).findings.is_empty());
    let r = Scanner::new()
        .with_storage_crc(true)
        .scan_bytes("m.pt", &data);
    assert_eq!(rules(&r), ["ZipCrcMismatch"]);
}
