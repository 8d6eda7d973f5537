//! Zip containers: PyTorch checkpoints, `.npz`, and any zip, with the anomalies of the format.

use super::{Ctx, SNIFF_BYTES, child, sniff};
use crate::finding::Format;
use crate::limits::{MAX_STACKED_PICKLES, MAX_ZIP_COMPRESSION_RATIO, MIN_BOMB_CHECK_BYTES};
use crate::pickle::{self, Trailing, Value};
use crate::rules;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};

/// What the central directory says about one entry.
struct Meta {
    index: usize,
    name: String,
    size: u64,
    compressed: u64,
    encrypted: bool,
    is_dir: bool,
    is_link: bool,
}

/// True when an entry name leaves the extraction root: absolute, a drive letter, or a `..`
/// component (with either slash).
pub(crate) fn escapes_root(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.starts_with('/')
        || name.starts_with('\\')
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic())
        || name.split(['/', '\\']).any(|c| c == "..")
        || name.contains('\0')
}

fn is_pickle_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".pkl") || lower.ends_with(".pickle")
}

/// The storages a PyTorch pickle refers to through persistent ids
/// `('storage', type, key, location, numel)`: key and byte size, when the type is known.
pub(crate) fn storage_keys(out: &pickle::Outcome) -> Vec<(String, Option<u64>)> {
    let a = &out.arena;
    (0..a.len() as u32)
        .filter_map(|id| match a.get(id) {
            Some(Value::PersistentId(pid)) => {
                let t = a.seq(*pid)?;
                (a.str(*t.first()?)? == "storage").then_some(())?;
                let key = a.str(*t.get(2)?)?.to_owned();
                let elem = a
                    .global(*t.get(1)?)
                    .and_then(|(m, n)| super::legacy::storage_element_size(m, n));
                let numel = t
                    .get(4)
                    .and_then(|n| a.int(*n))
                    .and_then(|n| u64::try_from(n).ok());
                Some((key, elem.zip(numel).and_then(|(e, n)| e.checked_mul(n))))
            }
            _ => None,
        })
        .collect()
}

