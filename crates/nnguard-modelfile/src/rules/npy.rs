//! Rules for NumPy `.npy` arrays (also inside `.npz`).

use super::{Rule, Severity};

/// **What**: an array with an object dtype (`|O`, or a structured dtype with an object field):
/// its data is a pickle, scanned with the pickle rules.
///
/// **Why**: `numpy.load(..., allow_pickle=True)` unpickles it and runs whatever it imports.
///
/// **Example**: `np.save("x.npy", np.array([obj], dtype=object))`.
///
/// **References**: NumPy `numpy.lib.format` docs; CVE-2019-6446.
pub const NPY_OBJECT_ARRAY: Rule = Rule {
    code: "NNG301",
    name: "NpyObjectArray",
    severity: Severity::Medium,
    summary: "The NumPy array holds Python objects (its data is a pickle)",
    help: "Load it only with allow_pickle=False, or re-save the array with a numeric dtype.",
};

/// **What**: a `.npy` header that is too long, not a valid dictionary literal, or misses
/// `descr`, `fortran_order` or `shape`.
///
/// **Why**: readers disagree on malformed headers.
///
/// **Example**: `\x93NUMPY\x01\x00` followed by `{'descr': __import__('os')}`.
///
/// **References**: NEP 1, "A simple file format for NumPy arrays".
pub const NPY_HEADER_INVALID: Rule = Rule {
    code: "NNG302",
    name: "NpyHeaderInvalid",
    severity: Severity::Medium,
    summary: "The NumPy header is malformed",
    help: "Re-save the array with numpy.save.",
};

/// **What**: the data after the header is shorter or longer than shape × item size.
///
/// **Why**: a truncated array, or extra bytes that another reader may interpret.
///
/// **Example**: a `(1000, 1000)` float32 array with 12 bytes of data.
///
/// **References**: NEP 1.
pub const NPY_DATA_SIZE_MISMATCH: Rule = Rule {
    code: "NNG303",
    name: "NpyDataSizeMismatch",
    severity: Severity::Medium,
    summary: "The NumPy data size does not match its shape and dtype",
    help: "Re-save the array with numpy.save.",
};
