//! The web dashboard: the page and its script and stylesheet, compiled into the binary so it
//! works offline and with nothing to install. Served at `/` and `/ui/*` without the API key —
//! they hold no data and no secrets; the page asks for the key and sends it with each call —
//! under a strict Content-Security-Policy: only our own script and styles, no inline code, no
//! other origins, no framing. Each file has an ETag (a hash of its text, fixed at build time),
//! so a browser revalidates with `no-cache` and gets a 304 until the binary changes.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::Shared;

/// The policy every page response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded files: name, content type, body.
const FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
];

/// FNV-1a of a file's text: its ETag. Computed at compile time; not a security measure, only a
/// version.
const fn fnv1a(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The ETags of [`FILES`], in the same order.
const TAGS: [u64; FILES.len()] = {
    let mut tags = [0; FILES.len()];
    let mut i = 0;
    while i < FILES.len() {
        tags[i] = fnv1a(FILES[i].2);
        i += 1;
    }
    tags
};

/// Whether a path is part of the page (served without the API key).
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// The page's routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/",
            get(|request: HeaderMap| async move { file("index.html", &request) }),
        )
        .route(
            "/ui/{name}",
            get(
                |Path(name): Path<String>, request: HeaderMap| async move { file(&name, &request) },
            ),
        )
}

/// Whether an `If-None-Match` header names `tag` (or is `*`).
fn matches_tag(request: &HeaderMap, tag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// One embedded file with its headers, or 304 when the browser's copy is current.
fn file(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (_, kind, body) = FILES[index];
    let tag = format!("\"{:016x}\"", TAGS[index]);
    let mut response = if matches_tag(request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut full = body.into_response();
        full.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        full
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_is_public() {
        assert!(is_public("/"));
        assert!(is_public("/ui/app.js"));
        assert!(!is_public("/api/models"));
        assert!(!is_public("/v1/models"));
        assert!(!is_public("/metrics"));
    }

    #[test]
    fn files_have_their_types_and_the_policy() {
        let page = file("index.html", &HeaderMap::new());
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap_or("")
                .contains("script-src 'self'")
        );
        assert_eq!(
            file("app.js", &HeaderMap::new()).headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            file("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_current_copy_is_revalidated_with_a_304() {
        let first = file("style.css", &HeaderMap::new());
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        let tag = first.headers()[header::ETAG].clone();
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, tag.clone());
        let again = file("style.css", &request);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], tag);
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(file("style.css", &request).status(), StatusCode::OK);
        assert_ne!(
            file("app.js", &HeaderMap::new()).headers()[header::ETAG],
            tag,
            "each file has its own tag"
        );
    }

    #[test]
    fn the_page_has_no_inline_code_and_no_other_origins() {
        let page = include_str!("../web/index.html");
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style="), "inline style");
        for (_, _, body) in FILES {
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "another origin"
            );
        }
        let script = include_str!("../web/app.js");
        assert!(
            !script.contains("innerHTML"),
            "data is set with textContent only"
        );
    }
}
