//! # grammar: output that fits a shape
//!
//! Map of the crate:
//! - [`constraint`]: [`Spec`] (JSON schema, any JSON object, regex, Lark, GBNF) compiled by
//!   [`Grammars`] (one per model vocabulary, on llguidance) into a [`Constraint`]: per
//!   generated token, a mask of the allowed next tokens.
//! - [`gbnf`]: llama.cpp's GBNF grammars, converted to llguidance's Lark syntax.
//! - [`check_schema`]: refuses by name what llguidance would silently ignore in a JSON schema.
//! - [`GrammarError`]: every failure, naming the keyword, rule or position at fault.

#![forbid(unsafe_code)]

pub mod constraint;
mod error;
pub mod gbnf;
mod schema_check;

pub use constraint::{Constraint, Grammars, Spec};
pub use error::GrammarError;
pub use schema_check::check_schema;
