//! ollama's API on the same server: `POST /api/chat`, `POST /api/generate`, `POST /api/embed`,
//! `POST /api/pull`, `POST /api/show`, `GET /api/tags`, `GET /api/ps`, `GET /api/version`.
//!
//! Each route translates ollama's request into the shared internals (the chat template,
//! [`Sampling`] and its checks, stop strings, `engine::tools`, `shape.rs`'s grammar specs, the
//! scheduler bridge) and the answer back into ollama's shape:
//!
//! - `/api/chat` and `/api/generate` stream by default (`stream` absent = true) as NDJSON:
//!   `{"model","created_at","message":{"role":"assistant","content"},"done":false}` (generate:
//!   `"response"`) per piece of text, then a last line with `done: true`, `done_reason` (`stop`,
//!   `length`) and `total_duration`, `load_duration` (the wait for the model to load, 0 when
//!   it was in memory),
//!   `prompt_eval_count` (prompt tokens, cached ones included), `prompt_eval_duration`,
//!   `eval_count` (generated tokens, an end-of-generation token included), `eval_duration`, in
//!   nanoseconds. `stream: false` gives that last line alone, with the whole text.
//! - `options`: `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `num_predict` (negative: no
//!   limit but the context), `stop`, `repeat_penalty`, `repeat_last_n`, `presence_penalty`,
//!   `frequency_penalty`; `num_ctx` is accepted and has no effect (the server's `--ctx-size`
//!   holds); other keys are ignored, as ollama does. Values go through the same range checks as
//!   the OpenAI routes (a 400 names `options.<key>`). Sampling defaults are the server's, not
//!   ollama's (no repeat penalty, temperature 1).
//! - `format`: `"json"` (any JSON object) or a JSON schema object, compiled like
//!   `response_format` (a bad schema is a 400 naming `format`).
//! - `tools` on `/api/chat` (the OpenAI form; auto choice): calls come back as
//!   `message.tool_calls: [{"function": {"name", "arguments": {object}}}]`; history messages may
//!   carry `tool_calls` (arguments as objects) and `role: "tool"` results (`tool_name`).
//! - `/api/generate`: `raw: true` sends `prompt` as is; otherwise `system` + `prompt` go through
//!   the chat template as a system and a user message (a model without a template takes the
//!   prompt as is, as ollama's default `{{ .Prompt }}` does). `template`, `suffix`, `context`,
//!   `images`, `think: true` and `logprobs` are refused with a 400 naming the field.
//! - `keep_alive` (a number of seconds or a duration such as `"5m"`; negative = forever):
//!   with several models, how long the model stays loaded after this request (instead of
//!   `--keep-alive`); `0` unloads it once the request is done. An empty prompt (or no
//!   messages) loads the model and answers `done_reason` `load`, or with `keep_alive: 0`
//!   unloads it (once no request holds it) and answers `unload`. With one model it is checked
//!   and has no other effect: the server keeps its model loaded.
//! - A model name may carry ollama's `:latest` tag; the lists name the model `<id>:latest`.
//! - `/api/pull` runs lume's own puller (`hub`) for a catalogue name and streams ollama's
//!   progress lines; it fills the cache (a server of every cached model serves the model
//!   from then on; one started with `-m` goes on serving its models).
//! - `/api/tags` lists every model served (loaded or not), `/api/ps` the ones in memory with
//!   their real `expires_at` and, with several models, `size` = the memory estimate;
//!   `/api/show` loads the model it is asked about.
//! - Errors are `{"error": "message"}` with the status of the OpenAI routes (400, 404, 503...).

use std::cell::Cell;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use engine::tools::{Piece, ToolCall, ToolParser};
use engine::{Event, Finish, GenerateParams, Request, Spec};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::Sampling;
use crate::body::{parse, JsonBody};
use crate::chat::{self, limits, ChatParts, InMessage, Prepared};
use crate::embeddings::{self, Input};
use crate::error::OllamaError;
use crate::generate::{collect, finish_reason, submit};
use crate::json::json_response;
use crate::models::{path_size, Kind as ModelKind, Listing};
use crate::shape::{self, Shape};
use crate::sse::{self, Encoder, Framing};
use crate::state::{AppState, KeepAlive, Loaded, Model};
use crate::ServerError;

type Answer = Result<Response, OllamaError>;

/// The tag ollama gives a model name without one.
const LATEST: &str = ":latest";

/// `name` without ollama's `:latest` tag.
pub fn strip_latest(name: &str) -> &str {
    name.strip_suffix(LATEST).unwrap_or(name)
}

/// The served model's ollama name: the id, tagged `:latest` unless it has a tag.
fn tagged(id: &str) -> String {
    if id.contains(':') {
        id.to_string()
    } else {
        format!("{id}{LATEST}")
    }
}

