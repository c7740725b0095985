//! `lume perplexity`: PPL of a text in chunks (llama-perplexity's method), and KL divergence
//! against a base model's stored log-probabilities (`--kl-divergence-base`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::perplexity::{KlMode, KldHeader, KldReader, KldWriter, PerplexityParams};
use engine::{Engine, EngineOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::ModelArg;

#[derive(Args, Clone, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text file to measure.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per chunk (each chunk is evaluated from an empty cache; its second half is scored).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Most chunks to evaluate (default: all the text holds).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Tokens per forward pass.
    #[arg(short = 'b', long, default_value_t = 512)]
    pub batch: usize,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Without --kl-divergence: save this model's log-probabilities to FILE (the base). With
    /// it: the base file to compare with.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_base: Option<PathBuf>,
    /// Compare this model with the base file of --kl-divergence-base.
    #[arg(long = "kl-divergence")]
    pub kl_divergence: bool,
    /// Save only the K most likely tokens per position (a small base file; KLD then counts
    /// the rest of the vocabulary as one outcome).
    #[arg(long = "kl-divergence-top-k", value_name = "K")]
    pub kl_top_k: Option<usize>,
}

pub fn run(a: &PerplexityArgs) -> Result<()> {
    if a.ctx_size < 8 {
        bail!("--ctx-size {}: at least 8 tokens", a.ctx_size);
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.kl_divergence && a.kl_base.is_none() {
        bail!("--kl-divergence needs --kl-divergence-base FILE (made by a run without --kl-divergence)");
    }
    if a.kl_top_k.is_some() && (a.kl_divergence || a.kl_base.is_none()) {
        bail!("--kl-divergence-top-k applies when saving a base file (--kl-divergence-base without --kl-divergence)");
    }
    let text = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let text_sha: [u8; 32] = Sha256::digest(&text).into();
    let text = String::from_utf8_lossy(&text);
    let path = a.model.path()?;
    let mut eng = Engine::load(
        &path,
        EngineOptions {
            threads: a.threads,
            n_ctx: a.ctx_size,
            batch: a.batch,
            ..Default::default()
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    let tokens = eng.tokenize(&text, true, false);
    let params = PerplexityParams {
        n_ctx: a.ctx_size,
        max_chunks: a.chunks,
        batch: a.batch.min(a.ctx_size),
    };
    let n_chunks = engine::perplexity::n_chunks(tokens.len(), &params)?;
    let model_name = eng.info().name.clone().unwrap_or_else(|| {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    });
    let n_vocab = eng.n_vocab();

    let mut writer = None;
    let mut reader = None;
    match (&a.kl_base, a.kl_divergence) {
        (Some(f), false) => {
            let top_k = a.kl_top_k.unwrap_or(0);
            if top_k > n_vocab {
                bail!("--kl-divergence-top-k {top_k}: the vocabulary has {n_vocab} tokens");
            }
            let out =
                std::fs::File::create(f).with_context(|| format!("creating {}", f.display()))?;
            let header = KldHeader {
                n_ctx: a.ctx_size,
                n_vocab,
                n_chunks,
                top_k,
                text_sha256: text_sha,
                model_name: model_name.clone(),
            };
            writer = Some(
                KldWriter::new(header, Box::new(std::io::BufWriter::new(out)))
                    .with_context(|| f.display().to_string())?,
            );
        }
        (Some(f), true) => {
            let inp = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
            let rd = KldReader::new(Box::new(std::io::BufReader::new(inp)))
                .with_context(|| f.display().to_string())?;
            rd.check(a.ctx_size, n_vocab, &text_sha, n_chunks)
                .with_context(|| f.display().to_string())?;
            reader = Some(rd);
        }
        _ => {}
    }
    let kl = match (&mut writer, &mut reader) {
        (Some(w), _) => KlMode::Save(w),
        (_, Some(r)) => KlMode::Compare(r),
        _ => KlMode::None,
    };

    eprintln!(
        "perplexity: {} tokens, {n_chunks} chunks of {} ({} scored per chunk), batch {}",
        tokens.len(),
        a.ctx_size,
        a.ctx_size - 1 - a.ctx_size / 2,
        params.batch
    );
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(n_chunks as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} chunks {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let r = eng
        .perplexity(&tokens, &params, kl, &mut |p| {
            bar.set_position(p.chunk as u64);
            match p.kld {
                Some(k) => bar.set_message(format!("PPL {:.4} KLD {:.6}", p.ppl, k)),
                None => bar.set_message(format!("PPL {:.4}", p.ppl)),
            }
        })
        .with_context(|| a.file.display().to_string())?;
    bar.finish_and_clear();
    if let Some(w) = writer {
        w.finish()?;
    }

    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "chunks {}, ctx {}, {} tokens scored, {:.1} tokens/s ({:.1} s)",
        r.n_chunks, r.n_ctx, r.n_scored, r.tokens_per_s, r.seconds
    )?;
    if let Some(f) = &a.kl_base {
        if !a.kl_divergence {
            writeln!(out, "saved base log-probabilities to {}", f.display())?;
        }
    }
    match &r.kld {
        None => writeln!(out, "PPL = {:.4} +/- {:.5}", r.ppl, r.ppl_err)?,
        Some(k) => {
            writeln!(out, "====== Perplexity statistics ======")?;
            writeln!(out, "PPL(Q)          : {:.6} +/- {:.6}", r.ppl, r.ppl_err)?;
            writeln!(
                out,
                "PPL(base)       : {:.6} +/- {:.6}  ({})",
                k.base_ppl, k.base_ppl_err, k.base_model
            )?;
            writeln!(out, "PPL(Q)-PPL(base): {:.6}", k.delta_ppl)?;
            writeln!(out, "====== KL divergence statistics ======")?;
            if k.top_k > 0 {
                writeln!(
                    out,
                    "(base file holds the top {} tokens; the rest counts as one outcome)",
                    k.top_k
                )?;
            }
            writeln!(out, "Mean    KLD: {:.6} +/- {:.6}", k.mean, k.mean_err)?;
            writeln!(out, "Maximum KLD: {:.6}", k.max)?;
            writeln!(out, "99.0%   KLD: {:.6}", k.p99)?;
            writeln!(out, "95.0%   KLD: {:.6}", k.p95)?;
            writeln!(out, "90.0%   KLD: {:.6}", k.p90)?;
            writeln!(out, "Median  KLD: {:.6}", k.median)?;
            writeln!(
                out,
                "Same top p: {:.3} +/- {:.3} %",
                100.0 * k.same_top,
                100.0 * k.same_top_err
            )?;
        }
    }
    Ok(())
}
