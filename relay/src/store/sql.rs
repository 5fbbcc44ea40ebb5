//! The store's one door to a database: a [`Connection`] that is either an
//! embedded SQLite file (rusqlite) or a PostgreSQL server (the `postgres`
//! client), with the small part of rusqlite's interface the store uses
//! (`execute`, `query_row`, `prepare`, `query_map`, transactions,
//! `optional()`), so that every query is written once.
//!
//! Queries are written in SQLite's syntax restricted to what both engines
//! share; for PostgreSQL [`translate`] rewrites the placeholders (`?1` →
//! `$1`) and drops SQLite's `INDEXED BY` hints. Where the dialects really
//! differ (JSON functions), the caller asks [`Connection::is_postgres`] and
//! writes both forms side by side.
//!
//! Values cross as [`Value`] (null, 64-bit integer, double, text, bytes):
//! the PostgreSQL schema (`pg_schema.sql`) uses `BIGINT`, `DOUBLE
//! PRECISION`, `TEXT` and `BYTEA` for SQLite's four storage classes, so the
//! mapping is exact. A PostgreSQL `boolean` (from `EXISTS`) reads as 0 or 1,
//! as in SQLite. Aggregates that PostgreSQL widens to `numeric` (`SUM` of a
//! `BIGINT`) must be cast back in the query (`CAST(SUM(x) AS BIGINT)`).
//!
//! Transactions: SQLite's `BEGIN IMMEDIATE` takes the database's one write
//! lock. On PostgreSQL every transaction takes one transaction-scoped
//! advisory lock ([`WRITE_LOCK`]) instead, so writers are serialised across
//! every relay sharing the server exactly as they are on one SQLite file:
//! the audit chain's head cannot fork, and the store's read-then-write
//! checks stay correct without retry loops. Reads outside a transaction do
//! not take it.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use thiserror::Error;

/// The advisory lock every PostgreSQL transaction of the store holds (an
/// arbitrary constant: "deskside" in ASCII).
pub const WRITE_LOCK: i64 = 0x6465_736b_7369_6465;

/// The session-level advisory lock the relay leading the ticketing outbox
/// holds (`Store::hold_outbox_lead`).
pub const OUTBOX_LOCK: i64 = WRITE_LOCK + 1;

/// A database failure.
#[derive(Debug, Error)]
pub enum Error {
    /// SQLite refused or failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed (or the connection to it broke).
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A query that must return a row returned none.
    #[error("the query returned no row")]
    NoRows,
    /// A column holds a value of another type than the code reads.
    #[error("column {column} holds {found}, read as {wanted}")]
    Type {
        /// The column's index.
        column: usize,
        /// What the code asked for.
        wanted: &'static str,
        /// What the row holds.
        found: &'static str,
    },
    /// A column index past the row's end.
    #[error("no column {0} in the row")]
    Column(usize),
    /// The thread holding the PostgreSQL connection is gone (it panicked).
    #[error("the PostgreSQL connection's thread stopped")]
    Disconnected,
    /// The connection to PostgreSQL broke inside a transaction, which the
    /// server rolled back.
    #[error("the connection to PostgreSQL was lost during a transaction, which PostgreSQL rolled back; the next request reconnects")]
    TransactionLost,
    /// No thread could be started for the PostgreSQL connection.
    #[error("cannot start the PostgreSQL connection's thread: {0}")]
    Thread(std::io::Error),
}

/// What PostgreSQL said: the server's message (and detail) for a refusal,
/// else the client's error and its cause (`postgres::Error` alone only says
/// "db error").
fn postgres_message(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        };
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One value in a parameter or a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans too).
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text (JSON too).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// Something that can be a query parameter.
pub trait ToValue {
    /// The parameter's value.
    fn to_value(&self) -> Value;
}

macro_rules! integer_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::from(*self))
            }
        }
    )*};
}
integer_to_value!(i64, i32, i16, i8, u32, u16, u8, bool);

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(f64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// A query's parameters: `[]`, `[a]`, `[a, b]` of one type, or
/// [`params!`](crate::store::sql::params) for mixed types.
pub trait Params {
    /// The values, in placeholder order.
    fn values(&self) -> Vec<Value>;
}

impl Params for [&dyn ToValue] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|value| value.to_value()).collect()
    }
}