/// The served id a request's `model` names (`NAME:latest` is `NAME`).
fn resolve(state: &AppState, name: Option<&str>) -> Result<String, ServerError> {
    state.resolve(name.map(strip_latest))
}

/// The `model` a response names: the request's, else the served model's.
fn answer_model(name: Option<&str>, id: &str) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => tagged(id),
    }
}

/// A request's `keep_alive` (checked; `None` when absent).
fn keep_of(v: Option<&Value>) -> Result<Option<KeepAlive>, ServerError> {
    Ok(keep_alive(v)?.map(KeepAlive::from_secs))
}

/// ollama's load or unload request (no prompt): `keep_alive: 0` unloads the model once no
/// request holds it; otherwise it is loaded (with one model: checked to be loaded) and kept
/// for `keep`. `language`: the route generates, so an embedding model is a 400.
async fn load_or_unload(
    state: &AppState,
    id: &str,
    keep: Option<KeepAlive>,
    language: bool,
) -> Result<bool, ServerError> {
    let unload = keep.is_some_and(KeepAlive::is_zero);
    if unload && state.multi() {
        state.models.unload_soon(id);
        return Ok(true);
    }
    let lease = state.lease(Some(id), keep).await?;
    if language {
        Model::of(lease)?;
    }
    Ok(unload)
}

/// `options` (unknown keys are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Options {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    seed: Option<serde_json::Number>,
    num_predict: Option<i64>,
    stop: Option<Value>,
    repeat_penalty: Option<f64>,
    repeat_last_n: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    num_ctx: Option<i64>,
}

/// The option keys that are [`Sampling`] fields of the same name.
const SAMPLING_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
];

/// The engine's parameters for `options`, checked as the OpenAI routes check theirs (a 400
/// names `options.<key>`).
pub fn params(
    o: Option<&Options>,
    state: &AppState,
    m: &Loaded,
) -> Result<(GenerateParams, Vec<(u32, f32)>), ServerError> {
    let empty = Options::default();
    let o = o.unwrap_or(&empty);
    if let Some(n) = o.num_ctx {
        if n < 0 {
            return Err(ServerError::bad(
                format!("'options.num_ctx' must be >= 0 (got {n})"),
                "options.num_ctx",
            ));
        }
    }
    let s = Sampling {
        temperature: o.temperature,
        top_p: o.top_p,
        top_k: o.top_k,
        min_p: o.min_p,
        seed: o.seed.clone(),
        stop: o.stop.clone(),
        repeat_penalty: o.repeat_penalty,
        repeat_last_n: o.repeat_last_n,
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        ..Sampling::default()
    };
    // ollama: -1 = no limit, -2 = until the context is full; both are "up to the context" here.
    let n = o.num_predict.filter(|&n| n >= 0);
    s.params((n, "options.num_predict"), &limits(state, m))
        .map_err(|e| {
            SAMPLING_OPTIONS
                .iter()
                .fold(e, |e, k| e.renamed(k, &format!("options.{k}")))
        })
}

/// `format`: `"json"`, a JSON schema, or nothing (absent, null, `""`).
pub fn format_shape(v: Option<&Value>) -> Result<Option<Shape>, ServerError> {
    const F: &str = "format";
    let spec = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) if s == "json" => Spec::JsonObject,
        Some(v @ Value::Object(_)) => shape::schema(v, F)?,
        Some(other) => {
            return Err(ServerError::bad(
                format!("'{F}' must be \"json\" or a JSON schema object (got {other})"),
                F,
            ))
        }
    };
    Ok(Some(Shape { spec, field: F }))
}

/// `keep_alive`: seconds (a number; negative = forever) or a duration text (`"5m"`, `"1h30m"`,
/// `"-1"`, `"0"`). `Some(0.0)` asks to unload.
pub fn keep_alive(v: Option<&Value>) -> Result<Option<f64>, ServerError> {
    const F: &str = "keep_alive";
    let bad = |what: String| {
        ServerError::bad(
            format!("'{F}' must be a number of seconds or a duration such as \"5m\" ({what})"),
            F,
        )
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| bad(format!("got {n}"))),
        Some(Value::String(s)) => crate::keep_alive::duration_secs(s)
            .map(Some)
            .ok_or_else(|| bad(format!("got \"{s}\""))),
        Some(other) => Err(bad(format!("got {other}"))),
    }
}

