//! The metadata flows, written once for both engines: each method is one
//! transaction (or one read) of plain SQL that SQLite and PostgreSQL both
//! speak, with the engines' differences behind [`Dialect`].
//!
//! Lock order, which PostgreSQL needs and SQLite (one writer at a time)
//! keeps for free: the upload's row, then the org's, then files. A
//! transaction that will update a row it reads first locks it as it reads
//! it ([`crate::engine::Dialect::lock_for_update`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{FileUid, KeyId, OrgId, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::{ClaimProblems, RecordedPart, TokenClaim, UploadState, check_checkpoint};

use ferry_core::ids::{EndpointId, EventId};
use ferry_core::webhook::EventType;

use crate::engine::{Engine, Flow, Row, Tx, Value};
use crate::events::{
    Attempt, Delivery, Departure, Event, FailedDelivery, Subject, UnixMillis, WebhookEndpoint, subject_from_json,
    subject_to_json,
};
use crate::{
    AbortOutcome, ApiKeyRecord, BlobDeletion, BlobDeletionId, Deletions, FilePage, FileRecord, FileStats, Files,
    Inventory, ListPosition, MetaError, MetadataStore, NewFile, OrgRecord, Orgs, Registered, Registration, Result,
    UnixSeconds, UploadRecord, Uploads, Webhooks, Workload, params,
};

/// A flow from its body: `flow!(|tx| …)`.
macro_rules! flow {
    (|$tx:ident| $body:expr) => {
        flow_fn(move |$tx: &mut dyn Tx| Box::pin(async move { $body }))
    };
}

/// Gives a flow's closure the signature the engines take (a closure alone
/// does not infer that its future borrows its argument for any lifetime).
fn flow_fn<T, F: for<'t> FnOnce(&'t mut dyn Tx) -> Flow<'t, T>>(flow: F) -> F {
    flow
}

/// The metadata store over an engine.
pub struct Store<E> {
    engine: E,
}

impl<E: Engine> Store<E> {
    pub fn new(engine: E) -> Self {
        Self { engine }
    }

    /// The first row of one read, decoded; on the hot path if `hot`.
    async fn read_opt<T: Send + 'static>(
        &self,
        hot: bool,
        sql: String,
        values: impl Into<Vec<Value>>,
        from: fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let values = values.into();
        let read = flow!(|tx| tx.query_opt(&sql, &values).await?.as_ref().map(from).transpose());
        if hot { self.engine.lookup(read).await } else { self.engine.read(read).await }
    }

    /// Every row of one read, decoded.
    async fn read_all<T: Send + 'static>(
        &self,
        sql: String,
        values: impl Into<Vec<Value>>,
        from: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let values = values.into();
        self.engine.read(flow!(|tx| all(tx.query(&sql, &values).await?, from))).await
    }

    /// One statement in a write transaction of its own: the rows it changed.
    async fn write_one(&self, sql: &'static str, values: impl Into<Vec<Value>>) -> Result<u64> {
        let values = values.into();
        self.engine.write(flow!(|tx| tx.execute(sql, &values).await)).await
    }
}

fn bad(what: &str) -> MetaError {
    MetaError::Backend(format!("bad {what} in the database").into())
}

const UPLOAD_COLUMNS: &str = "upload_id, org_id, file_uid, file_name, file_type, num_bytes, part_size, state, \
     created_at, last_activity_at, store_upload_id";

fn upload_from_row(row: &Row) -> Result<UploadRecord> {
    Ok(UploadRecord {
        upload_id: row.parse(0)?,
        org_id: row.parse(1)?,
        file_uid: row.parse(2)?,
        file_name: row.text(3)?,
        file_type: row.text(4)?,
        num_bytes: row.int(5)? as u64,
        part_size: row.int(6)? as u64,
        state: UploadState::parse(&row.text(7)?).ok_or_else(|| bad("upload state"))?,
        created_at: row.int(8)?,
        last_activity_at: row.int(9)?,
        store_upload_id: row.opt_text(10)?,
    })
}

const FILE_COLUMNS: &str = "file_uid, org_id, file_name, file_type, num_bytes, status, checksum_crc32c, file_index, \
     created_at, metadata_status, attributes";

fn file_from_row(row: &Row) -> Result<FileRecord> {
    Ok(FileRecord {
        file_uid: row.parse(0)?,
        org_id: row.parse(1)?,
        file_name: row.text(2)?,
        file_type: row.text(3)?,
        num_bytes: row.int(4)? as u64,
        status: FileStatus::parse(&row.text(5)?).ok_or_else(|| bad("file status"))?,
        checksum_crc32c: row.opt_int(6)?.map(|crc| Crc32c(crc as u32)),
        file_index: row.int(7)? as u64,
        created_at: row.int(8)?,
        metadata_status: MetadataStatus::parse(&row.text(9)?).ok_or_else(|| bad("metadata status"))?,
        attributes: row.opt_text(10)?,
    })
}

const KEY_COLUMNS: &str = "key_id, org_id, secret_hash, created_at, revoked_at";

fn key_from_row(row: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: row.parse(0)?,
        org_id: row.parse(1)?,
        secret_hash: row.bytes(2)?,
        created_at: row.int(3)?,
        revoked_at: row.opt_int(4)?,
    })
}

fn org_from_row(row: &Row) -> Result<OrgRecord> {
    Ok(OrgRecord { org_id: row.parse(0)?, name: row.text(1)?, created_at: row.int(2)? })
}

fn all<T>(rows: Vec<Row>, from: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(from).collect()
}

/// `last_activity_at` moved forward to `$2`, never back.
const TOUCH: &str = "UPDATE uploads SET last_activity_at = CASE WHEN last_activity_at < $2 THEN $2 \
     ELSE last_activity_at END WHERE upload_id = $1";

