//! Pickle analysis: a non-executing VM, the allowlist, and scanning of pickle streams.
//!
//! A stream may hold several pickles one after another (legacy PyTorch files, `numpy.save`
//! object arrays, or a benign pickle followed by a hostile one); each is run in turn. Pickles
//! handed to `pickle.loads` inside a pickle are scanned as well.

pub mod allowlist;
pub mod op;
pub mod value;
pub mod vm;

pub use allowlist::Allowlist;
pub use value::{Arena, ByteData, Construct, NodeId, Value};
pub use vm::{Issue, NestedPickle, Outcome, run};

use crate::limits::MAX_STACKED_PICKLES;
use crate::rules;
use crate::scan::Ctx;

/// The first pickle of a legacy (pre-1.6) PyTorch file: the magic number
/// `0x1950a86a20f9469cfc6c` as `LONG1`.
pub const TORCH_LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";

/// What to do with bytes after the last pickle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trailing {
    /// Bytes that are not another pickle are a `PickleTrailingData` finding.
    Finding,
    /// The caller interprets what follows (legacy PyTorch storages).
    Caller,
}

/// Pickles read from a stream, and where reading stopped.
pub(crate) struct Stream {
    pub outcomes: Vec<Outcome>,
    pub end: usize,
}

/// True when `data` looks like a pickle: it starts with `PROTO` 2–5, or a protocol 0/1 pickle
/// runs to `STOP` without a parse error.
pub(crate) fn looks_like_pickle(data: &[u8], ctx: &Ctx<'_>) -> bool {
    match data {
        [op::PROTO, p, ..] if *p <= op::HIGHEST_PROTOCOL => true,
        [] => false,
        _ => {
            let out = run(data, 0, &ctx.scanner.limits, &ctx.scanner.allow);
            out.reached_stop && !out.failed
        }
    }
}

/// True when a prefix of a longer file runs as a pickle up to its end, imports something
/// and fails only for lack of data (a protocol 0/1 pickle larger than the prefix).
pub(crate) fn starts_like_pickle(prefix: &[u8], ctx: &Ctx<'_>) -> bool {
    let out = run(prefix, 0, &ctx.scanner.limits, &ctx.scanner.allow);
    out.imports > 0 && out.truncated
}

/// Scans the pickles in `data`, reporting findings under `entry`.
pub(crate) fn scan_stream(
    ctx: &mut Ctx<'_>,
    data: &[u8],
    entry: &[String],
    depth: u32,
    max_pickles: usize,
    trailing: Trailing,
) -> Stream {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut pos = 0usize;
    loop {
        let out = run(data, pos, &ctx.scanner.limits, &ctx.scanner.allow);
        if !outcomes.is_empty() && !out.reached_stop && out.imports == 0 && out.nested.is_empty() {
            // Not another pickle: leave it to the caller or flag it.
            if trailing == Trailing::Finding {
                ctx.report(
                    &rules::pickle::PICKLE_TRAILING_DATA,
                    None,
                    format!(
                        "{} bytes after the pickle that ends at offset {pos} are not a pickle",
                        data.len() - pos
                    ),
                    entry,
                    Some(pos as u64),
                );
            }
            break;
        }
        for issue in &out.issues {
            ctx.report(
                issue.rule,
                Some(issue.severity),
                issue.message.clone(),
                entry,
                Some(issue.offset),
            );
        }
        for nested in &out.nested {
            scan_nested(ctx, data, nested, entry, depth);
        }
        pos = out.end;
        let stopped = out.reached_stop;
        outcomes.push(out);
        if !stopped || pos >= data.len() || outcomes.len() >= max_pickles {
            break;
        }
        if outcomes.len() >= MAX_STACKED_PICKLES {
            ctx.report(
                &rules::file::SCAN_LIMIT_EXCEEDED,
                None,
                format!(
                    "more than {MAX_STACKED_PICKLES} pickles in a row; the rest was not inspected"
                ),
                entry,
                Some(pos as u64),
            );
            break;
        }
    }
    Stream { outcomes, end: pos }
}

fn scan_nested(
    ctx: &mut Ctx<'_>,
    outer: &[u8],
    nested: &NestedPickle,
    entry: &[String],
    depth: u32,
) {
    let bytes: &[u8] = match &nested.bytes {
        ByteData::Slice { start, end } => outer.get(*start..*end).unwrap_or(&[]),
        ByteData::Owned(b) => b,
    };
    ctx.report(
        &rules::pickle::PICKLE_NESTED_PICKLE,
        None,
        format!(
            "{} at offset {} unpickles {} bytes; they are scanned as `pickle.loads@{}`",
            nested.callable,
            nested.call_offset,
            bytes.len(),
            nested.call_offset
        ),
        entry,
        Some(nested.call_offset),
    );
    if depth >= ctx.scanner.limits.nesting_depth {
        ctx.report(
            &rules::file::NESTING_TOO_DEEP,
            None,
            "pickles nested in pickles too deep; the inner one was not inspected".into(),
            entry,
            Some(nested.call_offset),
        );
        return;
    }
    let mut inner = entry.to_vec();
    inner.push(format!("pickle.loads@{}", nested.call_offset));
    scan_stream(
        ctx,
        bytes,
        &inner,
        depth + 1,
        MAX_STACKED_PICKLES,
        Trailing::Finding,
    );
}
