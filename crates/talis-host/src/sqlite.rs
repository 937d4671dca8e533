//! Spin SQLite (`fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`) on rusqlite.
//!
//! As in Spin, every `connection.open` gets its own SQLite connection, so a guest's
//! `BEGIN … COMMIT` spans only its own statements. Opened connections are pooled per
//! database label to avoid re-opening the file on every request; a connection handed back
//! while inside a transaction is closed instead (which rolls the transaction back).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use wasmtime::component::Resource;

use crate::bindings::{fermyon::spin::sqlite as v2, spin::sqlite::sqlite as v3};
use crate::state::HostState;

/// Where a labelled database lives.
#[derive(Clone, Debug)]
pub enum Location {
    File(PathBuf),
    /// Shared in-memory database, alive while the host runs.
    Memory(String),
}

pub struct Database {
    location: Location,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Keeps a shared in-memory database alive between requests.
    _anchor: Option<Mutex<rusqlite::Connection>>,
}

const MAX_IDLE: usize = 16;

impl Database {
    pub fn new(location: Location) -> rusqlite::Result<Self> {
        let mut db = Self {
            location,
            idle: Mutex::new(Vec::new()),
            _anchor: None,
        };
        if matches!(db.location, Location::Memory(_)) {
            db._anchor = Some(Mutex::new(db.connect()?));
        }
        Ok(db)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
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
        Ok(conn)
    }

    pub fn checkout(&self) -> rusqlite::Result<rusqlite::Connection> {
        if let Some(c) = self.idle.lock().expect("sqlite pool lock").pop() {
            return Ok(c);
        }
        self.connect()
    }

    fn checkin(&self, conn: rusqlite::Connection) {
        if !conn.is_autocommit() {
            return; // dropped: an unfinished transaction is rolled back
        }
        let mut idle = self.idle.lock().expect("sqlite pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs a batch of statements (the `--sqlite` start-up statements).
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        let conn = self.checkout()?;
        let r = conn.execute_batch(sql);
        self.checkin(conn);
        r
    }
}

/// The host side of a guest's `connection` resource (both interface versions).
pub struct Connection {
    conn: Option<rusqlite::Connection>,
    db: Arc<Database>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.db.checkin(c);
        }
    }
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
        let conn = match tokio::task::block_in_place(|| db.checkout()) {
            Ok(c) => c,
            Err(e) => return Ok(Err(Error::Io(e.to_string()))),
        };
        let res = self.table.push(Connection {
            conn: Some(conn),
            db,
        })?;
        Ok(Ok(res))
    }

    fn sqlite_conn(&mut self, res: &Resource<Connection>) -> Result<&rusqlite::Connection, Error> {
        self.table
            .get(res)
            .ok()
            .and_then(|c| c.conn.as_ref())
            .ok_or(Error::InvalidConnection)
    }

    fn sqlite_execute(
        &mut self,
        res: &Resource<Connection>,
        statement: &str,
        params: Vec<Value>,
    ) -> Result<QueryResult, Error> {
        let conn = self.sqlite_conn(res)?;
        tokio::task::block_in_place(|| execute(conn, statement, params))
            .map_err(|e| Error::Io(e.to_string()))
    }
}

fn execute(
    conn: &rusqlite::Connection,
    statement: &str,
    params: Vec<Value>,
) -> rusqlite::Result<QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
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
            .map(Into::into)
            .map_err(Into::into))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self
            .sqlite_conn(&conn)
            .map(|c| c.last_insert_rowid())
            .unwrap_or(0))
    }

    async fn changes(&mut self, conn: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.sqlite_conn(&conn).map(|c| c.changes()).unwrap_or(0))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}
