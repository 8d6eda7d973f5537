//! The allowlist of globals a model file may import, and the names known to be dangerous.
//!
//! The scanner is allowlist-first: any import not listed here is a finding. The list holds the
//! callables and classes `torch.save` and `numpy.save` write for plain tensors and arrays;
//! each only rebuilds data and cannot run code chosen by the file. The dangerous list only
//! raises the severity of a finding to critical; it never clears one.

use std::collections::HashSet;

/// Globals known to rebuild tensors, storages, arrays and plain containers.
pub const DEFAULT_ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "UntypedStorage"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    ("torch", "ComplexFloatStorage"),
    ("torch", "ComplexDoubleStorage"),
    ("torch", "QInt8Storage"),
    ("torch", "QUInt8Storage"),
    ("torch", "QInt32Storage"),
    ("torch", "float16"),
    ("torch", "float32"),
    ("torch", "float64"),
    ("torch", "bfloat16"),
    ("torch", "half"),
    ("torch", "float"),
    ("torch", "double"),
    ("torch", "int8"),
    ("torch", "int16"),
    ("torch", "int32"),
    ("torch", "int64"),
    ("torch", "uint8"),
    ("torch", "bool"),
    ("torch", "complex64"),
    ("torch", "complex128"),
    ("torch", "per_tensor_affine"),
    ("torch", "per_channel_affine"),
    ("torch", "strided"),
    ("torch", "sparse_coo"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Float64DType"),
    ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "Int32DType"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
];

/// Modules whose every member can run commands, load code or reach the network or disk.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "runpy",
    "pty",
    "socket",
    "shutil",
    "importlib",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "marshal",
    "types",
    "ctypes",
    "code",
    "codeop",
    "webbrowser",
    "requests",
    "urllib",
    "http",
    "ftplib",
    "telnetlib",
    "smtplib",
    "asyncio",
    "multiprocessing",
    "pdb",
    "bdb",
    "timeit",
    "commands",
    "platform",
    "pip",
    "setuptools",
    "torch.hub",
    "torch.serialization",
    "joblib",
    "_io",
    "io",
    "tempfile",
    "glob",
    "pathlib",
    "zipimport",
    "linecache",
];

/// Single members that run code even though their module is otherwise harmless.
const DANGEROUS_MEMBERS: &[(&str, &str)] = &[
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "delattr"),
    ("builtins", "__import__"),
    ("builtins", "globals"),
    ("builtins", "locals"),
    ("builtins", "vars"),
    ("builtins", "input"),
    ("builtins", "breakpoint"),
    ("builtins", "apply"),
    ("builtins", "execfile"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("operator", "getitem"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("numpy", "load"),
    ("numpy", "fromfile"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch", "load"),
    ("torch._inductor.codecache", "compile_file"),
    ("torch.jit", "load"),
    ("copyreg", "_reconstructor"),
];

/// Callables that unpickle their bytes argument (a nested, second-stage pickle).
const LOADS: &[(&str, &str)] = &[
    ("pickle", "loads"),
    ("pickle", "_loads"),
    ("_pickle", "loads"),
    ("cPickle", "loads"),
    ("dill", "loads"),
    ("dill._dill", "loads"),
    ("numpy.core.numeric", "loads"),
    ("torch.serialization", "_load"),
];

/// Python 2 module names that Python 3 maps to new ones when loading protocols 0–2
/// (`fix_imports=True`, the default).
fn py3_module(module: &str) -> &str {
    match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "exceptions" => "builtins",
        "UserDict" => "collections",
        _ => module,
    }
}

/// The set of globals a scan accepts without a finding.
#[derive(Debug, Clone)]
pub struct Allowlist {
    allowed: HashSet<(String, String)>,
}

impl Default for Allowlist {
    fn default() -> Self {
        Self {
            allowed: DEFAULT_ALLOWED
                .iter()
                .map(|(m, n)| ((*m).to_owned(), (*n).to_owned()))
                .collect(),
        }
    }
}

impl Allowlist {
    /// Adds `module.name` (the last dot separates the member), e.g. `argparse.Namespace`.
    /// Returns `false` when the text has no dot.
    pub fn allow(&mut self, dotted: &str) -> bool {
        match dotted.rsplit_once('.') {
            Some((m, n)) if !m.is_empty() && !n.is_empty() => {
                self.allowed.insert((m.to_owned(), n.to_owned()));
                true
            }
            _ => false,
        }
    }

    /// True when the exact `(module, name)` pair is allowed. No normalisation is applied: a
    /// name is allowed only as written.
    pub fn allows(&self, module: &str, name: &str) -> bool {
        self.allowed.contains(&(module.to_owned(), name.to_owned()))
    }
}

/// True when importing `module.name` is known to be able to run code or touch the system.
pub fn is_dangerous(module: &str, name: &str) -> bool {
    let module = py3_module(module);
    let root = module.split('.').next().unwrap_or(module);
    DANGEROUS_MODULES.iter().any(|m| *m == module || *m == root)
        || DANGEROUS_MEMBERS
            .iter()
            .any(|(m, n)| *m == module && (*n == name || name.starts_with(&format!("{n}."))))
}

/// True when `module.name` unpickles its argument.
pub fn is_loads(module: &str, name: &str) -> bool {
    let module = py3_module(module);
    LOADS.iter().any(|(m, n)| *m == module && *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_torch_rebuild_and_not_os() {
        let a = Allowlist::default();
        assert!(a.allows("torch._utils", "_rebuild_tensor_v2"));
        assert!(a.allows("collections", "OrderedDict"));
        assert!(!a.allows("os", "system"));
        assert!(!a.allows("collections", "OrderedDict.__init__"));
    }

    #[test]
    fn allow_adds_dotted_names() {
        let mut a = Allowlist::default();
        assert!(a.allow("argparse.Namespace"));
        assert!(a.allows("argparse", "Namespace"));
        assert!(!a.allow("nodot"));
    }

    #[test]
    fn dangerous_names_are_recognised_with_py2_spelling() {
        assert!(is_dangerous("os", "system"));
        assert!(is_dangerous("posix", "system"));
        assert!(is_dangerous("__builtin__", "eval"));
        assert!(is_dangerous("builtins", "getattr"));
        assert!(is_dangerous("subprocess", "Popen"));
        assert!(!is_dangerous("argparse", "Namespace"));
        assert!(is_loads("pickle", "loads"));
        assert!(is_loads("cPickle", "loads"));
    }
}
