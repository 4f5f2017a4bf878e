//! The direct-to-cloud upload operations (files-api §3).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ferry_api::files::{FileAttributes, MetadataStatus};
use ferry_api::uploads::{
    CheckpointResponse, CompleteUploadResponse, InitiateUploadResponse, IntegrityAlgorithm, PartDescriptor,
    PartTokenEntry,
};
use ferry_blob::BlobError;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::FileStatus;
use ferry_core::ids::{FileUid, OrgId, UploadId};
use ferry_core::plan::PartRange;
use ferry_core::presign::{PresignError, url_expiry};
use ferry_core::token::PartToken;
use ferry_core::upload::{ClaimProblems, InitiateProblem, RecordedPart, TokenClaim, UploadState, check_complete};
use ferry_meta::{AbortOutcome, MetaError, Registered, Registration, UploadRecord};
use futures_util::{Stream, StreamExt};

use super::storage::{Storage, store_upload};
use super::{BadRequest, Result, Service, ServiceError, claim_problems, now_ms, now_secs, rfc3339};
use crate::failpoint;

/// What a client asks to upload.
pub struct InitiateUpload {
    pub file_name: String,
    pub file_type: String,
    pub num_bytes: i64,
    pub resume_if_started: bool,
}

/// Splits entries into claims and the part numbers no plan can have
/// (negative or beyond `u32`), which are reported as out of range.
fn claims_from_entries(entries: &[PartTokenEntry]) -> (Vec<TokenClaim>, Vec<i64>) {
    let mut claims = Vec::with_capacity(entries.len());
    let mut unclaimable = Vec::new();
    for entry in entries {
        match u32::try_from(entry.part_number) {
            Ok(part_number) => claims.push(TokenClaim { part_number, token: PartToken::from_wire(&entry.part_token) }),
            Err(_) => unclaimable.push(entry.part_number),
        }
    }
    (claims, unclaimable)
}

impl Service {
    fn descriptor(&self, upload: &UploadRecord, range: PartRange, expires: u64, origin: &str) -> PartDescriptor {
        PartDescriptor {
            part_number: range.part_number,
            url: self.storage.part_url(upload, range, expires, origin),
            offset: range.offset,
            length: range.length,
            expires_at: rfc3339(expires),
        }
    }

    /// The store's own record of the parts (S3), or `None` where the
    /// metadata store keeps it; an upload the store no longer has is
    /// explained by its state.
    async fn store_parts(&self, upload: &UploadRecord) -> Result<Option<BTreeMap<u32, RecordedPart>>> {
        match self.storage.stored_parts(upload).await {
            // Completed or aborted meanwhile (on another node, perhaps).
            Err(ServiceError::Blob(BlobError::UploadGone)) => Err(self.gone(upload).await),
            other => other,
        }
    }

    /// The parts whose bytes are stored, as the store that holds them says.
    pub(crate) async fn recorded_parts(&self, upload: &UploadRecord) -> Result<BTreeMap<u32, RecordedPart>> {
        match self.store_parts(upload).await? {
            Some(parts) => Ok(parts),
            None => Ok(self.meta.list_parts(&upload.upload_id).await?),
        }
    }

    fn url_expiry_now(&self) -> u64 {
        url_expiry(now_ms(), self.settings.url_ttl.as_secs())
    }

    fn initiate_response(
        &self,
        upload: &UploadRecord,
        is_resume: bool,
        parts: Vec<PartDescriptor>,
    ) -> InitiateUploadResponse {
        let plan = upload.plan();
        InitiateUploadResponse {
            upload_id: upload.upload_id.to_string(),
            file_uid: upload.file_uid.to_string(),
            file_name: upload.file_name.clone(),
            total_bytes: plan.num_bytes,
            num_parts: plan.num_parts,
            part_size: plan.part_size,
            is_resume,
            integrity_algorithm: self.storage.integrity_algorithm(),
            parts,
        }
    }

