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
    /// Prompt tokens for the pp test (0 = skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens for the tg test (0 = skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Repetitions (after one warm-up run).
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Print a JSON list instead of a table.
    #[arg(long)]
    pub json: bool,
    /// KV cache element type (llama-bench's `-ctk/-ctv`; default f16 as there).
    #[arg(long = "kv-type", value_enum, default_value_t = crate::generate::KvTypeArg::F16)]
    pub kv_type: crate::generate::KvTypeArg,
    /// Batched mode (llama-batched-bench): for each B in the list, B sequences read a prompt
    /// of `-p` tokens each, then decode `-n` tokens each, all B in every forward pass.
    #[arg(long, value_delimiter = ',')]
    pub parallel: Vec<usize>,
}

/// One row of the results, in llama-bench's JSON vocabulary.
#[derive(Serialize, Debug)]
pub struct BenchResult {
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_threads: usize,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
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
    if !a.parallel.is_empty() {
        return batched(a, &path);
    }
    let need = a.n_prompt.max(a.n_gen).max(1);
    let mut eng = crate::generate::load_engine(&path, a.threads, Some(need), a.kv_type)?;
    let threads = kernels::num_threads();
    let tokens = bench_tokens(need, eng.n_vocab());

    let mut results = Vec::new();
    // pp: one batched forward of n_prompt tokens on an empty cache.
    if a.n_prompt > 0 {
        let mut samples = Vec::with_capacity(a.repetitions);
        for rep in 0..=a.repetitions {
            eng.reset();
            let t = Instant::now();
            eng.eval(&tokens[..a.n_prompt], 0)?;
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(a.n_prompt as f64 / s);
            }
        }
        results.push(result(
            format!("pp{}", a.n_prompt),
            a.n_prompt,
            0,
            threads,
            samples,
        ));
    }
    // tg: n_gen single-token steps from an empty cache.
    if a.n_gen > 0 {
        let mut samples = Vec::with_capacity(a.repetitions);
        for rep in 0..=a.repetitions {
            eng.reset();
            let t = Instant::now();
            for (pos, &tok) in tokens[..a.n_gen].iter().enumerate() {
                eng.eval(&[tok], pos)?;
            }
            let s = t.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(a.n_gen as f64 / s);
            }
        }
        results.push(result(
            format!("tg{}", a.n_gen),
            0,
            a.n_gen,
            threads,
            samples,
        ));
    }

    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &results)?;
        writeln!(out)?;
        return Ok(());
    }
    let file = eng.gguf();
    let arch = file.architecture().unwrap_or("?");
    let params: u64 = file.tensors.iter().map(|t| t.n_elements()).sum();
    let bytes: u64 = file.tensors.iter().map(|t| t.size).sum();
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    writeln!(
        out,
        "| model | arch | size | params | threads | test | t/s |"
    )?;
    writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: |")?;
    for r in &results {
        writeln!(
            out,
            "| {name} | {arch} | {:.2} MiB | {:.2} M | {} | {} | {:.2} ± {:.2} |",
            bytes as f64 / (1 << 20) as f64,
            params as f64 / 1e6,
            r.n_threads,
            r.test,
            r.avg_ts,
            r.stddev_ts
        )?;
    }
    writeln!(out, "\ncpu: {}", kernels::cpu::describe(threads))?;
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
    if let Some(t) = a.threads {
        kernels::set_num_threads(t);
    }
    if a.parallel.contains(&0) || a.parallel.iter().any(|&b| b > 256) {
        bail!("--parallel: each B must be in 1..=256");
    }
    let m = Model::load(path)?;
    let n_vocab = m.info().vocab;
    let n_ctx = (a.n_prompt + a.n_gen).max(1);
    let tokens = bench_tokens(a.n_prompt + a.n_gen, n_vocab);
    let mut rows = Vec::new();
    let mut logits = Vec::new();
    let mut batch = Batch::new();
    for &b in &a.parallel {
        let mut cache = m.new_cache_typed(b, n_ctx, a.kv_type.into())?;
        let (mut pps, mut tgs, mut tpp, mut ttg) = (Vec::new(), Vec::new(), 0.0, 0.0);
        for rep in 0..=a.repetitions {
            for s in 0..b {
                cache.truncate(s, 0)?;
            }
            // Prompts: sequence s reads tokens shifted by s so that no two are alike.
            let t0 = Instant::now();
            let mut pending: Vec<(u32, u32, usize)> = (0..b)
                .flat_map(|s| (0..a.n_prompt).map(move |i| (i as u32, s as u32, s)))
                .collect();
            pending.reverse();
            while !pending.is_empty() {
                batch.clear();
                while batch.len() < MAX_BATCH {
                    let Some((i, shift, s)) = pending.pop() else {
                        break;
                    };
                    let tok = tokens[(i as usize + shift as usize) % tokens.len()];
                    let last = i as usize + 1 == a.n_prompt;
                    batch.push(tok, i, s, last);
                }
                m.forward(&batch, &mut cache, &mut logits)?;
            }
            let t_pp = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            for step in 0..a.n_gen {
                batch.clear();
                for s in 0..b {
                    let tok = tokens[(a.n_prompt + step + s) % tokens.len()];
                    batch.push(tok, (a.n_prompt + step) as u32, s, true);
                }
                m.forward(&batch, &mut cache, &mut logits)?;
            }
            let t_tg = t1.elapsed().as_secs_f64();
            if rep > 0 {
                if a.n_prompt > 0 {
                    pps.push((b * a.n_prompt) as f64 / t_pp);
                }
                if a.n_gen > 0 {
                    tgs.push((b * a.n_gen) as f64 / t_tg);
                }
                tpp += t_pp / a.repetitions as f64;
                ttg += t_tg / a.repetitions as f64;
            }
        }
        let (spp, spp_std) = mean_std(&pps);
        let (stg, stg_std) = mean_std(&tgs);
        let t = tpp + ttg;
        rows.push(BatchedResult {
            pp: a.n_prompt,
            tg: a.n_gen,
            b,
            n_kv: b * (a.n_prompt + a.n_gen),
            t_pp: tpp,
            speed_pp: spp,
            speed_pp_std: spp_std,
            t_tg: ttg,
            speed_tg: stg,
            speed_tg_std: stg_std,
            t,
            speed: if t > 0.0 {
                (b * (a.n_prompt + a.n_gen)) as f64 / t
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
        engine::KvType::from(a.kv_type),
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

fn result(
    test: String,
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    samples: Vec<f64>,
) -> BenchResult {
    let (avg_ts, stddev_ts) = mean_std(&samples);
    BenchResult {
        test,
        n_prompt,
        n_gen,
        n_threads,
        avg_ts,
        stddev_ts,
        samples_ts: samples,
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
