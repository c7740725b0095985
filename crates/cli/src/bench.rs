//! `lume bench`: prompt processing (pp) and token generation (tg) speed, like llama-bench;
//! with `--parallel 1,2,4,8`, B sequences at once, like llama-batched-bench.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use crate::ModelArg;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Prompt tokens for the pp test, a list like llama-bench's (`-p 512,4096`; 0 = skip).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generated tokens for the tg test, a list (`-n 128`; 0 = skip).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Tokens already in the cache when each test starts, a list (`-d 0,4096,16384`: llama-bench's
    /// `n_depth`). The depth is filled once per (threads, kv type, depth), untimed.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Worker threads, a list (`-t 1,2`; default: all cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Repetitions (after one warm-up run).
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Print a JSON list instead of a table.
    #[arg(long)]
    pub json: bool,
    /// KV cache element type, a list (llama-bench's `-ctk/-ctv`; default f16 as there).
    #[arg(
        long = "kv-type",
        value_enum,
        value_delimiter = ',',
        default_value = "f16"
    )]
    pub kv_type: Vec<crate::generate::KvTypeArg>,
    /// Batched mode (llama-batched-bench): for each B in the list, B sequences read a prompt
    /// of `-p` tokens each, then decode `-n` tokens each, all B in every forward pass.
    #[arg(long, value_delimiter = ',')]
    pub parallel: Vec<usize>,
    /// Encoders (an embedding model, e.g. minilm-l6): sentences per forward call.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub embed_batch: Vec<usize>,
}

/// The texts of the encoder benchmark: a short sentence, and a long passage that fills the
/// model's input (truncated at its max length, 256 tokens for MiniLM). The same texts are in
/// `scripts/bench_sentence_transformers.py`.
pub const EMBED_SHORT: &str = "The quick brown fox jumps over the lazy dog near the river bank.";

impl BenchArgs {
    /// The one value of a list flag in the modes that take one (`--parallel`, encoders).
    fn one<T: Copy>(list: &[T], flag: &str, default: T) -> Result<T> {
        match list {
            [] => Ok(default),
            [v] => Ok(*v),
            _ => bail!(
                "{flag}: a list applies to the pp/tg tests; --parallel and encoders take one value"
            ),
        }
    }

    fn threads_one(&self) -> Result<Option<usize>> {
        Ok(match self.threads.as_slice() {
            [] => None,
            _ => Some(Self::one(&self.threads, "-t/--threads", 0)?),
        })
    }
}

fn embed_long() -> String {
    EMBED_SHORT.repeat(40)
}

/// Encoders: sentences/s (texts tokenized, embedded, pooled and normalised) for each batch
/// size and input length, mean ± std over the repetitions.
fn encoder(a: &BenchArgs, path: &std::path::Path) -> Result<()> {
    use engine::embeddings::EmbeddingModel;
    if let Some(t) = a.threads_one()? {
        kernels::set_num_threads(t);
    }
    if a.embed_batch.iter().any(|&b| b == 0 || b > 4096) {
        bail!("--embed-batch: each size must be in 1..=4096");
    }
    let m = EmbeddingModel::load(path)?;
    let threads = kernels::num_threads();
    let long = embed_long();
    let mut results = Vec::new();
    let mut out_vecs = Vec::new();
    for (label, text) in [("short", EMBED_SHORT), ("long", long.as_str())] {
        let n_tok = m.encode(text).len();
        for &b in &a.embed_batch {
            let texts: Vec<&str> = vec![text; b];
            let mut samples = Vec::with_capacity(a.repetitions);
            for rep in 0..=a.repetitions {
                let t = Instant::now();
                let ids: Vec<Vec<u32>> = texts.iter().map(|t| m.encode(t)).collect();
                let seqs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
                m.embed(&seqs, &mut out_vecs)?;
                let s = t.elapsed().as_secs_f64();
                if rep > 0 {
                    samples.push(s);
                }
            }
            // Rates in sentences per second (`n_prompt`: tokens per sentence, `n_gen`: batch).
            results.push(result_units(
                format!("embed {label} ({n_tok} tokens) x{b}"),
                n_tok,
                b,
                threads,
                b as f64,
                samples,
            ));
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        return write_json(&mut out, &results);
    }
    writeln!(out, "| model | dim | threads | test | sentences/s |")?;
    writeln!(out, "| --- | ---: | ---: | --- | ---: |")?;
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    for r in &results {
        writeln!(
            out,
            "| {name} | {} | {} | {} | {:.2} ± {:.2} |",
            m.dim(),
            r.n_threads,
            r.test,
            r.avg_ts,
            r.stddev_ts
        )?;
    }
    writeln!(out, "\ncpu: {}", kernels::cpu::describe(threads))?;
    Ok(())
}

/// One row of the results, in llama-bench's JSON vocabulary (`avg_ts`, `samples_ns`, …; `test`
/// is lume's extra: the row's name, e.g. `pp512 @ d4096`).
#[derive(Serialize, Debug, Default)]
pub struct BenchResult {
    pub test: String,
    pub model_filename: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub cpu_info: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub n_threads: usize,
    pub type_k: &'static str,
    pub type_v: &'static str,
    pub avg_ns: u64,
    pub stddev_ns: u64,
    pub samples_ns: Vec<u64>,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
}

/// `--json`: the rows as one pretty-printed JSON list.
fn write_json(out: &mut impl Write, results: &[BenchResult]) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, results)?;
    writeln!(out)?;
    Ok(())
}

