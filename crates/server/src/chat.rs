//! `POST /v1/chat/completions` (and the message parsing `/apply-template` shares).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::tools::{self, Piece, Tool, ToolCall, ToolChoice, ToolParser, ToolStyle};
use engine::{ChatInput, Event, GenerateParams, Request, Scheduler};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{top_n, Limits, Sampling};
use crate::body::{parse, JsonBody};
use crate::generate::{
    chat_logprob, collect, fingerprint, finish_reason, new_id, submit, ChatLogprob, Usage,
};
use crate::json::json_response;
use crate::shape::{self, ShapeFields};
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
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
}

/// One message as sent (`content`: a string, a list of parts, or null).
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a message object with 'role' and 'content'")]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    /// An assistant's calls (`[{"id", "type": "function", "function": {"name", "arguments"}}]`).
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// A tool message's answer to this call id.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The fields `/apply-template` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MessagesOnly {
    pub model: Option<String>,
    pub messages: Option<Vec<InMessage>>,
    pub chat_template_kwargs: Option<Value>,
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
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

/// Checks the messages (present, not empty, known roles, text content, tool calls) and gives
/// them as the template's message objects.
pub fn messages(msgs: Option<Vec<InMessage>>) -> Result<Vec<Value>, ServerError> {
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
            let mut obj = Map::new();
            obj.insert("role".into(), Value::String(role));
            obj.insert("content".into(), Value::String(content(m.content, i)?));
            match m.tool_calls {
                None | Some(Value::Null) => {}
                Some(calls) => {
                    check_calls(&calls, i)?;
                    obj.insert("tool_calls".into(), calls);
                }
            }
            if let Some(id) = m.tool_call_id {
                obj.insert("tool_call_id".into(), Value::String(id));
            }
            if let Some(n) = m.name {
                obj.insert("name".into(), Value::String(n));
            }
            Ok(tools::template_message(Value::Object(obj)))
        })
        .collect()
}

/// `messages[i].tool_calls`: a list of `{"function": {"name": string, "arguments"}}`.
fn check_calls(calls: &Value, i: usize) -> Result<(), ServerError> {
    let field = format!("messages[{i}].tool_calls");
    let Some(list) = calls.as_array() else {
        return Err(ServerError::bad(
            format!("'{field}' must be an array"),
            field,
        ));
    };
    for (j, c) in list.iter().enumerate() {
        let name = c
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        if name.is_none() {
            return Err(ServerError::bad(
                format!("'{field}[{j}].function.name' must be a string"),
                format!("{field}[{j}].function.name"),
            ));
        }
    }
    Ok(())
}

/// The request's tools and choice (`None` without tools or with `tool_choice: "none"`).
pub fn tool_setup(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<Option<(Vec<Tool>, ToolChoice)>, ServerError> {
    let list = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => Tool::parse_list(v).map_err(|e| ServerError::bad(e.message, e.field))?,
    };
    let choice =
        tools::parse_choice(choice, &list).map_err(|msg| ServerError::bad(msg, "tool_choice"))?;
    if list.is_empty() || choice == ToolChoice::None {
        return Ok(None);
    }
    Ok(Some((list, choice)))
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
    msgs: Vec<Value>,
    kwargs: Map<String, Value>,
    tools: Option<&[Tool]>,
) -> Result<String, ServerError> {
    let tmpl = m.template.as_ref().ok_or_else(|| {
        ServerError::from_engine(
            engine::EngineError::NoChatTemplate {
                path: m.sched.path().to_path_buf(),
            },
            "messages",
        )
    })?;
    let mut input = ChatInput {
        messages: msgs,
        kwargs,
        add_generation_prompt: true,
        ..ChatInput::default()
    };
    if let Some(tools) = tools {
        match ToolStyle::of(tmpl.source()) {
            ToolStyle::Template => {
                input.tools = Some(Value::Array(tools.iter().map(|t| t.raw.clone()).collect()));
            }
            ToolStyle::Injected => inject_tools(&mut input.messages, tools),
        }
    }
    tmpl.render_input(&input)
        .map_err(|e| ServerError::from_engine(e, "messages"))
}

