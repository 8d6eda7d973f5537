//! PyTorch's legacy formats: the stacked-pickle file (torch < 1.6) and the raw records of the
//! tar format's `storages` and `tensors` entries.
//!
//! A legacy file is five pickles (magic number, protocol version, system info, the object,
//! the list of storage keys) followed by one raw record per key: a little-endian `u64` element
//! count and that many elements.

use super::Ctx;
use crate::pickle::{self, Outcome, Trailing, Value};
use crate::rules;

/// Element size of a storage class named in a checkpoint (`torch.FloatStorage` → 4).
pub(crate) fn storage_element_size(module: &str, name: &str) -> Option<u64> {
    if module != "torch" {
        return None;
    }
    Some(match name {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QInt8Storage" | "QUInt8Storage"
        | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// `key → element size` for every persistent id `('storage', type, key, location, numel)`.
pub(crate) fn storage_types(out: &Outcome) -> Vec<(String, Option<u64>)> {
    let a = &out.arena;
    (0..a.len() as u32)
        .filter_map(|id| match a.get(id) {
            Some(Value::PersistentId(pid)) => {
                let t = a.seq(*pid)?;
                (a.str(*t.first()?)? == "storage").then_some(())?;
                let size = a
                    .global(*t.get(1)?)
                    .and_then(|(m, n)| storage_element_size(m, n));
                Some((a.str(*t.get(2)?)?.to_owned(), size))
            }
            _ => None,
        })
        .collect()
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Some(s)
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

fn mismatch(ctx: &mut Ctx<'_>, entry: &[String], at: usize, message: String) {
    ctx.report(
        &rules::pickle::TORCH_LEGACY_STORAGE_MISMATCH,
        None,
        message,
        entry,
        Some(at as u64),
    );
}

/// Scans a legacy stacked-pickle checkpoint.
pub(crate) fn scan(ctx: &mut Ctx<'_>, data: &[u8], entry: &[String], depth: u32) {
    let stream = pickle::scan_stream(ctx, data, entry, depth, 5, Trailing::Caller);
    if stream.outcomes.len() < 5 || stream.outcomes.iter().any(|o| !o.reached_stop) {
        if stream.outcomes.iter().all(|o| o.reached_stop) {
            mismatch(
                ctx,
                entry,
                stream.end,
                format!(
                    "a legacy checkpoint has {} pickles, not 5",
                    stream.outcomes.len()
                ),
            );
        }
        return;
    }
    let types = storage_types(&stream.outcomes[3]);
    let keys_out = &stream.outcomes[4];
    let keys: Vec<String> = keys_out
        .root
        .and_then(|r| keys_out.arena.seq(r))
        .map(|ids| {
            ids.iter()
                .filter_map(|i| keys_out.arena.str(*i).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut cur = Cursor {
        data,
        pos: stream.end,
    };
    for key in &keys {
        let Some(size) = types.iter().find(|(k, _)| k == key).and_then(|(_, s)| *s) else {
            mismatch(
                ctx,
                entry,
                cur.pos,
                format!("storage {key:?} has no known element type"),
            );
            return;
        };
        let at = cur.pos;
        let ok = cur
            .u64()
            .and_then(|n| n.checked_mul(size))
            .and_then(|bytes| cur.take(bytes))
            .is_some();
        if !ok {
            mismatch(
                ctx,
                entry,
                at,
                format!("the record of storage {key:?} runs past the end of the file"),
            );
            return;
        }
    }
    if cur.pos < data.len() {
        mismatch(
            ctx,
            entry,
            cur.pos,
            format!(
                "{} bytes follow the last storage record",
                data.len() - cur.pos
            ),
        );
        // Whatever follows may be another pickle for a second-stage loader: scan it.
        let tail = &data[cur.pos..];
        let mut inner = entry.to_vec();
        inner.push(format!("trailing@{}", cur.pos));
        pickle::scan_stream(
            ctx,
            tail,
            &inner,
            depth,
            crate::limits::MAX_STACKED_PICKLES,
            Trailing::Caller,
        );
    }
}

/// Scans the `storages` entry of the tar format: a pickled count, then per storage a pickled
/// `(key, location, storage_type)` and a raw record.
pub(crate) fn scan_storages_entry(ctx: &mut Ctx<'_>, data: &[u8], entry: &[String], depth: u32) {
    scan_records(ctx, data, entry, depth, |out, cur| {
        let a = &out.arena;
        let t = out.root.and_then(|r| a.seq(r))?;
        let size = a
            .global(*t.get(2)?)
            .and_then(|(m, n)| storage_element_size(m, n))?;
        cur.u64()
            .and_then(|n| n.checked_mul(size))
            .and_then(|b| cur.take(b))
            .map(|_| ())
    });
}

/// Scans the `tensors` entry of the tar format: a pickled count, then per tensor a pickled
/// `(key, storage_id, type)` and a raw record of `ndim`, sizes, strides and offset.
pub(crate) fn scan_tensors_entry(ctx: &mut Ctx<'_>, data: &[u8], entry: &[String], depth: u32) {
    scan_records(ctx, data, entry, depth, |_, cur| {
        let b = cur.take(8)?;
        let ndim = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let bytes = ndim.checked_mul(16)?.checked_add(8)?;
        cur.take(bytes).map(|_| ())
    });
}

fn scan_records<F>(ctx: &mut Ctx<'_>, data: &[u8], entry: &[String], depth: u32, mut raw: F)
where
    F: FnMut(&Outcome, &mut Cursor<'_>) -> Option<()>,
{
    let first = pickle::scan_stream(ctx, data, entry, depth, 1, Trailing::Caller);
    let Some(count_out) = first.outcomes.first() else {
        return;
    };
    let Some(count) = count_out.root.and_then(|r| count_out.arena.int(r)) else {
        mismatch(ctx, entry, 0, "the record count is not an integer".into());
        return;
    };
    let mut pos = first.end;
    for i in 0..count.max(0) {
        if pos >= data.len() {
            mismatch(ctx, entry, pos, format!("record {i} of {count} is missing"));
            return;
        }
        let rec = pickle::scan_stream(ctx, &data[pos..], entry, depth, 1, Trailing::Caller);
        let Some(out) = rec.outcomes.first().filter(|o| o.reached_stop) else {
            return;
        };
        let mut cur = Cursor {
            data,
            pos: pos + rec.end,
        };
        if raw(out, &mut cur).is_none() {
            mismatch(
                ctx,
                entry,
                pos,
                format!("the raw part of record {i} is malformed or truncated"),
            );
            return;
        }
        pos = cur.pos;
    }
    if pos < data.len() {
        mismatch(
            ctx,
            entry,
            pos,
            format!("{} bytes follow the last record", data.len() - pos),
        );
    }
}