/// The upload's state, locking its row for update when `lock` (see the
/// module's lock order); [`MetaError::UploadNotFound`] if it is not the
/// org's.
async fn upload_state(
    tx: &mut dyn Tx,
    org_id: Option<&OrgId>,
    upload_id: &UploadId,
    lock: bool,
) -> Result<UploadState> {
    let lock = if lock { tx.dialect().lock_for_update } else { "" };
    let sql = format!("SELECT org_id, state FROM uploads WHERE upload_id = $1 {lock}");
    match tx.query_opt(&sql, &params![upload_id]).await? {
        Some(row) if org_id.is_none_or(|o| row.text(0).is_ok_and(|t| t == o.to_string())) => {
            UploadState::parse(&row.text(1)?).ok_or_else(|| bad("upload state"))
        }
        _ => Err(MetaError::UploadNotFound(*upload_id)),
    }
}

/// Locks the upload's row and checks it is active, for writes that must
/// not race a complete or an abort.
async fn require_active(tx: &mut dyn Tx, org_id: Option<&OrgId>, upload_id: &UploadId) -> Result<()> {
    match upload_state(tx, org_id, upload_id, true).await? {
        UploadState::Active => Ok(()),
        other => Err(MetaError::UploadNotActive(*upload_id, other)),
    }
}

async fn read_parts(tx: &mut dyn Tx, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>> {
    let rows = tx
        .query(
            "SELECT part_number, part_token, crc32c, num_bytes FROM upload_parts WHERE upload_id = $1",
            &params![upload_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let part = RecordedPart {
                part_number: r.int(0)? as u32,
                token: PartToken::from_wire(&r.text(1)?),
                crc32c: r.opt_int(2)?.map(|crc| Crc32c(crc as u32)),
                num_bytes: r.int(3)? as u64,
            };
            Ok((part.part_number, part))
        })
        .collect()
}

async fn enqueue_deletion(tx: &mut dyn Tx, key: &BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
    let row = tx
        .query_one(
            "INSERT INTO blob_deletions (blob_key, not_before) VALUES ($1, $2) RETURNING id",
            &params![key, not_before],
        )
        .await?;
    Ok(BlobDeletionId(row.int(0)?))
}

/// Removes the deletion-queue entry that guarded bytes written ahead of
/// their row. If a janitor has already claimed it, the bytes are being (or
/// were) deleted: the row must not be written, or it would point at nothing.
async fn take_guard(tx: &mut dyn Tx, guard: BlobDeletionId) -> Result<()> {
    let taken =
        tx.execute("DELETE FROM blob_deletions WHERE id = $1 AND claimed_until IS NULL", &params![guard.0]).await?;
    if taken == 0 {
        return Err(MetaError::GuardLost);
    }
    Ok(())
}

async fn usage(tx: &mut dyn Tx, org_id: &OrgId) -> Result<u64> {
    let row = tx
        .query_one(
            "SELECT CAST((SELECT num_bytes FROM orgs WHERE org_id = $1)
                 + COALESCE((SELECT SUM(num_bytes) FROM uploads WHERE org_id = $1 AND state = 'active'), 0) AS BIGINT)",
            &params![org_id],
        )
        .await?;
    Ok(row.int(0)? as u64)
}

/// Refuses `adding` bytes that would take the org past `quota`. Locks the
/// org's row first, so concurrent checks in one org take turns.
async fn within_quota(tx: &mut dyn Tx, org_id: &OrgId, adding: u64, quota: Option<u64>) -> Result<()> {
    let Some(quota) = quota else { return Ok(()) };
    let lock = tx.dialect().lock_for_update;
    tx.query(&format!("SELECT 1 FROM orgs WHERE org_id = $1 {lock}"), &params![org_id]).await?;
    let used = usage(tx, org_id).await?;
    if used + adding > quota {
        return Err(MetaError::QuotaExceeded { quota, used });
    }
    Ok(())
}

async fn drop_upload_parts(tx: &mut dyn Tx, upload_id: &UploadId) -> Result<()> {
    tx.execute("DELETE FROM checkpoints WHERE upload_id = $1", &params![upload_id]).await?;
    tx.execute("DELETE FROM upload_parts WHERE upload_id = $1", &params![upload_id]).await?;
    Ok(())
}

/// A change to an org's totals over the files that hold names.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    files: i64,
    bytes: i64,
    ingested: i64,
}

impl Totals {
    /// What one file that holds its name counts for.
    fn of(num_bytes: u64, status: FileStatus) -> Self {
        Self { files: 1, bytes: num_bytes as i64, ingested: i64::from(status == FileStatus::Ingested) }
    }

    fn minus(self, other: Self) -> Self {
        Self {
            files: self.files - other.files,
            bytes: self.bytes - other.bytes,
            ingested: self.ingested - other.ingested,
        }
    }
}

/// Moves the org's `files_changed_at` forward and its totals by `change`
/// (and locks its row). The totals change in the transaction that changes
/// the files, so they are never off by a crash.
async fn files_changed(tx: &mut dyn Tx, org_id: &OrgId, now: UnixSeconds, change: Totals) -> Result<()> {
    tx.execute(
        "UPDATE orgs SET files_changed_at = CASE WHEN files_changed_at < $2 THEN $2 ELSE files_changed_at END,
             num_files = num_files + $3, num_bytes = num_bytes + $4, num_ingested = num_ingested + $5
         WHERE org_id = $1",
        &params![org_id, now, change.files, change.bytes, change.ingested],
    )
    .await?;
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "endpoint_id, org_id, url, secret, event_types, created_at";

fn endpoint_from_row(row: &Row) -> Result<WebhookEndpoint> {
    let types = row.text(4)?;
    Ok(WebhookEndpoint {
        endpoint_id: row.parse(0)?,
        org_id: row.parse(1)?,
        url: row.text(2)?,
        secret: row.parse(3)?,
        event_types: types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad("event type"))?,
        created_at: row.int(5)?,
    })
}

