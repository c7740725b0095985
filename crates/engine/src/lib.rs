//! # engine: the library people embed
//!
//! ```no_run
//! use engine::{Engine, EngineOptions, GenerateParams, SamplerConfig};
//! # fn main() -> Result<(), engine::EngineError> {
//! let mut eng = Engine::load("model.gguf", EngineOptions::default())?;
//! let prompt = eng.tokenize("The capital of France is", true, true);
//! let params = GenerateParams { max_tokens: 16, sampler: SamplerConfig::greedy(), ..Default::default() };
//! let stats = eng.generate(&prompt, &params, |ev| {
//!     print!("{}", ev.text);
//!     true // false stops generation
//! })?;
//! eprintln!("{:.1} tokens/s", stats.gen_tps());
//! # Ok(())
//! # }
//! ```
//!
//! Map of the crate:
//! - [`Engine`] (in `engine.rs`): load a model ([`EngineOptions`]), [`Engine::generate`] with a
//!   per-token callback ([`GenerateParams`]), [`Engine::score`] (top-N log-probabilities at
//!   every position), tokenize/detokenize, the chat template. `backend.rs` adapts
//!   `model::Model` and its KV cache to the loop's `Forward` trait.
//! - [`chat`]: [`ChatTemplate`] renders the model's Jinja chat template for a list of
//!   [`ChatMessage`]s.
//! - [`text`]: [`text::TextStream`] turns token bytes into printable text, whole UTF-8
//!   characters only, holding back what may be the start of a stop string.
//! - [`session`]: the generation and scoring loops over a [`session::Forward`] model and a
//!   [`session::Vocab`]; a [`session::Session`] reuses the KV cache prefix across requests.
//! - [`scheduler`]: [`Scheduler`] — many requests sharing one model: one loop thread, one
//!   batch per step from every active sequence (continuous batching, chunked prefill), a
//!   KV-cache slot per sequence with prefix reuse, a bounded queue; [`metrics`] is what it counts.
//! - [`logprobs`]: top-N log-probabilities of a logits row.
//! - [`EngineError`]: everything that can fail, naming the file, key or token at fault.

mod backend;
pub mod chat;
mod engine;
pub mod logprobs;
pub mod metrics;
pub mod scheduler;
pub mod session;
pub mod text;

pub use chat::{ChatMessage, ChatTemplate};
pub use engine::{Engine, EngineOptions, GenerateParams, DEFAULT_MAX_CTX};
pub use metrics::{Metrics, MetricsSnapshot};
pub use model::KvType;
pub use sampling::SamplerConfig;
pub use scheduler::{
    Event, Finish, GenToken, Request, RequestId, Scheduler, SchedulerOptions, Sink, SlotInfo,
    SubmitError, TokenLogprob,
};
pub use session::{GenerateStats, StopReason, TokenEvent};

use std::path::PathBuf;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// A model error with the file it concerns (the message includes the cause, so it is
    /// not chained again as a `source`).
    #[error("{path}: {error}")]
    Model {
        path: PathBuf,
        error: model::ModelError,
    },
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error(transparent)]
    Sampling(#[from] sampling::SamplingError),
    #[error("{path}: the model has no chat template (metadata key 'tokenizer.chat_template'); use a plain prompt instead")]
    NoChatTemplate { path: PathBuf },
    #[error("chat template: {msg}")]
    Template { msg: String },
    #[error("{path}: a context of {n_ctx} tokens was asked for; the model allows at most {limit}")]
    ContextTooLarge {
        path: PathBuf,
        n_ctx: usize,
        limit: usize,
    },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    BadToken { id: u32, n_vocab: usize },
    /// Something went wrong inside the engine (a thread could not start, a forward pass failed).
    #[error("{msg}")]
    Internal { msg: String },
    #[error("{n_tokens} tokens do not fit in the context of {n_ctx} (use a larger --ctx-size)")]
    ContextTooLong { n_tokens: usize, n_ctx: usize },
}
