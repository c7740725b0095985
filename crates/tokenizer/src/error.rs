use std::path::PathBuf;

/// Everything that can go wrong building a tokenizer from a GGUF file. Every variant names
/// the file, and where it applies the metadata key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type (the GGUF error names file and key).
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{path}: tokenizer model '{model}' (tokenizer.ggml.model) is not supported; lume reads 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)")]
    UnsupportedModel { path: PathBuf, model: String },
    #[error("{path}: pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported")]
    UnsupportedPreTokenizer { path: PathBuf, pre: String },
    #[error("{path}: metadata key '{key}': {msg}")]
    Invalid {
        path: PathBuf,
        key: String,
        msg: String,
    },
}