/// Records an event for the org's endpoints that want it, in the caller's
/// transaction: it commits with the change it reports or not at all. With
/// no such endpoint it writes nothing.
async fn record_event(
    tx: &mut dyn Tx,
    org_id: &OrgId,
    event_type: EventType,
    subject: Subject,
    now: UnixSeconds,
) -> Result<()> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND removed_at IS NULL");
    let endpoints = all(tx.query(&sql, &params![org_id]).await?, endpoint_from_row)?;
    let wanting: Vec<&WebhookEndpoint> = endpoints.iter().filter(|e| e.wants(event_type)).collect();
    if wanting.is_empty() {
        return Ok(());
    }
    let event_id = EventId::generate();
    let at = now * 1000;
    tx.execute(
        "INSERT INTO events (event_id, org_id, event_type, created_at, subject) VALUES ($1, $2, $3, $4, $5)",
        &params![&event_id, org_id, event_type.as_str(), at, subject_to_json(&subject)],
    )
    .await?;
    for endpoint in wanting {
        tx.execute(
            "INSERT INTO deliveries (event_id, endpoint_id, state, next_attempt_at) VALUES ($1, $2, 'pending', $3)",
            &params![&event_id, &endpoint.endpoint_id, at],
        )
        .await?;
    }
    Ok(())
}

/// Registers a file under its name in the calling transaction: takes the
/// next file_index (which locks the org's row: registrations in one org
/// queue here), moves the name unless a corrupt file would take it from a
/// good one, and queues the displaced file's bytes for deletion.
async fn register(
    tx: &mut dyn Tx,
    new: &NewFile,
    status: FileStatus,
    now: UnixSeconds,
    delete_displaced_after: UnixSeconds,
) -> Result<Registered> {
    let file_index = tx
        .query_one(
            "UPDATE orgs SET next_file_index = next_file_index + 1 WHERE org_id = $1 RETURNING next_file_index - 1",
            &params![&new.org_id],
        )
        .await?
        .int(0)?;
    let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE org_id = $1 AND file_name = $2 AND holds_name = TRUE");
    let holder = tx.query_opt(&sql, &params![&new.org_id, new.file_name.as_str()]).await?;
    let holder = holder.as_ref().map(file_from_row).transpose()?;
    let holder_is_good = holder.as_ref().is_some_and(|old| old.status.is_downloadable());
    let holds_name = status.is_downloadable() || !holder_is_good;
    let mut displaced = None;
    let mut change = Totals::default();
    if holds_name {
        change = Totals::of(new.num_bytes, status);
        if let Some(old) = holder {
            tx.execute(
                "UPDATE files SET holds_name = FALSE, deleted_at = $2 WHERE file_uid = $1",
                &params![&old.file_uid, now],
            )
            .await?;
            enqueue_deletion(tx, &BlobKey::File(old.file_uid), delete_displaced_after).await?;
            displaced = Some(old.file_uid);
            change = change.minus(Totals::of(old.num_bytes, old.status));
            let departed = Subject::DepartedFile(old, Departure::Replaced);
            record_event(tx, &new.org_id, EventType::FileDeleted, departed, now).await?;
        }
    }
    if !holds_name {
        // Recorded for the operator, but nothing can reach its bytes.
        enqueue_deletion(tx, &BlobKey::File(new.file_uid), now).await?;
    }
    let file = FileRecord {
        file_uid: new.file_uid,
        org_id: new.org_id,
        file_name: new.file_name.clone(),
        file_type: new.file_type.clone(),
        num_bytes: new.num_bytes,
        status,
        checksum_crc32c: new.checksum_crc32c,
        file_index: file_index as u64,
        created_at: now,
        metadata_status: MetadataStatus::NotExtracted,
        attributes: None,
    };
    tx.execute(
        &format!(
            "INSERT INTO files ({FILE_COLUMNS}, holds_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &params![
            &file.file_uid,
            &file.org_id,
            file.file_name.as_str(),
            file.file_type.as_str(),
            file.num_bytes,
            file.status.as_str(),
            file.checksum_crc32c.map(|crc| i64::from(crc.0)),
            file.file_index,
            file.created_at,
            file.metadata_status.as_str(),
            file.attributes.clone(),
            holds_name
        ],
    )
    .await?;
    files_changed(tx, &new.org_id, now, change).await?;
    if holds_name && status.is_downloadable() {
        record_event(tx, &new.org_id, EventType::FileRegistered, Subject::File(file.clone()), now).await?;
    }
    Ok(Registered { file, holds_name, displaced })
}

#[async_trait]
impl<E: Engine> MetadataStore for Store<E> {
    async fn ping(&self) -> Result<()> {
        self.engine.read(flow!(|tx| tx.query("SELECT 1", &[]).await.map(drop))).await
    }

    async fn workload(&self, now: UnixSeconds) -> Result<Workload> {
        // Each count is served by a partial index made for the work it counts.
        let sql = "SELECT
                (SELECT COUNT(*) FROM uploads WHERE state = 'active'),
                (SELECT COUNT(*) FROM blob_deletions
                 WHERE not_before <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)),
                (SELECT COUNT(*) FROM files WHERE status IN ('registered', 'ingesting') AND deleted_at IS NULL),
                (SELECT COUNT(*) FROM deliveries WHERE state = 'pending'),
                (SELECT COUNT(*) FROM deliveries WHERE state = 'failed')"
            .into();
        let workload = |r: &Row| {
            Ok(Workload {
                active_uploads: r.int(0)? as u64,
                deletions_due: r.int(1)? as u64,
                files_to_ingest: r.int(2)? as u64,
                deliveries_pending: r.int(3)? as u64,
                deliveries_failed: r.int(4)? as u64,
            })
        };
        Ok(self.read_opt(false, sql, params![now], workload).await?.unwrap_or_default())
    }
}

#[async_trait]
impl<E: Engine> Orgs for Store<E> {
    async fn create_org(&self, name: &str, now: UnixSeconds) -> Result<OrgRecord> {
        let org = OrgRecord { org_id: OrgId::generate(), name: name.to_owned(), created_at: now };
        let sql = "INSERT INTO orgs (org_id, name, created_at) VALUES ($1, $2, $3)";
        match self.write_one(sql, params![&org.org_id, name, now]).await {
            Ok(_) => Ok(org),
            Err(MetaError::Duplicate(_)) => Err(MetaError::OrgExists(org.name)),
            Err(e) => Err(e),
        }
    }

