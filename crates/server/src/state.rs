//! What every handler shares: the configuration, the model once it is loaded, the HTTP
//! counters.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::{ChatTemplate, Scheduler};

use crate::{ServerConfig, ServerError};

/// The loaded model.
pub struct Loaded {
    pub sched: Scheduler,
    /// `None` for a base model (chat routes answer 400).
    pub template: Option<ChatTemplate>,
    /// Weights in the file (sum of tensor elements).
    pub n_params: u64,
}

pub struct AppState {
    pub cfg: ServerConfig,
    /// The API keys as bytes (compared in constant time).
    pub keys: Vec<Vec<u8>>,
    loaded: OnceLock<Loaded>,
    /// Requests answered, by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Unix time the server started (the `created` of `/v1/models`).
    pub started: u64,
}

impl AppState {
    pub fn new(cfg: ServerConfig) -> AppState {
        let keys = cfg.api_keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        AppState {
            cfg,
            keys,
            loaded: OnceLock::new(),
            http: Mutex::new(BTreeMap::new()),
            started: unix_now(),
        }
    }

    /// The model, or [`ServerError::Loading`] while it loads.
    pub fn model(&self) -> Result<&Loaded, ServerError> {
        self.loaded.get().ok_or(ServerError::Loading)
    }

    pub fn set_model(&self, m: Loaded) {
        let _ = self.loaded.set(m);
    }

    pub fn id(&self) -> &str {
        &self.cfg.model_id
    }

    /// A request with this `model` is ours: our id, empty, absent or `default`.
    pub fn check_model(&self, name: Option<&str>) -> Result<(), ServerError> {
        match name {
            None | Some("") | Some("default") => Ok(()),
            Some(n) if n == self.id() => Ok(()),
            Some(n) => Err(self.model_not_found(n)),
        }
    }

    pub fn model_not_found(&self, name: &str) -> ServerError {
        ServerError::NotFound {
            message: format!(
                "model '{name}' not found; this server serves '{}'",
                self.id()
            ),
            param: Some("model".into()),
            code: "model_not_found",
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