/// Scans a zip archive and returns [`Format::TorchZip`] when it is a PyTorch checkpoint.
pub(crate) fn scan<R: Read + Seek>(
    ctx: &mut Ctx<'_>,
    reader: R,
    entry: &[String],
    depth: u32,
) -> Format {
    let mut archive = match zip::ZipArchive::new(reader) {
        Ok(a) => a,
        Err(e) => {
            ctx.report(
                &rules::zip::ZIP_ARCHIVE_INVALID,
                None,
                format!("the zip archive cannot be read: {e}"),
                entry,
                None,
            );
            return Format::Zip;
        }
    };
    let limit = ctx.scanner.limits.zip_entries;
    if archive.len() > limit {
        ctx.report(
            &rules::zip::ZIP_TOO_MANY_ENTRIES,
            None,
            format!(
                "{} entries (limit {limit}); only the first {limit} were inspected",
                archive.len()
            ),
            entry,
            None,
        );
    }
    if archive.has_duplicate_names() {
        ctx.report(
            &rules::zip::ZIP_DUPLICATE_ENTRY,
            None,
            "the central directory lists the same entry name more than once".into(),
            entry,
            None,
        );
    }
    let mut metas = Vec::new();
    for index in 0..archive.len().min(limit) {
        let Ok(e) = archive.by_index_data(index) else {
            continue;
        };
        metas.push(Meta {
            index,
            name: String::from_utf8_lossy(e.name_raw()).into_owned(),
            size: e.size(),
            compressed: e.compressed_size(),
            encrypted: e.encrypted(),
            is_dir: e.is_dir(),
            is_link: e.is_symlink(),
        });
    }
    let is_torch = metas
        .iter()
        .any(|m| m.name == "data.pkl" || m.name.ends_with("/data.pkl"));
    // Pickles named as such first, so that their storage keys are known for the rest.
    metas.sort_by_key(|m| !is_pickle_name(&m.name));
    let mut storages: HashMap<String, Option<u64>> = HashMap::new();
    let mut seen_storages: HashSet<String> = HashSet::new();
    let data_prefix = metas
        .iter()
        .find_map(|m| m.name.strip_suffix("data.pkl").map(|p| format!("{p}data/")))
        .unwrap_or_default();
    for m in &metas {
        let here = child(entry, m.name.clone());
        if escapes_root(&m.name) {
            ctx.report(
                &rules::zip::ZIP_ENTRY_ESCAPES_ROOT,
                None,
                format!("entry name {:?} points outside the archive root", m.name),
                entry,
                None,
            );
        }
        if m.is_link {
            ctx.report(
                &rules::zip::ZIP_ENTRY_IS_LINK,
                None,
                format!("entry {:?} is a symbolic link", m.name),
                entry,
                None,
            );
            continue;
        }
        if m.is_dir {
            continue;
        }
        if m.encrypted {
            ctx.report(
                &rules::zip::ZIP_ENTRY_ENCRYPTED,
                None,
                format!("entry {:?} is encrypted and was not inspected", m.name),
                entry,
                None,
            );
            continue;
        }
        if m.size >= MIN_BOMB_CHECK_BYTES
            && m.size / m.compressed.max(1) > MAX_ZIP_COMPRESSION_RATIO
        {
            ctx.report(
                &rules::zip::ZIP_COMPRESSION_RATIO,
                None,
                format!(
                    "entry {:?} declares {} bytes from {} compressed bytes (ratio above {MAX_ZIP_COMPRESSION_RATIO}); it was not decompressed",
                    m.name, m.size, m.compressed
                ),
                entry,
                None,
            );
            continue;
        }
        let budget = ctx
            .scanner
            .limits
            .decompressed_bytes
            .saturating_sub(ctx.decompressed);
        if m.size > budget {
            ctx.report(
                &rules::file::SCAN_LIMIT_EXCEEDED,
                None,
                format!(
                    "entry {:?} declares {} bytes, more than the {} bytes left of the decompression budget; the rest of the archive was not inspected",
                    m.name, m.size, budget
                ),
                entry,
                None,
            );
            break;
        }
        let base = m.name.rsplit('/').next().unwrap_or(&m.name);
        let in_data_dir = m.name.rsplit('/').nth(1) == Some("data");
        let declared = storages.get(base).copied();
        let is_storage =
            is_torch && in_data_dir && declared.is_some() && m.name.starts_with(&data_prefix);
        if is_storage {
            seen_storages.insert(base.to_owned());
            if let Some(Some(bytes)) = declared
                && m.size < bytes
            {
                ctx.report(
                    &rules::pickle::TORCH_STORAGE_MISMATCH,
                    None,
                    format!(
                        "storage entry {:?} has {} bytes, but the pickle declares {bytes}",
                        m.name, m.size
                    ),
                    entry,
                    None,
                );
            }
            if !ctx.scanner.verify_storages {
                continue;
            }
        }
        let named_pickle = is_pickle_name(&m.name);
        let mut reader = match archive.by_index(m.index) {
            Ok(r) => r,
            Err(e) => {
                ctx.report(
                    &rules::zip::ZIP_ARCHIVE_INVALID,
                    None,
                    format!("entry {:?} cannot be opened: {e}", m.name),
                    entry,
                    None,
                );
                continue;
            }
        };
        let result = read_entry(ctx, &mut reader, m, named_pickle, is_storage, entry);
        drop(reader);
        let content = match result {
            Ok(c) => c,
            Err(msg) => {
                let rule = if msg.contains("Invalid checksum") {
                    &rules::zip::ZIP_CRC_MISMATCH
                } else {
                    &rules::zip::ZIP_ARCHIVE_INVALID
                };
                let msg = if rule == &rules::zip::ZIP_CRC_MISMATCH {
                    format!(
                        "entry {:?} does not match its CRC-32 (damaged or altered)",
                        m.name
                    )
                } else {
                    format!("entry {:?} cannot be read: {msg}", m.name)
                };
                ctx.report(rule, None, msg, entry, None);
                continue;
            }
        };
        let Some(data) = content else { continue };
        if named_pickle {
            let stream = pickle::scan_stream(
                ctx,
                &data,
                &here,
                depth,
                MAX_STACKED_PICKLES,
                Trailing::Finding,
            );
            if is_torch {
                for out in &stream.outcomes {
                    for (k, size) in storage_keys(out) {
                        let e = storages.entry(k).or_insert(size);
                        *e = (*e).max(size);
                    }
                }
            }
            continue;
        }
        let sniffed = sniff(&data[..data.len().min(SNIFF_BYTES)], data.len() as u64);
        if matches!(sniffed, Some(Format::Zip) | Some(Format::Tar))
            && depth + 1 >= ctx.scanner.limits.nesting_depth
        {
            ctx.report(
                &rules::file::NESTING_TOO_DEEP,
                None,
                format!(
                    "entry {:?} is an archive nested {} levels deep; it was not opened",
                    m.name,
                    depth + 2
                ),
                entry,
                None,
            );
            continue;
        }
        if is_storage && !matches!(sniffed, Some(Format::Zip)) {
            continue;
        }
        ctx.scanner
            .dispatch_bytes(ctx, &data, &m.name, false, &here, depth + 1);
    }
    if is_torch {
        let mut missing: Vec<&String> = storages
            .keys()
            .filter(|k| !seen_storages.contains(*k))
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            ctx.report(
                &rules::pickle::TORCH_STORAGE_MISMATCH,
                None,
                format!(
                    "{} storage(s) the pickle refers to are missing from the archive (first: {data_prefix}{first})",
                    missing.len()
                ),
                entry,
                None,
            );
        }
        Format::TorchZip
    } else {
        Format::Zip
    }
}

