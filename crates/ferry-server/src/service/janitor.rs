//! Background work: draining the blob deletion queue, expiring idle
//! uploads, and extracting attributes of new files.
//!
//! Every piece of work is leased in the metadata store before it is done, so
//! several janitors (one per server) never do the same work twice, and the
//! work of a janitor that died comes back to the others when its lease ends.

use std::sync::Arc;
use std::time::Duration;

use ferry_api::files::ContentAttributes;
use ferry_blob::BlobStore;
use ferry_core::checksum::{Crc32c, PartHasher};
use ferry_core::file::MetadataStatus;
use ferry_core::ids::FileUid;
use ferry_meta::{FileRecord, MetadataStore};
use futures_util::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::extract::{Attributes, extract, has_attributes};
use super::{Result, Service, now_secs};

/// How long a janitor may hold a piece of work before another may take it.
const LEASE_SECS: i64 = 300;
/// How many entries one step of a pass takes at once.
const BATCH: usize = 100;

/// What one janitor pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JanitorReport {
    pub expired_uploads: usize,
    pub deleted_blobs: usize,
    pub failed_deletions: usize,
    pub ingested_files: usize,
}

/// Extracts files' attributes and records them.
#[derive(Clone)]
pub struct Extractor {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) blob: Arc<dyn BlobStore>,
    /// The server's background tasks, which shutdown waits for.
    pub(crate) tasks: TaskTracker,
}

impl From<Attributes> for ContentAttributes {
    fn from(attributes: Attributes) -> Self {
        let mut stored = ContentAttributes::default();
        match attributes {
            Attributes::Image { width, height, num_channels } => {
                (stored.width, stored.height, stored.num_channels) = (Some(width), Some(height), Some(num_channels));
            }
            Attributes::Csv { num_rows, num_columns, column_headers } => {
                (stored.num_rows, stored.num_columns) = (Some(num_rows), Some(num_columns));
                stored.column_headers = Some(column_headers);
            }
            Attributes::Jsonl { num_rows } => stored.num_rows = Some(num_rows),
        }
        stored
    }
}

impl Extractor {
    /// Extracts a just-registered file's attributes in the background.
    pub fn spawn(&self, file_uid: FileUid) {
        let this = self.clone();
        self.tasks.spawn(async move {
            match this.meta.claim_file_to_ingest(&file_uid, now_secs(), LEASE_SECS).await {
                Ok(Some(file)) => this.ingest(file).await,
                Ok(None) => {}
                // The janitor's sweep picks the file up later.
                Err(e) => tracing::warn!(%file_uid, error = %e, "could not claim a file for extraction"),
            }
        });
    }

    /// Extracts and records the attributes of a file leased for extraction,
    /// and its CRC32C if unknown (its parts went straight to an S3 store).
    /// A failed extraction is recorded as `failed`; the file stays usable.
    pub async fn ingest(&self, file: FileRecord) {
        let wants_attributes = has_attributes(&file.file_type);
        let wants_checksum = file.checksum_crc32c.is_none();
        let (mut status, mut attributes, mut checksum) = (MetadataStatus::NotExtracted, None, None);
        if wants_attributes || wants_checksum {
            match self.read(&file, wants_checksum).await {
                Ok((extracted, crc)) => {
                    checksum = crc;
                    match extracted {
                        Some(Ok(found)) => {
                            status = MetadataStatus::Extracted;
                            attributes = serde_json::to_string(&ContentAttributes::from(found)).ok();
                        }
                        Some(Err(e)) => {
                            tracing::warn!(file_uid = %file.file_uid, error = %e, "attribute extraction failed");
                            status = MetadataStatus::Failed;
                        }
                        None => {}
                    }
                }
                // The bytes could not be read: leave the lease to run out,
                // so that a later pass tries again.
                Err(e) => {
                    tracing::warn!(file_uid = %file.file_uid, error = %e, "reading a file to ingest failed");
                    return;
                }
            }
        }
        let recorded = self.meta.finish_ingest(&file.file_uid, status, attributes.as_deref(), checksum, now_secs());
        if let Err(e) = recorded.await {
            tracing::warn!(file_uid = %file.file_uid, error = %e, "could not record extracted attributes");
        }
    }

