use thiserror::Error;

/// Everything that can go wrong turning a schema or grammar into a constraint, or using one.
#[derive(Debug, Error)]
pub enum GrammarError {
    /// A GBNF grammar that does not parse: the line and column, and what was expected.
    #[error("GBNF grammar, line {line} column {col}: {msg}")]
    Gbnf {
        line: usize,
        col: usize,
        msg: String,
    },
    /// llguidance refused the input (`kind`: json_schema, regex, lark, gbnf, json_object);
    /// the message names the keyword or rule at fault.
    #[error("invalid {kind}: {msg}")]
    Compile { kind: &'static str, msg: String },
    /// The model's vocabulary cannot be used for constrained decoding.
    #[error("constrained decoding: {msg}")]
    Vocabulary { msg: String },
    /// The matcher failed during generation (a token outside the mask, a step over its limits).
    #[error("constrained decoding failed: {msg}")]
    Runtime { msg: String },
}