    async fn find_org(&self, name: &str) -> Result<Option<OrgRecord>> {
        let sql = "SELECT org_id, name, created_at FROM orgs WHERE name = $1".into();
        self.read_opt(false, sql, params![name], org_from_row).await
    }

    async fn bootstrap(&self, org_name: &str, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<bool> {
        let (org_name, key_id, secret_hash) = (org_name.to_owned(), *key_id, secret_hash.to_vec());
        let created = self
            .engine
            .write(flow!(|tx| {
                let empty = tx.query_one("SELECT NOT EXISTS (SELECT 1 FROM orgs)", &[]).await?.bool(0)?;
                if !empty {
                    return Ok(false);
                }
                let org_id = OrgId::generate();
                tx.execute(
                    "INSERT INTO orgs (org_id, name, created_at) VALUES ($1, $2, $3)",
                    &params![&org_id, org_name, now],
                )
                .await?;
                tx.execute(
                    &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, NULL)"),
                    &params![&key_id, &org_id, secret_hash, now],
                )
                .await?;
                Ok(true)
            }))
            .await;
        match created {
            // Another node, starting at the same moment, bootstrapped first.
            Err(MetaError::Duplicate(_)) => Ok(false),
            other => other,
        }
    }

    async fn create_api_key(&self, org_id: &OrgId, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<()> {
        let sql = "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)";
        self.write_one(sql, params![key_id, org_id, secret_hash, now]).await.map(drop)
    }

    async fn find_api_key(&self, key_id: &KeyId) -> Result<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1");
        self.read_opt(true, sql, params![key_id], key_from_row).await
    }

    async fn list_api_keys(&self, org_id: &OrgId) -> Result<Vec<ApiKeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at, key_id");
        self.read_all(sql, params![org_id], key_from_row).await
    }

    async fn revoke_api_key(&self, key_id: &KeyId, now: UnixSeconds) -> Result<bool> {
        let sql = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1";
        Ok(self.write_one(sql, params![key_id, now]).await? == 1)
    }
}

