//! What the API does, without HTTP: each public method is one operation of
//! the contract, on typed inputs, returning wire bodies or a [`ServiceError`].
//! The HTTP layer parses requests into calls here and maps every error to
//! the envelope in one place (`http/error.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_blob::{BlobError, BlobStore, LocalDisk};
use ferry_core::api_key::ApiKey;
use ferry_core::ids::OrgId;
use ferry_core::names::InvalidFileName;
use ferry_core::presign::PartUrlSigner;
use ferry_core::token::PartTokenKey;
use ferry_core::upload::{ClaimProblems, UploadPolicy, UploadState};
use ferry_meta::{MetaError, MetadataStore};

use crate::telemetry::Metrics;

pub mod check;
mod extract;
pub mod files;
pub mod janitor;
pub mod uploads;

pub use files::Download;
pub use janitor::{Extractor, JanitorReport};

/// Everything one operation may need. Cheap to share: all of it is behind
/// `Arc`s or immutable.
pub struct Service {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) blob: Arc<dyn BlobStore>,
    /// The store that takes part PUTs itself; `None` when parts go straight
    /// to an external store.
    pub(crate) local_parts: Option<Arc<LocalDisk>>,
    pub(crate) signer: PartUrlSigner,
    pub(crate) token_key: PartTokenKey,
    pub(crate) policy: UploadPolicy,
    pub(crate) settings: Settings,
    pub(crate) extractor: Extractor,
    pub(crate) metrics: Arc<Metrics>,
    /// Requests per second per API key, when the operator set a limit.
    pub(crate) rate_limiter: Option<RateLimiter>,
}

/// A per-key limit on API requests (never on presigned part PUTs, which
/// carry no key). Kept in each node's memory: with several nodes behind a
/// balancer a key gets up to the limit on each.
pub struct RateLimiter(governor::DefaultKeyedRateLimiter<ferry_core::ids::KeyId>);

impl RateLimiter {
    pub fn per_second(requests: u32) -> Option<Self> {
        let rate = std::num::NonZeroU32::new(requests)?;
        Some(Self(governor::RateLimiter::keyed(governor::Quota::per_second(rate))))
    }

    /// `Err(wait)` when the key is over its limit.
    fn check(&self, key: &ferry_core::ids::KeyId) -> std::result::Result<(), Duration> {
        use governor::clock::{Clock, DefaultClock};
        self.0.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys idle long enough to be back at their full allowance.
    pub(crate) fn forget_idle(&self) {
        self.0.retain_recent();
    }
}

/// The operator's settings the operations read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base of presigned part URLs, without a trailing `/`.
    pub public_url: String,
    pub url_ttl: Duration,
    /// An upload idle for longer is treated as expired.
    pub upload_expiry: Duration,
    /// How long a replaced or deleted file's bytes stay readable for
    /// downloads that started before.
    pub deletion_grace: Duration,
    /// The largest simple or base64 upload, as sent.
    pub max_simple_upload: u64,
    /// Whether `/metrics` asks for an API key.
    pub metrics_need_key: bool,
    /// The most bytes an org's files and uploads in progress may take.
    pub org_quota: Option<u64>,
    /// How long bytes written ahead of their metadata row are kept if the
    /// row never comes (a crash in between): longer than any upload takes.
    pub orphan_grace: Duration,
    /// How long the rest of a refused request's body is read before the
    /// answer (besides a bound in bytes).
    pub drain_timeout: Duration,
}

/// One thing wrong with a request. A request may have several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    MissingField(String),
    InvalidField { field: String, reason: String },
    FileName(InvalidFileName),
    FileType { given: String, allowed: Vec<String> },
    FileSize { given: i64, max: u64 },
    PartNumbers { bad: Vec<i64>, upload_id: String, num_parts: u32 },
    PartTokens(Vec<u32>),
    MissingParts(Vec<u32>),
    IntegrityNotSupported(String),
}

