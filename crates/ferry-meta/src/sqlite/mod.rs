//! The embedded metadata store: one SQLite file in the data dir.
//!
//! WAL mode lets readers run beside the one writer; `synchronous = FULL`
//! makes every commit durable before it returns, because a commit here is a
//! promise to a client (a part is uploaded, a file is registered). Writes
//! go through one connection and begin `IMMEDIATE`, so a write transaction
//! takes the lock up front instead of failing half-way; the busy timeout
//! covers the admin commands writing from another process.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{FileUid, KeyId, OrgId, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::{ClaimProblems, RecordedPart, TokenClaim, UploadState, check_checkpoint};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::{
    AbortOutcome, ApiKeyRecord, BlobDeletion, BlobDeletionId, FileRecord, FileStats, Inventory, MetaError,
    MetadataStore, NewFile, OrgRecord, Registered, Registration, Result, UnixSeconds, UploadRecord,
};

const MIGRATIONS: &[&str] = &[include_str!("migrations.sql")];
const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> MetaError {
    // A full disk is the operator's to fix, not a fault: say so.
    let full = (&e as &dyn std::any::Any)
        .downcast_ref::<rusqlite::Error>()
        .is_some_and(|e| e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull));
    if full { MetaError::StorageFull } else { MetaError::Backend(Box::new(e)) }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path).map_err(backend)?;
        configure(&writer).map_err(backend)?;
        migrate(&mut writer).map_err(backend)?;
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open(path)?;
                configure(&conn)?;
                conn.pragma_update(None, "query_only", "ON")?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)?;
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) }) })
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i].lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(backend)
        })
        .await
        .map_err(backend)?
    }

    /// A point lookup by primary key, run on the calling thread when a
    /// reader connection is free, else like [`Sqlite::read`]. Every API
    /// request makes two (its key, its upload): a hop to the blocking pool
    /// and back costs two thread wake-ups, several times the query, and
    /// capped part-URL requests at 14,000/s on 2 cores. Blocking here is
    /// brief: in WAL mode a reader never waits for the writer, and these
    /// rows sit in SQLite's page cache.
    async fn lookup<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        for reader in &self.inner.readers {
            if let Ok(conn) = reader.try_lock() {
                return f(&conn).map_err(backend);
            }
        }
        self.read(f).await
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let value = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(value)
        })
        .await
        .map_err(backend)?
    }
}

/// Reads column `i` as a value parsed from text (ids, states).
fn parsed<T: FromStr>(row: &Row, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(i)?;
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn conversion(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("bad {what}").into())
}

fn state(row: &Row, i: usize) -> rusqlite::Result<UploadState> {
    UploadState::parse(&row.get::<_, String>(i)?).ok_or_else(|| conversion(i, "upload state"))
}

fn file_status(row: &Row, i: usize) -> rusqlite::Result<FileStatus> {
    FileStatus::parse(&row.get::<_, String>(i)?).ok_or_else(|| conversion(i, "file status"))
}

const UPLOAD_COLUMNS: &str = "upload_id, org_id, file_uid, file_name, file_type, num_bytes, part_size, state, \
     created_at, last_activity_at, store_upload_id";

fn upload_from_row(row: &Row) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        upload_id: parsed(row, 0)?,
        org_id: parsed(row, 1)?,
        file_uid: parsed(row, 2)?,
        file_name: row.get(3)?,
        file_type: row.get(4)?,
        num_bytes: row.get::<_, i64>(5)? as u64,
        part_size: row.get::<_, i64>(6)? as u64,
        state: state(row, 7)?,
        created_at: row.get(8)?,
        last_activity_at: row.get(9)?,
        store_upload_id: row.get(10)?,
    })
}

const FILE_COLUMNS: &str = "file_uid, org_id, file_name, file_type, num_bytes, status, checksum_crc32c, file_index, \
     created_at, metadata_status, attributes";

fn file_from_row(row: &Row) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        file_uid: parsed(row, 0)?,
        org_id: parsed(row, 1)?,
        file_name: row.get(2)?,
        file_type: row.get(3)?,
        num_bytes: row.get::<_, i64>(4)? as u64,
        status: file_status(row, 5)?,
        checksum_crc32c: row.get::<_, Option<i64>>(6)?.map(|crc| Crc32c(crc as u32)),
        file_index: row.get::<_, i64>(7)? as u64,
        created_at: row.get(8)?,
        metadata_status: MetadataStatus::parse(&row.get::<_, String>(9)?)
            .ok_or_else(|| conversion(9, "metadata status"))?,
        attributes: row.get(10)?,
    })
}

