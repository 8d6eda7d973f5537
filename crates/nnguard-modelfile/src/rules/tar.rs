//! Rules for tar containers (the PyTorch tar format of versions before 0.4).

use super::{Rule, Severity};

/// **What**: a tar archive that cannot be read to the end.
///
/// **Why**: a damaged archive cannot be shown to be safe.
///
/// **Example**: a legacy `.tar` checkpoint cut off mid-entry.
///
/// **References**: POSIX `ustar` format.
pub const TAR_ARCHIVE_INVALID: Rule = Rule {
    code: "NNG251",
    name: "TarArchiveInvalid",
    severity: Severity::High,
    summary: "The tar archive is truncated or malformed",
    help: "Obtain the file again; do not load a damaged archive.",
};

/// **What**: an entry path that is absolute or contains `..`.
///
/// **Why**: extracting it writes outside the target directory (tar slip).
///
/// **Example**: `../../etc/cron.d/job`.
///
/// **References**: CWE-22.
pub const TAR_ENTRY_ESCAPES_ROOT: Rule = Rule {
    code: "NNG252",
    name: "TarEntryEscapesRoot",
    severity: Severity::High,
    summary: "A tar entry path points outside the archive root",
    help: "Never extract this archive.",
};

/// **What**: a symbolic or hard link entry.
///
/// **Why**: extracting it reads or writes files outside the archive.
///
/// **Example**: `storages` as a link to `/dev/zero`.
///
/// **References**: CWE-59.
pub const TAR_ENTRY_IS_LINK: Rule = Rule {
    code: "NNG253",
    name: "TarEntryIsLink",
    severity: Severity::High,
    summary: "A tar entry is a link",
    help: "Never extract this archive.",
};
