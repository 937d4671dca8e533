//! Spin SQLite (`fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`) on rusqlite.
//!
//! As in Spin, every `connection.open` gets its own SQLite connection, so a guest's
//! `BEGIN … COMMIT` spans only its own statements. Opened connections are pooled per
//! database label to avoid re-opening the file (and re-reading the schema, re-preparing
//! statements) on every request. The pool is invisible to guests: a connection comes back
//! as a fresh one would be — a transaction left open is rolled back (the connection is
//! closed), per-connection pragmas the guest set are put back to a fresh connection's
//! values, and a connection with other session state (an attached database, a TEMP object,
//! a pragma not in [`RESETTABLE_PRAGMAS`]) is closed instead of pooled.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use wasmtime::component::Resource;

use crate::bindings::{fermyon::spin::sqlite as v2, spin::sqlite::sqlite as v3};
use crate::limits::Limit;
use crate::state::HostState;

/// Where a labelled database lives.
#[derive(Clone, Debug)]
pub enum Location {
    File(PathBuf),
    /// Shared in-memory database, alive while the host runs.
    Memory(String),
}

/// Per-connection settings (integer-valued, readable with `PRAGMA name`) that are put back
/// to a fresh connection's value when a guest changed them. File-level pragmas
/// (`journal_mode`, `user_version`…) persist in the database for every connection and are
/// not session state.
const RESETTABLE_PRAGMAS: &[&str] = &[
    "foreign_keys",
    "busy_timeout",
    "recursive_triggers",
    "defer_foreign_keys",
    "query_only",
    "cache_size",
    "synchronous",
    "temp_store",
    "automatic_index",
    "reverse_unordered_selects",
    "ignore_check_constraints",
    "legacy_alter_table",
    "cell_size_check",
    "trusted_schema",
];

/// Session state a guest changed on its connection, recorded by SQLite's authorizer while
/// statements are prepared.
#[derive(Default)]
struct Session {
    /// Resettable pragmas the guest assigned.
    pragmas: BTreeSet<&'static str>,
    /// State that cannot be reset: the connection must not be reused.
    unresettable: bool,
    /// The statement being prepared changes session state: keep it out of the statement
    /// cache, so the authorizer sees it again the next time it is prepared.
    stateful_statement: bool,
}

/// A connection and the session state its guests changed.
struct Pooled {
    conn: rusqlite::Connection,
    session: Arc<Mutex<Session>>,
}

pub struct Database {
    location: Location,
    idle: Mutex<Vec<Pooled>>,
    /// Write transactions of this process, one at a time in arrival order (see [`WriteTurns`]).
    writers: WriteTurns,
    /// A fresh connection's value of every [`RESETTABLE_PRAGMAS`] entry.
    fresh: Vec<(&'static str, i64)>,
    synchronous: Synchronous,
    /// Keeps a shared in-memory database alive between requests.
    _anchor: Option<Mutex<rusqlite::Connection>>,
}

const MAX_IDLE: usize = 16;
/// Page cache of each connection, in KiB (SQLite's default is 2 000). Every request holds a
/// connection, so under a burst this is paid once per live instance; and in WAL mode a commit
/// by any other connection empties the cache anyway, so a busy writer gains nothing from a
/// larger one. Measured on `zero-10000`: talis-host's peak RSS 839 MiB with the default, 509 MiB
/// with this (256 instances), same time to all ready.
const CONNECTION_CACHE_KIB: i64 = 512;

fn record(session: &Mutex<Session>, ctx: &AuthContext<'_>) -> Authorization {
    let mut s = session.lock().expect("sqlite session lock");
    match ctx.action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value: Some(_),
        } => {
            s.stateful_statement = true;
            match RESETTABLE_PRAGMAS
                .iter()
                .find(|p| p.eq_ignore_ascii_case(pragma_name))
            {
                Some(p) => {
                    s.pragmas.insert(p);
                }
                None => s.unresettable = true,
            }
        }
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => {
            s.stateful_statement = true;
            s.unresettable = true;
        }
        _ => {}
    }
    Authorization::Allow
}