/// `think` and `logprobs`, which lume does not do: `think: true` (or a level) and
/// `logprobs: true` are a 400.
fn refuse_extras(think: Option<&Value>, logprobs: Option<bool>) -> Result<(), ServerError> {
    match think {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(_) => {
            return Err(ServerError::bad(
                "'think' is not supported: this model does not think",
                "think",
            ))
        }
    }
    if logprobs == Some(true) {
        return Err(ServerError::bad(
            "'logprobs' is not supported on /api/chat and /api/generate; use /v1/chat/completions",
            "logprobs",
        ));
    }
    Ok(())
}

fn not_empty(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// One `/api/chat` message.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a message object with 'role' and 'content'")]
pub struct OMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_name: Option<String>,
}

/// ollama's messages as the chat template's messages (`images` refused).
pub fn messages(list: Vec<OMessage>) -> Result<Vec<Value>, ServerError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        if not_empty(&m.images) {
            return Err(ServerError::bad(
                format!("'messages[{i}].images' is not supported: this model reads text only"),
                format!("messages[{i}].images"),
            ));
        }
        out.push(InMessage {
            role: m.role,
            content: m.content.map(Value::String),
            tool_calls: m.tool_calls,
            tool_call_id: None,
            name: m.tool_name,
        });
    }
    chat::messages(Some(out))
}

/// `/api/chat`'s fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatReq {
    model: Option<String>,
    messages: Option<Vec<OMessage>>,
    tools: Option<Value>,
    format: Option<Value>,
    options: Option<Options>,
    stream: Option<bool>,
    keep_alive: Option<Value>,
    think: Option<Value>,
    logprobs: Option<bool>,
}

/// `/api/generate`'s fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GenerateReq {
    model: Option<String>,
    prompt: Option<String>,
    suffix: Option<String>,
    system: Option<String>,
    template: Option<String>,
    context: Option<Value>,
    raw: Option<bool>,
    images: Option<Value>,
    format: Option<Value>,
    options: Option<Options>,
    stream: Option<bool>,
    keep_alive: Option<Value>,
    think: Option<Value>,
    logprobs: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// What every line of one answer repeats.
struct Head {
    model: String,
    kind: Kind,
    t0: Instant,
    /// Time spent waiting for the model to load (0 when it was loaded).
    load: Duration,
}

impl Head {
    /// A line with `text` (chat: `message`, generate: `response`).
    fn line(&self, text: &str, calls: Option<Vec<Value>>, done: bool) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("model".into(), json!(self.model));
        o.insert("created_at".into(), json!(rfc3339(SystemTime::now())));
        match self.kind {
            Kind::Chat => {
                let mut msg = json!({"role": "assistant", "content": text});
                if let Some(c) = calls {
                    msg["tool_calls"] = Value::Array(c);
                }
                o.insert("message".into(), msg);
            }
            Kind::Generate => {
                o.insert("response".into(), json!(text));
            }
        }
        o.insert("done".into(), json!(done));
        o
    }

    /// The last line: `done`, the reason and the statistics.
    fn last(&self, text: &str, calls: Option<Vec<Value>>, f: &Finish) -> Value {
        let mut o = self.line(text, calls, true);
        o.insert("done_reason".into(), json!(finish_reason(f.reason)));
        stats(&mut o, self.t0, self.load, f);
        Value::Object(o)
    }

    /// The answer to a request without a prompt: the model is (still) loaded.
    fn loaded(&self, unload: bool) -> Value {
        let mut o = self.line("", None, true);
        o.insert(
            "done_reason".into(),
            json!(if unload { "unload" } else { "load" }),
        );
        Value::Object(o)
    }
}

fn nanos(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6) as u64
}

fn stats(o: &mut Map<String, Value>, t0: Instant, load: Duration, f: &Finish) {
    o.insert(
        "total_duration".into(),
        json!(t0.elapsed().as_nanos() as u64),
    );
    o.insert("load_duration".into(), json!(load.as_nanos() as u64));
    o.insert("prompt_eval_count".into(), json!(f.n_prompt));
    o.insert("prompt_eval_duration".into(), json!(nanos(f.prompt_ms)));
    o.insert("eval_count".into(), json!(f.n_gen));
    o.insert("eval_duration".into(), json!(nanos(f.gen_ms)));
}

/// A call as ollama writes it: `arguments` as an object.
pub fn call_json(c: &ToolCall) -> Value {
    let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
    json!({"function": {"name": c.name, "arguments": args}})
}

/// The NDJSON lines of a streamed answer.
struct Stream {
    head: Head,
    tools: Option<ToolParser>,
    pieces: Vec<Piece>,
}

impl Stream {
    fn flush(&mut self, out: &mut Vec<String>) {
        for piece in std::mem::take(&mut self.pieces) {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => {
                    out.push(Value::Object(self.head.line(&t, None, false)).to_string())
                }
                Piece::Call(c) => out.push(
                    Value::Object(self.head.line("", Some(vec![call_json(&c)]), false)).to_string(),
                ),
            }
        }
    }
}

