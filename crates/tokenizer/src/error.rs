use std::path::PathBuf;

/// Everything that can go wrong building a tokenizer from a GGUF file. Every variant names
/// the file, and where it applies the metadata key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type (the GGUF error names file and key).
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("{path}: tokenizer model '{model}' (tokenizer.ggml.model) is not supported; lume reads 'gpt2' (byte-level BPE), 'llama' (SentencePiece), 'gemma4' (BPE over UTF-8) and 'bert' (WordPiece)")]
    UnsupportedModel { path: PathBuf, model: String },
    #[error("{path}: pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported")]
    UnsupportedPreTokenizer { path: PathBuf, pre: String },
    #[error("{path}: metadata key '{key}': {msg}")]
    Invalid {
        path: PathBuf,
        key: String,
        msg: String,
    },
    /// A merge rule that is not `left right`: exactly one space, a non-empty piece on each
    /// side.
    #[error("{path}: tokenizer.ggml.merges[{index}] = {entry:?}: expected two pieces separated by one space")]
    BadMerge {
        path: PathBuf,
        index: usize,
        entry: String,
    },
    /// A special token id outside the vocabulary that the file itself asks to insert (its
    /// `add_key` is `true`), so no correct tokenization exists.
    #[error("{path}: {key} = {id} is outside the vocabulary of {n_vocab} tokens, and {add_key} = true asks for that token")]
    IdOutOfRange {
        path: PathBuf,
        key: String,
        id: u32,
        n_vocab: usize,
        add_key: String,
    },
    /// A file of a Hugging Face tokenizer folder (CLIP's `vocab.json`, ...) that cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file of a tokenizer folder that does not parse, or has the wrong shape.
    #[error("{path}: bad JSON: {msg}")]
    Json { path: PathBuf, msg: String },
    /// A key of a tokenizer folder's JSON file (a token of `vocab.json`, `pad_token` of
    /// `tokenizer_config.json`, ...) with a value that cannot be used.
    #[error("{path}: key {key:?}: {msg}")]
    Config {
        path: PathBuf,
        key: String,
        msg: String,
    },
    /// A line of a `merges.txt` that is not a usable merge rule.
    #[error("{path}:{line}: {entry:?}: {msg}")]
    MergeLine {
        path: PathBuf,
        line: usize,
        entry: String,
        msg: String,
    },
}

/// Something wrong in the metadata that the tokenizer works around (the file stays usable);
/// [`crate::Tokenizer::from_gguf`] prints each on stderr as one line starting `warning:` and
/// keeps them in [`crate::Tokenizer::warnings`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerWarning {
    /// A special token id outside the vocabulary: the id is ignored (as if the key were
    /// absent, without the default).
    #[error(
        "{path}: {key} = {id} is outside the vocabulary of {n_vocab} tokens; the id is ignored"
    )]
    IdOutOfRange {
        path: PathBuf,
        key: String,
        id: u32,
        n_vocab: usize,
    },
}
