//! `POST /v1/chat/completions` (and the message parsing `/apply-template` shares).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::{ChatInput, ChatMessage, Event, Request, Scheduler};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{top_n, Limits, Sampling};
use crate::body::{parse, JsonBody};
use crate::generate::{
    chat_logprob, collect, fingerprint, finish_reason, new_id, submit, ChatLogprob, Usage,
};
use crate::json::json_response;
use crate::sse::{self, Encoder};
use crate::state::{unix_now, AppState, Loaded};
use crate::ServerError;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatFields {
    messages: Option<Vec<InMessage>>,
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    chat_template_kwargs: Option<Value>,
}

/// One message as sent (`content`: a string, a list of parts, or null).
#[derive(Debug, Deserialize)]
#[serde(expecting = "a message object with 'role' and 'content'")]
pub struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

/// The fields `/apply-template` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessagesOnly {
    pub messages: Option<Vec<InMessage>>,
    pub chat_template_kwargs: Option<Value>,
}

/// A request's `chat_template_kwargs`: an object of extra template variables (or absent/null).
pub fn kwargs(v: Option<Value>) -> Result<Map<String, Value>, ServerError> {
    const FIELD: &str = "chat_template_kwargs";
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            if let Some(k) = m
                .keys()
                .find(|k| engine::chat::RESERVED_VARIABLES.contains(&k.as_str()))
            {
                return Err(ServerError::bad(
                    format!("'{FIELD}' cannot set '{k}' (it comes from the request itself)"),
                    format!("{FIELD}.{k}"),
                ));
            }
            Ok(m)
        }
        Some(other) => Err(ServerError::bad(
            format!("'{FIELD}' must be an object of template variables, not {other}"),
            FIELD,
        )),
    }
}

/// Checks the messages (present, not empty, known roles, text content) for the template.
pub fn messages(msgs: Option<Vec<InMessage>>) -> Result<Vec<ChatMessage>, ServerError> {
    let msgs = msgs.ok_or_else(|| ServerError::bad("'messages' is required", "messages"))?;
    if msgs.is_empty() {
        return Err(ServerError::bad("'messages' must not be empty", "messages"));
    }
    msgs.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" | "tool" => m.role,
                // OpenAI's newer name for the system role.
                "developer" => "system".to_string(),
                other => {
                    return Err(ServerError::bad(
                        format!(
                            "unknown role '{other}' in messages[{i}] (expected system, user, \
                             assistant or tool)"
                        ),
                        format!("messages[{i}].role"),
                    ))
                }
            };
            Ok(ChatMessage {
                role,
                content: content(m.content, i)?,
            })
        })
        .collect()
}

fn content(v: Option<Value>, i: usize) -> Result<String, ServerError> {
    let bad = |why: &str| {
        ServerError::bad(
            format!("messages[{i}].content {why}"),
            format!("messages[{i}].content"),
        )
    };
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in &parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (Some("text"), _) => {
                        return Err(bad("has a text part without a 'text' string"))
                    }
                    (Some(t), _) => {
                        return Err(bad(&format!(
                            "has a part of type '{t}'; only text parts are supported"
                        )))
                    }
                    (None, _) => return Err(bad("has a part without a 'type'")),
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(bad("must be a string or a list of text parts")),
    }
}

/// The rendered prompt of `msgs` with the request's template variables over the server's
/// (400 for a model without a chat template).
pub fn render(
    m: &Loaded,
    msgs: &[ChatMessage],
    kwargs: Map<String, Value>,
) -> Result<String, ServerError> {
    let tmpl = m.template.as_ref().ok_or_else(|| {
        ServerError::from_engine(
            engine::EngineError::NoChatTemplate {
                path: m.sched.path().to_path_buf(),
            },
            "messages",
        )
    })?;
    let input = ChatInput {
        kwargs,
        ..ChatInput::from_messages(msgs, true)
    };
    tmpl.render_input(&input)
        .map_err(|e| ServerError::from_engine(e, "messages"))
}

