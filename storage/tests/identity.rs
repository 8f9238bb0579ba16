//! SERIAL and identity columns' counters: values continue across a reopen
//! and an ALTER that writes the table anew, stop at the type's largest
//! value, and the shards of a cluster give disjoint values, each shard only
//! values it holds. (The crash test checks that a value is never given twice
//! across SIGKILLs.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use common::open;
use scratchbird_storage::catalog::{
    ColumnSpec, DefaultFn, DistributionSpec, TableChange, TableSpec,
};
use scratchbird_storage::{Storage, StorageError, TxnOptions};
use scratchbird_types::placement::shard_of;
use scratchbird_types::{SqlType, TableId, Value};
use std::collections::BTreeSet;

fn serial(name: &str, ty: SqlType) -> ColumnSpec {
    let mut c = ColumnSpec::new(name, ty);
    c.default_fn = Some(DefaultFn::Serial);
    c
}

/// `name (id <ty> SERIAL PRIMARY KEY, other BIGINT SERIAL, v TEXT)`,
/// distributed by `dist`.
fn create(store: &Storage, name: &str, ty: SqlType, dist: Option<DistributionSpec>) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            name: name.into(),
            columns: vec![
                serial("id", ty),
                serial("other", SqlType::BigInt),
                ColumnSpec::new("v", SqlType::Text),
            ],
            primary_key: vec!["id".into()],
            distribution: dist,
        })
        .unwrap();
    t.commit().unwrap();
    id
}

fn int(v: &Value) -> i64 {
    match v {
        Value::SmallInt(x) => i64::from(*x),
        Value::Integer(x) => i64::from(*x),
        Value::BigInt(x) => *x,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Inserts `n` rows leaving both counters' columns out; their values.
fn insert(store: &Storage, table: TableId, n: usize) -> Vec<(i64, i64)> {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for i in 0..n {
        t.insert_columns(table, &[2], vec![Value::Text(format!("r{i}"))])
            .unwrap();
    }
    let rows = common::rows(&t, table);
    t.commit().unwrap();
    rows.iter().map(|r| (int(&r[0]), int(&r[1]))).collect()
}

#[test]
fn values_continue_past_a_reopen_with_a_gap_of_at_most_one_block() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let t = create(&store, "s", SqlType::Integer, None);
    let first = insert(&store, t, 5);
    assert_eq!(
        first.iter().map(|r| r.0).collect::<BTreeSet<_>>(),
        (1..=5).collect()
    );
    // a rolled-back draw is not given back
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(int(&tx.next_identity(t, 0).unwrap()), 6);
    tx.rollback().unwrap();
    drop(store);
    let (store, _) = open(dir.path());
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    let next = int(&tx.next_identity(t, 0).unwrap());
    assert!(
        next > 6 && next <= 6 + 1_024 + 1,
        "after a reopen the counter gave {next}"
    );
    // a column that is not SERIAL draws nothing
    assert!(matches!(
        tx.next_identity(t, 2),
        Err(StorageError::InvalidDefinition { .. })
    ));
}

#[test]
fn a_table_written_anew_by_alter_keeps_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let t = create(&store, "s", SqlType::BigInt, None);
    insert(&store, t, 3);
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    tx.alter_table(
        "s",
        &TableChange::AddColumn(ColumnSpec::new("w", SqlType::Integer)),
    )
    .unwrap();
    tx.commit().unwrap();
    let tx = store.begin(TxnOptions::snapshot()).unwrap();
    let t = tx.catalog().unwrap().table_by_name("s").unwrap().id;
    drop(tx);
    let rows = insert(&store, t, 1);
    assert!(rows.iter().any(|r| r.0 == 4), "{rows:?}");
    // a SERIAL column is added only to a table without rows
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    let e = tx
        .alter_table(
            "s",
            &TableChange::AddColumn(serial("late", SqlType::BigInt)),
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::ExistingRows { .. }), "{e}");
}

#[test]
fn a_counter_stops_at_its_types_largest_value() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let t = create(&store, "s", SqlType::SmallInt, None);
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    for want in 1..=i64::from(i16::MAX) {
        assert_eq!(int(&tx.next_identity(t, 0).unwrap()), want);
    }
    let e = tx.next_identity(t, 0).unwrap_err();
    assert!(
        matches!(e, StorageError::IdentityExhausted { .. }) && e.to_string().contains("32767"),
        "{e}"
    );
    // and keeps saying so
    assert!(matches!(
        tx.next_identity(t, 0),
        Err(StorageError::IdentityExhausted { .. })
    ));
}

