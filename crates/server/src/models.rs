//! The models a server serves, by name: [`Models`].
//!
//! - One model (`-m M`): a single pinned entry, loaded by [`crate::Server::run`] at start
//!   (requests get [`ServerError::Loading`] until then), never unloaded.
//! - Several (`lume serve` without `-m`, or `-m A -m B`): an entry per name, loaded on its
//!   first request ([`Models::acquire`]; concurrent first requests wait for the same load),
//!   kept for `keep_alive` after its last request, unloaded by [`reaper`] once expired, or
//!   evicted (least recently used first, idle models only) when loading another would exceed
//!   `--max-loaded` or `--max-memory`.
//!
//! A request holds a [`Lease`] on its model for as long as it runs (a stream's lease lives in
//! its body), so a model is never unloaded under a request: the reaper and the evictor take
//! only models no lease holds, and they decide under the same lock leases are taken under.
//!
//! Memory is an estimate ([`estimate`]): the file's size plus the KV cache at the configured
//! `--ctx-size` and `--parallel` (an encoder: its files). It is what `/api/ps` reports as
//! `size` and what `--max-memory` is checked against.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use engine::embeddings::{EmbedQueue, EmbeddingModel, Served};
use engine::{ChatTemplate, KvType, Scheduler, SchedulerOptions};
use tokio::sync::{watch, Notify};

use crate::{KeepAlive, ServerConfig, ServerError};

/// A loaded language model.
pub struct Loaded {
    pub sched: Scheduler,
    /// `None` for a base model (chat routes answer 400).
    pub template: Option<ChatTemplate>,
    /// Weights in the file (sum of tensor elements).
    pub n_params: u64,
    /// Its embeddings (`/v1/embeddings` on a language model), loaded on first use.
    embed: OnceLock<Result<EmbedQueue, String>>,
}

impl Loaded {
    /// The language model of `sched` with its chat template (`--chat-template` over the
    /// file's, `--chat-template-kwargs` added).
    pub fn new(sched: Scheduler, cfg: &ServerConfig) -> Loaded {
        let template = match &cfg.chat_template {
            Some(src) => Some(ChatTemplate::with_tokens_of(src.as_str(), sched.gguf())),
            None => sched.chat_template().ok(),
        }
        .map(|t| t.with_kwargs(cfg.chat_template_kwargs.clone()));
        let n_params = sched.gguf().tensors.iter().map(|t| t.n_elements()).sum();
        Loaded {
            sched,
            template,
            n_params,
            embed: OnceLock::new(),
        }
    }

    /// Its embedding queue (last-token or the file's pooling, L2-normalised as OpenAI's
    /// vectors are), loaded on first use. Blocking: call it off the async runtime.
    pub fn embedder(&self) -> Result<EmbedQueue, ServerError> {
        let r = self.embed.get_or_init(|| {
            let mut em = EmbeddingModel::load(self.sched.path()).map_err(|e| e.to_string())?;
            em.embedder.normalize = true;
            EmbedQueue::start(em).map_err(|e| e.to_string())
        });
        r.clone().map_err(ServerError::Internal)
    }

    /// The embedding queue if it was started.
    pub fn embed_queue(&self) -> Option<EmbedQueue> {
        self.embed.get().and_then(|r| r.as_ref().ok().cloned())
    }
}

/// What a loaded model is.
pub enum Kind {
    Language(Arc<Loaded>),
    /// An embedding-only model (an encoder, or a cross-encoder).
    Encoder(EmbedQueue),
}

impl Kind {
    /// The embedding queue running for it, if any (an encoder's; a language model's once used).
    pub fn embed_queue(&self) -> Option<EmbedQueue> {
        match self {
            Kind::Language(l) => l.embed_queue(),
            Kind::Encoder(q) => Some(q.clone()),
        }
    }
}

/// A model in memory.
pub struct Resident {
    pub kind: Kind,
    /// Its estimated memory in bytes ([`estimate`]).
    pub bytes: u64,
    /// Leases held on it (requests running on it).
    busy: AtomicUsize,
}

