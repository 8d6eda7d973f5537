//! Rules for safetensors files.

use super::{Rule, Severity};

/// **What**: a header length above `MAX_SAFETENSORS_HEADER_BYTES` (100 MB, the reference
/// implementation's limit) or beyond the end of the file.
///
/// **Why**: readers allocate the header before parsing it.
///
/// **Example**: the first eight bytes say `0xffffffffffffffff`.
///
/// **References**: huggingface/safetensors, `HeaderTooLarge`; Trail of Bits audit (2023).
pub const SAFETENSORS_HEADER_TOO_LARGE: Rule = Rule {
    code: "NNG501",
    name: "SafetensorsHeaderTooLarge",
    severity: Severity::High,
    summary: "The safetensors header length is too large",
    help: "The file is damaged or hostile; obtain it again.",
};

/// **What**: a header that is not UTF-8 JSON of the expected shape (tensor entries with
/// `dtype`, `shape`, `data_offsets`; `__metadata__` a map of strings).
///
/// **Why**: readers disagree on malformed headers.
///
/// **Example**: `{"w": {"dtype": "F32"}}` (no shape or offsets).
///
/// **References**: safetensors format specification.
pub const SAFETENSORS_HEADER_INVALID: Rule = Rule {
    code: "NNG502",
    name: "SafetensorsHeaderInvalid",
    severity: Severity::Medium,
    summary: "The safetensors header is not valid",
    help: "Re-save the tensors with the safetensors library.",
};

/// **What**: a dtype the format does not define.
///
/// **Why**: readers disagree on element sizes, and so on where tensors lie.
///
/// **Example**: `"dtype": "F128"`.
///
/// **References**: safetensors `Dtype`.
pub const SAFETENSORS_UNKNOWN_DTYPE: Rule = Rule {
    code: "NNG503",
    name: "SafetensorsUnknownDtype",
    severity: Severity::Medium,
    summary: "A safetensors tensor has an unknown dtype",
    help: "Re-save the tensors with the safetensors library.",
};

/// **What**: a shape whose element count (or byte size) overflows 64 bits.
///
/// **Why**: readers that multiply without checks allocate too little and read out of bounds.
///
/// **Example**: `"shape": [4294967296, 4294967296, 16]`.
///
/// **References**: CWE-190.
pub const SAFETENSORS_SHAPE_OVERFLOW: Rule = Rule {
    code: "NNG504",
    name: "SafetensorsShapeOverflow",
    severity: Severity::High,
    summary: "A safetensors shape overflows",
    help: "The file is damaged or hostile.",
};

/// **What**: `data_offsets` span a byte count different from shape × dtype size.
///
/// **Why**: readers disagree on the tensor's content.
///
/// **Example**: `"shape": [10], "dtype": "F32", "data_offsets": [0, 8]`.
///
/// **References**: safetensors `TensorInvalidInfo`.
pub const SAFETENSORS_SIZE_MISMATCH: Rule = Rule {
    code: "NNG505",
    name: "SafetensorsSizeMismatch",
    severity: Severity::Medium,
    summary: "A safetensors tensor's byte range does not match its shape and dtype",
    help: "Re-save the tensors with the safetensors library.",
};

/// **What**: two tensors whose byte ranges overlap.
///
/// **Why**: writing one tensor silently changes another (aliasing), a way to hide a backdoor.
///
/// **Example**: `a: [0, 64]`, `b: [32, 96]`.
///
/// **References**: safetensors `InvalidOffset`.
pub const SAFETENSORS_OFFSETS_OVERLAP: Rule = Rule {
    code: "NNG506",
    name: "SafetensorsOffsetsOverlap",
    severity: Severity::High,
    summary: "Two safetensors tensors overlap",
    help: "The file is damaged or hostile.",
};

/// **What**: bytes in the data section that belong to no tensor (between tensors or after the
/// last one).
///
/// **Why**: hidden bytes can carry a payload for a second-stage loader (polyglot files).
///
/// **Example**: a valid file with a zip archive appended.
///
/// **References**: safetensors `MetadataIncompleteBuffer`.
pub const SAFETENSORS_OFFSETS_GAP: Rule = Rule {
    code: "NNG507",
    name: "SafetensorsOffsetsGap",
    severity: Severity::Medium,
    summary: "The safetensors data section has bytes that belong to no tensor",
    help: "Re-save the tensors with the safetensors library.",
};

/// **What**: a tensor whose byte range runs past the end of the file, or ends before it starts.
///
/// **Why**: readers read out of bounds or crash.
///
/// **Example**: `data_offsets: [0, 4096]` in a 100-byte file.
///
/// **References**: safetensors `InvalidOffset`.
pub const SAFETENSORS_OFFSET_OUT_OF_BOUNDS: Rule = Rule {
    code: "NNG508",
    name: "SafetensorsOffsetOutOfBounds",
    severity: Severity::High,
    summary: "A safetensors tensor lies outside the data section",
    help: "The file is damaged or hostile.",
};

/// **What**: the same key twice in the JSON header.
///
/// **Why**: JSON parsers disagree on which value wins, so two tools see two different models.
///
/// **Example**: `{"w": {...}, "w": {...}}`.
///
/// **References**: RFC 8259, section 4 ("names SHOULD be unique").
pub const SAFETENSORS_DUPLICATE_KEY: Rule = Rule {
    code: "NNG509",
    name: "SafetensorsDuplicateKey",
    severity: Severity::High,
    summary: "The safetensors header repeats a key",
    help: "The file is damaged or hostile.",
};
