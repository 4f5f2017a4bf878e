//! The one place where errors become the contract's envelope (files-api §2).
//!
//! Every error response, from every route, the presigned PUT, unknown
//! routes and panics included, is built here: one entry per problem, each
//! with a fresh `error_uid` that the request's log line also carries.

use axum::Json;
use axum::http::header::{CONTENT_RANGE, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_api::{ErrorCode, ErrorEntry, ErrorResponse};

use crate::service::{BadRequest, ServiceError};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    problems: Vec<Problem>,
    /// What went wrong inside, for the log only: never sent to the client.
    detail: Option<String>,
    /// Headers the status calls for (`Content-Range` on a 416).
    headers: Vec<(HeaderName, String)>,
}

#[derive(Debug)]
struct Problem {
    code: ErrorCode,
    message: String,
    suggestion: String,
}

/// What the request log needs to know about an error response.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub codes: Vec<&'static str>,
    pub error_uids: Vec<String>,
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, suggestion: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem { code, message: message.into(), suggestion: suggestion.into() }],
            detail: None,
            headers: Vec::new(),
        }
    }

    /// A server fault: the client learns only that it happened and its uid.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(
                ErrorCode::InternalError,
                "the server failed to handle this request",
                "Retry later; if it persists, give the operator this error_uid.",
            )
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message, "Fix the request and send it again.")
    }

    fn many(problems: Vec<Problem>) -> Self {
        Self { problems, detail: None, headers: Vec::new() }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::BadRequest(problems) = &e {
            let problems = problems.iter().flat_map(BadRequest::describe);
            return Self::many(
                problems.map(|(code, message, suggestion)| Problem { code, message, suggestion }).collect(),
            );
        }
        if e.is_fault() {
            return Self::internal(e.to_string());
        }
        let (code, suggestion) = e.describe();
        let mut error = Self::new(code, e.to_string(), suggestion);
        error.detail = e.detail();
        if let Some(seconds) = e.retry_after() {
            error.headers.push((RETRY_AFTER, seconds.to_string()));
        }
        if let ServiceError::RangeNotSatisfiable { len } = e {
            error.headers.push((CONTENT_RANGE, format!("bytes */{len}")));
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.problems.first().map_or(500, |p| p.code.status());
        let entries: Vec<ErrorEntry> = self
            .problems
            .into_iter()
            .map(|p| ErrorEntry {
                code: p.code,
                message: p.message,
                suggestion: p.suggestion,
                error_uid: format!("err-{}", uuid::Uuid::new_v4()),
            })
            .collect();
        let report = ErrorReport {
            codes: entries.iter().map(|e| e.code.as_str()).collect(),
            error_uids: entries.iter().map(|e| e.error_uid.clone()).collect(),
            detail: self.detail,
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ErrorResponse { errors: entries })).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response.extensions_mut().insert(report);
        response
    }
}
