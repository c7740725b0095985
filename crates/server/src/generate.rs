//! Running requests on the scheduler: [`submit`] queues one or more [`Request`]s whose events
//! arrive, tagged with the request's index, on one channel ([`Running`]); dropping `Running`
//! (a client that went away, a handler future dropped) cancels whatever has not finished.
//! Also what both endpoints render the same way: token strings, usage, finish reasons, ids.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::{
    Event, Finish, GenToken, Request, RequestId, Scheduler, Sink, StopReason, SubmitError,
    TokenLogprob,
};
use serde::{Serialize, Serializer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::state::{Lease, Model};
use crate::ServerError;

/// Cancels its request on drop unless it finished.
struct CancelGuard {
    sched: Scheduler,
    id: RequestId,
    live: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.live {
            self.sched.cancel(self.id);
        }
    }
}

/// Submitted requests: their events, in order per request, as `(index, event)`. It holds the
/// model in memory until dropped (a stream's body owns it).
pub struct Running {
    pub rx: UnboundedReceiver<(usize, Event)>,
    guards: Vec<CancelGuard>,
    _lease: Lease,
}

impl Running {
    /// Request `i` sent `Done` or `Error`: nothing to cancel any more.
    pub fn finished(&mut self, i: usize) {
        if let Some(g) = self.guards.get_mut(i) {
            g.live = false;
        }
    }

    pub fn len(&self) -> usize {
        self.guards.len()
    }
}

/// Checks every request first (so that none starts when one is invalid), then queues them.
/// `param` names the request field that carried the prompt.
pub fn submit(m: &Model, reqs: Vec<Request>, param: &str) -> Result<Running, ServerError> {
    let sched = &m.sched;
    for r in &reqs {
        sched
            .validate(r)
            .map_err(|e| ServerError::from_engine(e, param))?;
    }
    let (tx, rx) = unbounded_channel();
    let mut run = Running {
        rx,
        guards: Vec::with_capacity(reqs.len()),
        _lease: m.lease(),
    };
    for (i, req) in reqs.into_iter().enumerate() {
        let tx = tx.clone();
        let sink: Sink = Box::new(move |ev| tx.send((i, ev)).is_ok());
        match sched.submit(req, sink) {
            Ok(id) => run.guards.push(CancelGuard {
                sched: sched.clone(),
                id,
                live: true,
            }),
            // `run` is dropped: the requests already queued are cancelled.
            Err(SubmitError::QueueFull { waiting, limit }) => {
                return Err(ServerError::Busy { waiting, limit })
            }
            Err(SubmitError::ShuttingDown) => return Err(ServerError::ShuttingDown),
            Err(SubmitError::Invalid(e)) => return Err(ServerError::from_engine(e, param)),
        }
    }
    Ok(run)
}

/// What one request produced (non-streamed responses).
#[derive(Default)]
pub struct Outcome {
    pub text: String,
    /// Generated tokens (kept only when log-probabilities were asked for).
    pub tokens: Vec<GenToken>,
    pub prompt_lp: Option<Vec<Option<TokenLogprob>>>,
    pub finish: Option<Finish>,
}

/// Waits for every request of `run` to finish.
pub async fn collect(run: &mut Running, keep_tokens: bool) -> Result<Vec<Outcome>, ServerError> {
    let n = run.len();
    let mut out: Vec<Outcome> = (0..n).map(|_| Outcome::default()).collect();
    let mut left = n;
    while left > 0 {
        let Some((i, ev)) = run.rx.recv().await else {
            return Err(ServerError::ShuttingDown);
        };
        let Some(o) = out.get_mut(i) else { continue };
        match ev {
            Event::Started { .. } => {}
            Event::PromptLogprobs(lp) => o.prompt_lp = Some(lp),
            Event::Token(t) => {
                o.text.push_str(&t.text);
                if keep_tokens {
                    o.tokens.push(t);
                }
            }
            Event::Done(f) => {
                o.finish = Some(f);
                run.finished(i);
                left -= 1;
            }
            Event::Error(e) => {
                run.finished(i);
                return Err(ServerError::Internal(e.to_string()));
            }
        }
    }
    Ok(out)
}