fn key_from_row(row: &Row) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: parsed(row, 0)?,
        org_id: parsed(row, 1)?,
        secret_hash: row.get(2)?,
        created_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

/// The upload's state, read inside a write transaction to explain why a
/// conditional update matched no row.
fn upload_state_in(tx: &Transaction, org_id: Option<&OrgId>, upload_id: &UploadId) -> Result<UploadState> {
    let found: Option<(String, String)> = tx
        .query_row("SELECT org_id, state FROM uploads WHERE upload_id = ?1", [upload_id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    match found {
        Some((org, state)) if org_id.is_none_or(|o| o.to_string() == org) => {
            UploadState::parse(&state).ok_or_else(|| backend(conversion(1, "upload state")))
        }
        _ => Err(MetaError::UploadNotFound),
    }
}

fn require_active(tx: &Transaction, org_id: Option<&OrgId>, upload_id: &UploadId) -> Result<()> {
    match upload_state_in(tx, org_id, upload_id)? {
        UploadState::Active => Ok(()),
        other => Err(MetaError::UploadNotActive(other)),
    }
}

fn read_parts(conn: &Connection, upload_id: &UploadId) -> rusqlite::Result<BTreeMap<u32, RecordedPart>> {
    let mut stmt = conn
        .prepare_cached("SELECT part_number, part_token, crc32c, num_bytes FROM upload_parts WHERE upload_id = ?1")?;
    let rows = stmt.query_map([upload_id.to_string()], |r| {
        Ok(RecordedPart {
            part_number: r.get(0)?,
            token: PartToken::from_wire(&r.get::<_, String>(1)?),
            crc32c: r.get::<_, Option<i64>>(2)?.map(|crc| Crc32c(crc as u32)),
            num_bytes: r.get::<_, i64>(3)? as u64,
        })
    })?;
    rows.map(|p| p.map(|p| (p.part_number, p))).collect()
}

fn enqueue_deletion(tx: &Transaction, key: BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
    tx.execute(
        "INSERT INTO blob_deletions (blob_key, not_before) VALUES (?1, ?2)",
        params![key.to_string(), not_before],
    )
    .map_err(backend)?;
    Ok(BlobDeletionId(tx.last_insert_rowid()))
}

fn files_changed(tx: &Transaction, org_id: &OrgId, now: UnixSeconds) -> Result<()> {
    tx.execute(
        "UPDATE orgs SET files_changed_at = MAX(files_changed_at, ?2) WHERE org_id = ?1",
        params![org_id.to_string(), now],
    )
    .map_err(backend)?;
    Ok(())
}

/// Registers a file under its name in the calling transaction: takes the
/// next file_index, moves the name (unless a corrupt file would take it from
/// a good one) and queues the displaced file's bytes for deletion.
fn register(
    tx: &Transaction,
    new: &NewFile,
    status: FileStatus,
    now: UnixSeconds,
    delete_displaced_after: UnixSeconds,
) -> Result<Registered> {
    let org = new.org_id.to_string();
    let file_index: i64 = tx
        .query_row(
            "UPDATE orgs SET next_file_index = next_file_index + 1 WHERE org_id = ?1 RETURNING next_file_index - 1",
            [&org],
            |row| row.get(0),
        )
        .map_err(backend)?;
    let holder: Option<(FileUid, FileStatus)> = tx
        .query_row(
            "SELECT file_uid, status FROM files WHERE org_id = ?1 AND file_name = ?2 AND holds_name = 1",
            [&org, &new.file_name],
            |row| Ok((parsed(row, 0)?, file_status(row, 1)?)),
        )
        .optional()
        .map_err(backend)?;
    // A corrupt file never takes a name from a good one.
    let holder_is_good = holder.is_some_and(|(_, status)| status.is_downloadable());
    let holds_name = status.is_downloadable() || !holder_is_good;
    let mut displaced = None;
    if holds_name && let Some((old, _)) = holder {
        tx.execute(
            "UPDATE files SET holds_name = 0, deleted_at = ?2 WHERE file_uid = ?1",
            params![old.to_string(), now],
        )
        .map_err(backend)?;
        enqueue_deletion(tx, BlobKey::File(old), delete_displaced_after)?;
        displaced = Some(old);
    }
    if !holds_name {
        // Recorded for the operator, but nothing can reach its bytes.
        enqueue_deletion(tx, BlobKey::File(new.file_uid), now)?;
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
            "INSERT INTO files ({FILE_COLUMNS}, holds_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            file.file_uid.to_string(),
            org,
            file.file_name,
            file.file_type,
            file.num_bytes as i64,
            file.status.as_str(),
            file.checksum_crc32c.map(|crc| crc.0 as i64),
            file_index,
            file.created_at,
            file.metadata_status.as_str(),
            file.attributes,
            holds_name
        ],
    )
    .map_err(backend)?;
    files_changed(tx, &new.org_id, now)?;
    Ok(Registered { file, holds_name, displaced })
}

/// Removes the deletion-queue entry that guarded bytes written ahead of
/// their row. If a janitor has already claimed it, the bytes are being (or
/// were) deleted: the row must not be written, or it would point at nothing.
fn take_guard(tx: &Transaction, guard: BlobDeletionId) -> Result<()> {
    let taken =
        tx.execute("DELETE FROM blob_deletions WHERE id = ?1 AND claimed_until IS NULL", [guard.0]).map_err(backend)?;
    if taken == 0 {
        return Err(MetaError::GuardLost);
    }
    Ok(())
}

/// The bytes an org's files and uploads in progress take.
fn usage(conn: &Connection, org_id: &OrgId) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE((SELECT SUM(num_bytes) FROM files WHERE org_id = ?1 AND holds_name = 1), 0)
          + COALESCE((SELECT SUM(num_bytes) FROM uploads WHERE org_id = ?1 AND state = 'active'), 0)",
        [org_id.to_string()],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// Refuses `adding` bytes that would take the org past `quota`.
fn within_quota(tx: &Transaction, org_id: &OrgId, adding: u64, quota: Option<u64>) -> Result<()> {
    let Some(quota) = quota else { return Ok(()) };
    let used = usage(tx, org_id).map_err(backend)?;
    if used + adding > quota {
        return Err(MetaError::QuotaExceeded { quota, used });
    }
    Ok(())
}

fn drop_upload_parts(tx: &Transaction, upload_id: &UploadId) -> Result<()> {
    let id = upload_id.to_string();
    tx.execute("DELETE FROM checkpoints WHERE upload_id = ?1", [&id]).map_err(backend)?;
    tx.execute("DELETE FROM upload_parts WHERE upload_id = ?1", [&id]).map_err(backend)?;
    Ok(())
}

#[async_trait]
impl MetadataStore for Sqlite {
    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    async fn create_org(&self, name: &str, now: UnixSeconds) -> Result<OrgRecord> {
        let name = name.to_owned();
        self.write(move |tx| {
            let taken: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM orgs WHERE name = ?1)", [&name], |r| r.get(0))
                .map_err(backend)?;
            if taken {
                return Err(MetaError::OrgExists(name));
            }
            let org = OrgRecord { org_id: OrgId::generate(), name, created_at: now };
            tx.execute(
                "INSERT INTO orgs (org_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![org.org_id.to_string(), org.name, now],
            )
            .map_err(backend)?;
            Ok(org)
        })
        .await
    }

    async fn find_org(&self, name: &str) -> Result<Option<OrgRecord>> {
        let name = name.to_owned();
        self.read(move |c| {
            c.query_row("SELECT org_id, name, created_at FROM orgs WHERE name = ?1", [name], |r| {
                Ok(OrgRecord { org_id: parsed(r, 0)?, name: r.get(1)?, created_at: r.get(2)? })
            })
            .optional()
        })
        .await
    }

    async fn bootstrap(&self, org_name: &str, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<bool> {
        let (org_name, key_id, secret_hash) = (org_name.to_owned(), key_id.to_string(), secret_hash.to_vec());
        self.write(move |tx| {
            let empty: bool =
                tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM orgs)", [], |r| r.get(0)).map_err(backend)?;
            if !empty {
                return Ok(false);
            }
            let org_id = OrgId::generate().to_string();
            tx.execute(
                "INSERT INTO orgs (org_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![org_id, org_name, now],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key_id, org_id, secret_hash, now],
            )
            .map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn create_api_key(&self, org_id: &OrgId, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<()> {
        let (org_id, key_id, secret_hash) = (org_id.to_string(), key_id.to_string(), secret_hash.to_vec());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key_id, org_id, secret_hash, now],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, key_id: &KeyId) -> Result<Option<ApiKeyRecord>> {
        let key_id = key_id.to_string();
        self.lookup(move |c| {
            c.prepare_cached(
                "SELECT key_id, org_id, secret_hash, created_at, revoked_at FROM api_keys WHERE key_id = ?1",
            )?
            .query_row([key_id], key_from_row)
            .optional()
        })
        .await
    }

    async fn list_api_keys(&self, org_id: &OrgId) -> Result<Vec<ApiKeyRecord>> {
        let org_id = org_id.to_string();
        self.read(move |c| {
            c.prepare(
                "SELECT key_id, org_id, secret_hash, created_at, revoked_at FROM api_keys
                 WHERE org_id = ?1 ORDER BY created_at, key_id",
            )?
            .query_map([org_id], key_from_row)?
            .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &KeyId, now: UnixSeconds) -> Result<bool> {
        let key_id = key_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1",
                params![key_id, now],
            )
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }

    async fn insert_upload(&self, upload: &UploadRecord, guard: BlobDeletionId, quota: Option<u64>) -> Result<()> {
        let u = upload.clone();
        self.write(move |tx| {
            // Writes are serialized, so the check and the insert are atomic.
            within_quota(tx, &u.org_id, u.num_bytes, quota)?;
            take_guard(tx, guard)?;
            tx.execute(
                &format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    u.upload_id.to_string(),
                    u.org_id.to_string(),
                    u.file_uid.to_string(),
                    u.file_name,
                    u.file_type,
                    u.num_bytes as i64,
                    u.part_size as i64,
                    u.state.as_str(),
                    u.created_at,
                    u.last_activity_at,
                    u.store_upload_id
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let (org_id, upload_id) = (org_id.to_string(), upload_id.to_string());
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1 AND org_id = ?2"))?
                .query_row([upload_id, org_id], upload_from_row)
                .optional()
        })
        .await
    }

    async fn get_upload_for_part_put(&self, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let upload_id = upload_id.to_string();
        self.lookup(move |c| {
            c.prepare_cached(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1"))?
                .query_row([upload_id], upload_from_row)
                .optional()
        })
        .await
    }

    async fn find_resumable_upload(&self, org_id: &OrgId, file_name: &str) -> Result<Option<UploadRecord>> {
        let (org_id, file_name) = (org_id.to_string(), file_name.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {UPLOAD_COLUMNS} FROM uploads
                 WHERE org_id = ?1 AND file_name = ?2 AND state = 'active'
                 ORDER BY created_at DESC, upload_id DESC LIMIT 1"
            ))?
            .query_row([org_id, file_name], upload_from_row)
            .optional()
        })
        .await
    }

    async fn touch_upload(&self, upload_id: &UploadId, now: UnixSeconds) -> Result<()> {
        let upload_id = upload_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE uploads SET last_activity_at = MAX(last_activity_at, ?2) WHERE upload_id = ?1",
                params![upload_id, now],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_parts(&self, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>> {
        let upload_id = *upload_id;
        self.read(move |c| read_parts(c, &upload_id)).await
    }

    async fn list_checkpoints(&self, upload_id: &UploadId) -> Result<Vec<TokenClaim>> {
        let upload_id = upload_id.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT part_number, part_token FROM checkpoints WHERE upload_id = ?1")?
                .query_map([upload_id], |r| {
                    Ok(TokenClaim { part_number: r.get(0)?, token: PartToken::from_wire(&r.get::<_, String>(1)?) })
                })?
                .collect()
        })
        .await
    }

    async fn has_part(&self, upload_id: &UploadId, part_number: u32) -> Result<bool> {
        let upload_id = upload_id.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM upload_parts WHERE upload_id = ?1 AND part_number = ?2)")?
                .query_row(params![upload_id, part_number], |r| r.get(0))
        })
        .await
    }

    async fn forget_part(&self, upload_id: &UploadId, part_number: u32) -> Result<()> {
        let upload_id = upload_id.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM upload_parts WHERE upload_id = ?1 AND part_number = ?2",
                params![upload_id, part_number],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn record_part(&self, upload_id: &UploadId, part: &RecordedPart, now: UnixSeconds) -> Result<()> {
        let (upload_id, part) = (*upload_id, part.clone());
        self.write(move |tx| {
            require_active(tx, None, &upload_id)?;
            let id = upload_id.to_string();
            tx.execute(
                "INSERT INTO upload_parts (upload_id, part_number, part_token, crc32c, num_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (upload_id, part_number) DO UPDATE SET
                     part_token = excluded.part_token, crc32c = excluded.crc32c, num_bytes = excluded.num_bytes",
                params![
                    id,
                    part.part_number,
                    part.token.as_str(),
                    part.crc32c.map(|c| c.0 as i64),
                    part.num_bytes as i64
                ],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE uploads SET last_activity_at = MAX(last_activity_at, ?2) WHERE upload_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            Ok(())
        })
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
        self.write(move |tx| {
            require_active(tx, Some(&org_id), &upload_id)?;
            let upload = tx
                .query_row(
                    &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1"),
                    [upload_id.to_string()],
                    upload_from_row,
                )
                .map_err(backend)?;
            let recorded = match store_parts {
                Some(parts) => parts,
                None => read_parts(tx, &upload_id).map_err(backend)?,
            };
            let count = match check_checkpoint(&upload.plan(), &recorded, &claims) {
                Ok(count) => count,
                Err(problems) => return Ok(Err(problems)),
            };
            let id = upload_id.to_string();
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (upload_id, part_number, part_token) VALUES (?1, ?2, ?3)
                     ON CONFLICT (upload_id, part_number) DO UPDATE SET part_token = excluded.part_token",
                )
                .map_err(backend)?;
            for claim in &claims {
                insert.execute(params![id, claim.part_number, claim.token.as_str()]).map_err(backend)?;
            }
            tx.execute(
                "UPDATE uploads SET last_activity_at = MAX(last_activity_at, ?2) WHERE upload_id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            Ok(Ok(count))
        })
        .await
    }

    async fn complete_upload(&self, registration: &Registration) -> Result<Registered> {
        let r = registration.clone();
        self.write(move |tx| {
            let (org, upload_id) = (r.org_id.to_string(), r.upload_id.to_string());
            let changed = tx
                .execute(
                    "UPDATE uploads SET state = 'completed', last_activity_at = ?3
                     WHERE upload_id = ?1 AND org_id = ?2 AND state = 'active'",
                    params![upload_id, org, r.now],
                )
                .map_err(backend)?;
            if changed == 0 {
                // Lost a race, or never could have won: say why.
                return Err(MetaError::UploadNotActive(upload_state_in(tx, Some(&r.org_id), &r.upload_id)?));
            }
            if let Some(verified) = &r.verified_parts
                && !crate::parts_unchanged(verified, &read_parts(tx, &r.upload_id).map_err(backend)?)
            {
                // Returning an error rolls the whole transaction back.
                return Err(MetaError::PartsChanged);
            }
            let upload = tx
                .query_row(
                    &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?1"),
                    [&upload_id],
                    upload_from_row,
                )
                .map_err(backend)?;
            let file = NewFile {
                file_uid: upload.file_uid,
                org_id: r.org_id,
                file_name: upload.file_name,
                file_type: upload.file_type,
                num_bytes: upload.num_bytes,
                checksum_crc32c: r.checksum_crc32c,
            };
            let registered = register(tx, &file, r.status, r.now, r.delete_displaced_after)?;
            drop_upload_parts(tx, &r.upload_id)?;
            Ok(registered)
        })
        .await
    }

    async fn abort_upload(&self, org_id: &OrgId, upload_id: &UploadId, now: UnixSeconds) -> Result<AbortOutcome> {
        let (org_id, upload_id) = (*org_id, *upload_id);
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE uploads SET state = 'aborted', last_activity_at = ?3
                     WHERE upload_id = ?1 AND org_id = ?2 AND state = 'active'",
                    params![upload_id.to_string(), org_id.to_string(), now],
                )
                .map_err(backend)?;
            if changed == 0 {
                return match upload_state_in(tx, Some(&org_id), &upload_id)? {
                    UploadState::Aborted => Ok(AbortOutcome::AlreadyAborted),
                    other => Err(MetaError::UploadNotActive(other)),
                };
            }
            drop_upload_parts(tx, &upload_id)?;
            let (file_uid, store_upload_id): (FileUid, Option<String>) = tx
                .query_row(
                    "SELECT file_uid, store_upload_id FROM uploads WHERE upload_id = ?1",
                    [upload_id.to_string()],
                    |r| Ok((parsed(r, 0)?, r.get(1)?)),
                )
                .map_err(backend)?;
            let deletion = enqueue_deletion(tx, BlobKey::upload(upload_id, file_uid, store_upload_id.as_deref()), now)?;
            Ok(AbortOutcome::Aborted { deletion })
        })
        .await
    }

    async fn register_file(
        &self,
        file: &NewFile,
        guard: BlobDeletionId,
        quota: Option<u64>,
        now: UnixSeconds,
        delete_displaced_after: UnixSeconds,
    ) -> Result<Registered> {
        let file = file.clone();
        self.write(move |tx| {
            within_quota(tx, &file.org_id, file.num_bytes, quota)?;
            take_guard(tx, guard)?;
            register(tx, &file, FileStatus::Registered, now, delete_displaced_after)
        })
        .await
    }

    async fn org_usage(&self, org_id: &OrgId) -> Result<u64> {
        let org_id = *org_id;
        self.read(move |c| usage(c, &org_id)).await
    }

    async fn get_file(&self, org_id: &OrgId, file_name: &str) -> Result<Option<FileRecord>> {
        let (org_id, file_name) = (org_id.to_string(), file_name.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE org_id = ?1 AND file_name = ?2 AND holds_name = 1"
            ))?
            .query_row([org_id, file_name], file_from_row)
            .optional()
        })
        .await
    }

    async fn list_files(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<FileRecord>> {
        let (org_id, file_type) = (org_id.to_string(), file_type.map(str::to_owned));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {FILE_COLUMNS} FROM files
                 WHERE org_id = ?1 AND holds_name = 1 AND (?2 IS NULL OR file_type = ?2)
                 ORDER BY file_index LIMIT ?3 OFFSET ?4"
            ))?
            .query_map(params![org_id, file_type, limit as i64, offset as i64], file_from_row)?
            .collect()
        })
        .await
    }

    async fn file_stats(&self, org_id: &OrgId) -> Result<FileStats> {
        let org_id = org_id.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT COUNT(f.file_uid), COALESCE(SUM(f.num_bytes), 0),
                        COALESCE(SUM(f.status = 'ingested'), 0), o.files_changed_at
                 FROM orgs o LEFT JOIN files f ON f.org_id = o.org_id AND f.holds_name = 1
                 WHERE o.org_id = ?1 GROUP BY o.org_id",
                [org_id],
                |r| {
                    Ok(FileStats {
                        num_files: r.get::<_, i64>(0)? as u64,
                        num_bytes: r.get::<_, i64>(1)? as u64,
                        num_ingested: r.get::<_, i64>(2)? as u64,
                        last_updated: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    async fn delete_file(
        &self,
        org_id: &OrgId,
        file_name: &str,
        now: UnixSeconds,
        delete_after: UnixSeconds,
    ) -> Result<Option<FileRecord>> {
        let (org_id, file_name) = (*org_id, file_name.to_owned());
        self.write(move |tx| {
            let file = tx
                .query_row(
                    &format!(
                        "SELECT {FILE_COLUMNS} FROM files WHERE org_id = ?1 AND file_name = ?2 AND holds_name = 1"
                    ),
                    [org_id.to_string(), file_name],
                    file_from_row,
                )
                .optional()
                .map_err(backend)?;
            if let Some(file) = &file {
                tx.execute(
                    "UPDATE files SET holds_name = 0, deleted_at = ?2 WHERE file_uid = ?1",
                    params![file.file_uid.to_string(), now],
                )
                .map_err(backend)?;
                enqueue_deletion(tx, BlobKey::File(file.file_uid), delete_after)?;
                files_changed(tx, &org_id, now)?;
            }
            Ok(file)
        })
        .await
    }

    async fn claim_file_to_ingest(
        &self,
        file_uid: &FileUid,
        now: UnixSeconds,
        lease_secs: i64,
    ) -> Result<Option<FileRecord>> {
        let file_uid = file_uid.to_string();
        self.write(move |tx| {
            tx.query_row(
                &format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = ?2
                     WHERE file_uid = ?1 AND status = 'registered' AND deleted_at IS NULL
                     RETURNING {FILE_COLUMNS}"
                ),
                params![file_uid, now + lease_secs],
                file_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn claim_files_to_ingest(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<FileRecord>> {
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = ?2
                     WHERE file_uid IN (
                         SELECT file_uid FROM files
                         WHERE deleted_at IS NULL AND (status = 'registered'
                               OR (status = 'ingesting' AND ingest_claimed_until <= ?1))
                         LIMIT ?3)
                     RETURNING {FILE_COLUMNS}"
                ))
                .map_err(backend)?;
            let files = stmt
                .query_map(params![now, now + lease_secs, limit as i64], file_from_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(files)
        })
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
        let (file_uid, attributes) = (file_uid.to_string(), attributes.map(str::to_owned));
        let checksum = checksum_crc32c.map(|crc| crc.0 as i64);
        self.write(move |tx| {
            let org: Option<OrgId> = tx
                .query_row(
                    "UPDATE files SET status = 'ingested', metadata_status = ?2, attributes = ?3,
                         checksum_crc32c = COALESCE(?4, checksum_crc32c), ingest_claimed_until = NULL
                     WHERE file_uid = ?1 AND status = 'ingesting' RETURNING org_id",
                    params![file_uid, metadata_status.as_str(), attributes, checksum],
                    |r| parsed(r, 0),
                )
                .optional()
                .map_err(backend)?;
            if let Some(org) = org {
                files_changed(tx, &org, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn expire_idle_uploads(
        &self,
        idle_before: UnixSeconds,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UploadId>> {
        self.write(move |tx| {
            let idle: Vec<(UploadId, FileUid, Option<String>)> = tx
                .prepare_cached(
                    "UPDATE uploads SET state = 'aborted'
                     WHERE upload_id IN (
                         SELECT upload_id FROM uploads
                         WHERE state = 'active' AND last_activity_at < ?1 LIMIT ?2)
                     RETURNING upload_id, file_uid, store_upload_id",
                )
                .map_err(backend)?
                .query_map(params![idle_before, limit as i64], |r| Ok((parsed(r, 0)?, parsed(r, 1)?, r.get(2)?)))
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            for (upload_id, file_uid, store_upload_id) in &idle {
                drop_upload_parts(tx, upload_id)?;
                enqueue_deletion(tx, BlobKey::upload(*upload_id, *file_uid, store_upload_id.as_deref()), now)?;
            }
            Ok(idle.into_iter().map(|(upload_id, ..)| upload_id).collect())
        })
        .await
    }

    async fn count_active_uploads(&self) -> Result<u64> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM uploads WHERE state = 'active'", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    async fn inventory(&self) -> Result<Inventory> {
        self.read(|c| {
            let mut inventory = Inventory::default();
            let mut files = c.prepare("SELECT file_uid, num_bytes, holds_name FROM files")?;
            for row in
                files.query_map([], |r| Ok((parsed::<FileUid>(r, 0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?)))?
            {
                let (uid, size, named) = row?;
                if named {
                    inventory.named_files.push((uid, size as u64));
                } else {
                    inventory.other_files.push(uid);
                }
            }
            let mut uploads = c.prepare(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'active'"))?;
            inventory.active_uploads = uploads.query_map([], upload_from_row)?.collect::<rusqlite::Result<_>>()?;
            let mut queued = c.prepare("SELECT blob_key FROM blob_deletions")?;
            inventory.queued = queued.query_map([], |r| parsed(r, 0))?.collect::<rusqlite::Result<_>>()?;
            Ok(inventory)
        })
        .await
    }

    async fn enqueue_blob_deletion(&self, key: &BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
        let key = key.clone();
        self.write(move |tx| enqueue_deletion(tx, key, not_before)).await
    }

    async fn claim_blob_deletions(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<BlobDeletion>> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE blob_deletions SET claimed_until = ?2
                 WHERE id IN (
                     SELECT id FROM blob_deletions
                     WHERE not_before <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
                     ORDER BY id LIMIT ?3)
                 RETURNING id, blob_key",
            )
            .map_err(backend)?
            .query_map(params![now, now + lease_secs, limit as i64], |r| {
                Ok(BlobDeletion { id: BlobDeletionId(r.get(0)?), blob_key: parsed(r, 1)? })
            })
            .map_err(backend)?
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)
        })
        .await
    }

    async fn finish_blob_deletion(&self, id: BlobDeletionId) -> Result<()> {
        self.write(move |tx| {
            tx.execute("DELETE FROM blob_deletions WHERE id = ?1", [id.0]).map_err(backend)?;
            Ok(())
        })
        .await
    }
}
