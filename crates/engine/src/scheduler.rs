//! [`Scheduler`]: many requests sharing one model, with continuous batching.
//!
//! One thread (the *loop*) owns the model and a KV cache of `n_slots` independent slots. Every
//! step it builds one batch from all active sequences: the next token of each generating
//! sequence, plus chunks of the prompts of sequences still reading theirs (chunked prefill,
//! at most `step_tokens` tokens per step in all, so running streams keep their pace while a
//! long prompt comes in). A request submitted between steps joins at the next step.
//!
//! Requests beyond the free slots wait in a bounded queue ([`SchedulerOptions::queue`]); past
//! it [`Scheduler::submit`] refuses with [`SubmitError::QueueFull`]. A request whose prompt
//! starts like what an idle slot holds takes that slot and skips the shared prefix (reported
//! as [`Event::Started::cached`]).
//!
//! Each request reports through its [`Sink`], a callback run on the loop thread: it must not
//! block (a server hands the event to an async channel). Returning `false` cancels the request
//! (a client that went away); its slot is free at the next step.
//!
//! With [`SchedulerOptions::batch_invariant`] (the default), a request's tokens and log-probabilities do not
//! depend on which other requests share its batches nor on how its prompt was cut into chunks
//! (see `kernels::set_batch_invariant`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gguf::GgufFile;
use model::{Batch, KvCache, KvType, Model, ModelInfo};
use sampling::Sampler;
use tokenizer::Tokenizer;

use grammar::{Constraint, Spec};

use crate::chat::ChatTemplate;
use crate::error::SubmitError;
use crate::guided::GrammarCell;
use crate::logprobs::top_logprobs;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::session::StopReason;
use crate::text::TextStream;
use crate::{EngineError, GenerateParams};

/// How the scheduler is set up.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Sequences served at once (KV-cache slots).
    pub n_slots: usize,
    /// Context per slot in tokens (0 = the model's, capped at [`crate::DEFAULT_MAX_CTX`]).
    pub n_ctx: usize,
    /// Requests that may wait for a slot; more are refused.
    pub queue: usize,
    /// Most tokens evaluated in one step (decode tokens first, then prompt chunks).
    pub step_tokens: usize,
    /// While some sequences generate, the prompt tokens of a step may add at most this
    /// fraction of a decode-only step's time (1.0: a mixed step lasts at most about twice a
    /// plain one). At least [`MIN_CHUNK`] prompt tokens go in each step regardless.
    pub prefill_share: f64,
    /// Kernel worker threads (0 = the pool's default).
    pub threads: usize,
    pub kv_type: KvType,
    /// Results independent of batching (see the module docs; on by default: measured, it costs
    /// nothing, see docs/PERFORMANCE.md). Process-wide: it switches the kernels' mode.
    pub batch_invariant: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            n_slots: 4,
            n_ctx: 0,
            queue: 64,
            step_tokens: 512,
            prefill_share: 1.0,
            threads: 0,
            kv_type: KvType::F16,
            batch_invariant: true,
        }
    }
}

/// One request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// `max_tokens` (0 = only the prompt is evaluated, e.g. for scoring), sampler, stop
    /// strings, and `logprobs` = top-N alternatives reported per generated token.
    pub params: GenerateParams,
    /// `Some(n)`: report the log-probability of every prompt token given the ones before it,
    /// with its `n` most likely alternatives ([`Event::PromptLogprobs`]).
    pub prompt_logprobs: Option<usize>,
    /// Added to the logits of these tokens before sampling (`f32::NEG_INFINITY` bans one).
    pub logit_bias: Vec<(u32, f32)>,
}

/// A token with its log-probability and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    /// Log-probability of `id` (log-softmax of the raw logits).
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One generated token.
#[derive(Clone, Debug)]
pub struct GenToken {
    pub id: u32,
    /// Text that became printable with this token (whole UTF-8 characters; stop strings and
    /// what may start one are held back; the last token carries the rest).
    pub text: String,
    /// With `params.logprobs > 0` or `prompt_logprobs`: the token's log-probability and the
    /// top alternatives (`params.logprobs` of them).
    pub logprob: Option<TokenLogprob>,
    /// An end-of-generation token (no text).
    pub is_eog: bool,
}

