//! The named anomalies, each on a real store with real threads where waiting matters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use scratchbird_storage::catalog::{ColumnSpec, IndexSpec, TableSpec};
use scratchbird_storage::{ReadCommittedMode, Storage, StorageError, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn get_v(t: &scratchbird_storage::Transaction, table: TableId, k: i64) -> Option<i64> {
    t.get(table, &[Value::BigInt(k)])
        .unwrap()
        .map(|r| match r[1] {
            Value::BigInt(v) => v,
            _ => panic!("bad row"),
        })
}

fn set_v(
    t: &mut scratchbird_storage::Transaction,
    table: TableId,
    k: i64,
    v: i64,
) -> Result<bool, StorageError> {
    let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
    t.update(table, &key, vec![Value::BigInt(k), Value::BigInt(v)])
}

fn seeded(store: &Storage, n: i64) -> TableId {
    let table = create_kv(store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 0..n {
        put(&mut t, table, k, 100);
    }
    t.commit().unwrap();
    table
}

fn all_isolations() -> Vec<TxnOptions> {
    vec![
        TxnOptions::snapshot(),
        TxnOptions::read_committed(ReadCommittedMode::RecordVersion),
        TxnOptions::read_committed(ReadCommittedMode::ReadConsistency),
    ]
}

#[test]
fn no_dirty_read_in_any_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = seeded(&store, 2);
    let mut writer = store.begin(TxnOptions::snapshot()).unwrap();
    set_v(&mut writer, table, 0, 999).unwrap();
    put(&mut writer, table, 50, 1);
    for opts in all_isolations() {
        let r = store.begin(opts.no_wait()).unwrap();
        assert_eq!(get_v(&r, table, 0), Some(100), "{opts:?}");
        assert_eq!(get_v(&r, table, 50), None, "{opts:?}");
        assert_eq!(kv_rows(&r, table), vec![(0, 100), (1, 100)], "{opts:?}");
    }
    // NO RECORD_VERSION refuses to read past an uncommitted version instead.
    let r = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::NoRecordVersion).no_wait())
        .unwrap();
    assert!(matches!(
        r.get(table, &[Value::BigInt(0)]),
        Err(StorageError::LockConflict { .. })
    ));
    writer.rollback().unwrap();
    assert_eq!(get_v(&r, table, 0), Some(100));
}

#[test]
fn lost_update_is_refused_with_an_update_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = seeded(&store, 1);
    let mut t1 = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let mut t2 = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let a = get_v(&t1, table, 0).unwrap();
    let b = get_v(&t2, table, 0).unwrap();
    set_v(&mut t1, table, 0, a + 1).unwrap();
    // While t1 is active, t2 meets a lock conflict (NO WAIT).
    assert!(matches!(
        set_v(&mut t2, table, 0, b + 1),
        Err(StorageError::LockConflict { .. })
    ));
    t1.commit().unwrap();
    // After t1 committed, t2 (whose snapshot predates it) meets an update conflict.
    let err = set_v(&mut t2, table, 0, b + 1).unwrap_err();
    assert!(matches!(err, StorageError::UpdateConflict { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("update conflicts with concurrent update")
    );
    t2.rollback().unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(
        get_v(&r, table, 0),
        Some(101),
        "exactly one increment landed"
    );
}

#[test]
fn a_waiting_snapshot_writer_gets_an_update_conflict_when_the_holder_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    let table = seeded(&store, 1);
    let mut t1 = store.begin(TxnOptions::snapshot()).unwrap();
    set_v(&mut t1, table, 0, 1).unwrap();
    let s2 = store.clone();
    let waiter = std::thread::spawn(move || {
        let mut t2 = s2.begin(TxnOptions::snapshot()).unwrap();
        let r = set_v(&mut t2, table, 0, 2);
        (r.map_err(|e| e.to_string()), t2.rollback().is_ok())
    });
    std::thread::sleep(Duration::from_millis(100));
    t1.commit().unwrap();
    let (r, _) = waiter.join().unwrap();
    assert!(
        r.unwrap_err().contains("update conflicts"),
        "the waiter must not overwrite t1"
    );
}

#[test]
fn a_waiting_read_committed_writer_proceeds_when_the_holder_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    let table = seeded(&store, 1);
    let mut t1 = store.begin(TxnOptions::snapshot()).unwrap();
    set_v(&mut t1, table, 0, 1).unwrap();
    let s2 = store.clone();
    let waiter = std::thread::spawn(move || {
        let mut t2 = s2
            .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion))
            .unwrap();
        set_v(&mut t2, table, 0, 2).unwrap();
        t2.commit().unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    t1.commit().unwrap();
    waiter.join().unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(get_v(&r, table, 0), Some(2));
}

