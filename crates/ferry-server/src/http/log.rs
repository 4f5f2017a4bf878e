//! One log line per request, and the panic guard.
//!
//! The line carries the request id, method, route template (never the
//! query, which may hold a signature), status, latency, org and the
//! `error_uid`s of an error response, so an operator can go from a client's
//! error to the request that produced it.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_core::ids::OrgId;

use super::error::{ApiError, ErrorReport};
use crate::service::Service;
use crate::telemetry::RequestLabels;

/// What is learned about a request while it is handled.
pub struct RequestContext {
    request_id: String,
    org: OnceLock<OrgId>,
    route: OnceLock<String>,
}

impl RequestContext {
    pub fn set_org(&self, org: OrgId) {
        let _ = self.org.set(org);
    }
}

/// The outermost layer: times the request, counts it and writes its line.
pub async fn log_requests(State(service): State<Option<Arc<Service>>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let context = Arc::new(RequestContext {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        org: OnceLock::new(),
        route: OnceLock::new(),
    });
    request.extensions_mut().insert(context.clone());
    let method = request.method().clone();

    let mut response = next.run(request).await;

    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let report = response.extensions().get::<ErrorReport>();
    let error_uids = report.map(|r| r.error_uids.join(",")).unwrap_or_default();
    let codes = report.map(|r| r.codes.join(",")).unwrap_or_default();
    let org = context.org.get().map(ToString::to_string).unwrap_or_default();
    let route = context.route.get().map_or("unmatched", String::as_str);
    if let Some(service) = &service {
        let labels =
            RequestLabels { method: method.to_string(), route: route.to_owned(), status: response.status().as_u16() };
        service.metrics().record_request(labels, started.elapsed().as_secs_f64());
    }
    tracing::info!(
        target: "ferry::request",
        request_id = %context.request_id,
        %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        org,
        error_codes = codes,
        error_uids,
    );
    if let Some(detail) = report.and_then(|r| r.detail.as_deref()) {
        tracing::error!(target: "ferry::request", request_id = %context.request_id, error_uids, detail, "server fault");
    }
    response
}

/// Runs inside routing, where the matched route is known.
pub async fn record_route(request: Request, next: Next) -> Response {
    if let (Some(path), Some(context)) =
        (request.extensions().get::<MatchedPath>(), request.extensions().get::<Arc<RequestContext>>())
    {
        let _ = context.route.set(path.as_str().to_owned());
    }
    next.run(request).await
}

/// Turns a handler's panic into a 500 in the envelope; the request's log
/// line then carries the panic message under the error's uid.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}