/// How a request ended.
#[derive(Clone, Copy, Debug)]
pub struct Finish {
    pub reason: StopReason,
    pub n_prompt: usize,
    /// Prompt tokens reused from the slot's cache (not evaluated).
    pub n_cached: usize,
    /// Generated tokens (an end-of-generation token counts).
    pub n_gen: usize,
    /// Waiting for a slot.
    pub queue_ms: f64,
    /// From taking a slot to the first token (or to the end of the prompt for scoring).
    pub prompt_ms: f64,
    /// From the first token to the last.
    pub gen_ms: f64,
}

/// What a request reports, in order: `Started`, `PromptLogprobs` (when asked), `Token`s,
/// then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    /// The request has a slot; `cached` prompt tokens were already in it.
    Started {
        n_prompt: usize,
        cached: usize,
    },
    /// Entry `i` is `prompt[i]` given `prompt[..i]` (entry 0 is `None`).
    PromptLogprobs(Vec<Option<TokenLogprob>>),
    Token(GenToken),
    Done(Finish),
    Error(EngineError),
}

/// Receives a request's events on the loop thread; `false` cancels the request.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// The id of a submitted request (for [`Scheduler::cancel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// What one slot is doing (for `/slots`).
#[derive(Clone, Debug)]
pub struct SlotInfo {
    pub id: usize,
    /// Serving a request.
    pub busy: bool,
    /// Tokens in the slot's cache.
    pub n_cached: usize,
    /// The request it serves.
    pub request: Option<RequestId>,
    /// Prompt tokens still to evaluate.
    pub n_prompt_left: usize,
    /// Tokens generated so far.
    pub n_gen: usize,
}

/// A request waiting for a slot.
struct Pending {
    id: RequestId,
    req: Request,
    sink: Sink,
    arrived: Instant,
}

/// What submitters and the loop share (under [`Shared::state`]).
struct State {
    queue: VecDeque<Pending>,
    cancelled: Vec<RequestId>,
    /// No new requests; the loop ends once everything in flight is done.
    closing: bool,
    /// End now: cancel whatever is left.
    stop_now: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on submit, cancel and shutdown (the loop waits on it when idle), and by the
    /// loop when it finishes.
    wake: Condvar,
    metrics: Mutex<Metrics>,
    /// What each slot is doing (updated by the loop as requests come and go).
    slots: Mutex<Vec<SlotInfo>>,
    /// Requests holding a slot.
    running: AtomicUsize,
    next_id: AtomicU64,
    done: AtomicBool,
}

/// Many requests, one model: a handle to the loop thread (cheap to clone; the loop stops when
/// [`Scheduler::shutdown`] is called or the last handle is dropped).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tokenizer: Arc<Tokenizer>,
    model: Arc<Model>,
    path: PathBuf,
    n_ctx: usize,
    n_slots: usize,
    queue_limit: usize,
    grammars: GrammarCell,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.closing = true;
            st.stop_now = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("file", &self.inner.path)
            .field("n_slots", &self.inner.n_slots)
            .field("n_ctx", &self.inner.n_ctx)
            .finish()
    }
}

/// Fewest prompt tokens a step takes while streams generate (so a long prompt always advances).
pub const MIN_CHUNK: usize = 8;

/// Most prompt-logprob alternatives or per-token alternatives a request may ask for.
pub const MAX_TOP_LOGPROBS: usize = 20;

impl Scheduler {
    /// Loads the model at `path` and starts the loop thread.
    pub fn load(path: impl AsRef<Path>, opts: &SchedulerOptions) -> Result<Scheduler, EngineError> {
        Scheduler::from_gguf(GgufFile::open(path.as_ref())?, opts)
    }

