//! What can go wrong, and whether trying again can help.

use std::path::PathBuf;
use std::time::Duration;

use ferry_api::{ErrorCode, ErrorEntry};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with the contract's error envelope.
    #[error("{}", describe(.errors, *.status))]
    Api { status: u16, errors: Vec<ErrorEntry>, retry_after: Option<Duration> },
    /// The server answered something that is not the contract's.
    #[error("unexpected answer {status} from the server: {body}")]
    Unexpected { status: u16, body: String },
    /// The request never got an answer (connection refused or reset, timeout).
    #[error("could not reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the downloaded bytes do not match the file's checksum (expected {expected}, got {actual})")]
    Integrity { expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
}

fn describe(errors: &[ErrorEntry], status: u16) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{} ({}): {} {} [{}]", e.code.as_str(), status, e.message, e.suggestion, e.error_uid))
        .collect();
    parts.join("; ")
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// The first error code of an envelope, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { errors, .. } => errors.first().map(|e| e.code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: the network failed, or
    /// the server said so (408, 429, 5xx, and `part_upload_in_progress`: a
    /// PUT and a complete of one upload met, and the one that waits goes
    /// through once the other is done). Everything else needs a change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => !e.is_builder() && !e.is_redirect(),
            Self::Api { .. } if self.code() == Some(ErrorCode::PartUploadInProgress) => true,
            Self::Api { status, .. } | Self::Unexpected { status, .. } => {
                matches!(status, 408 | 429) || (500..600).contains(status)
            }
            _ => false,
        }
    }

    /// Whether a part URL expired: ferry's `url_expired`, or an S3-compatible
    /// store's own refusal of an expired presigned URL, in its own words:
    /// AWS answers 403 "Request has expired", Garage 400 "Date is too old".
    pub fn is_url_expired(&self) -> bool {
        match self {
            Self::Api { .. } => self.code() == Some(ErrorCode::UrlExpired),
            Self::Unexpected { status: 400 | 403, body } => {
                body.contains("Request has expired") || body.contains("Date is too old")
            }
            _ => false,
        }
    }

    /// How long the server asked us to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: ErrorCode) -> ClientError {
        let entry = ErrorEntry { code, message: "m".into(), suggestion: "s".into(), error_uid: "err-1".into() };
        ClientError::Api { status, errors: vec![entry], retry_after: None }
    }

    #[test]
    fn a_part_put_and_a_complete_that_met_are_retried_other_conflicts_are_not() {
        assert!(api(409, ErrorCode::PartUploadInProgress).is_retryable());
        assert!(api(503, ErrorCode::ServiceUnavailable).is_retryable());
        assert!(!api(409, ErrorCode::UploadCompleted).is_retryable());
        assert!(!api(400, ErrorCode::InvalidPartToken).is_retryable());
    }
}
