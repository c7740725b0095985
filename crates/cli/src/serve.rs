//! `lume serve`: the OpenAI-compatible HTTP server (the `server` crate) from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::generate::KvTypeArg;
use crate::template::TemplateArgs;
use crate::ModelArg;

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests served at once (KV-cache slots).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,
    /// Context per sequence in tokens (0 = the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size", value_name = "N", default_value_t = 0)]
    pub ctx: usize,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// KV cache element type: f16 (half the memory) or f32 (exact).
    #[arg(long = "kv-type", value_enum, default_value_t = KvTypeArg::F16)]
    pub kv_type: KvTypeArg,
    /// The model id clients see and send (default: the catalogue name or the file stem).
    #[arg(long, value_name = "NAME")]
    pub alias: Option<String>,
    /// Accept this API key (repeatable; also env LUME_API_KEY). Without any key the API is open.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_key: Vec<String>,
    /// Read API keys from a file, one per line (blank lines and `#` comments skipped).
    #[arg(long = "api-key-file", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// /metrics needs an API key too (it is open by default).
    #[arg(long)]
    pub metrics_need_key: bool,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long = "max-body", value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// Each request's tokens and log-probabilities are independent, bit for bit, of what shares
    /// its batches, of prompt chunking and of prefix reuse. On by default (it costs nothing
    /// measurable, see docs/PERFORMANCE.md); `--batch-invariant false` turns it off.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub batch_invariant: bool,
    #[command(flatten)]
    pub template: TemplateArgs,
}

/// The keys from `--api-key`, `--api-key-file` and `LUME_API_KEY`.
fn api_keys(a: &ServeArgs) -> Result<Vec<String>> {
    let mut keys: Vec<String> = a.api_key.iter().map(|k| k.trim().to_string()).collect();
    if let Some(f) = &a.api_key_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading --api-key-file {}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if let Ok(k) = std::env::var("LUME_API_KEY") {
        if !k.trim().is_empty() {
            keys.push(k.trim().to_string());
        }
    }
    if keys.iter().any(String::is_empty) {
        bail!("--api-key: an API key is empty");
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

pub fn run(a: &ServeArgs) -> Result<()> {
    if a.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let api_keys = api_keys(a)?;
    // Checked before the model is pulled or loaded: a bad flag fails fast.
    let (chat_template, chat_template_kwargs) = a.template.resolve()?;
    let path = a.model.path()?;
    let name = &a.model.model;
    let is_catalogue = !Path::new(name).is_file() && hub::find(name).is_some();
    let model_id =
        server::ServerConfig::model_id_for(name, is_catalogue, &path, a.alias.as_deref());
    let cfg = server::ServerConfig {
        host: a.host.clone(),
        port: a.port,
        model_path: path,
        model_id,
        scheduler: engine::SchedulerOptions {
            n_slots: a.parallel,
            n_ctx: a.ctx,
            queue: a.queue,
            threads: a.threads.unwrap_or(0),
            kv_type: a.kv_type.into(),
            batch_invariant: a.batch_invariant,
            ..Default::default()
        },
        api_keys,
        metrics_need_key: a.metrics_need_key,
        max_body: a.max_body,
        grace: Duration::from_secs(10),
        chat_template,
        chat_template_kwargs,
        ..Default::default()
    };
    server::run(cfg)?;
    Ok(())
}
