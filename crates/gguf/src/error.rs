use std::path::PathBuf;

use crate::value::ValueType;

/// Everything that can go wrong reading or writing a GGUF file. Every variant names the file,
/// and where it applies the metadata key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic bytes {magic:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: unsupported GGUF version {version} (lume reads versions 2 and 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: file is truncated: {what} needs bytes up to offset {needed}, file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        len: u64,
    },
    #[error("{path}: {what}: {msg}")]
    Invalid {
        path: PathBuf,
        what: String,
        msg: String,
    },
    #[error("{path}: tensor '{tensor}': {msg}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("{path}: metadata key '{key}' is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: String,
        found: ValueType,
    },
    #[error("{path}: tensor '{tensor}' is missing")]
    MissingTensor { path: PathBuf, tensor: String },
}

pub type Result<T> = std::result::Result<T, GgufError>;
