#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api;
mod auth;
mod body;
mod chat;
mod completions;
mod config;
mod error;
mod generate;
mod json;
mod metrics;
mod routes;
mod sse;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Scheduler;
use tokio::net::TcpListener;

pub use config::ServerConfig;
pub use error::ServerError;

use state::{AppState, Loaded};

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
        if cfg.model_id.is_empty() {
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
    /// for the grace period and returns `Ok`. A model that fails to load ends it with
    /// [`ServerError::Load`].
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
        log(format!(
            "listening on http://{addr} (loading {})",
            cfg.model_path.display()
        ));
        let t0 = Instant::now();
        let path = cfg.model_path.clone();
        let opts = cfg.scheduler.clone();
        let mut load = tokio::task::spawn_blocking(move || Scheduler::load(&path, &opts));
        tokio::pin!(shutdown);
        let loaded = tokio::select! {
            r = &mut load => r,
            _ = &mut shutdown => {
                log("stopping (the model was still loading)".into());
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
                return Ok(());
            }
        };
        let sched = match loaded {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => {
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
                return Err(ServerError::Load {
                    path: cfg.model_path.clone(),
                    error: Box::new(error),
                });
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                return Err(ServerError::Internal(format!(
                    "the model loader failed: {e}"
                )));
            }
        };
        let template = match &cfg.chat_template {
            Some(src) => Some(engine::ChatTemplate::with_tokens_of(
                src.as_str(),
                sched.gguf(),
            )),
            None => sched.chat_template().ok(),
        }
        .map(|t| t.with_kwargs(cfg.chat_template_kwargs.clone()));
        let n_params = sched.gguf().tensors.iter().map(|t| t.n_elements()).sum();
        log(format!(
            "model '{}' loaded in {:.1} s: {} slots x {} tokens of context, {}",
            cfg.model_id,
            t0.elapsed().as_secs_f64(),
            sched.n_slots(),
            sched.n_ctx(),
            if template.is_some() {
                "chat template found"
            } else {
                "no chat template (chat routes answer 400)"
            }
        ));
        state.set_model(Loaded {
            sched: sched.clone(),
            template,
            n_params,
        });
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
            cfg.grace.as_secs_f64()
        ));
        let _ = stop_tx.send(true);
        let grace = cfg.grace;
        let _ = tokio::task::spawn_blocking(move || sched.shutdown(grace)).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, http).await;
        Ok(())
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
