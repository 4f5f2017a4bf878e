//! The scale-out metadata store: PostgreSQL, shared by every ferry node.
//!
//! The same rules as SQLite, kept across processes: races resolve in
//! conditional updates and row locks (an upload's row is locked by whoever
//! changes its state; an org's row by whoever registers, deletes or ingests
//! a file in it), and the janitors' work is leased with `FOR UPDATE SKIP
//! LOCKED`, so nodes never wait on each other's leases.
//!
//! Every transaction takes its row locks in one order, upload, then org,
//! then files, so two transactions can never wait on each other.

use std::collections::BTreeMap;
use std::str::FromStr;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use ferry_core::blob_key::BlobKey;
use ferry_core::checksum::Crc32c;
use ferry_core::file::{FileStatus, MetadataStatus};
use ferry_core::ids::{FileUid, KeyId, OrgId, UploadId};
use ferry_core::token::PartToken;
use ferry_core::upload::{ClaimProblems, RecordedPart, TokenClaim, UploadState, check_checkpoint};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::{
    AbortOutcome, ApiKeyRecord, BlobDeletion, BlobDeletionId, FileRecord, FileStats, Inventory, MetaError,
    MetadataStore, NewFile, OrgRecord, Registered, Registration, Result, UnixSeconds, UploadRecord,
};

const MIGRATIONS: &[&str] = &[include_str!("migrations.sql")];
/// Serializes migrations and bootstrap across nodes starting at once.
const SCHEMA_LOCK: i64 = 0x6665_7272_7930_0001;
const POOL_SIZE: usize = 16;

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> MetaError {
    // Lost or refused connections (PostgreSQL restarting, the network) are
    // not faults of the request: say the store is unavailable, to retry.
    let any = &e as &dyn std::any::Any;
    let io_failure = |e: &tokio_postgres::Error| {
        e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
    };
    let unreachable = any.downcast_ref::<tokio_postgres::Error>().is_some_and(io_failure)
        || any.downcast_ref::<deadpool_postgres::PoolError>().is_some();
    if unreachable {
        return MetaError::Unavailable(e.to_string());
    }
    // tokio-postgres says only "db error" at the top; the cause says what.
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    MetaError::Backend(text.into())
}

fn bad(what: &str) -> MetaError {
    MetaError::Backend(format!("bad {what} in the database").into())
}

fn parsed<T: FromStr>(row: &Row, column: &str) -> Result<T> {
    row.get::<_, String>(column).parse().map_err(|_| bad(column))
}

impl Postgres {
    /// Connects to `url` (`postgres://…`) and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(backend)?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(POOL_SIZE).build().map_err(backend)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await.map_err(backend)?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(backend)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            .await
            .map_err(backend)?;
        let applied: i32 =
            tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(backend)?.get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.batch_execute(sql).await.map_err(backend)?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(i as i32 + 1)])
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(backend)
    }
}

const UPLOAD_COLUMNS: &str = "upload_id, org_id, file_uid, file_name, file_type, num_bytes, part_size, state, \
     created_at, last_activity_at, store_upload_id";

fn upload_from_row(row: &Row) -> Result<UploadRecord> {
    Ok(UploadRecord {
        upload_id: parsed(row, "upload_id")?,
        org_id: parsed(row, "org_id")?,
        file_uid: parsed(row, "file_uid")?,
        file_name: row.get("file_name"),
        file_type: row.get("file_type"),
        num_bytes: row.get::<_, i64>("num_bytes") as u64,
        part_size: row.get::<_, i64>("part_size") as u64,
        state: UploadState::parse(row.get("state")).ok_or_else(|| bad("upload state"))?,
        created_at: row.get("created_at"),
        last_activity_at: row.get("last_activity_at"),
        store_upload_id: row.get("store_upload_id"),
    })
}

const FILE_COLUMNS: &str = "file_uid, org_id, file_name, file_type, num_bytes, status, checksum_crc32c, file_index, \
     created_at, metadata_status, attributes";

