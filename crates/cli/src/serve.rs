//! `lume serve`: the OpenAI-compatible HTTP server (the `server` crate) from the command line:
//! one model (`-m M`), several (`-m A -m B`), or every cached model (no `-m`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::generate::KvTypeArg;
use crate::template::TemplateArgs;
use crate::ModelArg;

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// A model to serve: a GGUF file, a model folder or a catalogue name (pulled when missing).
    /// Repeatable: with several, each is served by its name and loaded on first use. Without
    /// any, every model in the cache (`lume pull --list`) is served that way, and one pulled
    /// later joins.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
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
    /// The model id clients see and send, with one -m (default: the catalogue name or the file
    /// stem).
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
    /// Several models: how long one stays loaded after its last request (seconds, or a
    /// duration such as 30s, 5m, 1h30m; negative = forever, 0 = unload at once). A request's
    /// ollama `keep_alive` overrides it. One model stays loaded.
    #[arg(long = "keep-alive", value_name = "DURATION", default_value = "5m",
          allow_hyphen_values = true, value_parser = keep_alive_arg)]
    pub keep_alive: server::KeepAlive,
    /// Several models: most models in memory at once. Loading one more first unloads the least
    /// recently used idle one; when every loaded model is serving requests, the request gets
    /// 503 (retry).
    #[arg(long = "max-loaded", value_name = "N", default_value_t = 3)]
    pub max_loaded: usize,
    /// Several models: most memory for the models in memory, estimated as each one's file plus
    /// its KV cache at --ctx-size and --parallel (e.g. 4G, 512M; K/M/G/T are powers of 1024).
    /// Enforced like --max-loaded; a model that alone is larger gets 400.
    #[arg(long = "max-memory", value_name = "BYTES", value_parser = bytes_arg)]
    pub max_memory: Option<u64>,
    /// On SIGTERM or SIGINT: seconds that requests in flight (streams included) may run on
    /// before they are cut (0 = cut them at once); new connections are refused meanwhile. Open
    /// connections then get at most 5 s more to close, so keep it 5 s or more below the time
    /// your supervisor waits before SIGKILL (Kubernetes' terminationGracePeriodSeconds).
    #[arg(long = "drain-timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=MAX_DRAIN_S))]
    pub drain_timeout: u64,
    #[command(flatten)]
    pub template: TemplateArgs,
}

/// The longest `--drain-timeout`: a day.
const MAX_DRAIN_S: u64 = 86_400;

fn keep_alive_arg(s: &str) -> Result<server::KeepAlive, String> {
    server::KeepAlive::parse(s).ok_or_else(|| {
        format!("'{s}' is not a duration (seconds, or such as 30s, 5m, 1h30m; negative = forever)")
    })
}

fn bytes_arg(s: &str) -> Result<u64, String> {
    match server::parse_bytes(s) {
        Some(0) => Err("must be more than 0".into()),
        Some(n) => Ok(n),
        None => Err(format!("'{s}' is not a size (bytes, or such as 512M, 4G)")),
    }
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
    if a.max_loaded == 0 {
        bail!("--max-loaded must be at least 1");
    }
    let api_keys = api_keys(a)?;
    // Checked before the model is pulled or loaded: a bad flag fails fast.
    let (chat_template, chat_template_kwargs) = a.template.resolve()?;
    let multi = a.models.len() != 1;
    if multi && a.alias.is_some() {
        bail!("--alias names one model: it needs exactly one -m");
    }
    if multi && chat_template.is_some() {
        bail!("--chat-template and --chat-template-file replace one model's template: they need exactly one -m");
    }
    let mut cfg = server::ServerConfig {
        host: a.host.clone(),
        port: a.port,
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
        drain_timeout: Duration::from_secs(a.drain_timeout),
        chat_template,
        chat_template_kwargs,
        multi,
        keep_alive: a.keep_alive,
        max_loaded: a.max_loaded,
        max_memory: a.max_memory,
        ..Default::default()
    };
    if !multi {
        let name = &a.models[0];
        let model = ModelArg {
            model: name.clone(),
        };
        let path = model.path()?;
        let is_catalogue = !Path::new(name).is_file() && hub::find(name).is_some();
        cfg.model_id =
            server::ServerConfig::model_id_for(name, is_catalogue, &path, a.alias.as_deref());
        cfg.model_path = path;
    } else if a.models.is_empty() {
        cfg.from_cache = true;
        cfg.models = hub::cached()
            .into_iter()
            .map(|(e, path)| server::ModelSpec {
                id: e.name.to_string(),
                path,
            })
            .collect();
    } else {
        for name in &a.models {
            let model = ModelArg {
                model: name.clone(),
            };
            let path = model.path()?;
            let is_catalogue = !Path::new(name).is_file() && hub::find(name).is_some();
            let id = server::ServerConfig::model_id_for(name, is_catalogue, &path, None);
            if cfg.models.iter().any(|m| m.id == id) {
                bail!("-m {name}: the model '{id}' is named twice");
            }
            cfg.models.push(server::ModelSpec { id, path });
        }
    }
    server::run(cfg)?;
    Ok(())
}
