//! `lume rerank`: relevance scores of documents for a query, from a cross-encoder (a BERT
//! `BertForSequenceClassification` folder, or a GGUF `bert` with a classification head).
//!
//! Each `(query, document)` pair is encoded as `[CLS] query [SEP] document [SEP]` (token
//! types 0 then 1, cut to the model's length as Hugging Face's `longest_first` does) and
//! scored in one batch. Output: one JSON object `{"model", "results": [{"index",
//! "relevance_score", "document"}]}`, the results sorted by score (the raw logit), highest
//! first, `--top-n` of them.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::embeddings::EmbeddingModel;
use serde::Serialize;

#[derive(Args, Clone, Debug)]
pub struct RerankArgs {
    /// A Hugging Face cross-encoder folder or a GGUF reranker.
    #[arg(short = 'm', long = "model")]
    pub model: String,
    /// The query.
    pub query: String,
    /// The documents to score against it.
    #[arg(required = true)]
    pub documents: Vec<String>,
    /// Print only the N best results.
    #[arg(long = "top-n")]
    pub top_n: Option<usize>,
}

#[derive(Serialize)]
struct Item<'a> {
    index: usize,
    relevance_score: f32,
    document: &'a str,
}

#[derive(Serialize)]
struct Output<'a> {
    model: &'a str,
    results: Vec<Item<'a>>,
}

pub fn run(a: &RerankArgs) -> Result<()> {
    let path = hub::ensure(&a.model).with_context(|| format!("model '{}'", a.model))?;
    let m = EmbeddingModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    if !m.can_rerank() {
        bail!(
            "{}: this model has no classification head: it cannot rerank",
            path.display()
        );
    }
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = a
        .documents
        .iter()
        .map(|d| m.encode_pair(&a.query, d))
        .collect();
    let refs: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|(i, t)| (i.as_slice(), t.as_slice()))
        .collect();
    let mut scores = Vec::new(); // [n_documents]
    m.score_pairs(&refs, &mut scores)?;
    let mut results: Vec<Item> = a
        .documents
        .iter()
        .zip(&scores)
        .enumerate()
        .map(|(index, (d, &s))| Item {
            index,
            relevance_score: s,
            document: d,
        })
        .collect();
    // Highest first; ties keep the documents' order.
    results.sort_by(|x, y| y.relevance_score.total_cmp(&x.relevance_score));
    if let Some(n) = a.top_n {
        results.truncate(n);
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(
        &mut out,
        &Output {
            model: &a.model,
            results,
        },
    )?;
    writeln!(out)?;
    Ok(())
}
