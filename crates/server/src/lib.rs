#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod anthropic;
mod api;
mod auth;
mod body;
mod chat;
mod completions;
mod config;
mod embeddings;
mod error;
mod generate;
mod json;
mod keep_alive;
mod metrics;
mod models;
mod ollama;
mod rerank;
mod routes;
mod shape;
mod sse;
mod state;
mod webui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::embeddings::Served;
use tokio::net::TcpListener;

pub use config::{ModelSpec, ServerConfig};
pub use error::ServerError;
pub use keep_alive::{parse_bytes, KeepAlive};

use models::{Kind, Loaded, Resident};
use state::AppState;

/// How long the HTTP side may take to close its connections after the scheduler has stopped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound, listening server (the model is not loaded yet).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl Server {
    /// Checks `cfg` and binds `host:port` (port 0: any free port).
    pub async fn bind(cfg: ServerConfig) -> Result<Server, ServerError> {
        if cfg.api_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ServerError::Config("an API key is empty".into()));
        }
        if cfg.multi {
            if cfg.chat_template.is_some() {
                return Err(ServerError::Config(
                    "a chat template override needs a single model".into(),
                ));
            }
            let mut ids: Vec<&str> = cfg.models.iter().map(|m| m.id.as_str()).collect();
            if ids.iter().any(|i| i.is_empty()) {
                return Err(ServerError::Config("a model id is empty".into()));
            }
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(ServerError::Config(format!(
                    "the model id '{}' is given twice",
                    w[0]
                )));
            }
        } else if cfg.model_id.is_empty() {
            return Err(ServerError::Config("the model id is empty".into()));
        }
        if let Some(src) = &cfg.chat_template {
            engine::ChatTemplate::new(src.as_str(), "", "")
                .check()
                .map_err(|e| ServerError::Config(format!("the chat template: {e}")))?;
        }
        if let Some(k) = cfg
            .chat_template_kwargs
            .keys()
            .find(|k| engine::chat::RESERVED_VARIABLES.contains(&k.as_str()))
        {
            return Err(ServerError::Config(format!(
                "chat template kwargs: '{k}' cannot be set"
            )));
        }
        let host = cfg.host.trim();
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", cfg.port)
        } else {
            format!("{host}:{}", cfg.port)
        };
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|error| ServerError::Bind {
                addr: addr.clone(),
                error,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|error| ServerError::Bind { addr, error })?;
        Ok(Server {
            listener,
            addr,
            state: Arc::new(AppState::new(cfg)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves at once (503 "Loading model" until the model is loaded), loads the model, and
    /// serves until `shutdown` completes; then stops accepting, lets requests in flight finish
    /// for `cfg.drain_timeout` (cutting what is left then) and returns `Ok`. A model that fails to load ends it with
    /// [`ServerError::Load`]. With several models (`cfg.multi`) nothing is loaded at start:
    /// each model loads on its first request (a failed load is that request's 500).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            addr,
            state,
        } = self;
        let cfg = state.cfg.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let app = routes::router(Arc::clone(&state));
        let mut http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
        });
        let log = |msg: String| {
            if cfg.log {
                eprintln!("lume serve: {msg}");
            }
        };
        if cfg.multi {
            return serve_many(&state, &cfg, addr, shutdown, http, stop_tx).await;
        }
        log(format!(
            "listening on http://{addr} (loading {})",
            cfg.model_path.display()
        ));
        let t0 = Instant::now();
        let path = cfg.model_path.clone();
        let opts = cfg.scheduler.clone();
        tokio::pin!(shutdown);
        // Which kind of model it is is read from the file on the blocking pool too (a path
        // may be slow to open: a network disk, a pipe); the file is opened once.
        let delay = test_load_delay();
        let loaded = load_or_stop(
            move || {
                std::thread::sleep(delay);
                engine::embeddings::load_served(&path, &opts)
            },
            shutdown.as_mut(),
            &mut http,
            &stop_tx,
            &cfg,
        )
        .await?;
        let sched = match loaded {
            None => {
                log("stopping (the model was still loading)".into());
                return Ok(());
            }
            Some(Served::Encoder(q)) => {
                return serve_encoder(&state, &cfg, q, shutdown, http, stop_tx, t0).await
            }
            Some(Served::Language(s)) => s,
        };
        let t_load = t0.elapsed().as_secs_f64();
        let bytes = models::language_bytes(&sched, cfg.scheduler.kv_type);
        let loaded = Arc::new(Loaded::new(sched.clone(), &cfg));
        // The vocabulary's token trie for constrained requests (about a second for a 262k
        // vocabulary), built in the background so the first such request does not wait for it.
        let warm = sched.clone();
        tokio::task::spawn_blocking(move || warm.prepare_grammars());
        log(format!(
            "model '{}' loaded in {t_load:.1} s: {} slots x {} tokens of context, {}",
            cfg.model_id,
            sched.n_slots(),
            sched.n_ctx(),
            if loaded.template.is_some() {
                "chat template found"
            } else {
                "no chat template (chat routes answer 400)"
            }
        ));
        state.models.set_resident(
            &cfg.model_id,
            Resident::new(Kind::Language(loaded), bytes),
            t_load,
        );
        tokio::select! {
            _ = &mut shutdown => {}
            r = &mut http => {
                // The HTTP server ended by itself: an I/O failure.
                sched.shutdown(Duration::ZERO);
                return match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(ServerError::Io { error }),
                    Err(e) => Err(ServerError::Internal(format!("the HTTP server failed: {e}"))),
                };
            }
        }
        log(format!(
            "stopping: finishing requests in flight (at most {:.0} s)",
            cfg.drain_timeout.as_secs_f64()
        ));
        let _ = stop_tx.send(true);
        let grace = cfg.drain_timeout;
        let _ = tokio::task::spawn_blocking(move || sched.shutdown(grace)).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
        Ok(())
    }
}

