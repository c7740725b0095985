//! Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! The request is translated into the shared chat internals (the chat template, [`Sampling`]
//! and its checks, stop strings, the scheduler bridge):
//!
//! - `messages`: roles `user` and `assistant`, `content` a string or a list of
//!   `{"type": "text", "text"}` blocks (other block types, `tool_use` and `image` included, are
//!   a 400 naming the block). A last `assistant` message is a prefill: the answer continues it
//!   (and holds only the new text), as Anthropic's does.
//! - `system`: a string or text blocks, given to the template as the system message.
//! - `max_tokens` (required, >= 1, capped at the context), `stop_sequences`, `temperature`
//!   (0..=1), `top_p`, `top_k`, `stream`; `metadata` and `tool_choice` are ignored; `tools`
//!   and an enabled `thinking` are a 400. Unset sampling fields take the server's defaults.
//! - Answer: `{"id": "msg_...", "type": "message", "role": "assistant", "model", "content":
//!   [{"type": "text", "text"}], "stop_reason": "end_turn" | "max_tokens" | "stop_sequence",
//!   "stop_sequence", "usage": {"input_tokens", "output_tokens"}}`; `output_tokens` counts an
//!   end-of-generation token.
//! - Streaming: named server-sent events `message_start`, `content_block_start`, `ping`,
//!   `content_block_delta` (`text_delta`) per piece of text, `content_block_stop`,
//!   `message_delta` (stop reason, `usage.output_tokens`), `message_stop`; an error after the
//!   stream began is an `error` event.
//! - Errors: `{"type": "error", "error": {"type": "invalid_request_error", "message"}}` (types
//!   by status: `authentication_error`, `not_found_error`, `overloaded_error`, `api_error`).
//!   The key may come as `x-api-key` (Anthropic's header) or `Authorization: Bearer`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::{Event, Finish, GenToken, Scheduler, StopReason};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::Sampling;
use crate::body::{parse, JsonBody};
use crate::chat::{self, limits, ChatParts, InMessage, Prepared};
use crate::error::AnthropicError;
use crate::generate::{collect, new_id, submit, token_bytes};
use crate::json::json_response;
use crate::sse::{self, Encoder, Framing};
use crate::state::AppState;
use crate::ServerError;

type Answer = Result<Response, AnthropicError>;

#[derive(Debug, Deserialize)]
#[serde(expecting = "a message object with 'role' and 'content'")]
pub struct AMessage {
    role: String,
    content: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessagesReq {
    model: Option<String>,
    max_tokens: Option<i64>,
    messages: Option<Vec<AMessage>>,
    system: Option<Value>,
    stop_sequences: Option<Value>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    stream: Option<bool>,
    tools: Option<Value>,
    thinking: Option<Value>,
}

/// The text of `field`: a string, or a list of `{"type": "text", "text"}` blocks (joined by
/// newlines).
fn text_of(v: &Value, field: &str) -> Result<String, ServerError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("{field}[{j}]");
                match (b.get("type").and_then(Value::as_str), b.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (Some("text"), _) => {
                        return Err(ServerError::bad(
                            format!("'{at}' is a text block without a 'text' string"),
                            format!("{at}.text"),
                        ))
                    }
                    (Some(t), _) => {
                        return Err(ServerError::bad(
                            format!(
                                "'{at}' is a '{t}' block; only 'text' blocks are supported here"
                            ),
                            format!("{at}.type"),
                        ))
                    }
                    (None, _) => {
                        return Err(ServerError::bad(
                            format!("'{at}' has no 'type'"),
                            format!("{at}.type"),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ServerError::bad(
            format!("'{field}' must be a string or a list of text blocks"),
            field,
        )),
    }
}

/// `system` + `messages` as the template's messages, and the prefill (the text of a last
/// assistant message, which the answer continues).
pub fn translate(
    system: Option<&Value>,
    messages: Option<Vec<AMessage>>,
) -> Result<(Vec<Value>, Option<String>), ServerError> {
    let list = messages.ok_or_else(|| ServerError::bad("'messages' is required", "messages"))?;
    if list.is_empty() {
        return Err(ServerError::bad("'messages' must not be empty", "messages"));
    }
    let mut msgs = Vec::with_capacity(list.len() + 1);
    match system {
        None | Some(Value::Null) => {}
        Some(v) => {
            let text = text_of(v, "system")?;
            if !text.is_empty() {
                msgs.push(InMessage {
                    role: "system".into(),
                    content: Some(Value::String(text)),
                    ..InMessage::default()
                });
            }
        }
    }
    let n = list.len();
    let mut prefill = None;
    for (i, m) in list.into_iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(ServerError::bad(
                format!(
                    "'messages[{i}].role' must be \"user\" or \"assistant\" (got \"{}\"); the \
                     system prompt goes in 'system'",
                    m.role
                ),
                format!("messages[{i}].role"),
            ));
        }
        let text = text_of(&m.content, &format!("messages[{i}].content"))?;
        if i == n - 1 && i > 0 && m.role == "assistant" {
            if text != text.trim_end() {
                return Err(ServerError::bad(
                    "the final assistant content cannot end with trailing whitespace",
                    format!("messages[{i}].content"),
                ));
            }
            prefill = Some(text).filter(|t| !t.is_empty());
            continue;
        }
        msgs.push(InMessage {
            role: m.role,
            content: Some(Value::String(text)),
            ..InMessage::default()
        });
    }
    Ok((chat::messages(Some(msgs))?, prefill))
}

