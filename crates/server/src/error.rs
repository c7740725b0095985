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
    /// A model cannot be loaded now: the models in memory fill `--max-loaded` or
    /// `--max-memory` and all serve requests (503 with `Retry-After: 1`).
    #[error("{0}")]
    NoRoom(String),
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
            ServerError::Loading
            | ServerError::Busy { .. }
            | ServerError::ShuttingDown
            | ServerError::NoRoom(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ServerError::Loading
            | ServerError::Busy { .. }
            | ServerError::ShuttingDown
            | ServerError::NoRoom(_) => "unavailable_error",
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
            ServerError::NoRoom(_) => Some("models_busy"),
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
        self.response_in(Dialect::OpenAi)
    }
}

/// Which API's error shape an answer takes: OpenAI's (and llama-server's), ollama's
/// (`{"error": "message"}`) or Anthropic's (`{"type": "error", "error": {"type", "message"}}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Ollama,
    Anthropic,
}

impl Dialect {
    /// The dialect of a route: `/api/...` is ollama's, `/v1/messages[/...]` Anthropic's.
    pub fn of_path(path: &str) -> Dialect {
        if path.starts_with("/api/") {
            Dialect::Ollama
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

impl ServerError {
    /// ollama's error body: `{"error": "message"}` (its clients raise `ResponseError` with it).
    pub fn ollama_body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.to_string() })
    }

    /// Anthropic's error body, its `error.type` by status (`invalid_request_error`,
    /// `authentication_error`, `not_found_error`, `request_too_large`, `overloaded_error`,
    /// `api_error`).
    pub fn anthropic_body(&self) -> serde_json::Value {
        let kind = match self {
            ServerError::BadRequest { .. } | ServerError::MethodNotAllowed { .. } => {
                "invalid_request_error"
            }
            ServerError::NotFound { .. } => "not_found_error",
            ServerError::Unauthorized => "authentication_error",
            ServerError::TooLarge { .. } => "request_too_large",
            ServerError::Loading
            | ServerError::Busy { .. }
            | ServerError::ShuttingDown
            | ServerError::NoRoom(_) => "overloaded_error",
            _ => "api_error",
        };
        serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": self.to_string()},
        })
    }

    /// The error body in `d`'s shape.
    pub fn body_in(&self, d: Dialect) -> serde_json::Value {
        match d {
            Dialect::OpenAi => self.body(),
            Dialect::Ollama => self.ollama_body(),
            Dialect::Anthropic => self.anthropic_body(),
        }
    }

    /// The error as a response in `d`'s shape (the same status either way; `Retry-After: 1`
    /// when busy).
    pub fn response_in(self, d: Dialect) -> Response {
        let mut resp = crate::json::json_response(self.status(), &self.body_in(d));
        if matches!(self, ServerError::Busy { .. } | ServerError::NoRoom(_)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    /// The same error about a field the caller calls `to` (e.g. `stop` -> `stop_sequences`,
    /// `temperature` -> `options.temperature`): its `param`, and the quoted name in its
    /// message.
    pub fn renamed(self, from: &str, to: &str) -> ServerError {
        match self {
            ServerError::BadRequest {
                message,
                param,
                code,
            } if param
                .as_deref()
                .is_some_and(|p| p == from || p.starts_with(&format!("{from}["))) =>
            {
                let param = param.map(|p| format!("{to}{}", &p[from.len()..]));
                let message = message
                    .replace(&format!("'{from}'"), &format!("'{to}'"))
                    .replace(&format!("'{from}["), &format!("'{to}["));
                ServerError::BadRequest {
                    message,
                    param,
                    code,
                }
            }
            other => other,
        }
    }
}

/// A handler error answered in ollama's shape.
#[derive(Debug)]
pub struct OllamaError(pub ServerError);

impl From<ServerError> for OllamaError {
    fn from(e: ServerError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.response_in(Dialect::Ollama)
    }
}

/// A handler error answered in Anthropic's shape.
#[derive(Debug)]
pub struct AnthropicError(pub ServerError);

impl From<ServerError> for AnthropicError {
    fn from(e: ServerError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.response_in(Dialect::Anthropic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_bodies() {
        let e = ServerError::bad("'max_tokens' is required", "max_tokens");
        assert_eq!(
            e.ollama_body(),
            serde_json::json!({"error": "'max_tokens' is required"})
        );
        assert_eq!(
            e.anthropic_body(),
            serde_json::json!({"type": "error", "error": {
                "type": "invalid_request_error", "message": "'max_tokens' is required"}})
        );
        assert_eq!(
            ServerError::Unauthorized.anthropic_body()["error"]["type"],
            "authentication_error"
        );
        assert_eq!(Dialect::of_path("/api/chat"), Dialect::Ollama);
        assert_eq!(
            Dialect::of_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
    }

    #[test]
    fn renamed_fields() {
        let e = ServerError::bad("'stop[1]' must be a string", "stop")
            .renamed("stop", "stop_sequences");
        match e {
            ServerError::BadRequest { message, param, .. } => {
                assert_eq!(message, "'stop_sequences[1]' must be a string");
                assert_eq!(param.as_deref(), Some("stop_sequences"));
            }
            other => panic!("{other:?}"),
        }
        let e = ServerError::bad("'top_p' must be in (0, 1]", "top_p").renamed("stop", "x");
        assert!(e.to_string().starts_with("'top_p'"));
    }
}