/// How hard a commit waits for the disk (`PRAGMA synchronous` on every connection the host
/// opens): `--sqlite-synchronous`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// Commits reach the OS at once and the disk at checkpoints: in WAL mode (which Talis's
    /// migrations select) a commit survives a crash of any process; a power loss or OS crash
    /// may roll back the last commits, never corrupt. About 100× cheaper per commit than
    /// `full` on a VM disk, where every commit's fsync is the single writer's bottleneck.
    #[default]
    Normal,
    /// Every commit is fsynced (SQLite's own default): survives power loss too.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl Database {
    pub fn new(location: Location, synchronous: Synchronous) -> rusqlite::Result<Self> {
        let mut db = Self {
            location,
            synchronous,
            idle: Mutex::new(Vec::new()),
            writers: WriteTurns::default(),
            fresh: Vec::new(),
            _anchor: None,
        };
        if matches!(db.location, Location::Memory(_)) {
            db._anchor = Some(Mutex::new(db.open_file()?));
        }
        let probe = db.open_file()?;
        for name in RESETTABLE_PRAGMAS {
            let value = probe.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
            db.fresh.push((name, value));
        }
        Ok(db)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn open_file(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = match &self.location {
            Location::File(p) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                rusqlite::Connection::open(p)?
            }
            Location::Memory(name) => rusqlite::Connection::open_with_flags(
                format!("file:{name}?mode=memory&cache=shared"),
                rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )?,
        };
        // Concurrent requests each hold a connection: wait for locks rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", self.synchronous.pragma())?;
        conn.pragma_update(None, "cache_size", -CONNECTION_CACHE_KIB)?;
        Ok(conn)
    }

    fn connect(&self) -> rusqlite::Result<Pooled> {
        let mut conn = self.open_file()?;
        let session = Arc::new(Mutex::new(Session::default()));
        let watched = session.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| record(&watched, &ctx)))?;
        Ok(Pooled { conn, session })
    }

    fn checkout(&self) -> rusqlite::Result<Pooled> {
        if let Some(c) = self.idle.lock().expect("sqlite pool lock").pop() {
            return Ok(c);
        }
        // Opening the file is the one step that may take a while: let the async worker's
        // other tasks move to another thread meanwhile.
        tokio::task::block_in_place(|| self.connect())
    }

    /// Pools a connection only if it can be made to look fresh; otherwise drops it (which
    /// also rolls back an unfinished transaction).
    fn checkin(&self, c: Pooled) {
        if !c.conn.is_autocommit() {
            return;
        }
        let changed = {
            let mut s = c.session.lock().expect("sqlite session lock");
            if s.unresettable {
                return;
            }
            std::mem::take(&mut s.pragmas)
        };
        for name in changed {
            let Some((_, value)) = self.fresh.iter().find(|(n, _)| *n == name) else {
                return;
            };
            if c.conn
                .execute_batch(&format!("PRAGMA {name} = {value}"))
                .is_err()
            {
                return;
            }
        }
        // The resets above went through the authorizer too.
        *c.session.lock().expect("sqlite session lock") = Session::default();
        let mut idle = self.idle.lock().expect("sqlite pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Runs a batch of statements (the `--sqlite` start-up statements).
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        let c = self.checkout()?;
        let r = c.conn.execute_batch(sql);
        self.checkin(c);
        r
    }
}

/// The host side of a guest's `connection` resource (both interface versions).
pub struct Connection {
    conn: Option<Pooled>,
    db: Arc<Database>,
    /// This connection's turn to write, from its `BEGIN IMMEDIATE` to the end of that
    /// transaction.
    write_turn: Option<Turn>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Rolls back an unfinished transaction (the connection is closed); the turn, a field,
        // passes on only after this.
        if let Some(c) = self.conn.take() {
            self.db.checkin(c);
        }
    }
}

/// A writer's turn, and since when it holds it.
struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    since: std::time::Instant,
}