/// Anthropic's `stop_reason`.
pub fn stop_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ContextFull => "max_tokens",
        StopReason::StopString => "stop_sequence",
        StopReason::Eog | StopReason::Callback | StopReason::GrammarEnd => "end_turn",
    }
}

/// Which of `stops` ended `raw` (the generated tokens' text, stop string included): the one
/// whose first occurrence ends first, as generation stops at the first.
pub fn matched_stop<'a>(raw: &str, stops: &'a [String]) -> Option<&'a str> {
    stops
        .iter()
        .filter_map(|s| raw.find(s.as_str()).map(|at| (at + s.len(), s.len(), s)))
        .min_by_key(|&(end, len, _)| (end, len))
        .map(|(_, _, s)| s.as_str())
}

/// Generated tokens as raw text (what the stop strings are found in).
fn raw_text(sched: &Scheduler, ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| token_bytes(sched, id, true).iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `stop_reason` and `stop_sequence` of a finished answer.
fn reason_and_stop(f: &Finish, sched: &Scheduler, ids: &[u32], stops: &[String]) -> (Value, Value) {
    let reason = stop_reason(f.reason);
    let stop = if f.reason == StopReason::StopString {
        matched_stop(&raw_text(sched, ids), stops).map_or(Value::Null, |s| json!(s))
    } else {
        Value::Null
    };
    (json!(reason), stop)
}

fn message_id() -> String {
    new_id("msg").replacen('-', "_", 1)
}

pub async fn messages(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let JsonBody(body) = body?;
    state.ready()?;
    let r: MessagesReq = parse(&body)?;
    drop(body);
    let m = state.model(r.model.as_deref(), None).await?;
    let max_tokens = match r.max_tokens {
        None => return Err(ServerError::bad("'max_tokens' is required", "max_tokens").into()),
        Some(n) if n < 1 => {
            return Err(ServerError::bad(
                format!("'max_tokens' must be >= 1 (got {n})"),
                "max_tokens",
            )
            .into())
        }
        Some(n) => n,
    };
    if let Some(t) = r.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(ServerError::bad(
                format!("'temperature' must be between 0 and 1 (got {t})"),
                "temperature",
            )
            .into());
        }
    }
    if matches!(&r.tools, Some(Value::Array(a)) if !a.is_empty()) {
        return Err(ServerError::bad(
            "'tools' is not supported on /v1/messages; use /v1/chat/completions or /api/chat for tool calls",
            "tools",
        )
        .into());
    }
    if let Some(th) = &r.thinking {
        let ty = th.get("type").and_then(Value::as_str);
        if !th.is_null() && ty != Some("disabled") {
            return Err(ServerError::bad(
                "'thinking' is not supported: this model does not think",
                "thinking",
            )
            .into());
        }
    }
    if matches!(&r.stop_sequences, Some(v) if !(v.is_array() || v.is_null())) {
        return Err(ServerError::bad(
            "'stop_sequences' must be a list of strings",
            "stop_sequences",
        )
        .into());
    }
    let (msgs, prefill) = translate(r.system.as_ref(), r.messages)?;
    let s = Sampling {
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r.top_k,
        stop: r.stop_sequences.clone(),
        ..Sampling::default()
    };
    let (params, logit_bias) = s
        .params((Some(max_tokens), "max_tokens"), &limits(&state, &m))
        .map_err(|e| e.renamed("stop", "stop_sequences"))?;
    let stops = params.stop.clone();
    let Prepared { req, .. } = chat::prepare(
        &m,
        ChatParts {
            msgs,
            kwargs: Map::new(),
            tools: None,
            parallel_tool_calls: None,
            params,
            logit_bias,
            shape: None,
            prefill,
        },
    )
    .await?;
    let n_prompt = req.prompt.len();
    let mut run = submit(&m, vec![req], "messages")?;
    let model = match r.model {
        Some(n) if !n.is_empty() => n,
        _ => m.id().to_string(),
    };
    let id = message_id();
    if r.stream.unwrap_or(false) {
        let enc = Stream {
            sched: m.sched.clone(),
            id,
            model,
            n_prompt,
            stops,
            ids: Vec::new(),
        };
        return Ok(sse::response_framed(run, enc, Framing::Events));
    }
    let out = collect(&mut run, true).await?;
    let o = out
        .into_iter()
        .next()
        .ok_or_else(|| ServerError::Internal("the request gave no answer".into()))?;
    let f = o
        .finish
        .ok_or_else(|| ServerError::Internal("the request did not finish".into()))?;
    let ids: Vec<u32> = o.tokens.iter().map(|t: &GenToken| t.id).collect();
    let (reason, stop) = reason_and_stop(&f, &m.sched, &ids, &stops);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": o.text}],
            "stop_reason": reason,
            "stop_sequence": stop,
            "usage": {"input_tokens": f.n_prompt, "output_tokens": f.n_gen},
        }),
    ))
}

