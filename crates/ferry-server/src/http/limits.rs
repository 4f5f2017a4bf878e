//! The limits ferry sets on a request's head, checked before routing so
//! that a refusal gets the contract's envelope, an `error_uid` and a log
//! line. (hyper's own limits sit above these; what it still refuses itself
//! is counted in `ferry_http_rejected_total`, see `serve.rs`.)

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_api::ErrorCode;

use super::error::ApiError;

/// The longest request target (path and query). Ferry's own URLs are a
/// few hundred bytes; a file name percent-encoded is at most 765.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// The most header lines, and their most bytes.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

pub async fn check_request_head(request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URL_BYTES {
        return ApiError::new(
            ErrorCode::UrlTooLong,
            format!("the URL is {target} bytes long; the limit is {MAX_URL_BYTES}"),
            "Send a shorter URL: query values this long are never needed.",
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request has {} header lines of {bytes} bytes; the limits are {MAX_HEADERS} lines and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
            "Send fewer or shorter headers.",
        )
        .into_response();
    }
    next.run(request).await
}
