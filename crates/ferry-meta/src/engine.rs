//! The narrow seam between the metadata flows, written once in `store.rs`,
//! and the two databases. An engine runs a flow in a transaction (or on a
//! connection, for reads); a flow talks to it through [`Tx`]: statements
//! with `$1`-style parameters, rows of plain [`Value`]s. What the engines
//! do differently stays behind here: SQLite's one serial writer and its
//! readers, PostgreSQL's pool and row locks ([`Dialect`]).

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use async_trait::async_trait;

use crate::{MetaError, Result};

/// A flow's future, borrowing the transaction it runs in.
pub type Flow<'t, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 't>>;

/// A flow: given a transaction, its future. (A trait of its own only to
/// name this bound once.)
pub trait FlowFn<T>: for<'t> FnOnce(&'t mut dyn Tx) -> Flow<'t, T> + Send + 'static {}

impl<T, F: for<'t> FnOnce(&'t mut dyn Tx) -> Flow<'t, T> + Send + 'static> FlowFn<T> for F {}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Runs `flow` in one write transaction: committed if it returns `Ok`,
    /// rolled back if it returns `Err`.
    async fn write<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T>;

    /// Runs `flow` on a connection, outside a transaction.
    async fn read<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T>;

    /// A read of rows by primary key on a request's hot path. An engine
    /// may run it where it is cheapest; by default it is a [`Engine::read`].
    async fn lookup<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        self.read(flow).await
    }
}

/// Statements in a transaction or on a connection.
#[async_trait]
pub trait Tx: Send {
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    fn dialect(&self) -> Dialect;

    async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params).await?.ok_or_else(|| MetaError::Backend("a query returned no row".into()))
    }
}

/// SQL that differs between the engines.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// After a `SELECT` of rows the transaction goes on to update:
    /// PostgreSQL takes the update lock up front (two transactions that each
    /// held a shared lock while waiting to upgrade it would deadlock);
    /// SQLite's write transactions run one at a time and need none.
    pub lock_for_update: &'static str,
    /// After a `SELECT` of work to lease: other nodes' leases are skipped,
    /// not waited for.
    pub skip_locked: &'static str,
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

macro_rules! value_from {
    ($($t:ty => $arm:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                $arm(v)
            }
        })*
    };
}

value_from!(
    i64 => Value::Int,
    bool => Value::Bool,
    String => Value::Text,
    Vec<u8> => Value::Bytes,
    u32 => |v: u32| Value::Int(v.into()),
    // Sizes and indexes stay far below 2^63.
    u64 => |v: u64| Value::Int(v as i64),
    usize => |v: usize| Value::Int(v as i64),
    &str => |v: &str| Value::Text(v.to_owned()),
    &[u8] => |v: &[u8]| Value::Bytes(v.to_vec()),
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Typed ids are stored as their text.
macro_rules! value_from_display {
    ($($t:ty),*) => {
        $(impl From<&$t> for Value {
            fn from(v: &$t) -> Self {
                Value::Text(v.to_string())
            }
        })*
    };
}

value_from_display!(
    ferry_core::ids::OrgId,
    ferry_core::ids::KeyId,
    ferry_core::ids::UploadId,
    ferry_core::ids::FileUid,
    ferry_core::ids::EndpointId,
    ferry_core::ids::EventId,
    ferry_core::blob_key::BlobKey
);

/// `$1, $2, …` for a statement: `params![a, b]` is `[a.into(), b.into()]`.
#[macro_export]
#[doc(hidden)]
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        [$($crate::engine::Value::from($v)),*]
    };
}

/// One row, its columns by position.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

fn bad(i: usize, what: &str) -> MetaError {
    MetaError::Backend(format!("column {i} is not {what}").into())
}

impl Row {
    /// The columns after the first `n`, for a row that carries a record
    /// after some columns of its own.
    pub fn skip(self, n: usize) -> Row {
        Row(self.0.into_iter().skip(n).collect())
    }

    fn get(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| bad(i, "an integer"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.get(i) {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            _ => Err(bad(i, "an integer")),
        }
    }

    /// A boolean: PostgreSQL's, or SQLite's 0 and 1.
    pub fn bool(&self, i: usize) -> Result<bool> {
        match self.get(i) {
            Value::Bool(v) => Ok(*v),
            Value::Int(v) => Ok(*v != 0),
            _ => Err(bad(i, "a boolean")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| bad(i, "text"))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.get(i) {
            Value::Text(v) => Ok(Some(v.clone())),
            Value::Null => Ok(None),
            _ => Err(bad(i, "text")),
        }
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        match self.get(i) {
            Value::Bytes(v) => Ok(v.clone()),
            _ => Err(bad(i, "bytes")),
        }
    }

    /// A value kept as text (an id, a state).
    pub fn parse<T: FromStr>(&self, i: usize) -> Result<T> {
        self.text(i)?.parse().map_err(|_| bad(i, std::any::type_name::<T>()))
    }
}

/// Which kind of engine call an observation is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Write,
    Read,
    Lookup,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Write => "write",
            Access::Read => "read",
            Access::Lookup => "lookup",
        }
    }
}

/// Told how long each engine call took, waiting for a connection or the
/// writer included: that wait is what an operator sees first when the
/// database is the bottleneck.
pub type Observer = std::sync::Arc<dyn Fn(Access, std::time::Duration) + Send + Sync>;

/// An engine whose calls are timed; the store above it does not know.
pub struct Timed<E> {
    engine: E,
    observer: Observer,
}

impl<E> Timed<E> {
    pub fn new(engine: E, observer: Observer) -> Self {
        Self { engine, observer }
    }

    async fn timed<T>(&self, access: Access, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let outcome = call.await;
        (self.observer)(access, started.elapsed());
        outcome
    }
}

#[async_trait]
impl<E: Engine> Engine for Timed<E> {
    async fn write<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        self.timed(Access::Write, self.engine.write(flow)).await
    }

    async fn read<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        self.timed(Access::Read, self.engine.read(flow)).await
    }

    async fn lookup<T: Send + 'static>(&self, flow: impl FlowFn<T>) -> Result<T> {
        self.timed(Access::Lookup, self.engine.lookup(flow)).await
    }
}
