//! Our own bounded reader of GGUF model headers.
//!
//! The model catalog needs a handful of facts about every `.gguf` file in the models folder
//! (architecture, sizes, quantization, parameter count, vocabulary size, chat template
//! presence) and it needs them fast, for thousands of files, without trusting the files. This
//! module reads only the header — the metadata key/value pairs and the tensor infos — through a
//! buffered, byte-budgeted reader, skips what it does not need (token lists, merges, chat
//! templates) without materialising it, and never touches the tensor data. Every length taken
//! from the file is checked against a limit before anything is read or allocated, and all
//! arithmetic on file-supplied numbers is checked, so hostile or truncated files yield a
//! [`GgufError`] rather than a panic or a huge allocation.
//!
//! Format (all little-endian): magic `GGUF`, version `u32` (1, 2 or 3), tensor count and
//! metadata pair count (`u32` in v1, `u64` from v2), then the metadata pairs (key string,
//! value type `u32`, value), then per tensor: name string, `n_dims: u32`, the dimensions
//! (`u32` in v1, `u64` from v2), ggml type `u32` and data offset `u64`. Strings are a length
//! (`u32` in v1, `u64` from v2) followed by UTF-8 bytes.

mod ftype;
mod header;
mod reader;
mod shards;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use ftype::quantization_name;
pub use shards::{ModelFiles, group_files};

/// The longest string (key, tensor name or kept value) we read into memory: 1 MiB.
/// Longer values of keys we do not keep are skipped instead, within [`MAX_HEADER_BYTES`].
pub const MAX_STRING_LEN: u64 = 1 << 20;
/// The most elements an array may claim unless its elements have a fixed size, in which case
/// it is skipped in one step within [`MAX_HEADER_BYTES`].
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// The most metadata key/value pairs a header may declare.
pub const MAX_METADATA_PAIRS: u64 = 1_000_000;
/// The most tensors a header may declare.
pub const MAX_TENSORS: u64 = 1_000_000;
/// The most dimensions one tensor may have (ggml itself supports 4).
pub const MAX_DIMS: u32 = 8;
/// The most bytes the whole header (metadata and tensor infos) may occupy: 256 MiB.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;
/// How deeply arrays of arrays may nest.
pub const MAX_NESTING: u32 = 4;

/// What the catalog learns from one GGUF file's header.
///
/// Fields named after metadata keys are `None` when the key is absent or has a type we cannot
/// use (a negative or non-integer count, a non-string name). The `{arch}.…` keys are looked up
/// under the file's own `general.architecture`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufInfo {
    /// GGUF format version: 1, 2 or 3.
    pub version: u32,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.size_label`, e.g. `135M` or `8x7B`.
    pub size_label: Option<String>,
    /// `{arch}.context_length`: the training context length.
    pub context_length: Option<u64>,
    /// `{arch}.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `{arch}.block_count`: the number of layers.
    pub block_count: Option<u64>,
    /// `{arch}.attention.head_count` (the largest, where given per layer).
    pub head_count: Option<u64>,
    /// `{arch}.attention.head_count_kv` (the largest, where given per layer).
    pub head_count_kv: Option<u64>,
    /// `{arch}.feed_forward_length`; the largest, where given per layer.
    pub feed_forward_length: Option<u64>,
    /// `{arch}.feed_forward_length` where the file gives one value per layer.
    pub feed_forward_length_per_layer: Option<Vec<u64>>,
    /// `general.file_type`: llama.cpp's `llama_ftype`.
    pub file_type: Option<u32>,
    /// The quantization label of [`Self::file_type`] (`Q4_K_M`, `BF16`, …), see
    /// [`quantization_name`]; `None` when the file type is absent or unknown.
    pub quantization: Option<String>,
    /// The sum over this file's tensors of the product of their dimensions. For a split
    /// model this counts only the tensors in this shard.
    pub parameter_count: u64,
    /// The number of tensors in this file.
    pub tensor_count: u64,
    /// The element count of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<u64>,
    /// Whether `tokenizer.chat_template` is present (its text is skipped, not kept).
    pub has_chat_template: bool,
    /// `split.no`: this shard's zero-based index in a split model.
    pub split_no: Option<u32>,
    /// `split.count`: the number of shards of a split model.
    pub split_count: Option<u32>,
    /// The number of metadata key/value pairs in the header.
    pub metadata_keys: usize,
}