/// Mean and sample standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Deterministic token ids for the benchmark (no tokenization involved).
fn bench_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % n_vocab.max(1)) as u32)
        .collect()
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.repetitions == 0 {
        bail!("-r/--repetitions must be at least 1");
    }
    let path = a.model.path()?;
    if engine::embeddings::is_encoder(&path)? {
        return encoder(a, &path);
    }
    if !a.parallel.is_empty() {
        return batched(a, &path);
    }
    for (list, flag) in [(&a.n_prompt, "-p"), (&a.n_gen, "-n"), (&a.n_depth, "-d")] {
        if list.is_empty() {
            bail!("{flag}: give at least one value");
        }
    }
    let max_depth = a.n_depth.iter().copied().max().unwrap_or(0);
    let max_test = a
        .n_prompt
        .iter()
        .chain(&a.n_gen)
        .copied()
        .max()
        .unwrap_or(0);
    let need = max_depth
        .checked_add(max_test)
        .ok_or_else(|| anyhow::anyhow!("-d plus -p/-n overflows"))?
        .max(1);
    let thread_list: Vec<Option<usize>> = if a.threads.is_empty() {
        vec![None]
    } else {
        a.threads.iter().map(|&t| Some(t)).collect()
    };
    let mut results = Vec::new();
    let mut eng = None;
    for &kv in &a.kv_type {
        // One engine per KV type (the cache is allocated at load), reused across thread counts.
        let e = crate::generate::load_engine(&path, thread_list[0], Some(need), kv)?;
        let tokens = bench_tokens(need, e.n_vocab());
        let e = eng.insert(e);
        let kv_name = engine::KvType::from(kv).name();
        for &t in &thread_list {
            if let Some(t) = t {
                kernels::set_num_threads(t);
            }
            let threads = kernels::num_threads();
            let cpu = kernels::cpu::describe(threads);
            for &d in &a.n_depth {
                // The depth: filled once, untimed; `eval` at position d truncates back to it.
                e.reset();
                if d > 0 {
                    e.eval(&tokens[..d], 0)?;
                }
                let at = |name: String| {
                    if d > 0 {
                        format!("{name} @ d{d}")
                    } else {
                        name
                    }
                };
                // pp: one batched forward of p tokens after the depth.
                for &p in a.n_prompt.iter().filter(|&&p| p > 0) {
                    let mut samples = Vec::with_capacity(a.repetitions);
                    for rep in 0..=a.repetitions {
                        refill(e, &tokens[..d])?;
                        let t0 = Instant::now();
                        e.eval(&tokens[d..d + p], d)?;
                        let s = t0.elapsed().as_secs_f64();
                        if rep > 0 {
                            samples.push(s);
                        }
                    }
                    let mut r = result(at(format!("pp{p}")), p, 0, threads, samples);
                    r.n_depth = d;
                    r.type_k = kv_name;
                    r.type_v = kv_name;
                    r.cpu_info = cpu.clone();
                    results.push(r);
                }
                // tg: n single-token steps after the depth.
                for &n in a.n_gen.iter().filter(|&&n| n > 0) {
                    let mut samples = Vec::with_capacity(a.repetitions);
                    for rep in 0..=a.repetitions {
                        refill(e, &tokens[..d])?;
                        let t0 = Instant::now();
                        for (i, &tok) in tokens[d..d + n].iter().enumerate() {
                            e.eval(&[tok], d + i)?;
                        }
                        let s = t0.elapsed().as_secs_f64();
                        if rep > 0 {
                            samples.push(s);
                        }
                    }
                    let mut r = result(at(format!("tg{n}")), 0, n, threads, samples);
                    r.n_depth = d;
                    r.type_k = kv_name;
                    r.type_v = kv_name;
                    r.cpu_info = cpu.clone();
                    results.push(r);
                }
            }
        }
    }
    let eng = eng.expect("at least one --kv-type (clap default)");
    let file = eng.gguf();
    let params: u64 = file.tensors.iter().map(|t| t.n_elements()).sum();
    let bytes: u64 = file.tensors.iter().map(|t| t.size).sum();
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let cpu = kernels::cpu::describe(kernels::num_threads());
    for r in &mut results {
        r.model_filename = name.clone();
        r.model_size = bytes;
        r.model_n_params = params;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        return write_json(&mut out, &results);
    }
    let arch = file.architecture().unwrap_or("?");
    writeln!(
        out,
        "| model | arch | size | params | threads | kv | test | t/s |"
    )?;
    writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"
    )?;
    for r in &results {
        writeln!(
            out,
            "| {name} | {arch} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} |",
            bytes as f64 / (1 << 20) as f64,
            params as f64 / 1e6,
            r.n_threads,
            r.type_k,
            r.test,
            r.avg_ts,
            r.stddev_ts
        )?;
    }
    writeln!(out, "\ncpu: {cpu}")?;
    Ok(())
}