/// Write transactions of one database in this process take turns in arrival order. SQLite has
/// no queue: writers that find the lock taken poll for it, and under a burst of writers (100
/// owners creating at once while thousands of machines phone home) a waiter can keep losing to
/// newcomers until it gives up, while the polling itself takes CPU from the holder. A guest's
/// `BEGIN IMMEDIATE` (or `EXCLUSIVE`) instead waits here, without polling, for the writers
/// before it, up to `--sqlite-write-wait`; then SQLite's own lock settles what is left (other
/// processes on the same file).
#[derive(Default)]
struct WriteTurns(Arc<tokio::sync::Mutex<()>>);

impl WriteTurns {
    /// Waits for this writer's turn; `None` after `within`.
    async fn wait(&self, within: std::time::Duration) -> Option<Turn> {
        let guard = tokio::time::timeout(within, self.0.clone().lock_owned())
            .await
            .ok()?;
        Some(Turn {
            _guard: guard,
            since: std::time::Instant::now(),
        })
    }
}

/// A write transaction held longer than this is logged: it stalls every writer queued behind it.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a statement starts a transaction that takes the write lock at once.
fn begins_write(statement: &str) -> bool {
    let mut words = statement.split_whitespace();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("BEGIN"))
        && words.next().is_some_and(|w| {
            w.eq_ignore_ascii_case("IMMEDIATE") || w.eq_ignore_ascii_case("EXCLUSIVE")
        })
}

/// Version-independent forms of the WIT types.
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

pub enum Error {
    NoSuchDatabase,
    AccessDenied,
    InvalidConnection,
    Io(String),
}

impl HostState {
    fn sqlite_open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !self.component.sqlite_databases.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(db) = self.app.sqlite.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchDatabase));
        };
        let conn = match db.checkout() {
            Ok(c) => c,
            Err(e) => return Ok(Err(Error::Io(e.to_string()))),
        };
        let res = self.table.push(Connection {
            conn: Some(conn),
            db,
            write_turn: None,
        })?;
        Ok(Ok(res))
    }

    fn sqlite_conn(&mut self, res: &Resource<Connection>) -> Result<&Pooled, Error> {
        self.table
            .get(res)
            .ok()
            .and_then(|c| c.conn.as_ref())
            .ok_or(Error::InvalidConnection)
    }

    async fn sqlite_execute(
        &mut self,
        res: &Resource<Connection>,
        statement: &str,
        params: Vec<Value>,
    ) -> Result<QueryResult, Error> {
        if begins_write(statement) {
            self.wait_write_turn(res).await?;
        }
        let c = self
            .table
            .get_mut(res)
            .map_err(|_| Error::InvalidConnection)?;
        let pooled = c.conn.as_ref().ok_or(Error::InvalidConnection)?;
        // Run in place, like the guest's own computing: `block_in_place` hands the worker to
        // another thread and back on every call (≈ 2 context switches per statement, most of
        // a cheap request's cost). A statement that waits for a lock holds this worker for
        // up to the connection's busy timeout, as a long computation in the guest would.
        let started = std::time::Instant::now();
        let out = execute(pooled, statement, params).map_err(|e| Error::Io(e.to_string()));
        let took = started.elapsed();
        if took > SLOW_WRITE {
            let shown: String = statement.chars().take(120).collect();
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                "a SQLite statement took {} ms: {shown}",
                took.as_millis()
            );
        }
        if pooled.conn.is_autocommit()
            && let Some(turn) = c.write_turn.take()
        {
            // Committed, rolled back, or the BEGIN failed: the next writer's turn.
            let held = turn.since.elapsed();
            if held > SLOW_WRITE {
                tracing::warn!(
                    held_ms = held.as_millis() as u64,
                    "a write transaction held the database for {} ms (every other writer of this process waited)",
                    held.as_millis()
                );
            }
        }
        out
    }

    /// Waits, without holding a worker, until the writers of this database before this
    /// connection are done; after `--sqlite-write-wait` the guest hears SQLite's "database is
    /// locked", as from SQLite itself.
    async fn wait_write_turn(&mut self, res: &Resource<Connection>) -> Result<(), Error> {
        let c = self.table.get(res).map_err(|_| Error::InvalidConnection)?;
        if c.write_turn.is_some() {
            return Ok(());
        }
        let db = c.db.clone();
        let turn = db.writers.wait(self.hooks.limits.sqlite_write_wait).await;
        if turn.is_none() {
            self.hooks.metrics.timeout(Limit::SqliteWriteWait);
            return Err(Error::Io(Limit::SqliteWriteWait.describe(
                &self.hooks.limits,
                "database is locked: the earlier writers of this process took longer than",
            )));
        }
        let c = self
            .table
            .get_mut(res)
            .map_err(|_| Error::InvalidConnection)?;
        c.write_turn = turn;
        Ok(())
    }
}

