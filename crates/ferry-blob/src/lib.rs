//! The blob store: where file bytes live.
//!
//! [`BlobStore`] is what the server needs from any store; [`LocalDisk`]
//! implements it on the data dir and also takes part PUTs itself (with an
//! S3-compatible store, clients PUT parts to the store directly). The blob
//! store never sees a request or an org: it is handed typed ids, and every
//! path it touches is derived from them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::PartDigest;
use ferry_core::ids::{FileUid, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::RecordedPart;
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
    /// The stream of bytes to store failed (the client's body broke off).
    #[error("the bytes to store could not be read: {0}")]
    Source(std::io::Error),
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
pub type ByteSource<'a> = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'a>>;

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

    /// Whether `complete` can verify a whole-file CRC32C for this store.
    fn verifies_crc32c(&self) -> bool;

    /// Prepares storage for a new upload of `num_bytes`. Returns the
    /// store's own id of the upload, if it has one.
    async fn create_upload(&self, upload_id: &UploadId, file_uid: &FileUid, num_bytes: u64) -> Result<Option<String>>;

    /// A presigned URL at which clients PUT a part straight into the store,
    /// valid until `expires` (Unix seconds); `None` when ferry takes part
    /// PUTs itself.
    fn part_url(&self, upload: StoreUpload<'_>, part_number: u32, expires: u64) -> Option<String>;

    /// The parts the store holds, when it keeps its own record of them (S3
    /// ListParts); `None` when ferry records parts itself.
    async fn stored_parts(&self, upload: StoreUpload<'_>) -> Result<Option<BTreeMap<u32, RecordedPart>>>;

    /// Turns an upload's parts, in order with their tokens, into the file.
    /// Idempotent: after a crash between this and the metadata commit,
    /// calling it again is safe.
    async fn complete_upload(&self, upload: StoreUpload<'_>, parts: &BTreeMap<u32, PartToken>) -> Result<()>;

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
