//! ALTER TABLE and table CHECK constraints on real fjall folders: what each
//! change does to the rows a table holds, to writers and readers around it,
//! to an undo, and across a reopen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{create_kv, open, put, rows};
use scratchbird_storage::catalog::{ColumnSpec, IndexSpec, TableChange};
use scratchbird_storage::{StorageError, TxnOptions};
use scratchbird_types::{SqlType, Value};

fn check(expr: &str) -> TableChange {
    TableChange::AddCheck {
        name: None,
        expr: expr.into(),
    }
}

#[test]
fn add_column_fills_old_rows_with_its_default_and_keeps_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t.table_id("kv").unwrap();
    for k in 0..300 {
        put(&mut t, id, k, k * 10);
    }
    t.create_index(&IndexSpec {
        name: "kv_v".into(),
        table: "kv".into(),
        columns: vec!["v".into()],
        unique: true,
        plain: true,
    })
    .unwrap();
    t.commit().unwrap();

    let before = store.begin(TxnOptions::snapshot()).unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(
            ColumnSpec::new("w", SqlType::Integer).default_value(Value::Integer(7)),
        ),
    )
    .unwrap();
    t.commit().unwrap();

    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let new_id = t.table_id("kv").unwrap();
    assert_ne!(new_id, id, "a change of columns writes the table anew");
    let got = rows(&t, new_id);
    assert_eq!(got.len(), 300);
    assert!(
        got.iter()
            .all(|r| r.len() == 3 && r[2] == Value::Integer(7))
    );
    // the unique index came along and is enforced
    let idx = t.catalog().unwrap().index_by_name("kv_v").unwrap().clone();
    assert_eq!(idx.table, new_id);
    assert_eq!(t.lookup(idx.id, &[Value::BigInt(50)]).unwrap().len(), 1);
    drop(t);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let e = t
        .insert(
            new_id,
            vec![Value::BigInt(1000), Value::BigInt(50), Value::Null],
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::UniqueViolation { .. }), "{e}");
    t.rollback().unwrap();

    // a snapshot older than the change still reads the old table
    assert_eq!(rows(&before, id).len(), 300);
    assert_eq!(rows(&before, id)[0].len(), 2);
}

#[test]
fn drop_column_takes_its_indexes_and_checks_and_refuses_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t.table_id("kv").unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::BigInt)),
    )
    .unwrap();
    let id2 = t.table_id("kv").unwrap();
    assert_ne!(id, id2);
    t.insert(
        id2,
        vec![Value::BigInt(1), Value::BigInt(2), Value::BigInt(3)],
    )
    .unwrap();
    t.alter_table("kv", &check("v < w")).unwrap();
    t.alter_table("kv", &check("k >= 0")).unwrap();
    t.create_index(&IndexSpec {
        name: "kv_w".into(),
        table: "kv".into(),
        columns: vec!["w".into()],
        unique: false,
        plain: true,
    })
    .unwrap();
    let e = t
        .alter_table("kv", &TableChange::DropColumn("k".into()))
        .unwrap_err();
    assert!(e.to_string().contains("primary key"), "{e}");
    t.alter_table("kv", &TableChange::DropColumn("w".into()))
        .unwrap();
    let cat = t.catalog().unwrap();
    let def = cat.table_by_name("kv").unwrap().clone();
    assert_eq!(def.columns.len(), 2);
    let names: Vec<&str> = def.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["kv_k_check"], "the CHECK on w went with it");
    assert!(cat.index_by_name("kv_w").is_none());
    assert_eq!(
        rows(&t, def.id),
        vec![vec![Value::BigInt(1), Value::BigInt(2)]]
    );
    // the CHECK that stayed is enforced on the new table
    let e = t
        .insert(def.id, vec![Value::BigInt(-1), Value::BigInt(0)])
        .unwrap_err();
    assert!(
        matches!(e, StorageError::TableCheckViolation { ref constraint, .. } if constraint == "kv_k_check"),
        "{e}"
    );
    t.commit().unwrap();
}

