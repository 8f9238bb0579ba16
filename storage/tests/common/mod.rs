//! Shared helpers of the storage integration tests: real fjall folders in temp dirs.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers"
)]

use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::{Durability, ManualEnv, Storage, StorageConfig, Transaction, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};
use std::path::Path;
use std::sync::Arc;

pub const T0: i64 = 1_767_225_600_000_000; // 2026-01-01 00:00:00 UTC

pub fn config(env: Arc<ManualEnv>) -> StorageConfig {
    let mut c = StorageConfig::new(env);
    c.durability = Durability::NoFsync;
    c.sweep_interval_ms = None;
    c.cache_bytes = 16 * 1024 * 1024;
    c.retention_micros = 0;
    c
}

pub fn open(dir: &Path) -> (Storage, Arc<ManualEnv>) {
    let env = Arc::new(ManualEnv::new(T0, 7));
    (Storage::open(dir, config(env.clone())).unwrap(), env)
}

/// `kv(k BIGINT PRIMARY KEY, v BIGINT)`
pub fn create_kv(store: &Storage, name: &str) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: name.into(),
            columns: vec![
                ColumnSpec::new("k", SqlType::BigInt),
                ColumnSpec::new("v", SqlType::BigInt),
            ],
            primary_key: vec!["k".into()],
        })
        .unwrap();
    t.commit().unwrap();
    id
}

pub fn rows(t: &Transaction, table: TableId) -> Vec<Vec<Value>> {
    scratchbird_storage::scan::collect_rows(t, table).unwrap()
}

pub fn kv_rows(t: &Transaction, table: TableId) -> Vec<(i64, i64)> {
    rows(t, table)
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::BigInt(k), Value::BigInt(v)) => (*k, *v),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

pub fn put(t: &mut Transaction, table: TableId, k: i64, v: i64) {
    t.insert(table, vec![Value::BigInt(k), Value::BigInt(v)])
        .unwrap();
}
