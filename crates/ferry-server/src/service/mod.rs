//! What the API does, without HTTP: each public method is one operation of
//! the contract, on typed inputs, returning wire bodies or a [`ServiceError`].
//! The HTTP layer parses requests into calls here and maps every error to
//! the envelope in one place (`http/error.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::api_key::ApiKey;
use ferry_core::ids::{KeyId, OrgId};
use ferry_core::upload::{UploadPolicy, UploadState};
use ferry_meta::MetadataStore;

use crate::settings::Settings;
use crate::telemetry::{Format, Metrics};

pub mod admin;
pub mod check;
mod error;
mod extract;
pub mod files;
pub mod janitor;
pub mod storage;
pub mod uploads;
pub mod webhooks;

pub(crate) use error::claim_problems;
pub use error::{BadRequest, Result, ServiceError};
pub use files::Download;
pub use janitor::{Extractor, JanitorReport};
pub use storage::{LocalParts, Storage};

/// Everything one operation may need. Cheap to share: all of it is behind
/// `Arc`s or immutable.
pub struct Service {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) storage: Storage,
    pub(crate) policy: UploadPolicy,
    /// The operator's settings, as resolved.
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
    /// The org an `Authorization` header's bearer key belongs to, and the
    /// key's id (never its secret) for the log.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<(OrgId, KeyId)> {
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
            limiter.check(&key.key_id).map_err(|wait| ServiceError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        }
        Ok((org_id, key.key_id))
    }

    pub fn max_simple_upload(&self) -> u64 {
        self.settings.max_simple_upload
    }

    /// Whether part PUTs come to ferry (see [`Storage`]).
    pub fn takes_parts(&self) -> bool {
        self.storage.takes_parts()
    }

    pub fn drain_timeout(&self) -> Duration {
        self.settings.drain_timeout.get()
    }

    pub fn metrics_need_key(&self) -> bool {
        self.settings.metrics_need_key
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics in `format`, with the states read from the stores now.
    pub async fn render_metrics(&self, format: Format) -> Result<String> {
        let workload = self.meta.workload(now_secs()).await?;
        self.metrics.set_states(workload, self.storage.free_bytes());
        Ok(self.metrics.render(format))
    }

    /// Whether the metadata store and the blob store both answer.
    pub async fn health(&self) -> Result<()> {
        self.meta.ping().await?;
        self.storage.bytes().check().await?;
        Ok(())
    }

    /// Maps an upload's state to the error the contract gives for using it.
    pub(crate) fn usable(&self, upload: &ferry_meta::UploadRecord, now_secs: i64) -> Result<()> {
        let idle = now_secs.saturating_sub(upload.last_activity_at);
        match upload.state {
            UploadState::Completed => Err(ServiceError::UploadCompleted(upload.upload_id)),
            UploadState::Aborted => Err(ServiceError::UploadNotFound(upload.upload_id)),
            // Expired but not yet swept by the janitor: already gone for clients.
            UploadState::Active if idle > self.settings.upload_expiry.as_secs() as i64 => {
                Err(ServiceError::UploadNotFound(upload.upload_id))
            }
            UploadState::Active => Ok(()),
        }
    }
}
