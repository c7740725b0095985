//! # engine: the library people embed
//!
//! Map of the crate:
//! - [`chat`]: [`ChatTemplate`] renders the model's Jinja chat template for a list of
//!   [`ChatMessage`]s.
//! - [`text`]: [`text::TextStream`] turns token bytes into printable text, whole UTF-8
//!   characters only, holding back what may be the start of a stop string.
//! - [`logprobs`]: top-N log-probabilities of a logits row.
//! - [`EngineError`]: everything that can fail, naming the file, key or token at fault.

pub mod chat;
pub mod logprobs;
pub mod text;

pub use chat::{ChatMessage, ChatTemplate};

use std::path::PathBuf;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{path}: the model has no chat template (metadata key 'tokenizer.chat_template'); use a plain prompt instead")]
    NoChatTemplate { path: PathBuf },
    #[error("chat template: {msg}")]
    Template { msg: String },
}