#[async_trait]
impl<E: Engine> Uploads for Store<E> {
    async fn insert_upload(&self, upload: &UploadRecord, guard: BlobDeletionId, quota: Option<u64>) -> Result<()> {
        let u = upload.clone();
        self.engine
            .write(flow!(|tx| {
                within_quota(tx, &u.org_id, u.num_bytes, quota).await?;
                take_guard(tx, guard).await?;
                let sql = format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                );
                let values = &params![
                    &u.upload_id,
                    &u.org_id,
                    &u.file_uid,
                    u.file_name.as_str(),
                    u.file_type.as_str(),
                    u.num_bytes,
                    u.part_size,
                    u.state.as_str(),
                    u.created_at,
                    u.last_activity_at,
                    u.store_upload_id.clone()
                ];
                tx.execute(&sql, values).await.map(drop)
            }))
            .await
    }

    async fn get_upload(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1 AND org_id = $2");
        self.read_opt(true, sql, params![upload_id, org_id], upload_from_row).await
    }

    async fn get_upload_for_part_put(&self, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1");
        self.read_opt(true, sql, params![upload_id], upload_from_row).await
    }

    async fn find_resumable_upload(&self, org_id: &OrgId, file_name: &str) -> Result<Option<UploadRecord>> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE org_id = $1 AND file_name = $2 AND state = 'active'
             ORDER BY created_at DESC, upload_id DESC LIMIT 1"
        );
        self.read_opt(false, sql, params![org_id, file_name], upload_from_row).await
    }

    async fn touch_upload(&self, upload_id: &UploadId, now: UnixSeconds) -> Result<()> {
        self.write_one(TOUCH, params![upload_id, now]).await.map(drop)
    }

    async fn list_parts(&self, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>> {
        let upload_id = *upload_id;
        self.engine.read(flow!(|tx| read_parts(tx, &upload_id).await)).await
    }

    async fn list_checkpoints(&self, upload_id: &UploadId) -> Result<Vec<TokenClaim>> {
        let sql = "SELECT part_number, part_token FROM checkpoints WHERE upload_id = $1".into();
        self.read_all(sql, params![upload_id], |r| {
            Ok(TokenClaim { part_number: r.int(0)? as u32, token: PartToken::from_wire(&r.text(1)?) })
        })
        .await
    }

    async fn has_part(&self, upload_id: &UploadId, part_number: u32) -> Result<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM upload_parts WHERE upload_id = $1 AND part_number = $2)".into();
        Ok(self.read_opt(false, sql, params![upload_id, part_number], |r| r.bool(0)).await? == Some(true))
    }

    async fn forget_part(&self, upload_id: &UploadId, part_number: u32) -> Result<()> {
        let sql = "DELETE FROM upload_parts WHERE upload_id = $1 AND part_number = $2";
        self.write_one(sql, params![upload_id, part_number]).await.map(drop)
    }

    async fn record_part(&self, upload_id: &UploadId, part: &RecordedPart, now: UnixSeconds) -> Result<()> {
        let (upload_id, part) = (*upload_id, part.clone());
        self.engine
            .write(flow!(|tx| {
                require_active(tx, None, &upload_id).await?;
                tx.execute(
                    "INSERT INTO upload_parts (upload_id, part_number, part_token, crc32c, num_bytes)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (upload_id, part_number) DO UPDATE SET
                         part_token = excluded.part_token, crc32c = excluded.crc32c, num_bytes = excluded.num_bytes",
                    &params![
                        &upload_id,
                        part.part_number,
                        part.token.as_str(),
                        part.crc32c.map(|c| i64::from(c.0)),
                        part.num_bytes
                    ],
                )
                .await?;
                tx.execute(TOUCH, &params![&upload_id, now]).await.map(drop)
            }))
            .await
    }

    async fn checkpoint(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        claims: &[TokenClaim],
        store_parts: Option<&BTreeMap<u32, RecordedPart>>,
        now: UnixSeconds,
    ) -> Result<Result<usize, ClaimProblems>> {
        let (org_id, upload_id, claims, store_parts) = (*org_id, *upload_id, claims.to_vec(), store_parts.cloned());
        self.engine
            .write(flow!(|tx| {
                require_active(tx, Some(&org_id), &upload_id).await?;
                let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1");
                let upload = upload_from_row(&tx.query_one(&sql, &params![&upload_id]).await?)?;
                let recorded = match store_parts {
                    Some(parts) => parts,
                    None => read_parts(tx, &upload_id).await?,
                };
                let count = match check_checkpoint(&upload.plan(), &recorded, &claims) {
                    Ok(count) => count,
                    Err(problems) => return Ok(Err(problems)),
                };
                for claim in &claims {
                    tx.execute(
                        "INSERT INTO checkpoints (upload_id, part_number, part_token) VALUES ($1, $2, $3)
                         ON CONFLICT (upload_id, part_number) DO UPDATE SET part_token = excluded.part_token",
                        &params![&upload_id, claim.part_number, claim.token.as_str()],
                    )
                    .await?;
                }
                tx.execute(TOUCH, &params![&upload_id, now]).await?;
                Ok(Ok(count))
            }))
            .await
    }

    async fn complete_upload(&self, registration: &Registration) -> Result<Registered> {
        let r = registration.clone();
        self.engine
            .write(flow!(|tx| {
                let sql = format!(
                    "UPDATE uploads SET state = 'completed', last_activity_at = $3, complete_unanswered = $4
                     WHERE upload_id = $1 AND org_id = $2 AND state = 'active' RETURNING {UPLOAD_COLUMNS}"
                );
                let unanswered = !r.answers_a_complete;
                let Some(row) = tx.query_opt(&sql, &params![&r.upload_id, &r.org_id, r.now, unanswered]).await? else {
                    // Lost a race, or never could have won: say why.
                    let state = upload_state(tx, Some(&r.org_id), &r.upload_id, false).await?;
                    return Err(MetaError::UploadNotActive(r.upload_id, state));
                };
                // The update holds the upload's row, which record_part locks
                // first: no part is recorded between this read and the commit.
                if let Some(verified) = &r.verified_parts
                    && !parts_unchanged(verified, &read_parts(tx, &r.upload_id).await?)
                {
                    return Err(MetaError::PartsChanged);
                }
                let upload = upload_from_row(&row)?;
                let file = NewFile {
                    file_uid: upload.file_uid,
                    org_id: r.org_id,
                    file_name: upload.file_name,
                    file_type: upload.file_type,
                    num_bytes: upload.num_bytes,
                    checksum_crc32c: r.checksum_crc32c,
                };
                let registered = register(tx, &file, r.status, r.now, r.delete_displaced_after).await?;
                drop_upload_parts(tx, &r.upload_id).await?;
                Ok(registered)
            }))
            .await
    }

    async fn take_unanswered_complete(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<Registered>> {
        let (org_id, upload_id) = (*org_id, *upload_id);
        self.engine
            .write(flow!(|tx| {
                let taken = tx
                    .query_opt(
                        "UPDATE uploads SET complete_unanswered = FALSE
                         WHERE upload_id = $1 AND org_id = $2 AND state = 'completed' AND complete_unanswered = TRUE
                         RETURNING file_uid",
                        &params![&upload_id, &org_id],
                    )
                    .await?;
                let Some(taken) = taken else { return Ok(None) };
                let file_uid: FileUid = taken.parse(0)?;
                let sql =
                    format!("SELECT holds_name, {FILE_COLUMNS} FROM files WHERE file_uid = $1 AND deleted_at IS NULL");
                let Some(row) = tx.query_opt(&sql, &params![&file_uid]).await? else { return Ok(None) };
                let holds_name = row.bool(0)?;
                Ok(Some(Registered { holds_name, file: file_from_row(&row.skip(1))?, displaced: None }))
            }))
            .await
    }

    async fn abort_upload(&self, org_id: &OrgId, upload_id: &UploadId, now: UnixSeconds) -> Result<AbortOutcome> {
        let (org_id, upload_id) = (*org_id, *upload_id);
        self.engine
            .write(flow!(|tx| {
                let sql = format!(
                    "UPDATE uploads SET state = 'aborted', last_activity_at = $3
                     WHERE upload_id = $1 AND org_id = $2 AND state = 'active' RETURNING {UPLOAD_COLUMNS}"
                );
                let aborted = tx.query_opt(&sql, &params![&upload_id, &org_id, now]).await?;
                let Some(row) = aborted else {
                    return match upload_state(tx, Some(&org_id), &upload_id, false).await? {
                        UploadState::Aborted => Ok(AbortOutcome::AlreadyAborted),
                        other => Err(MetaError::UploadNotActive(upload_id, other)),
                    };
                };
                let upload = upload_from_row(&row)?;
                drop_upload_parts(tx, &upload_id).await?;
                let key = BlobKey::upload(upload_id, upload.file_uid, upload.store_upload_id.as_deref());
                let deletion = enqueue_deletion(tx, &key, now).await?;
                record_event(tx, &org_id, EventType::UploadAborted, Subject::Upload(upload), now).await?;
                Ok(AbortOutcome::Aborted { deletion })
            }))
            .await
    }

    async fn expire_idle_uploads(
        &self,
        idle_before: UnixSeconds,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UploadId>> {
        self.engine
            .write(flow!(|tx| {
                let skip_locked = tx.dialect().skip_locked;
                let sql = format!(
                    "UPDATE uploads SET state = 'aborted'
                     WHERE upload_id IN (
                         SELECT upload_id FROM uploads WHERE state = 'active' AND last_activity_at < $1
                         LIMIT $2 {skip_locked})
                     RETURNING {UPLOAD_COLUMNS}"
                );
                let rows = tx.query(&sql, &params![idle_before, limit]).await?;
                let mut expired = Vec::with_capacity(rows.len());
                for row in &rows {
                    let upload = upload_from_row(row)?;
                    let upload_id = upload.upload_id;
                    drop_upload_parts(tx, &upload_id).await?;
                    let key = BlobKey::upload(upload_id, upload.file_uid, upload.store_upload_id.as_deref());
                    enqueue_deletion(tx, &key, now).await?;
                    let org_id = upload.org_id;
                    record_event(tx, &org_id, EventType::UploadExpired, Subject::Upload(upload), now).await?;
                    expired.push(upload_id);
                }
                Ok(expired)
            }))
            .await
    }
}

/// The condition that selects an org's listed files, `$1` the org and
/// `$2` the file type if `file_type` is given. Two spellings, not one with
/// `$2 IS NULL OR …`, so that each planner sees which index serves it.
fn listed(file_type: Option<&str>) -> &'static str {
    match file_type {
        None => "org_id = $1 AND holds_name = TRUE AND CAST($2 AS TEXT) IS NULL",
        Some(_) => "org_id = $1 AND holds_name = TRUE AND file_type = $2",
    }
}

