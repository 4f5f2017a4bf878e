//! File operations (files-api §4).

use std::ops::Range;

use bytes::Bytes;
use ferry_api::files::{
    ContentAttributes, FileAttributes, FileIdentity, FileList, FileMetadata, FileStatus as WireStatus, FilesInfo,
    FilesPage, ListFilesQuery, MetadataStatus as WireMetadataStatus,
};
use ferry_blob::{ByteStream, SourceError};
use ferry_core::base64_stream::Base64Decoder;
use ferry_core::blob_key::BlobKey;
use ferry_core::cursor::Cursor;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{FileUid, OrgId};
use ferry_core::names::validate_file_name;
use ferry_core::range::{RangeRequest, parse_range};
use ferry_core::upload::file_type_from_name;
use ferry_meta::{FileRecord, ListPosition, NewFile};
use futures_util::{Stream, StreamExt};

use super::{BadRequest, Result, Service, ServiceError, now_secs, rfc3339};

/// A file and its bytes, ready to stream.
pub struct Download {
    pub file: FileRecord,
    /// The bytes served: the whole file, or the one range asked for.
    pub range: Range<u64>,
    pub partial: bool,
    pub bytes: ByteStream,
}

/// How the file part of a simple upload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Base64,
}

/// The file part of a simple upload, as the client described it.
pub struct IncomingFile<'a> {
    pub file_name: &'a str,
    pub content_type: Option<&'a str>,
    pub encoding: Encoding,
    /// The request's declared length, when it had one: an upper bound of
    /// the file's size, for refusing early what cannot fit the quota.
    pub declared_length: Option<u64>,
}

pub fn metadata(file: &FileRecord) -> FileMetadata {
    let file_status = match file.status {
        FileStatus::Registered => WireStatus::Registered,
        FileStatus::Ingesting => WireStatus::Ingesting,
        FileStatus::Ingested => WireStatus::Ingested,
        FileStatus::Corrupt => WireStatus::Corrupt,
    };
    let metadata_status = match file.metadata_status {
        MetadataStatus::NotExtracted => WireMetadataStatus::NotExtracted,
        MetadataStatus::Extracted => WireMetadataStatus::Extracted,
        MetadataStatus::Failed => WireMetadataStatus::Failed,
    };
    let content: ContentAttributes =
        file.attributes.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default();
    FileMetadata {
        file_id: file.file_name.clone(),
        file_uid: file.file_uid.to_string(),
        is_valid: file.status.is_downloadable(),
        file_type: file.file_type.clone(),
        num_bytes: file.num_bytes,
        file_status,
        ingested: file.status == FileStatus::Ingested,
        file_index: file.file_index,
        file_tags: Default::default(),
        created_at: rfc3339(file.created_at.max(0) as u64),
        checksum_crc32c: file.checksum_crc32c.map(|crc| crc.to_base64()),
        file_attributes: FileAttributes { metadata_status, content },
    }
}

/// A file's ETag: its uid, which no other bytes ever have.
pub fn etag(file: &FileRecord) -> String {
    format!("\"{}\"", file.file_uid)
}

/// A client's path as a file name: its last component.
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

impl Service {
    async fn file(&self, org_id: &OrgId, file_name: &str) -> Result<FileRecord> {
        self.meta.get_file(org_id, file_name).await?.ok_or_else(|| ServiceError::FileNotFound(file_name.to_owned()))
    }

    pub async fn file_metadata(&self, org_id: &OrgId, file_name: &str) -> Result<FileMetadata> {
        Ok(metadata(&self.file(org_id, file_name).await?))
    }

    /// The org's files, as a page or, for the older clients, a shard
    /// (files-api §4.3).
    pub async fn list_files(&self, org_id: &OrgId, query: &ListFilesQuery) -> Result<FileList> {
        if query.is_shard() {
            Ok(FileList::Shard(self.list_files_shard(org_id, query).await?))
        } else {
            Ok(FileList::Page(self.list_files_page(org_id, query).await?))
        }
    }

