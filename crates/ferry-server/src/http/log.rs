//! One log line per request, and the panic guard.
//!
//! The line is the audit record of the request: who (client address, org,
//! key id), what (route template, upload, part, file), how it went (status,
//! error codes and uids, latency) and how many body bytes moved each way.
//! It is written when the response body has been sent (or given up), so a
//! download's line carries the bytes that really left. It never holds the
//! query (a presigned URL's signature) or a header (the bearer key).

use std::any::Any;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_core::ids::{KeyId, OrgId, UploadId};
use http_body::{Frame, SizeHint};

use super::error::{ApiError, ErrorReport};
use crate::service::Service;
use crate::telemetry::RequestLabels;

/// What is learned about a request while it is handled. Each field is set
/// once, by whichever layer first knows it.
pub struct RequestContext {
    request_id: String,
    org: OnceLock<OrgId>,
    key_id: OnceLock<KeyId>,
    route: OnceLock<String>,
    upload_id: OnceLock<String>,
    part_number: OnceLock<String>,
    file_id: OnceLock<String>,
    file_uid: OnceLock<String>,
    bytes_in: AtomicU64,
}

impl RequestContext {
    pub fn set_caller(&self, org: OrgId, key_id: KeyId) {
        let _ = self.org.set(org);
        let _ = self.key_id.set(key_id);
    }

    /// The upload the request made or used (initiate learns it late).
    pub fn set_upload(&self, upload_id: impl ToString) {
        let _ = self.upload_id.set(upload_id.to_string());
    }

    /// The file the request made, read or removed.
    pub fn set_file(&self, file_id: &str, file_uid: impl ToString) {
        let _ = self.file_id.set(file_id.to_owned());
        let _ = self.file_uid.set(file_uid.to_string());
    }
}

/// The request's context, for handlers that learn what it touched.
pub struct Audit(pub Arc<RequestContext>);

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Arc<RequestContext>>()
            .cloned()
            .map(Audit)
            .ok_or_else(|| ApiError::internal("the request has no log context"))
    }
}

/// The outermost layer: times the request, counts it and, once its
/// response body is done, writes its line.
pub async fn log_requests(State(service): State<Option<Arc<Service>>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let context = Arc::new(RequestContext {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        org: OnceLock::new(),
        key_id: OnceLock::new(),
        route: OnceLock::new(),
        upload_id: OnceLock::new(),
        part_number: OnceLock::new(),
        file_id: OnceLock::new(),
        file_uid: OnceLock::new(),
        bytes_in: AtomicU64::new(0),
    });
    request.extensions_mut().insert(context.clone());
    let method = request.method().clone();
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client_addr = peer.map(|peer| match &service {
        Some(service) => super::origin::client_addr(peer, request.headers(), &service.settings.trusted_proxies),
        None => peer,
    });
    let request = request.map(|body| Watched::wrap(body, context.clone()));

    let mut response = next.run(request).await;

    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let report = response.extensions().get::<ErrorReport>().cloned();
    let route = context.route.get().map_or("unmatched", String::as_str).to_owned();
    if let Some(service) = &service {
        let labels =
            RequestLabels { method: method.to_string(), route: route.clone(), status: response.status().as_u16() };
        service.metrics().record_request(labels, started.elapsed().as_secs_f64());
    }
    if let Some(detail) = report.as_ref().and_then(|r| r.detail.as_deref()) {
        let error_uids = report.as_ref().map(|r| r.error_uids.join(",")).unwrap_or_default();
        tracing::error!(target: "ferry::request", request_id = %context.request_id, error_uids, detail, "server fault");
    }
    let line = Line { context, started, method, route, status: response.status(), client_addr, report, bytes_out: 0 };
    response.map(|body| Watched::wrap(body, Some(line)))
}

/// Everything the line says, but the bytes still to be sent.
struct Line {
    context: Arc<RequestContext>,
    started: Instant,
    method: Method,
    route: String,
    status: StatusCode,
    client_addr: Option<IpAddr>,
    report: Option<ErrorReport>,
    bytes_out: u64,
}

impl Line {
    fn write(self) {
        let context = &self.context;
        let (codes, uids) = match &self.report {
            Some(report) => (Some(report.codes.join(",")), Some(report.error_uids.join(","))),
            None => (None, None),
        };
        // A field that is `None` is left out of the line.
        tracing::info!(
            target: "ferry::request",
            request_id = %context.request_id,
            method = %self.method,
            route = self.route,
            status = self.status.as_u16(),
            latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            client_addr = self.client_addr.map(tracing::field::display),
            org = context.org.get().map(tracing::field::display),
            key_id = context.key_id.get().map(tracing::field::display),
            upload_id = text(&context.upload_id),
            part_number = text(&context.part_number),
            file_id = text(&context.file_id),
            file_uid = text(&context.file_uid),
            bytes_in = context.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            error_codes = codes,
            error_uids = uids,
        );
    }
}

fn text(cell: &OnceLock<String>) -> Option<&str> {
    cell.get().map(String::as_str)
}

/// What a body in flight reports to: the bytes of each data frame, then
/// its end (the last frame, an error, or the body dropped unfinished).
trait Watch: Send + Unpin + 'static {
    fn data(&mut self, len: u64);
    fn end(&mut self) {}
}

/// The request body counts the bytes that arrive.
impl Watch for Arc<RequestContext> {
    fn data(&mut self, len: u64) {
        self.bytes_in.fetch_add(len, Ordering::Relaxed);
    }
}

/// The response body counts the bytes sent and writes the line when it
/// ends or is dropped (sent, or its client gone).
impl Watch for Option<Line> {
    fn data(&mut self, len: u64) {
        if let Some(line) = self {
            line.bytes_out += len;
        }
    }

    fn end(&mut self) {
        if let Some(line) = self.take() {
            line.write();
        }
    }
}

/// A body passed through unchanged, reporting to `W`.
struct Watched<W: Watch> {
    body: Body,
    watch: W,
}

impl<W: Watch> Watched<W> {
    fn wrap(body: Body, watch: W) -> Body {
        Body::new(Self { body, watch })
    }
}

impl<W: Watch> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.watch.data(data.len() as u64);
                }
            }
            Poll::Ready(_) => self.watch.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<W: Watch> Drop for Watched<W> {
    fn drop(&mut self) {
        self.watch.end();
    }
}

/// Runs inside routing, where the matched route and its parameters are
/// known.
pub async fn record_route(
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(context) = request.extensions().get::<Arc<RequestContext>>() {
        if let Some(path) = request.extensions().get::<MatchedPath>() {
            let _ = context.route.set(path.as_str().to_owned());
        }
        // Only what parses: a tampered URL's path must not carry its text
        // (a signature, say) into the log.
        for (name, value) in params.iter().flat_map(|params| params.iter()) {
            match name {
                "upload_id" if value.parse::<UploadId>().is_ok() => context.set_upload(value),
                "part_number" if value.parse::<u32>().is_ok() => {
                    let _ = context.part_number.set(value.to_owned());
                }
                "file_id" => {
                    let _ = context.file_id.set(value.to_owned());
                }
                _ => {}
            }
        }
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
