//! Key-value stores (`fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`: store,
//! atomics, batch), kept in SQLite like Spin's default store: table
//! `spin_key_value(store, key, value)` in `.spin/sqlite_key_value.db`, integers for
//! `increment` as 8 little-endian bytes, and compare-and-swap by conditional update.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;
use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::key_value as kv;
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wkv};
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

/// The host side of a `wasi:keyvalue/atomics.cas` resource.
pub struct KvCas {
    store: KvStore,
    key: String,
    /// The value seen by `current`, which `swap` requires to be unchanged.
    seen: Option<Vec<u8>>,
}

/// Keys with their values, `None` where a key is absent (`get-many`).
type Entries = Vec<(String, Option<Vec<u8>>)>;

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                      ON CONFLICT(store, key) DO UPDATE SET value = ?3";
const SELECT: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

/// Storage operations; errors are the store's own message.
impl KvStore {
    fn run<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection, &str) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        // In place, not `block_in_place` (a thread hand-off per call): these are short
        // single-row statements, as for `sqlite::execute`.
        let mut conn = self.file.conn.lock().expect("key-value lock");
        f(&mut conn, &self.name).map_err(|e| e.to_string())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.run(|c, name| {
            c.prepare_cached(SELECT)?
                .query_row((name, key), |r| r.get(0))
                .optional()
        })
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.run(|c, name| {
            c.prepare_cached(UPSERT)?
                .execute((name, key, value))
                .map(drop)
        })
    }

    fn delete(&self, key: &str) -> Result<(), String> {
        self.run(|c, name| c.prepare_cached(DELETE)?.execute((name, key)).map(drop))
    }

    fn exists(&self, key: &str) -> Result<bool, String> {
        self.run(|c, name| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists((name, key))
        })
    }

    fn keys(&self) -> Result<Vec<String>, String> {
        self.run(|c, name| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map([name], |r| r.get(0))?
                .collect()
        })
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, String> {
        self.run(|c, name| {
            let tx = c.transaction()?;
            let old: Option<Vec<u8>> = tx
                .prepare_cached(SELECT)?
                .query_row((name, key), |r| r.get(0))
                .optional()?;
            let old = match old {
                None => Ok(0),
                Some(v) => <[u8; 8]>::try_from(v.as_slice()).map(i64::from_le_bytes),
            };
            let Ok(old) = old else {
                return Ok(Err(format!("value of {key:?} is not an 8-byte integer")));
            };
            let new = old.wrapping_add(delta);
            tx.prepare_cached(UPSERT)?
                .execute((name, key, new.to_le_bytes()))?;
            tx.commit()?;
            Ok(Ok(new))
        })?
    }

    /// Writes `value` if the key still holds `seen`; `false` if it changed meanwhile.
    fn swap(&self, key: &str, seen: Option<&[u8]>, value: &[u8]) -> Result<bool, String> {
        self.run(|c, name| {
            let changed = match seen {
                Some(old) => c
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3",
                    )?
                    .execute((name, key, old, value))?,
                // Nothing was there: insert only if that is still so.
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO NOTHING",
                    )?
                    .execute((name, key, value))?,
            };
            Ok(changed == 1)
        })
    }

    fn get_many(&self, keys: Vec<String>) -> Result<Entries, String> {
        self.run(|c, name| {
            let mut stmt = c.prepare_cached(SELECT)?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let v = stmt.query_row((name, &k), |r| r.get(0)).optional()?;
                out.push((k, v));
            }
            Ok(out)
        })
    }

    fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        self.run(|c, name| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(UPSERT)?;
                for (k, v) in &pairs {
                    stmt.execute((name, k, v))?;
                }
            }
            tx.commit()
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> Result<(), String> {
        self.run(|c, name| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(DELETE)?;
                for k in &keys {
                    stmt.execute((name, k))?;
                }
            }
            tx.commit()
        })
    }
}

enum OpenError {
    AccessDenied,
    NoSuchStore,
}

impl HostState {
    fn kv_open(&self, label: &str) -> Result<KvStore, OpenError> {
        if !self.component.key_value_stores.contains(label) {
            return Err(OpenError::AccessDenied);
        }
        self.app
            .kv
            .get(label)
            .cloned()
            .ok_or(OpenError::NoSuchStore)
    }

