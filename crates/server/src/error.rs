//! [`ServerError`]: everything that can go wrong, at start-up (bind, load) or in a request.
//!
//! A request error becomes an OpenAI-style body, `{"error":{"message","type","param","code"}}`,
//! with its HTTP status ([`ServerError::status`]); the one exception is the loading answer,
//! which is llama-server's exact `{"error":{"code":503,"message":"Loading model",
//! "type":"unavailable_error"}}`.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::EngineError;
use serde::Serialize;

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot work (e.g. an empty API key).
    #[error("invalid configuration: {0}")]
    Config(String),
    // Start-up errors carry their cause in the message (as `error`, not a chained source, so
    // it is not printed twice).
    #[error("could not listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    /// The model did not load (the engine's message names the file).
    #[error("could not load the model: {error}")]
    Load {
        path: PathBuf,
        error: Box<EngineError>,
    },
    #[error("the HTTP server failed: {error}")]
    Io { error: std::io::Error },

    /// A request the server cannot serve as sent (400).
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// An unknown model or route (404).
    #[error("{message}")]
    NotFound {
        message: String,
        param: Option<String>,
        code: &'static str,
    },
    #[error("method {method} is not allowed on this route")]
    MethodNotAllowed { method: String },
    #[error("invalid or missing API key")]
    Unauthorized,
    #[error("the request body is larger than {limit} bytes (--max-body)")]
    TooLarge { limit: usize },
    /// The model is still loading (503, llama-server's body).
    #[error("Loading model")]
    Loading,
    /// Every slot is busy and the queue is full (503 with `Retry-After: 1`).
    #[error("the server is busy: {waiting} requests are waiting (--queue {limit}); retry later")]
    Busy { waiting: usize, limit: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Something failed inside the engine (500).
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// A 400 naming the request field at fault.
    pub fn bad(message: impl Into<String>, param: impl Into<String>) -> ServerError {
        ServerError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// The HTTP status of a request error (500 for the start-up kinds).
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Loading | ServerError::Busy { .. } | ServerError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ServerError::BadRequest { .. }
            | ServerError::NotFound { .. }
            | ServerError::MethodNotAllowed { .. }
            | ServerError::TooLarge { .. } => "invalid_request_error",
            ServerError::Unauthorized => "authentication_error",
            ServerError::Loading | ServerError::Busy { .. } | ServerError::ShuttingDown => {
                "unavailable_error"
            }
            _ => "server_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ServerError::BadRequest { code, .. } => *code,
            ServerError::NotFound { code, .. } => Some(code),
            ServerError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            ServerError::Unauthorized => Some("invalid_api_key"),
            ServerError::TooLarge { .. } => Some("request_too_large"),
            ServerError::Busy { .. } => Some("server_busy"),
            ServerError::ShuttingDown => Some("shutting_down"),
            _ => None,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ServerError::BadRequest { param, .. } | ServerError::NotFound { param, .. } => {
                param.as_deref()
            }
            _ => None,
        }
    }

    /// The JSON error body (also sent as an SSE event when a stream fails mid-way).
    pub fn body(&self) -> serde_json::Value {
        if matches!(self, ServerError::Loading) {
            return serde_json::json!({
                "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
            });
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: String,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        serde_json::json!({
            "error": Inner {
                message: self.to_string(),
                kind: self.kind(),
                param: self.param(),
                code: self.code(),
            }
        })
    }

    /// An engine error met while checking or running a request; `param` is the field that
    /// carried the prompt (`messages` or `prompt`).
    pub fn from_engine(e: EngineError, param: &str) -> ServerError {
        match e {
            EngineError::ContextTooLong { n_tokens, n_ctx } => ServerError::BadRequest {
                message: format!(
                    "the prompt has {n_tokens} tokens; the context holds {n_ctx} (--ctx-size)"
                ),
                param: Some(param.to_string()),
                code: Some("context_length_exceeded"),
            },
            EngineError::EmptyPrompt => ServerError::bad(format!("'{param}' is empty"), param),
            EngineError::BadToken { id, n_vocab } => ServerError::bad(
                format!("token id {id} in '{param}' is out of range (vocabulary of {n_vocab})"),
                param,
            ),
            EngineError::Sampling(sampling_err) => {
                let sampling::SamplingError::Invalid { field, .. } = &sampling_err;
                let field = field.to_string();
                ServerError::bad(sampling_err.to_string(), field)
            }
            EngineError::NoChatTemplate { .. } => ServerError::bad(
                "the model has no chat template; use /v1/completions with a plain prompt",
                "messages",
            ),
            EngineError::Template { msg } => {
                ServerError::bad(format!("the chat template failed: {msg}"), "messages")
            }
            e @ EngineError::TemplateRaised { .. } => ServerError::bad(e.to_string(), "messages"),
            other => ServerError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let mut resp = crate::json::json_response(self.status(), &self.body());
        if matches!(self, ServerError::Busy { .. }) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
