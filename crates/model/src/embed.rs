//! Sentence embeddings: token sequences through a model's final hidden states, pooled into
//! one vector each and optionally L2-normalised (what sentence-transformers' Pooling and
//! Normalize modules do).
//!
//! Several sequences run in one forward pass as several KV-cache slots of one batch (at most
//! [`MAX_BATCH`] tokens together; more sequences go in further passes). Each slot holds exactly
//! its own sequence, and an encoder's bidirectional attention sees exactly that slot, so no
//! padding is computed: a batch gives every sequence the vector it gets alone.
//! [`Embedder::embed_padded`] accepts the usual padded `[batch, len]` ids + attention mask and
//! drops the pads first.

use crate::batch::{Batch, MAX_BATCH};
use crate::error::{ModelError, Result};
use crate::model::Model;

/// How the hidden states of one sequence become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the sequence's positions.
    Mean,
    /// The first position (`[CLS]`).
    Cls,
    /// The last position.
    Last,
}

impl Pooling {
    /// llama.cpp's `{arch}.pooling_type`: 1 mean, 2 cls, 3 last (0 none, 4 rank: `None`).
    pub fn from_gguf_type(t: u32) -> Option<Pooling> {
        match t {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
        }
    }
}

impl From<hf::PoolingMode> for Pooling {
    fn from(m: hf::PoolingMode) -> Pooling {
        match m {
            hf::PoolingMode::Mean => Pooling::Mean,
            hf::PoolingMode::Cls => Pooling::Cls,
            hf::PoolingMode::Last => Pooling::Last,
        }
    }
}

/// Pools the `[len, d]` hidden rows of one sequence into `out` (`[d]`).
pub fn pool(rows: &[f32], d: usize, mode: Pooling, out: &mut [f32]) {
    let len = rows.len() / d;
    match mode {
        Pooling::Cls => out.copy_from_slice(&rows[..d]),
        Pooling::Last => out.copy_from_slice(&rows[(len - 1) * d..len * d]),
        Pooling::Mean => {
            out.fill(0.0);
            for r in rows.chunks_exact(d) {
                for (o, v) in out.iter_mut().zip(r) {
                    *o += v;
                }
            }
            let inv = 1.0 / len as f32;
            for o in out.iter_mut() {
                *o *= inv;
            }
        }
    }
}

/// Divides `v` by its L2 norm (by at least 1e-12, as torch's `normalize`).
pub fn l2_normalize(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    let inv = 1.0 / n.max(1e-12);
    for x in v.iter_mut() {
        *x = (*x as f64 * inv) as f32;
    }
}

/// A model used for embeddings, with its pooling.
#[derive(Debug)]
pub struct Embedder {
    pub model: Model,
    pub pooling: Pooling,
    /// Divide every vector by its L2 norm.
    pub normalize: bool,
}

impl Embedder {
    pub fn new(model: Model, pooling: Pooling, normalize: bool) -> Embedder {
        Embedder {
            model,
            pooling,
            normalize,
        }
    }

    /// Width of each vector.
    pub fn dim(&self) -> usize {
        self.model.info().n_embd
    }

    /// Longest sequence accepted: the model's positions (and one batch).
    pub fn max_len(&self) -> usize {
        self.model.info().n_ctx_train.min(MAX_BATCH)
    }

    /// One vector per sequence of `seqs` (token ids, special tokens included), written to
    /// `out` as `[seqs.len(), dim]`.
    pub fn embed(&self, seqs: &[&[u32]], out: &mut Vec<f32>) -> Result<()> {
        let d = self.dim();
        out.clear();
        out.resize(seqs.len() * d, 0.0);
        let (pooling, normalize) = (self.pooling, self.normalize);
        self.run_groups(seqs, None, |i, rows| {
            let v = &mut out[i * d..(i + 1) * d];
            pool(rows, d, pooling, v);
            if normalize {
                l2_normalize(v);
            }
            Ok(())
        })
    }

    /// Whether the model has a one-output classification head (a cross-encoder reranker).
    pub fn can_score(&self) -> bool {
        self.model.n_labels() == 1
    }

