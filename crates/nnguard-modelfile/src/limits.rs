//! Resource limits of the scanner, as named constants, and the [`Limits`] that carries them.
//!
//! Every limit bounds memory or time for a hostile file. Reaching one is itself a finding
//! (`ScanLimitExceeded`); the part beyond it is reported, never followed.

/// Most opcodes executed by the pickle VM for one pickle.
pub const MAX_PICKLE_OPS: u64 = 20_000_000;
/// Most objects the pickle VM keeps for one pickle (each a few dozen bytes).
pub const MAX_PICKLE_NODES: usize = 4_000_000;
/// Most container elements (list, tuple, dict and set items) for one pickle.
pub const MAX_PICKLE_ITEMS: usize = 8_000_000;
/// Most memo entries for one pickle.
pub const MAX_MEMO_ENTRIES: usize = 1_000_000;
/// Largest size an object would have if every memo reference were copied out.
pub const MAX_PICKLE_EXPANDED_NODES: u64 = 100_000_000;
/// Most pickles read one after another from one stream.
pub const MAX_STACKED_PICKLES: usize = 64;
/// Largest pickle, `.npy` or nested archive held in memory at once.
pub const MAX_BUFFERED_BYTES: u64 = 1 << 30;
/// Most bytes decompressed from one archive (all entries together).
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 30;
/// Most entries in one zip archive.
pub const MAX_ZIP_ENTRIES: usize = 100_000;
/// Decompressed/compressed size ratio above which an entry is a bomb.
pub const MAX_ZIP_COMPRESSION_RATIO: u64 = 200;
/// Entries smaller than this are never counted as bombs, whatever their ratio.
pub const MIN_BOMB_CHECK_BYTES: u64 = 1 << 20;
/// Most archives nested in one another (a `.npz` in a zip counts 2).
pub const MAX_NESTING_DEPTH: u32 = 4;
/// Most entries in one tar archive.
pub const MAX_TAR_ENTRIES: usize = 100_000;
/// Longest `.npy` header (NumPy itself refuses more than 10 000 bytes by default).
pub const MAX_NPY_HEADER_BYTES: usize = 100_000;
/// Longest safetensors JSON header (the reference implementation's limit).
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 100_000_000;
/// Largest ONNX file decoded (protobuf's own limit is 2 GiB).
pub const MAX_ONNX_BYTES: u64 = 2 << 30;
/// Deepest nesting of ONNX subgraphs (If/Loop/Scan bodies) walked.
pub const MAX_ONNX_GRAPH_DEPTH: u32 = 64;
/// Most nodes visited when turning a pickled object into tensors (convert).
pub const MAX_WALK_NODES: u64 = 10_000_000;
/// Deepest recursion when turning a pickled object into tensors (convert).
pub const MAX_WALK_DEPTH: u32 = 128;

/// The limits one scan runs under; [`Limits::default`] uses the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_PICKLE_OPS`].
    pub pickle_ops: u64,
    /// See [`MAX_PICKLE_NODES`].
    pub pickle_nodes: usize,
    /// See [`MAX_PICKLE_ITEMS`].
    pub pickle_items: usize,
    /// See [`MAX_MEMO_ENTRIES`].
    pub memo_entries: usize,
    /// See [`MAX_PICKLE_EXPANDED_NODES`].
    pub expanded_nodes: u64,
    /// See [`MAX_BUFFERED_BYTES`].
    pub buffered_bytes: u64,
    /// See [`MAX_DECOMPRESSED_BYTES`].
    pub decompressed_bytes: u64,
    /// See [`MAX_ZIP_ENTRIES`].
    pub zip_entries: usize,
    /// See [`MAX_NESTING_DEPTH`].
    pub nesting_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pickle_ops: MAX_PICKLE_OPS,
            pickle_nodes: MAX_PICKLE_NODES,
            pickle_items: MAX_PICKLE_ITEMS,
            memo_entries: MAX_MEMO_ENTRIES,
            expanded_nodes: MAX_PICKLE_EXPANDED_NODES,
            buffered_bytes: MAX_BUFFERED_BYTES,
            decompressed_bytes: MAX_DECOMPRESSED_BYTES,
            zip_entries: MAX_ZIP_ENTRIES,
            nesting_depth: MAX_NESTING_DEPTH,
        }
    }
}
