//! Spin key-value (`fermyon:spin/key-value@2.0.0`), stored in SQLite like Spin's default
//! store: table `spin_key_value(store, key, value)` in `.spin/sqlite_key_value.db`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::key_value as kv;
use crate::state::HostState;

/// One SQLite file holding one or more labelled stores.
pub struct KvFile {
    conn: Mutex<rusqlite::Connection>,
}

impl KvFile {
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Arc<Self>> {
        let conn = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                rusqlite::Connection::open(p)?
            }
            None => rusqlite::Connection::open_in_memory()?,
        };
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
        }))
    }
}

/// A labelled store: its file and its name inside it.
#[derive(Clone)]
pub struct KvStore {
    pub file: Arc<KvFile>,
    pub name: String,
}

impl KvStore {
    fn run<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T>,
    ) -> Result<T, kv::Error> {
        tokio::task::block_in_place(|| {
            let conn = self.file.conn.lock().expect("key-value lock");
            f(&conn, &self.name)
        })
        .map_err(|e| kv::Error::Other(e.to_string()))
    }
}

impl kv::Host for HostState {}

impl HostState {
    fn kv_store(&self, res: &Resource<KvStore>) -> wasmtime::Result<KvStore> {
        Ok(self.table.get(res)?.clone())
    }
}

impl kv::HostStore for HostState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, kv::Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(kv::Error::AccessDenied));
        }
        let Some(store) = self.app.kv.get(&label).cloned() else {
            return Ok(Err(kv::Error::NoSuchStore));
        };
        Ok(Ok(self.table.push(store)?))
    }

    async fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        Ok(self.kv_store(&store)?.run(|c, name| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((name, &key), |r| r.get(0))
                .optional()
        }))
    }

    async fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(self.kv_store(&store)?.run(|c, name| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value = ?3",
            )?
            .execute((name, &key, &value))
            .map(drop)
        }))
    }

    async fn delete(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(self.kv_store(&store)?.run(|c, name| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((name, &key))
                .map(drop)
        }))
    }

    async fn exists(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(self.kv_store(&store)?.run(|c, name| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists((name, &key))
        }))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KvStore>,
    ) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        Ok(self.kv_store(&store)?.run(|c, name| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map([name], |r| r.get(0))?
                .collect()
        }))
    }

    async fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}
