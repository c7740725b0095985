//! The router, and the small routes: health, models, props, slots, tokenize, detokenize,
//! apply-template, and the JSON 404/405 fallbacks (the web chat at `/` is `webui`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api;
use crate::body::{parse, JsonBody};
use crate::chat::{self, MessagesOnly};
use crate::json::json_response;
use crate::models::{self, Listing};
use crate::state::{AppState, KeepAlive, Kind, Loaded};
use crate::{
    anthropic, auth, completions, embeddings, metrics, ollama, rerank, webui, ServerError,
};

/// Every route; `/health`, `/v1/health` and the web chat (`/` and its files) are open,
/// `/metrics` too unless `metrics_need_key`, the rest need a key when keys are configured.
pub fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/v1/rerank", post(rerank::rerank))
        .route("/rerank", post(rerank::rerank))
        .route("/v1/reranking", post(rerank::rerank))
        .route("/props", get(props))
        .route("/slots", get(slots))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/pull", post(ollama::pull))
        .route("/api/show", post(ollama::show))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/version", get(ollama::version))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens));
    let mut open = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .merge(webui::routes());
    if state.cfg.metrics_need_key {
        api = api.route("/metrics", get(metrics::metrics));
    } else {
        open = open.route("/metrics", get(metrics::metrics));
    }
    let api = api.route_layer(from_fn_with_state(Arc::clone(&state), auth::require_key));
    Router::new()
        .merge(api)
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Arc::clone(&state), metrics::count))
        .with_state(state)
}

fn ok(value: &impl Serialize) -> Response {
    json_response(StatusCode::OK, value)
}

async fn health(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    state.ready()?;
    Ok(ok(&json!({"status": "ok"})))
}

async fn not_found(method: Method, uri: Uri) -> ServerError {
    ServerError::NotFound {
        message: format!("no route for {method} {}", uri.path()),
        param: None,
        code: "not_found",
    }
}

async fn method_not_allowed(method: Method) -> ServerError {
    ServerError::MethodNotAllowed {
        method: method.to_string(),
    }
}

fn model_object(state: &AppState, id: &str, m: &Loaded) -> Value {
    let info = m.sched.info();
    json!({
        "id": id,
        "object": "model",
        "created": state.started,
        "owned_by": "lume",
        "meta": {
            "loaded": true,
            "n_ctx": m.sched.n_ctx(),
            "n_ctx_train": info.n_ctx_train,
            "n_vocab": info.vocab,
            "n_embd": info.n_embd,
            "n_params": m.n_params,
            "size": m.sched.gguf().file_size(),
            "arch": info.arch,
        },
    })
}

/// An embedding model's `/v1/models` entry.
fn encoder_object(state: &AppState, id: &str, q: &engine::embeddings::EmbedQueue) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": state.started,
        "owned_by": "lume",
        "meta": {
            "loaded": true,
            "n_embd": q.model().dim(),
            "max_tokens": q.model().max_len(),
            "n_vocab": q.model().n_vocab(),
            "kind": "embedding",
        },
    })
}

/// The `/v1/models` entry of a listed model (one not in memory: its size and `loaded: false`).
fn listed_object(state: &AppState, l: &Listing) -> Value {
    match l.resident.as_ref().map(|r| &r.kind) {
        Some(Kind::Language(m)) => model_object(state, &l.id, m),
        Some(Kind::Encoder(q)) => encoder_object(state, &l.id, q),
        None => json!({
            "id": l.id,
            "object": "model",
            "created": state.started,
            "owned_by": "lume",
            "meta": {
                "loaded": false,
                "loading": l.loading,
                "size": models::path_size(&l.path),
            },
        }),
    }
}

/// Every model served (with several: loaded or not, the cache looked at again first).
async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    state.ready()?;
    state.models.rescan();
    let data: Vec<Value> = state
        .models
        .list()
        .iter()
        .map(|l| listed_object(&state, l))
        .collect();
    Ok(ok(&json!({"object": "list", "data": data})))
}

async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    state.ready()?;
    state.models.rescan();
    let short = id.strip_suffix(":latest").unwrap_or(&id);
    let l = state
        .models
        .list()
        .into_iter()
        .find(|l| l.id == id || l.id == short)
        .ok_or_else(|| state.models.not_found(&id))?;
    Ok(ok(&listed_object(&state, &l)))
}

/// `name` of a query string (`?model=NAME`), percent-decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// llama-server's `/props` of one model.
fn model_props(id: &str, m: &Loaded) -> Value {
    let n_ctx = m.sched.n_ctx();
    json!({
        "model": id,
        "model_path": m.sched.path().display().to_string(),
        "n_ctx": n_ctx,
        "total_slots": m.sched.n_slots(),
        "chat_template": m.template.as_ref().map(|t| t.source()),
        "default_generation_settings": {
            "n_ctx": n_ctx,
            "params": {
                "temperature": api::DEFAULT_TEMPERATURE,
                "top_k": api::DEFAULT_TOP_K,
                "top_p": api::DEFAULT_TOP_P,
                "min_p": api::DEFAULT_MIN_P,
                "repeat_penalty": 1.0,
                "repeat_last_n": api::DEFAULT_REPEAT_LAST_N,
                "presence_penalty": 0.0,
                "frequency_penalty": 0.0,
                "max_tokens": n_ctx,
                "seed": Value::Null,
                "stop": [],
            },
        },
        "build_info": format!("lume {}", env!("CARGO_PKG_VERSION")),
    })
}

