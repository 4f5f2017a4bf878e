//! The scale-out engine: PostgreSQL, shared by every ferry node.
//!
//! Races between nodes resolve in conditional updates and row locks; the
//! flows take their locks in one order (upload, then org, then files) and
//! take update locks up front ([`Dialect::lock_for_update`]), so two
//! transactions never wait on each other. Leased work is claimed with
//! `FOR UPDATE SKIP LOCKED`, so nodes never wait on each other's leases.

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Statement};

use crate::engine::{Dialect, Engine, FlowFn, Row, Tx, Value};
use crate::{MetaError, Result};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations.sql"),
    include_str!("../migrations/org-totals.sql"),
    include_str!("../migrations/webhooks.sql"),
    include_str!("../migrations/unanswered-completes.sql"),
];
/// Serializes migrations across nodes starting at once.
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
    let pg = any.downcast_ref::<tokio_postgres::Error>();
    if pg.is_some_and(io_failure) || any.downcast_ref::<deadpool_postgres::PoolError>().is_some() {
        return MetaError::Unavailable(e.to_string());
    }
    // tokio-postgres says only "db error" at the top; the cause says what.
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    match pg.and_then(tokio_postgres::Error::code) {
        Some(&SqlState::UNIQUE_VIOLATION) => MetaError::Duplicate(text),
        _ => MetaError::Backend(text.into()),
    }
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
}

#[async_trait]
impl Engine for Postgres {
    async fn write<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        let mut client = self.pool.get().await.map_err(backend)?;
        let mut tx = PgTx(client.transaction().await.map_err(backend)?);
        let value = flow(&mut tx).await?;
        tx.0.commit().await.map_err(backend)?;
        Ok(value)
    }

    async fn read<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        let mut client = PgTx(self.pool.get().await.map_err(backend)?);
        flow(&mut client).await
    }
}

/// A pooled connection, or a transaction on one.
struct PgTx<C>(C);

impl ToSql for Value {
    /// Integers go out as the parameter's own width: PostgreSQL checks it.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::BYTEA => Value::Bytes(Vec::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn prepared(client: &impl GenericClient, sql: &str) -> Result<Statement> {
    client.prepare_cached(sql).await.map_err(backend)
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl<C: GenericClient + Send + Sync> Tx for PgTx<C> {
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let statement = prepared(&self.0, sql).await?;
        self.0.execute(&statement, &refs(params)).await.map_err(backend)
    }

    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = prepared(&self.0, sql).await?;
        let rows = self.0.query(&statement, &refs(params)).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                (0..row.len()).map(|i| row.try_get::<_, Value>(i).map_err(backend)).collect::<Result<_>>().map(Row)
            })
            .collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect { lock_for_update: "FOR NO KEY UPDATE", skip_locked: "FOR UPDATE SKIP LOCKED" }
    }
}
