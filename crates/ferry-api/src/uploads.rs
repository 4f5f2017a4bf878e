//! Bodies of the direct-to-cloud upload routes (files-api §3).

use serde::{Deserialize, Serialize};

use crate::files::FileAttributes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InitiateUploadRequest {
    pub filename: String,
    pub file_type: String,
    pub num_bytes: i64,
    #[serde(default)]
    pub resume_if_started: bool,
}

/// Which whole-file checksum `complete` verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IntegrityAlgorithm {
    Crc32c,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InitiateUploadResponse {
    pub upload_id: String,
    pub file_uid: String,
    pub file_name: String,
    pub total_bytes: u64,
    pub num_parts: u32,
    pub part_size: u64,
    pub is_resume: bool,
    pub integrity_algorithm: IntegrityAlgorithm,
    pub parts: Vec<PartDescriptor>,
}

/// Where and until when to PUT one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartDescriptor {
    pub part_number: u32,
    pub url: String,
    pub offset: u64,
    pub length: u64,
    /// RFC 3339 UTC, with a `Z`.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrlsRequest {
    pub part_numbers: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrlsResponse {
    pub parts: Vec<PartDescriptor>,
}

/// A part and the token its PUT answered with (the `ETag`, quotes included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartTokenEntry {
    pub part_number: i64,
    pub part_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointRequest {
    pub parts: Vec<PartTokenEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointResponse {
    pub num_checkpointed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteUploadRequest {
    pub parts: Vec<PartTokenEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteUploadResponse {
    pub file_uid: String,
    pub file_name: String,
    pub num_bytes: u64,
    /// `Registered` (the contract spells it this way here).
    pub file_status: String,
    pub file_attributes: FileAttributes,
}