impl Params for [&dyn ToValue; 0] {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}

impl Params for [Value] {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}

impl<P: Params + ?Sized> Params for &P {
    fn values(&self) -> Vec<Value> {
        (**self).values()
    }
}

/// Mixed-type parameters: `params![org.0, name, now]`.
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::sql::ToValue] };
    ($($value:expr),+ $(,)?) => {
        &[$(&$value as &dyn $crate::store::sql::ToValue),+] as &[&dyn $crate::store::sql::ToValue]
    };
}
pub(crate) use params;

/// Something a column can be read as.
pub trait FromValue: Sized {
    /// Converts the column's value; `column` is for the error.
    fn from_value(value: &Value, column: usize) -> Result<Self>;
}

fn mismatch<T>(value: &Value, column: usize, wanted: &'static str) -> Result<T> {
    Err(Error::Type {
        column,
        wanted,
        found: value.kind(),
    })
}

macro_rules! integer_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: &Value, column: usize) -> Result<Self> {
                match value {
                    Value::Integer(n) => <$t>::try_from(*n).or_else(|_| {
                        mismatch(value, column, concat!("an integer in range of ", stringify!($t)))
                    }),
                    _ => mismatch(value, column, stringify!($t)),
                }
            }
        }
    )*};
}
integer_from_value!(i64, i32, i16, u64, u32, u16, u8, usize);

impl FromValue for bool {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Integer(n) => Ok(*n != 0),
            _ => mismatch(value, column, "a boolean"),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Real(x) => Ok(*x),
            Value::Integer(n) => Ok(*n as f64),
            _ => mismatch(value, column, "a real"),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            _ => mismatch(value, column, "text"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            _ => mismatch(value, column, "a blob"),
        }
    }
}

impl<const N: usize> FromValue for [u8; N] {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Blob(bytes) => <[u8; N]>::try_from(bytes.as_slice())
                .or_else(|_| mismatch(value, column, "a blob of the expected length")),
            _ => mismatch(value, column, "a blob"),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value, _column: usize) -> Result<Self> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value, column: usize) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            _ => T::from_value(value, column).map(Some),
        }
    }
}

/// A column position (only `usize`, so that a literal `0` needs no suffix).
pub trait RowIndex {
    /// The 0-based position.
    fn position(&self) -> usize;
}

impl RowIndex for usize {
    fn position(&self) -> usize {
        *self
    }
}

/// One result row.
#[derive(Debug)]
pub struct Row<'a> {
    values: Vec<Value>,
    _statement: PhantomData<&'a ()>,
}

impl Row<'_> {
    /// Column `index` (0-based) as `T`. The first type parameter is there so
    /// that rusqlite's `row.get::<_, i64>(0)` reads the same.
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> Result<T> {
        let index = index.position();
        let value = self.values.get(index).ok_or(Error::Column(index))?;
        T::from_value(value, index)
    }
}

/// The rows of [`Statement::query`], read with `while let Some(row) =
/// rows.next()?`.
#[derive(Debug)]
pub struct Rows<'a> {
    rows: std::vec::IntoIter<Row<'a>>,
    current: Option<Row<'a>>,
}

impl<'a> Rows<'a> {
    /// The next row, or `None` after the last.
    #[allow(clippy::should_implement_trait)] // rusqlite's shape: a lending `next`.
    pub fn next(&mut self) -> Result<Option<&Row<'a>>> {
        self.current = self.rows.next();
        Ok(self.current.as_ref())
    }
}

/// `.optional()` on a query that may return no row.
pub trait OptionalExtension<T> {
    /// `Ok(None)` instead of [`Error::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(Error::NoRows) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// How a transaction starts (the store only uses these two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// Take the write lock at once.
    Immediate,
    /// SQLite: take locks as statements need them. PostgreSQL: the same
    /// write lock as [`TransactionBehavior::Immediate`].
    Deferred,
}

/// Work for the thread that owns a PostgreSQL session.
type PgJob = Box<dyn FnOnce(&mut PgSession) + Send>;

/// A PostgreSQL client and what belongs to its server session: prepared
/// statements and whether a transaction is open. Lives on its own thread.
struct PgSession {
    url: String,
    client: Option<postgres::Client>,
    /// Prepared statements by the store's SQL text (a bounded set: queries
    /// are constants or built from constants).
    statements: HashMap<String, postgres::Statement>,
    /// Between `BEGIN` and `COMMIT`/`ROLLBACK`.
    in_transaction: bool,
}

