//! The web dashboard: the page and its script and stylesheet, compiled into the binary so it
//! works offline and with nothing to install. Served at `/` and `/ui/*` without the API key —
//! they hold no data and no secrets; the page asks for the key and sends it with each call —
//! under a strict Content-Security-Policy: only our own script and styles, no inline code, no
//! other origins, no framing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
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

/// Whether a path is part of the page (served without the API key).
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// The page's routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/ui/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    let Some((_, kind, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
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
        let page = file("index.html");
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
            file("app.js").headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(file("../Cargo.toml").status(), StatusCode::NOT_FOUND);
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