/// One model: its properties. Several: `?model=NAME` gives that model's (loading it), and
/// without it the server's: the models (`id`, `loaded`), the budget and the settings every
/// model is loaded with (`model` is null).
async fn props(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response, ServerError> {
    let name = query_param(&uri, "model").filter(|n| !n.is_empty());
    if !state.multi() || name.is_some() {
        let m = state.model(name.as_deref(), None).await?;
        return Ok(ok(&model_props(m.id(), &m)));
    }
    state.models.rescan();
    let list: Vec<Value> = state
        .models
        .list()
        .iter()
        .map(|l| json!({"id": l.id, "loaded": l.resident.is_some(), "loading": l.loading}))
        .collect();
    let o = &state.cfg.scheduler;
    Ok(ok(&json!({
        "model": Value::Null,
        "models": list,
        "n_ctx": o.n_ctx,
        "total_slots": o.n_slots.max(1),
        "max_loaded": state.models.max_loaded(),
        "max_memory": state.models.max_memory(),
        "keep_alive": match state.models.keep_alive() {
            KeepAlive::Forever => Value::from(-1),
            KeepAlive::For(d) => Value::from(d.as_secs_f64()),
        },
        "build_info": format!("lume {}", env!("CARGO_PKG_VERSION")),
    })))
}

fn slot_list(m: &Loaded, model: Option<&str>) -> Vec<Value> {
    let n_ctx = m.sched.n_ctx();
    m.sched
        .slots()
        .iter()
        .map(|s| {
            let mut v = json!({
                "id": s.id,
                "is_processing": s.busy,
                "n_ctx": n_ctx,
                "n_cached": s.n_cached,
                "n_prompt_left": s.n_prompt_left,
                "n_decoded": s.n_gen,
                "id_task": s.request.map_or(-1, |r| r.0 as i64),
            });
            if let Some(id) = model {
                v["model"] = json!(id);
            }
            v
        })
        .collect()
}

/// One model: its slots. Several (nothing is loaded for it): `?model=NAME` gives that model's
/// (`[]` when it is not in memory), and without it the slots of every model in memory, each
/// with its `model`.
async fn slots(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response, ServerError> {
    if !state.multi() {
        let m = state.model(None, None).await?;
        return Ok(ok(&slot_list(&m, None)));
    }
    let want = match query_param(&uri, "model").filter(|n| !n.is_empty()) {
        Some(n) => Some(state.resolve(Some(&n))?),
        None => None,
    };
    let mut out = Vec::new();
    for l in state.models.list() {
        if want.as_ref().is_some_and(|w| *w != l.id) {
            continue;
        }
        if let Some(Kind::Language(m)) = l.resident.as_ref().map(|r| &r.kind) {
            out.extend(slot_list(m, Some(&l.id)));
        }
    }
    Ok(ok(&out))
}

/// The model a llama-server route (`/tokenize`, `/detokenize`, `/apply-template`) names: its
/// `model` field with several models; with one, the field is ignored (as llama-server does).
fn named<'a>(state: &AppState, model: &'a Option<String>) -> Option<&'a str> {
    if state.multi() {
        model.as_deref()
    } else {
        None
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenizeReq {
    model: Option<String>,
    content: Option<String>,
    add_special: Option<bool>,
    parse_special: Option<bool>,
    with_pieces: Option<bool>,
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let r: TokenizeReq = parse(&body)?;
    let m = state.model(named(&state, &r.model), None).await?;
    let content = r
        .content
        .ok_or_else(|| ServerError::bad("'content' is required", "content"))?;
    let tok = m.sched.tokenizer();
    let ids = tok.encode(
        &content,
        r.add_special.unwrap_or(true),
        r.parse_special.unwrap_or(true),
    );
    if !r.with_pieces.unwrap_or(false) {
        return Ok(ok(&json!({ "tokens": ids })));
    }
    let tokens: Vec<Value> = ids
        .iter()
        .map(|&id| {
            let bytes = tok.token_bytes(id);
            // A piece that is not whole UTF-8 (part of a character) is given as its bytes.
            let piece = match std::str::from_utf8(bytes) {
                Ok(s) => json!(s),
                Err(_) => json!(bytes),
            };
            json!({"id": id, "piece": piece})
        })
        .collect();
    Ok(ok(&json!({ "tokens": tokens })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DetokenizeReq {
    model: Option<String>,
    tokens: Option<Vec<u32>>,
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let r: DetokenizeReq = parse(&body)?;
    let m = state.model(named(&state, &r.model), None).await?;
    let ids = r
        .tokens
        .ok_or_else(|| ServerError::bad("'tokens' is required", "tokens"))?;
    let n_vocab = m.sched.info().vocab;
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ServerError::from_engine(
            engine::EngineError::BadToken { id: bad, n_vocab },
            "tokens",
        ));
    }
    Ok(ok(
        &json!({ "content": m.sched.tokenizer().decode_string(&ids) }),
    ))
}

async fn apply_template(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    state.ready()?;
    let r: MessagesOnly = parse(&body)?;
    let m = state.model(named(&state, &r.model), None).await?;
    let msgs = chat::messages(r.messages)?;
    let kw = chat::kwargs(r.chat_template_kwargs)?;
    let tools = chat::tool_setup(r.tools.as_ref(), r.tool_choice.as_ref())?;
    let prompt = chat::render(&m, msgs, kw, tools.as_ref().map(|(t, _)| t.as_slice()))?;
    Ok(ok(&json!({ "prompt": prompt })))
}
