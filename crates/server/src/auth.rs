//! API keys: `Authorization: Bearer KEY` or `x-api-key: KEY`, compared in constant time
//! against every configured key (the comparison does not stop at the first match or the first
//! differing byte).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::error::Dialect;
use crate::state::AppState;
use crate::ServerError;

/// Middleware for the routes that need a key (a no-op without configured keys). The 401 is in
/// the shape of the route's API (ollama's under `/api/`, Anthropic's on `/v1/messages`).
pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.keys.is_empty() || key_ok(&state.keys, req.headers()) {
        next.run(req).await
    } else {
        ServerError::Unauthorized.response_in(Dialect::of_path(req.uri().path()))
    }
}

fn key_ok(keys: &[Vec<u8>], headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
            scheme
                .eq_ignore_ascii_case(b"bearer")
                .then(|| rest.trim_ascii())
        });
    let x_api_key = headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii());
    let mut ok = subtle::Choice::from(0u8);
    for given in [bearer, x_api_key].into_iter().flatten() {
        for k in keys {
            ok |= k.as_slice().ct_eq(given);
        }
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_and_x_api_key() {
        let keys = vec![b"secret".to_vec(), b"other".to_vec()];
        let mut h = HeaderMap::new();
        assert!(!key_ok(&keys, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        assert!(key_ok(&keys, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  other "),
        );
        assert!(key_ok(&keys, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secre"),
        );
        assert!(!key_ok(&keys, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic secret"),
        );
        assert!(!key_ok(&keys, &h));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("secret"));
        assert!(!key_ok(&keys, &h));
        h.remove(header::AUTHORIZATION);
        h.insert("x-api-key", HeaderValue::from_static("other"));
        assert!(key_ok(&keys, &h));
        h.insert("x-api-key", HeaderValue::from_static("otherx"));
        assert!(!key_ok(&keys, &h));
    }
}
