//! `lume tokenize`.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

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

#[derive(Serialize)]
struct TokenizeJson {
    ids: Vec<u32>,
    /// Each token's bytes as text (lossy when a token holds part of a UTF-8 character).
    pieces: Vec<String>,
}

pub fn run(a: &TokenizeArgs) -> Result<()> {
    let path = a.model.path()?;
    // Only the tokenizer is needed: no model weights are touched.
    let file = gguf::GgufFile::open(&path)?;
    let tok = tokenizer::Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&a.text, a.add_special, !a.no_parse_special);
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| String::from_utf8_lossy(tok.token_bytes(id)).into_owned())
        .collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &TokenizeJson { ids, pieces })?;
        writeln!(out)?;
    } else {
        for (id, piece) in ids.iter().zip(&pieces) {
            writeln!(out, "{id:>8} {piece:?}")?;
        }
        writeln!(out, "{} tokens", ids.len())?;
    }
    Ok(())
}
