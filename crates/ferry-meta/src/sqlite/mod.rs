//! The embedded engine: one SQLite file in the data dir.
//!
//! WAL mode lets readers run beside the one writer; `synchronous = FULL`
//! makes every commit durable before it returns, because a commit here is a
//! promise to a client (a part is uploaded, a file is registered). Writes
//! go through one connection and begin `IMMEDIATE`, so a write transaction
//! takes the lock up front instead of failing half-way; the busy timeout
//! covers the admin commands writing from another process.
//!
//! A flow runs on a blocking thread, on the connection: every statement
//! finishes as soon as it is called, so one poll of the flow's future runs
//! it to its end.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, ToSql};

use crate::engine::{Dialect, Engine, FlowFn, Row, Tx, Value};
use crate::{MetaError, Result};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations.sql"),
    include_str!("migration-2.sql"),
    include_str!("../migrations/org-totals.sql"),
    include_str!("../migrations/webhooks.sql"),
    include_str!("../migrations/unanswered-completes.sql"),
];
const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Cheap to clone: a flow moves a handle into the blocking thread it runs on.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn backend(e: rusqlite::Error) -> MetaError {
    match e.sqlite_error_code() {
        // A full disk is the operator's to fix, not a fault: say so.
        Some(ErrorCode::DiskFull) => MetaError::StorageFull,
        Some(ErrorCode::ConstraintViolation) if e.to_string().contains("UNIQUE") => MetaError::Duplicate(e.to_string()),
        _ => MetaError::Backend(Box::new(e)),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
}

impl Sqlite {
    /// Writes a consistent copy of the database at `source` to `dest` (a
    /// file that must not exist yet) while servers go on using it: SQLite's
    /// `VACUUM INTO` reads one snapshot, so the copy is the database as of
    /// one moment, never half of a commit. The copy is synced before this
    /// returns.
    pub fn snapshot(source: &Path, dest: &Path) -> Result<()> {
        let conn = Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let dest_text = dest.to_str().ok_or_else(|| MetaError::Backend("the backup path is not UTF-8".into()))?;
        conn.execute("VACUUM INTO ?1", [dest_text]).map_err(backend)?;
        std::fs::File::open(dest).and_then(|file| file.sync_all()).map_err(|e| MetaError::Backend(Box::new(e)))
    }
}

impl Inner {
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drives a flow over `conn` to its end. Its statements complete at once,
/// so it never waits; if it did, that would be a flow awaiting something
/// other than its statements, which is a bug.
fn run<T>(conn: &mut Connection, flow: impl FlowFn<T>) -> Result<T> {
    let mut tx = SqliteTx { conn };
    let mut future = flow(&mut tx);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => Err(MetaError::Backend("a SQLite flow waited for something other than SQLite".into())),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| MetaError::Backend(Box::new(e)))?
}

#[async_trait]
impl Engine for Sqlite {
    async fn write<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
            let outcome = run(&mut conn, flow);
            let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
            match conn.execute_batch(end) {
                Ok(()) => outcome,
                // A failed COMMIT leaves the transaction open: end it.
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(backend(e))
                }
            }
        })
        .await
    }

    async fn read<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || run(&mut inner.reader(), flow)).await
    }

    /// Run on the calling thread when a reader connection is free, else
    /// like [`Engine::read`]. Every API request makes two (its key, its
    /// upload): a hop to the blocking pool and back costs two thread
    /// wake-ups, several times the query, and capped part-URL requests at
    /// 14,000/s on 2 cores. Blocking here is brief: in WAL mode a reader
    /// never waits for the writer, and these rows sit in SQLite's page cache.
    async fn lookup<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        for reader in &self.inner.readers {
            if let Ok(mut conn) = reader.try_lock() {
                return run(&mut conn, flow);
            }
        }
        self.read(flow).await
    }
}

/// A connection that a flow runs on: the writer inside `BEGIN IMMEDIATE`,
/// or a reader.
struct SqliteTx<'c> {
    conn: &'c mut Connection,
}

/// `$1` is a named parameter to SQLite, numbered by first appearance;
/// `?1` is numbered by its digits, as PostgreSQL numbers `$1`.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Int(v as i64),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
    }
}

#[async_trait]
impl Tx for SqliteTx<'_> {
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut statement = self.conn.prepare_cached(&numbered(sql)).map_err(backend)?;
        Ok(statement.execute(rusqlite::params_from_iter(params)).map_err(backend)? as u64)
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut statement = self.conn.prepare_cached(&numbered(sql)).map_err(backend)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params)).map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(backend)? {
            out.push(Row((0..columns)
                .map(|i| row.get_ref(i).map(value))
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect { lock_for_update: "", skip_locked: "" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before the totals were counters gets them from its
    /// files when it is migrated.
    #[test]
    fn migrating_counts_the_totals_of_existing_files() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO orgs (org_id, name, created_at) VALUES ('o', 'o', 0), ('empty', 'empty', 0);
             INSERT INTO files (file_uid, org_id, file_name, file_type, num_bytes, status, file_index, holds_name,
                                created_at)
             VALUES ('f1', 'o', 'a', 'text/csv', 10, 'ingested', 0, 1, 0),
                    ('f2', 'o', 'b', 'text/csv', 20, 'registered', 1, 1, 0),
                    ('f3', 'o', 'b', 'text/csv', 40, 'ingested', 2, 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let totals = |org: &str| {
            conn.query_row("SELECT num_files, num_bytes, num_ingested FROM orgs WHERE org_id = ?1", [org], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
            .unwrap()
        };
        assert_eq!(totals("o"), (2, 30, 1));
        assert_eq!(totals("empty"), (0, 0, 0));
    }
}
