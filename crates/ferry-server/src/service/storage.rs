//! Where file bytes live, and who takes the parts of an upload: the two
//! kinds of storage are two arms of one type, so that what differs between
//! them (part URLs, the record of parts, the checksum a complete can check)
//! is decided in one `match`, never by a sentinel.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_api::uploads::IntegrityAlgorithm;
use ferry_blob::{BlobStore, LocalDisk, S3, StoreUpload};
use ferry_core::plan::PartRange;
use ferry_core::presign::PartUrlSigner;
use ferry_core::token::PartTokenKey;
use ferry_core::upload::RecordedPart;
use ferry_meta::UploadRecord;

use super::Result;

pub enum Storage {
    /// The data dir. ferry takes part PUTs itself: it signs their URLs,
    /// records each part in the metadata store with the CRC32C it computed
    /// on the way in, and so can check a whole-file checksum at complete.
    Local(LocalParts),
    /// An S3-compatible bucket. Clients PUT parts to the store's own
    /// presigned URLs and the store keeps their record (ListParts); no part
    /// byte passes through ferry, which computes the CRC32C at ingestion.
    S3(Arc<S3>),
}

/// What taking parts on ferry's own disk needs.
pub struct LocalParts {
    pub disk: Arc<LocalDisk>,
    pub signer: PartUrlSigner,
    pub token_key: PartTokenKey,
    /// The base of part URLs, without a trailing `/`, if `--public-url`
    /// fixes one; else each request's own origin.
    pub public_url: Option<String>,
}

/// The upload as the blob store knows it.
pub(crate) fn store_upload(upload: &UploadRecord) -> StoreUpload<'_> {
    StoreUpload {
        upload_id: upload.upload_id,
        file_uid: upload.file_uid,
        store_upload_id: upload.store_upload_id.as_deref(),
    }
}

impl Storage {
    /// The bytes of files and of uploads in progress.
    pub fn bytes(&self) -> Arc<dyn BlobStore> {
        match self {
            Self::Local(local) => local.disk.clone(),
            Self::S3(s3) => s3.clone(),
        }
    }

    /// Free space under the files, when they are on a local disk.
    pub fn free_bytes(&self) -> Option<u64> {
        match self {
            Self::Local(local) => local.disk.free_bytes().ok(),
            Self::S3(_) => None,
        }
    }

    /// Whether part PUTs come to ferry (its `/parts` route exists).
    pub fn takes_parts(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// What `complete` can check of the whole file.
    pub fn integrity_algorithm(&self) -> IntegrityAlgorithm {
        match self {
            Self::Local(_) => IntegrityAlgorithm::Crc32c,
            // Clients PUT parts without S3 checksum headers.
            Self::S3(_) => IntegrityAlgorithm::None,
        }
    }

    /// Where to PUT a part until `expires` (Unix seconds), for a client
    /// that reached ferry at `origin`.
    pub fn part_url(&self, upload: &UploadRecord, range: PartRange, expires: u64, origin: &str) -> String {
        match self {
            Self::Local(local) => {
                let query = local.signer.sign(&upload.upload_id, range.part_number, expires);
                let base = local.public_url.as_deref().unwrap_or(origin);
                let (id, n, query) = (upload.upload_id, range.part_number, query.to_query_string());
                format!("{base}/parts/{id}/{n}?{query}")
            }
            // A part number within the plan always has one.
            Self::S3(s3) => s3.part_url(store_upload(upload), range.part_number, expires).unwrap_or_default(),
        }
    }

    /// The store's own record of the parts, when it keeps one (S3); `None`
    /// when the metadata store keeps them. A part of the wrong size (an S3
    /// store takes any) does not count as stored.
    pub async fn stored_parts(&self, upload: &UploadRecord) -> Result<Option<BTreeMap<u32, RecordedPart>>> {
        let Self::S3(s3) = self else { return Ok(None) };
        let plan = upload.plan();
        let parts = s3.stored_parts(store_upload(upload)).await?;
        Ok(Some(
            parts.into_iter().filter(|(n, part)| plan.part(*n).is_some_and(|r| r.length == part.num_bytes)).collect(),
        ))
    }
}
