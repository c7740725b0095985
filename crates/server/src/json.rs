//! [`json_response`]: every JSON body the server sends, errors included, goes out through it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `value` as a JSON response.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"could not encode the response: {e}","type":"server_error","param":null,"code":null}}}}"#)
            .into_bytes()
    });
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
