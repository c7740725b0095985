//! # lume: the command-line front end
//!
//! Map of the binary:
//! - `main.rs`: the argument structs (clap derive) and dispatch; errors are printed on one line
//!   (`error: context: cause`) with a non-zero exit status, never a panic or backtrace.
//! - [`inspect`]: `lume inspect` (metadata and tensor table).
//! - [`generate`]: `lume run` (text, chat, machine-readable `--json` modes), and the loading and
//!   sampling flags shared with `lume chat`.
//! - [`chat`]: `lume chat`, a REPL (rustyline line editing and history on a terminal, plain
//!   lines on piped stdin; `/set`, `/system`, `/save`, `/load`, ...; Ctrl-C stops a reply).
//! - [`tokenize`]: `lume tokenize`.
//! - [`embed`]: `lume embed` (sentence embeddings, JSON or one vector per line).
//! - [`rerank`]: `lume rerank` (cross-encoder relevance scores, JSON).
//! - [`mod@bench`]: `lume bench` (prompt processing and generation speed, llama-bench style).
//! - [`perplexity`]: `lume perplexity` (PPL and KL divergence of a text, llama-perplexity's method).
//! - [`quantize`]: `lume quantize` (requantize a GGUF file with llama-quantize's type choice).
//! - [`encode_prompt`]: `lume encode-prompt` (CLIP text encoders of a diffusion pipeline).
//! - [`serve`]: `lume serve` (the OpenAI-compatible HTTP server of the `server` crate).
//! - [`template`]: `--chat-template`, `--chat-template-file`, `--chat-template-kwargs` (run,
//!   chat, serve).
//! - `lume pull` lives here: it is a loop over `hub`.

#![forbid(unsafe_code)]

mod bench;
mod chat;
mod constrain;
mod embed;
mod encode_prompt;
mod generate;
mod inspect;
mod perplexity;
mod quantize;
mod rerank;
mod serve;
mod template;
mod tokenize;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lume",
    version,
    about = "lume: a fast local LLM engine (GGUF models on CPU)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt (pulls the model first when needed).
    Run(generate::RunArgs),
    /// Interactive multi-turn chat (a REPL on a terminal; one message per line when piped).
    Chat(chat::ChatArgs),
    /// Show a GGUF file's metadata and tensors.
    Inspect(ModelArg),
    /// Show the token ids and pieces of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Sentence embeddings of texts (arguments or stdin lines).
    Embed(embed::EmbedArgs),
    /// Relevance scores of documents for a query (a cross-encoder reranker).
    Rerank(rerank::RerankArgs),
    /// Download catalogue models into the cache.
    Pull(PullArgs),
    /// Measure prompt-processing and generation speed.
    Bench(bench::BenchArgs),
    /// Perplexity of a text file (llama-perplexity's method) and KL divergence against a base.
    Perplexity(perplexity::PerplexityArgs),
    /// Quantize a GGUF file to a type or mix (Q4_K_M, Q8_0, IQ4_XS, ...), as llama-quantize does.
    Quantize(quantize::QuantizeArgs),
    /// Serve models over an OpenAI-compatible HTTP API (one with -m, else several by name).
    Serve(serve::ServeArgs),
    // The help text is EncodePromptArgs' doc comment (it lists the tensor names).
    EncodePrompt(encode_prompt::EncodePromptArgs),
}

/// `-m/--model`: a GGUF path or a catalogue name.
#[derive(Args, Clone, Debug)]
pub struct ModelArg {
    /// A GGUF file, or a catalogue name (see `lume pull --list`).
    #[arg(short = 'm', long = "model", default_value = hub::DEFAULT_MODEL)]
    pub model: String,
}

impl ModelArg {
    /// The model file, pulled into the cache first when it is a catalogue name not cached yet.
    pub fn path(&self) -> Result<PathBuf> {
        hub::ensure(&self.model).with_context(|| format!("model '{}'", self.model))
    }
}

#[derive(Args)]
struct PullArgs {
    /// Catalogue names (default: the default model).
    names: Vec<String>,
    /// List the catalogue and what is cached.
    #[arg(long)]
    list: bool,
}

fn pull(args: &PullArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if args.list {
        writeln!(out, "{:20} {:>10}  {:8} file", "name", "MB", "cached")?;
        for e in hub::CATALOGUE {
            let cached = hub::cached_path(e).exists();
            let default = if e.name == hub::DEFAULT_MODEL {
                " (default)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:20} {:>10.1}  {:8} {}{default}",
                e.name,
                e.bytes as f64 / 1e6,
                if cached { "yes" } else { "no" },
                e.file
            )?;
        }
        writeln!(out, "cache: {}", hub::cache_dir().join("models").display())?;
        return Ok(());
    }
    let names = if args.names.is_empty() {
        vec![hub::DEFAULT_MODEL.to_string()]
    } else {
        args.names.clone()
    };
    // Check every name before downloading anything.
    let entries = names
        .iter()
        .map(|n| {
            hub::find(n).with_context(|| {
                let known: Vec<&str> = hub::CATALOGUE.iter().map(|e| e.name).collect();
                format!(
                    "'{n}' is not in the catalogue (known: {})",
                    known.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for e in entries {
        let path = hub::pull(e).with_context(|| format!("pulling '{}'", e.name))?;
        writeln!(out, "{}: {}", e.name, path.display())?;
    }
    Ok(())
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => generate::run(&a),
        Cmd::Chat(a) => chat::run(&a),
        Cmd::Inspect(m) => {
            let path = m.path()?;
            inspect::run(&path, &mut std::io::stdout().lock())
        }
        Cmd::Tokenize(a) => tokenize::run(&a),
        Cmd::Embed(a) => embed::run(&a),
        Cmd::Rerank(a) => rerank::run(&a),
        Cmd::Pull(a) => pull(&a),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Perplexity(a) => perplexity::run(&a),
        Cmd::Quantize(a) => quantize::run(&a),
        Cmd::Serve(a) => serve::run(&a),
        Cmd::EncodePrompt(a) => encode_prompt::run(&a),
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `lume run ... | head` closes our stdout early: not an error worth reporting.
            let broken_pipe = err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
