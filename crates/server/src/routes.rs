//! The router, and the small routes: health, models, props, slots, tokenize, detokenize,
//! apply-template, the root page, and the JSON 404/405 fallbacks.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{Html, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api;
use crate::body::{parse, JsonBody};
use crate::chat::{self, MessagesOnly};
use crate::json::json_response;
use crate::state::{AppState, Loaded};
use crate::{auth, completions, metrics, ServerError};

/// Every route; `/health`, `/v1/health` and `/` are open, `/metrics` too unless
/// `metrics_need_key`, the rest need a key when keys are configured.
pub fn router(state: Arc<AppState>) -> Router {
    let mut api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
        .route("/props", get(props))
        .route("/slots", get(slots));
    let mut open = Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/", get(root));
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
    state.model()?;
    Ok(ok(&json!({"status": "ok"})))
}

async fn root() -> Html<String> {
    Html(format!(
        "<!doctype html><title>lume</title><h1>lume {}</h1>\
         <p>An OpenAI-compatible API is served under <code>/v1</code> \
         (<code>/v1/models</code>, <code>/v1/chat/completions</code>, \
         <code>/v1/completions</code>).</p>",
        env!("CARGO_PKG_VERSION")
    ))
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

fn model_object(state: &AppState, m: &Loaded) -> Value {
    let info = m.sched.info();
    json!({
        "id": state.id(),
        "object": "model",
        "created": state.started,
        "owned_by": "lume",
        "meta": {
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

async fn models(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    let m = state.model()?;
    Ok(ok(
        &json!({"object": "list", "data": [model_object(&state, m)]}),
    ))
}

async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    let m = state.model()?;
    if id != state.id() {
        return Err(state.model_not_found(&id));
    }
    Ok(ok(&model_object(&state, m)))
}

async fn props(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    let m = state.model()?;
    let n_ctx = m.sched.n_ctx();
    Ok(ok(&json!({
        "model": state.id(),
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
    })))
}

async fn slots(State(state): State<Arc<AppState>>) -> Result<Response, ServerError> {
    let m = state.model()?;
    let n_ctx = m.sched.n_ctx();
    let list: Vec<Value> = m
        .sched
        .slots()
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "is_processing": s.busy,
                "n_ctx": n_ctx,
                "n_cached": s.n_cached,
                "n_prompt_left": s.n_prompt_left,
                "n_decoded": s.n_gen,
                "id_task": s.request.map_or(-1, |r| r.0 as i64),
            })
        })
        .collect();
    Ok(ok(&list))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenizeReq {
    content: Option<String>,
    add_special: Option<bool>,
    parse_special: Option<bool>,
    with_pieces: Option<bool>,
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    let m = state.model()?;
    let r: TokenizeReq = parse(&body)?;
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
    tokens: Option<Vec<u32>>,
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, ServerError> {
    let m = state.model()?;
    let r: DetokenizeReq = parse(&body)?;
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
    let m = state.model()?;
    let r: MessagesOnly = parse(&body)?;
    let msgs = chat::messages(r.messages)?;
    let kw = chat::kwargs(r.chat_template_kwargs)?;
    Ok(ok(&json!({ "prompt": chat::render(m, &msgs, kw)? })))
}
