//! What can go wrong in an operation, and what the contract calls it: each
//! error's message (its `Display`), code and suggestion are written in one
//! place, [`ServiceError::code`] and [`ServiceError::suggestion`], so adding
//! an error is one variant and one row. The HTTP layer only wraps them in
//! the envelope.

use std::borrow::Cow;

use ferry_api::ErrorCode;
use ferry_blob::{BlobError, SourceError};
use ferry_core::cursor::InvalidCursor;
use ferry_core::ids::UploadId;
use ferry_core::names::InvalidFileName;
use ferry_core::upload::{ClaimProblems, UploadState};
use ferry_meta::{MetaError, UploadRecord};

/// One thing wrong with a request. A request may have several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    MissingField(String),
    InvalidField { field: String, reason: String },
    Cursor { field: String, reason: InvalidCursor },
    FileName(InvalidFileName),
    FileType { given: String, allowed: Vec<String> },
    FileSize { given: i64, max: u64 },
    PartNumbers { bad: Vec<i64>, upload_id: UploadId, num_parts: u32 },
    PartTokens(Vec<u32>),
    MissingParts(Vec<u32>),
    IntegrityNotSupported(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the request has {} problem(s)", .0.len())]
    BadRequest(Vec<BadRequest>),
    #[error("missing, malformed, unknown or revoked API key")]
    InvalidApiKey,
    #[error("upload `{0}` not found")]
    UploadNotFound(UploadId),
    /// A path's upload id that is not one: as unknown as any other.
    #[error("upload `{0}` not found")]
    MalformedUploadId(String),
    #[error("upload `{0}` is already completed")]
    UploadCompleted(UploadId),
    #[error("upload `{0}` is being completed by another request")]
    CompleteUnderWay(UploadId),
    #[error("upload `{upload_id}` of this name is in progress with file_type `{file_type}` and num_bytes {num_bytes}")]
    UploadConflict { upload_id: UploadId, file_type: String, num_bytes: u64 },
    #[error("part {0} is being uploaded by another request")]
    PartInProgress(u32),
    #[error("upload `{0}` is being completed by another request")]
    PartDuringComplete(UploadId),
    #[error("a part of upload `{0}` is being uploaded; complete after it finishes")]
    CompleteDuringPartUpload(UploadId),
    #[error("the presigned URL's signature does not verify")]
    InvalidSignature,
    #[error("the presigned URL expired at {expires_at}")]
    UrlExpired { expires_at: String },
    #[error("part {part_number} is {expected} bytes; the body had {}", received_bytes(*.received))]
    InvalidPartSize { part_number: u32, expected: u64, received: Option<u64> },
    #[error("integrity check failed: expected {expected}, the parts combine to {actual}")]
    IntegrityCheckFailed { expected: String, actual: String },
    #[error("storage is full")]
    CapacityReached,
    #[error("the org's quota of {quota} bytes would be exceeded ({used} bytes are in use)")]
    QuotaExceeded { quota: u64, used: u64 },
    #[error("too many requests for this API key")]
    RateLimited { retry_after_secs: u64 },
    #[error("the upload took longer than the server keeps bytes not yet registered")]
    UploadTooSlow,
    #[error("the server's metadata store is unavailable")]
    Unavailable(String),
    #[error("the server's object store is busy or cannot be reached")]
    StoreUnavailable(String),
    #[error("the file is larger than the limit of {limit} bytes for this kind of upload")]
    FileTooLarge { limit: u64 },
    #[error("the request body broke off: {0}")]
    BodyBrokeOff(String),
    #[error("no byte of the file's {len} satisfies the Range")]
    RangeNotSatisfiable { len: u64 },
    #[error("file `{0}` not found")]
    FileNotFound(String),
    #[error("file `{0}` is not downloadable")]
    FileNotDownloadable(String),
    /// A fault of the server's own: the client learns only its error_uid.
    #[error(transparent)]
    Meta(MetaError),
    #[error(transparent)]
    Blob(BlobError),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How much of a part's body arrived, for a message: `None` when it was
/// cut off as soon as it ran past the part.
fn received_bytes(received: Option<u64>) -> String {
    match received {
        Some(n) => n.to_string(),
        None => "more".into(),
    }
}

impl ServiceError {
    /// The contract's code, and what the client can do about it: the table.
    /// (Bad requests list their problems, and server faults say nothing but
    /// their uid: [`ServiceError::is_fault`].)
    pub fn describe(&self) -> (ErrorCode, Cow<'static, str>) {
        use ErrorCode as C;
        use ServiceError as E;
        let (code, suggestion): (ErrorCode, &'static str) = match self {
            E::BadRequest(_) => (C::InvalidParameter, "Fix the request and send it again."),
            E::InvalidApiKey => (C::InvalidApiKey, "Send the API key as `Authorization: Bearer <key>`."),
            E::UploadNotFound(_) | E::MalformedUploadId(_) => (
                C::UploadNotFound,
                "Check the upload_id; an aborted or expired upload is gone: start a new one with initiate.",
            ),
            E::UploadCompleted(_) => (C::UploadCompleted, "The file is registered; nothing more to do."),
            E::CompleteUnderWay(_) => {
                (C::UploadCompleted, "Wait for the other complete's answer, or read the file's metadata.")
            }
            E::UploadConflict { .. } => (
                C::UploadConflict,
                "Resume with the same file_type and num_bytes, or initiate with resume_if_started false.",
            ),
            E::PartInProgress(_) => (C::PartUploadInProgress, "Wait for the other PUT to finish, then retry."),
            E::PartDuringComplete(_) => (
                C::PartUploadInProgress,
                "Retry shortly: if that complete fails the part can be sent again; if it succeeds the file is registered.",
            ),
            E::CompleteDuringPartUpload(_) => {
                (C::PartUploadInProgress, "Wait for the part PUTs in flight to finish, then complete.")
            }
            E::InvalidSignature => {
                (C::InvalidSignature, "Use the URL exactly as issued; get a fresh one from the part-URL endpoint.")
            }
            E::UrlExpired { .. } => (C::UrlExpired, "Get a fresh URL from the upload's part-URL endpoint."),
            E::InvalidPartSize { .. } => {
                (C::InvalidPartSize, "Send exactly the part's `length` bytes, starting at its `offset` in the file.")
            }
            E::IntegrityCheckFailed { .. } => {
                (C::IntegrityCheckFailed, "The file is marked corrupt. Check the source file and upload it again.")
            }
            E::CapacityReached => (C::CapacityReached, "Free space or quota, then retry; nothing partial was kept."),
            E::QuotaExceeded { .. } => (
                C::CapacityReached,
                "Delete files you no longer need, or ask the operator for a larger quota; nothing was kept.",
            ),
            E::RateLimited { retry_after_secs } => {
                let wait = format!("Wait {retry_after_secs} s (Retry-After) and send it again; slow down.");
                return (C::RateLimited, wait.into());
            }
            E::UploadTooSlow => (
                C::ServiceUnavailable,
                "Send it again; if uploads are this slow, ask the operator for a longer --orphan-grace.",
            ),
            E::Unavailable(_) => {
                (C::ServiceUnavailable, "Retry shortly: the server cannot reach its database right now.")
            }
            E::StoreUnavailable(_) => {
                (C::ServiceUnavailable, "Retry shortly: the server cannot reach its object store right now.")
            }
            E::FileTooLarge { .. } => {
                (C::FileTooLarge, "Upload large files with the direct-to-cloud upload (initiate, then PUT the parts).")
            }
            E::BodyBrokeOff(_) => (C::InvalidParameter, "Send the request again with the whole body."),
            E::RangeNotSatisfiable { .. } => {
                (C::RangeNotSatisfiable, "Ask for a range that starts before the end of the file.")
            }
            E::FileNotFound(_) => (C::FileNotFound, "Check the file name; list the org's files to see them."),
            E::FileNotDownloadable(_) => {
                (C::FileNotDownloadable, "The file is corrupt or being deleted; upload it again.")
            }
            E::Meta(_) | E::Blob(_) => {
                (C::InternalError, "Retry later; if it persists, give the operator this error_uid.")
            }
        };
        (code, suggestion.into())
    }

    /// Whether this is the server's own fault, whose details stay in the log.
    pub fn is_fault(&self) -> bool {
        matches!(self, Self::Meta(_) | Self::Blob(_))
    }

    /// What the operator's log gets beyond the message (never the client).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Unavailable(why) | Self::StoreUnavailable(why) => Some(why.clone()),
            Self::Meta(_) | Self::Blob(_) => Some(self.to_string()),
            _ => None,
        }
    }

    /// The seconds a client should wait before it retries, when the answer
    /// says so (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable(_) | Self::StoreUnavailable(_) => Some(1),
            _ => None,
        }
    }
}