fn execute(c: &Pooled, statement: &str, params: Vec<Value>) -> rusqlite::Result<QueryResult> {
    c.session
        .lock()
        .expect("sqlite session lock")
        .stateful_statement = false;
    let mut stmt = c.conn.prepare_cached(statement)?;
    let cacheable = !c
        .session
        .lock()
        .expect("sqlite session lock")
        .stateful_statement;
    let out = run(&mut stmt, params);
    if !cacheable {
        stmt.discard();
    }
    out
}

fn run(stmt: &mut rusqlite::Statement<'_>, params: Vec<Value>) -> rusqlite::Result<QueryResult> {
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let params: Vec<rusqlite::types::Value> = params
        .into_iter()
        .map(|v| match v {
            Value::Integer(i) => rusqlite::types::Value::Integer(i),
            Value::Real(f) => rusqlite::types::Value::Real(f),
            Value::Text(s) => rusqlite::types::Value::Text(s),
            Value::Blob(b) => rusqlite::types::Value::Blob(b),
            Value::Null => rusqlite::types::Value::Null,
        })
        .collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(QueryResult { columns, rows: out })
}

/// Both interface versions have the same shapes; generate the conversions and the
/// connection methods once for each.
macro_rules! sqlite_version {
    ($m:ident) => {
        impl From<$m::Value> for Value {
            fn from(v: $m::Value) -> Self {
                match v {
                    $m::Value::Integer(i) => Value::Integer(i),
                    $m::Value::Real(f) => Value::Real(f),
                    $m::Value::Text(s) => Value::Text(s),
                    $m::Value::Blob(b) => Value::Blob(b),
                    $m::Value::Null => Value::Null,
                }
            }
        }
        impl From<Value> for $m::Value {
            fn from(v: Value) -> Self {
                match v {
                    Value::Integer(i) => $m::Value::Integer(i),
                    Value::Real(f) => $m::Value::Real(f),
                    Value::Text(s) => $m::Value::Text(s),
                    Value::Blob(b) => $m::Value::Blob(b),
                    Value::Null => $m::Value::Null,
                }
            }
        }
        impl From<Error> for $m::Error {
            fn from(e: Error) -> Self {
                match e {
                    Error::NoSuchDatabase => $m::Error::NoSuchDatabase,
                    Error::AccessDenied => $m::Error::AccessDenied,
                    Error::InvalidConnection => $m::Error::InvalidConnection,
                    Error::Io(s) => $m::Error::Io(s),
                }
            }
        }
        impl From<QueryResult> for $m::QueryResult {
            fn from(q: QueryResult) -> Self {
                $m::QueryResult {
                    columns: q.columns,
                    rows: q
                        .rows
                        .into_iter()
                        .map(|r| $m::RowResult {
                            values: r.into_iter().map(Into::into).collect(),
                        })
                        .collect(),
                }
            }
        }
        impl $m::Host for HostState {}
    };
}

sqlite_version!(v2);
sqlite_version!(v3);

