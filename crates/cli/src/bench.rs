//! `lume bench`: prompt processing (pp) and token generation (tg) speed, like llama-bench.

use anyhow::{bail, Result};
use clap::Args;

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
}

pub fn run(_args: &BenchArgs) -> Result<()> {
    bail!("`lume bench` is not available yet")
}