#[test]
fn checks_are_validated_against_the_rows_held_and_enforced_on_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, id, 1, 10);
    put(&mut t, id, 2, -5);
    t.commit().unwrap();

    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let e = t.alter_table("kv", &check("v > 0")).unwrap_err();
    assert!(
        matches!(e, StorageError::ExistingRows { .. }) && e.to_string().contains("kv_v_check"),
        "{e}"
    );
    t.alter_table("kv", &check("v * 2 + k > -100 AND v <> 3"))
        .unwrap();
    let e = t
        .update(
            id,
            &t.key_of(id, &[Value::BigInt(1)]).unwrap(),
            vec![Value::BigInt(1), Value::BigInt(3)],
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::TableCheckViolation { .. }), "{e}");
    // NULL makes the expression unknown, which passes
    t.insert(id, vec![Value::BigInt(9), Value::Null]).unwrap();
    // names: after the one column a CHECK reads, else the table's; a given
    // name is kept
    t.alter_table("kv", &check("v <> 4")).unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddCheck {
            name: Some("positive_k".into()),
            expr: "k > 0".into(),
        },
    )
    .unwrap();
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    let names: Vec<&str> = def.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["kv_check", "kv_v_check", "positive_k"]);
    let e = t
        .alter_table(
            "kv",
            &TableChange::AddCheck {
                name: Some("positive_k".into()),
                expr: "k > 1".into(),
            },
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e}");
    let e = t.alter_table("kv", &check("nosuch > 1")).unwrap_err();
    assert!(e.to_string().contains("nosuch is not a column"), "{e}");
    let e = t.alter_table("kv", &check("k + 'a' > 1")).unwrap_err();
    assert!(e.to_string().contains("arithmetic"), "{e}");
    t.alter_table("kv", &check("v <> 5")).unwrap();
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    assert_eq!(def.checks.last().unwrap().name, "kv_v_check1");
    t.alter_table("kv", &TableChange::DropCheck("kv_v_check".into()))
        .unwrap();
    t.insert(id, vec![Value::BigInt(10), Value::BigInt(4)])
        .unwrap();
    t.commit().unwrap();
}

#[test]
fn not_null_default_and_rename_keep_the_rows_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, id, 1, 10);
    t.insert(id, vec![Value::BigInt(2), Value::Null]).unwrap();
    t.commit().unwrap();

    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let not_null = |n: bool| TableChange::SetNotNull {
        column: "v".into(),
        not_null: n,
    };
    let e = t.alter_table("kv", &not_null(true)).unwrap_err();
    assert!(e.to_string().contains("holds NULL"), "{e}");
    t.delete(id, &t.key_of(id, &[Value::BigInt(2)]).unwrap())
        .unwrap();
    t.alter_table("kv", &not_null(true)).unwrap();
    let e = t
        .insert(id, vec![Value::BigInt(3), Value::Null])
        .unwrap_err();
    assert!(matches!(e, StorageError::NotNull { .. }), "{e}");
    let e = t
        .alter_table(
            "kv",
            &TableChange::SetNotNull {
                column: "k".into(),
                not_null: false,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("primary key"), "{e}");
    t.alter_table(
        "kv",
        &TableChange::SetDefault {
            column: "v".into(),
            default: Some(Value::BigInt(99)),
            default_fn: None,
        },
    )
    .unwrap();
    t.alter_table("kv", &check("v > 0")).unwrap();
    t.alter_table(
        "kv",
        &TableChange::RenameColumn {
            from: "v".into(),
            to: "value2".into(),
        },
    )
    .unwrap();
    assert_eq!(
        t.table_id("kv").unwrap(),
        id,
        "the rows stay where they are"
    );
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    assert_eq!(def.columns[1].name, "value2");
    assert_eq!(def.columns[1].default, Some(Value::BigInt(99)));
    assert_eq!(def.checks[0].expr, "value2 > 0");
    t.commit().unwrap();
    drop(store);

    // reopened, the table is as the last committed change left it
    let (store, _) = open(dir.path());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    assert_eq!(def.columns[1].name, "value2");
    let e = t
        .insert(id, vec![Value::BigInt(4), Value::BigInt(-1)])
        .unwrap_err();
    assert!(matches!(e, StorageError::TableCheckViolation { .. }), "{e}");
    let e = t
        .insert(id, vec![Value::BigInt(4), Value::Null])
        .unwrap_err();
    assert!(matches!(e, StorageError::NotNull { .. }), "{e}");
    t.rollback().unwrap();
}

#[test]
fn an_undone_change_leaves_the_table_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table("kv", &check("v > 0")).unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    t.rollback().unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(t.table_id("kv").unwrap(), id);
    put(&mut t, id, 1, -1);
    t.savepoint("s").unwrap();
    t.alter_table("kv", &check("k > 5")).unwrap_err();
    t.alter_table("kv", &check("k < 5")).unwrap();
    t.rollback_to_savepoint("s").unwrap();
    put(&mut t, id, 9, -9);
    t.commit().unwrap();
}

