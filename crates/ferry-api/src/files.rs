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

/// The query of `GET /files/metadata`, in either of its two forms
/// (files-api §4.3): any shard field present asks for a shard, as the
/// older clients do; otherwise it asks for a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListFilesQuery {
    /// Files in a page: 1 to 1,000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// A page's `next_cursor`: continue to older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A page's `prev_cursor`: step back to newer files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// -1 (the default) is the first shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_index: Option<i64>,
    /// 1 to 1,000; -1 (the default) is 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items_per_shard: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
}

impl ListFilesQuery {
    /// The most files a page or a shard holds.
    pub const MAX_ITEMS: i64 = 1000;
    pub const DEFAULT_LIMIT: i64 = 100;

    /// Whether this asks for the older clients' shard form.
    pub fn is_shard(&self) -> bool {
        self.shard_index.is_some() || self.max_items_per_shard.is_some()
    }
}

/// A page of the listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FilesPage {
    pub data: Vec<FileMetadata>,
    /// Whether there are more files the way this page was walked (older
    /// ones, or newer ones for a page asked `before` a cursor).
    pub has_more: bool,
    /// Older files follow with `after` = this; `null` when there are none.
    pub next_cursor: Option<String>,
    /// Newer files come back with `before` = this; `null` when there are none.
    pub prev_cursor: Option<String>,
}

/// The answer of `GET /files/metadata`: a page, or a shard's JSON array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum FileList {
    Page(FilesPage),
    Shard(Vec<FileMetadata>),
}