    /// Reads an org's upload and checks it can still be used.
    async fn usable_upload(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<UploadRecord> {
        let upload = self.meta.get_upload(org_id, upload_id).await?.ok_or(ServiceError::UploadNotFound(*upload_id))?;
        self.usable(&upload, now_secs())?;
        Ok(upload)
    }

    /// Starts (or resumes) an upload. `origin` is how the client reached
    /// ferry (`scheme://host[:port]`), for part URLs without a public URL.
    pub async fn initiate(
        &self,
        org_id: &OrgId,
        request: InitiateUpload,
        origin: &str,
    ) -> Result<InitiateUploadResponse> {
        let size = u64::try_from(request.num_bytes).unwrap_or(0);
        let plan = self.policy.plan(&request.file_name, &request.file_type, size).map_err(|problems| {
            ServiceError::BadRequest(
                problems
                    .into_iter()
                    .map(|p| match p {
                        InitiateProblem::FileName(e) => BadRequest::FileName(e),
                        InitiateProblem::FileType(given) => {
                            BadRequest::FileType { given, allowed: self.policy.allowed_file_types().to_vec() }
                        }
                        InitiateProblem::FileSize { max, .. } => BadRequest::FileSize { given: request.num_bytes, max },
                    })
                    .collect(),
            )
        })?;
        let now = now_secs();

        if request.resume_if_started
            && let Some(upload) = self.meta.find_resumable_upload(org_id, &request.file_name).await?
            && self.usable(&upload, now).is_ok()
        {
            if upload.file_type != request.file_type || upload.num_bytes != size {
                return Err(ServiceError::UploadConflict {
                    upload_id: upload.upload_id,
                    file_type: upload.file_type,
                    num_bytes: upload.num_bytes,
                });
            }
            match self.resume(upload, now, origin).await {
                // An interrupted complete was committed just now: the upload
                // is a file, and this request starts a new one.
                Err(ServiceError::UploadCompleted(_)) => {}
                outcome => return outcome,
            }
        }

        let mut upload = UploadRecord {
            upload_id: UploadId::generate(),
            org_id: *org_id,
            file_uid: FileUid::generate(),
            file_name: request.file_name,
            file_type: request.file_type,
            num_bytes: size,
            part_size: plan.part_size,
            state: UploadState::Active,
            created_at: now,
            last_activity_at: now,
            store_upload_id: None,
        };
        // Storage first, so that an upload never exists without it; a guard
        // in the deletion queue covers the storage until the upload's row
        // does, so a crash between the two leaves nothing behind for good.
        //
        // (An S3 store names its upload only once created: a crash in that
        // instant leaves an incomplete multipart upload the guard cannot
        // name, for the bucket's own lifecycle rule to sweep.)
        let key = BlobKey::upload(upload.upload_id, upload.file_uid, None);
        let guard =
            self.meta.enqueue_blob_deletion(&key, now + self.settings.orphan_grace.as_secs().max(1) as i64).await?;
        let bytes = self.storage.bytes();
        match bytes.create_upload(&upload.upload_id, &upload.file_uid, size).await {
            Ok(store_upload_id) => upload.store_upload_id = store_upload_id,
            Err(e) => {
                self.meta.finish_blob_deletion(guard).await?;
                return Err(e.into());
            }
        }
        if let Err(e) = self.meta.insert_upload(&upload, guard, self.settings.org_quota()).await {
            // Freed now if possible; else the guard has the janitor free it.
            if bytes.abort_upload(store_upload(&upload)).await.is_ok() {
                let _ = self.meta.finish_blob_deletion(guard).await;
            }
            return Err(e.into());
        }
        let expires = self.url_expiry_now();
        let parts = plan.parts().map(|range| self.descriptor(&upload, range, expires, origin)).collect();
        Ok(self.initiate_response(&upload, false, parts))
    }

    /// Returns the parts of `upload` that no valid checkpoint covers.
    async fn resume(&self, upload: UploadRecord, now: i64, origin: &str) -> Result<InitiateUploadResponse> {
        let recorded = self.recorded_parts(&upload).await?;
        let done: BTreeSet<u32> = self
            .meta
            .list_checkpoints(&upload.upload_id)
            .await?
            .into_iter()
            .filter(|c| recorded.get(&c.part_number).is_some_and(|p| p.token == c.token))
            .map(|c| c.part_number)
            .collect();
        self.meta.touch_upload(&upload.upload_id, now).await?;
        let expires = self.url_expiry_now();
        let parts = upload
            .plan()
            .parts()
            .filter(|range| !done.contains(&range.part_number))
            .map(|range| self.descriptor(&upload, range, expires, origin))
            .collect();
        Ok(self.initiate_response(&upload, true, parts))
    }

    /// Fresh URLs for parts, in request order. Reads only: this is called
    /// often, and every answer inside one time bucket is the same.
    pub async fn part_urls(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        part_numbers: &[i64],
        origin: &str,
    ) -> Result<Vec<PartDescriptor>> {
        let upload = self.usable_upload(org_id, upload_id).await?;
        let plan = upload.plan();
        let bad: Vec<i64> = part_numbers
            .iter()
            .copied()
            .filter(|&n| u32::try_from(n).ok().and_then(|n| plan.part(n)).is_none())
            .collect();
        if !bad.is_empty() {
            return Err(ServiceError::BadRequest(vec![BadRequest::PartNumbers {
                bad,
                upload_id: *upload_id,
                num_parts: plan.num_parts,
            }]));
        }
        let expires = self.url_expiry_now();
        Ok(part_numbers
            .iter()
            .map(|&n| self.descriptor(&upload, plan.part(n as u32).expect("checked above"), expires, origin))
            .collect())
    }

    pub async fn checkpoint(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        entries: &[PartTokenEntry],
    ) -> Result<CheckpointResponse> {
        let upload = self.usable_upload(org_id, upload_id).await?;
        let (claims, unclaimable) = claims_from_entries(entries);
        if !unclaimable.is_empty() {
            return Err(claim_problems(ClaimProblems::default(), unclaimable, &upload));
        }
        let store_parts = self.store_parts(&upload).await?;
        match self.meta.checkpoint(org_id, &upload.upload_id, &claims, store_parts.as_ref(), now_secs()).await {
            Ok(Ok(count)) => Ok(CheckpointResponse { num_checkpointed: count as u64 }),
            Ok(Err(problems)) => Err(claim_problems(problems, Vec::new(), &upload)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn complete(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        entries: &[PartTokenEntry],
        integrity_checksum: Option<&str>,
    ) -> Result<CompleteUploadResponse> {
        match self.complete_active(org_id, upload_id, entries, integrity_checksum).await {
            // Committed by a request that answered no complete (see
            // `commit_assembled`): this complete did the work or retries
            // one that did, and is answered 200. Only the first to ask.
            Err(ServiceError::UploadCompleted(_)) if !self.storage.takes_parts() => {
                match self.meta.take_unanswered_complete(org_id, upload_id).await? {
                    Some(registered) => Ok(completed(registered)),
                    None => Err(ServiceError::UploadCompleted(*upload_id)),
                }
            }
            outcome => outcome,
        }
    }

    async fn complete_active(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        entries: &[PartTokenEntry],
        integrity_checksum: Option<&str>,
    ) -> Result<CompleteUploadResponse> {
        let upload = self.usable_upload(org_id, upload_id).await?;
        let expected = match integrity_checksum {
            None => None,
            Some(_) if self.storage.integrity_algorithm() == IntegrityAlgorithm::None => {
                return Err(ServiceError::BadRequest(vec![BadRequest::IntegrityNotSupported(
                    "this store's integrity_algorithm is `none`".into(),
                )]));
            }
            Some(text) => Some(
                Crc32c::from_base64(text)
                    .map_err(|e| ServiceError::BadRequest(vec![BadRequest::IntegrityNotSupported(e.to_string())]))?,
            ),
        };

        // On ferry's own disk the upload is sealed from before its part
        // records are read until after the commit, so no PUT can change a
        // part in between; a PUT still under way makes the complete wait
        // for a retry instead.
        let seal = match &self.storage {
            Storage::Local(local) => Some(local.disk.seal(&upload.upload_id).map_err(|e| match e {
                BlobError::PartInProgress => ServiceError::CompleteDuringPartUpload(*upload_id),
                BlobError::UploadSealed => ServiceError::CompleteUnderWay(*upload_id),
                other => other.into(),
            })?),
            Storage::S3(_) => None,
        };

        let plan = upload.plan();
        let (claims, unclaimable) = claims_from_entries(entries);
        let recorded = match self.storage.stored_parts(&upload).await {
            Ok(Some(parts)) => parts,
            Ok(None) => self.meta.list_parts(&upload.upload_id).await?,
            // The store no longer has the upload in progress: a complete
            // before this one had it assemble the file (and crashed, or is
            // committing on another node right now).
            Err(ServiceError::Blob(BlobError::UploadGone)) => {
                return match self.commit_assembled(&upload, true).await? {
                    Some(registered) => Ok(completed(registered)),
                    None => Err(self.gone(&upload).await),
                };
            }
            Err(e) => return Err(e),
        };
        let checkpoints = self.meta.list_checkpoints(&upload.upload_id).await?;
        let actual = match check_complete(&plan, &recorded, &checkpoints, &claims) {
            Ok(crc) if unclaimable.is_empty() => crc,
            outcome => {
                // Completing or aborting drops an upload's part records; if
                // another request did that since the upload was read, its
                // new state is the true answer.
                self.usable_upload(org_id, upload_id).await?;
                return Err(claim_problems(outcome.err().unwrap_or_default(), unclaimable, &upload));
            }
        };
        let status = match (expected, actual) {
            (Some(expected), Some(actual)) if expected != actual => FileStatus::Corrupt,
            _ => FileStatus::Registered,
        };
        failpoint::point("complete.after_check").await;

        let tokens: BTreeMap<u32, PartToken> = recorded.values().map(|p| (p.part_number, p.token.clone())).collect();
        let placed = match (&seal, &self.storage) {
            (Some(seal), _) => seal.place(&upload.file_uid).await,
            (None, Storage::S3(s3)) => s3.complete_upload(store_upload(&upload), &tokens).await,
            (None, Storage::Local(_)) => unreachable!("ferry's disk is sealed above"),
        };
        match placed {
            Ok(()) => {}
            // The store's parts are not the ones just checked: a part was
            // sent again meanwhile (S3 refuses the ETags checked). Retrying
            // checks them anew.
            Err(BlobError::InvalidParts(why)) => {
                tracing::info!(%upload_id, why, "the store's parts changed after the check");
                return Err(ServiceError::CompleteDuringPartUpload(*upload_id));
            }
            // Gone from the store: completed or aborted meanwhile; the
            // metadata store says which.
            Err(BlobError::UploadGone) => return Err(self.gone(&upload).await),
            // A store may refuse a complete racing another one (Garage
            // answers InvalidRequest); if the other one has committed, its
            // outcome is the true answer, as for any request that lost.
            Err(e) => {
                self.usable_upload(org_id, upload_id).await?;
                return Err(e.into());
            }
        }
        failpoint::point("complete.after_store").await;

        let now = now_secs();
        let registration = Registration {
            org_id: *org_id,
            upload_id: upload.upload_id,
            status,
            checksum_crc32c: actual,
            // Ferry's own part records must still be the ones checked.
            verified_parts: seal.is_some().then_some(tokens),
            answers_a_complete: true,
            now,
            delete_displaced_after: now + self.settings.deletion_grace.as_secs() as i64,
        };
        let registered = match self.meta.complete_upload(&registration).await {
            Ok(registered) => registered,
            Err(MetaError::PartsChanged) => {
                if let Some(seal) = &seal {
                    seal.unplace(&upload.file_uid).await?;
                }
                return Err(ServiceError::CompleteDuringPartUpload(*upload_id));
            }
            Err(e) => return Err(e.into()),
        };
        failpoint::point("complete.after_commit").await;
        drop(seal);
        if registered.file.status == FileStatus::Registered {
            self.extractor.spawn(registered.file.file_uid);
        }
        if let (Some(expected), Some(actual), FileStatus::Corrupt) = (expected, actual, status) {
            return Err(ServiceError::IntegrityCheckFailed {
                expected: expected.to_base64(),
                actual: actual.to_base64(),
            });
        }
        Ok(completed(registered))
    }

    pub async fn abort(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<()> {
        let upload = self.meta.get_upload(org_id, upload_id).await?.ok_or(ServiceError::UploadNotFound(*upload_id))?;
        match self.meta.abort_upload(org_id, upload_id, now_secs()).await? {
            AbortOutcome::AlreadyAborted => Ok(()),
            AbortOutcome::Aborted { deletion } => {
                // The queue entry is committed, so a failure here only delays
                // the freeing until the janitor retries it.
                match self.storage.bytes().abort_upload(store_upload(&upload)).await {
                    Ok(()) => self.meta.finish_blob_deletion(deletion).await?,
                    Err(e) => {
                        tracing::warn!(%upload_id, error = %e, "freeing an aborted upload's storage failed; queued")
                    }
                }
                Ok(())
            }
        }
    }

    /// Takes one part's bytes through its presigned URL. Returns the part's
    /// `ETag` token once the bytes are durable and recorded. On an error the
    /// body may be left partly read; the caller decides what to do with it.
    pub async fn put_part<S, E>(
        &self,
        upload_id: &str,
        part_number: &str,
        raw_query: &str,
        content_length: Option<u64>,
        body: &mut S,
    ) -> Result<PartToken>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        // The URL is checked before anything else is looked at: a request
        // without a valid signature costs one HMAC and reads nothing.
        let (Ok(id), Ok(number)) = (upload_id.parse::<UploadId>(), part_number.parse::<u32>()) else {
            return Err(ServiceError::InvalidSignature);
        };
        // One URL, one spelling: `00`, `+0` or `%30` name part 0 too, but
        // only the signer's canonical form verifies.
        if id.to_string() != upload_id || number.to_string() != part_number {
            return Err(ServiceError::InvalidSignature);
        }
        let part_number = number;
        // Only ferry's own disk takes parts; elsewhere no URL of ferry's is a part URL.
        let Storage::Local(local) = &self.storage else { return Err(ServiceError::InvalidSignature) };
        local.signer.verify(&id, part_number, raw_query, now_ms()).map_err(|e| match e {
            PresignError::InvalidSignature => ServiceError::InvalidSignature,
            PresignError::Expired { expires } => ServiceError::UrlExpired { expires_at: rfc3339(expires) },
        })?;
        // Claimed before the upload is read: once the part is claimed no
        // complete can be between its seal and its commit, so the state
        // read next stays true while the bytes go in.
        let claim = local.disk.claim_part(&id, part_number).map_err(|e| match e {
            BlobError::PartInProgress => ServiceError::PartInProgress(part_number),
            BlobError::UploadSealed => ServiceError::PartDuringComplete(id),
            other => other.into(),
        })?;
        let upload = self.meta.get_upload_for_part_put(&id).await?.ok_or(ServiceError::UploadNotFound(id))?;
        self.usable(&upload, now_secs())?;
        let range = upload.plan().part(part_number).ok_or(ServiceError::InvalidSignature)?;
        let wrong_size = |received| ServiceError::InvalidPartSize { part_number, expected: range.length, received };
        if let Some(length) = content_length.filter(|&l| l != range.length) {
            return Err(wrong_size(Some(length)));
        }

        let mut writer = match claim.open(&upload.file_uid, range).await {
            Ok(writer) => writer,
            Err(BlobError::UploadGone) => return Err(self.gone(&upload).await),
            Err(e) => return Err(e.into()),
        };
        // A rewrite must first stop the old record describing these bytes,
        // durably, or a rewrite cut short would leave a record that lies.
        if self.meta.has_part(&id, part_number).await? {
            self.meta.forget_part(&id, part_number).await?;
        }
        failpoint::point("part_put.after_forget").await;
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::debug!(upload_id, part_number, error = %e, "part body broke off");
                    writer.abandon().await;
                    return Err(wrong_size(Some(received)));
                }
            };
            received += chunk.len() as u64;
            self.metrics.bytes_received.inc_by(chunk.len() as u64);
            writer.write(chunk).await.map_err(|e| match e {
                BlobError::TooLong { .. } => wrong_size(None),
                other => other.into(),
            })?;
        }
        let (digest, claim) = writer.finish().await.map_err(|e| match e {
            BlobError::TooShort { received, .. } => wrong_size(Some(received)),
            other => other.into(),
        })?;
        failpoint::point("part_put.before_record").await;
        let token = local.token_key.token(&id, part_number, &digest);
        let part = RecordedPart {
            part_number,
            token: token.clone(),
            crc32c: Some(digest.crc32c),
            num_bytes: digest.num_bytes,
        };
        self.meta.record_part(&id, &part, now_secs()).await?;
        // Only now may a complete seal the upload.
        drop(claim);
        Ok(token)
    }

    /// Why an upload's storage is gone, per the metadata store.
    async fn gone(&self, upload: &UploadRecord) -> ServiceError {
        match self.meta.get_upload_for_part_put(&upload.upload_id).await {
            Ok(Some(now)) => match self.usable(&now, now_secs()) {
                Err(e) => e,
                // Active, yet the store no longer has the upload in progress.
                Ok(()) => match self.commit_assembled(&now, false).await {
                    Ok(Some(_)) => ServiceError::UploadCompleted(upload.upload_id),
                    Ok(None) => {
                        tracing::warn!(upload_id = %upload.upload_id, "an active upload's storage is missing");
                        ServiceError::UploadNotFound(upload.upload_id)
                    }
                    Err(e) => e,
                },
            },
            Ok(None) => ServiceError::UploadNotFound(upload.upload_id),
            Err(e) => e.into(),
        }
    }

    /// Commits a complete that an S3-compatible store carried out but
    /// ferry has not committed: the store assembled the file from exactly
    /// the ETags that complete had checked, and this kind of store checks
    /// no whole-file checksum, so the registration it would have made is
    /// made now (after a crash, or by whichever racing complete commits
    /// first: that one answers 200, the others `upload_completed`).
    /// Made for any other request (`answers_a_complete` false), it leaves
    /// the 200 to the next complete: the one between the store's assembly
    /// and its own commit right now (on any node), or a client's retry
    /// after a crash.
    /// `None` when the store has no such file. On ferry's own disk an
    /// interrupted complete is undone instead ([`ferry_blob::PartClaim::open`]):
    /// there the client's checksum is checked at complete, and it is not
    /// known here.
    async fn commit_assembled(&self, upload: &UploadRecord, answers_a_complete: bool) -> Result<Option<Registered>> {
        if self.storage.takes_parts() || self.storage.bytes().file_size(&upload.file_uid).await?.is_none() {
            return Ok(None);
        }
        let now = now_secs();
        let registration = Registration {
            org_id: upload.org_id,
            upload_id: upload.upload_id,
            status: FileStatus::Registered,
            checksum_crc32c: None,
            verified_parts: None,
            answers_a_complete,
            now,
            delete_displaced_after: now + self.settings.deletion_grace.as_secs() as i64,
        };
        let registered = self.meta.complete_upload(&registration).await?;
        tracing::info!(upload_id = %upload.upload_id, "committed a complete the store had carried out");
        self.extractor.spawn(registered.file.file_uid);
        Ok(Some(registered))
    }
}

/// The answer to a complete that registered `registered`.
fn completed(registered: Registered) -> CompleteUploadResponse {
    CompleteUploadResponse {
        file_uid: registered.file.file_uid.to_string(),
        file_name: registered.file.file_name,
        num_bytes: registered.file.num_bytes,
        file_status: "Registered".into(),
        file_attributes: FileAttributes { metadata_status: MetadataStatus::NotExtracted, content: Default::default() },
    }
}
