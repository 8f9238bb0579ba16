//! Regression tests for defects found in review of the storage engine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use scratchbird_storage::catalog::{ColumnSpec, IndexSpec, TableSpec, ViewSpec};
use scratchbird_storage::{Faults, ManualEnv, Storage, StorageError, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};
use std::sync::Arc;

fn users(store: &Storage) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "users".into(),
            columns: vec![
                ColumnSpec::new("id", SqlType::BigInt),
                ColumnSpec::new("email", SqlType::Text),
                ColumnSpec::new("n", SqlType::Integer),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    t.commit().unwrap();
    id
}

fn unique_email(store: &Storage) {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.create_index(&IndexSpec {
        name: "users_email".into(),
        table: "users".into(),
        columns: vec!["email".into()],
        unique: true,
        plain: true,
    })
    .unwrap();
    t.commit().unwrap();
}

fn user(id: i64, email: &str, n: i32) -> Vec<Value> {
    vec![
        Value::BigInt(id),
        Value::Text(email.into()),
        Value::Integer(n),
    ]
}

#[test]
fn a_unique_key_in_any_version_of_an_active_writer_blocks_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = users(&store);
    unique_email(&store);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.insert(table, user(1, "a@x", 0)).unwrap();
    t.commit().unwrap();
    // T moves the key away twice; the committed version below still holds it.
    let mut holder = store.begin(TxnOptions::snapshot()).unwrap();
    let k1 = holder.key_of(table, &[Value::BigInt(1)]).unwrap();
    holder.update(table, &k1, user(1, "b@x", 0)).unwrap();
    holder.update(table, &k1, user(1, "b@x", 1)).unwrap();
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let err = w.insert(table, user(2, "a@x", 0)).unwrap_err();
    assert!(matches!(err, StorageError::LockConflict { .. }), "{err}");
    // An intermediate version of the holder carries the key too.
    let mut holder2 = store.begin(TxnOptions::snapshot()).unwrap();
    holder2.insert(table, user(3, "c@x", 0)).unwrap();
    holder2.savepoint("s").unwrap();
    let k3 = holder2.key_of(table, &[Value::BigInt(3)]).unwrap();
    holder2.update(table, &k3, user(3, "d@x", 0)).unwrap();
    let err = w.insert(table, user(4, "c@x", 0)).unwrap_err();
    assert!(matches!(err, StorageError::LockConflict { .. }), "{err}");
    holder2.rollback_to_savepoint("s").unwrap();
    holder2.commit().unwrap();
    holder.rollback().unwrap();
    let err = w.insert(table, user(2, "a@x", 0)).unwrap_err();
    assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
}

#[test]
fn a_dropped_unique_index_is_no_longer_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = users(&store);
    unique_email(&store);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.insert(table, user(1, "a@x", 0)).unwrap();
    t.commit().unwrap();
    // An old snapshot keeps the dropped index physically alive.
    let old = store.begin(TxnOptions::snapshot()).unwrap();
    let mut d = store.begin(TxnOptions::snapshot()).unwrap();
    d.drop_index("users_email").unwrap();
    // The dropper holds the table; others wait for the drop's outcome.
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    assert!(matches!(
        w.insert(table, user(2, "a@x", 0)),
        Err(StorageError::ObjectInUse { .. })
    ));
    w.rollback().unwrap();
    // Until its drop commits, the dropper itself still respects the index (it
    // could roll back).
    assert!(matches!(
        d.insert(table, user(2, "a@x", 0)),
        Err(StorageError::UniqueViolation { .. })
    ));
    d.commit().unwrap();
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    w.insert(table, user(2, "a@x", 0)).unwrap();
    w.commit().unwrap();
    store.sweep().unwrap();
    assert_eq!(rows(&old, table).len(), 1);
    drop(old);
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn an_index_created_by_a_rolled_back_transaction_disappears_even_with_a_folded_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = users(&store);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.insert(table, user(1, "a@x", 0)).unwrap();
    t.commit().unwrap();
    // Fold the catalog into pages, so new object ids fall inside a page's key span.
    store.sweep().unwrap();
    let mut c = store.begin(TxnOptions::snapshot()).unwrap();
    c.create_index(&IndexSpec {
        name: "users_email".into(),
        table: "users".into(),
        columns: vec!["email".into()],
        unique: true,
        plain: true,
    })
    .unwrap();
    let txn = c.prepare().unwrap();
    store.resolve_limbo(txn, false).unwrap();
    let report = store.sweep().unwrap();
    assert_eq!(report.indexes_removed, 1, "{report:?}");
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    w.insert(table, user(2, "a@x", 0)).unwrap();
    w.commit().unwrap();
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn waiters_wake_with_an_error_when_the_holder_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let env = Arc::new(ManualEnv::new(T0, 1));
    let faults = Arc::new(Faults::default());
    let mut c = config(env);
    c.faults = Some(faults.clone());
    let store = Arc::new(Storage::open(dir.path(), c).unwrap());
    let table = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, table, 1, 1);
    t.commit().unwrap();
    let mut holder = store.begin(TxnOptions::snapshot()).unwrap();
    let k = holder.key_of(table, &[Value::BigInt(1)]).unwrap();
    holder
        .update(table, &k, vec![Value::BigInt(1), Value::BigInt(2)])
        .unwrap();
    let s2 = store.clone();
    let waiter = std::thread::spawn(move || {
        let mut w = s2.begin(TxnOptions::snapshot()).unwrap();
        let k = w.key_of(table, &[Value::BigInt(1)]).unwrap();
        w.update(table, &k, vec![Value::BigInt(1), Value::BigInt(3)])
            .map_err(|e| e.to_string())
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    faults.fail_next_fsync();
    assert!(holder.commit().is_err());
    let r = waiter.join().unwrap();
    assert!(
        r.unwrap_err().contains("refuses writes"),
        "the waiter woke with the store's error"
    );
}

#[test]
fn a_transaction_in_limbo_keeps_its_table_locks_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (table, txn);
    {
        let (store, _) = open(dir.path());
        table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, 1, 1);
        txn = t.prepare().unwrap();
        let mut d = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
        assert!(matches!(
            d.drop_table("kv"),
            Err(StorageError::ObjectInUse { .. })
        ));
        d.rollback().unwrap();
        store.close().unwrap();
    }
    let (store, _) = open(dir.path());
    let mut d = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    assert!(matches!(
        d.drop_table("kv"),
        Err(StorageError::ObjectInUse { .. })
    ));
    d.rollback().unwrap();
    // Other writers of other records proceed meanwhile.
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    put(&mut w, table, 2, 2);
    w.commit().unwrap();
    store.resolve_limbo(txn, true).unwrap();
    let mut d = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    d.drop_table("kv").unwrap();
    d.commit().unwrap();
}

