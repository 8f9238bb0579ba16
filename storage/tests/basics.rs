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

/// A domain's CHECK holds for every write, after a restart too, and a bulk load
/// that breaks it leaves nothing.
#[test]
fn domain_checks_hold_across_a_restart_and_for_bulk_loads() {
    use scratchbird_storage::StorageError;
    use scratchbird_storage::catalog::{ColumnSpec, DomainSpec, TableSpec};
    use scratchbird_types::SqlType;
    let dir = tempfile::tempdir().unwrap();
    let table = {
        let (store, _env) = open(dir.path());
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        // a default the CHECK refuses is refused with the domain
        let bad_default = t.create_domain(&DomainSpec {
            name: "pos".into(),
            base: SqlType::Integer,
            not_null: false,
            default: Some(Value::Integer(0)),
            check: Some("VALUE > 0".into()),
        });
        assert!(bad_default.is_err(), "{bad_default:?}");
        t.create_domain(&DomainSpec {
            name: "pos".into(),
            base: SqlType::Integer,
            not_null: false,
            default: None,
            check: Some("VALUE > 0".into()),
        })
        .unwrap();
        let table = t
            .create_table(&TableSpec {
                distribution: None,
                name: "p".into(),
                columns: vec![
                    ColumnSpec::new("k", SqlType::BigInt),
                    ColumnSpec::of_domain("n", "pos"),
                ],
                primary_key: vec!["k".into()],
            })
            .unwrap();
        t.commit().unwrap();
        table
    };
    let (store, _env) = open(dir.path());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    match t.insert(table, vec![Value::BigInt(1), Value::Integer(0)]) {
        Err(StorageError::CheckViolation(v)) => {
            assert_eq!((v.domain.as_str(), v.column.as_str()), ("pos", "n"));
        }
        other => panic!("expected a CHECK violation, got {other:?}"),
    }
    t.insert(table, vec![Value::BigInt(1), Value::Integer(5)])
        .unwrap();
    t.insert(table, vec![Value::BigInt(2), Value::Null])
        .unwrap();
    let load = (3..6).map(|k| {
        vec![
            Value::BigInt(k),
            Value::Integer(i32::try_from(k).unwrap() - 4),
        ]
    });
    assert!(matches!(
        t.bulk_insert(table, load),
        Err(StorageError::CheckViolation(_))
    ));
    t.commit().unwrap();
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(rows(&t, table).len(), 2);
}

/// Two stores that apply the same schema changes with the same given ids
/// (as every node of a cluster does with a change of its log) name their
/// objects alike: equal schema versions, equal table ids. Without given ids,
/// the same changes give other ids and another version.
#[test]
fn given_ids_make_equal_schemas_on_separate_stores() {
    use scratchbird_storage::catalog::{ColumnSpec, DomainSpec, IndexSpec, TableSpec};
    use scratchbird_types::SqlType;
    let change = |store: &scratchbird_storage::Storage, given: bool| {
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        if given {
            let mut n = 0u8;
            t.set_ids(Some(Box::new(move || {
                n += 1;
                [n; 16]
            })));
        }
        t.create_domain(&DomainSpec {
            name: "pos".into(),
            base: SqlType::Integer,
            not_null: false,
            default: None,
            check: Some("VALUE > 0".into()),
        })
        .unwrap();
        let id = t
            .create_table(&TableSpec {
                distribution: None,
                name: "p".into(),
                columns: vec![
                    ColumnSpec::new("k", SqlType::BigInt),
                    ColumnSpec::of_domain("n", "pos"),
                ],
                primary_key: vec!["k".into()],
            })
            .unwrap();
        t.create_index(&IndexSpec {
            name: "p_n".into(),
            table: "p".into(),
            columns: vec!["n".into()],
            unique: false,
            plain: true,
        })
        .unwrap();
        let version = t.catalog().unwrap().version();
        t.commit().unwrap();
        (id, version)
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (sa, _) = open(a.path());
    let (sb, _) = open(b.path());
    let (sc, _) = open(c.path());
    let (ta, va) = change(&sa, true);
    let (tb, vb) = change(&sb, true);
    assert_eq!((ta, va), (tb, vb));
    // read back after commit, the version is the same too
    let t = sb.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(t.catalog().unwrap().version(), va);
    let (tc, vc) = change(&sc, false);
    assert_ne!(tc, ta);
    assert_ne!(vc, va);
}
