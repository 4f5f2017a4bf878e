//! The blob store: where file bytes live.
//!
//! [`BlobStore`] is what the server needs from any store: files' bytes and
//! the storage of uploads in progress. Who takes an upload's parts differs,
//! and each store says it in methods of its own: [`LocalDisk`] takes part
//! PUTs itself (claims, a seal for complete); with [`S3`] clients PUT parts
//! to the store's presigned URLs and the store keeps their record. The blob
//! store never sees a request or an org: it is handed typed ids, and every
//! path it touches is derived from them.

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::PartDigest;
use ferry_core::ids::{FileUid, UploadId};
use futures_core::Stream;

pub mod local;
pub mod s3;

pub use local::{LocalDisk, PartClaim, PartWriter, Seal};
pub use s3::{S3, S3Config};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("another PUT of this part is still streaming")]
    PartInProgress,
    #[error("the upload is being completed")]
    UploadSealed,
    #[error("the upload's bytes are gone (completed or aborted)")]
    UploadGone,
    #[error("the body is longer than the part's {expected} bytes")]
    TooLong { expected: u64 },
    #[error("the body ended after {received} of the part's {expected} bytes")]
    TooShort { received: u64, expected: u64 },
    #[error("the store is out of space")]
    CapacityReached,
    #[error("no such blob")]
    NotFound,
    /// The store refused the parts given to complete (a wrong or missing token).
    #[error("the store refused the parts: {0}")]
    InvalidParts(String),
    /// The store answered something unexpected.
    #[error("the store failed: {0}")]
    Store(String),
    /// The store is busy or cannot be reached, and retrying did not help
    /// in time: the request may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("blob store I/O failure: {0}")]
    Io(#[from] std::io::Error),
    /// The stream of bytes to store failed; nothing is kept.
    #[error("the bytes to store could not be read: {0}")]
    Source(SourceError),
}

/// Why a stream of bytes to store ([`ByteSource`]) stopped, as its
/// producer says: the store passes it on unchanged.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the bytes are more than the {limit} allowed")]
    TooLarge { limit: u64 },
    /// The bytes as sent cannot be read (base64 that does not decode).
    #[error("{0}")]
    Invalid(String),
    #[error("the body broke off: {0}")]
    BrokeOff(String),
}

impl BlobError {
    /// Classifies an I/O error, singling out a full disk or quota.
    pub fn from_io(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Self::CapacityReached,
            ErrorKind::NotFound => Self::NotFound,
            _ => Self::Io(e),
        }
    }
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A file's bytes as they stream out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Bytes to store, as they arrive.
pub type ByteSource<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, SourceError>> + Send + 'a>>;

/// What a blob store holds, for a consistency check.
#[derive(Debug, Clone, Default)]
pub struct BlobInventory {
    /// Whole files, with their sizes.
    pub files: Vec<(FileUid, u64)>,
    /// Uploads in progress named by their upload (local staging files).
    pub uploads: Vec<UploadId>,
    /// Uploads in progress named by the file they become: S3 multipart
    /// uploads, and simple uploads being written on the local disk.
    pub uploads_of_files: Vec<FileUid>,
    /// Names that are none of ferry's.
    pub strangers: Vec<String>,
}

/// An upload as the blob store knows it.
#[derive(Debug, Clone, Copy)]
pub struct StoreUpload<'a> {
    pub upload_id: UploadId,
    /// The file the upload becomes.
    pub file_uid: FileUid,
    /// The store's own id of the upload (an S3 multipart upload id).
    pub store_upload_id: Option<&'a str>,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Whether the store can be reached (for health checks).
    async fn check(&self) -> Result<()>;

    /// Prepares storage for a new upload of `num_bytes`. Returns the
    /// store's own id of the upload, if it has one.
    async fn create_upload(&self, upload_id: &UploadId, file_uid: &FileUid, num_bytes: u64) -> Result<Option<String>>;

    /// Stores a whole file of at most `max_len` bytes from a stream. The
    /// file exists under `file_uid` only once all its bytes are durable; on
    /// any failure nothing is left under that name.
    async fn write_file(&self, file_uid: &FileUid, max_len: u64, bytes: ByteSource<'_>) -> Result<PartDigest>;

    /// Frees an upload's storage, including a file it may have become if a
    /// complete got this far but was never committed.
    async fn abort_upload(&self, upload: StoreUpload<'_>) -> Result<()>;

    /// Deletes what a deletion-queue key names. Deleting what is already
    /// gone succeeds.
    async fn delete(&self, key: &BlobKey) -> Result<()>;

    /// The size of file `file_uid`, or `None` if the store has no such file.
    async fn file_size(&self, file_uid: &FileUid) -> Result<Option<u64>>;

    /// Streams bytes `range` of file `file_uid`.
    async fn read(&self, file_uid: &FileUid, range: Range<u64>) -> Result<ByteStream>;

    /// Everything the store holds (for `ferry admin check`; it lists all).
    async fn inventory(&self) -> Result<BlobInventory>;
}
