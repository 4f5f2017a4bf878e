//! `ferry admin check`: do the metadata and the stored bytes agree?
//!
//! Every file that holds a name must have its bytes, of its size; every
//! upload in progress its storage; and every byte stored must belong to
//! one of those or be queued for deletion. Anything else is reported: a
//! missing file is data lost, an unclaimed blob is space leaked.

use std::collections::HashSet;

use ferry_blob::BlobStore;
use ferry_core::blob_key::BlobKey;
use ferry_core::ids::{FileUid, UploadId};
use ferry_meta::MetadataStore;

use super::Result;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub files: usize,
    pub uploads: usize,
    pub queued: usize,
    pub problems: Vec<String>,
}

pub async fn check(meta: &dyn MetadataStore, blob: &dyn BlobStore) -> Result<CheckReport> {
    let inventory = meta.inventory().await?;
    let stored = blob.inventory().await?;
    let mut report = CheckReport {
        files: inventory.named_files.len(),
        uploads: inventory.active_uploads.len(),
        queued: inventory.queued.len(),
        problems: Vec::new(),
    };

    // What the deletion queue will delete may be there or not.
    let mut queued_files: HashSet<FileUid> = HashSet::new();
    let mut queued_uploads: HashSet<UploadId> = HashSet::new();
    for key in &inventory.queued {
        match key {
            BlobKey::File(uid) => {
                queued_files.insert(*uid);
            }
            BlobKey::Upload { upload_id, file_uid, .. } => {
                queued_uploads.insert(*upload_id);
                queued_files.insert(*file_uid);
            }
        }
    }
    let active_ids: HashSet<UploadId> = inventory.active_uploads.iter().map(|u| u.upload_id).collect();
    // A complete may have turned an upload into its file just before a crash.
    let active_files: HashSet<FileUid> = inventory.active_uploads.iter().map(|u| u.file_uid).collect();

    let stored_files: std::collections::HashMap<FileUid, u64> = stored.files.iter().copied().collect();
    for (uid, size) in &inventory.named_files {
        match stored_files.get(uid) {
            None => report.problems.push(format!("file {uid} holds a name but its bytes are missing")),
            Some(stored) if stored != size => {
                report.problems.push(format!("file {uid} should have {size} bytes; the store has {stored}"))
            }
            Some(_) => {}
        }
    }
    let named: HashSet<FileUid> = inventory.named_files.iter().map(|(uid, _)| *uid).collect();
    for (uid, _) in &stored.files {
        if !named.contains(uid) && !queued_files.contains(uid) && !active_files.contains(uid) {
            report
                .problems
                .push(format!("file {uid}'s bytes are stored but nothing refers to them or will delete them"));
        }
    }

    let stored_uploads: HashSet<UploadId> = stored.uploads.iter().copied().collect();
    let stored_upload_files: HashSet<FileUid> = stored.uploads_of_files.iter().copied().collect();
    for upload in &inventory.active_uploads {
        let has_storage = stored_uploads.contains(&upload.upload_id)
            || stored_upload_files.contains(&upload.file_uid)
            || stored_files.contains_key(&upload.file_uid);
        if !has_storage {
            report.problems.push(format!("upload {} is in progress but has no storage", upload.upload_id));
        }
    }
    for upload_id in &stored.uploads {
        if !active_ids.contains(upload_id) && !queued_uploads.contains(upload_id) {
            report.problems.push(format!("storage of upload {upload_id} is left over"));
        }
    }
    for uid in &stored.uploads_of_files {
        if !active_files.contains(uid) && !queued_files.contains(uid) {
            report.problems.push(format!("an unfinished write of file {uid} is left over"));
        }
    }
    for stranger in &stored.strangers {
        report.problems.push(format!("`{stranger}` in the store is not ferry's"));
    }
    Ok(report)
}
