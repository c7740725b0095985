//! `POST /v1/completions`: text or token-id prompts (one choice per prompt, run concurrently),
//! `echo`, legacy `logprobs` (with `echo`, over the prompt too), `max_tokens: 0` to only score.
//!
//! `text_offset` counts characters from the start of the prompt text, as OpenAI's does: with
//! `echo` they index the returned `text`; without it, generated tokens start at the prompt's
//! length.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use engine::{Event, Request, Scheduler, TokenLogprob};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{top_n, Sampling};
use crate::body::{parse, JsonBody};
use crate::chat::{limits, Meta};
use crate::generate::{collect, finish_reason, submit, CompletionLogprobs, Usage};
use crate::json::json_response;
use crate::shape::{self, ShapeFields};
use crate::sse::{self, Encoder};
use crate::state::AppState;
use crate::ServerError;

/// Most prompts in one request.
pub const MAX_PROMPTS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CompletionFields {
    prompt: Option<Value>,
    echo: Option<bool>,
    logprobs: Option<i64>,
}

enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of lists of ids.
fn prompts(v: Option<Value>) -> Result<Vec<Prompt>, ServerError> {
    let bad = |m: String| ServerError::bad(m, "prompt");
    let items = match v {
        None | Some(Value::Null) => return Err(bad("'prompt' is required".into())),
        Some(Value::String(s)) => return Ok(vec![Prompt::Text(s)]),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(bad(
                "'prompt' must be a string, a list of strings, a list of token ids or a list \
                 of lists of token ids"
                    .into(),
            ))
        }
    };
    if items.is_empty() {
        return Err(bad("'prompt' is empty".into()));
    }
    if items.iter().all(Value::is_number) {
        return Ok(vec![Prompt::Ids(ids(&items, "prompt")?)]);
    }
    if items.len() > MAX_PROMPTS {
        return Err(bad(format!(
            "'prompt' has {} prompts; at most {MAX_PROMPTS} are allowed",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, it)| match it {
            Value::String(s) => Ok(Prompt::Text(s)),
            Value::Array(a) => Ok(Prompt::Ids(ids(&a, &format!("prompt[{i}]"))?)),
            _ => Err(bad(format!(
                "'prompt[{i}]' must be a string or a list of token ids"
            ))),
        })
        .collect()
}

fn ids(items: &[Value], field: &str) -> Result<Vec<u32>, ServerError> {
    items
        .iter()
        .enumerate()
        .map(|(j, v)| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ServerError::bad(format!("'{field}[{j}]' = {v} is not a token id"), "prompt")
                })
        })
        .collect()
}

/// One choice's prompt, for echo and prompt log-probabilities.
struct PromptInfo {
    ids: Vec<u32>,
    text: String,
    chars: usize,
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let s: Sampling = parse(&body)?;
    let f: CompletionFields = parse(&body)?;
    let shape: ShapeFields = parse(&body)?;
    drop(body);
    let m = state.model(s.model.as_deref(), None).await?;
    let (mut params, logit_bias) = s.params((s.max_tokens, "max_tokens"), &limits(&state, &m))?;
    params.constraint = shape::constraint(&m.sched, &shape).await?;
    let n_lp = top_n(f.logprobs, "logprobs")?;
    let echo = f.echo.unwrap_or(false);
    let tok = m.sched.tokenizer();
    let mut reqs = Vec::new();
    let mut infos = Vec::new();
    for p in prompts(f.prompt)? {
        let (ids, text) = match p {
            Prompt::Text(t) => (tok.encode(&t, true, true), t),
            Prompt::Ids(ids) => {
                let text = if echo || n_lp.is_some() {
                    tok.decode_string(&ids)
                } else {
                    String::new()
                };
                (ids, text)
            }
        };
        let mut params = params.clone();
        if let Some(n) = n_lp {
            params.logprobs = n.max(1);
        }
        let chars = text.chars().count();
        infos.push(PromptInfo {
            ids: if echo && n_lp.is_some() {
                ids.clone()
            } else {
                Vec::new()
            },
            text: if echo { text } else { String::new() },
            chars,
        });
        reqs.push(Request {
            prompt: ids,
            params,
            prompt_logprobs: if echo { n_lp } else { None },
            logit_bias: logit_bias.clone(),
        });
    }
    let mut run = submit(&m, reqs, "prompt")?;
    let meta = Meta::new("cmpl", m.id());
    let ctx = Ctx {
        sched: m.sched.clone(),
        n_lp,
        echo,
    };
    if s.stream() {
        let choices = infos
            .into_iter()
            .map(|info| StreamChoice {
                offset: if echo { 0 } else { info.chars },
                info,
            })
            .collect();
        let enc = CompletionStream {
            ctx,
            meta,
            include_usage: s.include_usage(),
            choices,
            usage: Usage::default(),
        };
        return Ok(sse::response(run, enc));
    }
    let out = collect(&mut run, n_lp.is_some()).await?;
    let mut usage = Usage::default();
    let choices: Vec<Value> = out
        .into_iter()
        .zip(infos)
        .enumerate()
        .map(|(i, (o, info))| {
            let reason = o.finish.map(|f| {
                usage.add(&f);
                finish_reason(f.reason)
            });
            let logprobs = ctx.n_lp.map(|n| {
                let mut lp = CompletionLogprobs::default();
                let mut offset = 0;
                if echo {
                    ctx.prompt_logprobs(&mut lp, &info, o.prompt_lp.as_deref(), &mut offset);
                } else {
                    offset = info.chars;
                }
                for t in &o.tokens {
                    lp.push(&ctx.sched, t.id, t.logprob.as_ref(), n, true, &mut offset);
                }
                lp
            });
            let text = if echo { info.text + &o.text } else { o.text };
            json!({
                "index": i,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": reason,
            })
        })
        .collect();
    let mut resp = meta.object("text_completion", choices);
    resp["usage"] = json!(usage);
    Ok(json_response(StatusCode::OK, &resp))
}

