//! The presigned part PUT (files-api §3.3): the URL alone authorizes it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_LENGTH, ETAG, EXPECT};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};

use ferry_api::{ErrorResponse, paths};

use super::drain::drain;
use super::error::ApiError;
use crate::service::Service;

/// The most of a refused body that is read and thrown away so that the
/// client can read the answer (see [`put_part`]).
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Answers a part PUT. When it is refused, the rest of the body is read and
/// discarded (up to a bound) before the answer goes out: many clients send
/// the whole body before they read a response, and would otherwise see a
/// broken connection instead of the error. A client that sent `Expect:
/// 100-continue` was never asked for the body, so nothing is drained.
#[utoipa::path(put, path = paths::PART_DATA, tag = "uploads", security(()),
    params(
        ("upload_id" = String, Path, description = "The upload's id"),
        ("part_number" = u32, Path, description = "Zero-based part number"),
        ("expires" = u64, Query, description = "Part of the presigned URL"),
        ("key_id" = String, Query, description = "Part of the presigned URL"),
        ("signature" = String, Query, description = "Part of the presigned URL"),
    ),
    request_body(content = super::schemas::Bytes, content_type = "application/octet-stream", description = "Exactly the part's `length` bytes"),
    responses(
        (status = 200, description = "The part is durable; its token is the ETag", headers(("ETag" = String, description = "The part token"))),
        (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
pub async fn put_part(
    State(service): State<Arc<Service>>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let awaits_continue = headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // The path as sent, not percent-decoded: the service accepts only the
    // spelling the signer wrote.
    let mut segments = uri.path().strip_prefix("/parts/").unwrap_or_default().splitn(2, '/');
    let (upload_id, part_number) = (segments.next().unwrap_or_default(), segments.next().unwrap_or_default());
    let mut body = body.into_data_stream();
    let outcome =
        service.put_part(upload_id, part_number, query.as_deref().unwrap_or(""), content_length, &mut body).await;
    let token = match outcome {
        Ok(token) => token,
        Err(e) => {
            if !awaits_continue {
                drain(&mut body, DRAIN_LIMIT, service.drain_timeout()).await;
            }
            return Err(e.into());
        }
    };
    let etag = HeaderValue::from_str(&token.to_etag()).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(ETAG, etag)], ()).into_response())
}
