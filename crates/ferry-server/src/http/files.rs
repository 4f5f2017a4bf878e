//! Handlers of the file routes (spec §4) and health.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::error::ApiError;
use super::request::{Org, PathParams};
use crate::service::Service;

/// RFC 5987 `attr-char`s, which need no percent-encoding in `filename*`.
const ATTR_CHARS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

fn content_disposition(file_name: &str) -> String {
    format!("attachment; filename*=UTF-8''{}", utf8_percent_encode(file_name, ATTR_CHARS))
}

/// Streams a file whole. (`HEAD` is answered by the same handler; the
/// router drops the body.)
pub async fn download(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    PathParams(file_id): PathParams<String>,
) -> Result<Response, ApiError> {
    let download = service.download(&org, &file_id).await?;
    let file = &download.file;
    Response::builder()
        .header(CONTENT_TYPE, &file.file_type)
        .header(CONTENT_LENGTH, file.num_bytes)
        .header(ETAG, format!("\"{}\"", file.file_uid))
        .header(CONTENT_DISPOSITION, content_disposition(&file.file_name))
        .body(Body::from_stream(download.bytes))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// 200 when the metadata store and the blob store answer.
pub async fn health(State(service): State<Arc<Service>>) -> Result<&'static str, ApiError> {
    service.health().await?;
    Ok("ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_encoded_per_rfc_5987() {
        assert_eq!(content_disposition("a b.csv"), "attachment; filename*=UTF-8''a%20b.csv");
        assert_eq!(content_disposition("übung\".json"), "attachment; filename*=UTF-8''%C3%BCbung%22.json");
    }
}
