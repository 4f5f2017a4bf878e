//! Extractors that turn a request into typed inputs, refusing bad ones with
//! the contract's errors (never axum's plain-text rejections).

use std::sync::Arc;

use axum::body::to_bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use ferry_core::ids::{OrgId, UploadId};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::log::RequestContext;
use crate::service::{BadRequest, Service, ServiceError};

/// The largest JSON body accepted: room for 10,000 part entries with tokens.
const MAX_JSON_BODY: usize = 4 * 1024 * 1024;
/// The most entries in `part_numbers` or `parts` (files-api §1).
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The org of the request's API key.
pub struct Org(pub OrgId);

impl FromRequestParts<Arc<Service>> for Org {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<Service>) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let (org, key_id) = service.authenticate(header).await?;
        if let Some(context) = parts.extensions.get::<Arc<RequestContext>>() {
            context.set_caller(org, key_id);
        }
        Ok(Org(org))
    }
}

/// Path parameters, percent-decoded; a path that does not decode is a bad
/// parameter in the envelope.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|e: PathRejection| ApiError::invalid_parameter(format!("bad path: {}", e.body_text())))
    }
}

/// The upload id in a route's path. Text that is not an upload id names
/// no upload, so it is answered as an unknown one (404), after the key.
pub struct UploadPath(pub UploadId);

impl<S: Send + Sync> FromRequestParts<S> for UploadPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathParams(text) = PathParams::<String>::from_request_parts(parts, state).await?;
        text.parse().map(UploadPath).map_err(|_| ServiceError::MalformedUploadId(text).into())
    }
}

/// Query parameters; a query that does not parse is a bad parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|e| ApiError::invalid_parameter(format!("bad query: {}", e.body_text())))
    }
}

/// A JSON request body. An empty body reads as `{}`, so that a route whose
/// fields are all optional (abort) needs none, and a required field is
/// reported missing rather than the body malformed.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Names the field a deserialization error is about, and whether it was
/// missing or malformed.
fn field_problem(e: serde_path_to_error::Error<serde_json::Error>) -> BadRequest {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.to_string();
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let field = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
        return BadRequest::MissingField(field);
    }
    BadRequest::InvalidField { field: if path == "." { String::new() } else { path }, reason: message }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or(""));
        if let Some(content_type) = content_type.filter(|ct| !is_json(ct)) {
            return Err(ApiError::invalid_parameter(format!(
                "Content-Type `{content_type}` is not JSON; send `Content-Type: application/json`"
            )));
        }
        let bytes = to_bytes(request.into_body(), MAX_JSON_BODY).await.map_err(|e| {
            ApiError::invalid_parameter(format!("could not read the body (at most {MAX_JSON_BODY} bytes): {e}"))
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        // Syntax first, over the whole body; then the fields, with their paths.
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::invalid_parameter(format!("malformed JSON: {e}")))?;
        let value = serde_path_to_error::deserialize(json)
            .map_err(|e| ApiError::from(ServiceError::BadRequest(vec![field_problem(e)])))?;
        Ok(JsonBody(value))
    }
}

/// Refuses a list longer than the contract allows.
pub fn check_list_len(field: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_LIST_ENTRIES {
        return Err(ServiceError::BadRequest(vec![BadRequest::InvalidField {
            field: field.into(),
            reason: format!("{len} entries; at most {MAX_LIST_ENTRIES} are allowed in one request"),
        }])
        .into());
    }
    Ok(())
}