/// Before a timed test at depth `depth.len()`: when the cache cannot go back there (a
/// sliding-window ring overwrote what the test needs), empties it and evaluates the depth
/// again (untimed).
fn refill(e: &mut engine::Engine, depth: &[u32]) -> Result<()> {
    if !e.can_rewind(depth.len()) {
        e.reset();
        if !depth.is_empty() {
            e.eval(depth, 0)?;
        }
    }
    Ok(())
}

/// One row of the batched mode, in llama-batched-bench's columns (times in seconds).
#[derive(Serialize, Debug)]
pub struct BatchedResult {
    pub pp: usize,
    pub tg: usize,
    pub b: usize,
    pub n_kv: usize,
    pub t_pp: f64,
    pub speed_pp: f64,
    pub speed_pp_std: f64,
    pub t_tg: f64,
    pub speed_tg: f64,
    pub speed_tg_std: f64,
    pub t: f64,
    pub speed: f64,
}

/// `--parallel`: the model straight, no sampling (as llama-batched-bench): per B, a fresh cache
/// of B slots; the B prompts go in batches of up to `MAX_BATCH` tokens (several sequences per
/// batch), then `-n` steps of B tokens.
fn batched(a: &BenchArgs, path: &std::path::Path) -> Result<()> {
    use model::{Batch, Model, MAX_BATCH};
    let n_prompt = BenchArgs::one(&a.n_prompt, "-p/--n-prompt", 512)?;
    let n_gen = BenchArgs::one(&a.n_gen, "-n/--n-gen", 128)?;
    let kv_type = BenchArgs::one(&a.kv_type, "--kv-type", crate::generate::KvTypeArg::F16)?;
    if BenchArgs::one(&a.n_depth, "-d/--n-depth", 0)? != 0 {
        bail!("-d/--n-depth applies to the pp/tg tests, not --parallel");
    }
    if let Some(t) = a.threads_one()? {
        kernels::set_num_threads(t);
    }
    if a.parallel.contains(&0) || a.parallel.iter().any(|&b| b > 256) {
        bail!("--parallel: each B must be in 1..=256");
    }
    let m = Model::load(path)?;
    let n_vocab = m.info().vocab;
    let n_ctx = (n_prompt + n_gen).max(1);
    let tokens = bench_tokens(n_prompt + n_gen, n_vocab);
    let mut rows = Vec::new();
    let mut logits = Vec::new();
    let mut batch = Batch::new();
    for &b in &a.parallel {
        let mut cache = m.new_cache_typed(b, n_ctx, kv_type.into())?;
        let (mut pps, mut tgs, mut tpp, mut ttg) = (Vec::new(), Vec::new(), 0.0, 0.0);
        for rep in 0..=a.repetitions {
            for s in 0..b {
                cache.truncate(s, 0)?;
            }
            // Prompts: sequence s reads tokens shifted by s so that no two are alike.
            let t0 = Instant::now();
            let mut pending: Vec<(u32, u32, usize)> = (0..b)
                .flat_map(|s| (0..n_prompt).map(move |i| (i as u32, s as u32, s)))
                .collect();
            pending.reverse();
            while !pending.is_empty() {
                batch.clear();
                while batch.len() < MAX_BATCH {
                    let Some((i, shift, s)) = pending.pop() else {
                        break;
                    };
                    let tok = tokens[(i as usize + shift as usize) % tokens.len()];
                    let last = i as usize + 1 == n_prompt;
                    batch.push(tok, i, s, last);
                }
                m.forward(&batch, &mut cache, &mut logits)?;
            }
            let t_pp = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            for step in 0..n_gen {
                batch.clear();
                for s in 0..b {
                    let tok = tokens[(n_prompt + step + s) % tokens.len()];
                    batch.push(tok, (n_prompt + step) as u32, s, true);
                }
                m.forward(&batch, &mut cache, &mut logits)?;
            }
            let t_tg = t1.elapsed().as_secs_f64();
            if rep > 0 {
                if n_prompt > 0 {
                    pps.push((b * n_prompt) as f64 / t_pp);
                }
                if n_gen > 0 {
                    tgs.push((b * n_gen) as f64 / t_tg);
                }
                tpp += t_pp / a.repetitions as f64;
                ttg += t_tg / a.repetitions as f64;
            }
        }
        let (spp, spp_std) = mean_std(&pps);
        let (stg, stg_std) = mean_std(&tgs);
        let t = tpp + ttg;
        rows.push(BatchedResult {
            pp: n_prompt,
            tg: n_gen,
            b,
            n_kv: b * (n_prompt + n_gen),
            t_pp: tpp,
            speed_pp: spp,
            speed_pp_std: spp_std,
            t_tg: ttg,
            speed_tg: stg,
            speed_tg_std: stg_std,
            t,
            speed: if t > 0.0 {
                (b * (n_prompt + n_gen)) as f64 / t
            } else {
                0.0
            },
        });
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "cpu: {}",
        kernels::cpu::describe(kernels::num_threads())
    )?;
    writeln!(
        out,
        "kv: {:?}, batch invariant: {}",
        engine::KvType::from(kv_type),
        kernels::batch_invariant()
    )?;
    writeln!(out, "|    PP |     TG |    B |   N_KV |   T_PP s |        S_PP t/s |   T_TG s |        S_TG t/s |      T s |    S t/s |")?;
    writeln!(out, "|-------|--------|------|--------|----------|-----------------|----------|-----------------|----------|----------|")?;
    for r in &rows {
        writeln!(
            out,
            "| {:5} | {:6} | {:4} | {:6} | {:8.3} | {:8.2} ± {:5.2} | {:8.3} | {:8.2} ± {:5.2} | {:8.3} | {:8.2} |",
            r.pp, r.tg, r.b, r.n_kv, r.t_pp, r.speed_pp, r.speed_pp_std, r.t_tg, r.speed_tg,
            r.speed_tg_std, r.t, r.speed
        )?;
    }
    Ok(())
}

/// A row from the seconds of each repetition; `units` tokens (or sentences) per repetition.
fn result(
    test: String,
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    seconds: Vec<f64>,
) -> BenchResult {
    let units = (n_prompt + n_gen).max(1) as f64;
    result_units(test, n_prompt, n_gen, n_threads, units, seconds)
}

fn result_units(
    test: String,
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    units: f64,
    seconds: Vec<f64>,
) -> BenchResult {
    let rates: Vec<f64> = seconds.iter().map(|s| units / s).collect();
    let ns: Vec<f64> = seconds.iter().map(|s| s * 1e9).collect();
    let (avg_ts, stddev_ts) = mean_std(&rates);
    let (avg_ns, stddev_ns) = mean_std(&ns);
    BenchResult {
        test,
        n_prompt,
        n_gen,
        n_threads,
        avg_ns: avg_ns as u64,
        stddev_ns: stddev_ns as u64,
        samples_ns: ns.iter().map(|&v| v as u64).collect(),
        avg_ts,
        stddev_ts,
        samples_ts: rates,
        type_k: "f16",
        type_v: "f16",
        ..BenchResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m - 5.0).abs() < 1e-12);
        assert!((s - 2.138089935299395).abs() < 1e-12);
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
    }
}