impl Resident {
    pub fn new(kind: Kind, bytes: u64) -> Resident {
        Resident {
            kind,
            bytes,
            busy: AtomicUsize::new(0),
        }
    }

    /// Stops its scheduler (a language model); memory is freed once the last handle goes.
    fn stop(&self) {
        if let Kind::Language(l) = &self.kind {
            l.sched.shutdown(Duration::ZERO);
        }
    }
}

/// Why a model left memory (the `reason` label of `lume_model_unloads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unload {
    /// Its `keep_alive` ran out (`keep_alive: 0` included).
    Expired,
    /// Another model needed its place (`--max-loaded`, `--max-memory`).
    Evicted,
}

impl Unload {
    pub fn label(self) -> &'static str {
        match self {
            Unload::Expired => "expired",
            Unload::Evicted => "evicted",
        }
    }
}

/// The end of a load: a lease on the model for its waiters to clone (so it cannot expire
/// before they hold it; it goes when the last waiter has taken its own), or why it failed.
type Done = watch::Receiver<Option<Result<Lease, String>>>;

/// Where an entry is.
enum State {
    Unloaded,
    /// Being loaded; the sender says how it ended.
    Loading {
        bytes: u64,
        done: Done,
    },
    Ready(Arc<Resident>),
}

/// One servable model.
struct Entry {
    path: PathBuf,
    state: State,
    last_used: Instant,
    /// When it unloads if idle (`None`: never).
    expires: Option<Instant>,
    /// Memory estimate, computed on first need.
    estimate: Option<u64>,
    digest: Arc<OnceLock<String>>,
    loads: u64,
    load_seconds: f64,
    unloads: BTreeMap<Unload, u64>,
}

impl Entry {
    fn new(path: PathBuf) -> Entry {
        Entry {
            path,
            state: State::Unloaded,
            last_used: Instant::now(),
            expires: None,
            estimate: None,
            digest: Arc::new(OnceLock::new()),
            loads: 0,
            load_seconds: 0.0,
            unloads: BTreeMap::new(),
        }
    }

    fn ready(&self) -> Option<&Arc<Resident>> {
        match &self.state {
            State::Ready(r) => Some(r),
            _ => None,
        }
    }

    /// Memory it holds or is about to hold.
    fn held_bytes(&self) -> Option<u64> {
        match &self.state {
            State::Unloaded => None,
            State::Loading { bytes, .. } => Some(*bytes),
            State::Ready(r) => Some(r.bytes),
        }
    }
}

/// What the lists (`/v1/models`, `/api/tags`, `/api/ps`, `/metrics`) show of one model.
pub struct Listing {
    pub id: String,
    pub path: PathBuf,
    pub resident: Option<Arc<Resident>>,
    pub loading: bool,
    /// Wall-clock time it unloads if idle (`None`: never, or not loaded).
    pub expires_at: Option<SystemTime>,
    /// Requests running on it.
    pub busy: usize,
    pub digest: Arc<OnceLock<String>>,
    pub loads: u64,
    pub load_seconds: f64,
    pub unloads: BTreeMap<Unload, u64>,
}

struct Inner {
    entries: BTreeMap<String, Entry>,
}

/// The served models and what is in memory (see the module docs).
pub struct Models {
    /// Several models by name (else one pinned model).
    multi: bool,
    /// The set is the cache's: a model pulled later joins it.
    from_cache: bool,
    keep_alive: KeepAlive,
    max_loaded: usize,
    max_memory: Option<u64>,
    cfg: ServerConfig,
    inner: Mutex<Inner>,
    /// Wakes the [`reaper`] (a model may have expired).
    wake: Notify,
}

