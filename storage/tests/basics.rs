//! The engine end to end on a real fjall folder: DDL, writes, reads, scans, restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use scratchbird_storage::TxnOptions;
use scratchbird_types::Value;

#[test]
fn committed_rows_survive_a_restart_and_dropped_transactions_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let table;
    {
        let (store, _) = open(dir.path());
        table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        for k in 0..100 {
            put(&mut t, table, k, k * 10);
        }
        t.commit().unwrap();
        let mut dropped = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut dropped, table, 1000, 1);
        drop(dropped);
        store.close().unwrap();
    }
    let (store, _) = open(dir.path());
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let got = kv_rows(&t, table);
    assert_eq!(got.len(), 100);
    assert_eq!(got[5], (5, 50));
    assert_eq!(
        t.get(table, &[Value::BigInt(7)]).unwrap(),
        Some(vec![Value::BigInt(7), Value::BigInt(70)])
    );
    assert_eq!(t.get(table, &[Value::BigInt(1000)]).unwrap(), None);
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn sweep_folds_versions_into_pages_and_reads_stay_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 0..5000 {
        put(&mut t, table, k, k);
    }
    t.commit().unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in (0..5000).step_by(3) {
        let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
        t.update(table, &key, vec![Value::BigInt(k), Value::BigInt(-k)])
            .unwrap();
    }
    for k in (1..5000).step_by(7) {
        let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
        t.delete(table, &key).unwrap();
    }
    t.commit().unwrap();
    let before = kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table);
    let report = store.sweep().unwrap();
    assert!(report.pages_written > 0, "{report:?}");
    let stats = store.stats();
    assert_eq!(stats.delta_versions, 0, "{stats:?}");
    let after = kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table);
    assert_eq!(before, after);
    assert!(store.check().unwrap().problems.is_empty());
}
