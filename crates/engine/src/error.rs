//! The engine's errors: [`EngineError`] for loading and generating, [`SubmitError`] for a
//! request the [`crate::Scheduler`] does not accept.

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
    /// A schema or grammar that does not compile, or a constraint that failed mid-stream.
    #[error(transparent)]
    Grammar(#[from] grammar::GrammarError),
    #[error("{path}: the model has no chat template (metadata key 'tokenizer.chat_template'); use a plain prompt instead")]
    NoChatTemplate { path: PathBuf },
    #[error("chat template: {msg}")]
    Template { msg: String },
    /// The template refused the conversation on purpose (`raise_exception(msg)`, e.g. "System
    /// role not supported"); `msg` is the template's own message.
    #[error("the chat template refuses this conversation: {msg}")]
    TemplateRaised { msg: String },
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
    /// Perplexity: a text or context that cannot be measured.
    #[error("perplexity: {msg}")]
    PerplexityInput { msg: String },
    /// A KL-divergence base file that cannot be read or written.
    #[error("KL-divergence base file: {msg}")]
    KldFile { msg: String },
    /// A base file made for another text, context or vocabulary.
    #[error("KL-divergence base file does not match this run: {field} is {base} in the file, {current} here")]
    KldMismatch {
        field: String,
        base: String,
        current: String,
    },
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {waiting} requests are waiting (queue limit {limit})")]
    QueueFull { waiting: usize, limit: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Invalid(#[from] EngineError),
}