/// For a template without tool support: the tools described in the system message, and past
/// calls written into their assistant messages' content.
fn inject_tools(msgs: &mut Vec<Value>, tools: &[Tool]) {
    for m in msgs.iter_mut() {
        if let Some(text) = tools::calls_as_text(m) {
            m["content"] = Value::String(text);
            if let Some(o) = m.as_object_mut() {
                o.remove("tool_calls");
            }
        }
    }
    let prompt = tools::system_prompt(tools);
    match msgs.first_mut() {
        Some(first) if first["role"] == "system" => {
            let old = first["content"].as_str().unwrap_or("").to_string();
            first["content"] = Value::String(if old.is_empty() {
                prompt
            } else {
                format!("{old}\n\n{prompt}")
            });
        }
        _ => msgs.insert(0, json!({"role": "system", "content": prompt})),
    }
}

pub fn limits(state: &AppState, m: &Loaded) -> Limits {
    Limits {
        n_ctx: m.sched.n_ctx(),
        n_vocab: m.sched.info().vocab,
        max_stops: state.cfg.max_stops,
    }
}

/// A chat request as each chat route (OpenAI's, ollama's `/api/chat`, Anthropic's
/// `/v1/messages`) has it once its own fields are parsed and checked.
pub struct ChatParts {
    /// The messages as the template takes them ([`messages`]).
    pub msgs: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub tools: Option<(Vec<Tool>, ToolChoice)>,
    pub parallel_tool_calls: Option<bool>,
    pub params: GenerateParams,
    pub logit_bias: Vec<(u32, f32)>,
    /// The output's shape (compiled here, on the blocking pool).
    pub shape: Option<shape::Shape>,
    /// Text the answer already starts with (Anthropic's assistant prefill), put after the
    /// generation prompt; the answer continues it.
    pub prefill: Option<String>,
}

/// A chat request ready to submit, with the tools' names its answer is parsed for.
pub struct Prepared {
    pub req: Request,
    pub tool_names: Option<Vec<String>>,
}