#[test]
fn commit_timestamps_never_go_backwards_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (table, last_ts);
    {
        let (store, env) = open(dir.path());
        table = create_kv(&store, "kv");
        env.set_micros(T0 + 1_000_000_000);
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, 1, 1);
        let cn = t.commit().unwrap().commit.unwrap();
        last_ts = store
            .commit_log(cn)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .commit_ts;
        // Every commit settles and the inventory floor moves past all of them.
        store.sweep().unwrap();
        store.sweep().unwrap();
        store.close().unwrap();
    }
    // Restart with a clock that is behind.
    let env = Arc::new(ManualEnv::new(T0, 9));
    let mut c = config(env);
    c.retention_micros = 3_600_000_000;
    let store = Storage::open(dir.path(), c).unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, table, 2, 2);
    let cn = t.commit().unwrap().commit.unwrap();
    let ts = store
        .commit_log(cn)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .commit_ts;
    assert!(ts >= last_ts, "{ts} < {last_ts}");
}

fn view_on(name: &str, on: &str) -> ViewSpec {
    ViewSpec {
        name: name.into(),
        columns: Vec::new(),
        query: format!("SELECT * FROM {on}"),
        depends: vec![on.into()],
    }
}

/// A DROP that waited for the lock a CREATE VIEW held must see the view that
/// committed meanwhile, although its own snapshot predates it: otherwise the
/// view is left naming nothing.
#[test]
fn a_drop_that_waited_for_a_new_view_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    create_kv(&store, "kv");
    let mut v = store.begin(TxnOptions::snapshot()).unwrap();
    v.create_view(&view_on("v", "kv")).unwrap();
    let s2 = store.clone();
    let dropper = std::thread::spawn(move || {
        let mut d = s2.begin(TxnOptions::snapshot()).unwrap();
        d.drop_table("kv")
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    v.commit().unwrap();
    let err = dropper.join().unwrap().unwrap_err();
    assert!(
        matches!(err, StorageError::ObjectInUse { ref reason, .. } if reason.contains("view v")),
        "{err}"
    );

    // the same for a view on a view
    let mut w = store.begin(TxnOptions::snapshot()).unwrap();
    w.create_view(&view_on("w", "v")).unwrap();
    let s2 = store.clone();
    let dropper = std::thread::spawn(move || {
        let mut d = s2.begin(TxnOptions::snapshot()).unwrap();
        d.drop_view("v")
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    w.commit().unwrap();
    let err = dropper.join().unwrap().unwrap_err();
    assert!(
        matches!(err, StorageError::ObjectInUse { ref reason, .. } if reason.contains("view w")),
        "{err}"
    );
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let cat = t.catalog().unwrap();
    assert!(cat.table_by_name("kv").is_some() && cat.view_by_name("v").is_some());
}

/// A CREATE VIEW that waited for a DROP fails once the drop commits.
#[test]
fn a_view_that_waited_for_a_drop_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.create_view(&view_on("v", "kv")).unwrap();
    t.commit().unwrap();
    for (drop, on) in [("v", "v"), ("kv", "kv")] {
        let mut d = store.begin(TxnOptions::snapshot()).unwrap();
        if drop == "v" {
            d.drop_view("v").unwrap();
        } else {
            d.drop_table("kv").unwrap();
        }
        let s2 = store.clone();
        let creator = std::thread::spawn(move || {
            let mut c = s2.begin(TxnOptions::snapshot()).unwrap();
            c.create_view(&view_on("w", on))
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        d.commit().unwrap();
        let err = creator.join().unwrap().unwrap_err();
        assert!(
            matches!(err, StorageError::TableDropped { ref table } if table == on),
            "{err}"
        );
    }
}
