//! SQL access behind a small trait, so the domain runs on Spin SQLite in the component and on
//! rusqlite natively (tests, benchmark). Also the migrations and the one-transaction helper.

use crate::{Error, Result};

/// A SQL parameter or column value (the SQLite storage classes).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

pub type Row = Vec<Value>;

/// One database connection. Every call runs one statement; writes return their `RETURNING` rows.
/// The same connection must serve a whole request, so `BEGIN … COMMIT` spans its statements.
pub trait Sql {
    fn query(&self, sql: &str, params: &[Value]) -> std::result::Result<Vec<Row>, String>;
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Integer(v as i64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
macro_rules! id_values {
    ($($id:ty),*) => {$(
        impl From<$id> for Value {
            fn from(v: $id) -> Self {
                Value::Integer(v.get())
            }
        }
    )*};
}
id_values!(
    talis_api::OwnerId,
    talis_api::ProjectId,
    talis_api::TaskId,
    talis_api::InstanceId,
    talis_api::RowId
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Typed column access; a NULL or mismatched column reads as the zero value.
pub trait RowExt {
    fn int(&self, i: usize) -> i64;
    fn opt_int(&self, i: usize) -> Option<i64>;
    fn text(&self, i: usize) -> String;
    fn opt_text(&self, i: usize) -> Option<String>;
}

impl RowExt for [Value] {
    fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }
    fn opt_int(&self, i: usize) -> Option<i64> {
        match self.get(i) {
            Some(Value::Integer(v)) => Some(*v),
            Some(Value::Real(v)) => Some(*v as i64),
            _ => None,
        }
    }
    fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }
    fn opt_text(&self, i: usize) -> Option<String> {
        match self.get(i) {
            Some(Value::Text(v)) => Some(v.clone()),
            Some(Value::Integer(v)) => Some(v.to_string()),
            Some(Value::Blob(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }
    }
}

/// Runs one statement, mapping a storage error to [`Error::Db`], or to [`Error::RetryLater`]
/// when another writer held the database past the wait (nothing was written: try again).
pub fn query(db: &dyn Sql, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
    db.query(sql, params).map_err(storage_error)
}

fn storage_error(message: String) -> Error {
    if is_busy(&message) {
        Error::RetryLater {
            reason: format!(
                "the database stayed locked by other writers for {} s",
                LOCK_WAIT.as_secs()
            ),
            after_secs: 1,
        }
    } else {
        Error::Db(message)
    }
}

/// The first row, if any.
pub fn query_opt(db: &dyn Sql, sql: &str, params: &[Value]) -> Result<Option<Row>> {
    Ok(query(db, sql, params)?.into_iter().next())
}

/// A single integer (COUNT, last id …); 0 when there is no row.
pub fn scalar(db: &dyn Sql, sql: &str, params: &[Value]) -> Result<i64> {
    Ok(query_opt(db, sql, params)?.map_or(0, |r| r.int(0)))
}

/// Runs `f` inside `BEGIN IMMEDIATE … COMMIT`: every write of one call commits together or not
/// at all. IMMEDIATE takes the write lock up front, so reads made for validation stay true.
pub fn transaction<T>(db: &dyn Sql, f: impl FnOnce() -> Result<T>) -> Result<T> {
    begin_immediate(db)?;
    let out = f().and_then(|v| query(db, "COMMIT", &[]).map(|_| v));
    if out.is_err() {
        // Nothing to do if it fails: the transaction is then already gone.
        let _ = db.query("ROLLBACK", &[]);
    }
    out
}

/// Longest wait for the write lock before a call fails.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the write lock, polling briefly while another connection holds it. SQLite's own busy
/// handler backs off to 100 ms sleeps, so under concurrent writers a waiter keeps losing to
/// transactions of ~1 ms and tails reach seconds; short jittered retries keep waits near the
/// holder's transaction time. The connection's busy timeout is restored for the statements
/// inside (a checkpoint on COMMIT may still wait for readers).
fn begin_immediate(db: &dyn Sql) -> Result<()> {
    // Per connection and only outside a transaction; reads do not need it.
    query(db, "PRAGMA foreign_keys = ON", &[])?;
    let started = std::time::Instant::now();
    let mut pause_us: u64 = 50;
    // Best effort: a runtime that manages its own storage (libSQL) may refuse these pragmas.
    let _ = db.query("PRAGMA busy_timeout = 0", &[]);
    let begun = loop {
        match db.query("BEGIN IMMEDIATE", &[]) {
            Ok(_) => break Ok(()),
            Err(e) if is_busy(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_micros(
                    pause_us + rand::random_range(0..pause_us),
                ));
                pause_us = (pause_us * 2).min(1_000);
            }
            Err(e) => break Err(storage_error(e)),
        }
    };
    let _ = db.query(
        &format!("PRAGMA busy_timeout = {}", LOCK_WAIT.as_millis()),
        &[],
    );
    begun
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("busy")
}

/// The numbered migrations in `sql/`, oldest first.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../sql/0001_init.sql")),
    (2, include_str!("../../../sql/0002_scale_and_safety.sql")),
    (3, include_str!("../../../sql/0003_events.sql")),
    (4, include_str!("../../../sql/0004_quotas.sql")),
    (5, include_str!("../../../sql/0005_webhooks.sql")),
    (6, include_str!("../../../sql/0006_early_phone_homes.sql")),
];

/// The schema version this code expects (the last migration).
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The schema. Cheap when it is current (one `PRAGMA user_version` read, a header field), so
/// the component calls it on every request and a fresh database on any Spin runtime just works.
pub fn prepare(db: &dyn Sql) -> Result<()> {
    if user_version(db) >= LATEST_VERSION {
        return Ok(());
    }
    migrate(db)
}

/// `PRAGMA user_version`: the last migration applied, mirrored from `schema_version` (0 for a
/// new database, or one migrated before the mirror existed).
pub fn user_version(db: &dyn Sql) -> i64 {
    db.query("PRAGMA user_version", &[])
        .ok()
        .and_then(|rows| rows.first().map(|r| r.int(0)))
        .unwrap_or(0)
}

/// The schema version of the database: `user_version`, or the migrations table where the
/// runtime refused to mirror it there (libSQL may).
pub fn schema_version(db: &dyn Sql) -> i64 {
    let mirrored = user_version(db);
    if mirrored >= LATEST_VERSION {
        mirrored
    } else {
        mirrored.max(recorded_version(db))
    }
}

/// Applies the pending migrations (the `schema_version` table is the record) and mirrors the
/// version into `user_version`.
fn migrate(db: &dyn Sql) -> Result<()> {
    // A new local database goes to WAL (persistent in the file): one fsync per commit instead
    // of the rollback journal's several, and readers never wait for the writer. Runtimes that
    // manage the storage themselves (libSQL) may refuse it, which is fine.
    if recorded_version(db) == 0 {
        let _ = db.query("PRAGMA journal_mode = WAL", &[]);
    }
    transaction(db, || {
        query(
            db,
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            &[],
        )?;
        // Re-read under the write lock: a concurrent first request may have migrated already.
        let current = recorded_version(db);
        for (version, script) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            for stmt in statements(script) {
                query(db, &stmt, &[])
                    .map_err(|e| Error::Db(format!("migration {version}: {e}")))?;
            }
            query(
                db,
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                &[(*version).into(), crate::now().into()],
            )?;
        }
        // Best effort: where it is refused, every request takes this slower path (still correct).
        let _ = db.query(&format!("PRAGMA user_version = {LATEST_VERSION}"), &[]);
        Ok(())
    })
}

fn recorded_version(db: &dyn Sql) -> i64 {
    // A missing table (fresh database) is version 0.
    db.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .ok()
        .and_then(|rows| rows.first().map(|r| r.int(0)))
        .unwrap_or(0)
}

/// Splits a migration script into statements (comments dropped; no `;` inside literals).
fn statements(script: &str) -> Vec<String> {
    let without_comments: String = script
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(all(feature = "native-sqlite", not(target_arch = "wasm32")))]
mod native {
    use super::{Row, Sql, Value};
    use rusqlite::types::{ToSqlOutput, ValueRef};

    impl rusqlite::ToSql for Value {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match self {
                Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
                Value::Integer(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
                Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
                Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
                Value::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            })
        }
    }

    impl Sql for rusqlite::Connection {
        fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, String> {
            let mut stmt = self.prepare_cached(sql).map_err(|e| e.to_string())?;
            let n = stmt.column_count();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                let mut r = Vec::with_capacity(n);
                for i in 0..n {
                    r.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Integer(v),
                        ValueRef::Real(v) => Value::Real(v),
                        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
                    });
                }
                out.push(r);
            }
            Ok(out)
        }
    }
}