/// Turns refused token claims, plus part numbers that could not even be
/// claimed (negative or huge), into the request's problems.
pub(crate) fn claim_problems(
    problems: ClaimProblems,
    unclaimable: Vec<i64>,
    upload: &ferry_meta::UploadRecord,
) -> ServiceError {
    let (upload_id, num_parts) = (upload.upload_id.to_string(), upload.plan().num_parts);
    let mut list = Vec::new();
    let bad: Vec<i64> = unclaimable.into_iter().chain(problems.out_of_range.into_iter().map(i64::from)).collect();
    if !bad.is_empty() {
        list.push(BadRequest::PartNumbers { bad, upload_id, num_parts });
    }
    if !problems.invalid_tokens.is_empty() {
        list.push(BadRequest::PartTokens(problems.invalid_tokens));
    }
    if !problems.missing.is_empty() {
        list.push(BadRequest::MissingParts(problems.missing));
    }
    ServiceError::BadRequest(list)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("bad request: {0:?}")]
    BadRequest(Vec<BadRequest>),
    #[error("missing, malformed, unknown or revoked API key")]
    InvalidApiKey,
    #[error("upload `{0}` not found")]
    UploadNotFound(String),
    #[error("upload `{0}` is already completed")]
    UploadCompleted(String),
    #[error("upload `{0}` is being completed by another request")]
    CompleteUnderWay(String),
    #[error("upload `{upload_id}` of this name is in progress with file_type `{file_type}` and num_bytes {num_bytes}")]
    UploadConflict { upload_id: String, file_type: String, num_bytes: u64 },
    #[error("part {0} is being uploaded by another request")]
    PartInProgress(u32),
    #[error("upload `{0}` is being completed by another request")]
    PartDuringComplete(String),
    #[error("a part of upload `{0}` is being uploaded; complete after it finishes")]
    CompleteDuringPartUpload(String),
    #[error("the presigned URL's signature does not verify")]
    InvalidSignature,
    #[error("the presigned URL expired at {expires_at}")]
    UrlExpired { expires_at: String },
    #[error("part {part_number} is {expected} bytes; the body had {}", received_bytes(*.received))]
    InvalidPartSize { part_number: u32, expected: u64, received: Option<u64> },
    #[error("integrity check failed: expected {expected}, the parts combine to {actual}")]
    IntegrityCheckFailed { expected: String, actual: String },
    #[error("storage is full")]
    CapacityReached,
    #[error("the org's quota of {quota} bytes would be exceeded ({used} bytes are in use)")]
    QuotaExceeded { quota: u64, used: u64 },
    #[error("too many requests for this API key")]
    RateLimited { retry_after: Duration },
    #[error("the upload took longer than the server keeps bytes not yet registered")]
    UploadTooSlow,
    #[error("the server's metadata store is unavailable")]
    Unavailable(String),
    #[error("the server's object store is busy or cannot be reached")]
    StoreUnavailable(String),
    #[error("the file is larger than the limit of {limit} bytes for this kind of upload")]
    FileTooLarge { limit: u64 },
    #[error("the request body broke off: {0}")]
    BodyBrokeOff(String),
    #[error("no byte of the file's {len} satisfies the Range")]
    RangeNotSatisfiable { len: u64 },
    #[error("file `{0}` not found")]
    FileNotFound(String),
    #[error("file `{0}` is not downloadable")]
    FileNotDownloadable(String),
    #[error(transparent)]
    Meta(MetaError),
    #[error(transparent)]
    Blob(BlobError),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How much of a part's body arrived, for a message: `None` when it was
/// cut off as soon as it ran past the part.
fn received_bytes(received: Option<u64>) -> String {
    match received {
        Some(n) => format!("{n}"),
        None => "more".into(),
    }
}

impl From<MetaError> for ServiceError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::QuotaExceeded { quota, used } => Self::QuotaExceeded { quota, used },
            MetaError::StorageFull => Self::CapacityReached,
            MetaError::GuardLost => Self::UploadTooSlow,
            MetaError::Unavailable(why) => Self::Unavailable(why),
            other => Self::Meta(other),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::CapacityReached => Self::CapacityReached,
            BlobError::Unavailable(why) => Self::StoreUnavailable(why),
            other => Self::Blob(other),
        }
    }
}

/// Milliseconds since the Unix epoch: the one clock of the service.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn now_secs() -> i64 {
    (now_ms() / 1000) as i64
}

/// RFC 3339 UTC with a `Z`, to the second.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

impl Service {
    /// The org an `Authorization` header's bearer key belongs to.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<OrgId> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let key: ApiKey = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, key)| key.trim().parse().ok())
            .ok_or(ServiceError::InvalidApiKey)?;
        let org_id = match self.meta.find_api_key(&key.key_id).await? {
            Some(record) if record.revoked_at.is_none() && key.matches(&record.secret_hash) => record.org_id,
            _ => return Err(ServiceError::InvalidApiKey),
        };
        if let Some(limiter) = &self.rate_limiter {
            limiter.check(&key.key_id).map_err(|retry_after| ServiceError::RateLimited { retry_after })?;
        }
        Ok(org_id)
    }

    pub fn max_simple_upload(&self) -> u64 {
        self.settings.max_simple_upload
    }

    pub fn drain_timeout(&self) -> Duration {
        self.settings.drain_timeout
    }

    pub fn metrics_need_key(&self) -> bool {
        self.settings.metrics_need_key
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, with the gauges read from the stores now.
    pub async fn render_metrics(&self) -> Result<String> {
        self.metrics.uploads_in_progress.set(self.meta.count_active_uploads().await? as i64);
        Ok(self.metrics.render())
    }

    /// Whether the metadata store and the blob store both answer.
    pub async fn health(&self) -> Result<()> {
        self.meta.ping().await?;
        self.blob.check().await?;
        Ok(())
    }

    /// Maps an upload's state to the error the contract gives for using it.
    pub(crate) fn usable(&self, upload: &ferry_meta::UploadRecord, now_secs: i64) -> Result<()> {
        let idle = now_secs.saturating_sub(upload.last_activity_at);
        match upload.state {
            UploadState::Completed => Err(ServiceError::UploadCompleted(upload.upload_id.to_string())),
            UploadState::Aborted => Err(ServiceError::UploadNotFound(upload.upload_id.to_string())),
            // Expired but not yet swept by the janitor: already gone for clients.
            UploadState::Active if idle > self.settings.upload_expiry.as_secs() as i64 => {
                Err(ServiceError::UploadNotFound(upload.upload_id.to_string()))
            }
            UploadState::Active => Ok(()),
        }
    }
}

/// Explains a metadata store's refusal of an upload operation.
pub(crate) fn upload_refusal(e: MetaError, upload_id: &str) -> ServiceError {
    match e {
        MetaError::UploadNotFound | MetaError::UploadNotActive(UploadState::Aborted) => {
            ServiceError::UploadNotFound(upload_id.to_owned())
        }
        MetaError::UploadNotActive(_) => ServiceError::UploadCompleted(upload_id.to_owned()),
        other => ServiceError::Meta(other),
    }
}