impl Encoder for Stream {
    fn start(&mut self, _out: &mut Vec<String>) {}

    fn event(&mut self, _i: usize, ev: Event, out: &mut Vec<String>) -> Result<(), ServerError> {
        match ev {
            Event::Started { .. } | Event::PromptLogprobs(_) => {}
            Event::Token(t) => match self.tools.as_mut() {
                Some(p) => {
                    p.push(&t.text, &mut self.pieces);
                    self.flush(out);
                }
                None if !t.text.is_empty() => {
                    out.push(Value::Object(self.head.line(&t.text, None, false)).to_string())
                }
                None => {}
            },
            Event::Done(f) => {
                if let Some(p) = self.tools.as_mut() {
                    p.finish(&mut self.pieces);
                    self.flush(out);
                }
                out.push(self.head.last("", None, &f).to_string());
            }
            Event::Error(e) => return Err(ServerError::Internal(e.to_string())),
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<String>) {}
}

/// Runs `req` and answers: NDJSON lines when `stream`, else the last line with the whole text
/// (and the calls of `tool_names`' tools, for a chat).
async fn answer(
    m: &Model,
    head: Head,
    p: Prepared,
    stream: bool,
    param: &str,
) -> Result<Response, ServerError> {
    let mut run = submit(m, vec![p.req], param)?;
    if stream {
        let enc = Stream {
            head,
            tools: p.tool_names.map(ToolParser::new),
            pieces: Vec::new(),
        };
        return Ok(sse::response_framed(run, enc, Framing::Ndjson));
    }
    let out = collect(&mut run, false).await?;
    let o = out
        .into_iter()
        .next()
        .ok_or_else(|| ServerError::Internal("the request gave no answer".into()))?;
    let f = o
        .finish
        .ok_or_else(|| ServerError::Internal("the request did not finish".into()))?;
    let (text, calls) = match p.tool_names {
        Some(names) => {
            let (content, calls) = engine::tools::split(&o.text, names);
            if calls.is_empty() {
                (o.text, None)
            } else {
                (content, Some(calls.iter().map(call_json).collect()))
            }
        }
        None => (o.text, None),
    };
    Ok(json_response(StatusCode::OK, &head.last(&text, calls, &f)))
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let t0 = Instant::now();
    let JsonBody(body) = body?;
    state.ready()?;
    let r: ChatReq = parse(&body)?;
    drop(body);
    let id = resolve(&state, r.model.as_deref())?;
    let keep = keep_of(r.keep_alive.as_ref())?;
    let mut head = Head {
        model: answer_model(r.model.as_deref(), &id),
        kind: Kind::Chat,
        t0,
        load: Duration::ZERO,
    };
    let msgs = r.messages.unwrap_or_default();
    if msgs.is_empty() {
        let unload = load_or_unload(&state, &id, keep, true).await?;
        return Ok(json_response(StatusCode::OK, &head.loaded(unload)));
    }
    refuse_extras(r.think.as_ref(), r.logprobs)?;
    let msgs = messages(msgs)?;
    let tools = chat::tool_setup(r.tools.as_ref(), None)?;
    let shape = format_shape(r.format.as_ref())?;
    let t_load = Instant::now();
    let m = state.model(Some(&id), keep).await?;
    head.load = t_load.elapsed();
    let (params, logit_bias) = params(r.options.as_ref(), &state, &m)?;
    let p = chat::prepare(
        &m,
        ChatParts {
            msgs,
            kwargs: Map::new(),
            tools,
            parallel_tool_calls: None,
            params,
            logit_bias,
            shape,
            prefill: None,
        },
    )
    .await?;
    Ok(answer(&m, head, p, r.stream.unwrap_or(true), "messages").await?)
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let t0 = Instant::now();
    let JsonBody(body) = body?;
    state.ready()?;
    let r: GenerateReq = parse(&body)?;
    drop(body);
    let id = resolve(&state, r.model.as_deref())?;
    let keep = keep_of(r.keep_alive.as_ref())?;
    for (field, given, why) in [
        (
            "template",
            r.template.as_deref().is_some_and(|t| !t.is_empty()),
            "lume applies the model's own chat template; send 'raw': true with a prompt you \
             formatted yourself",
        ),
        (
            "suffix",
            r.suffix.as_deref().is_some_and(|t| !t.is_empty()),
            "fill-in-the-middle is not available",
        ),
        (
            "context",
            not_empty(&r.context),
            "send the conversation as /api/chat messages instead",
        ),
        ("images", not_empty(&r.images), "this model reads text only"),
    ] {
        if given {
            return Err(
                ServerError::bad(format!("'{field}' is not supported: {why}"), field).into(),
            );
        }
    }
    let mut head = Head {
        model: answer_model(r.model.as_deref(), &id),
        kind: Kind::Generate,
        t0,
        load: Duration::ZERO,
    };
    let prompt = r.prompt.unwrap_or_default();
    if prompt.is_empty() {
        let unload = load_or_unload(&state, &id, keep, true).await?;
        return Ok(json_response(StatusCode::OK, &head.loaded(unload)));
    }
    refuse_extras(r.think.as_ref(), r.logprobs)?;
    let shape = format_shape(r.format.as_ref())?;
    let t_load = Instant::now();
    let m = state.model(Some(&id), keep).await?;
    head.load = t_load.elapsed();
    let (mut params, logit_bias) = params(r.options.as_ref(), &state, &m)?;
    let p = if r.raw == Some(true) || m.template.is_none() {
        params.constraint = match shape {
            None => None,
            Some(s) => Some(shape::compile(&m.sched, s).await?),
        };
        Prepared {
            req: Request {
                prompt: m.sched.tokenizer().encode(&prompt, true, true),
                params,
                prompt_logprobs: None,
                logit_bias,
            },
            tool_names: None,
        }
    } else {
        let mut msgs = Vec::new();
        if let Some(sys) = r.system.filter(|s| !s.is_empty()) {
            msgs.push(json!({"role": "system", "content": sys}));
        }
        msgs.push(json!({"role": "user", "content": prompt}));
        chat::prepare(
            &m,
            ChatParts {
                msgs,
                kwargs: Map::new(),
                tools: None,
                parallel_tool_calls: None,
                params,
                logit_bias,
                shape,
                prefill: None,
            },
        )
        .await?
    };
    Ok(answer(&m, head, p, r.stream.unwrap_or(true), "prompt").await?)
}

/// `/api/embed`'s fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EmbedReq {
    model: Option<String>,
    input: Option<Value>,
    truncate: Option<bool>,
    dimensions: Option<i64>,
    keep_alive: Option<Value>,
}

