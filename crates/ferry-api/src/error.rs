//! The error envelope and the stable error codes (spec §2). Each code knows
//! its HTTP status, so the status of an error is never chosen twice.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    pub errors: Vec<ErrorEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEntry {
    pub code: ErrorCode,
    pub message: String,
    pub suggestion: String,
    pub error_uid: String,
}

/// A stable error code. Each knows its wire name and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MissingParameter,
    InvalidParameter,
    InvalidFileType,
    /// `num_bytes` out of range (400).
    InvalidFileSize,
    /// A body over the size limit (413; same wire name as `InvalidFileSize`).
    FileTooLarge,
    InvalidPartNumber,
    InvalidPartToken,
    MissingParts,
    InvalidPartSize,
    IntegrityCheckFailed,
    IntegrityNotSupported,
    FileNotDownloadable,
    InvalidApiKey,
    InvalidSignature,
    UrlExpired,
    UploadNotFound,
    FileNotFound,
    /// No route has this path (outside the contract's table, which covers
    /// only routes that exist).
    RouteNotFound,
    /// The path exists but not with this method (also outside the table).
    MethodNotAllowed,
    /// A `Range` no byte of the file satisfies (also outside the table).
    RangeNotSatisfiable,
    /// A request target longer than the server's limit (outside the table).
    UrlTooLong,
    /// More header lines or bytes than the server's limit (outside the table).
    HeadersTooLarge,
    UploadCompleted,
    UploadConflict,
    PartUploadInProgress,
    RateLimited,
    CapacityReached,
    /// The server cannot serve this now; retrying later will (outside the
    /// contract's table, which lists no 503).
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    const ALL: [ErrorCode; 29] = {
        use ErrorCode::*;
        [
            MissingParameter,
            InvalidParameter,
            InvalidFileType,
            InvalidFileSize,
            FileTooLarge,
            InvalidPartNumber,
            InvalidPartToken,
            MissingParts,
            InvalidPartSize,
            IntegrityCheckFailed,
            IntegrityNotSupported,
            FileNotDownloadable,
            InvalidApiKey,
            InvalidSignature,
            UrlExpired,
            UploadNotFound,
            FileNotFound,
            RouteNotFound,
            MethodNotAllowed,
            RangeNotSatisfiable,
            UrlTooLong,
            HeadersTooLarge,
            UploadCompleted,
            UploadConflict,
            PartUploadInProgress,
            RateLimited,
            CapacityReached,
            ServiceUnavailable,
            InternalError,
        ]
    };

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MissingParameter => "missing_parameter",
            InvalidParameter => "invalid_parameter",
            InvalidFileType => "invalid_file_type",
            InvalidFileSize | FileTooLarge => "invalid_file_size",
            InvalidPartNumber => "invalid_part_number",
            InvalidPartToken => "invalid_part_token",
            MissingParts => "missing_parts",
            InvalidPartSize => "invalid_part_size",
            IntegrityCheckFailed => "integrity_check_failed",
            IntegrityNotSupported => "integrity_not_supported",
            FileNotDownloadable => "file_not_downloadable",
            InvalidApiKey => "invalid_api_key",
            InvalidSignature => "invalid_signature",
            UrlExpired => "url_expired",
            UploadNotFound => "upload_not_found",
            FileNotFound => "file_not_found",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            RangeNotSatisfiable => "range_not_satisfiable",
            UrlTooLong => "url_too_long",
            HeadersTooLarge => "headers_too_large",
            UploadCompleted => "upload_completed",
            UploadConflict => "upload_conflict",
            PartUploadInProgress => "part_upload_in_progress",
            RateLimited => "rate_limited",
            CapacityReached => "capacity_reached",
            ServiceUnavailable => "service_unavailable",
            InternalError => "internal_error",
        }
    }

    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            MissingParameter
            | InvalidParameter
            | InvalidFileType
            | InvalidFileSize
            | InvalidPartNumber
            | InvalidPartToken
            | MissingParts
            | InvalidPartSize
            | IntegrityCheckFailed
            | IntegrityNotSupported
            | FileNotDownloadable => 400,
            InvalidApiKey => 401,
            InvalidSignature | UrlExpired => 403,
            UploadNotFound | FileNotFound | RouteNotFound => 404,
            MethodNotAllowed => 405,
            UploadCompleted | UploadConflict | PartUploadInProgress => 409,
            FileTooLarge => 413,
            RangeNotSatisfiable => 416,
            UrlTooLong => 414,
            HeadersTooLarge => 431,
            RateLimited => 429,
            CapacityReached => 507,
            ServiceUnavailable => 503,
            InternalError => 500,
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    /// `invalid_file_size` reads back as [`ErrorCode::InvalidFileSize`]; the
    /// status tells the two apart where it matters.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{text}`")))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut codes: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
        codes.dedup();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A stable error code; see the contract's table for when each is used."))
            .enum_values(Some(codes))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_both_size_errors_share_one_name() {
        assert_eq!(ErrorCode::InvalidPartNumber.as_str(), "invalid_part_number");
        assert_eq!(ErrorCode::FileTooLarge.as_str(), "invalid_file_size");
        assert_eq!((ErrorCode::FileTooLarge.status(), ErrorCode::InvalidFileSize.status()), (413, 400));
        assert_eq!(ErrorCode::CapacityReached.status(), 507);
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back.as_str(), code.as_str());
        }
    }
}