    /// Reads a file once: extracts its attributes (if its type has any) and,
    /// when asked, computes its CRC32C over every byte.
    async fn read(
        &self,
        file: &FileRecord,
        with_checksum: bool,
    ) -> Result<(Option<Result<Attributes, String>>, Option<Crc32c>), String> {
        let bytes = self.blob.read(&file.file_uid, 0..file.num_bytes).await.map_err(|e| e.to_string())?;
        let hasher = Arc::new(std::sync::Mutex::new(PartHasher::default()));
        let hashing = hasher.clone();
        let bytes = bytes.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                hashing.lock().unwrap_or_else(|e| e.into_inner()).update(chunk);
            }
        });
        // The parsers read blocking; the bridge feeds them from the stream.
        let mut reader = SyncIoBridge::new(StreamReader::new(bytes));
        let file_type = file.file_type.clone();
        let extracted = tokio::task::spawn_blocking(move || {
            let extracted = extract(&file_type, &mut reader).map(|outcome| outcome.map_err(|e| e.to_string()));
            // A parser may stop early (an image header); the checksum needs the rest.
            if with_checksum {
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(extracted)
        })
        .await
        .map_err(|e| e.to_string())??;
        let digest = hasher.lock().unwrap_or_else(|e| e.into_inner()).finish();
        let checksum = (with_checksum && digest.num_bytes == file.num_bytes).then_some(digest.crc32c);
        if with_checksum && checksum.is_none() {
            return Err(format!("read {} of the file's {} bytes", digest.num_bytes, file.num_bytes));
        }
        Ok((extracted, checksum))
    }
}

impl Service {
    /// One pass of background work; safe to run on every server at once.
    pub async fn janitor_pass(&self) -> Result<JanitorReport> {
        if let Some(limiter) = &self.rate_limiter {
            limiter.forget_idle();
        }
        let report = self.janitor_work().await?;
        self.metrics.expired_uploads.inc_by(report.expired_uploads as u64);
        self.metrics.deleted_blobs.inc_by(report.deleted_blobs as u64);
        self.metrics.failed_deletions.inc_by(report.failed_deletions as u64);
        self.metrics.ingested_files.inc_by(report.ingested_files as u64);
        Ok(report)
    }

    async fn janitor_work(&self) -> Result<JanitorReport> {
        let mut report = JanitorReport::default();
        let now = now_secs();
        let idle_before = now - self.settings.upload_expiry.as_secs() as i64;
        loop {
            let expired = self.meta.expire_idle_uploads(idle_before, now, BATCH).await?;
            report.expired_uploads += expired.len();
            if expired.len() < BATCH {
                break;
            }
        }
        loop {
            let due = self.meta.claim_blob_deletions(now, LEASE_SECS, BATCH).await?;
            for deletion in &due {
                match self.storage.bytes().delete(&deletion.blob_key).await {
                    Ok(()) => {
                        self.meta.finish_blob_deletion(deletion.id).await?;
                        report.deleted_blobs += 1;
                    }
                    Err(e) => {
                        // Leased, not finished: retried once the lease ends.
                        tracing::warn!(blob = %deletion.blob_key, error = %e, "deleting a blob failed");
                        report.failed_deletions += 1;
                    }
                }
            }
            if due.len() < BATCH {
                break;
            }
        }
        loop {
            let files = self.meta.claim_files_to_ingest(now, LEASE_SECS, BATCH).await?;
            for file in &files {
                self.extractor.ingest(file.clone()).await;
            }
            report.ingested_files += files.len();
            if files.len() < BATCH {
                break;
            }
        }
        Ok(report)
    }

    /// Runs janitor passes every `interval` until `stop` is cancelled; a
    /// pass under way is finished first (its leases would make stopping
    /// mid-way safe, but a finished pass leaves no work waiting on a lease).
    pub async fn run_janitor(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.janitor_pass().await {
                Ok(report) if report != JanitorReport::default() => tracing::info!(?report, "janitor pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "janitor pass failed"),
            }
        }
    }
}