impl Models {
    /// The models of `cfg`: its `models` in multi-model mode, else its one `model_path`.
    pub fn new(cfg: &ServerConfig) -> Models {
        let mut entries = BTreeMap::new();
        if cfg.multi {
            for m in &cfg.models {
                entries.insert(m.id.clone(), Entry::new(m.path.clone()));
            }
        } else {
            entries.insert(cfg.model_id.clone(), Entry::new(cfg.model_path.clone()));
        }
        Models {
            multi: cfg.multi,
            from_cache: cfg.multi && cfg.from_cache,
            keep_alive: if cfg.multi {
                cfg.keep_alive
            } else {
                KeepAlive::Forever
            },
            max_loaded: cfg.max_loaded.max(1),
            max_memory: cfg.max_memory,
            cfg: cfg.clone(),
            inner: Mutex::new(Inner { entries }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, msg: String) {
        if self.cfg.log {
            eprintln!("lume serve: {msg}");
        }
    }

    pub fn multi(&self) -> bool {
        self.multi
    }

    /// The default `keep_alive` (`--keep-alive`; forever with one model).
    pub fn keep_alive(&self) -> KeepAlive {
        self.keep_alive
    }

    pub fn max_loaded(&self) -> usize {
        self.max_loaded
    }

    pub fn max_memory(&self) -> Option<u64> {
        self.max_memory
    }

    /// The names served, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().entries.keys().cloned().collect()
    }

    /// With the cache as the set: adds the catalogue models cached since (a pull, another
    /// `lume pull`).
    pub fn rescan(&self) {
        if !self.from_cache {
            return;
        }
        let found = hub::cached();
        let mut g = self.lock();
        for (e, path) in found {
            if !g.entries.contains_key(e.name) {
                g.entries.insert(e.name.to_string(), Entry::new(path));
            }
        }
    }

    /// The served id a request's `model` names (ollama's `:latest` tag is dropped). One model:
    /// empty, absent, `default` or its id. Several: a name is needed.
    pub fn resolve(&self, name: Option<&str>) -> Result<String, ServerError> {
        let name = name.map(str::trim).unwrap_or("");
        let known = |n: &str| {
            let g = self.lock();
            if g.entries.contains_key(n) {
                return Some(n.to_string());
            }
            let short = n.strip_suffix(":latest")?;
            g.entries.contains_key(short).then(|| short.to_string())
        };
        if !self.multi {
            if name.is_empty() || name == "default" {
                return Ok(self.cfg.model_id.clone());
            }
            return known(name).ok_or_else(|| self.not_found(name));
        }
        if name.is_empty() || name == "default" {
            return Err(ServerError::BadRequest {
                message: format!(
                    "'model' is required: this server serves several models ({}); name one",
                    self.names().join(", ")
                ),
                param: Some("model".into()),
                code: Some("model_required"),
            });
        }
        if let Some(id) = known(name) {
            return Ok(id);
        }
        self.rescan();
        known(name).ok_or_else(|| self.not_found(name))
    }

    /// The 404 for a model not served, naming it and what is served.
    pub fn not_found(&self, name: &str) -> ServerError {
        let message = if self.multi {
            let names = self.names();
            if names.is_empty() {
                format!("model '{name}' not found; no model is in the cache (lume pull NAME)")
            } else {
                format!(
                    "model '{name}' not found; this server serves: {}",
                    names.join(", ")
                )
            }
        } else {
            format!(
                "model '{name}' not found; this server serves '{}'",
                self.cfg.model_id
            )
        };
        ServerError::NotFound {
            message,
            param: Some("model".into()),
            code: "model_not_found",
        }
    }

    /// Puts the model loaded at start into its entry (one model).
    pub fn set_resident(&self, id: &str, r: Resident, load_seconds: f64) {
        let mut g = self.lock();
        if let Some(e) = g.entries.get_mut(id) {
            e.state = State::Ready(Arc::new(r));
            e.loads += 1;
            e.load_seconds += load_seconds;
            e.expires = None;
        }
    }

    /// Whether the one model is loaded (multi-model mode: always ready).
    pub fn ready(&self) -> bool {
        self.multi || self.lock().entries.values().any(|e| e.ready().is_some())
    }

    /// The file (or folder) of model `id`.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        self.lock().entries.get(id).map(|e| e.path.clone())
    }

