//! The zip parser never panics; with small limits it always terminates quickly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnguard_modelfile::{Format, Limits, Scanner};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        pickle_ops: 100_000,
        buffered_bytes: 1 << 20,
        decompressed_bytes: 16 << 20,
        ..Limits::default()
    };
    let r = Scanner::new()
        .with_limits(limits)
        .scan_bytes_as(Format::Zip, data);
    assert!(r.error.is_none());
    assert!(r.format.is_some());
});
