//! Handlers of the file routes (files-api §4) and health.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{
    ACCEPT, ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_RANGE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_api::files::{FileIdentity, FileList, FileMetadata, FilesInfo, ListFilesQuery};
use ferry_api::{ErrorResponse, paths};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::drain::drain;
use super::error::ApiError;
use super::log::Audit;
use super::request::{Org, PathParams, QueryParams};
use crate::service::files::{Encoding, IncomingFile, etag};
use crate::service::{Service, ServiceError};
use crate::telemetry::Format;

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

#[utoipa::path(get, path = paths::DOWNLOAD, tag = "files",
    params(("file_id" = String, Path, description = "The file's name, percent-encoded"),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023"),
           ("If-Range" = Option<String>, Header, description = "Serve the Range only if this is the file's ETag")),
    responses(
        // The bytes come back in the file's own type, whatever that is.
        (status = 200, description = "The whole file, in its own Content-Type", content_type = "*/*", body = super::schemas::Bytes),
        (status = 206, description = "One range of the file, in its own Content-Type", content_type = "*/*", body = super::schemas::Bytes),
        (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Stream a file, whole or one range of it. (`HEAD` is answered by the same
/// handler; the router drops the body.)
pub async fn download(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    PathParams(file_id): PathParams<String>,
    Audit(audit): Audit,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let download = service.download(&org, &file_id, header(RANGE), header(IF_RANGE)).await?;
    let file = &download.file;
    audit.set_file(&file.file_name, file.file_uid);
    let (start, end) = (download.range.start, download.range.end);
    let mut response = Response::builder()
        .header(CONTENT_TYPE, &file.file_type)
        .header(CONTENT_LENGTH, end - start)
        .header(ETAG, etag(file))
        .header(CONTENT_DISPOSITION, content_disposition(&file.file_name))
        .header(ACCEPT_RANGES, "bytes");
    if download.partial {
        response = response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(CONTENT_RANGE, format!("bytes {start}-{}/{}", end - 1, file.num_bytes));
    }
    response.body(Body::from_stream(download.bytes)).map_err(|e| ApiError::internal(e.to_string()))
}

#[utoipa::path(get, path = paths::FILE_METADATA, tag = "files",
    params(("file_id" = String, Path, description = "The file's name, percent-encoded")),
    responses((status = 200, description = "Done", body = FileMetadata), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// One file's record.
pub async fn file_metadata(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    PathParams(file_id): PathParams<String>,
    Audit(audit): Audit,
) -> Result<Json<FileMetadata>, ApiError> {
    let file = service.file_metadata(&org, &file_id).await?;
    audit.set_file(&file.file_id, &file.file_uid);
    Ok(Json(file))
}

#[utoipa::path(get, path = paths::LIST_METADATA, tag = "files",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Pages: files in the page, 1 to 1000 (default 100)"),
        ("after" = Option<String>, Query, description = "Pages: a page's `next_cursor`, to continue to older files"),
        ("before" = Option<String>, Query, description = "Pages: a page's `prev_cursor`, to step back to newer files (not with `after`)"),
        ("shard_index" = Option<i64>, Query, minimum = -1, description = "Shards (the older form, chosen by this or max_items_per_shard): -1 (default) starts from the first record"),
        ("max_items_per_shard" = Option<i64>, Query, minimum = -1, maximum = 1000, description = "Shards: 1 to 1000, or -1 (the default) for 1000"),
        ("file_type" = Option<String>, Query, description = "Only files of this type"),
    ),
    responses((status = 200, description = "A page, newest first; with a shard parameter, a shard as a JSON array ordered by `file_index`", body = FileList), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// The org's files: a page, newest first, or a shard in the older form.
pub async fn list_metadata(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    QueryParams(query): QueryParams<ListFilesQuery>,
) -> Result<Json<FileList>, ApiError> {
    Ok(Json(service.list_files(&org, &query).await?))
}

#[utoipa::path(get, path = paths::FILES_INFO, tag = "files",
    responses((status = 200, description = "Done", body = FilesInfo), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// The org's totals.
pub async fn info(State(service): State<Arc<Service>>, Org(org): Org) -> Result<Json<FilesInfo>, ApiError> {
    Ok(Json(service.files_info(&org).await?))
}

#[utoipa::path(delete, path = paths::DELETE_FILE, tag = "files",
    params(("file_id" = String, Path, description = "The file's name, percent-encoded")),
    responses((status = 200, description = "Done", body = FileIdentity), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Delete a file: the name is free at once, the bytes go soon after.
pub async fn delete(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    PathParams(file_id): PathParams<String>,
    Audit(audit): Audit,
) -> Result<Json<FileIdentity>, ApiError> {
    let deleted = service.delete_file(&org, &file_id).await?;
    audit.set_file(&deleted.file_id, &deleted.file_uid);
    Ok(Json(deleted))
}

#[utoipa::path(post, path = paths::SIMPLE_UPLOAD, tag = "files",
    request_body(content = super::schemas::UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Done", body = FileIdentity), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Upload a file whole: the first multipart part with a file name.
pub async fn simple_upload(
    State(service): State<Arc<Service>>,
    org: Result<Org, ApiError>,
    Audit(audit): Audit,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileIdentity>, ApiError> {
    let uploaded = upload(&service, org, &headers, body, Encoding::Raw).await?;
    audit.set_file(&uploaded.file_id, &uploaded.file_uid);
    Ok(uploaded)
}

#[utoipa::path(post, path = paths::BASE64_UPLOAD, tag = "files",
    request_body(content = super::schemas::Base64UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Done", body = FileIdentity), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Upload a file whole, its part's content in base64.
pub async fn base64_upload(
    State(service): State<Arc<Service>>,
    org: Result<Org, ApiError>,
    Audit(audit): Audit,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileIdentity>, ApiError> {
    let uploaded = upload(&service, org, &headers, body, Encoding::Base64).await?;
    audit.set_file(&uploaded.file_id, &uploaded.file_uid);
    Ok(uploaded)
}

/// The most of a body read and thrown away for a caller whose key was not
/// accepted, so that it can read the answer.
const UNAUTHENTICATED_DRAIN: u64 = 64 * 1024 * 1024;

/// Room for the multipart framing around the file in a body that is
/// otherwise within the limit.
const MULTIPART_SLACK: u64 = 1024 * 1024;

/// Takes the first multipart part that carries a file name and stores it.
///
/// A refused upload reads and discards the rest of the body (up to a bound)
/// before answering: existing clients send the whole body before reading a
/// response, and would otherwise see a broken connection, not the 413.
async fn upload(
    service: &Service,
    org: Result<Org, ApiError>,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<Json<FileIdentity>, ApiError> {
    let limit = service.max_simple_upload();
    let drain_bound = limit.max(UNAUTHENTICATED_DRAIN);
    // A refused key, or a metadata store that is down (503), is answered
    // after the body too; a caller without a key gets a smaller bound.
    let org = match org {
        Ok(Org(org)) => org,
        Err(e) => {
            drain(&mut body.into_data_stream(), UNAUTHENTICATED_DRAIN, service.drain_timeout()).await;
            return Err(e);
        }
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Err(ApiError::invalid_parameter(format!(
            "Content-Type `{content_type}` is not multipart/form-data with a boundary"
        )));
    };
    let declared: Option<u64> = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|length| length > limit + MULTIPART_SLACK) {
        drain(&mut body.into_data_stream(), drain_bound, service.drain_timeout()).await;
        return Err(ServiceError::FileTooLarge { limit }.into());
    }

    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.file_name().is_some() => break field,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(ServiceError::BadRequest(vec![crate::service::BadRequest::MissingField(
                    "a multipart part with a file name".into(),
                )])
                .into());
            }
            Err(e) => return Err(ApiError::invalid_parameter(format!("malformed multipart body: {e}"))),
        }
    };
    let file_name = field.file_name().unwrap_or_default().to_owned();
    let content_type = field.content_type().map(|m| m.essence_str().to_owned());
    let incoming = IncomingFile {
        file_name: &file_name,
        content_type: content_type.as_deref(),
        encoding,
        declared_length: declared,
    };
    let outcome = service.simple_upload(&org, incoming, &mut field).await;
    if outcome.is_err() {
        drain(&mut field, drain_bound, service.drain_timeout()).await;
    }
    Ok(Json(outcome?))
}

#[utoipa::path(get, path = paths::METRICS, tag = "operations", security((), ("bearer" = [])),
    responses((status = 200, description = "OpenMetrics text when the Accept header names it, else the Prometheus text format", content_type = "text/plain", body = String),
              (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// The Prometheus metrics. Open unless the operator asked for a key.
pub async fn metrics(State(service): State<Arc<Service>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if service.metrics_need_key() {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        service.authenticate(header).await?;
    }
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let body = service.render_metrics(format).await?;
    Ok(([(CONTENT_TYPE, format.content_type())], body).into_response())
}

#[utoipa::path(get, path = paths::HEALTH, tag = "operations", security(()),
    responses((status = 200, description = "The stores answer", content_type = "text/plain", body = String),
              (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
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
