//! The browser page: `/` and its assets under `/ui/`, compiled into the
//! binary (no build step, no network: it works air-gapped). The page is
//! plain ES modules from `crates/ferry-server/ui/`; it talks to the same
//! API as every other client, with the key the user types in.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use ferry_api::ErrorCode;

use super::error::ApiError;

/// Each asset: its name under `/ui/`, its type, its bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../ui/index.html")),
    ("ferry.css", "text/css; charset=utf-8", include_bytes!("../../ui/ferry.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/api.js")),
    ("uploader.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/uploader.js")),
    ("crc32c-worker.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/crc32c-worker.js")),
    ("sw.js", "text/javascript; charset=utf-8", include_bytes!("../../ui/sw.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../ui/favicon.svg")),
];

/// Scripts and styles only from ferry itself; requests anywhere over HTTP(S),
/// because with an S3-compatible store the parts go to the store's URLs.
const POLICY: &str = "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; \
                      object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

pub async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| not_found("index.html"))
}

pub async fn asset(Path(name): Path<String>) -> Response {
    serve(&name).unwrap_or_else(|| not_found(&name))
}

fn serve(name: &str) -> Option<Response> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(asset, _, _)| *asset == name)?;
    let headers = [
        (CONTENT_TYPE, *content_type),
        // Small, and must change with the binary: always revalidated.
        (CACHE_CONTROL, "no-cache"),
        (CONTENT_SECURITY_POLICY, POLICY),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    Some((headers, *bytes).into_response())
}

fn not_found(name: &str) -> Response {
    ApiError::new(ErrorCode::RouteNotFound, format!("the page has no asset {name}"), "Open the page at /.")
        .into_response()
}