impl BadRequest {
    /// The problem's code, message and suggestion: the table of bad requests.
    pub fn describe(&self) -> Vec<(ErrorCode, String, String)> {
        use ErrorCode as C;
        let one = |code, message: String, suggestion: &str| vec![(code, message, suggestion.to_owned())];
        match self {
            Self::MissingField(field) => {
                one(C::MissingParameter, format!("`{field}` is required"), "Add the field to the request body.")
            }
            Self::InvalidField { field, reason } => one(
                C::InvalidParameter,
                if field.is_empty() { reason.clone() } else { format!("`{field}`: {reason}") },
                "Fix the field's value and send the request again.",
            ),
            Self::Cursor { field, reason } => one(
                C::InvalidParameter,
                format!("`{field}` {reason}"),
                "Pass a page's `next_cursor` as `after`, or its `prev_cursor` as `before`, exactly as this \
                 organization's listing gave it; leave both out to start from the newest files.",
            ),
            Self::FileName(e) => one(
                C::InvalidParameter,
                format!("invalid filename: {e}"),
                "Use 1 to 255 bytes of UTF-8 without `/`, `\\` or control characters, and not `.` or `..`.",
            ),
            Self::FileType { given, allowed } => vec![(
                C::InvalidFileType,
                format!("file_type `{given}` is not accepted"),
                format!("Use one of: {}.", allowed.join(", ")),
            )],
            Self::FileSize { given, max } => one(
                C::InvalidFileSize,
                format!("num_bytes {given} is out of range (1 <= num_bytes <= {max})"),
                "Send the file's exact size in bytes; files larger than the limit cannot be uploaded.",
            ),
            Self::PartNumbers { bad, upload_id, num_parts } => bad
                .iter()
                .map(|n| {
                    (
                        C::InvalidPartNumber,
                        format!(
                            "part_number {n} is out of range for upload {upload_id} (0 <= part_number < {num_parts})"
                        ),
                        format!("Request part numbers between 0 and {}.", num_parts.saturating_sub(1)),
                    )
                })
                .collect(),
            Self::PartTokens(parts) => one(
                C::InvalidPartToken,
                format!("the part_token of part(s) {} is not the token of the uploaded bytes", ranges(parts)),
                "Send the ETag of the part's last successful PUT, quotes included; upload the part again if unsure.",
            ),
            Self::MissingParts(parts) => one(
                C::MissingParts,
                format!("part(s) {} have no valid token from this request or a checkpoint", ranges(parts)),
                "Upload the missing parts (ask for fresh URLs if needed), then complete with their tokens.",
            ),
            Self::IntegrityNotSupported(reason) => one(
                C::IntegrityNotSupported,
                format!("integrity_checksum cannot be checked: {reason}"),
                "Send base64 of the 4-byte big-endian CRC32C of the whole file (8 characters), or omit it.",
            ),
        }
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

/// Turns refused token claims, plus part numbers that could not even be
/// claimed (negative or huge), into the request's problems.
pub(crate) fn claim_problems(problems: ClaimProblems, unclaimable: Vec<i64>, upload: &UploadRecord) -> ServiceError {
    let (upload_id, num_parts) = (upload.upload_id, upload.plan().num_parts);
    let mut list = Vec::new();
    let bad: Vec<i64> = unclaimable.into_iter().chain(problems.out_of_range.into_iter().map(i64::from)).collect();
    if !bad.is_empty() {
        list.push(BadRequest::PartNumbers { bad, upload_id, num_parts });
    }
    if !problems.invalid_tokens.is_empty() {
        list.push(BadRequest::PartTokens(problems.invalid_tokens));
    }
    if !problems.missing.is_empty() {
        list.push(BadRequest::MissingParts(problems.missing));
    }
    ServiceError::BadRequest(list)
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::UploadNotFound(id) | MetaError::UploadNotActive(id, UploadState::Aborted) => {
                Self::UploadNotFound(id)
            }
            MetaError::UploadNotActive(id, _) => Self::UploadCompleted(id),
            MetaError::QuotaExceeded { quota, used } => Self::QuotaExceeded { quota, used },
            MetaError::StorageFull => Self::CapacityReached,
            MetaError::GuardLost => Self::UploadTooSlow,
            MetaError::Unavailable(why) => Self::Unavailable(why),
            other => Self::Meta(other),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::CapacityReached => Self::CapacityReached,
            BlobError::Unavailable(why) => Self::StoreUnavailable(why),
            BlobError::Source(SourceError::TooLarge { limit }) | BlobError::TooLong { expected: limit } => {
                Self::FileTooLarge { limit }
            }
            BlobError::Source(SourceError::Invalid(reason)) => {
                Self::BadRequest(vec![BadRequest::InvalidField { field: "file".into(), reason }])
            }
            BlobError::Source(SourceError::BrokeOff(why)) => Self::BodyBrokeOff(why),
            other => Self::Blob(other),
        }
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
