//! Perplexity and KL divergence over a text, the llama.cpp `llama-perplexity` method.
//!
//! The text is tokenized once; it is cut into chunks of `n_ctx` tokens (chunk `c` is
//! `tokens[c * n_ctx .. (c + 1) * n_ctx]`), and when the model wants a BOS its first token is
//! replaced by BOS. Each chunk is evaluated from an empty cache, and only its second half is
//! scored: the log-probability of token `j + 1` from the logits at `j`, for `j` in
//! `n_ctx / 2 .. n_ctx - 1`. PPL is `exp(mean NLL)`; its error is `PPL * s / sqrt(n - 1)`
//! (`s` the standard deviation of the per-token NLL), as llama.cpp reports it.
//!
//! KL divergence: a run with a [`KldWriter`] stores, per scored token, the base model's
//! log-probabilities over the whole vocabulary (16-bit quantized) or its top K; a run with a
//! [`KldReader`] over the same text compares the current model's distribution with them.
//!
//! File format (little-endian), version 1:
//! ```text
//! magic "LUMEKLD\0" | u32 version | u32 n_ctx | u32 n_vocab | u32 n_chunks | u32 top_k (0 = full)
//! [32] sha256 of the text | u32 name length | name bytes (the base model)
//! n_chunks * (n_ctx - 1 - n_ctx/2) records, each:
//!   f32 log-prob of the actual next token | f32 min | f32 scale
//!   full:  n_vocab * u16 q              (log-prob = min + q * scale)
//!   top-K: K * (u32 id, u16 q), most likely first
//! ```

use std::io::{Read, Write};

use crate::EngineError;

const MAGIC: &[u8; 8] = b"LUMEKLD\0";
const VERSION: u32 = 1;
/// Log-probabilities below this are stored as this (their probability is below 1e-13).
const LP_FLOOR: f64 = -30.0;

/// What to measure.
#[derive(Clone, Debug)]
pub struct PerplexityParams {
    /// Tokens per chunk (at least 8).
    pub n_ctx: usize,
    /// Most chunks to evaluate (None = all the text holds).
    pub max_chunks: Option<usize>,
    /// Tokens per forward pass.
    pub batch: usize,
}

/// Where the run stands after a chunk.
#[derive(Clone, Debug)]
pub struct ChunkProgress {
    pub chunk: usize,
    pub n_chunks: usize,
    /// Running PPL estimate.
    pub ppl: f64,
    /// Running mean KL divergence (KLD mode).
    pub kld: Option<f64>,
}

/// KL divergence figures against a base file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KldStats {
    pub base_model: String,
    pub mean: f64,
    pub mean_err: f64,
    /// Share of tokens where the two models' most likely token is the same (0..1).
    pub same_top: f64,
    pub same_top_err: f64,
    pub base_ppl: f64,
    pub base_ppl_err: f64,
    /// PPL(current) - PPL(base).
    pub delta_ppl: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// The base file holds the top K only (0 = the full vocabulary; then KLD is exact up to
    /// the 16-bit quantization, else the rest of the vocabulary counts as one outcome).
    pub top_k: usize,
}

/// The result of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PerplexityResult {
    pub n_ctx: usize,
    pub n_chunks: usize,
    /// Tokens scored (n_chunks * (n_ctx - 1 - n_ctx / 2)).
    pub n_scored: usize,
    pub ppl: f64,
    pub ppl_err: f64,
    /// Mean negative log-likelihood (nats).
    pub nll: f64,
    /// Tokens evaluated (n_chunks * n_ctx) per second of forward passes and scoring.
    pub tokens_per_s: f64,
    pub seconds: f64,
    pub kld: Option<KldStats>,
}

/// The KL-divergence side of a run.
pub enum KlMode<'a> {
    None,
    /// Store the base model's log-probabilities.
    Save(&'a mut KldWriter),
    /// Compare with a base file.
    Compare(&'a mut KldReader),
}

/// What a base file is about; a reader checks it against the current run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KldHeader {
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunks: usize,
    pub top_k: usize,
    pub text_sha256: [u8; 32],
    pub model_name: String,
}

fn kerr(msg: impl Into<String>) -> EngineError {
    EngineError::KldFile { msg: msg.into() }
}