/// Reads an entry to its end (the zip reader checks its CRC-32) and returns its bytes when
/// they may need scanning and fit in memory. Tensor storages are streamed and dropped.
fn read_entry<R: Read>(
    ctx: &mut Ctx<'_>,
    reader: &mut R,
    m: &Meta,
    keep_whole: bool,
    is_storage: bool,
    entry: &[String],
) -> Result<Option<Vec<u8>>, String> {
    let cap = ctx.scanner.limits.buffered_bytes;
    let mut head = vec![0u8; SNIFF_BYTES.min(usize::try_from(m.size).unwrap_or(SNIFF_BYTES))];
    read_full(reader, &mut head)?;
    let mut read = head.len() as u64;
    let sniffed = sniff(&head, m.size);
    let looks_interesting = keep_whole
        || matches!(sniffed, Some(Format::Zip) | Some(Format::Tar))
        || (!is_storage
            && (sniffed.is_some()
                || head.first().is_some_and(|b| *b == pickle::op::PROTO)
                || m.size <= 1 << 20));
    let keep = looks_interesting && m.size <= cap;
    if looks_interesting && !keep {
        ctx.report(
            &rules::file::SCAN_LIMIT_EXCEEDED,
            None,
            format!(
                "entry {:?} has {} bytes, more than the {cap} held in memory; it was not inspected",
                m.name, m.size
            ),
            entry,
            None,
        );
    }
    let mut data = if keep { head } else { Vec::new() };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > m.size {
            return Err(format!(
                "it inflates to more than its declared {} bytes",
                m.size
            ));
        }
        if keep {
            data.extend_from_slice(&buf[..n]);
        }
    }
    ctx.decompressed = ctx.decompressed.saturating_add(read);
    if read < m.size {
        return Err(format!(
            "it has {read} bytes, fewer than its declared {}",
            m.size
        ));
    }
    Ok(keep.then_some(data))
}

fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Err("the entry is shorter than its declared size".into()),
            Ok(n) => filled += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escapes_root;

    #[test]
    fn escaping_names() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "\\\\server\\x",
            "C:\\x",
            "a\\..\\b",
        ] {
            assert!(escapes_root(bad), "{bad}");
        }
        for good in ["archive/data.pkl", "a..b/c", "data/0"] {
            assert!(!escapes_root(good), "{good}");
        }
    }
}