    fn kv_store(&self, res: &Resource<KvStore>) -> wasmtime::Result<KvStore> {
        Ok(self.table.get(res)?.clone())
    }
}

// ---- fermyon:spin/key-value@2.0.0 ----

impl kv::Host for HostState {}

impl kv::HostStore for HostState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, kv::Error>> {
        Ok(match self.kv_open(&label) {
            Ok(store) => Ok(self.table.push(store)?),
            Err(OpenError::AccessDenied) => Err(kv::Error::AccessDenied),
            Err(OpenError::NoSuchStore) => Err(kv::Error::NoSuchStore),
        })
    }

    async fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        Ok(self.kv_store(&store)?.get(&key).map_err(kv::Error::Other))
    }

    async fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(self
            .kv_store(&store)?
            .set(&key, &value)
            .map_err(kv::Error::Other))
    }

    async fn delete(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        Ok(self
            .kv_store(&store)?
            .delete(&key)
            .map_err(kv::Error::Other))
    }

    async fn exists(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        Ok(self
            .kv_store(&store)?
            .exists(&key)
            .map_err(kv::Error::Other))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KvStore>,
    ) -> wasmtime::Result<Result<Vec<String>, kv::Error>> {
        Ok(self.kv_store(&store)?.keys().map_err(kv::Error::Other))
    }

    async fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

// ---- wasi:keyvalue@0.2.0-draft2 ----

impl wkv::Host for HostState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, wkv::Error>> {
        Ok(match self.kv_open(&identifier) {
            Ok(store) => Ok(self.table.push(store)?),
            Err(OpenError::AccessDenied) => Err(wkv::Error::AccessDenied),
            Err(OpenError::NoSuchStore) => Err(wkv::Error::NoSuchStore),
        })
    }
}

impl wkv::HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wkv::Error>> {
        Ok(self.kv_store(&bucket)?.get(&key).map_err(wkv::Error::Other))
    }

    async fn set(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .set(&key, &value)
            .map_err(wkv::Error::Other))
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .delete(&key)
            .map_err(wkv::Error::Other))
    }

    async fn exists(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .exists(&key)
            .map_err(wkv::Error::Other))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvStore>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<wkv::KeyResponse, wkv::Error>> {
        if cursor.is_some() {
            // As in Spin: all keys come in the first page, so there is never a cursor to pass.
            return Ok(Err(wkv::Error::Other(
                "list-keys: cursor not supported".into(),
            )));
        }
        Ok(self
            .kv_store(&bucket)?
            .keys()
            .map(|keys| wkv::KeyResponse { keys, cursor: None })
            .map_err(wkv::Error::Other))
    }

    async fn drop(&mut self, bucket: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .increment(&key, delta)
            .map_err(wkv::Error::Other))
    }

    async fn swap(
        &mut self,
        cas: Resource<KvCas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let c = self.table.get(&cas)?;
        match c.store.swap(&c.key, c.seen.as_deref(), &value) {
            Ok(true) => {
                self.table.delete(cas)?;
                Ok(Ok(()))
            }
            // The guest gets its handle back to read the new current value and retry.
            Ok(false) => Ok(Err(atomics::CasError::CasFailed(cas))),
            Err(e) => {
                self.table.delete(cas)?;
                Ok(Err(atomics::CasError::StoreError(wkv::Error::Other(e))))
            }
        }
    }
}

impl atomics::HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<KvCas>, wkv::Error>> {
        let store = self.kv_store(&bucket)?;
        Ok(Ok(self.table.push(KvCas {
            store,
            key,
            seen: None,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<KvCas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wkv::Error>> {
        let c = self.table.get_mut(&cas)?;
        Ok(match c.store.get(&c.key) {
            Ok(v) => {
                c.seen.clone_from(&v);
                Ok(v)
            }
            Err(e) => Err(wkv::Error::Other(e)),
        })
    }

    async fn drop(&mut self, cas: Resource<KvCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Entries, wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .get_many(keys)
            .map_err(wkv::Error::Other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .set_many(key_values)
            .map_err(wkv::Error::Other))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), wkv::Error>> {
        Ok(self
            .kv_store(&bucket)?
            .delete_many(keys)
            .map_err(wkv::Error::Other))
    }
}
