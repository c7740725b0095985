//! # engine: the library people embed
//!
//! Map of the crate:
//! - [`chat`]: [`ChatTemplate`] renders the model's Jinja chat template for a list of
//!   [`ChatMessage`]s.
//! - [`text`]: [`text::TextStream`] turns token bytes into printable text, whole UTF-8
//!   characters only, holding back what may be the start of a stop string.
//! - [`session`]: the generation and scoring loops over a [`session::Forward`] model and a
//!   [`session::Vocab`]; a [`session::Session`] reuses the KV cache prefix across requests.
//! - [`logprobs`]: top-N log-probabilities of a logits row.
//! - [`EngineError`]: everything that can fail, naming the file, key or token at fault.

pub mod chat;
pub mod logprobs;
pub mod session;
pub mod text;

pub use chat::{ChatMessage, ChatTemplate};
pub use session::{GenerateStats, StopReason, TokenEvent};

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
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    BadToken { id: u32, n_vocab: usize },
    #[error("{n_tokens} tokens do not fit in the context of {n_ctx} (use a larger --ctx-size)")]
    ContextTooLong { n_tokens: usize, n_ctx: usize },
}