pub fn limits(state: &AppState, m: &Loaded) -> Limits {
    Limits {
        n_ctx: m.sched.n_ctx(),
        n_vocab: m.sched.info().vocab,
        max_stops: state.cfg.max_stops,
    }
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    let m = state.model()?;
    let s: Sampling = parse(&body)?;
    let f: ChatFields = parse(&body)?;
    drop(body);
    state.check_model(s.model.as_deref())?;
    let msgs = messages(f.messages)?;
    let kw = kwargs(f.chat_template_kwargs)?;
    let text = render(m, &msgs, kw)?;
    let prompt = m.sched.tokenizer().encode(&text, true, true);
    let len_field = match f.max_completion_tokens {
        Some(v) => (Some(v), "max_completion_tokens"),
        None => (s.max_tokens, "max_tokens"),
    };
    let (mut params, logit_bias) = s.params(len_field, &limits(&state, m))?;
    let want_lp = f.logprobs.unwrap_or(false);
    let k = top_n(f.top_logprobs, "top_logprobs")?;
    if !want_lp && k.is_some_and(|k| k > 0) {
        return Err(ServerError::bad(
            "'top_logprobs' needs 'logprobs': true",
            "top_logprobs",
        ));
    }
    let k = k.unwrap_or(0);
    if want_lp {
        params.logprobs = k.max(1);
    }
    let req = Request {
        prompt,
        params,
        prompt_logprobs: None,
        logit_bias,
    };
    let mut run = submit(&m.sched, vec![req], "messages")?;
    let meta = Meta::new("chatcmpl", state.id());
    if s.stream() {
        let enc = ChatStream {
            sched: m.sched.clone(),
            meta,
            k: want_lp.then_some(k),
            include_usage: s.include_usage(),
            pending: Vec::new(),
            usage: Usage::default(),
        };
        return Ok(sse::response(run, enc));
    }
    let out = collect(&mut run, want_lp).await?;
    let mut usage = Usage::default();
    let choices: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let reason = o.finish.map(|f| {
                usage.add(&f);
                finish_reason(f.reason)
            });
            let logprobs = want_lp.then(|| {
                let content: Vec<ChatLogprob> = o
                    .tokens
                    .iter()
                    .filter_map(|t| chat_logprob(&m.sched, t, k))
                    .collect();
                json!({ "content": content })
            });
            json!({
                "index": i,
                "message": {"role": "assistant", "content": o.text},
                "logprobs": logprobs,
                "finish_reason": reason,
            })
        })
        .collect();
    let mut resp = meta.object("chat.completion", choices);
    resp["usage"] = json!(usage);
    Ok(json_response(StatusCode::OK, &resp))
}

/// What every response and chunk of one request repeats.
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub fingerprint: String,
}

impl Meta {
    pub fn new(prefix: &str, model: &str) -> Meta {
        Meta {
            id: new_id(prefix),
            created: unix_now(),
            model: model.to_string(),
            fingerprint: fingerprint(),
        }
    }

    pub fn object(&self, object: &str, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        })
    }
}

/// Chat chunks: the role first, then one chunk per piece of text, the finish, the usage.
struct ChatStream {
    sched: Scheduler,
    meta: Meta,
    /// `Some(k)`: log-probabilities with `k` alternatives.
    k: Option<usize>,
    include_usage: bool,
    /// Log-probabilities of tokens whose text is not out yet.
    pending: Vec<ChatLogprob>,
    usage: Usage,
}

impl ChatStream {
    fn chunk(&mut self, delta: Value, finish: Option<&str>) -> String {
        let logprobs = match self.k {
            Some(_) if !self.pending.is_empty() => {
                json!({ "content": std::mem::take(&mut self.pending) })
            }
            _ => Value::Null,
        };
        let choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish,
        });
        self.meta
            .object("chat.completion.chunk", vec![choice])
            .to_string()
    }
}

impl Encoder for ChatStream {
    fn start(&mut self, out: &mut Vec<String>) {
        out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
    }

    fn event(&mut self, _i: usize, ev: Event, out: &mut Vec<String>) -> Result<(), ServerError> {
        match ev {
            Event::Started { .. } | Event::PromptLogprobs(_) => {}
            Event::Token(t) => {
                if let Some(k) = self.k {
                    self.pending.extend(chat_logprob(&self.sched, &t, k));
                }
                if !t.text.is_empty() {
                    out.push(self.chunk(json!({ "content": t.text }), None));
                }
            }
            Event::Done(f) => {
                self.usage.add(&f);
                out.push(self.chunk(json!({}), Some(finish_reason(f.reason))));
            }
            Event::Error(e) => return Err(ServerError::Internal(e.to_string())),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<String>) {
        if self.include_usage {
            let mut v = self.meta.object("chat.completion.chunk", Vec::new());
            v["usage"] = json!(self.usage);
            out.push(v.to_string());
        }
    }
}