#[test]
fn shards_give_disjoint_values_each_placing_its_own_rows() {
    const SHARDS: u32 = 3;
    let dirs: Vec<_> = (0..SHARDS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut by_key = BTreeSet::new();
    let mut by_other = BTreeSet::new();
    for (i, dir) in (0..SHARDS).zip(&dirs) {
        let (store, _) = open(dir.path());
        store.set_placement(i, SHARDS);
        // the same table on every shard
        let t = create(
            &store,
            "s",
            SqlType::BigInt,
            Some(DistributionSpec::Hash("id".into())),
        );
        let tx = store.begin(TxnOptions::snapshot()).unwrap();
        let def = tx.catalog().unwrap().table(t).unwrap().clone();
        drop(tx);
        let placing = def.placement().into_owned();
        for (id, other) in insert(&store, t, 200) {
            // the placing column's values place on this shard (storage
            // would refuse the row otherwise), the other's are this
            // shard's residue
            let at = shard_of(
                &placing,
                &SqlType::BigInt,
                &Value::BigInt(id),
                SHARDS as usize,
            );
            assert_eq!(at.unwrap(), i as usize, "id {id}");
            assert_eq!((other - 1).rem_euclid(i64::from(SHARDS)), i64::from(i));
            assert!(by_key.insert(id), "id {id} given by two shards");
            assert!(by_other.insert(other), "other {other} given by two shards");
        }
    }
    // hash placement spreads consecutive values: the shards together used
    // the first values with few gaps
    assert_eq!(by_key.len(), 600);
    let max = *by_key.iter().next_back().unwrap();
    assert!(max < 1_000, "largest id {max}");
}

#[test]
fn a_counter_refuses_to_give_values_under_another_shard_map() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.set_placement(0, 3);
    let t = create(&store, "s", SqlType::BigInt, None);
    insert(&store, t, 3);
    drop(store);
    // reopened as the second of two shards: the values it gave as the first
    // of three may be the other shard's to give now
    let (store, _) = open(dir.path());
    store.set_placement(1, 2);
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    let e = tx.next_identity(t, 0).unwrap_err();
    assert!(
        matches!(e, StorageError::IdentityExhausted { .. })
            && e.to_string().contains("shard 0 of 3")
            && e.to_string().contains("shard 1 of 2"),
        "{e}"
    );
    drop(tx);
    // under the map it gave them under, it goes on
    store.set_placement(0, 3);
    let mut tx = store.begin(TxnOptions::snapshot()).unwrap();
    tx.next_identity(t, 0).unwrap();
    // a read-only transaction draws nothing
    let mut ro = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    assert!(ro.next_identity(t, 0).is_err());
}

/// A column with sequence options gives its sequence's values: by its step,
/// down as well as up, past a reopen (a gap of at most one block of steps),
/// until its bound; on several shards, disjoint values each of the sequence.
#[test]
fn options_give_the_sequences_values_on_one_store_and_on_shards() {
    use scratchbird_storage::catalog::SeqOptions;
    let down = SeqOptions {
        start: -10,
        increment: -7,
        min: -5_000,
        max: -10,
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let mut col = serial("id", SqlType::Integer);
    col.seq = Some(down);
    let table = t
        .create_table(&TableSpec {
            name: "d".into(),
            columns: vec![col, ColumnSpec::new("v", SqlType::Text)],
            primary_key: vec!["id".into()],
            distribution: None,
        })
        .unwrap();
    for want in [-10, -17, -24] {
        assert_eq!(int(&t.next_identity(table, 0).unwrap()), want);
    }
    t.commit().unwrap();
    drop(store);
    let (store, _) = open(dir.path());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let next = int(&t.next_identity(table, 0).unwrap());
    assert!(
        next < -24 && (next + 10) % 7 == 0 && next >= -24 - 7 * (713 / 16 + 1),
        "after a reopen the counter gave {next}"
    );
    // (713 values in all: a short sequence reserves a sixteenth at a time)
    // the sequence ends at MINVALUE: its last value is the last step above it
    let mut last = next;
    let e = loop {
        match t.next_identity(table, 0) {
            Ok(v) => {
                let v = int(&v);
                assert_eq!(v, last - 7);
                last = v;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(last, -10 - 7 * ((5_000 - 10) / 7));
    assert!(
        matches!(e, StorageError::IdentityExhausted { .. })
            && e.to_string().contains("MINVALUE, -5000"),
        "{e}"
    );
    drop(t);
    drop(store);

    // on three shards, a step of 5 from 100 on a column that does not place
    const SHARDS: u32 = 3;
    let up = SeqOptions {
        start: 100,
        increment: 5,
        min: 1,
        max: i64::MAX,
    };
    let mut given = BTreeSet::new();
    let dirs: Vec<_> = (0..SHARDS).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, dir) in (0..SHARDS).zip(&dirs) {
        let (store, _) = open(dir.path());
        store.set_placement(i, SHARDS);
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        let mut other = serial("other", SqlType::BigInt);
        other.seq = Some(up);
        let table = t
            .create_table(&TableSpec {
                name: "u".into(),
                columns: vec![ColumnSpec::new("k", SqlType::BigInt).not_null(), other],
                primary_key: vec!["k".into()],
                distribution: Some(DistributionSpec::Hash("k".into())),
            })
            .unwrap();
        for _ in 0..50 {
            let v = int(&t.next_identity(table, 1).unwrap());
            assert_eq!((v - 100) % 5, 0, "{v} is not the sequence's");
            assert_eq!(((v - 100) / 5).rem_euclid(i64::from(SHARDS)), i64::from(i));
            assert!(given.insert(v), "{v} given by two shards");
        }
        t.rollback().unwrap();
    }
    assert_eq!(given.len(), 150);
}