impl v2::HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        Ok(self.sqlite_open(database)?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let params = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .sqlite_execute(&conn, &statement, params)
            .await
            .map(Into::into)
            .map_err(Into::into))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl v3::HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.sqlite_open(database)?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let params = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .sqlite_execute(&conn, &statement, params)
            .await
            .map(Into::into)
            .map_err(Into::into))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self
            .sqlite_conn(&conn)
            .map(|c| c.conn.last_insert_rowid())
            .unwrap_or(0))
    }

    async fn changes(&mut self, conn: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self
            .sqlite_conn(&conn)
            .map(|c| c.conn.changes())
            .unwrap_or(0))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(c: &Pooled, sql: &str) -> i64 {
        match execute(c, sql, Vec::new()).unwrap().rows[0][0] {
            Value::Integer(i) => i,
            _ => panic!("not an integer"),
        }
    }

    /// Every connection commits as `--sqlite-synchronous` says, also after a guest changed it.
    #[test]
    fn connections_commit_as_the_synchronous_flag_says() {
        let dir = tempfile::tempdir().unwrap();
        for (flag, expected) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let db = Database::new(Location::File(dir.path().join("s.db")), flag).unwrap();
            let c = db.checkout().unwrap();
            assert_eq!(value(&c, "PRAGMA synchronous"), expected, "{flag:?}");
            execute(&c, "PRAGMA synchronous = OFF", Vec::new()).unwrap();
            db.checkin(c);
            let c = db.checkout().unwrap();
            assert_eq!(value(&c, "PRAGMA synchronous"), expected, "{flag:?} reset");
            assert_eq!(value(&c, "PRAGMA cache_size"), -CONNECTION_CACHE_KIB);
        }
        assert_eq!(Synchronous::default(), Synchronous::Normal);
    }

    #[test]
    fn pooled_connections_get_fresh_pragmas_and_no_temp_objects() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new(
            Location::File(dir.path().join("t.db")),
            Synchronous::default(),
        )
        .unwrap();
        let c = db.checkout().unwrap();
        let (fk, timeout) = (
            value(&c, "PRAGMA foreign_keys"),
            value(&c, "PRAGMA busy_timeout"),
        );
        db.checkin(c);
        for _ in 0..2 {
            let c = db.checkout().unwrap();
            execute(&c, "PRAGMA foreign_keys = ON", Vec::new()).unwrap();
            execute(&c, "PRAGMA busy_timeout = 1", Vec::new()).unwrap();
            assert_eq!(value(&c, "PRAGMA busy_timeout"), 1);
            db.checkin(c);
            let c = db.checkout().unwrap();
            assert_eq!(value(&c, "PRAGMA foreign_keys"), fk);
            assert_eq!(value(&c, "PRAGMA busy_timeout"), timeout);
            db.checkin(c);
        }
        assert_eq!(
            db.idle.lock().unwrap().len(),
            1,
            "reset connections are reused"
        );

        let c = db.checkout().unwrap();
        execute(&c, "CREATE TEMP TABLE scratch (x)", Vec::new()).unwrap();
        db.checkin(c);
        assert!(db.idle.lock().unwrap().is_empty(), "TEMP state: not pooled");
        let c = db.checkout().unwrap();
        assert!(execute(&c, "SELECT * FROM scratch", Vec::new()).is_err());
    }

    #[test]
    fn write_transactions_are_recognised() {
        for sql in [
            "BEGIN IMMEDIATE",
            "begin immediate",
            "  BEGIN\n EXCLUSIVE TRANSACTION",
        ] {
            assert!(begins_write(sql), "{sql:?}");
        }
        for sql in [
            "BEGIN",
            "BEGIN DEFERRED",
            "COMMIT",
            "SELECT 'BEGIN IMMEDIATE'",
            "",
        ] {
            assert!(!begins_write(sql), "{sql:?}");
        }
    }

    /// Writers get their turns in arrival order, each waiting without polling; one that waits
    /// longer than its limit gives up, and the turn still passes on to those after it.
    #[tokio::test]
    async fn writers_take_turns_in_arrival_order() {
        let turns = Arc::new(WriteTurns::default());
        let first = turns.wait(Duration::ZERO).await.expect("a free turn");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (turns, order) = (turns.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let turn = turns.wait(Duration::from_secs(10)).await;
                order.lock().unwrap().push(i);
                drop(turn);
            }));
            // Each queues before the next arrives.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            turns.wait(Duration::from_millis(50)).await.is_none(),
            "the turn is taken"
        );
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }
}
