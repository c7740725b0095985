//! `POST /v1/embeddings` (and `/embeddings`), OpenAI's format:
//!
//! - `input`: a string, a list of strings, a list of token ids, or a list of lists of ids (at
//!   most [`MAX_INPUTS`]); texts longer than the model takes are truncated as its tokenizer
//!   says, id lists longer than that are a 400 naming `input[i]`;
//! - `encoding_format`: `float` (default) or `base64` (the little-endian f32 bytes);
//! - `dimensions`: only the model's own width is accepted (no model here is trained for
//!   shortened vectors), anything else is a 400 saying so;
//! - answer: `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
//!   "model", "usage": {"prompt_tokens", "total_tokens"}}`.
//!
//! Requests from concurrent clients meet in the [`engine::embeddings::EmbedQueue`], which
//! runs every request waiting at a step in one batch.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{parse, JsonBody};
use crate::json::json_response;
use crate::state::{AppState, Embedder};
use crate::ServerError;

/// Most inputs in one request.
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EmbedFields {
    model: Option<String>,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

/// One item of `input`.
pub enum Input {
    Text(String),
    Ids(Vec<u32>),
}

fn ids(items: &[Value], field: &str) -> Result<Vec<u32>, ServerError> {
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .filter(|&n| n <= u32::MAX as u64)
                .map(|n| n as u32)
                .ok_or_else(|| {
                    ServerError::bad(
                        format!("'{field}' must hold token ids (integers >= 0)"),
                        field,
                    )
                })
        })
        .collect()
}

/// `input`: a string, a list of strings, a list of token ids, or a list of lists of ids.
pub fn inputs(v: Option<Value>) -> Result<Vec<Input>, ServerError> {
    const F: &str = "input";
    let bad = || {
        ServerError::bad(
            "'input' must be a string, a list of strings, a list of token ids or a list of lists of token ids",
            F,
        )
    };
    let list = match v {
        None | Some(Value::Null) => return Err(ServerError::bad("'input' is required", F)),
        Some(Value::String(s)) => return Ok(vec![Input::Text(s)]),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad()),
    };
    if list.is_empty() {
        return Err(ServerError::bad("'input' must not be empty", F));
    }
    if list.len() > MAX_INPUTS {
        return Err(ServerError::bad(
            format!(
                "'input' has {} items; at most {MAX_INPUTS} per request",
                list.len()
            ),
            F,
        ));
    }
    if list.iter().all(Value::is_number) {
        return Ok(vec![Input::Ids(ids(&list, F)?)]);
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(Input::Text(s)),
            Value::Array(a) => Ok(Input::Ids(ids(&a, &format!("input[{i}]"))?)),
            _ => Err(bad()),
        })
        .collect()
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let f: EmbedFields = parse(&body)?;
    drop(body);
    let id = state.resolve(f.model.as_deref())?;
    let base64 = match f.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ServerError::bad(
                format!("'encoding_format' must be \"float\" or \"base64\" (got \"{other}\")"),
                "encoding_format",
            ))
        }
    };
    let items = inputs(f.input)?;
    let e = state.embedder(Some(&id), None).await?;
    let (vecs, dim, n_tokens) = embed_inputs(e, items, f.dimensions, true).await?;
    let data: Vec<Value> = vecs
        .chunks_exact(dim.max(1))
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let resp = json!({
        "object": "list",
        "data": data,
        "model": id,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    });
    Ok(json_response(StatusCode::OK, &resp))
}

/// Embeds `items` on the blocking pool (the model's embedding queue, loaded on first use for a
/// language model): the vectors one after another, their width, and the tokens they took.
/// `dims`, when given, must be the model's width. `truncate: false` refuses a text longer than
/// the model takes instead of cutting it (ollama's `truncate`; for an embedding-only model a
/// text that fills the model's whole length counts as too long, its tokenizer cuts silently).
pub async fn embed_inputs(
    e: Embedder,
    items: Vec<Input>,
    dims: Option<i64>,
    truncate: bool,
) -> Result<(Vec<f32>, usize, usize), ServerError> {
    tokio::task::spawn_blocking(move || {
        let q = &e.queue;
        let m = q.model();
        let dim = m.dim();
        if let Some(d) = dims {
            if d != dim as i64 {
                return Err(ServerError::bad(
                    format!(
                        "'dimensions' {d} is not supported: this model's vectors have {dim} dimensions and it is not trained for shorter ones"
                    ),
                    "dimensions",
                ));
            }
        }
        let max = m.max_len();
        let n_vocab = m.n_vocab();
        let mut seqs = Vec::with_capacity(items.len());
        for (i, it) in items.into_iter().enumerate() {
            let s = match it {
                Input::Text(t) => {
                    let s = m.encode(&t);
                    if !truncate {
                        let full = match &e.language {
                            None if s.len() >= max => max + 1,
                            None => s.len(),
                            Some(l) => l.sched.tokenizer().encode(&t, true, false).len(),
                        };
                        if full > max {
                            return Err(ServerError::bad(
                                format!(
                                    "'input[{i}]' does not fit in the {max} tokens this model takes, and 'truncate' is false"
                                ),
                                format!("input[{i}]"),
                            ));
                        }
                    }
                    s
                }
                Input::Ids(ids) => {
                    let field = format!("input[{i}]");
                    if ids.is_empty() || ids.len() > max {
                        return Err(ServerError::bad(
                            format!("'{field}' has {} tokens; this model takes 1 to {max}", ids.len()),
                            field,
                        ));
                    }
                    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
                        return Err(ServerError::bad(
                            format!("token id {bad} in '{field}' is out of range (vocabulary of {n_vocab})"),
                            field,
                        ));
                    }
                    ids
                }
            };
            if s.is_empty() {
                return Err(ServerError::bad(
                    format!("'input[{i}]' gives no tokens, and this model adds none"),
                    format!("input[{i}]"),
                ));
            }
            seqs.push(s);
        }
        let n_tokens: usize = seqs.iter().map(Vec::len).sum();
        let v = q
            .embed(seqs)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        Ok((v, dim, n_tokens))
    })
    .await
    .map_err(|e| ServerError::Internal(format!("the embedding task failed: {e}")))?
}