    async fn list_files_page(&self, org_id: &OrgId, query: &ListFilesQuery) -> Result<FilesPage> {
        let mut problems = Vec::new();
        let limit = query.limit.unwrap_or(ListFilesQuery::DEFAULT_LIMIT);
        if !(1..=ListFilesQuery::MAX_ITEMS).contains(&limit) {
            problems.push(BadRequest::InvalidField {
                field: "limit".into(),
                reason: format!("must be between 1 and {}", ListFilesQuery::MAX_ITEMS),
            });
        }
        let mut cursor = |field: &str, text: Option<&str>| {
            let bound = Cursor::decode(text?, org_id);
            bound.map_err(|reason| problems.push(BadRequest::Cursor { field: field.into(), reason })).ok()
        };
        let from = match (cursor("after", query.after.as_deref()), cursor("before", query.before.as_deref())) {
            (None, None) => ListPosition::Newest,
            (Some(bound), None) => ListPosition::OlderThan(bound),
            (None, Some(bound)) => ListPosition::NewerThan(bound),
            (Some(_), Some(_)) => {
                problems.push(BadRequest::InvalidField {
                    field: "".into(),
                    reason: "`after` and `before` go different ways: give one of them".into(),
                });
                ListPosition::Newest
            }
        };
        if !problems.is_empty() {
            return Err(ServiceError::BadRequest(problems));
        }
        let page = self.meta.list_files_page(org_id, query.file_type.as_deref(), from, limit as u64).await?;
        let cursor = |bound: i64| Cursor { org_id: *org_id, bound }.encode();
        Ok(FilesPage {
            data: page.files.iter().map(metadata).collect(),
            has_more: if matches!(from, ListPosition::NewerThan(_)) { page.newer } else { page.older }.is_some(),
            next_cursor: page.older.map(cursor),
            prev_cursor: page.newer.map(cursor),
        })
    }

    async fn list_files_shard(&self, org_id: &OrgId, query: &ListFilesQuery) -> Result<Vec<FileMetadata>> {
        let mut problems = Vec::new();
        let shard_index = query.shard_index.unwrap_or(-1);
        if shard_index < -1 {
            problems.push(BadRequest::InvalidField {
                field: "shard_index".into(),
                reason: "must be -1 (from the start) or a shard number from 0".into(),
            });
        }
        // -1, the documented default, is the most a shard holds.
        let size = match query.max_items_per_shard.unwrap_or(-1) {
            -1 => ListFilesQuery::MAX_ITEMS,
            n => n,
        };
        if !(1..=ListFilesQuery::MAX_ITEMS).contains(&size) {
            problems.push(BadRequest::InvalidField {
                field: "max_items_per_shard".into(),
                reason: format!("must be -1 (the most, {0}) or between 1 and {0}", ListFilesQuery::MAX_ITEMS),
            });
        }
        if !problems.is_empty() {
            return Err(ServiceError::BadRequest(problems));
        }
        let size = size as u64;
        // A shard past any list is empty, however large its number.
        let offset = (shard_index.max(0) as u64).saturating_mul(size).min(i64::MAX as u64);
        let files = self.meta.list_files_shard(org_id, query.file_type.as_deref(), offset, size).await?;
        Ok(files.iter().map(metadata).collect())
    }

    pub async fn files_info(&self, org_id: &OrgId) -> Result<FilesInfo> {
        let stats = self.meta.file_stats(org_id).await?;
        Ok(FilesInfo {
            num_files: stats.num_files,
            num_bytes: stats.num_bytes,
            num_ingested: stats.num_ingested,
            last_updated: stats.last_updated as f64,
        })
    }

    /// Frees the name at once; the bytes go after the deletion grace.
    pub async fn delete_file(&self, org_id: &OrgId, file_name: &str) -> Result<FileIdentity> {
        let now = now_secs();
        let delete_after = now + self.settings.deletion_grace.as_secs() as i64;
        let file = self
            .meta
            .delete_file(org_id, file_name, now, delete_after)
            .await?
            .ok_or_else(|| ServiceError::FileNotFound(file_name.to_owned()))?;
        Ok(FileIdentity { is_valid: true, file_id: file.file_name, file_uid: file.file_uid.to_string() })
    }

