//! Property tests: random opcode streams and random files never panic and always terminate
//! within the operation limit.

use nnguard_modelfile::pickle::{self, Allowlist};
use nnguard_modelfile::{Format, Limits, Scanner};
use proptest::prelude::*;

/// Opcodes with plausible arguments, mixed with raw bytes, so that streams get past the first
/// few opcodes.
fn op_chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![b'(']),
        Just(vec![b'N']),
        Just(vec![b')']),
        Just(vec![b']']),
        Just(vec![b'}']),
        Just(vec![b'e']),
        Just(vec![b'u']),
        Just(vec![b's']),
        Just(vec![b'a']),
        Just(vec![b't']),
        Just(vec![b'R']),
        Just(vec![b'b']),
        Just(vec![b'o']),
        Just(vec![0x81]),
        Just(vec![0x85]),
        Just(vec![0x86]),
        Just(vec![0x93]),
        Just(vec![0x94]),
        Just(vec![b'0']),
        Just(vec![b'1']),
        Just(vec![b'2']),
        Just(vec![b'.']),
        Just(b"cos\nsystem\n".to_vec()),
        Just(b"ccollections\nOrderedDict\n".to_vec()),
        Just(b"\x8c\x02os".to_vec()),
        Just(b"S'x'\n".to_vec()),
        any::<u8>().prop_map(|k| vec![b'h', k]),
        any::<u8>().prop_map(|k| vec![b'q', k]),
        any::<u8>().prop_map(|k| vec![b'K', k]),
        any::<u64>().prop_map(|n| {
            let mut v = vec![0x95];
            v.extend((n % 64).to_le_bytes());
            v
        }),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(op_chunk(), 0..64).prop_map(|chunks| {
        let mut v = vec![0x80, 4];
        for c in chunks {
            v.extend(c);
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn vm_terminates_on_random_streams(data in stream()) {
        let limits = Limits { pickle_ops: 10_000, ..Limits::default() };
        let out = pickle::run(&data, 0, &limits, &Allowlist::default());
        prop_assert!(out.ops <= limits.pickle_ops + 1);
        prop_assert!(out.end <= data.len());
        // Either it stopped cleanly, or it says why it did not.
        prop_assert!(out.reached_stop || !out.issues.is_empty());
    }

    #[test]
    fn scanner_never_panics_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let s = Scanner::new();
        for name in ["x.pt", "x.onnx", "x.safetensors", "x"] {
            let _ = s.scan_bytes(name, &data);
        }
        for f in [Format::Pickle, Format::Zip, Format::Npy, Format::Onnx, Format::Safetensors, Format::Tar, Format::TorchLegacy] {
            let r = s.scan_bytes_as(f, &data);
            prop_assert!(r.error.is_none());
        }
    }

    #[test]
    fn scanner_never_panics_on_random_streams(data in stream()) {
        let r = Scanner::new().scan_bytes("x.pkl", &data);
        prop_assert!(r.error.is_none());
    }
}
