//! `lume embed`: sentence embeddings of texts (arguments, or lines of standard input).
//!
//! The model is a catalogue name (`minilm-l6`), a Hugging Face folder (`config.json`,
//! `model.safetensors`, `tokenizer.json` or `vocab.txt`, sentence-transformers files) or a GGUF
//! file. Encoders (BERT) use WordPiece, truncate at the model's `max_seq_length` (the
//! sentence-transformers setting, else the model's positions) and pool as the model's config
//! says (default mean); a decoder GGUF uses its own tokenizer and last-token pooling of its
//! final hidden state. `--pooling` overrides either; `--normalize` divides by the L2 norm even
//! when the model's pipeline does not (sentence-transformers' `Normalize` module already does).
//!
//! Output: one JSON object (`model`, `dim`, `pooling`, `normalized`, `data[{index, n_tokens,
//! embedding}]`), or with `--format lines` one vector per line, values separated by spaces.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use engine::embeddings::EmbeddingModel;
use model::embed::Pooling;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Lines,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Mean,
    Cls,
    Last,
}

#[derive(Args, Clone, Debug)]
pub struct EmbedArgs {
    /// A catalogue name (e.g. minilm-l6), a Hugging Face model folder, or a GGUF file.
    #[arg(short = 'm', long = "model", default_value = "minilm-l6")]
    pub model: String,
    /// Texts to embed; without any, each line of standard input is one text.
    pub texts: Vec<String>,
    /// `json` (one object) or `lines` (one vector per line).
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Divide each vector by its L2 norm (models whose pipeline normalises do so anyway).
    #[arg(long)]
    pub normalize: bool,
    /// Pooling instead of the model's own.
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
}

/// Text to token ids, cut to the model's length.
#[derive(Serialize)]
struct Item {
    index: usize,
    n_tokens: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct Output<'a> {
    model: &'a str,
    dim: usize,
    pooling: &'a str,
    normalized: bool,
    data: Vec<Item>,
}

pub fn run(a: &EmbedArgs) -> Result<()> {
    let path = hub::ensure(&a.model).with_context(|| format!("model '{}'", a.model))?;
    let mut m =
        EmbeddingModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    if let Some(p) = a.pooling {
        m.embedder.pooling = match p {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Last => Pooling::Last,
        };
    }
    m.embedder.normalize |= a.normalize;
    let texts: Vec<String> = if a.texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .context("reading standard input")?
    } else {
        a.texts.clone()
    };
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| m.encode(t)).collect();
    if let Some(i) = ids.iter().position(|s| s.is_empty()) {
        bail!("text {i} gives no tokens, and this model adds none");
    }
    let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let mut vecs = Vec::new(); // [n_texts, dim]
    m.embed(&seqs, &mut vecs)?;
    let d = m.dim();
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Lines => {
            let mut line = String::new();
            for v in vecs.chunks_exact(d.max(1)) {
                line.clear();
                for (k, x) in v.iter().enumerate() {
                    if k > 0 {
                        line.push(' ');
                    }
                    line.push_str(&x.to_string());
                }
                writeln!(out, "{line}")?;
            }
        }
        Format::Json => {
            let data = vecs
                .chunks_exact(d.max(1))
                .zip(&ids)
                .enumerate()
                .map(|(index, (v, s))| Item {
                    index,
                    n_tokens: s.len(),
                    embedding: v.to_vec(),
                })
                .collect();
            let o = Output {
                model: &a.model,
                dim: d,
                pooling: m.embedder.pooling.name(),
                normalized: m.embedder.normalize,
                data,
            };
            serde_json::to_writer(&mut out, &o)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