pub async fn embed(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let t0 = Instant::now();
    let JsonBody(body) = body?;
    state.ready()?;
    let r: EmbedReq = parse(&body)?;
    drop(body);
    let id = resolve(&state, r.model.as_deref())?;
    let keep = keep_of(r.keep_alive.as_ref())?;
    let model = answer_model(r.model.as_deref(), &id);
    let nothing = match &r.input {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if nothing {
        // ollama's "load the model" (or with `keep_alive: 0`, unload) request.
        let t_load = Instant::now();
        load_or_unload(&state, &id, keep, false).await?;
        return Ok(json_response(
            StatusCode::OK,
            &json!({"model": model, "embeddings": [], "total_duration": t0.elapsed().as_nanos() as u64,
                    "load_duration": t_load.elapsed().as_nanos() as u64, "prompt_eval_count": 0}),
        ));
    }
    let items: Vec<Input> = embeddings::inputs(r.input)?;
    let t_load = Instant::now();
    let e = state.embedder(Some(&id), keep).await?;
    let load = t_load.elapsed();
    let (vecs, dim, n_tokens) =
        embeddings::embed_inputs(e, items, r.dimensions, r.truncate.unwrap_or(true)).await?;
    let list: Vec<&[f32]> = vecs.chunks_exact(dim.max(1)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "model": model,
            "embeddings": list,
            "total_duration": t0.elapsed().as_nanos() as u64,
            "load_duration": load.as_nanos() as u64,
            "prompt_eval_count": n_tokens,
        }),
    ))
}

