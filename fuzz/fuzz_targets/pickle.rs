//! The pickle VM never panics and stops within its operation limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnguard_modelfile::pickle::{Allowlist, run};
use nnguard_modelfile::{Format, Limits, Scanner};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        pickle_ops: 100_000,
        ..Limits::default()
    };
    let out = run(data, 0, &limits, &Allowlist::default());
    assert!(out.ops <= limits.pickle_ops + 1);
    assert!(out.end <= data.len());
    assert!(out.reached_stop || !out.issues.is_empty());
    let r = Scanner::new()
        .with_limits(limits)
        .scan_bytes_as(Format::Pickle, data);
    assert!(r.error.is_none());
});
