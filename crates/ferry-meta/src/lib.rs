//! The metadata store: orgs, API keys, uploads and their parts, files, and
//! the queue of blobs to delete.
//!
//! The server sees it through four traits, one per role ([`Orgs`],
//! [`Uploads`], [`Files`], [`Deletions`]), together [`MetadataStore`]. They
//! are implemented once, in `store.rs`, as flows over an [`Engine`]: SQLite
//! (the embedded default) or PostgreSQL (scale-out). Both pass the one
//! conformance suite in `tests/conformance.rs`.
//!
//! Rules every flow keeps:
//! - every query that serves an API request takes the org id, so one org
//!   can never see another's rows (the presigned part PUT is the exception:
//!   its URL, not an org, authorizes it);
//! - races resolve inside one transaction (a conditional update, a unique
//!   index, a row lock), never in process memory, so several servers may
//!   share a store;
//! - a blob whose bytes are no longer referenced is queued for deletion in
//!   the same transaction that stops referencing it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{FileUid, KeyId, OrgId, UploadId};
use ferry_core::plan::PartPlan;
use ferry_core::token::PartToken;
use ferry_core::upload::{ClaimProblems, RecordedPart, TokenClaim, UploadState};

pub mod engine;
pub mod events;
mod postgres;
mod sqlite;
mod store;

pub use engine::{Access, Engine, Observer, Timed};
pub use postgres::Postgres;
pub use sqlite::Sqlite;
pub use store::Store;

/// Unix time in seconds, as every timestamp in the store is kept.
pub type UnixSeconds = i64;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("upload `{0}` not found")]
    UploadNotFound(UploadId),
    #[error("upload `{0}` is {state}", state = .1.as_str())]
    UploadNotActive(UploadId, UploadState),
    /// A part's record changed after the complete checked it: the commit
    /// was refused and nothing changed.
    #[error("a part of the upload changed after the complete checked it")]
    PartsChanged,
    #[error("an org named `{0}` already exists")]
    OrgExists(String),
    #[error("no org is named `{0}`")]
    OrgNotFound(String),
    /// A unique constraint refused a row (the flows turn it into what it
    /// means: an org that exists, a bootstrap done by another node).
    #[error("the row exists already: {0}")]
    Duplicate(String),
    /// A flow found nothing to change and rolled its transaction back (it
    /// turns this into its own answer; no method of the store returns it).
    #[error("nothing to change")]
    NothingChanged,
    #[error("the org's quota of {quota} bytes would be exceeded ({used} bytes in use)")]
    QuotaExceeded { quota: u64, used: u64 },
    #[error("the metadata store's disk is full")]
    StorageFull,
    /// Bytes written ahead of their row outlived their guard (the orphan
    /// grace) and a janitor took them: the row was not written.
    #[error("the bytes took longer to arrive than the orphan grace, and were deleted")]
    GuardLost,
    /// The store cannot be reached now (a lost connection, a restart).
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    #[error("metadata store failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub created_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub secret_hash: Vec<u8>,
    pub created_at: UnixSeconds,
    pub revoked_at: Option<UnixSeconds>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub upload_id: UploadId,
    pub org_id: OrgId,
    /// The uid the file will have once the upload completes.
    pub file_uid: FileUid,
    pub file_name: String,
    pub file_type: String,
    pub num_bytes: u64,
    pub part_size: u64,
    pub state: UploadState,
    pub created_at: UnixSeconds,
    pub last_activity_at: UnixSeconds,
    /// The blob store's own id of the upload (an S3 multipart upload id).
    pub store_upload_id: Option<String>,
}

impl UploadRecord {
    pub fn plan(&self) -> PartPlan {
        PartPlan::from_stored(self.num_bytes, self.part_size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file_uid: FileUid,
    pub org_id: OrgId,
    pub file_name: String,
    pub file_type: String,
    pub num_bytes: u64,
    pub status: FileStatus,
    /// Unknown until computed when the bytes never passed through ferry
    /// (parts sent straight to an S3-compatible store).
    pub checksum_crc32c: Option<Crc32c>,
    /// Position in the org's listing; assigned at registration.
    pub file_index: u64,
    pub created_at: UnixSeconds,
    pub metadata_status: MetadataStatus,
    /// The extracted attributes as JSON text, opaque to the store.
    pub attributes: Option<String>,
}

/// A file stored without an upload (a simple upload), ready to register.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub file_uid: FileUid,
    pub org_id: OrgId,
    pub file_name: String,
    pub file_type: String,
    pub num_bytes: u64,
    pub checksum_crc32c: Option<Crc32c>,
}

/// Everything that should have bytes, for a consistency check.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Files that hold a name, with their sizes: their bytes must exist.
    pub named_files: Vec<(FileUid, u64)>,
    /// Every other file uid the store knows (replaced, deleted, corrupt
    /// without a name): their bytes may linger until the janitor deletes them.
    pub other_files: Vec<FileUid>,
    /// Uploads in progress: their storage must exist.
    pub active_uploads: Vec<UploadRecord>,
    /// What the deletion queue will delete.
    pub queued: Vec<BlobKey>,
}

