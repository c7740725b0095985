//! What every handler shares: the configuration, the models ([`Models`]), the HTTP counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::embeddings::EmbedQueue;

pub use crate::keep_alive::KeepAlive;
pub use crate::models::{Kind, Lease, Loaded, Model, Models};
use crate::{ServerConfig, ServerError};

pub struct AppState {
    pub cfg: ServerConfig,
    /// The API keys as bytes (compared in constant time).
    pub keys: Vec<Vec<u8>>,
    pub models: Arc<Models>,
    /// Requests answered, by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Unix time the server started (the `created` of `/v1/models`).
    pub started: u64,
}

/// A held model's embedding queue.
pub struct Embedder {
    pub queue: EmbedQueue,
    /// The language model whose embeddings these are (`None`: an embedding model).
    pub language: Option<Model>,
    /// Holds the model while the embedding runs.
    _lease: Lease,
}

impl AppState {
    pub fn new(cfg: ServerConfig) -> AppState {
        let keys = cfg.api_keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let models = Arc::new(Models::new(&cfg));
        AppState {
            cfg,
            keys,
            models,
            http: Mutex::new(BTreeMap::new()),
            started: unix_now(),
        }
    }

    /// Several models by name (else one).
    pub fn multi(&self) -> bool {
        self.models.multi()
    }

    /// Ok once the one model is loaded; always with several (each loads on first use).
    pub fn ready(&self) -> Result<(), ServerError> {
        if self.models.ready() {
            Ok(())
        } else {
            Err(ServerError::Loading)
        }
    }

    /// The served id a request's `model` names.
    pub fn resolve(&self, name: Option<&str>) -> Result<String, ServerError> {
        self.models.resolve(name)
    }

    /// The model a request names, loaded (see [`Models::acquire`]); `keep`: the request's
    /// `keep_alive`, if it sent one.
    pub async fn lease(
        &self,
        name: Option<&str>,
        keep: Option<KeepAlive>,
    ) -> Result<Lease, ServerError> {
        let id = self.resolve(name)?;
        self.models.acquire(&id, keep).await
    }

    /// The language model a request names (a 400 for an embedding model).
    pub async fn model(
        &self,
        name: Option<&str>,
        keep: Option<KeepAlive>,
    ) -> Result<Model, ServerError> {
        Model::of(self.lease(name, keep).await?)
    }

    /// The embedding queue of the model a request names: an embedding model's, or a
    /// language model's (over the same file, loaded on first use).
    pub async fn embedder(
        &self,
        name: Option<&str>,
        keep: Option<KeepAlive>,
    ) -> Result<Embedder, ServerError> {
        let lease = self.lease(name, keep).await?;
        match lease.kind() {
            Some(Kind::Encoder(q)) => Ok(Embedder {
                queue: q.clone(),
                language: None,
                _lease: lease,
            }),
            _ => {
                let m = Model::of(lease.clone())?;
                let mm = m.clone();
                let queue = tokio::task::spawn_blocking(move || mm.embedder())
                    .await
                    .map_err(|e| {
                        ServerError::Internal(format!("the embedding loader failed: {e}"))
                    })??;
                Ok(Embedder {
                    queue,
                    language: Some(m),
                    _lease: lease,
                })
            }
        }
    }

    pub fn count(&self, route: &str, status: u16) {
        let mut h = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *h.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    pub fn http_counts(&self) -> BTreeMap<(String, u16), u64> {
        self.http.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