fn file_from_row(row: &Row) -> Result<FileRecord> {
    Ok(FileRecord {
        file_uid: parsed(row, "file_uid")?,
        org_id: parsed(row, "org_id")?,
        file_name: row.get("file_name"),
        file_type: row.get("file_type"),
        num_bytes: row.get::<_, i64>("num_bytes") as u64,
        status: FileStatus::parse(row.get("status")).ok_or_else(|| bad("file status"))?,
        checksum_crc32c: row.get::<_, Option<i64>>("checksum_crc32c").map(|crc| Crc32c(crc as u32)),
        file_index: row.get::<_, i64>("file_index") as u64,
        created_at: row.get("created_at"),
        metadata_status: MetadataStatus::parse(row.get("metadata_status")).ok_or_else(|| bad("metadata status"))?,
        attributes: row.get("attributes"),
    })
}

fn key_from_row(row: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: parsed(row, "key_id")?,
        org_id: parsed(row, "org_id")?,
        secret_hash: row.get("secret_hash"),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
    })
}

fn part_from_row(row: &Row) -> RecordedPart {
    RecordedPart {
        part_number: row.get::<_, i32>("part_number") as u32,
        token: PartToken::from_wire(row.get("part_token")),
        crc32c: row.get::<_, Option<i64>>("crc32c").map(|crc| Crc32c(crc as u32)),
        num_bytes: row.get::<_, i64>("num_bytes") as u64,
    }
}

/// Locks the upload's row and says whether it is active, for writes that
/// must not race a complete or an abort. The lock is the one an update
/// takes, taken up front: these transactions go on to update the row
/// (its last activity), and two that each held a shared lock while waiting
/// to upgrade it would deadlock.
async fn require_active(tx: &Transaction<'_>, org_id: Option<&OrgId>, upload_id: &UploadId) -> Result<()> {
    match upload_state(tx, org_id, upload_id, "FOR NO KEY UPDATE").await? {
        UploadState::Active => Ok(()),
        other => Err(MetaError::UploadNotActive(other)),
    }
}

async fn upload_state(
    client: &impl GenericClient,
    org_id: Option<&OrgId>,
    upload_id: &UploadId,
    lock: &str,
) -> Result<UploadState> {
    let row = client
        .query_opt(&format!("SELECT org_id, state FROM uploads WHERE upload_id = $1 {lock}"), &[&upload_id.to_string()])
        .await
        .map_err(backend)?;
    match row {
        Some(row) if org_id.is_none_or(|o| o.to_string() == row.get::<_, String>("org_id")) => {
            UploadState::parse(row.get("state")).ok_or_else(|| bad("upload state"))
        }
        _ => Err(MetaError::UploadNotFound),
    }
}

async fn read_parts(client: &impl GenericClient, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>> {
    let rows = client
        .query(
            "SELECT part_number, part_token, crc32c, num_bytes FROM upload_parts WHERE upload_id = $1",
            &[&upload_id.to_string()],
        )
        .await
        .map_err(backend)?;
    Ok(rows.iter().map(part_from_row).map(|p| (p.part_number, p)).collect())
}

async fn enqueue_deletion(tx: &Transaction<'_>, key: BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
    let row = tx
        .query_one(
            "INSERT INTO blob_deletions (blob_key, not_before) VALUES ($1, $2) RETURNING id",
            &[&key.to_string(), &not_before],
        )
        .await
        .map_err(backend)?;
    Ok(BlobDeletionId(row.get(0)))
}

/// Removes the deletion-queue entry that guarded bytes written ahead of
/// their row; refuses if a janitor has claimed it (see the SQLite store).
async fn take_guard(tx: &Transaction<'_>, guard: BlobDeletionId) -> Result<()> {
    let taken = tx
        .execute("DELETE FROM blob_deletions WHERE id = $1 AND claimed_until IS NULL", &[&guard.0])
        .await
        .map_err(backend)?;
    if taken == 0 {
        return Err(MetaError::GuardLost);
    }
    Ok(())
}

async fn usage(client: &impl GenericClient, org_id: &OrgId) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT (COALESCE((SELECT SUM(num_bytes) FROM files WHERE org_id = $1 AND holds_name), 0)
                   + COALESCE((SELECT SUM(num_bytes) FROM uploads WHERE org_id = $1 AND state = 'active'), 0))::BIGINT",
            &[&org_id.to_string()],
        )
        .await
        .map_err(backend)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Refuses `adding` bytes that would take the org past `quota`. Locks the