#[test]
fn snapshot_is_stable_under_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = seeded(&store, 50);
    let reader = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    let before = kv_rows(&reader, table);
    for round in 0..20 {
        let mut w = store.begin(TxnOptions::snapshot()).unwrap();
        set_v(&mut w, table, round, round).unwrap();
        let key = w.key_of(table, &[Value::BigInt(49 - round)]).unwrap();
        w.delete(table, &key).unwrap();
        put(&mut w, table, 1000 + round, 7);
        w.commit().unwrap();
        if round % 5 == 0 {
            store.sweep().unwrap();
        }
        assert_eq!(kv_rows(&reader, table), before, "round {round}");
    }
    // A READ COMMITTED reader sees the new state.
    let rc = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion))
        .unwrap();
    assert_ne!(kv_rows(&rc, table), before);
}

#[test]
fn write_skew_is_possible_under_snapshot() {
    // Two doctors on call; each may go off call if the other is on call. Under
    // SNAPSHOT both read "the other is on call" and both commit: the invariant (at
    // least one on call) breaks. This is SNAPSHOT isolation as specified, not
    // serializability; it is documented in docs/storage-format.md.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = create_kv(&store, "on_call");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, table, 1, 1);
    put(&mut t, table, 2, 1);
    t.commit().unwrap();
    let mut a = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let mut b = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let on_call = |t: &scratchbird_storage::Transaction| {
        kv_rows(t, table).iter().filter(|(_, v)| *v == 1).count()
    };
    assert_eq!(on_call(&a), 2);
    assert_eq!(on_call(&b), 2);
    set_v(&mut a, table, 1, 0).unwrap();
    set_v(&mut b, table, 2, 0).unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(on_call(&r), 0, "write skew happened, as SNAPSHOT allows");
}

fn unique_table(store: &Storage) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "users".into(),
            columns: vec![
                ColumnSpec::new("id", SqlType::BigInt),
                ColumnSpec::new("email", SqlType::Varchar { max_chars: 100 }),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    t.create_index(&IndexSpec {
        name: "users_email".into(),
        table: "users".into(),
        columns: vec!["email".into()],
        unique: true,
        plain: true,
    })
    .unwrap();
    t.commit().unwrap();
    id
}

#[test]
fn unique_constraint_is_never_violated_by_concurrent_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    let table = unique_table(&store);
    let writers = 8;
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let opts = if w % 2 == 0 {
                        TxnOptions::snapshot()
                    } else {
                        TxnOptions::read_committed(ReadCommittedMode::RecordVersion)
                    };
                    let mut t = store.begin(opts.wait_ms(5_000)).unwrap();
                    barrier.wait();
                    let id = i64::try_from(round * 100 + w).unwrap();
                    let r = t.insert(
                        table,
                        vec![Value::BigInt(id), Value::Text(format!("same-{round}@x"))],
                    );
                    match r {
                        Ok(_) => {
                            t.commit().unwrap();
                            true
                        }
                        Err(
                            StorageError::UniqueViolation { .. }
                            | StorageError::UpdateConflict { .. },
                        ) => false,
                        Err(e) => panic!("unexpected: {e}"),
                    }
                })
            })
            .collect();
        let committed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&c| c)
            .count();
        assert_eq!(
            committed, 1,
            "round {round}: exactly one insert of the value commits"
        );
    }
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(rows(&r, table).len(), 10);
    let idx = r
        .catalog()
        .unwrap()
        .index_by_name("users_email")
        .unwrap()
        .id;
    assert_eq!(
        r.lookup(idx, &[Value::Text("same-3@x".into())])
            .unwrap()
            .len(),
        1
    );
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn unique_value_freed_by_an_uncommitted_delete_waits_for_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = unique_table(&store);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.insert(table, vec![Value::BigInt(1), Value::Text("a@x".into())])
        .unwrap();
    t.commit().unwrap();
    let mut deleter = store.begin(TxnOptions::snapshot()).unwrap();
    let k = deleter.key_of(table, &[Value::BigInt(1)]).unwrap();
    deleter.delete(table, &k).unwrap();
    let mut inserter = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion).no_wait())
        .unwrap();
    let err = inserter
        .insert(table, vec![Value::BigInt(2), Value::Text("a@x".into())])
        .unwrap_err();
    assert!(matches!(err, StorageError::LockConflict { .. }), "{err}");
    deleter.commit().unwrap();
    inserter
        .insert(table, vec![Value::BigInt(2), Value::Text("a@x".into())])
        .unwrap();
    inserter.commit().unwrap();
    // The committed holder makes a third insert a plain violation.
    let mut third = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let err = third
        .insert(table, vec![Value::BigInt(3), Value::Text("a@x".into())])
        .unwrap_err();
    assert!(matches!(err, StorageError::UniqueViolation { .. }), "{err}");
    assert!(err.to_string().contains("users_email"), "{err}");
}

