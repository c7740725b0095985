//! [`HfError`]: every variant names the file, and the key or tensor at fault where there is one.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than the 8-byte length, or the length points past the end.
    #[error("{path}: not a safetensors file: {msg}")]
    BadHeader { path: PathBuf, msg: String },
    /// The header (or a JSON config file) is not valid JSON of the expected shape.
    #[error("{path}: bad JSON: {msg}")]
    BadJson { path: PathBuf, msg: String },
    /// One tensor entry of the header is wrong (offsets, shape, size).
    #[error("{path}: tensor '{tensor}': {msg}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("{path}: tensor '{tensor}' has unknown dtype \"{dtype}\"")]
    UnknownDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "{path}: tensor '{tensor}' has dtype {dtype}; lume reads F32, F16 and BF16 tensors only"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "{path}: tensors '{a}' and '{b}' overlap (bytes {a_range:?} and {b_range:?} of the data)"
    )]
    Overlap {
        path: PathBuf,
        a: String,
        b: String,
        a_range: (u64, u64),
        b_range: (u64, u64),
    },
    #[error("{path}: tensor '{tensor}' is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    /// A tensor's shape does not agree with what the config says (e.g. `hidden_size`).
    #[error("{path}: tensor '{tensor}' has shape {found:?}, expected {expected:?} ({why})")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        found: Vec<u64>,
        expected: Vec<u64>,
        why: String,
    },
    #[error("{path}: key '{key}' is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: key '{key}': {msg}")]
    BadKey {
        path: PathBuf,
        key: String,
        msg: String,
    },
}

pub type Result<T> = std::result::Result<T, HfError>;
