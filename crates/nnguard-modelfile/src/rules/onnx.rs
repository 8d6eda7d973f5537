//! Rules for ONNX models.

use super::{Rule, Severity};

/// **What**: a file that looks like ONNX (by content or name) but does not decode as a
/// `ModelProto`, or nests graphs deeper than `MAX_ONNX_GRAPH_DEPTH`.
///
/// **Why**: a model the scanner cannot decode cannot be shown to be safe.
///
/// **Example**: a truncated `.onnx` download.
///
/// **References**: `onnx/onnx.proto`.
pub const ONNX_PARSE_ERROR: Rule = Rule {
    code: "NNG401",
    name: "OnnxParseError",
    severity: Severity::Medium,
    summary: "The ONNX model cannot be decoded",
    help: "Export the model again.",
};

/// **What**: a tensor whose external-data `location` is absolute or contains `..`.
///
/// **Why**: the runtime reads that file as weights: a model can exfiltrate or probe arbitrary
/// files (`/etc/shadow`, SSH keys) through the loader.
///
/// **Example**: `location = "../../../../home/user/.ssh/id_rsa"`.
///
/// **References**: CVE-2022-25882 (onnx external data directory traversal); CVE-2024-27318.
pub const ONNX_EXTERNAL_DATA_ESCAPES: Rule = Rule {
    code: "NNG402",
    name: "OnnxExternalDataEscapes",
    severity: Severity::High,
    summary: "An ONNX external-data location points outside the model directory",
    help: "Do not load this model; external data must live next to the model file.",
};

/// **What**: an external-data file next to the model that is a symbolic link.
///
/// **Why**: the link makes the runtime read a file outside the model directory.
///
/// **Example**: `weights.bin -> /etc/passwd`.
///
/// **References**: CVE-2024-27319 family; CWE-59.
pub const ONNX_EXTERNAL_DATA_LINK: Rule = Rule {
    code: "NNG403",
    name: "OnnxExternalDataLink",
    severity: Severity::High,
    summary: "An ONNX external-data file is a symbolic link",
    help: "Replace the link with the real file, or do not load the model.",
};

/// **What**: an operator (or function, or opset import) from a domain other than the standard
/// ONNX domains and ONNX Runtime's built-in `com.microsoft`.
///
/// **Why**: custom operators are native code registered by a shared library; the model only
/// runs if that library is loaded, and the library is code you must trust.
///
/// **Example**: `domain = "com.example.ops"`, `op_type = "Exec"`.
///
/// **References**: ONNX Runtime docs, "Custom operators".
pub const ONNX_CUSTOM_OP_DOMAIN: Rule = Rule {
    code: "NNG404",
    name: "OnnxCustomOpDomain",
    severity: Severity::Medium,
    summary: "The ONNX model uses operators from a custom domain",
    help: "Make sure you trust the library that implements the custom operators.",
};