#[test]
fn concurrent_inserts_of_one_primary_key_admit_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    let table = create_kv(&store, "kv");
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|w| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut t = store.begin(TxnOptions::snapshot().wait_ms(5_000)).unwrap();
                barrier.wait();
                match t.insert(table, vec![Value::BigInt(42), Value::BigInt(w)]) {
                    Ok(_) => t.commit().is_ok(),
                    Err(
                        StorageError::PrimaryKeyViolation { .. }
                        | StorageError::UpdateConflict { .. },
                    ) => false,
                    Err(e) => panic!("unexpected: {e}"),
                }
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&c| c)
        .count();
    assert_eq!(ok, 1);
}

#[test]
fn a_wait_cycle_is_reported_as_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let store = Arc::new(store);
    let table = seeded(&store, 2);
    let mut t1 = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion))
        .unwrap();
    let mut t2 = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion))
        .unwrap();
    set_v(&mut t1, table, 0, 1).unwrap();
    set_v(&mut t2, table, 1, 1).unwrap();
    let h = std::thread::spawn(move || {
        let r = set_v(&mut t1, table, 1, 2).map_err(|e| e.to_string());
        (r, t1)
    });
    std::thread::sleep(Duration::from_millis(100));
    let err = set_v(&mut t2, table, 0, 2).unwrap_err();
    assert!(matches!(err, StorageError::Deadlock { .. }), "{err}");
    t2.rollback().unwrap();
    let (r, t1) = h.join().unwrap();
    assert_eq!(
        r,
        Ok(true),
        "the other transaction proceeds once the victim rolls back"
    );
    t1.commit().unwrap();
}

#[test]
fn lock_timeout_ends_the_wait_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = seeded(&store, 1);
    let mut t1 = store.begin(TxnOptions::snapshot()).unwrap();
    set_v(&mut t1, table, 0, 1).unwrap();
    let mut t2 = store
        .begin(TxnOptions::read_committed(ReadCommittedMode::RecordVersion).wait_ms(50))
        .unwrap();
    let err = set_v(&mut t2, table, 0, 2).unwrap_err();
    assert!(matches!(err, StorageError::LockTimeout { .. }), "{err}");
}

#[test]
fn a_failed_statement_undoes_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = seeded(&store, 3);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, table, 10, 1);
    // A multi-row statement that fails on its third row (duplicate key 1).
    let err = t
        .statement(|t| {
            t.insert(table, vec![Value::BigInt(20), Value::BigInt(1)])?;
            t.insert(table, vec![Value::BigInt(21), Value::BigInt(1)])?;
            t.insert(table, vec![Value::BigInt(1), Value::BigInt(1)])?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, StorageError::PrimaryKeyViolation { .. }),
        "{err}"
    );
    assert_eq!(
        kv_rows(&t, table),
        vec![(0, 100), (1, 100), (2, 100), (10, 1)]
    );
    t.savepoint("s1").unwrap();
    put(&mut t, table, 30, 1);
    set_v(&mut t, table, 0, 5).unwrap();
    t.rollback_to_savepoint("s1").unwrap();
    put(&mut t, table, 31, 1);
    t.commit().unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(
        kv_rows(&r, table),
        vec![(0, 100), (1, 100), (2, 100), (10, 1), (31, 1)]
    );
    let log: Vec<_> = store
        .commit_log(scratchbird_types::CommitNumber(1))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let last = log.last().unwrap();
    let keys: Vec<Option<Value>> = last
        .changes
        .iter()
        .map(|c| c.row.as_ref().map(|r| r[0].clone()))
        .collect();
    assert_eq!(
        keys,
        vec![Some(Value::BigInt(10)), Some(Value::BigInt(31))],
        "the log holds only what committed"
    );
}
