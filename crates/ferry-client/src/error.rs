//! What can go wrong, and whether trying again can help.

use std::path::PathBuf;
use std::time::Duration;

use ferry_api::{ErrorCode, ErrorEntry};

/// Each variant's message says its cause once: none of them is also a
/// `source()`, so printing the chain never repeats a line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with the contract's error envelope.
    #[error("{}", describe(.errors, *.status))]
    Api { status: u16, errors: Vec<ErrorEntry>, retry_after: Option<Duration> },
    /// The server answered something that is not the contract's.
    #[error("unexpected answer {status} from the server: {body}")]
    Unexpected { status: u16, body: String },
    /// The request never got an answer (connection refused or reset, a
    /// timeout, a name that does not resolve, a certificate refused).
    #[error("{}", Transport::of(.0))]
    Transport(reqwest::Error),
    #[error("{}: {}", path.display(), io_reason(error))]
    Io { path: PathBuf, error: std::io::Error },
    #[error("the downloaded bytes do not match the file's checksum (expected {expected}, got {actual})")]
    Integrity { expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(error: reqwest::Error) -> Self {
        // Part URLs carry their signature: never into a message.
        Self::Transport(error.without_url())
    }
}

/// An I/O error in words.
fn io_reason(error: &std::io::Error) -> String {
    without_os_error(error.to_string())
}

/// A message without Rust's " (os error N)", which means nothing to a person.
fn without_os_error(mut text: String) -> String {
    if let Some(at) = text.find(" (os error") {
        text.truncate(at);
    }
    text
}

/// Why a request got no answer, in the terms a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The host name does not resolve (a typo in the URL, say): trying
    /// again will not help.
    UnknownHost(String),
    /// Resolving the name failed for now (no network, a DNS server down).
    DnsUnavailable(String),
    /// TLS failed: most often the server's certificate is not trusted.
    Tls(String),
    /// No connection could be made (refused, unreachable).
    Connect(String),
    /// The connection went quiet past the timeout.
    Timeout,
    /// The connection broke while the request or answer was under way.
    Broken(String),
}

impl Transport {
    pub fn of(error: &reqwest::Error) -> Self {
        // The innermost causes say what happened; the outer ones only that
        // a request was being sent.
        let mut causes = Vec::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        let innermost = without_os_error(causes.last().cloned().unwrap_or_else(|| error.to_string()));
        let any = |needle: &str| causes.iter().any(|c| c.contains(needle));
        if any("dns error") || any("failed to lookup address") {
            // getaddrinfo's EAI_AGAIN: the name may resolve later.
            if any("Temporary failure") || any("try again") {
                Self::DnsUnavailable(innermost)
            } else {
                Self::UnknownHost(innermost)
            }
        } else if causes.iter().any(|c| c.contains("certificate") || c.contains("tls") || c.contains("TLS"))
            || error_chain_has::<rustls::Error>(error)
        {
            Self::Tls(innermost)
        } else if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect(innermost)
        } else {
            Self::Broken(innermost)
        }
    }

    /// Whether trying the same request again may work.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::UnknownHost(_) | Self::Tls(_))
    }
}

fn error_chain_has<E: std::error::Error + 'static>(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<E>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownHost(why) => write!(f, "the server's host name does not resolve ({why})"),
            Self::DnsUnavailable(why) => write!(f, "the server's host name cannot be resolved now ({why})"),
            Self::Tls(why) => write!(f, "the TLS connection to the server failed: {why}"),
            Self::Connect(why) => write!(f, "could not connect to the server: {why}"),
            Self::Timeout => write!(f, "the server stopped answering (timed out)"),
            Self::Broken(why) => write!(f, "the connection to the server broke: {why}"),
        }
    }
}

fn describe(errors: &[ErrorEntry], status: u16) -> String {
    let parts: Vec<String> =
        errors.iter().map(|e| format!("{} ({} {}, {})", e.message, status, e.code.as_str(), e.error_uid)).collect();
    parts.join("; ")
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io { path, error }
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
            Self::Transport(e) => !e.is_builder() && !e.is_redirect() && Transport::of(e).is_transient(),
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
