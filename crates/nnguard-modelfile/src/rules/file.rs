//! Rules about a file as a whole: its format and the scanner's own limits.

use super::{Rule, Severity};

/// **What**: a file named like a model (`.pt`, `.pkl`, `.bin`, ...) whose content matches no
/// format the scanner knows.
///
/// **Why**: formats are recognised by content, never by extension. A model-named file the
/// scanner cannot read cannot be shown to be safe, and a loader may still accept it.
///
/// **Example**: `model.pt` holding random bytes or a format nnguard does not parse.
///
/// **References**: fail-closed design, OWASP "Deserialization Cheat Sheet".
pub const FILE_FORMAT_UNRECOGNIZED: Rule = Rule {
    code: "NNG001",
    name: "FileFormatUnrecognized",
    severity: Severity::Medium,
    summary: "A model-named file has content in no known model format",
    help: "Check where the file came from; convert it to safetensors if it is a model.",
};

/// **What**: the scan stopped following part of a file because a resource limit (operations,
/// memo entries, decompressed bytes, entries, buffered bytes) was reached.
///
/// **Why**: the scanner keeps a fixed memory and time budget so that a hostile file cannot
/// exhaust it; what lies beyond the limit has not been inspected and cannot be called safe.
///
/// **Example**: a pickle with more than `MAX_PICKLE_OPS` opcodes, a zip entry declaring 40 GiB.
///
/// **References**: CWE-400 (uncontrolled resource consumption).
pub const SCAN_LIMIT_EXCEEDED: Rule = Rule {
    code: "NNG002",
    name: "ScanLimitExceeded",
    severity: Severity::High,
    summary: "Part of the file was not inspected because a scan limit was reached",
    help: "Inspect the file by other means; a legitimate model rarely reaches these limits.",
};

/// **What**: archives nested inside archives deeper than `MAX_NESTING_DEPTH`.
///
/// **Why**: nesting is the classic way to build decompression bombs (42.zip) and to hide a
/// payload from scanners that look only one level deep.
///
/// **Example**: a `.npz` inside a `.zip` inside a `.zip` inside a `.zip`.
///
/// **References**: CWE-409 (improper handling of highly compressed data).
pub const NESTING_TOO_DEEP: Rule = Rule {
    code: "NNG003",
    name: "NestingTooDeep",
    severity: Severity::High,
    summary: "Archives are nested deeper than the scanner follows",
    help: "Unpack the archive by hand and scan the inner files.",
};