struct Ctx {
    sched: Scheduler,
    n_lp: Option<usize>,
    echo: bool,
}

impl Ctx {
    /// The prompt's entries: the first token has no log-probability (nothing precedes it).
    fn prompt_logprobs(
        &self,
        lp: &mut CompletionLogprobs,
        info: &PromptInfo,
        plp: Option<&[Option<TokenLogprob>]>,
        offset: &mut usize,
    ) {
        let Some(n) = self.n_lp else { return };
        for (j, &id) in info.ids.iter().enumerate() {
            let entry = plp.and_then(|p| p.get(j)).and_then(Option::as_ref);
            lp.push(&self.sched, id, entry, n, false, offset);
        }
        // Generated tokens continue after the echoed text.
        *offset = info.chars;
    }
}

struct StreamChoice {
    info: PromptInfo,
    /// Characters before the next token (for `text_offset`).
    offset: usize,
}

/// `text_completion` chunks, one per piece of text of any choice.
struct CompletionStream {
    ctx: Ctx,
    meta: Meta,
    include_usage: bool,
    choices: Vec<StreamChoice>,
    usage: Usage,
}

impl CompletionStream {
    fn chunk(
        &self,
        i: usize,
        text: &str,
        lp: Option<CompletionLogprobs>,
        finish: Option<&str>,
    ) -> String {
        let choice = json!({
            "index": i,
            "text": text,
            "logprobs": lp,
            "finish_reason": finish,
        });
        self.meta
            .object("text_completion", vec![choice])
            .to_string()
    }
}

impl Encoder for CompletionStream {
    fn start(&mut self, out: &mut Vec<String>) {
        // Echo without log-probabilities: the prompt text goes out at once.
        if self.ctx.echo && self.ctx.n_lp.is_none() {
            for i in 0..self.choices.len() {
                if !self.choices[i].info.text.is_empty() {
                    out.push(self.chunk(i, &self.choices[i].info.text, None, None));
                }
            }
        }
    }

    fn event(&mut self, i: usize, ev: Event, out: &mut Vec<String>) -> Result<(), ServerError> {
        if i >= self.choices.len() {
            return Ok(());
        }
        match ev {
            Event::Started { .. } => {}
            Event::PromptLogprobs(plp) => {
                if self.ctx.echo {
                    let mut lp = CompletionLogprobs::default();
                    let c = &mut self.choices[i];
                    self.ctx
                        .prompt_logprobs(&mut lp, &c.info, Some(&plp), &mut c.offset);
                    let text = std::mem::take(&mut c.info.text);
                    out.push(self.chunk(i, &text, Some(lp), None));
                }
            }
            Event::Token(t) => {
                let lp = self.ctx.n_lp.map(|n| {
                    let mut lp = CompletionLogprobs::default();
                    let c = &mut self.choices[i];
                    lp.push(
                        &self.ctx.sched,
                        t.id,
                        t.logprob.as_ref(),
                        n,
                        true,
                        &mut c.offset,
                    );
                    lp
                });
                if !t.text.is_empty() || lp.is_some() {
                    out.push(self.chunk(i, &t.text, lp, None));
                }
            }
            Event::Done(f) => {
                self.usage.add(&f);
                out.push(self.chunk(i, "", None, Some(finish_reason(f.reason))));
            }
            Event::Error(e) => return Err(ServerError::Internal(e.to_string())),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<String>) {
        if self.include_usage {
            let mut v = self.meta.object("text_completion", Vec::new());
            v["usage"] = json!(self.usage);
            out.push(v.to_string());
        }
    }
}