#[test]
fn a_writer_whose_snapshot_predates_a_change_must_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut old = store.begin(TxnOptions::snapshot()).unwrap();
    let _ = old.catalog().unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table("kv", &check("v > 0")).unwrap();
    t.commit().unwrap();
    // and again when it retries in the same transaction
    for _ in 0..2 {
        let e = old
            .insert(id, vec![Value::BigInt(1), Value::BigInt(-1)])
            .unwrap_err();
        assert!(matches!(e, StorageError::TableAltered { .. }), "{e}");
    }
    old.rollback().unwrap();

    let mut old = store.begin(TxnOptions::snapshot()).unwrap();
    let _ = old.catalog().unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    t.commit().unwrap();
    let e = old
        .insert(id, vec![Value::BigInt(1), Value::BigInt(1)])
        .unwrap_err();
    assert!(matches!(e, StorageError::TableAltered { .. }), "{e}");
}

#[test]
fn rows_committed_after_the_alterers_snapshot_are_carried() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let _ = t.catalog().unwrap();
    let mut w = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut w, id, 1, 1);
    w.commit().unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    t.commit().unwrap();
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let id2 = t.table_id("kv").unwrap();
    assert_eq!(
        rows(&t, id2),
        vec![vec![Value::BigInt(1), Value::BigInt(1), Value::Null]]
    );
}

#[test]
fn a_rename_that_would_change_what_a_check_reads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table("kv", &check("v > 0")).unwrap();
    for to in ["null", "K", "1x"] {
        let r = t.alter_table(
            "kv",
            &TableChange::RenameColumn {
                from: "v".into(),
                to: to.into(),
            },
        );
        assert!(r.is_err(), "renaming v to {to} was allowed");
    }
    // a plain one is taken, and the CHECK follows it
    t.alter_table(
        "kv",
        &TableChange::RenameColumn {
            from: "v".into(),
            to: "w".into(),
        },
    )
    .unwrap();
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    assert_eq!(def.checks[0].expr, "w > 0");
}

#[test]
fn a_transaction_stamps_one_revision_on_the_tables_it_alters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table("kv", &check("v > 0")).unwrap();
    let first = t.catalog().unwrap().table_by_name("kv").unwrap().revision;
    assert!(first.is_some());
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    t.alter_table("kv", &check("v < 100")).unwrap();
    let def = t.catalog().unwrap().table_by_name("kv").unwrap().clone();
    assert_eq!(def.revision, first, "one transaction, one revision");
    t.commit().unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table("kv", &TableChange::DropCheck("kv_v_check".into()))
        .unwrap();
    let next = t.catalog().unwrap().table_by_name("kv").unwrap().revision;
    assert!(next.is_some() && next != first);
}

/// RENAME TO keeps the table's id and rows; an older snapshot still reads it
/// by its old name; an undone rename gives the old name back; the old name
/// is free for another table; both survive a reopen.
#[test]
fn a_renamed_table_keeps_its_rows_and_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (store, _) = open(dir.path());
        let id = create_kv(&store, "kv");
        create_kv(&store, "taken");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        for k in 0..50 {
            put(&mut t, id, k, k + 1);
        }
        t.commit().unwrap();
        let rename = |to: &str| TableChange::RenameTable { to: to.into() };
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        let e = t.alter_table("kv", &rename("taken")).unwrap_err();
        assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e}");
        t.alter_table("kv", &rename("kv2")).unwrap();
        t.rollback().unwrap();
        let before = store.begin(TxnOptions::snapshot()).unwrap();
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        assert_eq!(t.table_id("kv").unwrap(), id, "undone: the old name again");
        t.alter_table("kv", &rename("kv2")).unwrap();
        t.commit().unwrap();
        assert_eq!(before.table_id("kv").unwrap(), id);
        assert_eq!(rows(&before, id).len(), 50);
        drop(before);
        // the old name is free for another table
        assert_ne!(create_kv(&store, "kv"), id);
        id
    };
    let (store, _) = open(dir.path());
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(t.table_id("kv2").unwrap(), id);
    assert_ne!(t.table_id("kv").unwrap(), id);
    assert_eq!(rows(&t, id).len(), 50);
}