impl KldHeader {
    fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        for v in [
            VERSION,
            self.n_ctx as u32,
            self.n_vocab as u32,
            self.n_chunks as u32,
            self.top_k as u32,
        ] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&self.text_sha256)?;
        w.write_all(&(self.model_name.len() as u32).to_le_bytes())?;
        w.write_all(self.model_name.as_bytes())
    }

    fn read(r: &mut dyn Read) -> Result<KldHeader, EngineError> {
        let mut magic = [0u8; 8];
        read_exact(r, &mut magic, "the magic")?;
        if &magic != MAGIC {
            return Err(kerr("not a lume KL-divergence base file (bad magic)"));
        }
        let version = read_u32(r, "the version")?;
        if version != VERSION {
            return Err(kerr(format!(
                "format version {version}; this lume reads version {VERSION}"
            )));
        }
        let n_ctx = read_u32(r, "n_ctx")? as usize;
        let n_vocab = read_u32(r, "n_vocab")? as usize;
        let n_chunks = read_u32(r, "n_chunks")? as usize;
        let top_k = read_u32(r, "top_k")? as usize;
        let mut text_sha256 = [0u8; 32];
        read_exact(r, &mut text_sha256, "the text hash")?;
        let len = read_u32(r, "the model name length")? as usize;
        if len > 4096 {
            return Err(kerr(format!("model name of {len} bytes: corrupt header")));
        }
        if n_ctx < 8 || n_vocab == 0 || n_chunks == 0 || top_k > n_vocab {
            return Err(kerr(format!(
                "corrupt header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunks {n_chunks}, top_k {top_k})"
            )));
        }
        let mut name = vec![0u8; len];
        read_exact(r, &mut name, "the model name")?;
        Ok(KldHeader {
            n_ctx,
            n_vocab,
            n_chunks,
            top_k,
            text_sha256,
            model_name: String::from_utf8_lossy(&name).into_owned(),
        })
    }

    /// Bytes of one record.
    fn record_len(&self) -> usize {
        12 + if self.top_k == 0 {
            2 * self.n_vocab
        } else {
            6 * self.top_k
        }
    }
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<(), EngineError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            kerr(format!("truncated file (ends in {what})"))
        } else {
            kerr(format!("reading {what}: {e}"))
        }
    })
}

fn read_u32(r: &mut dyn Read, what: &str) -> Result<u32, EngineError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a base file record by record.
pub struct KldWriter {
    header: KldHeader,
    out: Box<dyn Write>,
    buf: Vec<u8>,
    /// Top-K selection scratch.
    idx: Vec<u32>,
}

impl KldWriter {
    /// Writes the header to `out` (`header.n_chunks` must be the chunks the run evaluates).
    pub fn new(header: KldHeader, mut out: Box<dyn Write>) -> Result<KldWriter, EngineError> {
        header
            .write(&mut out)
            .map_err(|e| kerr(format!("writing: {e}")))?;
        Ok(KldWriter {
            buf: Vec::with_capacity(header.record_len()),
            header,
            out,
            idx: Vec::new(),
        })
    }