/// org's row first, so concurrent checks in one org take turns.
async fn within_quota(tx: &Transaction<'_>, org_id: &OrgId, adding: u64, quota: Option<u64>) -> Result<()> {
    let Some(quota) = quota else { return Ok(()) };
    tx.execute("SELECT 1 FROM orgs WHERE org_id = $1 FOR NO KEY UPDATE", &[&org_id.to_string()])
        .await
        .map_err(backend)?;
    let used = usage(tx, org_id).await?;
    if used + adding > quota {
        return Err(MetaError::QuotaExceeded { quota, used });
    }
    Ok(())
}

async fn drop_upload_parts(tx: &Transaction<'_>, upload_id: &UploadId) -> Result<()> {
    let id = upload_id.to_string();
    tx.execute("DELETE FROM checkpoints WHERE upload_id = $1", &[&id]).await.map_err(backend)?;
    tx.execute("DELETE FROM upload_parts WHERE upload_id = $1", &[&id]).await.map_err(backend)?;
    Ok(())
}

async fn files_changed(tx: &Transaction<'_>, org_id: &OrgId, now: UnixSeconds) -> Result<()> {
    tx.execute(
        "UPDATE orgs SET files_changed_at = GREATEST(files_changed_at, $2) WHERE org_id = $1",
        &[&org_id.to_string(), &now],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// Registers a file in the calling transaction (see the SQLite store's
/// `register`, which this mirrors).
async fn register(
    tx: &Transaction<'_>,
    new: &NewFile,
    status: FileStatus,
    now: UnixSeconds,
    delete_displaced_after: UnixSeconds,
) -> Result<Registered> {
    let org = new.org_id.to_string();
    // Locks the org's row until commit: registrations in one org queue here.
    let file_index: i64 = tx
        .query_one(
            "UPDATE orgs SET next_file_index = next_file_index + 1 WHERE org_id = $1 RETURNING next_file_index - 1",
            &[&org],
        )
        .await
        .map_err(backend)?
        .get(0);
    let holder = tx
        .query_opt(
            "SELECT file_uid, status FROM files WHERE org_id = $1 AND file_name = $2 AND holds_name",
            &[&org, &new.file_name],
        )
        .await
        .map_err(backend)?;
    let holder: Option<(FileUid, FileStatus)> = match holder {
        Some(row) => {
            Some((parsed(&row, "file_uid")?, FileStatus::parse(row.get("status")).ok_or_else(|| bad("file status"))?))
        }
        None => None,
    };
    let holder_is_good = holder.is_some_and(|(_, status)| status.is_downloadable());
    let holds_name = status.is_downloadable() || !holder_is_good;
    let mut displaced = None;
    if holds_name && let Some((old, _)) = holder {
        tx.execute(
            "UPDATE files SET holds_name = FALSE, deleted_at = $2 WHERE file_uid = $1",
            &[&old.to_string(), &now],
        )
        .await
        .map_err(backend)?;
        enqueue_deletion(tx, BlobKey::File(old), delete_displaced_after).await?;
        displaced = Some(old);
    }
    if !holds_name {
        enqueue_deletion(tx, BlobKey::File(new.file_uid), now).await?;
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
        &[
            &file.file_uid.to_string(),
            &org,
            &file.file_name,
            &file.file_type,
            &(file.num_bytes as i64),
            &file.status.as_str(),
            &file.checksum_crc32c.map(|crc| crc.0 as i64),
            &file_index,
            &file.created_at,
            &file.metadata_status.as_str(),
            &file.attributes,
            &holds_name,
        ],
    )
    .await
    .map_err(backend)?;
    files_changed(tx, &new.org_id, now).await?;
    Ok(Registered { file, holds_name, displaced })
}

#[async_trait]
impl MetadataStore for Postgres {
    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(backend)?;
        Ok(())
    }

    async fn create_org(&self, name: &str, now: UnixSeconds) -> Result<OrgRecord> {
        let org = OrgRecord { org_id: OrgId::generate(), name: name.to_owned(), created_at: now };
        let inserted = self
            .client()
            .await?
            .execute(
                "INSERT INTO orgs (org_id, name, created_at) VALUES ($1, $2, $3)",
                &[&org.org_id.to_string(), &org.name, &now],
            )
            .await;
        match inserted {
            Ok(_) => Ok(org),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(MetaError::OrgExists(org.name)),
            Err(e) => Err(backend(e)),
        }
    }

    async fn find_org(&self, name: &str) -> Result<Option<OrgRecord>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT org_id, name, created_at FROM orgs WHERE name = $1", &[&name])
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(OrgRecord { org_id: parsed(&r, "org_id")?, name: r.get("name"), created_at: r.get("created_at") })
        })
        .transpose()
    }

    async fn bootstrap(&self, org_name: &str, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(backend)?;
        let empty: bool = tx.query_one("SELECT NOT EXISTS (SELECT 1 FROM orgs)", &[]).await.map_err(backend)?.get(0);
        if !empty {
            return Ok(false);
        }
        let org_id = OrgId::generate().to_string();
        tx.execute("INSERT INTO orgs (org_id, name, created_at) VALUES ($1, $2, $3)", &[&org_id, &org_name, &now])
            .await
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
            &[&key_id.to_string(), &org_id, &secret_hash, &now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn create_api_key(&self, org_id: &OrgId, key_id: &KeyId, secret_hash: &[u8], now: UnixSeconds) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO api_keys (key_id, org_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
                &[&key_id.to_string(), &org_id.to_string(), &secret_hash, &now],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn find_api_key(&self, key_id: &KeyId) -> Result<Option<ApiKeyRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT key_id, org_id, secret_hash, created_at, revoked_at FROM api_keys WHERE key_id = $1",
                &[&key_id.to_string()],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(&self, org_id: &OrgId) -> Result<Vec<ApiKeyRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key_id, org_id, secret_hash, created_at, revoked_at FROM api_keys
                 WHERE org_id = $1 ORDER BY created_at, key_id",
                &[&org_id.to_string()],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, key_id: &KeyId, now: UnixSeconds) -> Result<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1",
                &[&key_id.to_string(), &now],
            )
            .await
            .map_err(backend)?;
        Ok(changed == 1)
    }

    async fn insert_upload(&self, u: &UploadRecord, guard: BlobDeletionId, quota: Option<u64>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        within_quota(&tx, &u.org_id, u.num_bytes, quota).await?;
        take_guard(&tx, guard).await?;
        tx.execute(
            &format!("INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            &[
                &u.upload_id.to_string(),
                &u.org_id.to_string(),
                &u.file_uid.to_string(),
                &u.file_name,
                &u.file_type,
                &(u.num_bytes as i64),
                &(u.part_size as i64),
                &u.state.as_str(),
                &u.created_at,
                &u.last_activity_at,
                &u.store_upload_id,
            ],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn get_upload(&self, org_id: &OrgId, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1 AND org_id = $2"),
                &[&upload_id.to_string(), &org_id.to_string()],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn get_upload_for_part_put(&self, upload_id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1"), &[&upload_id.to_string()])
            .await
            .map_err(backend)?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn find_resumable_upload(&self, org_id: &OrgId, file_name: &str) -> Result<Option<UploadRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads
                     WHERE org_id = $1 AND file_name = $2 AND state = 'active'
                     ORDER BY created_at DESC, upload_id DESC LIMIT 1"
                ),
                &[&org_id.to_string(), &file_name],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn touch_upload(&self, upload_id: &UploadId, now: UnixSeconds) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE uploads SET last_activity_at = GREATEST(last_activity_at, $2) WHERE upload_id = $1",
                &[&upload_id.to_string(), &now],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list_parts(&self, upload_id: &UploadId) -> Result<BTreeMap<u32, RecordedPart>> {
        read_parts(&self.client().await?, upload_id).await
    }

    async fn list_checkpoints(&self, upload_id: &UploadId) -> Result<Vec<TokenClaim>> {
        let rows = self
            .client()
            .await?
            .query("SELECT part_number, part_token FROM checkpoints WHERE upload_id = $1", &[&upload_id.to_string()])
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| TokenClaim {
                part_number: r.get::<_, i32>("part_number") as u32,
                token: PartToken::from_wire(r.get("part_token")),
            })
            .collect())
    }

    async fn has_part(&self, upload_id: &UploadId, part_number: u32) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM upload_parts WHERE upload_id = $1 AND part_number = $2)",
                &[&upload_id.to_string(), &(part_number as i32)],
            )
            .await
            .map_err(backend)?;
        Ok(row.get(0))
    }

    async fn forget_part(&self, upload_id: &UploadId, part_number: u32) -> Result<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM upload_parts WHERE upload_id = $1 AND part_number = $2",
                &[&upload_id.to_string(), &(part_number as i32)],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn record_part(&self, upload_id: &UploadId, part: &RecordedPart, now: UnixSeconds) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        require_active(&tx, None, upload_id).await?;
        let id = upload_id.to_string();
        tx.execute(
            "INSERT INTO upload_parts (upload_id, part_number, part_token, crc32c, num_bytes)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (upload_id, part_number) DO UPDATE SET
                 part_token = excluded.part_token, crc32c = excluded.crc32c, num_bytes = excluded.num_bytes",
            &[
                &id,
                &(part.part_number as i32),
                &part.token.as_str(),
                &part.crc32c.map(|c| c.0 as i64),
                &(part.num_bytes as i64),
            ],
        )
        .await
        .map_err(backend)?;
        tx.execute(
            "UPDATE uploads SET last_activity_at = GREATEST(last_activity_at, $2) WHERE upload_id = $1",
            &[&id, &now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn checkpoint(
        &self,
        org_id: &OrgId,
        upload_id: &UploadId,
        claims: &[TokenClaim],
        store_parts: Option<&BTreeMap<u32, RecordedPart>>,
        now: UnixSeconds,
    ) -> Result<Result<usize, ClaimProblems>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        require_active(&tx, Some(org_id), upload_id).await?;
        let id = upload_id.to_string();
        let upload = tx
            .query_one(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1"), &[&id])
            .await
            .map_err(backend)?;
        let upload = upload_from_row(&upload)?;
        let recorded = match store_parts {
            Some(parts) => parts.clone(),
            None => read_parts(&tx, upload_id).await?,
        };
        let count = match check_checkpoint(&upload.plan(), &recorded, claims) {
            Ok(count) => count,
            Err(problems) => return Ok(Err(problems)),
        };
        let insert = tx
            .prepare(
                "INSERT INTO checkpoints (upload_id, part_number, part_token) VALUES ($1, $2, $3)
                 ON CONFLICT (upload_id, part_number) DO UPDATE SET part_token = excluded.part_token",
            )
            .await
            .map_err(backend)?;
        for claim in claims {
            tx.execute(&insert, &[&id, &(claim.part_number as i32), &claim.token.as_str()]).await.map_err(backend)?;
        }
        tx.execute(
            "UPDATE uploads SET last_activity_at = GREATEST(last_activity_at, $2) WHERE upload_id = $1",
            &[&id, &now],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Ok(count))
    }

    async fn complete_upload(&self, r: &Registration) -> Result<Registered> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE uploads SET state = 'completed', last_activity_at = $3
                     WHERE upload_id = $1 AND org_id = $2 AND state = 'active'
                     RETURNING {UPLOAD_COLUMNS}"
                ),
                &[&r.upload_id.to_string(), &r.org_id.to_string(), &r.now],
            )
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            // Lost a race, or never could have won: say why.
            return Err(MetaError::UploadNotActive(upload_state(&tx, Some(&r.org_id), &r.upload_id, "").await?));
        };
        // The update holds the upload's row lock, which record_part takes
        // first: no part is recorded between this read and the commit.
        if let Some(verified) = &r.verified_parts
            && !crate::parts_unchanged(verified, &read_parts(&tx, &r.upload_id).await?)
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
        let registered = register(&tx, &file, r.status, r.now, r.delete_displaced_after).await?;
        drop_upload_parts(&tx, &r.upload_id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(registered)
    }

    async fn abort_upload(&self, org_id: &OrgId, upload_id: &UploadId, now: UnixSeconds) -> Result<AbortOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let row = tx
            .query_opt(
                "UPDATE uploads SET state = 'aborted', last_activity_at = $3
                 WHERE upload_id = $1 AND org_id = $2 AND state = 'active' RETURNING file_uid, store_upload_id",
                &[&upload_id.to_string(), &org_id.to_string(), &now],
            )
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return match upload_state(&tx, Some(org_id), upload_id, "").await? {
                UploadState::Aborted => Ok(AbortOutcome::AlreadyAborted),
                other => Err(MetaError::UploadNotActive(other)),
            };
        };
        let file_uid: FileUid = parsed(&row, "file_uid")?;
        let store_upload_id: Option<String> = row.get("store_upload_id");
        drop_upload_parts(&tx, upload_id).await?;
        let key = BlobKey::upload(*upload_id, file_uid, store_upload_id.as_deref());
        let deletion = enqueue_deletion(&tx, key, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(AbortOutcome::Aborted { deletion })
    }

    async fn register_file(
        &self,
        file: &NewFile,
        guard: BlobDeletionId,
        quota: Option<u64>,
        now: UnixSeconds,
        delete_displaced_after: UnixSeconds,
    ) -> Result<Registered> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        within_quota(&tx, &file.org_id, file.num_bytes, quota).await?;
        take_guard(&tx, guard).await?;
        let registered = register(&tx, file, FileStatus::Registered, now, delete_displaced_after).await?;
        tx.commit().await.map_err(backend)?;
        Ok(registered)
    }

    async fn org_usage(&self, org_id: &OrgId) -> Result<u64> {
        usage(&self.client().await?, org_id).await
    }

    async fn get_file(&self, org_id: &OrgId, file_name: &str) -> Result<Option<FileRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE org_id = $1 AND file_name = $2 AND holds_name"),
                &[&org_id.to_string(), &file_name],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn list_files(
        &self,
        org_id: &OrgId,
        file_type: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<FileRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {FILE_COLUMNS} FROM files
                     WHERE org_id = $1 AND holds_name AND ($2::TEXT IS NULL OR file_type = $2)
                     ORDER BY file_index LIMIT $3 OFFSET $4"
                ),
                &[&org_id.to_string(), &file_type, &(limit as i64), &(offset as i64)],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(file_from_row).collect()
    }

    async fn file_stats(&self, org_id: &OrgId) -> Result<FileStats> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(f.file_uid) AS num_files, COALESCE(SUM(f.num_bytes), 0)::BIGINT AS num_bytes,
                        COUNT(*) FILTER (WHERE f.status = 'ingested') AS num_ingested, o.files_changed_at
                 FROM orgs o LEFT JOIN files f ON f.org_id = o.org_id AND f.holds_name
                 WHERE o.org_id = $1 GROUP BY o.org_id",
                &[&org_id.to_string()],
            )
            .await
            .map_err(backend)?;
        Ok(FileStats {
            num_files: row.get::<_, i64>("num_files") as u64,
            num_bytes: row.get::<_, i64>("num_bytes") as u64,
            num_ingested: row.get::<_, i64>("num_ingested") as u64,
            last_updated: row.get("files_changed_at"),
        })
    }

    async fn delete_file(
        &self,
        org_id: &OrgId,
        file_name: &str,
        now: UnixSeconds,
        delete_after: UnixSeconds,
    ) -> Result<Option<FileRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // The org's row first (see the lock order above); rolled back if
        // there is nothing to delete.
        files_changed(&tx, org_id, now).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE files SET holds_name = FALSE, deleted_at = $3
                     WHERE org_id = $1 AND file_name = $2 AND holds_name RETURNING {FILE_COLUMNS}"
                ),
                &[&org_id.to_string(), &file_name, &now],
            )
            .await
            .map_err(backend)?;
        let Some(file) = row.as_ref().map(file_from_row).transpose()? else {
            return Ok(None);
        };
        enqueue_deletion(&tx, BlobKey::File(file.file_uid), delete_after).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(file))
    }

    async fn claim_file_to_ingest(
        &self,
        file_uid: &FileUid,
        now: UnixSeconds,
        lease_secs: i64,
    ) -> Result<Option<FileRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = $2
                     WHERE file_uid = $1 AND status = 'registered' AND deleted_at IS NULL
                     RETURNING {FILE_COLUMNS}"
                ),
                &[&file_uid.to_string(), &(now + lease_secs)],
            )
            .await
            .map_err(backend)?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn claim_files_to_ingest(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<FileRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE files SET status = 'ingesting', ingest_claimed_until = $2
                     WHERE file_uid IN (
                         SELECT file_uid FROM files
                         WHERE deleted_at IS NULL AND (status = 'registered'
                               OR (status = 'ingesting' AND ingest_claimed_until <= $1))
                         LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING {FILE_COLUMNS}"
                ),
                &[&now, &(now + lease_secs), &(limit as i64)],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(file_from_row).collect()
    }

    async fn finish_ingest(
        &self,
        file_uid: &FileUid,
        metadata_status: MetadataStatus,
        attributes: Option<&str>,
        checksum_crc32c: Option<Crc32c>,
        now: UnixSeconds,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let Some(org) = tx
            .query_opt("SELECT org_id FROM files WHERE file_uid = $1", &[&file_uid.to_string()])
            .await
            .map_err(backend)?
        else {
            return Ok(());
        };
        // The org's row before the file's (see the lock order above).
        files_changed(&tx, &parsed(&org, "org_id")?, now).await?;
        let changed = tx
            .execute(
                "UPDATE files SET status = 'ingested', metadata_status = $2, attributes = $3,
                     checksum_crc32c = COALESCE($4, checksum_crc32c), ingest_claimed_until = NULL
                 WHERE file_uid = $1 AND status = 'ingesting'",
                &[&file_uid.to_string(), &metadata_status.as_str(), &attributes, &checksum_crc32c.map(|c| c.0 as i64)],
            )
            .await
            .map_err(backend)?;
        if changed == 1 {
            tx.commit().await.map_err(backend)?;
        }
        Ok(())
    }

    async fn expire_idle_uploads(
        &self,
        idle_before: UnixSeconds,
        now: UnixSeconds,
        limit: usize,
    ) -> Result<Vec<UploadId>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let rows = tx
            .query(
                "UPDATE uploads SET state = 'aborted'
                 WHERE upload_id IN (
                     SELECT upload_id FROM uploads
                     WHERE state = 'active' AND last_activity_at < $1
                     LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING upload_id, file_uid, store_upload_id",
                &[&idle_before, &(limit as i64)],
            )
            .await
            .map_err(backend)?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let (upload_id, file_uid): (UploadId, FileUid) = (parsed(row, "upload_id")?, parsed(row, "file_uid")?);
            let store_upload_id: Option<String> = row.get("store_upload_id");
            drop_upload_parts(&tx, &upload_id).await?;
            enqueue_deletion(&tx, BlobKey::upload(upload_id, file_uid, store_upload_id.as_deref()), now).await?;
            expired.push(upload_id);
        }
        tx.commit().await.map_err(backend)?;
        Ok(expired)
    }

    async fn count_active_uploads(&self) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT COUNT(*) FROM uploads WHERE state = 'active'", &[])
            .await
            .map_err(backend)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn inventory(&self) -> Result<Inventory> {
        let client = self.client().await?;
        let mut inventory = Inventory::default();
        for row in client.query("SELECT file_uid, num_bytes, holds_name FROM files", &[]).await.map_err(backend)? {
            let uid: FileUid = parsed(&row, "file_uid")?;
            if row.get::<_, bool>("holds_name") {
                inventory.named_files.push((uid, row.get::<_, i64>("num_bytes") as u64));
            } else {
                inventory.other_files.push(uid);
            }
        }
        let uploads = client
            .query(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'active'"), &[])
            .await
            .map_err(backend)?;
        inventory.active_uploads = uploads.iter().map(upload_from_row).collect::<Result<_>>()?;
        let queued = client.query("SELECT blob_key FROM blob_deletions", &[]).await.map_err(backend)?;
        inventory.queued = queued.iter().map(|r| parsed(r, "blob_key")).collect::<Result<_>>()?;
        Ok(inventory)
    }

    async fn enqueue_blob_deletion(&self, key: &BlobKey, not_before: UnixSeconds) -> Result<BlobDeletionId> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO blob_deletions (blob_key, not_before) VALUES ($1, $2) RETURNING id",
                &[&key.to_string(), &not_before],
            )
            .await
            .map_err(backend)?;
        Ok(BlobDeletionId(row.get(0)))
    }

    async fn claim_blob_deletions(&self, now: UnixSeconds, lease_secs: i64, limit: usize) -> Result<Vec<BlobDeletion>> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE blob_deletions SET claimed_until = $2
                 WHERE id IN (
                     SELECT id FROM blob_deletions
                     WHERE not_before <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, blob_key",
                &[&now, &(now + lease_secs), &(limit as i64)],
            )
            .await
            .map_err(backend)?;
        let mut due: Vec<BlobDeletion> = rows
            .iter()
            .map(|r| Ok(BlobDeletion { id: BlobDeletionId(r.get("id")), blob_key: parsed(r, "blob_key")? }))
            .collect::<Result<_>>()?;
        due.sort_by_key(|d| d.id.0);
        Ok(due)
    }

    async fn finish_blob_deletion(&self, id: BlobDeletionId) -> Result<()> {
        self.client().await?.execute("DELETE FROM blob_deletions WHERE id = $1", &[&id.0]).await.map_err(backend)?;
        Ok(())
    }
}
