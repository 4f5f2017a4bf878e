//! The HTTP face of the service: routes, extractors, logging, CORS and the
//! error envelope. Handlers only translate between HTTP and [`Service`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::{CONTENT_LENGTH, ETAG};
use axum::http::{HeaderName, Method};
use axum::middleware::from_fn;
use axum::routing::{get, post, put};
use ferry_api::{ErrorCode, paths};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::service::Service;

pub mod error;
mod files;
pub mod log;
mod parts;
pub mod request;
mod uploads;

use error::ApiError;

/// The whole application: every route, with logging outermost so that even
/// a panic or an unknown route gets its line.
pub fn router(service: Arc<Service>) -> Router {
    // Browsers PUT parts straight from a page and read the ETag; API calls
    // carry a bearer key, not cookies, so any origin may make them.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(Any)
        .expose_headers([ETAG, CONTENT_LENGTH, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(3600));

    Router::new()
        .route(paths::INITIATE_UPLOAD, post(uploads::initiate))
        .route(paths::PART_URLS, post(uploads::part_urls))
        .route(paths::CHECKPOINT, post(uploads::checkpoint))
        .route(paths::COMPLETE_UPLOAD, post(uploads::complete))
        .route(paths::ABORT_UPLOAD, post(uploads::abort))
        .route(paths::PART_DATA, put(parts::put_part))
        .route(paths::DOWNLOAD, get(files::download))
        .route(paths::HEALTH, get(files::health))
        .route_layer(from_fn(log::record_route))
        .fallback(|| async {
            ApiError::new(ErrorCode::RouteNotFound, "no such route", "Check the path; API routes start with /v0.5.")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "the route exists but not with this method", "Check the method.")
        })
        .layer(cors)
        .layer(CatchPanicLayer::custom(log::panic_response))
        .layer(from_fn(log::log_requests))
        .with_state(service)
}