/// The events of a streamed answer.
struct Stream {
    sched: Scheduler,
    id: String,
    model: String,
    n_prompt: usize,
    stops: Vec<String>,
    /// Generated token ids (to tell which stop sequence ended the answer).
    ids: Vec<u32>,
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}")
}

impl Encoder for Stream {
    fn start(&mut self, out: &mut Vec<String>) {
        out.push(event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": self.n_prompt, "output_tokens": 0},
            }}),
        ));
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        out.push(event("ping", json!({"type": "ping"})));
    }

    fn event(&mut self, _i: usize, ev: Event, out: &mut Vec<String>) -> Result<(), ServerError> {
        match ev {
            Event::Started { .. } | Event::PromptLogprobs(_) => {}
            Event::Token(t) => {
                self.ids.push(t.id);
                if !t.text.is_empty() {
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": t.text}}),
                    ));
                }
            }
            Event::Done(f) => {
                let (reason, stop) = reason_and_stop(&f, &self.sched, &self.ids, &self.stops);
                out.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": reason, "stop_sequence": stop},
                           "usage": {"output_tokens": f.n_gen}}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
            Event::Error(e) => return Err(ServerError::Internal(e.to_string())),
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<String>) {}
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountReq {
    model: Option<String>,
    messages: Option<Vec<AMessage>>,
    system: Option<Value>,
}

pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    body: Result<JsonBody, ServerError>,
) -> Answer {
    let JsonBody(body) = body?;
    state.ready()?;
    let r: CountReq = parse(&body)?;
    drop(body);
    let m = state.model(r.model.as_deref(), None).await?;
    let (msgs, prefill) = translate(r.system.as_ref(), r.messages)?;
    let mut text = chat::render(&m, msgs, Map::new(), None)?;
    if let Some(p) = prefill {
        text.push_str(&p);
    }
    let n = m.sched.tokenizer().encode(&text, true, true).len();
    Ok(json_response(StatusCode::OK, &json!({ "input_tokens": n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: Value) -> Option<Vec<AMessage>> {
        Some(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn system_blocks_and_prefill() {
        let (m, pre) = translate(
            Some(&json!([{"type": "text", "text": "Be brief."}])),
            msgs(json!([
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Count to 3"},
                {"role": "assistant", "content": "1,"},
            ])),
        )
        .unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0]["role"], "system");
        assert_eq!(m[0]["content"], "Be brief.");
        assert_eq!(m[1]["content"], "Hi");
        assert_eq!(m[3]["content"], "Count to 3");
        assert_eq!(pre.as_deref(), Some("1,"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]),
                "messages[0].content[0].type",
            ),
            (
                json!([{"role": "system", "content": "x"}]),
                "messages[0].role",
            ),
            (
                json!([{"role": "user", "content": 3}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b "}]),
                "messages[1].content",
            ),
        ];
        for (v, field) in cases {
            match translate(None, msgs(v.clone())).unwrap_err() {
                ServerError::BadRequest { param, .. } => {
                    assert_eq!(param.as_deref(), Some(field), "{v}")
                }
                other => panic!("{v}: {other:?}"),
            }
        }
        assert!(translate(None, Some(Vec::new())).is_err());
        assert!(translate(
            Some(&json!(5)),
            msgs(json!([{"role": "user", "content": "x"}]))
        )
        .is_err());
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason(StopReason::Eog), "end_turn");
        assert_eq!(stop_reason(StopReason::MaxTokens), "max_tokens");
        assert_eq!(stop_reason(StopReason::ContextFull), "max_tokens");
        assert_eq!(stop_reason(StopReason::StopString), "stop_sequence");
        let stops = vec!["world".to_string(), "lo".to_string(), ", w".to_string()];
        assert_eq!(matched_stop("Hello, world", &stops), Some("lo"));
        let stops = vec!["abc".to_string(), "ab".to_string()];
        assert_eq!(matched_stop("xxabc", &stops), Some("ab"));
        assert_eq!(matched_stop("xyz", &stops), None);
    }
}