/// Whether the part records are exactly the ones a complete verified.
fn parts_unchanged(verified: &BTreeMap<u32, PartToken>, recorded: &BTreeMap<u32, RecordedPart>) -> bool {
    verified.len() == recorded.len()
        && verified.iter().all(|(n, token)| recorded.get(n).is_some_and(|p| &p.token == token))
}

#[async_trait]
impl<E: Engine> Files for Store<E> {
    async fn register_file(
        &self,
        file: &NewFile,
        guard: BlobDeletionId,
        quota: Option<u64>,
        now: UnixSeconds,
        delete_displaced_after: UnixSeconds,
    ) -> Result<Registered> {
        let file = file.clone();
        self.engine
            .write(flow!(|tx| {
                within_quota(tx, &file.org_id, file.num_bytes, quota).await?;
                take_guard(tx, guard).await?;
                register(tx, &file, FileStatus::Registered, now, delete_displaced_after).await
            }))
            .await
    }

    async fn org_usage(&self, org_id: &OrgId) -> Result<u64> {
        let org_id = *org_id;
        self.engine.read(flow!(|tx| usage(tx, &org_id).await)).await
    }

    async fn get_file(&self, org_id: &OrgId, file_name: &str) -> Result<Option<FileRecord>> {
        let sql =
            format!("SELECT {FILE_COLUMNS} FROM files WHERE org_id = $1 AND file_name = $2 AND holds_name = TRUE");
        self.read_opt(false, sql, params![org_id, file_name], file_from_row).await
    }