    /// Opens a file for download, whole or the one range a `Range` header
    /// asks for. With `if_range`, the range is served only if that is the
    /// file's current ETag (RFC 9110 §13.1.5): a client resuming from bytes
    /// of an older file under this name gets the whole new file, never a
    /// piece of it to splice onto the old one.
    pub async fn download(
        &self,
        org_id: &OrgId,
        file_name: &str,
        range: Option<&str>,
        if_range: Option<&str>,
    ) -> Result<Download> {
        let file = self.file(org_id, file_name).await?;
        if !file.status.is_downloadable() {
            return Err(ServiceError::FileNotDownloadable(file_name.to_owned()));
        }
        // A date never matches: files have no modification time to compare.
        let range = range.filter(|_| if_range.is_none_or(|validator| validator.trim() == etag(&file)));
        let (range, partial) = match range.map(|r| parse_range(r, file.num_bytes)) {
            None | Some(RangeRequest::Whole) => (0..file.num_bytes, false),
            Some(RangeRequest::Part(range)) => (range, true),
            Some(RangeRequest::Unsatisfiable) => return Err(ServiceError::RangeNotSatisfiable { len: file.num_bytes }),
        };
        let sent = self.metrics.bytes_sent.clone();
        let bytes = self.storage.bytes().read(&file.file_uid, range.clone()).await?.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                sent.inc_by(chunk.len() as u64);
            }
        });
        Ok(Download { file, range, partial, bytes: Box::pin(bytes) })
    }

    /// Checks a simple upload's name and type before any byte is stored.
    fn check_incoming(&self, incoming: &IncomingFile<'_>) -> Result<(String, String)> {
        let file_name = base_name(incoming.file_name).to_owned();
        let declared = incoming.content_type.filter(|t| !t.is_empty() && *t != "application/octet-stream");
        let file_type = declared
            .map(|t| t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase())
            .or_else(|| file_type_from_name(&file_name).map(str::to_owned))
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let mut problems = Vec::new();
        if let Err(e) = validate_file_name(&file_name) {
            problems.push(BadRequest::FileName(e));
        }
        if !self.policy.allows(&file_type) {
            problems.push(BadRequest::FileType {
                given: file_type.clone(),
                allowed: self.policy.allowed_file_types().to_vec(),
            });
        }
        if !problems.is_empty() {
            return Err(ServiceError::BadRequest(problems));
        }
        Ok((file_name, file_type))
    }

    /// Stores a file sent whole (files-api §4.1, §4.2) and registers it under
    /// its name. Nothing is registered, and no byte kept, unless it all
    /// arrived, fit the limit and (for base64) decoded.
    pub async fn simple_upload<S, E>(&self, org_id: &OrgId, incoming: IncomingFile<'_>, body: S) -> Result<FileIdentity>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (file_name, file_type) = self.check_incoming(&incoming)?;
        let limit = self.settings.max_simple_upload;
        if let (Some(quota), Some(declared)) = (self.settings.org_quota(), incoming.declared_length) {
            // Early and approximate (the framing counts too); the exact,
            // atomic check comes at registration.
            let used = self.meta.org_usage(org_id).await?;
            if used + declared.min(limit) > quota {
                return Err(ServiceError::QuotaExceeded { quota, used });
            }
        }
        let file_uid = FileUid::generate();
        let now = now_secs();
        let guard = self
            .meta
            .enqueue_blob_deletion(&BlobKey::File(file_uid), now + self.settings.orphan_grace.as_secs().max(1) as i64)
            .await?;

        let received = self.metrics.bytes_received.clone();
        let body = body.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                received.inc_by(chunk.len() as u64);
            }
        });
        let source = limited_and_decoded(body, limit, incoming.encoding);
        let written = self.storage.bytes().write_file(&file_uid, limit, source).await;
        if written.is_err() {
            // Nothing was kept: the guard has nothing left to cover.
            self.meta.finish_blob_deletion(guard).await?;
        }
        let digest = written?;
        let file = NewFile {
            file_uid,
            org_id: *org_id,
            file_name,
            file_type,
            num_bytes: digest.num_bytes,
            checksum_crc32c: Some(digest.crc32c),
        };
        let delete_displaced_after = now_secs() + self.settings.deletion_grace.as_secs() as i64;
        let registered = match self
            .meta
            .register_file(&file, guard, self.settings.org_quota(), now_secs(), delete_displaced_after)
            .await
        {
            Ok(registered) => registered,
            Err(e) => {
                // Not registered: the bytes go now, or through the guard.
                if self.storage.bytes().delete(&BlobKey::File(file_uid)).await.is_ok() {
                    let _ = self.meta.finish_blob_deletion(guard).await;
                }
                return Err(e.into());
            }
        };
        self.extractor.spawn(file_uid);
        Ok(FileIdentity { is_valid: true, file_id: registered.file.file_name, file_uid: file_uid.to_string() })
    }
}

/// The bytes to store from a body: counted against `limit` as sent (the
/// encoded size, for base64), and decoded from base64 as they stream.
fn limited_and_decoded<'a, S, E>(body: S, limit: u64, encoding: Encoding) -> ferry_blob::ByteSource<'a>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'a,
    E: std::fmt::Display,
{
    struct State<B> {
        body: B,
        decoder: Option<Base64Decoder>,
        sent: u64,
        done: bool,
    }
    let decoder = (encoding == Encoding::Base64).then(Base64Decoder::default);
    let state = State { body: Box::pin(body), decoder, sent: 0, done: false };
    Box::pin(futures_util::stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        let item = match state.body.next().await {
            Some(Ok(chunk)) => {
                state.sent += chunk.len() as u64;
                if state.sent > limit {
                    Err(SourceError::TooLarge { limit })
                } else if let Some(decoder) = state.decoder.as_mut() {
                    let mut out = Vec::with_capacity(chunk.len() / 4 * 3);
                    decoder
                        .push(&chunk, &mut out)
                        .map(|()| Bytes::from(out))
                        .map_err(|e| SourceError::Invalid(e.to_string()))
                } else {
                    Ok(chunk)
                }
            }
            Some(Err(e)) => Err(SourceError::BrokeOff(e.to_string())),
            None => {
                state.done = true;
                let decoder = state.decoder.take()?;
                let mut out = Vec::new();
                decoder.finish(&mut out).map(|()| Bytes::from(out)).map_err(|e| SourceError::Invalid(e.to_string()))
            }
        };
        state.done |= item.is_err();
        Some((item, state))
    }))
}
