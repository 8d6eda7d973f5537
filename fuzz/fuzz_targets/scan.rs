//! Format detection plus every parser, as `nnguard scan` runs them, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnguard_modelfile::{Limits, Scanner};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        pickle_ops: 100_000,
        buffered_bytes: 1 << 20,
        decompressed_bytes: 16 << 20,
        ..Limits::default()
    };
    let s = Scanner::new().with_limits(limits);
    for name in ["model.pt", "model.onnx", "model.safetensors", "data"] {
        let r = s.scan_bytes(name, data);
        assert!(r.error.is_none());
    }
});
