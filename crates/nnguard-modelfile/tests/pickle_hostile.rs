//! Hand-assembled hostile pickles: every one must be flagged, with the right rule, import
//! and offset.

mod common;

use common::*;
use nnguard_modelfile::{Limits, Scanner, Severity};

#[test]
fn os_system_through_reduce_is_critical() {
    let r = scan("evil.pkl", &reduce_call("os", "system", "touch /tmp/pwned"));
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.message.contains("`os.system`"), "{}", f.message);
    assert_eq!(f.location.offset, Some(0));
}

#[test]
fn builtins_eval_through_inst() {
    let data = b"(S'__import__(\"os\").system(\"id\")'\nibuiltins\neval\n.";
    let r = scan("evil.pkl", data);
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert!(r.findings[0].message.contains("`builtins.eval` with INST"));
    let inst_at = data
        .windows(10)
        .position(|w| w == b"\nibuiltins")
        .map(|p| p as u64 + 1);
    assert_eq!(r.findings[0].location.offset, inst_at);
    assert_eq!(r.findings[0].severity, Severity::Critical);
}

#[test]
fn builtins_eval_through_obj() {
    let data = b"(cbuiltins\neval\nS'1+1'\no.";
    let r = scan("evil.pkl", data);
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert!(
        r.findings[0]
            .message
            .contains("`builtins.eval` with GLOBAL")
    );
    assert_eq!(r.findings[0].location.offset, Some(1));
}

#[test]
fn py2_builtin_spelling_is_still_critical() {
    let r = scan("evil.pkl", &reduce_call("__builtin__", "eval", "1"));
    assert_eq!(r.findings[0].severity, Severity::Critical);
}

#[test]
fn stack_global_with_names_from_the_memo() {
    let mut p = vec![0x80, 4];
    p.extend(short_unicode("os"));
    p.push(0x94); // MEMOIZE -> 0
    p.extend(short_unicode("system"));
    p.push(0x94); // MEMOIZE -> 1
    p.extend([b'0', b'0']); // POP, POP: the names now live only in the memo
    p.extend([b'h', 0, b'h', 1]); // BINGET 0, BINGET 1
    let at = p.len();
    p.push(0x93); // STACK_GLOBAL
    p.extend(short_unicode("id"));
    p.extend([0x85, b'R', b'.']);
    let r = scan("evil.pkl", &p);
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert!(
        r.findings[0]
            .message
            .contains("`os.system` with STACK_GLOBAL")
    );
    assert_eq!(r.findings[0].location.offset, Some(at as u64));
}

#[test]
fn nested_pickle_loads_is_scanned_too() {
    let inner = reduce_call("posix", "system", "id");
    let mut p = b"cpickle\nloads\n(".to_vec();
    p.extend(bytes_op(&inner));
    p.extend(b"tR.");
    let r = scan("evil.pkl", &p);
    assert_eq!(
        rules(&r),
        [
            "PickleGlobalNotAllowed",
            "PickleNestedPickle",
            "PickleGlobalNotAllowed"
        ]
    );
    let inner_finding = &r.findings[2];
    assert_eq!(
        inner_finding.location.entry,
        vec![format!("pickle.loads@{}", p.len() - 2)]
    );
    assert!(inner_finding.message.contains("`posix.system`"));
    assert_eq!(inner_finding.location.offset, Some(0));
}

#[test]
fn benign_pickle_followed_by_evil_one() {
    let benign = fixture_bytes("plain_p4.pkl");
    assert!(scan("ok.pkl", &benign).findings.is_empty());
    let mut data = benign.clone();
    data.extend(reduce_call("subprocess", "check_output", "id"));
    let r = scan("evil.pkl", &data);
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
    assert_eq!(r.findings[0].location.offset, Some(benign.len() as u64));
}

#[test]
fn trailing_garbage_after_stop() {
    let mut data = fixture_bytes("plain_p4.pkl");
    let end = data.len() as u64;
    data.extend([0xffu8, 0xfe, 0xfd]);
    let r = scan("x.pkl", &data);
    assert_eq!(rules(&r), ["PickleTrailingData"]);
    assert_eq!(r.findings[0].location.offset, Some(end));
}

#[test]
fn frame_longer_than_the_data() {
    let mut p = vec![0x80, 4, 0x95];
    p.extend(1000u64.to_le_bytes());
    p.extend(b"N.");
    let r = scan("x.pkl", &p);
    assert_eq!(rules(&r), ["PickleFrameLengthMismatch"]);
    assert_eq!(r.findings[0].location.offset, Some(2));
}

#[test]
fn frame_ending_inside_an_opcode_does_not_hide_it() {
    // The frame claims 3 bytes, but GLOBAL runs on; a frame-skipping scanner would miss it.
    let mut p = vec![0x80, 4, 0x95];
    p.extend(3u64.to_le_bytes());
    p.extend(reduce_call("os", "system", "id"));
    let r = scan("x.pkl", &p);
    assert_eq!(
        rules(&r),
        ["PickleGlobalNotAllowed", "PickleFrameLengthMismatch"]
    );
}

