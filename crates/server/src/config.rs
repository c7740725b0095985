//! [`ServerConfig`]: what `lume serve` was asked for.

use std::path::PathBuf;
use std::time::Duration;

use engine::SchedulerOptions;

use crate::KeepAlive;

/// One model of a multi-model server: the name requests use and its file (or folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    pub id: String,
    pub path: PathBuf,
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind (default 8080; 0 = any free port, see [`crate::Server::local_addr`]).
    pub port: u16,
    /// The GGUF file to load (one model; unused when `multi`).
    pub model_path: PathBuf,
    /// The name clients use in `model` (catalogue name, `--alias`, or the file stem).
    pub model_id: String,
    /// Serve `models` by name, each loaded on first use (`lume serve` without `-m`, or with
    /// several), instead of the one `model_path` loaded at start.
    pub multi: bool,
    /// The models of a multi-model server (names unique).
    pub models: Vec<ModelSpec>,
    /// `models` are the cache's catalogue models: one cached later (`/api/pull`, `lume pull`)
    /// joins them when first named or listed.
    pub from_cache: bool,
    /// How long a model stays loaded after its last request (`--keep-alive`, default 5
    /// minutes; a request's ollama `keep_alive` overrides it). Multi-model mode only: one
    /// model stays loaded.
    pub keep_alive: KeepAlive,
    /// Most models in memory at once (`--max-loaded`, default 3; at least 1).
    pub max_loaded: usize,
    /// Most estimated bytes of models in memory (`--max-memory`; `None`: no limit).
    pub max_memory: Option<u64>,
    /// Slots (`--parallel`), context per slot (`--ctx-size`), threads, KV type, queue,
    /// batch invariance.
    pub scheduler: SchedulerOptions,
    /// Accepted API keys; empty = no authentication.
    pub api_keys: Vec<String>,
    /// `/metrics` needs a key too (it is open by default).
    pub metrics_need_key: bool,
    /// Largest request body in bytes (default 8 MiB); larger ones get 413.
    pub max_body: usize,
    /// Most stop strings per request (default 16).
    pub max_stops: usize,
    /// How long requests in flight (streams included) may run on after SIGINT/SIGTERM
    /// (`--drain-timeout`, default 10 s; zero = cancel them at once). What is left then is
    /// cut, and open connections get at most 5 s more to close.
    pub drain_timeout: Duration,
    /// Print the "listening" and "loaded" lines on stderr.
    pub log: bool,
    /// A chat template (Jinja source) used instead of the model's (`--chat-template`).
    pub chat_template: Option<String>,
    /// Extra template variables for every chat (`--chat-template-kwargs`); a request's
    /// `chat_template_kwargs` go over these.
    pub chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            model_path: PathBuf::new(),
            model_id: String::new(),
            multi: false,
            models: Vec::new(),
            from_cache: false,
            keep_alive: KeepAlive::default(),
            max_loaded: 3,
            max_memory: None,
            scheduler: SchedulerOptions::default(),
            api_keys: Vec::new(),
            metrics_need_key: false,
            max_body: 8 << 20,
            max_stops: 16,
            drain_timeout: Duration::from_secs(10),
            log: true,
            chat_template: None,
            chat_template_kwargs: serde_json::Map::new(),
        }
    }
}

impl ServerConfig {
    /// The id clients see for `path`: `alias` when given, else `name` when it is a catalogue
    /// name (`is_catalogue`), else the file name without `.gguf`.
    pub fn model_id_for(
        name: &str,
        is_catalogue: bool,
        path: &std::path::Path,
        alias: Option<&str>,
    ) -> String {
        if let Some(a) = alias.filter(|a| !a.is_empty()) {
            return a.to_string();
        }
        if is_catalogue {
            return name.to_string();
        }
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        file.strip_suffix(".gguf").unwrap_or(&file).to_string()
    }
}