impl PgSession {
    /// The client, connecting again if the server closed the connection
    /// (a restart, a failover) — but never inside a transaction: its
    /// statements must fail until the store rolls it back, or they would
    /// run outside it.
    fn client(&mut self) -> Result<&mut postgres::Client> {
        let closed = self.client.as_ref().is_none_or(postgres::Client::is_closed);
        if closed && !self.in_transaction {
            self.statements.clear();
            self.client = None;
            let client = postgres::Client::connect(&self.url, postgres::NoTls)?;
            tracing::info!("connected to the PostgreSQL store");
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(client) if !(closed && self.in_transaction) => Ok(client),
            // Closed inside a transaction and not yet rolled back: any
            // call reports the broken connection.
            _ => Err(Error::TransactionLost),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
                return Ok(statement.clone());
            }
        }
        let statement = self.client()?.prepare(&translate(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        let ends = sql.starts_with("COMMIT") || sql.starts_with("ROLLBACK");
        if ends && self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            // The connection died inside the transaction: the server rolled
            // it back already. A COMMIT must say so; a ROLLBACK has nothing
            // left to do.
            self.in_transaction = false;
            if sql.starts_with("ROLLBACK") {
                return Ok(());
            }
            return Err(Error::TransactionLost);
        }
        let result = self.client()?.batch_execute(sql).map_err(Error::from);
        if sql.starts_with("BEGIN") && result.is_ok() {
            self.in_transaction = true;
        }
        if ends {
            self.in_transaction = false;
        }
        result
    }
}

/// A PostgreSQL connection, on a thread of its own.
///
/// The `postgres` client drives its socket on a runtime of its own, which
/// must not be entered from a thread that already runs async tasks (the
/// relay calls the store from `spawn_blocking`, but also from async code
/// for quick reads, as it may with SQLite). So the client lives on a thread
/// of its own, and each call is a job sent to it and waited for: the
/// calling thread blocks exactly as it does on SQLite's file lock. When the
/// server closes the connection (a restart), the next call outside a
/// transaction connects again.
struct Pg {
    jobs: std::sync::mpsc::Sender<PgJob>,
}

impl Pg {
    fn connect(url: &str) -> Result<Pg> {
        let (jobs, queue) = std::sync::mpsc::channel::<PgJob>();
        let (ready, connected) = std::sync::mpsc::channel();
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let mut session = PgSession {
                    url,
                    client: None,
                    statements: HashMap::new(),
                    in_transaction: false,
                };
                match session.client() {
                    Ok(_) => {
                        let _ = ready.send(Ok(()));
                        for job in queue {
                            job(&mut session);
                        }
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })
            .map_err(Error::Thread)?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Pg { jobs }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Disconnected),
        }
    }

    /// Runs `job` on the session's thread and waits for its answer.
    fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut PgSession) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (answer, answered) = std::sync::mpsc::channel();
        let job: PgJob = Box::new(move |session| {
            let _ = answer.send(job(session));
        });
        if self.jobs.send(job).is_err() {
            return Err(Error::Disconnected);
        }
        answered.recv().unwrap_or(Err(Error::Disconnected))
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let sql = sql.to_owned();
        let params = params.to_vec();
        let changed = self.call(move |session| {
            let statement = session.statement(&sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            Ok(session.client()?.execute(&statement, &refs)?)
        })?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let sql = sql.to_owned();
        let params = params.to_vec();
        self.call(move |session| {
            let statement = session.statement(&sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let rows = session.client()?.query(&statement, &refs)?;
            Ok(rows
                .iter()
                .map(|row| (0..row.len()).map(|i| row.try_get::<_, Value>(i)).collect())
                .collect::<Result<Vec<Vec<Value>>, postgres::Error>>()?)
        })
    }

    fn batch_execute(&self, sql: &str) -> Result<()> {
        let sql = sql.to_owned();
        self.call(move |session| session.batch(&sql))
    }
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Pg),
}

/// A connection to the store's database. Not `Sync`: the store keeps it
/// behind a mutex.
pub struct Connection {
    inner: Inner,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Sqlite(_) => "Connection(SQLite)",
            Inner::Postgres(_) => "Connection(PostgreSQL)",
        })
    }
}