/// An org's totals over the files that hold names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStats {
    pub num_files: u64,
    pub num_bytes: u64,
    pub num_ingested: u64,
    /// When a file was last registered, ingested or deleted.
    pub last_updated: UnixSeconds,
}

/// Where a page of the listing starts. Positions are `file_index` bounds,
/// not files, so a position stays meaningful when its file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListPosition {
    /// The newest files.
    Newest,
    /// Files older than this bound (smaller `file_index`), newest first.
    OlderThan(i64),
    /// The files just newer than this bound (larger `file_index`).
    NewerThan(i64),
}

/// A page of the listing, newest first, and the bounds that continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    pub files: Vec<FileRecord>,
    /// `ListPosition::OlderThan` this continues to older files; `None`
    /// when there are none.
    pub older: Option<i64>,
    /// `ListPosition::NewerThan` this steps back to newer files; `None`
    /// when there are none.
    pub newer: Option<i64>,
}

/// What completing an upload registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub org_id: OrgId,
    pub upload_id: UploadId,
    pub status: FileStatus,
    pub checksum_crc32c: Option<Crc32c>,
    /// The part tokens the complete checked, when this store keeps the part
    /// records (ferry takes the parts): the commit happens only if the
    /// records are still exactly these, else [`MetaError::PartsChanged`].
    pub verified_parts: Option<BTreeMap<u32, PartToken>>,
    /// Whether a complete waits for this registration's outcome. One that
    /// does, finding the upload committed by a request that answered no
    /// complete, takes that registration as its own (once per upload).
    pub answers_a_complete: bool,
    pub now: UnixSeconds,
    /// Blob keys of files this registration displaces are queued for
    /// deletion no earlier than this, so downloads already under way finish.
    pub delete_displaced_after: UnixSeconds,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub file: FileRecord,
    /// Whether the file took its name. A corrupt file never displaces a
    /// good one: it is recorded, but the name keeps pointing at the old file.
    pub holds_name: bool,
    /// The file that held the name before, now queued for deletion.
    pub displaced: Option<FileUid>,
}

/// What an abort found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOutcome {
    /// The upload was active and is now aborted; its blob is queued for
    /// deletion as this entry of the deletion queue.
    Aborted { deletion: BlobDeletionId },
    /// It had been aborted (or expired) already.
    AlreadyAborted,
}

/// An entry of the durable queue of blobs to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobDeletionId(pub i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDeletion {
    pub id: BlobDeletionId,
    pub blob_key: BlobKey,
}

