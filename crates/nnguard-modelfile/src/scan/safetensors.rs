//! safetensors files: header size, JSON validity, dtypes, shapes and the layout of the data.

use super::Ctx;
use crate::limits::MAX_SAFETENSORS_HEADER_BYTES;
use crate::rules;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Bytes of the file needed to check the header: 8 plus the declared header length (or 8
/// when that length is over the limit).
pub(crate) fn header_span(head: &[u8]) -> u64 {
    let Some(b) = head.get(..8) else { return 8 };
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    let n = u64::from_le_bytes(a);
    if n > MAX_SAFETENSORS_HEADER_BYTES {
        8
    } else {
        8 + n
    }
}

/// Size of one element in bits, for the dtypes the format defines.
pub(crate) fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// The top-level JSON object as written, duplicates kept.
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Scans a safetensors file: `data` holds at least the header, `total_len` is the file size.
pub(crate) fn scan(ctx: &mut Ctx<'_>, data: &[u8], total_len: u64, entry: &[String]) {
    let Some(b) = data.get(..8) else {
        ctx.report(
            &rules::safetensors::SAFETENSORS_HEADER_INVALID,
            None,
            "the file is shorter than 8 bytes".into(),
            entry,
            Some(0),
        );
        return;
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    let n = u64::from_le_bytes(a);
    if n > MAX_SAFETENSORS_HEADER_BYTES || n.checked_add(8).is_none_or(|e| e > total_len) {
        ctx.report(
            &rules::safetensors::SAFETENSORS_HEADER_TOO_LARGE,
            None,
            format!("the header declares {n} bytes (limit {MAX_SAFETENSORS_HEADER_BYTES}, file {total_len} bytes)"),
            entry,
            Some(0),
        );
        return;
    }
    let Some(header) = usize::try_from(n).ok().and_then(|n| data.get(8..8 + n)) else {
        ctx.report(
            &rules::safetensors::SAFETENSORS_HEADER_INVALID,
            None,
            "the header is truncated".into(),
            entry,
            Some(8),
        );
        return;
    };
    let invalid = |ctx: &mut Ctx<'_>, msg: String| {
        ctx.report(
            &rules::safetensors::SAFETENSORS_HEADER_INVALID,
            None,
            msg,
            entry,
            Some(8),
        );
    };
    let entries = match serde_json::from_slice::<Entries>(header) {
        Ok(e) => e.0,
        Err(e) => return invalid(ctx, format!("the header is not a valid JSON object: {e}")),
    };
    let data_len = total_len - 8 - n;
    let mut seen = std::collections::HashSet::new();
    let mut ranges: Vec<(u64, u64, String)> = Vec::new();
    for (name, info) in &entries {
        if !seen.insert(name.as_str()) {
            ctx.report(
                &rules::safetensors::SAFETENSORS_DUPLICATE_KEY,
                None,
                format!("key {name:?} appears more than once in the header"),
                entry,
                Some(8),
            );
        }
        if name == "__metadata__" {
            let ok = info
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                invalid(ctx, "__metadata__ must map strings to strings".into());
            }
            continue;
        }
        let dtype = info.get("dtype").and_then(Value::as_str);
        let shape: Option<Vec<u64>> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (Some(dtype), Some(shape), Some([begin, end])) = (
            dtype,
            shape,
            offsets
                .as_deref()
                .and_then(|o| <[u64; 2]>::try_from(o).ok()),
        ) else {
            invalid(
                ctx,
                format!(
                    "tensor {name:?} needs a string dtype, an integer shape and two data_offsets"
                ),
            );
            continue;
        };
        if end < begin || end > data_len {
            ctx.report(
                &rules::safetensors::SAFETENSORS_OFFSET_OUT_OF_BOUNDS,
                None,
                format!(
                    "tensor {name:?} spans bytes {begin}..{end} of a {data_len}-byte data section"
                ),
                entry,
                Some(8),
            );
            continue;
        }
        ranges.push((begin, end, name.clone()));
        let Some(bits) = dtype_bits(dtype) else {
            ctx.report(
                &rules::safetensors::SAFETENSORS_UNKNOWN_DTYPE,
                None,
                format!("tensor {name:?} has unknown dtype {dtype:?}"),
                entry,
                Some(8),
            );
            continue;
        };
        let total_bits = shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .and_then(|n| n.checked_mul(bits));
        let Some(total_bits) = total_bits else {
            ctx.report(
                &rules::safetensors::SAFETENSORS_SHAPE_OVERFLOW,
                None,
                format!("tensor {name:?} has shape {shape:?}, whose size overflows 64 bits"),
                entry,
                Some(8),
            );
            continue;
        };
        if total_bits % 8 != 0 || total_bits / 8 != end - begin {
            ctx.report(
                &rules::safetensors::SAFETENSORS_SIZE_MISMATCH,
                None,
                format!(
                    "tensor {name:?} ({dtype}, shape {shape:?}) needs {} bits but spans {} bytes",
                    total_bits,
                    end - begin
                ),
                entry,
                Some(8),
            );
        }
    }
    ranges.sort();
    let mut covered = 0u64;
    for (begin, end, name) in &ranges {
        if *begin < covered {
            ctx.report(
                &rules::safetensors::SAFETENSORS_OFFSETS_OVERLAP,
                None,
                format!("tensor {name:?} (bytes {begin}..{end}) overlaps the tensor before it"),
                entry,
                Some(8),
            );
        } else if *begin > covered {
            ctx.report(
                &rules::safetensors::SAFETENSORS_OFFSETS_GAP,
                None,
                format!("bytes {covered}..{begin} of the data section belong to no tensor (before {name:?})"),
                entry,
                Some(8),
            );
        }
        covered = covered.max(*end);
    }
    if covered < data_len {
        ctx.report(
            &rules::safetensors::SAFETENSORS_OFFSETS_GAP,
            None,
            format!(
                "{} bytes after the last tensor belong to no tensor",
                data_len - covered
            ),
            entry,
            Some(8 + n + covered),
        );
    }
}
