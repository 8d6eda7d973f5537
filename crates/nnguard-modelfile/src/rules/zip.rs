//! Rules for zip containers (PyTorch checkpoints, `.npz`, generic zips).

use super::{Rule, Severity};

/// **What**: a file that starts like a zip archive but whose central directory cannot be read:
/// truncated, corrupt, or using an unsupported feature.
///
/// **Why**: a zip the scanner cannot list cannot be shown to be safe; different zip readers
/// disagree on damaged archives, which is how payloads are hidden.
///
/// **Example**: a PyTorch checkpoint cut off in the middle of a download.
///
/// **References**: PKWARE APPNOTE.TXT; "Ambiguous zip parsing" research (2023).
pub const ZIP_ARCHIVE_INVALID: Rule = Rule {
    code: "NNG201",
    name: "ZipArchiveInvalid",
    severity: Severity::High,
    summary: "The zip archive is truncated or malformed",
    help: "Download or export the file again; do not load a damaged archive.",
};

/// **What**: an entry name that is absolute, has a drive letter, or contains a `..` component.
///
/// **Why**: tools that extract the archive (zip slip) write outside the target directory and
/// can overwrite code or configuration.
///
/// **Example**: `../../home/user/.bashrc` inside a `.pt` file.
///
/// **References**: Snyk, "Zip Slip" (2018); CWE-22.
pub const ZIP_ENTRY_ESCAPES_ROOT: Rule = Rule {
    code: "NNG202",
    name: "ZipEntryEscapesRoot",
    severity: Severity::High,
    summary: "A zip entry name points outside the archive root",
    help: "Never extract this archive; re-export the model.",
};

/// **What**: an encrypted entry.
///
/// **Why**: its content cannot be inspected; no model format uses encryption.
///
/// **Example**: a checkpoint whose `data.pkl` is ZipCrypto-encrypted.
///
/// **References**: PKWARE APPNOTE.TXT, section 6.
pub const ZIP_ENTRY_ENCRYPTED: Rule = Rule {
    code: "NNG203",
    name: "ZipEntryEncrypted",
    severity: Severity::High,
    summary: "A zip entry is encrypted and cannot be inspected",
    help: "Obtain an unencrypted copy of the model.",
};

/// **What**: an entry whose content does not match the CRC-32 recorded in the archive.
///
/// **Why**: the file was damaged or altered after it was written; readers that skip the check
/// load different bytes from readers that reject the entry.
///
/// **Example**: a tensor entry edited in place with a hex editor.
///
/// **References**: PKWARE APPNOTE.TXT, section 4.4.7.
pub const ZIP_CRC_MISMATCH: Rule = Rule {
    code: "NNG204",
    name: "ZipCrcMismatch",
    severity: Severity::High,
    summary: "A zip entry's content does not match its CRC-32",
    help: "The file is damaged or was tampered with; obtain it again and verify its signature.",
};

/// **What**: an entry that declares a decompressed size more than
/// `MAX_ZIP_COMPRESSION_RATIO` times its compressed size, above `MIN_BOMB_CHECK_BYTES`.
///
/// **Why**: decompression bombs exhaust disk and memory; the entry is reported and not
/// decompressed.
///
/// **Example**: a 40 KiB entry that inflates to 4 GiB of zeros.
///
/// **References**: CWE-409; D. Fifield, "A better zip bomb" (2019).
pub const ZIP_COMPRESSION_RATIO: Rule = Rule {
    code: "NNG205",
    name: "ZipCompressionRatio",
    severity: Severity::High,
    summary: "A zip entry has an absurd compression ratio",
    help: "Do not extract this archive.",
};

/// **What**: more than `MAX_ZIP_ENTRIES` entries.
///
/// **Why**: the central directory alone can exhaust memory and time in readers.
///
/// **Example**: an archive with a million empty entries.
///
/// **References**: CWE-400.
pub const ZIP_TOO_MANY_ENTRIES: Rule = Rule {
    code: "NNG206",
    name: "ZipTooManyEntries",
    severity: Severity::High,
    summary: "The zip archive has too many entries",
    help: "Do not extract this archive.",
};

/// **What**: an entry stored as a symbolic link.
///
/// **Why**: extracting tools follow it and read or write outside the target directory.
///
/// **Example**: an entry `data/0` that links to `/etc/passwd`.
///
/// **References**: CWE-59 (link following).
pub const ZIP_ENTRY_IS_LINK: Rule = Rule {
    code: "NNG207",
    name: "ZipEntryIsLink",
    severity: Severity::High,
    summary: "A zip entry is a symbolic link",
    help: "Never extract this archive; re-export the model.",
};

/// **What**: two entries with the same name.
///
/// **Why**: readers disagree on which one wins, so a scanner may inspect one copy while the
/// loader uses the other.
///
/// **Example**: two `archive/data.pkl` entries, a benign one first.
///
/// **References**: "Ambiguous zip parsing" research (2023).
pub const ZIP_DUPLICATE_ENTRY: Rule = Rule {
    code: "NNG208",
    name: "ZipDuplicateEntry",
    severity: Severity::High,
    summary: "The zip archive has two entries with the same name",
    help: "Do not load this file; re-export the model.",
};