fn sqlite_rows<'a>(
    statement: &mut rusqlite::Statement<'_>,
    params: &[Value],
) -> Result<Vec<Row<'a>>> {
    let columns = statement.column_count();
    let params = params.iter().map(to_rusqlite);
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|i| row.get_ref(i).map(from_rusqlite))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(Row {
            values,
            _statement: PhantomData,
        });
    }
    Ok(out)
}

fn to_rusqlite(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Integer(n) => V::Integer(*n),
        Value::Real(x) => V::Real(*x),
        Value::Text(text) => V::Text(text.clone()),
        Value::Blob(bytes) => V::Blob(bytes.clone()),
    }
}

fn from_rusqlite(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as V;
    match value {
        V::Null => Value::Null,
        V::Integer(n) => Value::Integer(n),
        V::Real(x) => Value::Real(x),
        V::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        V::Blob(bytes) => Value::Blob(bytes.to_vec()),
    }
}

impl Connection {
    /// A connection over an open SQLite database.
    pub fn sqlite(conn: rusqlite::Connection) -> Connection {
        Connection {
            inner: Inner::Sqlite(conn),
        }
    }

    /// Connects to the PostgreSQL server at `url`.
    pub fn postgres(url: &str) -> Result<Connection> {
        Ok(Connection {
            inner: Inner::Postgres(Pg::connect(url)?),
        })
    }

    /// Whether this is PostgreSQL (for the few queries written twice).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }

    /// The SQLite connection, for SQLite-only settings (pragmas) in tests.
    #[cfg(test)]
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(conn) => Some(conn),
            Inner::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        let values = params.values();
        match &self.inner {
            Inner::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(
                    statement
                        .execute(rusqlite::params_from_iter(values.iter().map(to_rusqlite)))?,
                )
            }
            Inner::Postgres(pg) => pg.execute(sql, &values),
        }
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres(pg) => pg.batch_execute(sql),
        }
    }

    /// The first row of a query, mapped by `f`; [`Error::NoRows`] if none.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let rows = self.rows(sql, &params.values())?;
        match rows.first() {
            Some(row) => f(row),
            None => Err(Error::NoRows),
        }
    }

    fn rows<'a>(&self, sql: &str, values: &[Value]) -> Result<Vec<Row<'a>>> {
        match &self.inner {
            Inner::Sqlite(conn) => sqlite_rows(&mut *conn.prepare_cached(sql)?, values),
            Inner::Postgres(pg) => Ok(pg
                .query(sql, values)?
                .into_iter()
                .map(|values| Row {
                    values,
                    _statement: PhantomData,
                })
                .collect()),
        }
    }

    /// A statement to run (several times) with [`Statement::query_map`] or
    /// [`Statement::query`]. Statements are cached on both engines.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// The same as [`Connection::prepare`] (every statement is cached).
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare(sql)
    }

    /// The id of the row the last `INSERT` made, on this connection.
    /// PostgreSQL: the last value a sequence (an identity column) handed
    /// out in this session, which is the same after an `INSERT` that made
    /// its id.
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.last_insert_rowid()),
            Inner::Postgres(_) => self.query_row("SELECT lastval()", [], |row| row.get(0)),
        }
    }

    /// Starts a transaction; it rolls back when dropped without
    /// [`Transaction::commit`].
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        let begin = match (&self.inner, behavior) {
            (Inner::Sqlite(_), TransactionBehavior::Immediate) => "BEGIN IMMEDIATE".to_owned(),
            (Inner::Sqlite(_), TransactionBehavior::Deferred) => "BEGIN DEFERRED".to_owned(),
            (Inner::Postgres(_), _) => {
                format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK});")
            }
        };
        self.execute_batch(&begin)?;
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    /// A deferred transaction (SQLite's default).
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    conn: &'c Connection,
    sql: String,
}

impl Statement<'_> {
    /// Every row, mapped by `f`.
    pub fn query_map<T, P, F>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let rows = self.conn.rows(&self.sql, &params.values())?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    /// The first row, mapped by `f`; [`Error::NoRows`] if none.
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.conn.query_row(&self.sql, params, f)
    }

    /// Every row, read with [`Rows::next`].
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'static>> {
        let rows = self.conn.rows(&self.sql, &params.values())?;
        Ok(Rows {
            rows: rows.into_iter(),
            current: None,
        })
    }

    /// Runs the statement; returns the number of rows it changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }
}