    /// Every model served, sorted by name.
    pub fn list(&self) -> Vec<Listing> {
        let g = self.lock();
        let now = Instant::now();
        let wall = SystemTime::now();
        g.entries
            .iter()
            .map(|(id, e)| {
                let resident = e.ready().cloned();
                let expires_at = match (&resident, e.expires) {
                    (Some(_), Some(t)) => {
                        let left = t.saturating_duration_since(now);
                        Some(wall.checked_add(left).unwrap_or(wall))
                    }
                    _ => None,
                };
                Listing {
                    id: id.clone(),
                    path: e.path.clone(),
                    busy: resident
                        .as_ref()
                        .map_or(0, |r| r.busy.load(Ordering::Acquire)),
                    resident,
                    loading: matches!(e.state, State::Loading { .. }),
                    expires_at,
                    digest: Arc::clone(&e.digest),
                    loads: e.loads,
                    load_seconds: e.load_seconds,
                    unloads: e.unloads.clone(),
                }
            })
            .collect()
    }

    /// The model `id` for a request, loading it first when needed (multi-model mode; one
    /// model: [`ServerError::Loading`] until it is loaded). `keep` is how long it stays after
    /// the request (the server's `--keep-alive` unless the request says).
    pub async fn acquire(
        self: &Arc<Self>,
        id: &str,
        keep: Option<KeepAlive>,
    ) -> Result<Lease, ServerError> {
        let keep = keep.unwrap_or(self.keep_alive);
        loop {
            let mut rx = match self.step(id, keep)? {
                Step::Ready(lease) => return Ok(lease),
                Step::Wait(rx) => rx,
                Step::Estimate(path) => {
                    let opts = self.cfg.scheduler.clone();
                    let bytes = tokio::task::spawn_blocking(move || estimate(&path, &opts))
                        .await
                        .unwrap_or(0);
                    if let Some(e) = self.lock().entries.get_mut(id) {
                        e.estimate.get_or_insert(bytes);
                    }
                    continue;
                }
            };
            let outcome = match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => Some(Err("the loader stopped".into())),
            };
            drop(rx);
            match outcome {
                Some(Ok(lease)) => return Ok(lease.with_keep(keep)),
                Some(Err(msg)) => {
                    return Err(ServerError::Internal(format!(
                        "model '{id}' could not be loaded: {msg}"
                    )))
                }
                None => {}
            }
        }
    }

    /// What [`Models::acquire`] does next, decided under the lock.
    fn step(self: &Arc<Self>, id: &str, keep: KeepAlive) -> Result<Step, ServerError> {
        let mut g = self.lock();
        let e = g.entries.get_mut(id).ok_or_else(|| self.not_found(id))?;
        let bytes = match &e.state {
            State::Ready(r) => {
                let r = Arc::clone(r);
                r.busy.fetch_add(1, Ordering::AcqRel);
                let now = Instant::now();
                e.last_used = now;
                if self.multi {
                    // While it runs; set again when it ends.
                    e.expires = keep.deadline(now);
                }
                return Ok(Step::Ready(Lease {
                    models: Arc::clone(self),
                    id: id.to_string(),
                    res: Some(r),
                    keep,
                }));
            }
            State::Loading { done, .. } => return Ok(Step::Wait(done.clone())),
            State::Unloaded if !self.multi => return Err(ServerError::Loading),
            State::Unloaded => match e.estimate {
                Some(b) => b,
                None => return Ok(Step::Estimate(e.path.clone())),
            },
        };
        let evicted = self.make_room(&mut g, id, bytes)?;
        let rx = self.start_load(&mut g, id, bytes);
        drop(g);
        for (name, r) in evicted {
            self.log(format!(
                "unloaded '{name}' (evicted: loading '{id}' needs its place)"
            ));
            dispose(r);
        }
        Ok(Step::Wait(rx))
    }

    /// Takes out the idle models (least recently used first) that must go for `id`
    /// (`bytes`) to fit the budget, or says why it cannot fit (then nothing is taken out).
    fn make_room(
        &self,
        g: &mut Inner,
        id: &str,
        bytes: u64,
    ) -> Result<Vec<(String, Arc<Resident>)>, ServerError> {
        if let Some(max) = self.max_memory {
            if bytes > max {
                return Err(ServerError::BadRequest {
                    message: format!(
                        "model '{id}' needs about {} (file and KV cache at --ctx-size/--parallel), more than --max-memory {}",
                        human_bytes(bytes),
                        human_bytes(max)
                    ),
                    param: Some("model".into()),
                    code: Some("model_too_large"),
                });
            }
        }
        let held: Vec<(&String, u64)> = g
            .entries
            .iter()
            .filter(|(n, _)| n.as_str() != id)
            .filter_map(|(n, e)| e.held_bytes().map(|b| (n, b)))
            .collect();
        let mut n = held.len();
        let mut mem: u64 = held.iter().map(|(_, b)| *b).fold(0, u64::saturating_add);
        let fits = |n: usize, mem: u64| {
            n < self.max_loaded
                && self
                    .max_memory
                    .is_none_or(|m| mem.saturating_add(bytes) <= m)
        };
        if fits(n, mem) {
            return Ok(Vec::new());
        }
        let mut idle: Vec<(Instant, String, u64)> = g
            .entries
            .iter()
            .filter(|(n, _)| n.as_str() != id)
            .filter_map(|(n, e)| {
                let r = e.ready()?;
                (r.busy.load(Ordering::Acquire) == 0).then(|| (e.last_used, n.clone(), r.bytes))
            })
            .collect();
        idle.sort();
        let mut chosen = Vec::new();
        for (_, name, b) in idle {
            if fits(n, mem) {
                break;
            }
            n -= 1;
            mem = mem.saturating_sub(b);
            chosen.push(name);
        }
        if !fits(n, mem) {
            let what = match self.max_memory {
                Some(m) => format!(
                    "--max-loaded {} and --max-memory {} (about {} in use)",
                    self.max_loaded,
                    human_bytes(m),
                    human_bytes(held.iter().map(|(_, b)| *b).fold(0, u64::saturating_add))
                ),
                None => format!("--max-loaded {}", self.max_loaded),
            };
            return Err(ServerError::NoRoom(format!(
                "model '{id}' cannot be loaded now: the models in memory are all serving requests or loading ({}) and the budget is {what}; retry later",
                held.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut out = Vec::new();
        for name in chosen {
            if let Some(e) = g.entries.get_mut(&name) {
                if let State::Ready(r) = std::mem::replace(&mut e.state, State::Unloaded) {
                    *e.unloads.entry(Unload::Evicted).or_insert(0) += 1;
                    e.expires = None;
                    out.push((name, r));
                }
            }
        }
        Ok(out)
    }

    /// Marks `id` loading and starts its load on the blocking pool; the answer tells when it
    /// ended.
    fn start_load(self: &Arc<Self>, g: &mut Inner, id: &str, bytes: u64) -> Done {
        let (tx, rx) = watch::channel(None);
        let Some(e) = g.entries.get_mut(id) else {
            let _ = tx.send(Some(Err("the model left the list".into())));
            return rx;
        };
        e.state = State::Loading {
            bytes,
            done: rx.clone(),
        };
        let path = e.path.clone();
        let me = Arc::clone(self);
        let id = id.to_string();
        self.log(format!("loading '{id}' ({})", path.display()));
        tokio::spawn(async move {
            let t0 = Instant::now();
            let cfg = me.cfg.clone();
            let r = tokio::task::spawn_blocking(move || load(&path, &cfg)).await;
            let secs = t0.elapsed().as_secs_f64();
            let r = match r {
                Ok(r) => r,
                Err(e) => Err(format!("the loader failed: {e}")),
            };
            let outcome = {
                let mut g = me.lock();
                match (g.entries.get_mut(&id), r) {
                    (Some(e), Ok(res)) => {
                        let now = Instant::now();
                        e.loads += 1;
                        e.load_seconds += secs;
                        e.last_used = now;
                        e.expires = me.keep_alive.deadline(now);
                        e.estimate = Some(res.bytes);
                        let what = describe(&res);
                        let res = Arc::new(res);
                        e.state = State::Ready(Arc::clone(&res));
                        me.log(format!("model '{id}' loaded in {secs:.1} s: {what}"));
                        res.busy.fetch_add(1, Ordering::AcqRel);
                        Ok(Lease {
                            models: Arc::clone(&me),
                            id: id.clone(),
                            res: Some(res),
                            keep: me.keep_alive,
                        })
                    }
                    (Some(e), Err(msg)) => {
                        e.state = State::Unloaded;
                        me.log(format!("model '{id}' failed to load: {msg}"));
                        Err(msg)
                    }
                    (None, Ok(_)) => Err("the model left the list".into()),
                    (None, Err(msg)) => Err(msg),
                }
            };
            // With no waiter left (all gone), the lease comes back and is dropped here: the
            // model then expires as usual.
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// A lease ended: the model's `keep_alive` starts again from now.
    fn released(&self, id: &str, res: &Arc<Resident>, keep: KeepAlive) {
        if !self.multi {
            return;
        }
        let mut g = self.lock();
        if let Some(e) = g.entries.get_mut(id) {
            if e.ready().is_some_and(|r| Arc::ptr_eq(r, res)) {
                let now = Instant::now();
                e.last_used = now;
                e.expires = keep.deadline(now);
            }
        }
        drop(g);
        // The reaper may be asleep until a later time, or not waiting for this model at all
        // (it skips models under a request).
        self.wake.notify_one();
    }

    /// ollama's unload request (`keep_alive: 0` without a prompt): `id` unloads as soon as no
    /// request holds it. Nothing happens to a model that is not loaded (or with one model).
    pub fn unload_soon(&self, id: &str) {
        if !self.multi {
            return;
        }
        if let Some(e) = self.lock().entries.get_mut(id) {
            if e.ready().is_some() {
                e.expires = Some(Instant::now());
            }
        }
        self.wake.notify_one();
    }

    /// Unloads the idle models whose time is up; returns when the next one is due.
    fn reap(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut gone = Vec::new();
        let mut next: Option<Instant> = None;
        {
            let mut g = self.lock();
            for (name, e) in g.entries.iter_mut() {
                let (Some(r), Some(t)) = (e.ready(), e.expires) else {
                    continue;
                };
                if t > now {
                    next = Some(next.map_or(t, |n| n.min(t)));
                } else if r.busy.load(Ordering::Acquire) == 0 {
                    if let State::Ready(r) = std::mem::replace(&mut e.state, State::Unloaded) {
                        *e.unloads.entry(Unload::Expired).or_insert(0) += 1;
                        e.expires = None;
                        gone.push((name.clone(), r));
                    }
                }
                // Expired but busy: its lease's end sets a new time and wakes us.
            }
        }
        for (name, r) in gone {
            self.log(format!("unloaded '{name}' (keep_alive expired)"));
            dispose(r);
        }
        next
    }

    /// Stops every loaded model, letting requests in flight finish for `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let all: Vec<Arc<Resident>> = self
            .lock()
            .entries
            .values()
            .filter_map(|e| e.ready().cloned())
            .collect();
        std::thread::scope(|s| {
            for r in &all {
                s.spawn(move || {
                    if let Kind::Language(l) = &r.kind {
                        l.sched.shutdown(grace);
                    }
                });
            }
        });
    }
}

/// Frees a model taken out of the list, on the blocking pool (stopping a scheduler joins its
/// thread).
fn dispose(r: Arc<Resident>) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(move || r.stop());
        }
        Err(_) => r.stop(),
    }
}

/// The "loaded" log line's details.
fn describe(r: &Resident) -> String {
    match &r.kind {
        Kind::Language(l) => format!(
            "{} slots x {} tokens of context, about {}{}",
            l.sched.n_slots(),
            l.sched.n_ctx(),
            human_bytes(r.bytes),
            if l.template.is_some() {
                ""
            } else {
                ", no chat template (chat routes answer 400)"
            }
        ),
        Kind::Encoder(q) => format!(
            "{} ({} dimensions), about {}",
            if q.model().can_rerank() {
                "cross-encoder"
            } else {
                "embedding model"
            },
            q.model().dim(),
            human_bytes(r.bytes)
        ),
    }
}

/// Loads `path` as what it is (blocking).
fn load(path: &Path, cfg: &ServerConfig) -> Result<Resident, String> {
    let served =
        engine::embeddings::load_served(path, &cfg.scheduler).map_err(|e| e.to_string())?;
    Ok(match served {
        Served::Encoder(q) => Resident::new(Kind::Encoder(q), path_size(path)),
        Served::Language(sched) => {
            let bytes = language_bytes(&sched, cfg.scheduler.kv_type);
            let warm = sched.clone();
            // The vocabulary's token trie for constrained requests, built beside the first
            // requests rather than in one of them.
            std::thread::spawn(move || warm.prepare_grammars());
            Resident::new(Kind::Language(Arc::new(Loaded::new(sched, cfg))), bytes)
        }
    })
}

/// The next move of [`Models::acquire`].
enum Step {
    Ready(Lease),
    /// Until its load ends.
    Wait(Done),
    /// Its memory estimate is needed first (read off the lock: it opens the file).
    Estimate(PathBuf),
}

/// A held model: the request running on it keeps it in memory until this is dropped.
pub struct Lease {
    models: Arc<Models>,
    id: String,
    /// Always `Some` until dropped.
    res: Option<Arc<Resident>>,
    keep: KeepAlive,
}

impl Lease {
    /// The served id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn kind(&self) -> Option<&Kind> {
        self.res.as_ref().map(|r| &r.kind)
    }

    /// The same hold, kept for `keep` after it ends.
    fn with_keep(mut self, keep: KeepAlive) -> Lease {
        self.keep = keep;
        self
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        if let Some(r) = &self.res {
            r.busy.fetch_add(1, Ordering::AcqRel);
        }
        Lease {
            models: Arc::clone(&self.models),
            id: self.id.clone(),
            res: self.res.clone(),
            keep: self.keep,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.res.take() {
            r.busy.fetch_sub(1, Ordering::AcqRel);
            self.models.released(&self.id, &r, self.keep);
        }
    }
}

/// A held language model.
#[derive(Clone)]
pub struct Model {
    loaded: Arc<Loaded>,
    lease: Lease,
}

impl Model {
    /// The served id (what responses name).
    pub fn id(&self) -> &str {
        self.lease.id()
    }

    /// Another hold on it (for a stream's body).
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// `lease`'s model if it is a language model; else the 400 saying it only embeds.
    pub fn of(lease: Lease) -> Result<Model, ServerError> {
        match lease.kind() {
            Some(Kind::Language(l)) => Ok(Model {
                loaded: Arc::clone(l),
                lease,
            }),
            Some(Kind::Encoder(q)) => Err(ServerError::bad(
                format!(
                    "model '{}' is an embedding model ({}): it cannot generate; use /v1/embeddings{}",
                    lease.id(),
                    q.model().path().display(),
                    if q.model().can_rerank() {
                        " or /v1/rerank"
                    } else {
                        ""
                    }
                ),
                "model",
            )),
            None => Err(ServerError::Internal("the model is gone".into())),
        }
    }
}

impl Deref for Model {
    type Target = Loaded;
    fn deref(&self) -> &Loaded {
        &self.loaded
    }
}

/// Estimated memory of the model at `path` once loaded with `opts`: its size on disk, plus
/// for a language model its KV cache (`--parallel` slots of `--ctx-size` tokens, or the
/// model's context capped at [`engine::DEFAULT_MAX_CTX`]). Blocking (reads the file's header).
pub fn estimate(path: &Path, opts: &SchedulerOptions) -> u64 {
    let size = path_size(path);
    if path.is_dir() {
        return size;
    }
    let Ok(f) = gguf::GgufFile::open(path) else {
        return size;
    };
    if engine::embeddings::is_encoder_gguf(&f) {
        return size;
    }
    let arch = f.get_str("general.architecture").unwrap_or("");
    let train = f
        .get_u32(&format!("{arch}.context_length"))
        .map_or(0, |v| v as usize);
    let n_ctx = if opts.n_ctx > 0 {
        opts.n_ctx
    } else if train > 0 {
        train.min(engine::DEFAULT_MAX_CTX)
    } else {
        engine::DEFAULT_MAX_CTX
    };
    size.saturating_add(kv_bytes(&f, opts.n_slots.max(1), n_ctx, opts.kv_type))
}

/// The memory estimate of a loaded language model: its file and its KV cache.
pub fn language_bytes(sched: &Scheduler, ty: KvType) -> u64 {
    path_size(sched.path()).saturating_add(kv_bytes(
        sched.gguf(),
        sched.n_slots(),
        sched.n_ctx(),
        ty,
    ))
}

/// Bytes of the keys and values of `n_slots` sequences of `n_ctx` tokens of the model in `f`
/// (0 when its header does not say).
fn kv_bytes(f: &gguf::GgufFile, n_slots: usize, n_ctx: usize, ty: KvType) -> u64 {
    let arch = f.get_str("general.architecture").unwrap_or("");
    let get = |k: &str| {
        f.get_u32(&format!("{arch}.{k}"))
            .ok()
            .map(u64::from)
            .filter(|&v| v > 0)
    };
    let (Some(n_layer), Some(n_head), Some(n_embd)) = (
        get("block_count"),
        get("attention.head_count"),
        get("embedding_length"),
    ) else {
        return 0;
    };
    let n_head_kv = get("attention.head_count_kv").unwrap_or(n_head);
    let head_k = get("attention.key_length").unwrap_or(n_embd / n_head);
    let head_v = get("attention.value_length").unwrap_or(head_k);
    // Bytes of one position's keys and values in one layer (block types: per 32 values).
    let row = n_head_kv.saturating_mul(head_k.saturating_add(head_v));
    let row_bytes = ty.bytes(usize::try_from(row).unwrap_or(usize::MAX)) as u64;
    [n_layer, n_slots as u64, n_ctx as u64, row_bytes]
        .into_iter()
        .fold(1u64, u64::saturating_mul)
}

/// Bytes under `p` (a file, or a model folder).
pub fn path_size(p: &Path) -> u64 {
    fn walk(p: &Path, depth: usize) -> u64 {
        match std::fs::metadata(p) {
            Ok(md) if md.is_file() => md.len(),
            Ok(md) if md.is_dir() && depth < 8 => std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| walk(&e.path(), depth + 1))
                        .fold(0, u64::saturating_add)
                })
                .unwrap_or(0),
            _ => 0,
        }
    }
    walk(p, 0)
}

/// `2.1 GiB`, `512 MiB`.
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    const K: f64 = 1024.0;
    if f >= K * K * K {
        format!("{:.1} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.0} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.0} KiB", f / K)
    } else {
        format!("{b} B")
    }
}

/// Unloads expired models until the server stops (multi-model mode).
pub async fn reaper(models: Arc<Models>) {
    loop {
        let next = models.reap();
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60))
            // A lease ending at the deadline may wake us a hair early.
            .max(Duration::from_millis(5));
        tokio::select! {
            _ = models.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(300 << 20), "300 MiB");
    }
}
