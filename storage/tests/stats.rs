//! Column statistics on real fjall folders: what a bulk load counts, what the
//! sweep counts again, what a rollback, a reopen and ALTER TABLE keep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::{create_kv, open, put};
use scratchbird_storage::catalog::{ColumnSpec, TableChange};
use scratchbird_storage::{Storage, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};

/// `kv` rows `k` in `from..to` with `v = k % groups`, loaded in one bulk
/// load.
fn load(store: &Storage, table: TableId, from: i64, to: i64, groups: i64) {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.bulk_insert(
        table,
        (from..to).map(|k| vec![Value::BigInt(k), Value::BigInt(k % groups)]),
    )
    .unwrap();
    t.commit().unwrap();
}

fn distinct(store: &Storage, table: TableId, column: usize) -> Option<f64> {
    store.row_estimates().distinct(table, column)
}

/// Within a fifth of `want` (the sketch's error is about 6 %).
fn near(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() <= 0.2 * want)
}

#[test]
fn a_bulk_load_counts_its_columns_and_a_second_load_adds_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    assert_eq!(distinct(&store, id, 0), None, "nothing counted yet");
    load(&store, id, 0, 20_000, 37);
    let key = distinct(&store, id, 0);
    assert!(near(key, 20_000.0), "key: {key:?}");
    assert_eq!(distinct(&store, id, 1), Some(37.0), "few values: exact");

    // a second load above the first merges into the same sketches
    load(&store, id, 20_000, 50_000, 37);
    let key = distinct(&store, id, 0);
    assert!(near(key, 50_000.0), "key after two loads: {key:?}");
    assert_eq!(distinct(&store, id, 1), Some(37.0));

    // kept across a reopen
    drop(store);
    let (store, _) = open(dir.path());
    assert!(near(distinct(&store, id, 0), 50_000.0));
    assert_eq!(distinct(&store, id, 1), Some(37.0));
}

#[test]
fn a_rolled_back_load_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.bulk_insert(
        id,
        (0..5_000).map(|k| vec![Value::BigInt(k), Value::BigInt(k)]),
    )
    .unwrap();
    t.rollback().unwrap();
    assert_eq!(distinct(&store, id, 0), None);
}

#[test]
fn the_sweep_counts_rows_written_one_by_one_once_they_are_folded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 0..3_000 {
        put(&mut t, id, k, k % 5);
    }
    t.commit().unwrap();
    assert_eq!(distinct(&store, id, 1), None, "row writes are not counted");
    let report = store.sweep().unwrap();
    assert_eq!(report.stats_computed, 1, "{report:?}");
    assert!(near(distinct(&store, id, 0), 3_000.0));
    assert_eq!(distinct(&store, id, 1), Some(5.0));

    // a small change leaves them; a table that more than doubles is counted again
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 3_000..3_100 {
        put(&mut t, id, k, 5);
    }
    t.commit().unwrap();
    assert_eq!(store.sweep().unwrap().stats_computed, 0);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 3_100..8_000 {
        put(&mut t, id, k, k % 11);
    }
    t.commit().unwrap();
    assert_eq!(store.sweep().unwrap().stats_computed, 1);
    assert_eq!(distinct(&store, id, 1), Some(11.0));
    assert!(near(distinct(&store, id, 0), 8_000.0));
}

/// A key-like column's count grows with the table between countings; a
/// column of few values keeps its count.
#[test]
fn between_countings_key_like_columns_grow_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    load(&store, id, 0, 10_000, 4);
    let before = distinct(&store, id, 0).unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 10_000..11_000 {
        put(&mut t, id, k, 0);
    }
    t.commit().unwrap();
    let key = distinct(&store, id, 0).unwrap();
    assert!(
        (key / before - 1.1).abs() < 1e-9,
        "scaled with the rows held: {before} then {key}"
    );
    assert_eq!(distinct(&store, id, 1), Some(4.0));
}

#[test]
fn alter_table_keeps_the_counts_of_the_columns_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let id = create_kv(&store, "kv");
    load(&store, id, 0, 4_000, 9);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.alter_table(
        "kv",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    t.commit().unwrap();
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let new_id = t.table_id("kv").unwrap();
    drop(t);
    // the table is written anew under a new id: counted again by the sweep
    store.sweep().unwrap();
    assert_eq!(distinct(&store, new_id, 1), Some(9.0));
    assert_eq!(distinct(&store, new_id, 2), None, "all NULL: no value");
    // kept across a reopen
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(distinct(&store, new_id, 1), Some(9.0));
}
