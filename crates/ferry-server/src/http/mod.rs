//! The HTTP face of the service: routes, extractors, logging, CORS and the
//! error envelope. Handlers only translate between HTTP and [`Service`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_RANGE, RANGE};
use axum::http::{HeaderName, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};
use ferry_api::{ErrorCode, paths};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::service::Service;

mod drain;
pub mod error;
mod files;
mod limits;
pub mod log;
pub mod openapi;
mod origin;
mod parts;
pub mod request;
mod schemas;
pub mod serve;
pub mod tls;
pub mod ui;
mod uploads;

use error::ApiError;

/// The whole application. A request body silent for `body_timeout` is cut
/// off, so a client dripping bytes cannot hold a request open forever.
pub fn router(service: Arc<Service>, body_timeout: Duration) -> Router {
    let mut routes = Router::new();
    // Part PUTs come to ferry only when ferry takes the parts; with an
    // S3-compatible store they go to the store's own URLs.
    if service.takes_parts() {
        routes = routes.route(paths::PART_DATA, put(parts::put_part));
    }
    let routes = routes
        .route(paths::INITIATE_UPLOAD, post(uploads::initiate))
        .route(paths::PART_URLS, post(uploads::part_urls))
        .route(paths::CHECKPOINT, post(uploads::checkpoint))
        .route(paths::COMPLETE_UPLOAD, post(uploads::complete))
        .route(paths::ABORT_UPLOAD, post(uploads::abort))
        .route(paths::DOWNLOAD, get(files::download))
        .route(paths::SIMPLE_UPLOAD, post(files::simple_upload))
        .route(paths::BASE64_UPLOAD, post(files::base64_upload))
        .route(paths::LIST_METADATA, get(files::list_metadata))
        .route(paths::FILE_METADATA, get(files::file_metadata))
        .route(paths::DELETE_FILE, delete(files::delete))
        .route(paths::FILES_INFO, get(files::info))
        .route(paths::HEALTH, get(files::health))
        .route(paths::METRICS, get(files::metrics))
        .route(paths::OPENAPI, get(openapi::openapi_json))
        .route("/", get(ui::index))
        .route("/ui/{asset}", get(ui::asset))
        .with_state(service.clone())
        .layer(RequestBodyTimeoutLayer::new(body_timeout));
    #[cfg(feature = "failpoints")]
    let routes = routes.merge(crate::failpoint::routes());
    with_layers(routes, Some(service))
}

/// What every route gets, with logging outermost so that even a panic or an
/// unknown route gets its line.
fn with_layers(routes: Router, service: Option<Arc<Service>>) -> Router {
    // Browsers PUT parts straight from a page and read the ETag; API calls
    // carry a bearer key, not cookies, so any origin may make them. The
    // request headers are named: under the Fetch standard `*` does not
    // cover `Authorization`, so a browser would never send its key.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, RANGE, IF_RANGE])
        .expose_headers([ETAG, CONTENT_LENGTH, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(3600));

    routes
        .route_layer(from_fn(log::record_route))
        .fallback(|| async {
            ApiError::new(ErrorCode::RouteNotFound, "no such route", "Check the path; API routes start with /v0.5.")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "the route exists but not with this method", "Check the method.")
        })
        .layer(cors)
        .layer(from_fn(limits::check_request_head))
        .layer(CatchPanicLayer::custom(log::panic_response))
        .layer(from_fn_with_state(service, log::log_requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a handler reaches the client as a 500 in the envelope,
    /// and the server goes on answering.
    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope() {
        let app = with_layers(Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" })), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::get(format!("{url}/boom")).await.unwrap();
        assert_eq!(response.status(), 500);
        let body: ferry_api::ErrorResponse = response.json().await.unwrap();
        assert_eq!(body.errors.len(), 1);
        assert_eq!(body.errors[0].code, ErrorCode::InternalError);
        assert!(body.errors[0].error_uid.starts_with("err-"));
        assert!(!body.errors[0].message.contains("boom"), "internals leaked to the client");
        assert_eq!(reqwest::get(format!("{url}/fine")).await.unwrap().text().await.unwrap(), "fine");
    }
}
