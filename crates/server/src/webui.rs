//! The web chat at `/`: the page, its script and style (`crates/server/web/`) and the vendored
//! libraries (`web/vendor/`: marked, DOMPurify, highlight.js), compiled into the binary. The
//! routes are open (the page asks for the API key when the API answers 401 and sends it itself).
//!
//! Every answer has its `Content-Type`, a Content-Security-Policy that allows scripts, styles
//! and requests from this origin only (no inline script or handler, no remote image, no frame),
//! `X-Content-Type-Options: nosniff`, and an `ETag` with `Cache-Control: no-cache` (a browser
//! keeps the files and asks again with `If-None-Match`, answered 304 while they are the same).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The policy sent with every asset.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One served file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!("../web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/app.css", "app.css", CSS),
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!(
        "/vendor/marked/marked.umd.js",
        "vendor/marked/marked.umd.js",
        JS
    ),
    asset!("/vendor/marked/LICENSE", "vendor/marked/LICENSE", TEXT),
    asset!(
        "/vendor/dompurify/purify.min.js",
        "vendor/dompurify/purify.min.js",
        JS
    ),
    asset!(
        "/vendor/dompurify/LICENSE",
        "vendor/dompurify/LICENSE",
        TEXT
    ),
    asset!(
        "/vendor/dompurify/LICENSE-MPL",
        "vendor/dompurify/LICENSE-MPL",
        TEXT
    ),
    asset!(
        "/vendor/highlight/highlight.min.js",
        "vendor/highlight/highlight.min.js",
        JS
    ),
    asset!(
        "/vendor/highlight/github.min.css",
        "vendor/highlight/github.min.css",
        CSS
    ),
    asset!(
        "/vendor/highlight/github-dark.min.css",
        "vendor/highlight/github-dark.min.css",
        CSS
    ),
    asset!(
        "/vendor/highlight/LICENSE",
        "vendor/highlight/LICENSE",
        TEXT
    ),
];

/// The routes of every asset (`/` is the page).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |r, a| {
        r.route(a.path, get(move |h: HeaderMap| async move { serve(a, &h) }))
    })
}

/// FNV-1a over the body, and its length (a new build with the same bytes keeps the tag).
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", body.len())
}

fn serve(a: &'static Asset, req: &HeaderMap) -> Response {
    let tag = etag(a.body);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, a.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_body_and_a_unique_path() {
        let mut paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
        }
    }

    #[test]
    fn the_page_has_no_inline_script_and_names_only_served_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert_eq!(ASSETS[0].path, "/");
        let mut rest = page;
        let mut scripts = 0;
        while let Some(i) = rest.find("<script") {
            let tag_end = rest[i..].find('>').unwrap() + i;
            let tag = &rest[i..tag_end];
            let src = tag.split("src=\"").nth(1).expect("a script without src");
            let src = &src[..src.find('"').unwrap()];
            assert!(ASSETS.iter().any(|a| a.path == src), "{src} is not served");
            assert!(
                rest[tag_end + 1..].starts_with("</script>"),
                "{tag}: inline code"
            );
            scripts += 1;
            rest = &rest[tag_end..];
        }
        assert_eq!(scripts, 4);
        for href in page.split("href=\"").skip(1) {
            let href = &href[..href.find('"').unwrap()];
            assert!(
                ASSETS.iter().any(|a| a.path == href),
                "{href} is not served"
            );
        }
        // No inline handler (` onclick=` and the like) either.
        for (i, _) in page.match_indices(" on") {
            let name: String = page[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let after = &page[i + 3 + name.len()..];
            assert!(!after.starts_with('='), "an inline handler: on{name}=");
        }
        assert!(CSP.contains("script-src 'self';"));
        assert!(!CSP.contains("unsafe"));
    }

    #[test]
    fn etag_revalidates() {
        let a = &ASSETS[1];
        let r = serve(a, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let tag = r.headers()[header::ETAG].clone();
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve(a, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(serve(a, &h).status(), StatusCode::OK);
        assert_eq!(serve(&ASSETS[2], &h).headers()[header::CONTENT_TYPE], CSS);
        let lic = ASSETS.iter().find(|a| a.path.ends_with("LICENSE")).unwrap();
        assert_eq!(serve(lic, &h).headers()[header::CONTENT_TYPE], TEXT);
    }
}