/// Renders and tokenizes the prompt, compiles the shape, and for a `tool_choice` that forces a
/// call, the call grammar.
pub async fn prepare(m: &Loaded, p: ChatParts) -> Result<Prepared, ServerError> {
    let mut text = render(
        m,
        p.msgs,
        p.kwargs,
        p.tools.as_ref().map(|(t, _)| t.as_slice()),
    )?;
    if let Some(pre) = &p.prefill {
        text.push_str(pre);
    }
    let prompt = m.sched.tokenizer().encode(&text, true, true);
    let mut params = p.params;
    params.constraint = match p.shape {
        None => None,
        Some(s) => Some(shape::compile(&m.sched, s).await?),
    };
    if let Some((list, choice)) = &p.tools {
        let mut choice = choice.clone();
        if p.parallel_tool_calls == Some(false) && choice == ToolChoice::Required && list.len() == 1
        {
            choice = ToolChoice::Named(list[0].name.clone());
        }
        let spec =
            tools::grammar(list, &choice).map_err(|e| ServerError::bad(e.message, e.field))?;
        if let Some(spec) = spec {
            if params.constraint.is_some() {
                return Err(ServerError::bad(
                    "'tool_choice' that forces a call cannot be combined with 'response_format', \
                     'json_schema' or 'grammar'",
                    "tool_choice",
                ));
            }
            let shape = shape::Shape {
                spec,
                field: "tools",
            };
            params.constraint = Some(shape::compile(&m.sched, shape).await?);
        }
    }
    let tool_names: Option<Vec<String>> = p
        .tools
        .as_ref()
        .map(|(list, _)| list.iter().map(|t| t.name.clone()).collect());
    Ok(Prepared {
        req: Request {
            prompt,
            params,
            prompt_logprobs: None,
            logit_bias: p.logit_bias,
        },
        tool_names,
    })
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let s: Sampling = parse(&body)?;
    let f: ChatFields = parse(&body)?;
    let shape: ShapeFields = parse(&body)?;
    drop(body);
    let m = state.model(s.model.as_deref(), None).await?;
    let msgs = messages(f.messages)?;
    let kw = kwargs(f.chat_template_kwargs)?;
    let tools = tool_setup(f.tools.as_ref(), f.tool_choice.as_ref())?;
    let len_field = match f.max_completion_tokens {
        Some(v) => (Some(v), "max_completion_tokens"),
        None => (s.max_tokens, "max_tokens"),
    };
    let (mut params, logit_bias) = s.params(len_field, &limits(&state, &m))?;
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
    let Prepared { req, tool_names } = prepare(
        &m,
        ChatParts {
            msgs,
            kwargs: kw,
            tools,
            parallel_tool_calls: f.parallel_tool_calls,
            params,
            logit_bias,
            shape: shape.spec()?,
            prefill: None,
        },
    )
    .await?;
    let mut run = submit(&m, vec![req], "messages")?;
    let meta = Meta::new("chatcmpl", m.id());
    if s.stream() {
        let enc = ChatStream {
            sched: m.sched.clone(),
            meta,
            k: want_lp.then_some(k),
            include_usage: s.include_usage(),
            pending: Vec::new(),
            usage: Usage::default(),
            tools: tool_names.clone().map(ToolParser::new),
            n_calls: 0,
            pieces: Vec::new(),
        };
        return Ok(sse::response(run, enc));
    }
    let out = collect(&mut run, want_lp).await?;
    let mut usage = Usage::default();
    let choices: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut reason = o.finish.map(|f| {
                usage.add(&f);
                finish_reason(f.reason)
            });
            let mut message = json!({"role": "assistant", "content": o.text});
            if let Some(names) = &tool_names {
                let (content, calls) = tools::split(&o.text, names.clone());
                if !calls.is_empty() {
                    let calls: Vec<Value> = calls.iter().map(call_json).collect();
                    message = json!({
                        "role": "assistant",
                        "content": if content.is_empty() { Value::Null } else { Value::String(content) },
                        "tool_calls": calls,
                    });
                    if reason == Some("stop") {
                        reason = Some("tool_calls");
                    }
                }
            }
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
                "message": message,
                "logprobs": logprobs,
                "finish_reason": reason,
            })
        })
        .collect();
    let mut resp = meta.object("chat.completion", choices);
    resp["usage"] = json!(usage);
    Ok(json_response(StatusCode::OK, &resp))
}

/// A parsed call as OpenAI writes it in `message.tool_calls`.
fn call_json(c: &ToolCall) -> Value {
    json!({
        "id": new_id("call"),
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments},
    })
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
    /// With tools: takes the calls out of the text (`delta.tool_calls`).
    tools: Option<ToolParser>,
    n_calls: usize,
    pieces: Vec<Piece>,
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

impl ChatStream {
    /// Content deltas for text, and for each call OpenAI's two: the call's id, type and name
    /// with empty arguments, then the arguments.
    fn flush(&mut self, out: &mut Vec<String>) {
        for piece in std::mem::take(&mut self.pieces) {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => out.push(self.chunk(json!({ "content": t }), None)),
                Piece::Call(c) => {
                    let i = self.n_calls;
                    self.n_calls += 1;
                    let head = json!({"tool_calls": [{
                        "index": i,
                        "id": new_id("call"),
                        "type": "function",
                        "function": {"name": c.name, "arguments": ""},
                    }]});
                    out.push(self.chunk(head, None));
                    let args = json!({"tool_calls": [{
                        "index": i,
                        "function": {"arguments": c.arguments},
                    }]});
                    out.push(self.chunk(args, None));
                }
            }
        }
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
                if let Some(p) = self.tools.as_mut() {
                    p.push(&t.text, &mut self.pieces);
                    self.flush(out);
                } else if !t.text.is_empty() {
                    out.push(self.chunk(json!({ "content": t.text }), None));
                }
            }
            Event::Done(f) => {
                self.usage.add(&f);
                if let Some(p) = self.tools.as_mut() {
                    p.finish(&mut self.pieces);
                    self.flush(out);
                }
                let mut reason = finish_reason(f.reason);
                if self.n_calls > 0 && reason == "stop" {
                    reason = "tool_calls";
                }
                out.push(self.chunk(json!({}), Some(reason)));
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