/// The server of an embedding-only model: serve `/v1/embeddings` (the generation routes
/// answer 400) until `shutdown`.
async fn serve_encoder(
    state: &Arc<AppState>,
    cfg: &ServerConfig,
    q: engine::embeddings::EmbedQueue,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    mut http: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    t0: Instant,
) -> Result<(), ServerError> {
    if cfg.log {
        eprintln!(
            "lume serve: {} '{}' loaded in {:.1} s: {} dimensions, up to {} tokens per input",
            if q.model().can_rerank() {
                "cross-encoder (/v1/rerank, /v1/embeddings)"
            } else {
                "embedding model (/v1/embeddings)"
            },
            cfg.model_id,
            t0.elapsed().as_secs_f64(),
            q.model().dim(),
            q.model().max_len()
        );
    }
    let bytes = models::path_size(&cfg.model_path);
    state.models.set_resident(
        &cfg.model_id,
        Resident::new(Kind::Encoder(q), bytes),
        t0.elapsed().as_secs_f64(),
    );
    tokio::select! {
        _ = shutdown.as_mut() => {}
        r = &mut http => {
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(ServerError::Io { error }),
                Err(e) => Err(ServerError::Internal(format!("the HTTP server failed: {e}"))),
            };
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
    Ok(())
}

/// The multi-model server: listening is all it takes to be ready (each model loads on its
/// first request); the reaper unloads expired models until `shutdown`, then every loaded model
/// finishes its requests for `cfg.drain_timeout`.
async fn serve_many(
    state: &Arc<AppState>,
    cfg: &ServerConfig,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
    mut http: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
) -> Result<(), ServerError> {
    let log = |msg: String| {
        if cfg.log {
            eprintln!("lume serve: {msg}");
        }
    };
    let names = state.models.names();
    let budget = match cfg.max_memory {
        Some(m) => format!(
            "at most {} loaded, {}",
            cfg.max_loaded.max(1),
            models::human_bytes(m)
        ),
        None => format!("at most {} loaded", cfg.max_loaded.max(1)),
    };
    let keep = match cfg.keep_alive {
        KeepAlive::Forever => "forever".to_string(),
        KeepAlive::For(d) => format!("{:.0} s", d.as_secs_f64()),
    };
    log(format!(
        "listening on http://{addr}: {} models, each loaded on first use ({}); {budget}, kept {keep} after use",
        names.len(),
        if names.is_empty() {
            "none cached yet".to_string()
        } else {
            names.join(", ")
        }
    ));
    let reaper = tokio::spawn(models::reaper(Arc::clone(&state.models)));
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {}
        r = &mut http => {
            reaper.abort();
            let m = Arc::clone(&state.models);
            let _ = tokio::task::spawn_blocking(move || m.shutdown(Duration::ZERO)).await;
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(ServerError::Io { error }),
                Err(e) => Err(ServerError::Internal(format!("the HTTP server failed: {e}"))),
            };
        }
    }
    reaper.abort();
    log(format!(
        "stopping: finishing requests in flight (at most {:.0} s)",
        cfg.drain_timeout.as_secs_f64()
    ));
    let _ = stop_tx.send(true);
    let grace = cfg.drain_timeout;
    let m = Arc::clone(&state.models);
    let _ = tokio::task::spawn_blocking(move || m.shutdown(grace)).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
    Ok(())
}

/// Test-only: `LUME_TEST_LOAD_DELAY_MS` holds the model load that many milliseconds (the server
/// answers 503 "Loading model" meanwhile), so tests can see a replica that is still loading
/// (tests/gateway). Unset, empty or unparsable: no delay. Not a user setting.
fn test_load_delay() -> Duration {
    std::env::var("LUME_TEST_LOAD_DELAY_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

/// Runs `load` on the blocking pool unless `shutdown` comes first (then the HTTP side is
/// stopped and the answer is `None`); a failed load stops the HTTP side and is the error.
async fn load_or_stop<T: Send + 'static>(
    load: impl FnOnce() -> Result<T, engine::EngineError> + Send + 'static,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    http: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: &tokio::sync::watch::Sender<bool>,
    cfg: &ServerConfig,
) -> Result<Option<T>, ServerError> {
    let loaded = tokio::select! {
        r = tokio::task::spawn_blocking(load) => r,
        _ = shutdown => {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
            return Ok(None);
        }
    };
    match loaded {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(error)) => {
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
            Err(ServerError::Load {
                path: cfg.model_path.clone(),
                error: Box::new(error),
            })
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            Err(ServerError::Internal(format!(
                "the model loader failed: {e}"
            )))
        }
    }
}

/// Binds, loads and serves until SIGINT or SIGTERM (their handlers are installed first, so a
/// signal that comes once the server answers is never fatal).
pub async fn serve(cfg: ServerConfig) -> Result<(), ServerError> {
    let signal = shutdown_signal();
    Server::bind(cfg).await?.run(signal).await
}

/// [`serve`] on a runtime of its own (for a synchronous `main`).
pub fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("lume-http")
        .enable_all()
        .build()
        .map_err(|error| ServerError::Io { error })?;
    let r = rt.block_on(serve(cfg));
    // A model still loading when the signal came must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    r
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this
/// is called (inside a tokio runtime), not when the future is first polled.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        async move {
            tokio::select! {
                _ = recv(int.as_mut()) => {}
                _ = recv(term.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The next delivery of `s` (never, when its handler could not be installed).
#[cfg(unix)]
async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