/// llama.cpp's `general.file_type` names.
fn file_type_name(t: u64) -> Option<&'static str> {
    Some(match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

/// A parameter count as ollama writes it: `134.52M`, `1.5B`.
pub fn human_params(n: u64) -> String {
    let f = n as f64;
    let (x, unit, digits) = if f >= 1e9 {
        (f / 1e9, "B", 1)
    } else if f >= 1e6 {
        (f / 1e6, "M", 2)
    } else if f >= 1e3 {
        (f / 1e3, "K", 2)
    } else {
        return n.to_string();
    };
    if x == x.floor() {
        format!("{x:.0}{unit}")
    } else {
        format!("{x:.digits$}{unit}")
    }
}

/// The quantization of a GGUF file: `general.file_type`'s name, else the type most weight
/// matrices have.
fn quantization(g: &gguf::GgufFile) -> String {
    if let Some(name) = g
        .get("general.file_type")
        .and_then(gguf::Value::as_u64)
        .and_then(file_type_name)
    {
        return name.to_string();
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in g.tensors.iter().filter(|t| t.dims.len() >= 2) {
        let n = t.ty.name().to_uppercase();
        match counts.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, c)| *c)
        .map(|(k, _)| k)
        .unwrap_or_else(|| "unknown".into())
}

/// A GGUF metadata value as JSON; arrays of more than 5 items are `[]` unless `verbose` (as
/// ollama's `/api/show` does with the tokenizer's lists).
fn kv_json(v: &gguf::Value, verbose: bool) -> Value {
    use gguf::Value as G;
    match v {
        G::String(s) => json!(s),
        G::Bool(b) => json!(b),
        G::F32(x) => json!(*x as f64),
        G::F64(x) => json!(x),
        G::Array(_, items) => {
            if !verbose && items.len() > 5 {
                json!([])
            } else {
                Value::Array(items.iter().map(|i| kv_json(i, verbose)).collect())
            }
        }
        other => match (other.as_u64(), other.as_i64()) {
            (Some(u), _) => json!(u),
            (None, Some(i)) => json!(i),
            _ => Value::Null,
        },
    }
}

/// `t` as RFC 3339 in UTC with nanoseconds (`2024-05-01T12:00:00.123456789Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

fn modified_at(p: &Path) -> String {
    rfc3339(
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH),
    )
}

/// The sha256 of a model's file (a catalogue file's known hash, else computed once on the
/// blocking pool and kept in `cell`); `""` for a model folder that is not in the catalogue.
async fn digest(path: &Path, cell: &OnceLock<String>) -> String {
    if let Some(d) = cell.get() {
        return d.clone();
    }
    let p = path.to_path_buf();
    let d = tokio::task::spawn_blocking(move || file_digest(&p))
        .await
        .unwrap_or_default();
    cell.get_or_init(|| d).clone()
}