/// Orgs and their API keys.
#[async_trait]
pub trait Orgs: Send + Sync {
    async fn create_org(&self, name: &str, now: UnixSeconds) -> Result<OrgRecord>;
    async fn find_org(&self, name: &str) -> Result<Option<OrgRecord>>;
    /// Creates org `org_name` with one key, but only if the store has no org
    /// at all. Returns whether it did. Atomic, so two servers starting on one
    /// empty store bootstrap once.
    async fn bootstrap(&self, org_name: &str, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<bool>;
    async fn create_api_key(&self, org_id: &OrgId, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<()>;
    async fn find_api_key(&self, key_id: &KeyId) -> Result<Option<ApiKeyRecord>>;
    async fn list_api_keys(&self, org_id: &OrgId) -> Result<Vec<ApiKeyRecord>>;
    /// Returns whether a key with this id existed (revoking twice is fine).
    async fn revoke_api_key(&self, key_id: &KeyId, now: UnixSeconds) -> Result<bool>;
}

/// Uploads in progress and their parts, to their completion or abort.
#[async_trait]
pub trait Uploads: Send + Sync {
    /// Records a new upload whose storage exists, and removes the deletion
    /// queue entry `guard` that covered that storage until now. With a
    /// `quota`, refuses ([`MetaError::QuotaExceeded`]) if the org's files
    /// and uploads in progress would then take more bytes, atomically.
    async fn insert_upload(&self, upload: &UploadRecord, guard: BlobDeletionId, quota: Option<u64>) -> Result<()>;
    async fn get_upload(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<UploadRecord>>;
    /// For the presigned part PUT only: its URL, not an org, authorizes it.
    async fn get_upload_for_part_put(&self, upload_id: &UploadId) -> Result<Option<UploadRecord>>;
    /// The newest active upload of `file_name` in the org.
    async fn find_resumable_upload(&self, org_id: &OrgId, file_name: &str) -> Result<Option<UploadRecord>>;
    async fn touch_upload(&self, upload_id: &UploadId, now: UnixSeconds) -> Result<()>;
    async fn list_parts(&self, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>>;
    async fn list_checkpoints(&self, upload_id: &UploadId) -> Result<Vec<TokenClaim>>;
    /// Whether a part is recorded as uploaded.
    async fn has_part(&self, upload_id: &UploadId, part_number: u32) -> Result<bool>;
    /// Marks a part not uploaded: called, and committed, before its bytes
    /// are overwritten, so a rewrite cut short never leaves the old record
    /// describing new bytes.
    async fn forget_part(&self, upload_id: &UploadId, part_number: u32) -> Result<()>;
    /// Records a part whose bytes are durable; fails with
    /// [`MetaError::UploadNotActive`] or [`MetaError::UploadNotFound`] if the
    /// upload stopped being active meanwhile.
    async fn record_part(&self, upload_id: &UploadId, part: &RecordedPart, now: UnixSeconds) -> Result<()>;
    /// Records the claims as checkpoints if every one matches its part
    /// (all or nothing); otherwise reports them. The parts are the ones this
    /// store recorded, read in the same transaction, unless the blob store
    /// keeps its own record (`store_parts`, from an S3 ListParts).
    async fn checkpoint(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        claims: &[TokenClaim],
        store_parts: Option<&BTreeMap<u32, RecordedPart>>,
        now: UnixSeconds,
    ) -> Result<Result<usize, ClaimProblems>>;
    /// Completes an active upload and registers its file in one transaction.
    /// Of several racing calls exactly one succeeds; the others get
    /// [`MetaError::UploadNotActive`]. With `verified_parts`, refuses
    /// ([`MetaError::PartsChanged`]) unless the part records are those.
    async fn complete_upload(&self, registration: &Registration) -> Result<Registered>;
    /// The registration of a completed upload that was made without
    /// `answers_a_complete`, for the first complete to ask: `None` for the
    /// others, for uploads completed by a complete, and once the file has
    /// been deleted.
    async fn take_unanswered_complete(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<Registered>>;
    async fn abort_upload(&self, org_id: &OrgId, upload_id: &UploadId, now: UnixSeconds) -> Result<AbortOutcome>;
    /// Aborts active uploads idle since before `idle_before`, queueing
    /// their storage for deletion. Returns the ones it aborted.
    async fn expire_idle_uploads(
        &self,
        idle_before: UnixSeconds,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UploadId>>;
}

/// Registered files, their names, and the extraction of their attributes.
#[async_trait]
pub trait Files: Send + Sync {
    /// Registers a file stored without an upload, and removes the deletion
    /// queue entry `guard` that covered its bytes while they were written.
    /// With a `quota`, refuses as [`Uploads::insert_upload`] does.
    async fn register_file(
        &self,
        file: &NewFile,
        guard: BlobDeletionId,
        quota: Option<u64>,
        now: UnixSeconds,
        delete_displaced_after: UnixSeconds,
    ) -> Result<Registered>;
    /// The bytes an org's files and uploads in progress take.
    async fn org_usage(&self, org_id: &OrgId) -> Result<u64>;
    /// The file that holds `file_name` in the org.
    async fn get_file(&self, org_id: &OrgId, file_name: &str) -> Result<Option<FileRecord>>;
    /// The org's files that hold names, by ascending `file_index`,
    /// optionally of one type, from position `offset` (the older clients'
    /// shards).
    async fn list_files_shard(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<FileRecord>>;
    /// Up to `limit` of the org's files that hold names, newest first,
    /// optionally of one type, from a position in the listing. Each page
    /// is a seek on an index, whatever its position.
    async fn list_files_page(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        from: ListPosition,
        limit: u64,
    ) -> Result<FilePage>;
    /// The org's totals, from counters the registering and deleting
    /// transactions keep.
    async fn file_stats(&self, org_id: &OrgId) -> Result<FileStats>;
    /// Frees the name and queues the bytes for deletion no earlier than
    /// `delete_after`. Returns the file that held the name, if any.
    async fn delete_file(
        &self,
        org_id: &OrgId,
        file_name: &str,
        now: UnixSeconds,
        delete_after: UnixSeconds,
    ) -> Result<Option<FileRecord>>;
    /// Leases one just-registered file for extraction (the fast path, right
    /// after registration). `None` if it is taken, done or deleted.
    async fn claim_file_to_ingest(
        &self,
        file_uid: &FileUid,
        now: UnixSeconds,
        lease_secs: i64,
    ) -> Result<Option<FileRecord>>;
    /// Leases files waiting for extraction, or whose extractor's lease ran out.
    async fn claim_files_to_ingest(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<FileRecord>>;
    /// Records the outcome of an extraction, and the file's CRC32C if it
    /// was computed then; the file becomes ingested.
    async fn finish_ingest(
        &self,
        file_uid: &FileUid,
        metadata_status: MetadataStatus,
        attributes: Option<&str>,
        checksum_crc32c: Option<Crc32c>,
        now: UnixSeconds,
    ) -> Result<()>;
}

/// The durable queue of blobs to delete, and what a consistency check
/// compares with the stored bytes.
#[async_trait]
pub trait Deletions: Send + Sync {
    async fn enqueue_blob_deletion(&self, key: &BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId>;
    /// Leases due entries for `lease_secs`; an entry whose lease ran out
    /// (its janitor died) is due again.
    async fn claim_blob_deletions(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<BlobDeletion>>;
    async fn finish_blob_deletion(&self, id: BlobDeletionId) -> Result<()>;
    /// Every file, active upload and queued deletion, for a consistency check.
    async fn inventory(&self) -> Result<Inventory>;
}

/// Webhook endpoints, and the deliveries of the events the other flows
/// record (each in the transaction of the change it reports).
#[async_trait]
pub trait Webhooks: Send + Sync {
    async fn add_webhook(&self, endpoint: &events::WebhookEndpoint) -> Result<()>;
    /// The org's endpoints that are not removed, oldest first.
    async fn list_webhooks(&self, org_id: &OrgId) -> Result<Vec<events::WebhookEndpoint>>;
    /// Removes an endpoint and drops its deliveries not yet made; false if
    /// there was none.
    async fn remove_webhook(&self, endpoint_id: &ferry_core::ids::EndpointId, now: UnixSeconds) -> Result<bool>;
    /// Leases deliveries due at `now` until `now + lease`; one whose lease
    /// ran out (its worker died) is due again.
    async fn claim_deliveries(
        &self,
        now: events::UnixMillis,
        lease: events::UnixMillis,
        limit: usize,
    ) -> Result<Vec<events::Delivery>>;
    async fn finish_attempt(
        &self,
        event_id: &ferry_core::ids::EventId,
        endpoint_id: &ferry_core::ids::EndpointId,
        attempt: events::Attempt,
        now: events::UnixMillis,
    ) -> Result<()>;
    /// Makes an event's deliveries due again (delivered or given up on
    /// included); how many.
    async fn redeliver(&self, event_id: &ferry_core::ids::EventId, now: events::UnixMillis) -> Result<u64>;
    /// Deliveries given up on, newest first, of one org.
    async fn failed_deliveries(&self, org_id: &OrgId) -> Result<Vec<events::FailedDelivery>>;
    /// Forgets deliveries made before `before`, and events left with none
    /// (those given up on stay, for the operator).
    async fn prune_deliveries(&self, before: events::UnixMillis) -> Result<u64>;
}

/// The whole metadata store, as the server holds it.
#[async_trait]
pub trait MetadataStore: Orgs + Uploads + Files + Deletions + Webhooks {
    /// Whether the store answers at all (for health checks).
    async fn ping(&self) -> Result<()>;
    /// The work under way and waiting, for metrics.
    async fn workload(&self, now: UnixSeconds) -> Result<Workload>;
}

/// What is under way and what the janitor has yet to do, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Workload {
    pub active_uploads: u64,
    /// Blob deletions whose time has come and that no janitor holds.
    pub deletions_due: u64,
    /// Files whose attributes wait to be extracted (or whose extractor died).
    pub files_to_ingest: u64,
    /// Webhook deliveries not yet made (due or waiting for a retry).
    pub deliveries_pending: u64,
    /// Webhook deliveries given up on (kept until pruned).
    pub deliveries_failed: u64,
}
