//! Tar containers, including PyTorch's tar format (before 0.4): `sys_info`, `pickle`,
//! `storages` and `tensors` entries.

use super::{Ctx, child, legacy};
use crate::limits::{MAX_STACKED_PICKLES, MAX_TAR_ENTRIES};
use crate::pickle::{self, Trailing};
use crate::rules;
use std::io::Read;

/// Scans a tar archive.
pub(crate) fn scan<R: Read>(ctx: &mut Ctx<'_>, reader: R, entry: &[String], depth: u32) {
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            ctx.report(
                &rules::tar::TAR_ARCHIVE_INVALID,
                None,
                format!("the tar archive cannot be read: {e}"),
                entry,
                None,
            );
            return;
        }
    };
    let cap = ctx.scanner.limits.buffered_bytes;
    for (count, item) in entries.enumerate() {
        if count >= MAX_TAR_ENTRIES {
            ctx.report(
                &rules::file::SCAN_LIMIT_EXCEEDED,
                None,
                format!("more than {MAX_TAR_ENTRIES} tar entries; the rest was not inspected"),
                entry,
                None,
            );
            return;
        }
        let mut e = match item {
            Ok(e) => e,
            Err(err) => {
                ctx.report(
                    &rules::tar::TAR_ARCHIVE_INVALID,
                    None,
                    format!("the tar archive is damaged: {err}"),
                    entry,
                    None,
                );
                return;
            }
        };
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if super::zip::escapes_root(&name) {
            ctx.report(
                &rules::tar::TAR_ENTRY_ESCAPES_ROOT,
                None,
                format!("entry path {name:?} points outside the archive root"),
                entry,
                None,
            );
        }
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = e
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            ctx.report(
                &rules::tar::TAR_ENTRY_IS_LINK,
                None,
                format!("entry {name:?} is a link to {target:?}"),
                entry,
                None,
            );
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = e.size();
        if size > cap {
            ctx.report(
                &rules::file::SCAN_LIMIT_EXCEEDED,
                None,
                format!("entry {name:?} has {size} bytes, more than the {cap} held in memory; it was not inspected"),
                entry,
                None,
            );
            continue;
        }
        let mut data = Vec::new();
        if let Err(err) = (&mut e).take(cap).read_to_end(&mut data) {
            ctx.report(
                &rules::tar::TAR_ARCHIVE_INVALID,
                None,
                format!("entry {name:?} cannot be read: {err}"),
                entry,
                None,
            );
            return;
        }
        let here = child(entry, name.clone());
        let base = name.rsplit('/').next().unwrap_or(&name);
        match base {
            "sys_info" | "pickle" => {
                pickle::scan_stream(
                    ctx,
                    &data,
                    &here,
                    depth,
                    MAX_STACKED_PICKLES,
                    Trailing::Finding,
                );
            }
            "storages" => legacy::scan_storages_entry(ctx, &data, &here, depth),
            "tensors" => legacy::scan_tensors_entry(ctx, &data, &here, depth),
            _ => {
                if depth + 1 >= ctx.scanner.limits.nesting_depth
                    && matches!(
                        super::sniff(&data, data.len() as u64),
                        Some(crate::Format::Zip | crate::Format::Tar)
                    )
                {
                    ctx.report(
                        &rules::file::NESTING_TOO_DEEP,
                        None,
                        format!("entry {name:?} is an archive nested too deep; it was not opened"),
                        entry,
                        None,
                    );
                    continue;
                }
                let scanner = ctx.scanner;
                scanner.dispatch_bytes(ctx, &data, &name, false, &here, depth + 1);
            }
        }
    }
}
