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
//! - [`embeddings`]: sentence embeddings ([`embeddings::EmbeddingModel`]: an encoder folder, a
//!   GGUF encoder or decoder) and [`embeddings::EmbedQueue`], which batches concurrent requests.
//! - [`perplexity`]: perplexity and KL divergence over a text (the llama-perplexity method)
//!   and the KL-divergence base file.
//! - [`logprobs`]: top-N log-probabilities of a logits row.
//! - [`tools`]: OpenAI tool calls: the tool list for the template, the grammar that forces a
//!   call, and the parser that takes calls out of the generated text.
//! - Constrained decoding: [`Spec`] → [`Engine::compile`] / [`Scheduler::compile`] →
//!   [`GenerateParams::constraint`] (the `grammar` crate, on llguidance).
//! - [`EngineError`]: everything that can fail, naming the file, key or token at fault.

#![forbid(unsafe_code)]

mod backend;
pub mod chat;
pub mod embeddings;
mod engine;
mod error;
mod guided;
pub mod logprobs;
pub mod metrics;
pub mod options;
pub mod perplexity;
pub mod scheduler;
pub mod session;
pub mod text;
pub mod tools;

pub use chat::{ChatInput, ChatMessage, ChatTemplate};
pub use engine::{Engine, GenerateParams};
pub use error::{EngineError, SubmitError};
pub use grammar::{Constraint, GrammarError, Spec};
pub use metrics::{Metrics, MetricsSnapshot};
pub use model::KvType;
pub use options::{EngineOptions, DEFAULT_MAX_CTX};
pub use sampling::SamplerConfig;
pub use scheduler::{
    Event, Finish, GenToken, Request, RequestId, Scheduler, SchedulerOptions, Sink, SlotInfo,
    TokenLogprob,
};
pub use session::{GenerateStats, StopReason, TokenEvent};

/// Sets the kernels' worker threads (process-wide; 0 keeps the default).
pub fn set_kernel_threads(n: usize) {
    if n > 0 {
        kernels::set_num_threads(n);
    }
}