    fn record(&mut self, lp: &[f64], tok_lp: f64) -> Result<(), EngineError> {
        let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = lp
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(LP_FLOOR);
        let scale = if max > min {
            (max - min) / 65535.0
        } else {
            1.0
        };
        let q = |v: f64| (((v.max(min) - min) / scale).round()).clamp(0.0, 65535.0) as u16;
        self.buf.clear();
        for v in [tok_lp as f32, min as f32, scale as f32] {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        if self.header.top_k == 0 {
            for &v in lp {
                self.buf.extend_from_slice(&q(v).to_le_bytes());
            }
        } else {
            let k = self.header.top_k;
            self.idx.clear();
            self.idx.extend(0..lp.len() as u32);
            let by = |a: &u32, b: &u32| lp[*b as usize].total_cmp(&lp[*a as usize]);
            if k < self.idx.len() {
                self.idx.select_nth_unstable_by(k - 1, by);
            }
            self.idx.truncate(k);
            self.idx.sort_unstable_by(by);
            for &i in &self.idx {
                self.buf.extend_from_slice(&i.to_le_bytes());
                self.buf.extend_from_slice(&q(lp[i as usize]).to_le_bytes());
            }
        }
        self.out
            .write_all(&self.buf)
            .map_err(|e| kerr(format!("writing: {e}")))
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<(), EngineError> {
        self.out.flush().map_err(|e| kerr(format!("writing: {e}")))
    }
}

/// Reads a base file record by record.
pub struct KldReader {
    header: KldHeader,
    input: Box<dyn Read>,
    rec: Vec<u8>,
    /// Dequantized base log-probabilities of the current record (full mode).
    lp: Vec<f64>,
}

impl KldReader {
    pub fn new(mut input: Box<dyn Read>) -> Result<KldReader, EngineError> {
        let header = KldHeader::read(&mut input)?;
        Ok(KldReader {
            rec: vec![0u8; header.record_len()],
            lp: Vec::new(),
            header,
            input,
        })
    }

    pub fn header(&self) -> &KldHeader {
        &self.header
    }

    /// Checks that the file is about the same text, chunking and vocabulary as this run.
    pub fn check(
        &self,
        n_ctx: usize,
        n_vocab: usize,
        text_sha256: &[u8; 32],
        n_chunks: usize,
    ) -> Result<(), EngineError> {
        let h = &self.header;
        let mism = |field: &str, base: String, current: String| EngineError::KldMismatch {
            field: field.to_string(),
            base,
            current,
        };
        if &h.text_sha256 != text_sha256 {
            return Err(mism("text sha256", hex(&h.text_sha256), hex(text_sha256)));
        }
        if h.n_ctx != n_ctx {
            return Err(mism("ctx size", h.n_ctx.to_string(), n_ctx.to_string()));
        }
        if h.n_vocab != n_vocab {
            return Err(mism("n_vocab", h.n_vocab.to_string(), n_vocab.to_string()));
        }
        if n_chunks > h.n_chunks {
            return Err(mism("chunks", h.n_chunks.to_string(), n_chunks.to_string()));
        }
        Ok(())
    }

    fn next_record(&mut self) -> Result<(), EngineError> {
        read_exact(&mut self.input, &mut self.rec, "a token record")
    }

    /// KLD, whether the top tokens agree, and the base's log-probability of the actual token,
    /// for the current model's log-probabilities `lp` of the next record.
    fn compare(&mut self, lp: &[f64]) -> Result<(f64, bool, f64), EngineError> {
        self.next_record()?;
        let tok_lp = f32_at(&self.rec, 0) as f64;
        let min = f32_at(&self.rec, 4) as f64;
        let scale = f32_at(&self.rec, 8) as f64;
        if !(min.is_finite() && scale.is_finite() && scale > 0.0 && tok_lp.is_finite()) {
            return Err(kerr("corrupt record (bad min or scale)"));
        }
        let cur_top = argmax(lp);
        if self.header.top_k == 0 {
            self.lp.clear();
            self.lp.extend(
                self.rec[12..]
                    .chunks_exact(2)
                    .map(|b| min + u16::from_le_bytes([b[0], b[1]]) as f64 * scale),
            );
            // Renormalize: the quantization leaves the sum a little off 1.
            let lse = log_sum_exp(&self.lp);
            let mut kld = 0.0;
            for (&b, &c) in self.lp.iter().zip(lp) {
                let b = b - lse;
                kld += b.exp() * (b - c);
            }
            let base_top = argmax(&self.lp);
            Ok((kld.max(0.0), base_top == cur_top, tok_lp))
        } else {
            // Top K and "the rest" as one more outcome.
            let mut kld = 0.0;
            let (mut pb_in, mut pc_in) = (0.0, 0.0);
            let mut base_top = u32::MAX;
            for (n, r) in self.rec[12..].chunks_exact(6).enumerate() {
                let id = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                let b = min + u16::from_le_bytes([r[4], r[5]]) as f64 * scale;
                let c = *lp
                    .get(id as usize)
                    .ok_or_else(|| kerr(format!("corrupt record (token id {id})")))?;
                if n == 0 {
                    base_top = id;
                }
                pb_in += b.exp();
                pc_in += c.exp();
                kld += b.exp() * (b - c);
            }
            let (pb_out, pc_out) = ((1.0 - pb_in).max(0.0), (1.0 - pc_in).max(1e-300));
            if pb_out > 0.0 {
                kld += pb_out * (pb_out.ln() - pc_out.ln());
            }
            Ok((kld.max(0.0), base_top as usize == cur_top, tok_lp))
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + v.iter().map(|&x| (x - max).exp()).sum::<f64>().ln()
}

/// Log-softmax of one logits row into `out` (f64).
pub fn log_softmax(row: &[f32], out: &mut Vec<f64>) {
    out.clear();
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    out.extend(row.iter().map(|&x| x as f64 - lse));
}

/// Mean and its standard error of a running sum (`n - 1` in the denominator as llama.cpp).
fn mean_err(sum: f64, sum2: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = sum / n as f64;
    let var = sum2 / n as f64 - mean * mean;
    let err = if n > 1 && var > 0.0 {
        (var / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (mean, err)
}

/// The chunks a text of `n_tokens` tokens yields, or the error saying why it is too short.
pub fn n_chunks(n_tokens: usize, p: &PerplexityParams) -> Result<usize, EngineError> {
    if p.n_ctx < 8 {
        return Err(EngineError::PerplexityInput {
            msg: format!("a context of {} tokens is too small (at least 8)", p.n_ctx),
        });
    }
    if n_tokens < 2 * p.n_ctx {
        return Err(EngineError::PerplexityInput {
            msg: format!(
                "the text has {n_tokens} tokens; at least 2 * ctx = {} are needed",
                2 * p.n_ctx
            ),
        });
    }
    let all = n_tokens / p.n_ctx;
    Ok(match p.max_chunks {
        Some(n) if n > 0 => n.min(all),
        _ => all,
    })
}

/// A model seen as `eval(tokens, pos0, logits)`: see [`run`].
pub type EvalFn<'a> = dyn FnMut(&[u32], usize, &mut Vec<f32>) -> Result<(), EngineError> + 'a;

/// The run over a model seen as `eval(tokens, pos0, logits)`, which evaluates `tokens` at
/// positions `pos0..` (`pos0 == 0`: from an empty cache) and writes every row's logits.
pub fn run(
    eval: &mut EvalFn,
    n_vocab: usize,
    tokens: &[u32],
    bos: Option<u32>,
    p: &PerplexityParams,
    mut kl: KlMode,
    progress: &mut dyn FnMut(&ChunkProgress),
) -> Result<PerplexityResult, EngineError> {
    let n_ctx = p.n_ctx;
    let n_chunks = n_chunks(tokens.len(), p)?;
    let batch = p.batch.clamp(1, n_ctx);
    let first = n_ctx / 2;
    let start = std::time::Instant::now();

    let mut logits: Vec<f32> = Vec::new();
    let mut lp: Vec<f64> = Vec::with_capacity(n_vocab);
    let mut chunk: Vec<u32> = Vec::with_capacity(n_ctx);
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    // KLD mode.
    let (mut kld_sum, mut kld2, mut same) = (0.0f64, 0.0f64, 0usize);
    let (mut bnll, mut bnll2) = (0.0f64, 0.0f64);
    let mut klds: Vec<f32> = Vec::new();

    for c in 0..n_chunks {
        chunk.clear();
        chunk.extend_from_slice(&tokens[c * n_ctx..(c + 1) * n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let mut pos = 0;
        while pos < n_ctx {
            let end = (pos + batch).min(n_ctx);
            eval(&chunk[pos..end], pos, &mut logits)?;
            let rows = end - pos;
            if logits.len() != rows * n_vocab {
                return Err(EngineError::Internal {
                    msg: format!(
                        "perplexity: {} logits for {rows} rows of {n_vocab}",
                        logits.len()
                    ),
                });
            }
            for (r, row) in logits.chunks_exact(n_vocab).enumerate() {
                let j = pos + r;
                if j < first || j + 1 >= n_ctx {
                    continue;
                }
                log_softmax(row, &mut lp);
                let next = chunk[j + 1] as usize;
                let v = -lp[next];
                nll += v;
                nll2 += v * v;
                count += 1;
                match &mut kl {
                    KlMode::None => {}
                    KlMode::Save(w) => w.record(&lp, lp[next])?,
                    KlMode::Compare(rd) => {
                        let (k, same_top, base_lp) = rd.compare(&lp)?;
                        kld_sum += k;
                        kld2 += k * k;
                        klds.push(k as f32);
                        same += same_top as usize;
                        bnll -= base_lp;
                        bnll2 += base_lp * base_lp;
                    }
                }
            }
            pos = end;
        }
        progress(&ChunkProgress {
            chunk: c + 1,
            n_chunks,
            ppl: (nll / count as f64).exp(),
            kld: matches!(kl, KlMode::Compare(_)).then(|| kld_sum / count as f64),
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    let (mean_nll, nll_err) = mean_err(nll, nll2, count);
    let ppl = mean_nll.exp();
    let kld = match &kl {
        KlMode::Compare(rd) => {
            let (mean, mean_err_) = mean_err(kld_sum, kld2, count);
            let st = same as f64 / count as f64;
            let st_err = if count > 1 {
                (st * (1.0 - st) / (count - 1) as f64).sqrt()
            } else {
                0.0
            };
            let (bmean, berr) = mean_err(bnll, bnll2, count);
            let base_ppl = bmean.exp();
            klds.sort_unstable_by(|a, b| a.total_cmp(b));
            let pct = |q: f64| {
                let i = ((klds.len() - 1) as f64 * q).round() as usize;
                klds[i] as f64
            };
            Some(KldStats {
                base_model: rd.header.model_name.clone(),
                mean,
                mean_err: mean_err_,
                same_top: st,
                same_top_err: st_err,
                base_ppl,
                base_ppl_err: base_ppl * berr,
                delta_ppl: ppl - base_ppl,
                median: pct(0.5),
                p90: pct(0.9),
                p95: pct(0.95),
                p99: pct(0.99),
                max: pct(1.0),
                top_k: rd.header.top_k,
            })
        }
        _ => None,
    };
    Ok(PerplexityResult {
        n_ctx,
        n_chunks,
        n_scored: count,
        ppl,
        ppl_err: ppl * nll_err,
        nll: mean_nll,
        tokens_per_s: (n_chunks * n_ctx) as f64 / seconds.max(1e-9),
        seconds,
        kld,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A fake model: the logits at position j depend on the token there and on j.
    fn fake_logits(tok: u32, j: usize, n_vocab: usize, skew: f32) -> Vec<f32> {
        (0..n_vocab)
            .map(|v| {
                ((v as f32 * 0.7 + tok as f32 * 1.3 + j as f32 * 0.1).sin()) * 3.0 + skew * v as f32
            })
            .collect()
    }

    fn eval_fn(
        n_vocab: usize,
        skew: f32,
    ) -> impl FnMut(&[u32], usize, &mut Vec<f32>) -> Result<(), EngineError> {
        move |toks, pos0, out| {
            out.clear();
            for (i, &t) in toks.iter().enumerate() {
                out.extend(fake_logits(t, pos0 + i, n_vocab, skew));
            }
            Ok(())
        }
    }

    fn tokens(n: usize, n_vocab: usize) -> Vec<u32> {
        (0..n).map(|i| ((i * 7 + 3) % n_vocab) as u32).collect()
    }

    /// f64 reference straight from the definition.
    fn reference(toks: &[u32], n_ctx: usize, n_vocab: usize, bos: Option<u32>) -> (f64, f64) {
        let n_chunks = toks.len() / n_ctx;
        let mut nlls = Vec::new();
        for c in 0..n_chunks {
            let mut ch = toks[c * n_ctx..(c + 1) * n_ctx].to_vec();
            if let Some(b) = bos {
                ch[0] = b;
            }
            for j in n_ctx / 2..n_ctx - 1 {
                let l: Vec<f64> = fake_logits(ch[j], j, n_vocab, 0.0)
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let z: f64 = l.iter().map(|x| x.exp()).sum();
                nlls.push(-(l[ch[j + 1] as usize].exp() / z).ln());
            }
        }
        let n = nlls.len() as f64;
        let mean = nlls.iter().sum::<f64>() / n;
        let var = nlls.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let ppl = mean.exp();
        (ppl, ppl * (var / (n - 1.0)).sqrt())
    }

    fn params(n_ctx: usize, batch: usize) -> PerplexityParams {
        PerplexityParams {
            n_ctx,
            max_chunks: None,
            batch,
        }
    }

    #[test]
    fn perplexity_matches_f64_reference() {
        let n_vocab = 11;
        let toks = tokens(16 * 3 + 5, n_vocab);
        for bos in [None, Some(1)] {
            for batch in [1, 5, 16] {
                let mut ev = eval_fn(n_vocab, 0.0);
                let r = run(
                    &mut ev,
                    n_vocab,
                    &toks,
                    bos,
                    &params(16, batch),
                    KlMode::None,
                    &mut |_| {},
                )
                .unwrap();
                let (ppl, err) = reference(&toks, 16, n_vocab, bos);
                assert_eq!(r.n_chunks, 3);
                assert_eq!(r.n_scored, 3 * 7);
                assert!((r.ppl - ppl).abs() < 1e-4 * ppl, "{} vs {ppl}", r.ppl);
                assert!(
                    (r.ppl_err - err).abs() < 1e-4 * err.max(1e-9),
                    "{} vs {err}",
                    r.ppl_err
                );
            }
        }
    }

    #[test]
    fn perplexity_bad_inputs() {
        let mut ev = eval_fn(11, 0.0);
        let toks = tokens(31, 11);
        let e = run(
            &mut ev,
            11,
            &toks,
            None,
            &params(16, 4),
            KlMode::None,
            &mut |_| {},
        );
        assert!(matches!(e, Err(EngineError::PerplexityInput { .. })));
        let e = run(
            &mut ev,
            11,
            &toks,
            None,
            &params(4, 4),
            KlMode::None,
            &mut |_| {},
        );
        assert!(e.unwrap_err().to_string().contains("too small"));
    }

    #[test]
    fn log_softmax_matches_reference() {
        let row = [1.0f32, -2.0, 0.5, 30.0, -100.0];
        let mut out = Vec::new();
        log_softmax(&row, &mut out);
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        for (i, &x) in row.iter().enumerate() {
            assert!((out[i] - ((x as f64).exp() / z).ln()).abs() < 1e-9);
        }
    }

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn header(n_vocab: usize, top_k: usize) -> KldHeader {
        KldHeader {
            n_ctx: 16,
            n_vocab,
            n_chunks: 3,
            top_k,
            text_sha256: [7; 32],
            model_name: "fake".into(),
        }
    }

    fn save(n_vocab: usize, top_k: usize, toks: &[u32]) -> Vec<u8> {
        let buf = Shared::default();
        let mut w = KldWriter::new(header(n_vocab, top_k), Box::new(buf.clone())).unwrap();
        let mut ev = eval_fn(n_vocab, 0.0);
        run(
            &mut ev,
            n_vocab,
            toks,
            None,
            &params(16, 8),
            KlMode::Save(&mut w),
            &mut |_| {},
        )
        .unwrap();
        w.finish().unwrap();
        let v = buf.0.lock().unwrap().clone();
        v
    }

    #[test]
    fn kld_self_is_zero_and_against_other_matches_reference() {
        let n_vocab = 11;
        let toks = tokens(16 * 3, n_vocab);
        let file = save(n_vocab, 0, &toks);
        assert_eq!(file.len(), 8 + 20 + 32 + 4 + 4 + 3 * 7 * (12 + 2 * n_vocab));

        let mut rd = KldReader::new(Box::new(std::io::Cursor::new(file.clone()))).unwrap();
        assert_eq!(rd.header(), &header(n_vocab, 0));
        rd.check(16, n_vocab, &[7; 32], 3).unwrap();
        let mut ev = eval_fn(n_vocab, 0.0);
        let r = run(
            &mut ev,
            n_vocab,
            &toks,
            None,
            &params(16, 8),
            KlMode::Compare(&mut rd),
            &mut |_| {},
        )
        .unwrap();
        let k = r.kld.unwrap();
        assert!(k.mean < 1e-6, "{}", k.mean);
        assert_eq!(k.same_top, 1.0);
        assert!((k.base_ppl - r.ppl).abs() < 1e-5 * r.ppl);

        // Another model (skewed logits) against the base: KLD vs the f64 definition.
        let mut expect = Vec::new();
        for c in 0..3 {
            for j in 8..15 {
                let t = toks[c * 16 + j];
                let mut p = Vec::new();
                let mut q = Vec::new();
                log_softmax(&fake_logits(t, j, n_vocab, 0.0), &mut p);
                log_softmax(&fake_logits(t, j, n_vocab, 0.3), &mut q);
                expect.push(
                    p.iter()
                        .zip(&q)
                        .map(|(a, b)| a.exp() * (a - b))
                        .sum::<f64>(),
                );
            }
        }
        let mean = expect.iter().sum::<f64>() / expect.len() as f64;
        let mut rd = KldReader::new(Box::new(std::io::Cursor::new(file))).unwrap();
        let mut ev = eval_fn(n_vocab, 0.3);
        let r = run(
            &mut ev,
            n_vocab,
            &toks,
            None,
            &params(16, 8),
            KlMode::Compare(&mut rd),
            &mut |_| {},
        )
        .unwrap();
        let k = r.kld.unwrap();
        assert!((k.mean - mean).abs() < 1e-3 * mean, "{} vs {mean}", k.mean);
        let max = expect.iter().copied().fold(0.0, f64::max);
        assert!((k.max - max).abs() < 1e-3 * max);
        assert!(k.median <= k.p90 && k.p90 <= k.p99 && k.p99 <= k.max);
    }

    #[test]
    fn kld_top_k_file_is_small_and_close() {
        let n_vocab = 11;
        let toks = tokens(16 * 3, n_vocab);
        let full = save(n_vocab, 0, &toks);
        let top = save(n_vocab, 2, &toks);
        assert!(top.len() < full.len());
        let mut rd = KldReader::new(Box::new(std::io::Cursor::new(top))).unwrap();
        let mut ev = eval_fn(n_vocab, 0.0);
        let r = run(
            &mut ev,
            n_vocab,
            &toks,
            None,
            &params(16, 8),
            KlMode::Compare(&mut rd),
            &mut |_| {},
        )
        .unwrap();
        let k = r.kld.unwrap();
        assert!(k.mean < 1e-6);
        assert_eq!(k.same_top, 1.0);
        assert_eq!(k.top_k, 2);
    }

    #[test]
    fn kld_file_errors() {
        let n_vocab = 11;
        let toks = tokens(16 * 3, n_vocab);
        let file = save(n_vocab, 0, &toks);
        // Garbage.
        let e = KldReader::new(Box::new(std::io::Cursor::new(
            b"hello world, not a file".to_vec(),
        )));
        assert!(e.err().unwrap().to_string().contains("bad magic"));
        // Truncated header.
        let e = KldReader::new(Box::new(std::io::Cursor::new(file[..20].to_vec())));
        assert!(e.err().unwrap().to_string().contains("truncated"));
        // Truncated records.
        let mut rd = KldReader::new(Box::new(std::io::Cursor::new(
            file[..file.len() - 10].to_vec(),
        )))
        .unwrap();
        let mut ev = eval_fn(n_vocab, 0.0);
        let e = run(
            &mut ev,
            n_vocab,
            &toks,
            None,
            &params(16, 8),
            KlMode::Compare(&mut rd),
            &mut |_| {},
        );
        assert!(e.unwrap_err().to_string().contains("truncated"));
        // Header mismatches name the field.
        let rd = KldReader::new(Box::new(std::io::Cursor::new(file))).unwrap();
        let e = rd.check(16, n_vocab, &[8; 32], 3).unwrap_err().to_string();
        assert!(e.contains("text sha256"), "{e}");
        let e = rd.check(32, n_vocab, &[7; 32], 3).unwrap_err().to_string();
        assert!(e.contains("ctx size"), "{e}");
        let e = rd.check(16, 12, &[7; 32], 3).unwrap_err().to_string();
        assert!(e.contains("n_vocab"), "{e}");
    }
}
