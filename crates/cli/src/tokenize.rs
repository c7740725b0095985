//! `lume tokenize`.

use anyhow::{bail, Result};
use clap::Args;

use crate::ModelArg;

#[derive(Args, Clone, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to tokenize.
    pub text: String,
    /// Print `{"ids": [...], "pieces": [...]}`.
    #[arg(long)]
    pub json: bool,
    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
    /// Add the BOS token when the model asks for one.
    #[arg(long)]
    pub add_special: bool,
}

pub fn run(_args: &TokenizeArgs) -> Result<()> {
    bail!("`lume tokenize` is not available yet")
}
