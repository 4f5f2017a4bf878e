//! The error envelope and the stable error codes (files-api §2). Each code knows
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

/// Declares [`ErrorCode`] from its one table: variant, wire name, status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal, $status:literal;)*) => {
        /// A stable error code. Each knows its wire name and HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }

            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    MissingParameter = "missing_parameter", 400;
    InvalidParameter = "invalid_parameter", 400;
    InvalidFileType = "invalid_file_type", 400;
    /// `num_bytes` out of range.
    InvalidFileSize = "invalid_file_size", 400;
    /// A body over the size limit (the same wire name as `InvalidFileSize`).
    FileTooLarge = "invalid_file_size", 413;
    InvalidPartNumber = "invalid_part_number", 400;
    InvalidPartToken = "invalid_part_token", 400;
    MissingParts = "missing_parts", 400;
    InvalidPartSize = "invalid_part_size", 400;
    IntegrityCheckFailed = "integrity_check_failed", 400;
    IntegrityNotSupported = "integrity_not_supported", 400;
    FileNotDownloadable = "file_not_downloadable", 400;
    InvalidApiKey = "invalid_api_key", 401;
    InvalidSignature = "invalid_signature", 403;
    UrlExpired = "url_expired", 403;
    UploadNotFound = "upload_not_found", 404;
    FileNotFound = "file_not_found", 404;
    /// No route has this path (outside the contract's table, which covers
    /// only routes that exist).
    RouteNotFound = "route_not_found", 404;
    /// The path exists but not with this method (also outside the table).
    MethodNotAllowed = "method_not_allowed", 405;
    UploadCompleted = "upload_completed", 409;
    UploadConflict = "upload_conflict", 409;
    PartUploadInProgress = "part_upload_in_progress", 409;
    /// A request target longer than the server's limit (outside the table).
    UrlTooLong = "url_too_long", 414;
    /// A `Range` no byte of the file satisfies (outside the table).
    RangeNotSatisfiable = "range_not_satisfiable", 416;
    RateLimited = "rate_limited", 429;
    /// More header lines or bytes than the server's limit (outside the table).
    HeadersTooLarge = "headers_too_large", 431;
    InternalError = "internal_error", 500;
    /// The server cannot serve this now; retrying later will (outside the
    /// contract's table, which lists no 503).
    ServiceUnavailable = "service_unavailable", 503;
    CapacityReached = "capacity_reached", 507;
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
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{text}`")))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut codes: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
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
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back.as_str(), code.as_str());
        }
    }
}