/// Why a GGUF header could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading failed for a reason other than the end of the data.
    #[error("read error at byte {offset}: {source}")]
    Io {
        /// Where in the header the read started.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// The data ended inside the header.
    #[error("truncated GGUF header: data ends inside {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where in the header the read started.
        offset: u64,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// A version other than 1, 2 or 3.
    #[error("unsupported GGUF version {0}")]
    UnsupportedVersion(u32),
    /// A string we would keep is longer than [`MAX_STRING_LEN`].
    #[error("string of {len} bytes at byte {offset} exceeds the limit of {limit}")]
    StringTooLong {
        /// The claimed length.
        len: u64,
        /// The limit.
        limit: u64,
        /// Where the string's length field ends.
        offset: u64,
    },
    /// An array claims more elements than we accept.
    #[error("array of {len} elements at byte {offset} exceeds the limit of {limit}")]
    ArrayTooLong {
        /// The claimed element count.
        len: u64,
        /// The limit.
        limit: u64,
        /// Where the array's count field ends.
        offset: u64,
    },
    /// More metadata pairs than [`MAX_METADATA_PAIRS`].
    #[error("{0} metadata pairs exceed the limit of {MAX_METADATA_PAIRS}")]
    TooManyMetadataPairs(u64),
    /// More tensors than [`MAX_TENSORS`].
    #[error("{0} tensors exceed the limit of {MAX_TENSORS}")]
    TooManyTensors(u64),
    /// A tensor with more than [`MAX_DIMS`] dimensions.
    #[error("tensor {index} has {n_dims} dimensions, more than {MAX_DIMS}")]
    TooManyDims {
        /// The tensor's position in the header.
        index: u64,
        /// The claimed number of dimensions.
        n_dims: u32,
    },
    /// A metadata value type outside 0..=12.
    #[error("unknown metadata value type {value_type} at byte {offset}")]
    BadValueType {
        /// The type code.
        value_type: u32,
        /// Where the type field ends.
        offset: u64,
    },
    /// Arrays nested deeper than [`MAX_NESTING`].
    #[error("arrays nested deeper than {MAX_NESTING} at byte {offset}")]
    NestingTooDeep {
        /// Where the innermost array starts.
        offset: u64,
    },
    /// Reading on would take the header past [`MAX_HEADER_BYTES`].
    #[error("GGUF header larger than the limit of {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    /// A tensor's element count, or the sum of them, does not fit in 64 bits.
    #[error("tensor {index}: element count overflows 64 bits")]
    ParameterOverflow {
        /// The tensor's position in the header.
        index: u64,
    },
}

/// Reads the header of the GGUF file at `path`; see [`parse`].
///
/// # Errors
/// [`GgufError::Open`] when the file cannot be opened, otherwise as [`parse`].
pub fn read_header(path: &Path) -> Result<GgufInfo, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse(file)
}

/// Reads a GGUF header from `reader`, which is buffered here: pass a plain `File` or slice.
///
/// Reads the metadata and the tensor infos and stops there; the tensor data is never read.
///
/// # Errors
/// Any [`GgufError`] other than [`GgufError::Open`]: bad magic or version, truncation, a
/// length or count over its limit, an unknown value type, or an overflowing tensor shape.
pub fn parse(reader: impl Read) -> Result<GgufInfo, GgufError> {
    header::parse_header(io::BufReader::with_capacity(64 * 1024, reader))
}
