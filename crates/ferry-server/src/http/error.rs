//! The one place where errors become the contract's envelope (spec §2).
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

    /// 503 with `Retry-After`: a store the server needs cannot serve now.
    fn unavailable(message: String, store: &str, why: String) -> Self {
        let mut error = Self::new(
            ErrorCode::ServiceUnavailable,
            message,
            format!("Retry shortly: the server cannot reach its {store} right now."),
        );
        error.detail = Some(why);
        error.headers.push((RETRY_AFTER, "1".into()));
        error
    }

    fn many(problems: Vec<Problem>) -> Self {
        Self { problems, detail: None, headers: Vec::new() }
    }
}

/// `0-4, 7, 9-12`: part numbers as a reader wants them.
fn ranges(numbers: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(", ")
}

fn bad_request(problem: BadRequest) -> Vec<Problem> {
    let one = |code, message: String, suggestion: &str| vec![Problem { code, message, suggestion: suggestion.into() }];
    match problem {
        BadRequest::MissingField(field) => {
            one(ErrorCode::MissingParameter, format!("`{field}` is required"), "Add the field to the request body.")
        }
        BadRequest::InvalidField { field, reason } => one(
            ErrorCode::InvalidParameter,
            if field.is_empty() { reason } else { format!("`{field}`: {reason}") },
            "Fix the field's value and send the request again.",
        ),
        BadRequest::FileName(e) => one(
            ErrorCode::InvalidParameter,
            format!("invalid filename: {e}"),
            "Use 1 to 255 bytes of UTF-8 without `/`, `\\` or control characters, and not `.` or `..`.",
        ),
        BadRequest::FileType { given, allowed } => vec![Problem {
            code: ErrorCode::InvalidFileType,
            message: format!("file_type `{given}` is not accepted"),
            suggestion: format!("Use one of: {}.", allowed.join(", ")),
        }],
        BadRequest::FileSize { given, max } => one(
            ErrorCode::InvalidFileSize,
            format!("num_bytes {given} is out of range (1 <= num_bytes <= {max})"),
            "Send the file's exact size in bytes; files larger than the limit cannot be uploaded.",
        ),
        BadRequest::PartNumbers { bad, upload_id, num_parts } => bad
            .into_iter()
            .map(|n| Problem {
                code: ErrorCode::InvalidPartNumber,
                message: format!(
                    "part_number {n} is out of range for upload {upload_id} (0 <= part_number < {num_parts})"
                ),
                suggestion: format!("Request part numbers between 0 and {}.", num_parts.saturating_sub(1)),
            })
            .collect(),
        BadRequest::PartTokens(parts) => one(
            ErrorCode::InvalidPartToken,
            format!("the part_token of part(s) {} is not the token of the uploaded bytes", ranges(&parts)),
            "Send the ETag of the part's last successful PUT, quotes included; upload the part again if unsure.",
        ),
        BadRequest::MissingParts(parts) => one(
            ErrorCode::MissingParts,
            format!("part(s) {} have no valid token from this request or a checkpoint", ranges(&parts)),
            "Upload the missing parts (ask for fresh URLs if needed), then complete with their tokens.",
        ),
        BadRequest::IntegrityNotSupported(reason) => one(
            ErrorCode::IntegrityNotSupported,
            format!("integrity_checksum cannot be checked: {reason}"),
            "Send base64 of the 4-byte big-endian CRC32C of the whole file (8 characters), or omit it.",
        ),
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        let message = e.to_string();
        let (code, suggestion) = match e {
            E::BadRequest(problems) => return Self::many(problems.into_iter().flat_map(bad_request).collect()),
            E::Meta(_) | E::Blob(_) => return Self::internal(message),
            E::InvalidApiKey => (
                ErrorCode::InvalidApiKey,
                "Send `Authorization: Bearer <api key>` with a key from `ferry admin key create`.",
            ),
            E::UploadNotFound(_) => (
                ErrorCode::UploadNotFound,
                "Check the upload_id; an aborted or expired upload is gone: start a new one with initiate.",
            ),
            E::UploadCompleted(_) => (ErrorCode::UploadCompleted, "The file is registered; nothing more to do."),
            E::CompleteUnderWay(_) => {
                (ErrorCode::UploadCompleted, "Wait for the other complete's answer, or read the file's metadata.")
            }
            E::UploadConflict { .. } => (
                ErrorCode::UploadConflict,
                "Resume with the same file_type and num_bytes, or initiate with resume_if_started false.",
            ),
            E::PartInProgress(_) => (ErrorCode::PartUploadInProgress, "Wait for the other PUT to finish, then retry."),
            E::PartDuringComplete(_) => (
                ErrorCode::PartUploadInProgress,
                "Retry shortly: if that complete fails the part can be sent again; if it succeeds the file is registered.",
            ),
            E::CompleteDuringPartUpload(_) => {
                (ErrorCode::PartUploadInProgress, "Wait for the part PUTs in flight to finish, then complete.")
            }
            E::InvalidSignature => (
                ErrorCode::InvalidSignature,
                "Use the URL exactly as issued; get a fresh one from the part-URL endpoint.",
            ),
            E::UrlExpired { .. } => {
                (ErrorCode::UrlExpired, "Get a fresh URL from POST /v0.5/files/uploads/{upload_id}/parts/urls.")
            }
            E::InvalidPartSize { .. } => (
                ErrorCode::InvalidPartSize,
                "Send exactly the part's `length` bytes, starting at its `offset` in the file.",
            ),
            E::IntegrityCheckFailed { .. } => (
                ErrorCode::IntegrityCheckFailed,
                "The file is marked corrupt. Check the source file and upload it again.",
            ),
            E::CapacityReached => {
                (ErrorCode::CapacityReached, "Free space or quota, then retry; nothing partial was kept.")
            }
            E::FileNotFound(_) => {
                (ErrorCode::FileNotFound, "Check the file name; list files with GET /v0.5/files/metadata.")
            }
            E::FileNotDownloadable(_) => {
                (ErrorCode::FileNotDownloadable, "The file is corrupt or being deleted; upload it again.")
            }
            E::FileTooLarge { .. } => (
                ErrorCode::FileTooLarge,
                "Upload large files with the direct-to-cloud upload (POST /v0.5/files/uploads/initiate).",
            ),
            E::BodyBrokeOff(_) => (ErrorCode::InvalidParameter, "Send the request again with the whole body."),
            E::Unavailable(why) => return Self::unavailable(message, "database", why),
            E::StoreUnavailable(why) => return Self::unavailable(message, "object store", why),
            E::UploadTooSlow => (
                ErrorCode::ServiceUnavailable,
                "Send it again; if uploads are this slow, ask the operator for a longer --orphan-grace.",
            ),
            E::QuotaExceeded { .. } => (
                ErrorCode::CapacityReached,
                "Delete files you no longer need, or ask the operator for a larger quota; nothing was kept.",
            ),
            E::RateLimited { retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut error = Self::new(
                    ErrorCode::RateLimited,
                    message,
                    format!("Wait {seconds} s (Retry-After) and send it again; slow down."),
                );
                error.headers.push((RETRY_AFTER, seconds.to_string()));
                return error;
            }
            E::RangeNotSatisfiable { len } => {
                let mut error = Self::new(
                    ErrorCode::RangeNotSatisfiable,
                    message,
                    "Ask for a range that starts before the end of the file.",
                );
                error.headers.push((CONTENT_RANGE, format!("bytes */{len}")));
                return error;
            }
        };
        Self::new(code, message, suggestion)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_lists_read_as_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3, 4, 7, 9, 10, 11, 12]), "0-4, 7, 9-12");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[]), "");
    }
}