/// An open transaction: a [`Connection`] that commits or rolls back.
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl Transaction<'_> {
    /// Commits.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("COMMIT")
    }

    /// Rolls back.
    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("ROLLBACK")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(error) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(%error, "rolling back an unfinished store transaction failed");
            }
        }
    }
}

/// Rewrites a query in the store's SQLite syntax for PostgreSQL: `?N` →
/// `$N`, a bare `?` → the next number, and `INDEXED BY name` (a SQLite
/// planner hint) removed. Quoted text is left alone.
pub fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut next_bare = 1;
    let mut quote: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str(&format!("${next_bare}"));
                    next_bare += 1;
                } else {
                    if let Ok(n) = digits.parse::<usize>() {
                        next_bare = next_bare.max(n + 1);
                    }
                    out.push('$');
                    out.push_str(&digits);
                }
            }
            'I' if sql[i..].starts_with("INDEXED BY ") => {
                // Skip the keywords and the index name.
                let rest = &sql[i + "INDEXED BY ".len()..];
                let name_len = rest
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(rest.len());
                let skip = "INDEXED BY ".len() + name_len;
                for _ in 1..skip {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
            (Value::Integer(n), &Type::INT4) => i32::try_from(*n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::INT2) => i16::try_from(*n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::BOOL) => (*n != 0).to_sql(ty, out),
            (Value::Integer(n), &Type::FLOAT8) => (*n as f64).to_sql(ty, out),
            (Value::Real(x), &Type::FLOAT8) => x.to_sql(ty, out),
            (Value::Real(x), &Type::FLOAT4) => (*x as f32).to_sql(ty, out),
            (Value::Text(text), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(text), &Type::JSON) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(text), _) if <&str as ToSql>::accepts(ty) => text.as_str().to_sql(ty, out),
            (Value::Blob(bytes), &Type::BYTEA) => bytes.as_slice().to_sql(ty, out),
            (value, ty) => {
                Err(format!("cannot send {} as PostgreSQL type {ty}", value.kind()).into())
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSON => Value::Text(std::str::from_utf8(raw)?.to_owned()),
            Type::JSONB => match raw.split_first() {
                Some((1, text)) => Value::Text(std::str::from_utf8(text)?.to_owned()),
                _ => return Err("unknown jsonb version".into()),
            },
            ref other if <&str as FromSql>::accepts(other) => {
                Value::Text(<&str as FromSql>::from_sql(ty, raw)?.to_owned())
            }
            ref other => {
                return Err(format!(
                    "PostgreSQL type {other} is not read by the store: cast it in the query"
                )
                .into())
            }
        })
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_hints_are_translated_outside_quotes() {
        assert_eq!(
            translate("SELECT a FROM t INDEXED BY t_by_a WHERE a = ?1 AND b = ?2 AND c = '?3'"),
            "SELECT a FROM t  WHERE a = $1 AND b = $2 AND c = '?3'"
        );
        assert_eq!(translate("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert_eq!(translate("x = ?12 OR y = ?"), "x = $12 OR y = $13");
        assert_eq!(translate("\"a?\" = 'it''s ?'"), "\"a?\" = 'it''s ?'");
    }

    #[test]
    fn sqlite_round_trips_values_and_rolls_back_on_drop() {
        let mut conn = Connection::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d REAL) STRICT")
            .unwrap();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            params![7_i64, "seven", vec![7_u8], 0.5],
        )
        .unwrap();
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("DELETE FROM t", []).unwrap();
        }
        let row: (i64, String, Vec<u8>, f64, Option<i64>) = conn
            .query_row("SELECT a, b, c, d, NULL FROM t", params![], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .unwrap();
        assert_eq!(row, (7, "seven".to_owned(), vec![7], 0.5, None));
        assert!(matches!(
            conn.query_row("SELECT a FROM t WHERE a = 8", params![], |row| row
                .get::<_, i64>(0)),
            Err(Error::NoRows)
        ));
        let wrong = conn.query_row("SELECT b FROM t", params![], |row| row.get::<_, i64>(0));
        assert!(
            matches!(wrong, Err(Error::Type { column: 0, .. })),
            "{wrong:?}"
        );
    }
}
