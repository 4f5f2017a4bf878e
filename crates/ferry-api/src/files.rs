//! Bodies of the file routes (files-api §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What was extracted from a file's content, and whether it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileAttributes {
    pub metadata_status: MetadataStatus,
    #[serde(flatten)]
    pub content: ContentAttributes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetadataStatus {
    NotExtracted,
    Extracted,
    Failed,
}

/// Attributes by type: images `width`, `height`, `num_channels`; CSV
/// `num_rows`, `num_columns`, `column_headers`; JSONL `num_rows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContentAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_channels: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_columns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_headers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FileStatus {
    #[serde(rename = "FILE_STATUS_REGISTERED")]
    Registered,
    #[serde(rename = "FILE_STATUS_INGESTING")]
    Ingesting,
    #[serde(rename = "FILE_STATUS_INGESTED")]
    Ingested,
    #[serde(rename = "FILE_STATUS_CORRUPT")]
    Corrupt,
}

/// One file's record (files-api §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileMetadata {
    pub file_id: String,
    pub file_uid: String,
    pub is_valid: bool,
    pub file_type: String,
    pub num_bytes: u64,
    pub file_status: FileStatus,
    pub ingested: bool,
    pub file_index: u64,
    pub file_tags: BTreeMap<String, String>,
    /// RFC 3339 UTC, with a `Z`.
    pub created_at: String,
    /// Base64 of the 4-byte big-endian CRC32C of the whole file. `null`
    /// until computed, for a file whose parts went straight to an
    /// S3-compatible store (it is known once the file is ingested).
    pub checksum_crc32c: Option<String>,
    pub file_attributes: FileAttributes,
}

/// The answer of a simple upload and of a delete: which file it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileIdentity {
    pub is_valid: bool,
    pub file_id: String,
    pub file_uid: String,
}

/// An org's totals (files-api §4.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilesInfo {
    pub num_files: u64,
    pub num_bytes: u64,
    pub num_ingested: u64,
    /// Unix time, in seconds, of the last registration, ingestion or deletion.
    pub last_updated: f64,
}

/// The query of `GET /files/metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListFilesQuery {
    /// -1 (the default) starts from the first record, like shard 0.
    #[serde(default = "ListFilesQuery::from_the_start")]
    pub shard_index: i64,
    #[serde(default = "ListFilesQuery::max_items")]
    pub max_items_per_shard: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
}

impl ListFilesQuery {
    pub const MAX_ITEMS: i64 = 1000;

    fn from_the_start() -> i64 {
        -1
    }

    fn max_items() -> i64 {
        Self::MAX_ITEMS
    }
}
