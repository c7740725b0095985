//! `lume run` and `lume chat`.

use anyhow::{bail, Result};
use clap::Args;

use crate::ModelArg;

/// Sampling flags shared by `run` and `chat`.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for tokens seen in the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtracted per previous occurrence of a token (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Subtracted once for a token that occurred (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Model and machine flags shared by `run` and `chat`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx: Option<usize>,
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The prompt (read from stdin when absent and --prompt-ids is not given).
    pub prompt: Option<String>,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the output contains this text (not printed); repeatable.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Treat PROMPT as a user message: render the chat template, answer as the assistant.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long)]
    pub system: Option<String>,
    /// Evaluate these token ids (comma-separated) instead of a text prompt.
    #[arg(long, value_name = "1,2,3", conflicts_with_all = ["prompt", "chat"])]
    pub prompt_ids: Option<String>,
    /// Include the prompt in the output (with --logprobs: score every prompt position).
    #[arg(long)]
    pub echo: bool,
    /// Report the N most likely tokens at every position.
    #[arg(long, value_name = "N")]
    pub logprobs: Option<usize>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 1024)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(_args: &RunArgs) -> Result<()> {
    bail!("`lume run` is not available yet")
}

pub fn chat(_args: &ChatArgs) -> Result<()> {
    bail!("`lume chat` is not available yet")
}