    async fn list_files_shard(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE {} ORDER BY file_index LIMIT $3 OFFSET $4",
            listed(file_type)
        );
        self.read_all(sql, params![org_id, file_type, limit, offset], file_from_row).await
    }

    async fn list_files_page(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        from: ListPosition,
        limit: u64,
    ) -> Result<FilePage> {
        let (org_id, file_type) = (*org_id, file_type.map(str::to_owned));
        self.engine
            .read(flow!(|tx| {
                let listed = listed(file_type.as_deref());
                // One more than the page, to know whether the walk goes on.
                let (bound, toward_newer) = match from {
                    ListPosition::Newest => (i64::MAX, false),
                    ListPosition::OlderThan(bound) => (bound, false),
                    ListPosition::NewerThan(bound) => (bound, true),
                };
                let (cmp, order) = if toward_newer { (">", "ASC") } else { ("<", "DESC") };
                let sql = format!(
                    "SELECT {FILE_COLUMNS} FROM files WHERE {listed} AND file_index {cmp} $3
                     ORDER BY file_index {order} LIMIT $4"
                );
                let values = params![&org_id, file_type.as_deref(), bound, limit + 1];
                let mut files = all(tx.query(&sql, &values).await?, file_from_row)?;
                let more = files.len() as u64 > limit;
                files.truncate(limit as usize);
                if toward_newer {
                    files.reverse();
                }
                // The page's edges; an empty page's are the bound it was asked from.
                let newest =
                    files.first().map_or(if toward_newer { bound } else { bound - 1 }, |f| f.file_index as i64);
                let oldest = files.last().map_or(if toward_newer { bound + 1 } else { bound }, |f| f.file_index as i64);
                // The way back: anything on the other side of the page?
                let back = match from {
                    ListPosition::Newest => false,
                    _ => {
                        // Ordered, so that the planner seeks the index at the
                        // edge: unordered, PostgreSQL expected any row to do
                        // and scanned the table from its start (1.5 s at
                        // 10,000,000 files, the newest at the far end).
                        let (cmp, order, edge) =
                            if toward_newer { ("<", "DESC", oldest) } else { (">", "ASC", newest) };
                        let sql = format!(
                            "SELECT 1 FROM files WHERE {listed} AND file_index {cmp} $3 ORDER BY file_index {order} LIMIT 1"
                        );
                        tx.query_opt(&sql, &params![&org_id, file_type.as_deref(), edge]).await?.is_some()
                    }
                };
                let (older, newer) = if toward_newer { (back, more) } else { (more, back) };
                Ok(FilePage { files, older: older.then_some(oldest), newer: newer.then_some(newest) })
            }))
            .await
    }

    async fn file_stats(&self, org_id: &OrgId) -> Result<FileStats> {
        let sql = "SELECT num_files, num_bytes, num_ingested, files_changed_at FROM orgs WHERE org_id = $1".into();
        let stats = self
            .read_opt(false, sql, params![org_id], |row| {
                Ok(FileStats {
                    num_files: row.int(0)? as u64,
                    num_bytes: row.int(1)? as u64,
                    num_ingested: row.int(2)? as u64,
                    last_updated: row.int(3)?,
                })
            })
            .await?;
        Ok(stats.unwrap_or(FileStats { num_files: 0, num_bytes: 0, num_ingested: 0, last_updated: 0 }))
    }

    async fn delete_file(
        &self,
        org_id: &OrgId,
        file_name: &str,
        now: UnixSeconds,
        delete_after: UnixSeconds,
    ) -> Result<Option<FileRecord>> {
        let (org_id, file_name) = (*org_id, file_name.to_owned());
        let deleted = self
            .engine
            .write(flow!(|tx| {
                // The org's row first (the lock order); rolled back below if
                // there is nothing to delete.
                files_changed(tx, &org_id, now, Totals::default()).await?;
                let sql = format!(
                    "UPDATE files SET holds_name = FALSE, deleted_at = $3
                     WHERE org_id = $1 AND file_name = $2 AND holds_name = TRUE RETURNING {FILE_COLUMNS}"
                );
                let Some(file) = tx.query_opt(&sql, &params![&org_id, file_name, now]).await? else {
                    return Err(MetaError::NothingChanged);
                };
                let file = file_from_row(&file)?;
                let gone = Totals::default().minus(Totals::of(file.num_bytes, file.status));
                files_changed(tx, &org_id, now, gone).await?;
                enqueue_deletion(tx, &BlobKey::File(file.file_uid), delete_after).await?;
                let departed = Subject::DepartedFile(file.clone(), Departure::Deleted);
                record_event(tx, &org_id, EventType::FileDeleted, departed, now).await?;
                Ok(file)
            }))
            .await;
        match deleted {
            Ok(file) => Ok(Some(file)),
            Err(MetaError::NothingChanged) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn claim_file_to_ingest(
        &self,
        file_uid: &FileUid,
        now: UnixSeconds,
        lease_secs: i64,
    ) -> Result<Option<FileRecord>> {
        let file_uid = *file_uid;
        self.engine
            .write(flow!(|tx| {
                let sql = format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = $2
                     WHERE file_uid = $1 AND status = 'registered' AND deleted_at IS NULL RETURNING {FILE_COLUMNS}"
                );
                tx.query_opt(&sql, &params![&file_uid, now + lease_secs]).await?.as_ref().map(file_from_row).transpose()
            }))
            .await
    }

    async fn claim_files_to_ingest(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<FileRecord>> {
        self.engine
            .write(flow!(|tx| {
                let skip_locked = tx.dialect().skip_locked;
                let sql = format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = $2
                     WHERE file_uid IN (
                         SELECT file_uid FROM files
                         WHERE deleted_at IS NULL AND (status = 'registered'
                               OR (status = 'ingesting' AND ingest_claimed_until <= $1))
                         LIMIT $3 {skip_locked})
                     RETURNING {FILE_COLUMNS}"
                );
                all(tx.query(&sql, &params![now, now + lease_secs, limit]).await?, file_from_row)
            }))
            .await
    }

    async fn finish_ingest(
        &self,
        file_uid: &FileUid,
        metadata_status: MetadataStatus,
        attributes: Option<&str>,
        checksum_crc32c: Option<Crc32c>,
        now: UnixSeconds,
    ) -> Result<()> {
        let (file_uid, attributes) = (*file_uid, attributes.map(str::to_owned));
        let finished = self
            .engine
            .write(flow!(|tx| {
                let Some(org) =
                    tx.query_opt("SELECT org_id FROM files WHERE file_uid = $1", &params![&file_uid]).await?
                else {
                    return Err(MetaError::NothingChanged);
                };
                // The org's row before the file's (the lock order).
                let org_id: OrgId = org.parse(0)?;
                files_changed(tx, &org_id, now, Totals::default()).await?;
                let changed = tx
                    .query_opt(
                        &format!(
                            "UPDATE files SET status = 'ingested', metadata_status = $2, attributes = $3,
                             checksum_crc32c = COALESCE($4, checksum_crc32c), ingest_claimed_until = NULL
                         WHERE file_uid = $1 AND status = 'ingesting' RETURNING holds_name, {FILE_COLUMNS}"
                        ),
                        &params![
                            &file_uid,
                            metadata_status.as_str(),
                            attributes,
                            checksum_crc32c.map(|c| i64::from(c.0))
                        ],
                    )
                    .await?;
                let Some(changed) = changed else { return Err(MetaError::NothingChanged) };
                // A file deleted while it was ingested counts for nothing,
                // and is news to no one.
                if changed.bool(0)? {
                    files_changed(tx, &org_id, now, Totals { ingested: 1, ..Totals::default() }).await?;
                    let file = file_from_row(&Row::skip(changed, 1))?;
                    record_event(tx, &org_id, EventType::FileIngested, Subject::File(file), now).await?;
                }
                Ok(())
            }))
            .await;
        match finished {
            Err(MetaError::NothingChanged) => Ok(()),
            other => other,
        }
    }
}

#[async_trait]
impl<E: Engine> Deletions for Store<E> {
    async fn enqueue_blob_deletion(&self, key: &BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
        let key = key.clone();
        self.engine.write(flow!(|tx| enqueue_deletion(tx, &key, not_before).await)).await
    }

    async fn claim_blob_deletions(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<BlobDeletion>> {
        self.engine
            .write(flow!(|tx| {
                let skip_locked = tx.dialect().skip_locked;
                let sql = format!(
                    "UPDATE blob_deletions SET claimed_until = $2
                     WHERE id IN (
                         SELECT id FROM blob_deletions
                         WHERE not_before <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                         ORDER BY id LIMIT $3 {skip_locked})
                     RETURNING id, blob_key"
                );
                let mut due = all(tx.query(&sql, &params![now, now + lease_secs, limit]).await?, |r| {
                    Ok(BlobDeletion { id: BlobDeletionId(r.int(0)?), blob_key: r.parse(1)? })
                })?;
                due.sort_by_key(|d| d.id.0);
                Ok(due)
            }))
            .await
    }

    async fn finish_blob_deletion(&self, id: BlobDeletionId) -> Result<()> {
        self.write_one("DELETE FROM blob_deletions WHERE id = $1", params![id.0]).await.map(drop)
    }

    async fn inventory(&self) -> Result<Inventory> {
        self.engine
            .read(flow!(|tx| {
                let mut inventory = Inventory::default();
                for row in tx.query("SELECT file_uid, num_bytes, holds_name FROM files", &[]).await? {
                    let uid: FileUid = row.parse(0)?;
                    if row.bool(2)? {
                        inventory.named_files.push((uid, row.int(1)? as u64));
                    } else {
                        inventory.other_files.push(uid);
                    }
                }
                let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'active'");
                inventory.active_uploads = all(tx.query(&sql, &[]).await?, upload_from_row)?;
                inventory.queued = all(tx.query("SELECT blob_key FROM blob_deletions", &[]).await?, |r| r.parse(0))?;
                Ok(inventory)
            }))
            .await
    }
}

#[async_trait]
impl<E: Engine> Webhooks for Store<E> {
    async fn add_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        let types: Vec<&str> = endpoint.event_types.iter().map(|t| t.as_str()).collect();
        let sql = "INSERT INTO webhook_endpoints (endpoint_id, org_id, url, secret, event_types, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6)";
        let values = params![
            &endpoint.endpoint_id,
            &endpoint.org_id,
            endpoint.url.as_str(),
            endpoint.secret.to_string(),
            types.join(","),
            endpoint.created_at
        ];
        self.write_one(sql, values).await.map(drop)
    }