#[test]
fn unknown_opcode_and_bad_protocol() {
    let r = scan("x.pkl", b"\x80\x02\xff.");
    assert_eq!(rules(&r), ["PickleUnknownOpcode"]);
    assert_eq!(r.findings[0].location.offset, Some(2));
    let r = scan("x.pkl", b"\x80\x02N\x80\x09.");
    assert_eq!(rules(&r), ["PickleUnknownOpcode"]);
}

#[test]
fn memo_read_before_write() {
    let r = scan("x.pkl", b"\x80\x02h\x07.");
    assert_eq!(rules(&r), ["PickleMemoInconsistent"]);
}

#[test]
fn memo_written_twice() {
    let r = scan("x.pkl", b"\x80\x02Nq\x00\x88q\x00.");
    assert_eq!(rules(&r), ["PickleMemoInconsistent"]);
    assert_eq!(r.findings[0].location.offset, Some(6));
}

#[test]
fn truncated_pickle_is_a_parse_error() {
    let r = scan("x.pkl", b"\x80\x02cos\nsys");
    assert_eq!(rules(&r), ["PickleParseError"]);
}

#[test]
fn import_before_a_parse_error_is_still_reported() {
    let r = scan("x.pkl", b"\x80\x02cos\nsystem\n0)))0000000");
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed", "PickleParseError"]);
}

#[test]
fn call_of_a_call_result() {
    // collections.OrderedDict()() : allowed import, but calling its result is flagged.
    let r = scan("x.pkl", b"\x80\x02ccollections\nOrderedDict\n)R)R.");
    assert_eq!(rules(&r), ["PickleCallTargetNotGlobal"]);
}

#[test]
fn extension_registry_import() {
    let r = scan("x.pkl", b"\x80\x02\x82\x01).");
    assert!(rules(&r).contains(&"PickleExtensionCode"));
}

#[test]
fn memo_expansion_bomb_is_reported_not_expanded() {
    // l0 = [None]*10 ; l(k+1) = [lk]*10, 12 levels: 10^12 values if copied out.
    let mut p = vec![0x80, 2, b']', b'('];
    p.extend([b'N'; 10]);
    p.extend([b'e', b'q', 0]);
    for k in 0..12u8 {
        p.extend([b']', b'(']);
        for _ in 0..10 {
            p.extend([b'h', k]);
        }
        p.extend([b'e', b'q', k + 1]);
    }
    p.push(b'.');
    let start = std::time::Instant::now();
    let r = scan("bomb.pkl", &p);
    assert!(start.elapsed().as_secs() < 5);
    assert_eq!(rules(&r), ["PickleExpansionBomb"]);
}

#[test]
fn op_limit_stops_long_streams() {
    let mut data = vec![0x80, 2];
    data.extend(std::iter::repeat_n(b'N', 1000));
    data.push(b'.');
    let limits = Limits {
        pickle_ops: 100,
        ..Limits::default()
    };
    let r = Scanner::new()
        .with_limits(limits)
        .scan_bytes("x.pkl", &data);
    assert_eq!(rules(&r), ["ScanLimitExceeded"]);
}

#[test]
fn allow_flag_clears_a_known_safe_import() {
    let data = b"\x80\x02cargparse\nNamespace\n)R.";
    assert_eq!(rules(&scan("x.pkl", data)), ["PickleGlobalNotAllowed"]);
    let mut s = Scanner::new();
    assert!(s.allow("argparse.Namespace"));
    assert!(s.scan_bytes("x.pkl", data).findings.is_empty());
}

#[test]
fn protocol_0_pickle_without_extension_is_recognised() {
    let r = scan("README", &reduce_call("os", "system", "id"));
    assert_eq!(r.format, Some(nnguard_modelfile::Format::Pickle));
    assert_eq!(rules(&r), ["PickleGlobalNotAllowed"]);
}

#[test]
fn text_file_is_skipped() {
    let r = scan("notes.txt", b"just some notes\nnothing to see\n");
    assert!(r.skipped);
    assert!(r.findings.is_empty());
    let r = scan("model.pt", b"just some notes\n");
    assert_eq!(rules(&r), ["FileFormatUnrecognized"]);
}

#[test]
fn nested_pickle_passed_as_protocol2_codecs_bytes() {
    // Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); the inner pickle is found.
    let inner = reduce_call("os", "system", "id");
    let text: String = inner.iter().map(|b| char::from(*b)).collect();
    let mut p = vec![0x80, 2];
    p.extend(b"c_pickle\nloads\nc_codecs\nencode\n");
    let mut arg = vec![b'X'];
    arg.extend((text.len() as u32).to_le_bytes());
    arg.extend(text.as_bytes());
    p.extend(arg);
    p.extend(short_unicode("latin1"));
    p.extend([0x86, b'R', 0x85, b'R', b'.']);
    let r = scan("evil.pkl", &p);
    assert_eq!(
        rules(&r),
        [
            "PickleGlobalNotAllowed",
            "PickleNestedPickle",
            "PickleGlobalNotAllowed"
        ]
    );
    assert!(r.findings[2].message.contains("`os.system`"));
}
