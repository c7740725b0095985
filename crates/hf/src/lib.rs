//! # hf: Hugging Face folder layouts
//!
//! Map of the crate:
//! - [`safetensors`]: [`SafeTensors`], a memory-mapped `.safetensors` file whose header
//!   ([`parse_header`]) is fully checked before use; F32 / F16 / BF16 tensors read as f32.
//! - [`config`]: [`JsonFile`], `config.json` and friends with typed look-ups.
//! - [`sentence`]: [`SentenceConfig`], sentence-transformers' `modules.json`,
//!   `sentence_bert_config.json` and pooling config.
//! - [`folder`]: [`HfFolder`], a model folder: which of those files are there.
//! - [`error`]: [`HfError`], which always names the file and the key or tensor at fault.
//!
//! Depends on nothing else of lume's: the model crate maps these tensors to its own layouts.

pub mod config;
pub mod error;
pub mod folder;
pub mod safetensors;
pub mod sentence;

pub use config::JsonFile;
pub use error::{HfError, Result};
pub use folder::HfFolder;
pub use safetensors::{parse_header, Dtype, Header, SafeTensors, TensorEntry};
pub use sentence::{PoolingMode, SentenceConfig};

#[cfg(test)]
mod tests;
