//! [`ModelError`]: everything that can go wrong loading or running a model.

use gguf::{GgmlType, GgufError};

/// Errors of the `model` crate. Each names the file, key, tensor or batch field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A Hugging Face folder (`config.json`, safetensors) at fault; the error names the file
    /// and the key or tensor. (Boxed: it is larger than the other variants.)
    #[error(transparent)]
    Hf(Box<hf::HfError>),
    #[error(
        "unsupported architecture '{arch}' (general.architecture); lume supports: {supported}"
    )]
    UnsupportedArch { arch: String, supported: String },
    #[error("metadata key '{key}': {msg}")]
    BadHparam { key: String, msg: String },
    #[error("tensor '{tensor}' has shape {found:?} (GGUF order), expected {expected:?}")]
    TensorShape {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor '{tensor}' has type {ty}, which lume's kernels do not support")]
    UnsupportedType { tensor: String, ty: GgmlType },
    #[error("bad batch: {0}")]
    BadBatch(String),
    #[error("token id {token} at batch index {index} is out of range (vocabulary size {vocab})")]
    TokenOutOfRange {
        token: u32,
        index: usize,
        vocab: usize,
    },
    #[error("slot {slot}: position {pos} is beyond the cache context of {n_ctx} positions")]
    ContextFull {
        slot: usize,
        pos: usize,
        n_ctx: usize,
    },
    #[error("bad cache request: {0}")]
    BadCache(String),
}

impl From<hf::HfError> for ModelError {
    fn from(e: hf::HfError) -> Self {
        ModelError::Hf(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;
