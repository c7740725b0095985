//! [`JsonBody`]: the request body as JSON, with OpenAI-style errors instead of axum's plain-text
//! rejections: 413 past `--max-body` (checked on `Content-Length` before reading, and while
//! reading), 400 for malformed JSON or a body that is not an object, and [`parse`] turns the
//! object into a typed struct, naming the field of a type error (`messages[0].content`).

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::header;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::state::AppState;
use crate::ServerError;

/// A request body that is a JSON object.
pub struct JsonBody(pub Value);

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ServerError> {
        let limit = state.cfg.max_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ServerError::TooLarge { limit });
        }
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let mut stream = req.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ServerError::bad(format!("could not read the request body: {e}"), "body")
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(ServerError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&buf).map_err(|e| ServerError::BadRequest {
            message: format!("the request body is not valid JSON: {e}"),
            param: None,
            code: None,
        })?;
        if !value.is_object() {
            return Err(ServerError::BadRequest {
                message: "the request body must be a JSON object".into(),
                param: None,
                code: None,
            });
        }
        Ok(JsonBody(value))
    }
}

/// Deserializes `v` into `T`; a type error names the field (`'max_tokens': invalid type ...`).
pub fn parse<T: DeserializeOwned>(v: &Value) -> Result<T, ServerError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ServerError::BadRequest {
                message: format!("invalid request: {inner}"),
                param: None,
                code: None,
            }
        } else {
            ServerError::bad(format!("invalid value for '{path}': {inner}"), path)
        }
    })
}