    /// [`Scheduler::load`] of a file already open.
    pub fn from_gguf(file: GgufFile, opts: &SchedulerOptions) -> Result<Scheduler, EngineError> {
        if opts.threads > 0 {
            kernels::set_num_threads(opts.threads);
        }
        kernels::set_batch_invariant(opts.batch_invariant);
        let path = file.path().to_path_buf();
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let model = Model::from_gguf(file).map_err(|e| crate::backend::model_err(&path, e))?;
        let n_ctx = crate::backend::context_size(&model, opts.n_ctx, &path)?;
        let n_slots = opts.n_slots.max(1);
        let cache = model
            .new_cache_windowed(n_slots, n_ctx, opts.kv_type)
            .map_err(|e| crate::backend::model_err(&path, e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                cancelled: Vec::new(),
                closing: false,
                stop_now: false,
            }),
            slots: Mutex::new((0..n_slots).map(SlotInfo::idle).collect()),
            running: AtomicUsize::new(0),
            wake: Condvar::new(),
            metrics: Mutex::new(Metrics::new(n_slots, n_ctx)),
            next_id: AtomicU64::new(1),
            done: AtomicBool::new(false),
        });
        let tokenizer = Arc::new(tokenizer);
        let model = Arc::new(model);
        let lp = Loop::new(
            Arc::clone(&model),
            Arc::clone(&tokenizer),
            cache,
            Arc::clone(&shared),
            opts.step_tokens.clamp(1, model::MAX_BATCH),
            opts.prefill_share.max(0.0),
            path.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("lume-scheduler".into())
            .spawn(move || lp.run())
            .map_err(|e| EngineError::Internal {
                msg: format!("could not start the scheduler thread: {e}"),
            })?;
        Ok(Scheduler {
            inner: Arc::new(Inner {
                shared,
                tokenizer,
                model,
                path,
                n_ctx,
                n_slots,
                queue_limit: opts.queue,
                grammars: GrammarCell::default(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn gguf(&self) -> &GgufFile {
        self.inner.model.gguf()
    }

    pub fn info(&self) -> &ModelInfo {
        self.inner.model.info()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// The model's chat template ([`EngineError::NoChatTemplate`] for base models).
    pub fn chat_template(&self) -> Result<ChatTemplate, EngineError> {
        ChatTemplate::from_gguf(self.gguf())
    }

    /// Context per slot.
    pub fn n_ctx(&self) -> usize {
        self.inner.n_ctx
    }

    pub fn n_slots(&self) -> usize {
        self.inner.n_slots
    }

    /// Compiles a JSON schema, regex or grammar for [`GenerateParams::constraint`] (the first
    /// call builds the vocabulary's token trie). Run it off the async runtime: a large schema
    /// takes milliseconds.
    pub fn compile(&self, spec: &Spec) -> Result<Constraint, EngineError> {
        self.inner
            .grammars
            .compile(&self.inner.tokenizer, self.info().vocab, spec)
    }

    /// Builds the vocabulary's token trie now rather than at the first [`Scheduler::compile`]
    /// (an error is reported by that call instead).
    pub fn prepare_grammars(&self) {
        let _ = self.compile(&Spec::Regex(String::new()));
    }

    /// Checks a request as [`Scheduler::submit`] would, without queueing it.
    pub fn validate(&self, req: &Request) -> Result<(), EngineError> {
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let n_vocab = self.info().vocab;
        let ids = req
            .prompt
            .iter()
            .chain(req.logit_bias.iter().map(|(t, _)| t));
        if let Some(&bad) = ids.into_iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::BadToken { id: bad, n_vocab });
        }
        if req.prompt.len() > self.inner.n_ctx {
            return Err(EngineError::ContextTooLong {
                n_tokens: req.prompt.len(),
                n_ctx: self.inner.n_ctx,
            });
        }
        req.params.sampler.validate()?;
        Ok(())
    }

    /// Queues `req`; its events go to `sink` (on the loop thread).
    pub fn submit(&self, req: Request, sink: Sink) -> Result<RequestId, SubmitError> {
        self.validate(&req)?;
        let mut req = req;
        req.params.logprobs = req.params.logprobs.min(MAX_TOP_LOGPROBS);
        if let Some(n) = req.prompt_logprobs.as_mut() {
            *n = (*n).min(MAX_TOP_LOGPROBS);
        }
        let shared = &self.inner.shared;
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closing {
            return Err(SubmitError::ShuttingDown);
        }
        // Requests that can start at once (a free slot) never count against the queue.
        let running = shared.running.load(Ordering::Acquire);
        let free = self.inner.n_slots.saturating_sub(running);
        let waiting = st.queue.len().saturating_sub(free);
        if st.queue.len() >= free + self.inner.queue_limit {
            drop(st);
            shared
                .metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rejected += 1;
            return Err(SubmitError::QueueFull {
                waiting,
                limit: self.inner.queue_limit,
            });
        }
        let id = RequestId(shared.next_id.fetch_add(1, Ordering::Relaxed));
        st.queue.push_back(Pending {
            id,
            req,
            sink,
            arrived: Instant::now(),
        });
        drop(st);
        shared.wake.notify_all();
        Ok(id)
    }

    /// Cancels a request (queued or running); its sink gets no further events.
    pub fn cancel(&self, id: RequestId) {
        let shared = &self.inner.shared;
        shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cancelled
            .push(id);
        shared.wake.notify_all();
    }

    /// A copy of the counters and histograms.
    pub fn metrics(&self) -> MetricsSnapshot {
        let st = self
            .inner
            .shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let waiting = st.queue.len();
        drop(st);
        let running = self.inner.shared.running.load(Ordering::Acquire);
        let mut m = self
            .inner
            .shared
            .metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        m.running = running;
        m.waiting = waiting;
        m
    }

    /// What each slot is doing.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let sl = self
            .inner
            .shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sl.clone()
    }

    /// Stops accepting requests and lets the ones in flight (running and queued) finish for at
    /// most `grace`; what is left then is cancelled. Returns when the loop has ended.
    pub fn shutdown(&self, grace: Duration) {
        let shared = &self.inner.shared;
        let deadline = Instant::now() + grace;
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closing = true;
        shared.wake.notify_all();
        while !shared.done.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= deadline {
                st.stop_now = true;
                shared.wake.notify_all();
                break;
            }
            st = shared
                .wake
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        if let Some(t) = self.inner.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl SlotInfo {
    fn idle(id: usize) -> SlotInfo {
        SlotInfo {
            id,
            busy: false,
            n_cached: 0,
            request: None,
            n_prompt_left: 0,
            n_gen: 0,
        }
    }
}

/// A request being served in a slot.
struct Active {
    id: RequestId,
    req: Request,
    sink: Sink,
    sampler: Sampler,
    stream: TextStream,
    /// The request's grammar (taken out of its params), if it has one.
    constraint: Option<Constraint>,
    /// Next prompt index to evaluate (`== prompt.len()` once the prompt is read).
    next: usize,
    n_cached: usize,
    n_gen: usize,
    /// Prompt and generated tokens (for the penalties).
    history: Vec<u32>,
    /// The last sampled token, to be fed at the next step.
    feed: Option<u32>,
    prompt_lp: Vec<Option<TokenLogprob>>,
    arrived: Instant,
    started: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

struct Slot {
    /// Tokens whose keys and values are in the slot, positions 0.. in order.
    cached: Vec<u32>,
    active: Option<Active>,
    /// Step at which the slot was last used (least recently used slots are taken first).
    used: u64,
}

/// The loop thread's own state.
struct Loop {
    model: Arc<Model>,
    tok: Arc<Tokenizer>,
    cache: KvCache,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    step_tokens: usize,
    prefill_share: f64,
    /// Running estimates (exponential averages, seconds): a decode-only step, and the extra
    /// time per prompt token in a step.
    t_decode: Option<f64>,
    t_prompt_token: Option<f64>,
    path: PathBuf,
    batch: Batch,
    /// `[rows, n_vocab]` logits of the last forward.
    logits: Vec<f32>,
    /// Per batch entry with logits: (slot, prompt index or `usize::MAX` for a decode token).
    rows: Vec<(usize, usize)>,
    /// `[n_vocab]` logits with the request's bias applied.
    biased: Vec<f32>,
    top: Vec<(u32, f32)>,
    text: String,
    /// Slots reading their prompts, oldest request first (reused every step).
    order: Vec<usize>,
    step: u64,
}

/// Why a request leaves its slot.
enum Leave {
    Done(StopReason),
    Cancelled,
}

impl Loop {
    fn new(
        model: Arc<Model>,
        tok: Arc<Tokenizer>,
        cache: KvCache,
        shared: Arc<Shared>,
        step_tokens: usize,
        prefill_share: f64,
        path: PathBuf,
    ) -> Loop {
        let n_slots = shared.slots.lock().map(|s| s.len()).unwrap_or(1);
        let n_vocab = model.info().vocab;
        Loop {
            model,
            tok,
            cache,
            shared,
            slots: (0..n_slots)
                .map(|_| Slot {
                    cached: Vec::new(),
                    active: None,
                    used: 0,
                })
                .collect(),
            step_tokens,
            prefill_share,
            t_decode: None,
            t_prompt_token: None,
            path,
            batch: Batch::new(),
            logits: Vec::new(),
            rows: Vec::new(),
            biased: Vec::with_capacity(n_vocab),
            top: Vec::new(),
            text: String::new(),
            order: Vec::with_capacity(n_slots),
            step: 0,
        }
    }

    fn run(mut self) {
        loop {
            if !self.admit() {
                break;
            }
            self.step_once();
            self.publish();
        }
        // Whatever is still running or queued is cancelled.
        for s in 0..self.slots.len() {
            if self.slots[s].active.is_some() {
                self.leave(s, Leave::Cancelled);
            }
        }
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.clear();
        self.shared.running.store(0, Ordering::Release);
        self.shared.done.store(true, Ordering::Release);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Takes cancellations and queued requests (waiting while there is nothing to do).
    /// Returns false when the loop should end.
    fn admit(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.stop_now {
                return false;
            }
            // Cancellations: queued ones are dropped, running ones leave their slot.
            for id in std::mem::take(&mut st.cancelled) {
                st.queue.retain(|p| p.id != id);
                if let Some(s) = self
                    .slots
                    .iter()
                    .position(|s| s.active.as_ref().is_some_and(|a| a.id == id))
                {
                    self.leave(s, Leave::Cancelled);
                }
            }
            // Free slots take queued requests, first come first served.
            while !st.queue.is_empty() {
                let Some(s) = self.pick_slot(&st.queue[0].req.prompt) else {
                    break;
                };
                let p = st.queue.pop_front().expect("not empty");
                self.start(s, p);
            }
            let busy = self.slots.iter().filter(|s| s.active.is_some()).count();
            if busy > 0 {
                return true;
            }
            if st.closing && st.queue.is_empty() {
                return false;
            }
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The free slot for `prompt`: the one holding the longest prefix of it, else the least
    /// recently used.
    fn pick_slot(&self, prompt: &[u32]) -> Option<usize> {
        let free = (0..self.slots.len()).filter(|&s| self.slots[s].active.is_none());
        free.max_by_key(|&s| {
            let common = common_prefix(&self.slots[s].cached, prompt);
            (common, std::cmp::Reverse(self.slots[s].used))
        })
    }

    fn start(&mut self, s: usize, p: Pending) {
        let now = Instant::now();
        let prompt = &p.req.prompt;
        // Reuse the cached prefix, but evaluate at least the last prompt token (its logits
        // give the first generated token). Prompt log-probabilities need every row.
        let mut reuse = if p.req.prompt_logprobs.is_some() {
            0
        } else {
            common_prefix(&self.slots[s].cached, prompt).min(prompt.len() - 1)
        };
        if !self.cache.can_truncate(s, reuse) {
            // A sliding-window ring has overwritten the window before `reuse`.
            reuse = 0;
        }
        self.slots[s].cached.truncate(reuse);
        // Cannot fail: the slot exists and `reuse` is at most its length.
        let _ = self.cache.truncate(s, reuse);
        let mut sink = p.sink;
        let ok = sink(Event::Started {
            n_prompt: prompt.len(),
            cached: reuse,
        });
        let mut history = Vec::with_capacity(prompt.len() + p.req.params.max_tokens.min(4096));
        history.extend_from_slice(prompt);
        let mut prompt_lp = Vec::new();
        if p.req.prompt_logprobs.is_some() {
            prompt_lp.reserve(prompt.len());
            prompt_lp.push(None);
        }
        {
            let mut m = self.shared.metrics();
            m.prompt_tokens += prompt.len() as u64;
            m.prompt_tokens_cached += reuse as u64;
            m.queue_time
                .observe(now.duration_since(p.arrived).as_secs_f64());
        }
        let mut req = p.req;
        let constraint = req.params.constraint.take();
        self.slots[s].active = Some(Active {
            id: p.id,
            constraint,
            sampler: Sampler::new(req.params.sampler.clone()),
            stream: TextStream::new(&req.params.stop),
            req,
            sink,
            next: reuse,
            n_cached: reuse,
            n_gen: 0,
            history,
            feed: None,
            prompt_lp,
            arrived: p.arrived,
            started: now,
            first_token: None,
            last_token: None,
        });
        self.slots[s].used = self.step;
        self.shared.running.fetch_add(1, Ordering::AcqRel);
        if !ok {
            self.leave(s, Leave::Cancelled);
        }
    }

    /// Builds and evaluates one batch, then hands out what it produced.
    fn step_once(&mut self) {
        self.step += 1;
        self.batch.clear();
        self.rows.clear();
        let mut n_decode = 0usize;
        // Decode tokens first: every generating sequence advances by one.
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            if let Some(t) = a.feed.take() {
                self.batch.push(t, slot.cached.len() as u32, s, true);
                slot.cached.push(t);
                self.rows.push((s, usize::MAX));
                n_decode += 1;
            }
        }
        // Then prompt chunks, oldest request first, within the step's token budget.
        let mut budget = self.step_tokens.saturating_sub(n_decode);
        if n_decode > 0 {
            if let (Some(td), Some(tp)) = (self.t_decode, self.t_prompt_token) {
                let fit = (self.prefill_share * td / tp.max(1e-9)) as usize;
                budget = budget.min(fit.max(MIN_CHUNK));
            }
        }
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend((0..self.slots.len()).filter(|&s| {
            self.slots[s]
                .active
                .as_ref()
                .is_some_and(|a| a.next < a.req.prompt.len())
        }));
        order.sort_by_key(|&s| self.slots[s].active.as_ref().map(|a| a.arrived));
        let mut n_prompt = 0usize;
        for &s in &order {
            if budget == 0 {
                break;
            }
            let slot = &mut self.slots[s];
            let a = slot.active.as_mut().expect("filtered");
            let end = (a.next + budget).min(a.req.prompt.len());
            let all = a.req.prompt_logprobs.is_some();
            for i in a.next..end {
                let want = all || i + 1 == a.req.prompt.len();
                let t = a.req.prompt[i];
                self.batch.push(t, slot.cached.len() as u32, s, want);
                slot.cached.push(t);
                if want {
                    self.rows.push((s, i));
                }
            }
            budget -= end - a.next;
            n_prompt += end - a.next;
            a.next = end;
        }
        self.order = order;
        if self.batch.is_empty() {
            return;
        }
        let busy = self
            .slots
            .iter()
            .enumerate()
            .filter(|(s, _)| self.batch.seq_ids.contains(s))
            .count();
        let t0 = Instant::now();
        let r = self.forward();
        let secs = t0.elapsed().as_secs_f64();
        self.learn(n_decode, n_prompt, secs);
        {
            let mut m = self.shared.metrics();
            m.n_decode += 1;
            m.n_busy_slots += busy as u64;
            if n_prompt > 0 {
                m.prompt_tokens_evaluated += n_prompt as u64;
                m.prompt_seconds += secs;
            }
            if n_decode > 0 {
                m.generation_seconds += secs;
            }
        }
        if let Err(e) = r {
            self.fail_batch(e);
            return;
        }
        let n_vocab = self.model.info().vocab;
        let rows = std::mem::take(&mut self.rows);
        for (j, &(s, i)) in rows.iter().enumerate() {
            if self.slots[s].active.is_none() {
                continue; // left earlier in this loop (cancelled by its sink)
            }
            let row = j * n_vocab..(j + 1) * n_vocab;
            if i == usize::MAX {
                self.generate(s, row);
            } else {
                self.prompt_row(s, i, row);
            }
        }
        self.rows = rows;
    }

    /// Runs the batch; the grammars of constrained sequences compute their next masks on
    /// another thread meanwhile.
    fn forward(&mut self) -> Result<(), model::ModelError> {
        let Loop {
            model,
            cache,
            batch,
            logits,
            slots,
            ..
        } = self;
        let guided = |s: &Slot| {
            s.active
                .as_ref()
                .and_then(|a| a.constraint.as_ref())
                .is_some_and(|c| !c.ended())
        };
        if !slots.iter().any(guided) {
            return model.forward(batch, cache, logits);
        }
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for s in slots.iter_mut() {
                    if let Some(c) = s.active.as_mut().and_then(|a| a.constraint.as_mut()) {
                        c.prepare();
                    }
                }
            });
            model.forward(batch, cache, logits)
        })
    }

    /// Updates the step-cost estimates from a step of `n_decode` decode and `n_prompt` prompt
    /// tokens that took `secs`.
    fn learn(&mut self, n_decode: usize, n_prompt: usize, secs: f64) {
        const A: f64 = 0.2;
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + A * (new - o)));
        if n_prompt == 0 {
            self.t_decode = ema(self.t_decode, secs);
        } else if n_prompt >= MIN_CHUNK {
            // The decode part costs about a decode step (or nothing without decode tokens).
            let base = if n_decode > 0 {
                self.t_decode.unwrap_or(0.0)
            } else {
                0.0
            };
            let per =
                ((secs - base) / n_prompt as f64).max(secs / (n_prompt + n_decode) as f64 * 0.5);
            self.t_prompt_token = ema(self.t_prompt_token, per);
        }
    }

    /// A forward pass failed: every request in the batch gets the error, and the slots
    /// forget what they held (the cache state is unknown).
    fn fail_batch(&mut self, e: model::ModelError) {
        let msg = crate::backend::model_err(&self.path, e).to_string();
        let mut seen = Vec::new();
        for &s in &self.batch.seq_ids {
            if !seen.contains(&s) {
                seen.push(s);
            }
        }
        for s in seen {
            self.slots[s].cached.clear();
            let _ = self.cache.truncate(s, 0);
            if let Some(mut a) = self.slots[s].active.take() {
                self.shared.running.fetch_sub(1, Ordering::AcqRel);
                (a.sink)(Event::Error(EngineError::Internal { msg: msg.clone() }));
                let mut m = self.shared.metrics();
                m.finished.abort += 1;
            }
        }
    }

    /// Logits row of prompt index `i` of slot `s` (the distribution of token `i + 1`).
    fn prompt_row(&mut self, s: usize, i: usize, row: std::ops::Range<usize>) {
        let a = self.slots[s].active.as_mut().expect("checked");
        let n = a.req.prompt.len();
        if let Some(top_n) = a.req.prompt_logprobs {
            if i + 1 < n {
                let next = a.req.prompt[i + 1];
                let lp = token_logprob(&self.logits[row.clone()], next, top_n, &mut self.top);
                a.prompt_lp.push(Some(lp));
            }
        }
        if i + 1 < n {
            return;
        }
        // The prompt is read.
        if !a.prompt_lp.is_empty() {
            let lp = std::mem::take(&mut a.prompt_lp);
            if !(a.sink)(Event::PromptLogprobs(lp)) {
                self.leave(s, Leave::Cancelled);
                return;
            }
        }
        if a.req.params.max_tokens == 0 {
            self.leave(s, Leave::Done(StopReason::MaxTokens));
            return;
        }
        self.generate(s, row);
    }

    /// Samples the next token of slot `s` from `logits[row]` and reports it.
    fn generate(&mut self, s: usize, row: std::ops::Range<usize>) {
        let n_ctx = self.cache.n_ctx();
        let pos = self.slots[s].cached.len();
        let a = self.slots[s].active.as_mut().expect("checked");
        let raw = &self.logits[row];
        let id = if a.req.logit_bias.is_empty() && a.constraint.is_none() {
            a.sampler.sample(raw, &a.history)
        } else {
            self.biased.clear();
            self.biased.extend_from_slice(raw);
            for &(t, b) in &a.req.logit_bias {
                if let Some(l) = self.biased.get_mut(t as usize) {
                    *l += b;
                }
            }
            if let Some(c) = a.constraint.as_mut() {
                if let Err(e) = c.apply(&mut self.biased) {
                    self.fail(s, e.into());
                    return;
                }
            }
            a.sampler.sample(&self.biased, &a.history)
        };
        let logprob = (a.req.params.logprobs > 0 || a.req.prompt_logprobs.is_some())
            .then(|| token_logprob(raw, id, a.req.params.logprobs, &mut self.top));
        let is_eog = self.tok.is_eog(id);
        self.text.clear();
        let hit_stop = !is_eog && a.stream.push(self.tok.token_bytes(id), &mut self.text);
        let grammar_end = match a.constraint.as_mut() {
            Some(c) if !is_eog => match c.accept(id) {
                Ok(end) => end,
                Err(e) => {
                    self.fail(s, e.into());
                    return;
                }
            },
            _ => false,
        };
        a.n_gen += 1;
        a.history.push(id);
        let now = Instant::now();
        {
            let mut m = self.shared.metrics();
            m.generation_tokens += 1;
            match a.last_token {
                None => m.ttft.observe(now.duration_since(a.arrived).as_secs_f64()),
                Some(t) => m.itl.observe(now.duration_since(t).as_secs_f64()),
            }
        }
        a.first_token.get_or_insert(now);
        a.last_token = Some(now);
        let reason = StopReason::after_token(
            is_eog,
            hit_stop,
            grammar_end,
            a.n_gen >= a.req.params.max_tokens,
            pos >= n_ctx,
        );
        if reason.is_some() && !hit_stop {
            a.stream.finish(&mut self.text);
        }
        let ok = (a.sink)(Event::Token(GenToken {
            id,
            text: self.text.clone(),
            logprob,
            is_eog,
        }));
        match (reason, ok) {
            (Some(r), _) => self.leave(s, Leave::Done(r)),
            (None, false) => self.leave(s, Leave::Cancelled),
            (None, true) => a.feed = Some(id),
        }
    }

    /// Ends the request of slot `s` with an error (its grammar failed); the slot keeps its cache.
    fn fail(&mut self, s: usize, e: EngineError) {
        let Some(mut a) = self.release(s) else {
            return;
        };
        self.shared.metrics().finished.abort += 1;
        (a.sink)(Event::Error(e));
    }

    /// Takes slot `s`'s request out and marks the slot idle (keeping what its cache holds: a
    /// prompt cut short is still a valid prefix).
    fn release(&mut self, s: usize) -> Option<Active> {
        let a = self.slots[s].active.take()?;
        self.slots[s].used = self.step;
        self.shared.running.fetch_sub(1, Ordering::AcqRel);
        let mut sl = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        sl[s] = SlotInfo {
            n_cached: self.slots[s].cached.len(),
            ..SlotInfo::idle(s)
        };
        Some(a)
    }

    /// Ends the request of slot `s`; the slot keeps its cache for prefix reuse.
    fn leave(&mut self, s: usize, why: Leave) {
        let Some(mut a) = self.release(s) else {
            return;
        };
        let now = Instant::now();
        let mut m = self.shared.metrics();
        match why {
            Leave::Cancelled => m.finished.abort += 1,
            Leave::Done(reason) => {
                match reason {
                    StopReason::Eog | StopReason::StopString | StopReason::GrammarEnd => {
                        m.finished.stop += 1
                    }
                    _ => m.finished.length += 1,
                }
                m.e2e.observe(now.duration_since(a.arrived).as_secs_f64());
                drop(m);
                let first = a.first_token.unwrap_or(now);
                let fin = Finish {
                    reason,
                    n_prompt: a.req.prompt.len(),
                    n_cached: a.n_cached,
                    n_gen: a.n_gen,
                    queue_ms: ms(a.started.duration_since(a.arrived)),
                    prompt_ms: ms(first.duration_since(a.started)),
                    gen_ms: ms(now.duration_since(first)),
                };
                (a.sink)(Event::Done(fin));
            }
        }
    }

    /// Copies the slot view and the KV usage for `/slots` and `/metrics`.
    fn publish(&mut self) {
        let mut sl = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut used = 0;
        for (s, slot) in self.slots.iter().enumerate() {
            let info = &mut sl[s];
            info.n_cached = slot.cached.len();
            match &slot.active {
                Some(a) => {
                    used += slot.cached.len();
                    info.busy = true;
                    info.request = Some(a.id);
                    info.n_prompt_left = a.req.prompt.len() - a.next;
                    info.n_gen = a.n_gen;
                }
                None => {
                    info.busy = false;
                    info.request = None;
                    info.n_prompt_left = 0;
                    info.n_gen = 0;
                }
            }
        }
        drop(sl);
        self.shared.metrics().kv_used = used;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The log-probability of `id` in `logits` with the `n` most likely tokens (`top` is scratch).
fn token_logprob(logits: &[f32], id: u32, n: usize, top: &mut Vec<(u32, f32)>) -> TokenLogprob {
    top_logprobs(logits, n, top);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let logprob = logits
        .get(id as usize)
        .map_or(f32::NEG_INFINITY, |&l| (l as f64 - lse) as f32);
    TokenLogprob {
        id,
        logprob,
        top: top.clone(),
    }
}