    /// The raw relevance logit of each `(ids, token types)` pair encoding (from a
    /// cross-encoder: the classification head on the `[CLS]` row), into `out` (`[pairs.len()]`).
    /// All pairs go in as few forward passes as [`MAX_BATCH`] allows.
    pub fn score(&self, pairs: &[(&[u32], &[u32])], out: &mut Vec<f32>) -> Result<()> {
        let labels = self.model.n_labels();
        if labels != 1 {
            return Err(ModelError::BadBatch(if labels == 0 {
                "this model has no classification head: it cannot rerank".to_string()
            } else {
                format!("this model's classification head has {labels} outputs; a reranker has 1")
            }));
        }
        for (i, (ids, types)) in pairs.iter().enumerate() {
            if ids.len() != types.len() {
                return Err(ModelError::BadBatch(format!(
                    "pair {i}: {} token ids but {} token types",
                    ids.len(),
                    types.len()
                )));
            }
        }
        let seqs: Vec<&[u32]> = pairs.iter().map(|p| p.0).collect();
        let types: Vec<&[u32]> = pairs.iter().map(|p| p.1).collect();
        let d = self.dim();
        out.clear();
        out.resize(pairs.len(), 0.0);
        let mut tmp = Vec::new(); // [1, d] pooler output
        let mut logit = Vec::new(); // [1]
                                    // The head is one small product per pair: run it on each [CLS] row as it comes.
        self.run_groups(&seqs, Some(&types), |i, rows| {
            self.model.classify(&rows[..d], 1, &mut tmp, &mut logit)?;
            out[i] = logit[0];
            Ok(())
        })
    }

    /// Runs `seqs` (with their token `types`, else all type 0) through the model in groups of
    /// whole sequences that fit one batch; `each(i, rows)` gets sequence `i`'s hidden rows
    /// (`[len_i, dim]`).
    fn run_groups(
        &self,
        seqs: &[&[u32]],
        types: Option<&[&[u32]]>,
        mut each: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let d = self.dim();
        for (i, s) in seqs.iter().enumerate() {
            if s.is_empty() || s.len() > self.max_len() {
                return Err(ModelError::BadBatch(format!(
                    "sequence {i} has {} tokens; an embedding needs 1..={}",
                    s.len(),
                    self.max_len()
                )));
            }
        }
        let mut batch = Batch::new();
        let mut hidden = Vec::new(); // [n, d]
        let mut first = 0;
        while first < seqs.len() {
            // As many whole sequences as fit in one batch.
            let mut end = first;
            let mut total = 0;
            while end < seqs.len() && total + seqs[end].len() <= MAX_BATCH {
                total += seqs[end].len();
                end += 1;
            }
            let group = &seqs[first..end];
            let n_ctx = group.iter().map(|s| s.len()).max().unwrap_or(1);
            let mut cache = self.model.new_cache(group.len(), n_ctx)?;
            batch.clear();
            for (slot, s) in group.iter().enumerate() {
                match types {
                    Some(t) => batch.push_seq_typed(s, t[first + slot], 0, slot, false),
                    None => batch.push_seq(s, 0, slot, false),
                }
            }
            self.model.forward_hidden(&batch, &mut cache, &mut hidden)?;
            let mut row = 0;
            for (k, s) in group.iter().enumerate() {
                each(first + k, &hidden[row * d..(row + s.len()) * d])?;
                row += s.len();
            }
            first = end;
        }
        Ok(())
    }

    /// [`Embedder::embed`] of a padded batch: `ids` and `mask` are `[n_seq, len]`; each row's
    /// tokens are those where `mask` is 1 (a prefix: right padding).
    pub fn embed_padded(
        &self,
        ids: &[u32],
        mask: &[u8],
        n_seq: usize,
        len: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if ids.len() != n_seq * len || mask.len() != n_seq * len {
            return Err(ModelError::BadBatch(format!(
                "ids ({}) and mask ({}) must both hold {n_seq} x {len} values",
                ids.len(),
                mask.len()
            )));
        }
        let mut seqs = Vec::with_capacity(n_seq);
        for r in 0..n_seq {
            let m = &mask[r * len..(r + 1) * len];
            let n = m.iter().take_while(|&&b| b == 1).count();
            if m[n..].iter().any(|&b| b != 0) {
                return Err(ModelError::BadBatch(format!(
                    "row {r}: the attention mask is not ones then zeros (right padding)"
                )));
            }
            seqs.push(&ids[r * len..r * len + n]);
        }
        self.embed(&seqs, out)
    }
}