pub fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::Eog
        | StopReason::StopString
        | StopReason::Callback
        | StopReason::GrammarEnd => "stop",
    }
}

/// `usage`, summed over choices.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: CachedTokens,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CachedTokens {
    pub cached_tokens: usize,
}

impl Usage {
    pub fn add(&mut self, f: &Finish) {
        self.prompt_tokens += f.n_prompt;
        self.completion_tokens += f.n_gen;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
        self.prompt_tokens_details.cached_tokens += f.n_cached;
    }
}

/// A fresh response id (`chatcmpl-...`, `cmpl-...`).
pub fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let h = RandomState::new().hash_one((n, nanos));
    format!("{prefix}-{h:016x}{n:x}")
}

pub fn fingerprint() -> String {
    format!("lume-{}", env!("CARGO_PKG_VERSION"))
}

/// A token's bytes; an end-of-generation token at a generated position has none (it adds no
/// text to the answer).
pub fn token_bytes(sched: &Scheduler, id: u32, generated: bool) -> &[u8] {
    let tok = sched.tokenizer();
    if generated && tok.is_eog(id) {
        &[]
    } else {
        tok.token_bytes(id)
    }
}

/// [`token_bytes`] as text (invalid UTF-8 becomes U+FFFD).
pub fn token_str(sched: &Scheduler, id: u32, generated: bool) -> String {
    String::from_utf8_lossy(token_bytes(sched, id, generated)).into_owned()
}

/// JSON cannot hold -inf: OpenAI's stand-in for "impossible".
pub fn finite(lp: f32) -> f32 {
    if lp.is_finite() {
        lp
    } else {
        -9999.0
    }
}

/// `{token: logprob}` in likelihood order (first occurrence of a token string wins).
#[derive(Clone, Debug, Default)]
pub struct TopMap(pub Vec<(String, f32)>);

impl TopMap {
    pub fn insert(&mut self, k: String, v: f32) {
        if !self.0.iter().any(|(s, _)| *s == k) {
            self.0.push((k, v));
        }
    }
}

impl Serialize for TopMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Legacy completions `logprobs`: parallel lists over the tokens of a choice.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<TopMap>>,
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Appends token `id` (with its log-probability, when known) and its `n` most likely
    /// alternatives plus itself; `offset` (characters) advances past the token.
    pub fn push(
        &mut self,
        sched: &Scheduler,
        id: u32,
        lp: Option<&TokenLogprob>,
        n: usize,
        generated: bool,
        offset: &mut usize,
    ) {
        let s = token_str(sched, id, generated);
        self.text_offset.push(*offset);
        *offset += s.chars().count();
        self.token_logprobs.push(lp.map(|l| finite(l.logprob)));
        self.top_logprobs.push(lp.map(|l| {
            let mut m = TopMap::default();
            for &(t, v) in l.top.iter().take(n) {
                m.insert(token_str(sched, t, generated), finite(v));
            }
            m.insert(s.clone(), finite(l.logprob));
            m
        }));
        self.tokens.push(s);
    }
}

/// Chat `logprobs.content[i]`.
#[derive(Clone, Debug, Serialize)]
pub struct ChatLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTop>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatTop {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// The chat entry of a generated token with `k` alternatives (`None` without logprobs).
pub fn chat_logprob(sched: &Scheduler, t: &GenToken, k: usize) -> Option<ChatLogprob> {
    let lp = t.logprob.as_ref()?;
    let bytes = token_bytes(sched, t.id, true).to_vec();
    Some(ChatLogprob {
        token: String::from_utf8_lossy(&bytes).into_owned(),
        logprob: finite(lp.logprob),
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .take(k)
            .map(|&(id, v)| {
                let bytes = token_bytes(sched, id, true).to_vec();
                ChatTop {
                    token: String::from_utf8_lossy(&bytes).into_owned(),
                    logprob: finite(v),
                    bytes,
                }
            })
            .collect(),
    })
}