fn file_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let size = path_size(path);
    if let Some(e) = hub::CATALOGUE
        .iter()
        .find(|e| name.as_deref() == Some(e.file) && (e.is_folder() || e.bytes == size))
    {
        return e.sha256.to_string();
    }
    if !path.is_file() {
        return String::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return String::new(),
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `details` of a model: from the loaded model when it is a language model, else what its
/// path says.
fn details(kind: Option<&ModelKind>, p: &Path) -> Value {
    match kind {
        Some(ModelKind::Language(m)) => {
            let arch = m.sched.info().arch.clone();
            json!({
                "parent_model": "",
                "format": "gguf",
                "family": arch,
                "families": [arch],
                "parameter_size": human_params(m.n_params),
                "quantization_level": quantization(m.sched.gguf()),
            })
        }
        _ => {
            let gguf = p.extension().is_some_and(|e| e == "gguf");
            json!({
                "parent_model": "",
                "format": if gguf { "gguf" } else { "safetensors" },
                "family": "",
                "families": [],
                "parameter_size": "",
                "quantization_level": "",
            })
        }
    }
}

/// The `/api/tags` entry of a model.
async fn entry(l: &Listing) -> Value {
    let name = tagged(&l.id);
    json!({
        "name": name,
        "model": name,
        "modified_at": modified_at(&l.path),
        "size": path_size(&l.path),
        "digest": digest(&l.path, &l.digest).await,
        "details": details(l.resident.as_ref().map(|r| &r.kind), &l.path),
    })
}

/// Every model served, loaded or not (with several, the cache is looked at again first: a
/// model pulled since joins).
pub async fn tags(State(state): State<Arc<AppState>>) -> Answer {
    state.ready()?;
    state.models.rescan();
    let mut list = Vec::new();
    for l in state.models.list() {
        list.push(entry(&l).await);
    }
    Ok(json_response(StatusCode::OK, &json!({ "models": list })))
}

/// The models in memory: `expires_at` is when each unloads if no request comes (with one
/// model, ten years on: it stays), `size` the memory estimate (with one model, the file's
/// size, as `/api/tags` has it).
pub async fn ps(State(state): State<Arc<AppState>>) -> Answer {
    state.ready()?;
    let multi = state.multi();
    let far = SystemTime::now() + Duration::from_secs(10 * 365 * 86_400);
    let mut list = Vec::new();
    for l in state.models.list() {
        let Some(r) = &l.resident else { continue };
        let mut e = entry(&l).await;
        e["expires_at"] = json!(rfc3339(l.expires_at.unwrap_or(far)));
        if multi {
            e["size"] = json!(r.bytes);
        }
        e["size_vram"] = json!(0);
        e["context_length"] = json!(match &r.kind {
            ModelKind::Language(m) => m.sched.n_ctx(),
            ModelKind::Encoder(q) => q.model().max_len(),
        });
        if let Some(o) = e.as_object_mut() {
            o.remove("modified_at");
        }
        list.push(e);
    }
    Ok(json_response(StatusCode::OK, &json!({ "models": list })))
}

pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"version": env!("CARGO_PKG_VERSION")}),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShowReq {
    model: Option<String>,
    name: Option<String>,
    verbose: Option<bool>,
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let JsonBody(body) = body?;
    state.ready()?;
    let r: ShowReq = parse(&body)?;
    let name = r.model.as_deref().or(r.name.as_deref());
    let id = resolve(&state, name)?;
    let p = state
        .models
        .path(&id)
        .ok_or_else(|| state.models.not_found(&id))?;
    // The model is loaded for it (its metadata and template come from the loaded model).
    let lease = state.lease(Some(&id), None).await?;
    let verbose = r.verbose.unwrap_or(false);
    let path = p.display().to_string();
    let mut out = json!({
        "license": "",
        "details": details(lease.kind(), &p),
        "modified_at": modified_at(&p),
    });
    match lease.kind() {
        Some(ModelKind::Language(m)) => {
            let g = m.sched.gguf();
            let mut info = Map::new();
            for (k, v) in &g.metadata {
                info.insert(k.clone(), kv_json(v, verbose));
            }
            info.insert("general.parameter_count".into(), json!(m.n_params));
            let template = m.template.as_ref().map(|t| t.source().to_string());
            let n_ctx = m.sched.n_ctx();
            let parameters = format!(
                "num_ctx {n_ctx}\ntemperature {}\ntop_k {}\ntop_p {}\nmin_p {}",
                crate::api::DEFAULT_TEMPERATURE,
                crate::api::DEFAULT_TOP_K,
                crate::api::DEFAULT_TOP_P,
                crate::api::DEFAULT_MIN_P
            );
            let mut modelfile = format!("# Modelfile generated by lume\nFROM {path}\n");
            if let Some(t) = &template {
                modelfile.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
            }
            for line in parameters.lines() {
                modelfile.push_str(&format!("PARAMETER {line}\n"));
            }
            let mut caps = vec!["completion"];
            if template.is_some() {
                caps.push("tools");
            }
            out["modelfile"] = json!(modelfile);
            out["parameters"] = json!(parameters);
            out["template"] = json!(template.unwrap_or_default());
            out["model_info"] = Value::Object(info);
            out["capabilities"] = json!(caps);
        }
        other => {
            let q = match other {
                Some(ModelKind::Encoder(q)) => Some(q),
                _ => None,
            };
            out["modelfile"] = json!(format!("# Modelfile generated by lume\nFROM {path}\n"));
            out["parameters"] = json!("");
            out["template"] = json!("");
            out["model_info"] = json!({
                "embedding_length": q.map(|q| q.model().dim()),
                "context_length": q.map(|q| q.model().max_len()),
            });
            out["capabilities"] = json!(["embedding"]);
        }
    }
    Ok(json_response(StatusCode::OK, &out))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PullReq {
    model: Option<String>,
    name: Option<String>,
    stream: Option<bool>,
}

/// The progress lines of a pull of `e`, sent on `tx` as it goes (the puller's bytes as
/// ollama's `downloading` lines, then `verifying sha256 digest`, `writing manifest`,
/// `success`; an error line `{"error": ...}` when it fails).
fn pull_lines(e: &'static hub::CatalogueEntry, tx: &tokio::sync::mpsc::UnboundedSender<Value>) {
    let digest = format!("sha256:{}", e.sha256);
    let status = format!("downloading {digest}");
    let total = e.bytes;
    let bytes_line =
        |done: u64| json!({"status": status, "digest": digest, "total": total, "completed": done});
    let _ = tx.send(json!({"status": "pulling manifest"}));
    let last = Cell::new(0u64);
    let puller = hub::Puller {
        progress: false,
        ..hub::Puller::from_env()
    };
    let r = puller.pull_with(e, &|p| match p {
        hub::PullProgress::Fetching { .. } => {
            let _ = tx.send(bytes_line(last.get()));
        }
        hub::PullProgress::Bytes { done, .. } => {
            // One line per 4 MiB (and the last).
            if done >= last.get() + (4 << 20) || done >= total {
                last.set(done);
                let _ = tx.send(bytes_line(done));
            }
        }
        hub::PullProgress::Verifying { .. } => {}
    });
    match r {
        Ok(_) => {
            if last.get() < total {
                let _ = tx.send(bytes_line(total));
            }
            let _ = tx.send(json!({"status": "verifying sha256 digest"}));
            let _ = tx.send(json!({"status": "writing manifest"}));
            let _ = tx.send(json!({"status": "success"}));
        }
        Err(err) => {
            let _ = tx.send(json!({ "error": format!("pulling '{}': {err}", e.name) }));
        }
    }
}

pub async fn pull(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let JsonBody(body) = body?;
    let r: PullReq = parse(&body)?;
    let name = r
        .model
        .or(r.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ServerError::bad("'model' is required", "model"))?;
    let short = strip_latest(&name);
    let e = hub::find(short).ok_or_else(|| ServerError::NotFound {
        message: format!(
            "model '{name}' is not in lume's catalogue (known: {})",
            hub::CATALOGUE
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        param: Some("model".into()),
        code: "model_not_found",
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let models = Arc::clone(&state.models);
    tokio::task::spawn_blocking(move || {
        pull_lines(e, &tx);
        // With the cache as the set, the model pulled is served from now on.
        models.rescan();
    });
    if !r.stream.unwrap_or(true) {
        let mut last = Value::Null;
        while let Some(v) = rx.recv().await {
            if let Some(err) = v.get("error").and_then(Value::as_str) {
                return Err(ServerError::Internal(err.to_string()).into());
            }
            last = v;
        }
        return Ok(json_response(StatusCode::OK, &last));
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        Some((Ok::<_, Infallible>(Bytes::from(format!("{v}\n"))), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Framing::Ndjson.content_type()),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_tag() {
        assert_eq!(strip_latest("smollm2-135m:latest"), "smollm2-135m");
        assert_eq!(strip_latest("smollm2-135m"), "smollm2-135m");
        assert_eq!(strip_latest("x:q4"), "x:q4");
        assert_eq!(tagged("smollm2-135m"), "smollm2-135m:latest");
        assert_eq!(tagged("x:q4"), "x:q4");
    }

    #[test]
    fn format_field() {
        assert!(format_shape(None).unwrap().is_none());
        assert!(format_shape(Some(&json!(""))).unwrap().is_none());
        let s = format_shape(Some(&json!("json"))).unwrap().unwrap();
        assert!(matches!(s.spec, Spec::JsonObject));
        assert_eq!(s.field, "format");
        let s = format_shape(Some(&json!({"type": "object"})))
            .unwrap()
            .unwrap();
        assert!(matches!(s.spec, Spec::JsonSchema(_)));
        for bad in [json!("yaml"), json!(3), json!([1])] {
            let e = format_shape(Some(&bad)).unwrap_err();
            assert!(e.to_string().contains("'format'"), "{e}");
        }
    }

    #[test]
    fn keep_alive_values() {
        assert_eq!(keep_alive(None).unwrap(), None);
        assert_eq!(keep_alive(Some(&json!(0))).unwrap(), Some(0.0));
        assert_eq!(keep_alive(Some(&json!(-1))).unwrap(), Some(-1.0));
        assert_eq!(keep_alive(Some(&json!("5m"))).unwrap(), Some(300.0));
        assert_eq!(keep_alive(Some(&json!("1h30m"))).unwrap(), Some(5400.0));
        assert_eq!(keep_alive(Some(&json!("0"))).unwrap(), Some(0.0));
        assert_eq!(keep_alive(Some(&json!("-1"))).unwrap(), Some(-1.0));
        assert_eq!(keep_alive(Some(&json!("250ms"))).unwrap(), Some(0.25));
        for bad in [json!("soon"), json!("5x"), json!(true), json!({})] {
            let e = keep_alive(Some(&bad)).unwrap_err();
            assert!(e.to_string().contains("keep_alive"), "{e}");
        }
    }

    #[test]
    fn message_translation() {
        let list: Vec<OMessage> = serde_json::from_value(json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "22C", "tool_name": "get_weather"},
        ]))
        .unwrap();
        let msgs = messages(list).unwrap();
        assert_eq!(
            msgs[1]["tool_calls"][0]["function"]["arguments"]["city"],
            "Paris"
        );
        assert_eq!(msgs[2]["name"], "get_weather");
        assert_eq!(msgs[2]["role"], "tool");
        let list: Vec<OMessage> =
            serde_json::from_value(json!([{"role": "user", "content": "x", "images": ["aGk="]}]))
                .unwrap();
        let e = messages(list).unwrap_err();
        assert!(e.to_string().contains("messages[0].images"), "{e}");
    }

    #[test]
    fn calls_have_object_arguments() {
        let c = ToolCall {
            name: "f".into(),
            arguments: r#"{"a":1}"#.into(),
        };
        assert_eq!(
            call_json(&c),
            json!({"function": {"name": "f", "arguments": {"a": 1}}})
        );
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(human_params(134_515_008), "134.52M");
        assert_eq!(human_params(8_000_000_000), "8B");
        assert_eq!(human_params(1_540_000_000), "1.5B");
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
