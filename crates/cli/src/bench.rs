//! `lume bench`: prompt processing (pp) and token generation (tg) speed, like llama-bench.

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