    async fn list_webhooks(&self, org_id: &OrgId) -> Result<Vec<WebhookEndpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND removed_at IS NULL
             ORDER BY endpoint_id"
        );
        self.read_all(sql, params![org_id], endpoint_from_row).await
    }

    async fn remove_webhook(&self, endpoint_id: &EndpointId, now: UnixSeconds) -> Result<bool> {
        let endpoint_id = *endpoint_id;
        self.engine
            .write(flow!(|tx| {
                let removed = tx
                    .execute(
                        "UPDATE webhook_endpoints SET removed_at = $2 WHERE endpoint_id = $1 AND removed_at IS NULL",
                        &params![&endpoint_id, now],
                    )
                    .await?;
                tx.execute(
                    "DELETE FROM deliveries WHERE endpoint_id = $1 AND state = 'pending'",
                    &params![&endpoint_id],
                )
                .await?;
                Ok(removed > 0)
            }))
            .await
    }

    async fn claim_deliveries(&self, now: UnixMillis, lease: UnixMillis, limit: usize) -> Result<Vec<Delivery>> {
        // A read first: most polls find nothing due, and a read takes no
        // writer's turn.
        let due = "SELECT 1 FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 AND leased_until <= $1
                   LIMIT 1";
        if self.read_opt(false, due.into(), params![now], |_| Ok(())).await?.is_none() {
            return Ok(Vec::new());
        }
        self.engine
            .write(flow!(|tx| {
                let skip_locked = tx.dialect().skip_locked;
                let sql = format!(
                    "UPDATE deliveries SET leased_until = $2
                     WHERE (event_id, endpoint_id) IN (
                         SELECT event_id, endpoint_id FROM deliveries
                         WHERE state = 'pending' AND next_attempt_at <= $1 AND leased_until <= $1
                         ORDER BY next_attempt_at LIMIT $3 {skip_locked})
                     RETURNING event_id, endpoint_id, attempts"
                );
                let leased = tx.query(&sql, &params![now, now + lease, limit]).await?;
                let mut deliveries = Vec::with_capacity(leased.len());
                for row in &leased {
                    let event_id: EventId = row.parse(0)?;
                    let endpoint_id: EndpointId = row.parse(1)?;
                    let sql = "SELECT org_id, event_type, created_at, subject FROM events WHERE event_id = $1";
                    let event = tx.query_one(sql, &params![&event_id]).await?;
                    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1");
                    let endpoint = endpoint_from_row(&tx.query_one(&sql, &params![&endpoint_id]).await?)?;
                    deliveries.push(Delivery {
                        event: Event {
                            event_id,
                            org_id: event.parse(0)?,
                            event_type: event.parse(1)?,
                            created_at: event.int(2)?,
                            subject: subject_from_json(&event.text(3)?)?,
                        },
                        endpoint,
                        attempts: row.int(2)? as u32,
                    });
                }
                Ok(deliveries)
            }))
            .await
    }

    async fn finish_attempt(
        &self,
        event_id: &EventId,
        endpoint_id: &EndpointId,
        attempt: Attempt,
        now: UnixMillis,
    ) -> Result<()> {
        let (state, next, status) = match attempt {
            Attempt::Delivered { status } => ("delivered", now, status),
            Attempt::RetryAt { at, status } => ("pending", at, status),
            Attempt::GaveUp { status } => ("failed", now, status),
        };
        let finished = (state != "pending").then_some(now);
        let sql = "UPDATE deliveries SET state = $3, attempts = attempts + 1, next_attempt_at = $4, leased_until = 0,
                   last_status = $5, finished_at = $6
                   WHERE event_id = $1 AND endpoint_id = $2 AND state = 'pending'";
        self.write_one(sql, params![event_id, endpoint_id, state, next, status, finished]).await.map(drop)
    }

    async fn redeliver(&self, event_id: &EventId, now: UnixMillis) -> Result<u64> {
        let sql = "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, leased_until = 0, finished_at = NULL
                   WHERE event_id = $1
                     AND endpoint_id IN (SELECT endpoint_id FROM webhook_endpoints WHERE removed_at IS NULL)";
        self.write_one(sql, params![event_id, now]).await
    }

    async fn failed_deliveries(&self, org_id: &OrgId) -> Result<Vec<FailedDelivery>> {
        let sql = "SELECT d.event_id, d.endpoint_id, e.event_type, d.attempts, d.last_status
                   FROM deliveries d JOIN events e ON e.event_id = d.event_id
                   WHERE e.org_id = $1 AND d.state = 'failed' ORDER BY d.finished_at DESC"
            .into();
        self.read_all(sql, params![org_id], |r| {
            Ok(FailedDelivery {
                event_id: r.parse(0)?,
                endpoint_id: r.parse(1)?,
                event_type: r.parse(2)?,
                attempts: r.int(3)? as u32,
                last_status: r.opt_text(4)?,
            })
        })
        .await
    }

    async fn prune_deliveries(&self, before: UnixMillis) -> Result<u64> {
        self.engine
            .write(flow!(|tx| {
                let pruned = tx
                    .execute("DELETE FROM deliveries WHERE state = 'delivered' AND finished_at < $1", &params![before])
                    .await?;
                tx.execute(
                    "DELETE FROM events WHERE created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.event_id)",
                    &params![before],
                )
                .await?;
                Ok(pruned)
            }))
            .await
    }
}
