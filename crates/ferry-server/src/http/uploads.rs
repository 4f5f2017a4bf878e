//! Handlers of the direct-to-cloud upload routes (files-api §3).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ferry_api::uploads::{
    CheckpointRequest, CheckpointResponse, CompleteUploadRequest, CompleteUploadResponse, InitiateUploadRequest,
    InitiateUploadResponse, PartUrlsRequest, PartUrlsResponse,
};
use ferry_api::{ErrorResponse, paths};
use serde::de::IgnoredAny;

use super::error::ApiError;
use super::log::Audit;
use super::origin::ClientOrigin;
use super::request::{JsonBody, Org, UploadPath, check_list_len};
use crate::service::Service;
use crate::service::uploads::InitiateUpload;

type Api<T> = Result<Json<T>, ApiError>;

#[utoipa::path(post, path = paths::INITIATE_UPLOAD, tag = "uploads",
    request_body = InitiateUploadRequest,
    responses((status = 200, description = "Done", body = InitiateUploadResponse), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Start (or resume) a direct-to-cloud upload: every part with its presigned URL.
pub async fn initiate(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    ClientOrigin(origin): ClientOrigin,
    Audit(audit): Audit,
    JsonBody(request): JsonBody<InitiateUploadRequest>,
) -> Api<InitiateUploadResponse> {
    let request = InitiateUpload {
        file_name: request.filename,
        file_type: request.file_type,
        num_bytes: request.num_bytes,
        resume_if_started: request.resume_if_started,
    };
    let initiated = service.initiate(&org, request, &origin).await?;
    audit.set_upload(&initiated.upload_id);
    audit.set_file(&initiated.file_name, &initiated.file_uid);
    Ok(Json(initiated))
}

#[utoipa::path(post, path = paths::PART_URLS, tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id")),
    request_body = PartUrlsRequest,
    responses((status = 200, description = "Done", body = PartUrlsResponse), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Fresh presigned URLs for parts, in request order.
pub async fn part_urls(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    UploadPath(upload_id): UploadPath,
    ClientOrigin(origin): ClientOrigin,
    JsonBody(request): JsonBody<PartUrlsRequest>,
) -> Api<PartUrlsResponse> {
    check_list_len("part_numbers", request.part_numbers.len())?;
    let parts = service.part_urls(&org, &upload_id, &request.part_numbers, &origin).await?;
    Ok(Json(PartUrlsResponse { parts }))
}

#[utoipa::path(post, path = paths::CHECKPOINT, tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id")),
    request_body = CheckpointRequest,
    responses((status = 200, description = "Done", body = CheckpointResponse), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Record part tokens, all or none.
pub async fn checkpoint(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    UploadPath(upload_id): UploadPath,
    JsonBody(request): JsonBody<CheckpointRequest>,
) -> Api<CheckpointResponse> {
    check_list_len("parts", request.parts.len())?;
    Ok(Json(service.checkpoint(&org, &upload_id, &request.parts).await?))
}

#[utoipa::path(post, path = paths::COMPLETE_UPLOAD, tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id")),
    request_body = CompleteUploadRequest,
    responses((status = 200, description = "Done", body = CompleteUploadResponse), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Register the uploaded parts as the file.
pub async fn complete(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    UploadPath(upload_id): UploadPath,
    Audit(audit): Audit,
    JsonBody(request): JsonBody<CompleteUploadRequest>,
) -> Api<CompleteUploadResponse> {
    check_list_len("parts", request.parts.len())?;
    let checksum = request.integrity_checksum.as_deref();
    let completed = service.complete(&org, &upload_id, &request.parts, checksum).await?;
    audit.set_file(&completed.file_name, &completed.file_uid);
    Ok(Json(completed))
}

#[utoipa::path(post, path = paths::ABORT_UPLOAD, tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id")),
    request_body(content = Option<Object>, description = "Optional; any JSON object"),
    responses((status = 200, description = "Aborted (empty body)"), (status = "4XX", description = "Refused: the error envelope says why", body = ErrorResponse), (status = "5XX", description = "A server fault, in the error envelope", body = ErrorResponse)))]
/// Abort an upload and free its storage. Answers 200 with an empty body
/// (files-api §3.6); no body, or any JSON object, is accepted.
pub async fn abort(
    State(service): State<Arc<Service>>,
    Org(org): Org,
    UploadPath(upload_id): UploadPath,
    JsonBody(_): JsonBody<BTreeMap<String, IgnoredAny>>,
) -> Result<(), ApiError> {
    Ok(service.abort(&org, &upload_id).await?)
}
