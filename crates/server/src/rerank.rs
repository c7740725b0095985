//! `POST /v1/rerank` (and `/rerank`, `/v1/reranking`), as llama-server answers it, with
//! Cohere's and Jina's `return_documents`:
//!
//! - request: `query` (string), `documents` (strings, or objects with a `text`), `top_n`
//!   (optional, at least 1), `return_documents` (default false);
//! - answer: `{"model", "object": "list", "results": [{"index", "relevance_score",
//!   "document": {"text"}}], "usage": {"prompt_tokens", "total_tokens"}}`, most relevant first;
//!   `relevance_score` is the cross-encoder's raw logit (as llama-server gives it).
//!
//! A model without a classification head (an embedding model, a language model) is a 400
//! saying it cannot rerank. Concurrent requests share steps of the embedding queue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{parse, JsonBody};
use crate::json::json_response;
use crate::state::AppState;
use crate::ServerError;

/// Most documents in one request.
pub const MAX_DOCUMENTS: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RerankFields {
    model: Option<String>,
    query: Option<Value>,
    documents: Option<Value>,
    top_n: Option<i64>,
    return_documents: Option<bool>,
}

fn documents(v: Option<Value>) -> Result<Vec<String>, ServerError> {
    const F: &str = "documents";
    let Some(Value::Array(list)) = v else {
        return Err(ServerError::bad("'documents' must be a list of strings", F));
    };
    if list.is_empty() {
        return Err(ServerError::bad("'documents' must not be empty", F));
    }
    if list.len() > MAX_DOCUMENTS {
        return Err(ServerError::bad(
            format!(
                "'documents' has {} items; at most {MAX_DOCUMENTS}",
                list.len()
            ),
            F,
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            Value::String(s) => Ok(s),
            Value::Object(o) => match o.get("text") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ServerError::bad(
                    format!("'documents[{i}]' must be a string or an object with a 'text' string"),
                    format!("documents[{i}]"),
                )),
            },
            _ => Err(ServerError::bad(
                format!("'documents[{i}]' must be a string"),
                format!("documents[{i}]"),
            )),
        })
        .collect()
}

pub async fn rerank(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let f: RerankFields = parse(&body)?;
    drop(body);
    let id = state.resolve(f.model.as_deref())?;
    let query = match f.query {
        Some(Value::String(q)) => q,
        None | Some(Value::Null) => return Err(ServerError::bad("'query' is required", "query")),
        Some(_) => return Err(ServerError::bad("'query' must be a string", "query")),
    };
    let docs = documents(f.documents)?;
    let top_n = match f.top_n {
        None => docs.len(),
        Some(n) if n < 1 => {
            return Err(ServerError::bad(
                format!("'top_n' must be at least 1 (got {n})"),
                "top_n",
            ))
        }
        Some(n) => (n as u64).min(docs.len() as u64) as usize,
    };
    let with_docs = f.return_documents.unwrap_or(false);
    let texts = docs.clone();
    let e = state.embedder(Some(&id), None).await?;
    let name = id.clone();
    let (scores, n_tokens) = tokio::task::spawn_blocking(move || {
        let q = &e.queue;
        let m = q.model();
        if !m.can_rerank() {
            return Err(ServerError::bad(
                format!(
                    "model '{}' cannot rerank: it has no classification head (load a cross-encoder, e.g. a BertForSequenceClassification folder)",
                    name
                ),
                "model",
            ));
        }
        let pairs: Vec<(Vec<u32>, Vec<u32>)> =
            texts.iter().map(|d| m.encode_pair(&query, d)).collect();
        let n_tokens: usize = pairs.iter().map(|(ids, _)| ids.len()).sum();
        let s = q
            .rerank(pairs)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        Ok((s, n_tokens))
    })
    .await
    .map_err(|e| ServerError::Internal(format!("the rerank task failed: {e}")))??;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let results: Vec<Value> = order
        .into_iter()
        .take(top_n)
        .map(|i| {
            let mut r = json!({"index": i, "relevance_score": scores[i]});
            if with_docs {
                r["document"] = json!({"text": docs[i]});
            }
            r
        })
        .collect();
    let resp = json!({
        "model": id,
        "object": "list",
        "results": results,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    });
    Ok(json_response(StatusCode::OK, &resp))
}
