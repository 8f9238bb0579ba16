//! Sweep and time travel, corruption, bulk load, indexes, limbo, fsync failure, DDL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use scratchbird_storage::catalog::{ColumnSpec, DomainSpec, IndexSpec, TableSpec};
use scratchbird_storage::scan::{ScanRange, ScanSpec};
use scratchbird_storage::{AsOf, Faults, ManualEnv, Storage, StorageError, TxnOptions, TxnState};
use scratchbird_types::batch::BatchView;
use scratchbird_types::{CommitNumber, Decimal, SqlType, TableId, Value};
use std::ops::Bound;
use std::sync::Arc;

const SECOND: i64 = 1_000_000;

fn open_with_retention(dir: &std::path::Path, retention: i64) -> (Storage, Arc<ManualEnv>) {
    let env = Arc::new(ManualEnv::new(T0, 3));
    let mut c = config(env.clone());
    c.retention_micros = retention;
    (Storage::open(dir, c).unwrap(), env)
}

#[test]
fn sweep_reclaims_space_keeps_visible_data_and_time_travel_is_exact_inside_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (store, env) = open_with_retention(dir.path(), 60 * SECOND);
    let table = create_kv(&store, "kv");
    // Generation 0: 20,000 rows.
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 0..20_000 {
        put(&mut t, table, k, 0);
    }
    let c0 = t.commit().unwrap().commit.unwrap();
    store.sweep().unwrap();
    // Generations 1..=5, ten seconds apart: every row rewritten, half deleted at the end.
    let mut states = vec![(
        c0,
        kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table),
    )];
    for g in 1..=5i64 {
        env.advance_micros(10 * SECOND);
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        for k in 0..20_000 {
            let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
            if g == 5 && k % 2 == 0 {
                t.delete(table, &key).unwrap();
            } else {
                t.update(table, &key, vec![Value::BigInt(k), Value::BigInt(g)])
                    .unwrap();
            }
        }
        let c = t.commit().unwrap().commit.unwrap();
        states.push((
            c,
            kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table),
        ));
    }
    let versions_before = store.stats().delta_versions;
    store.sweep().unwrap();
    // Every generation is inside the 60 s window: each reads back exactly.
    for (c, rows) in &states {
        let tt = store
            .begin(TxnOptions::snapshot().as_of(AsOf::Commit(*c)))
            .unwrap();
        assert_eq!(&kv_rows(&tt, table), rows, "AS OF {c}");
    }
    // By timestamp too: 15 s after generation 0 is generation 1.
    let tt = store
        .begin(TxnOptions::snapshot().as_of(AsOf::Timestamp(T0 + 15 * SECOND)))
        .unwrap();
    assert_eq!(kv_rows(&tt, table), states[1].1);
    drop(tt);
    assert!(
        store.stats().delta_versions >= versions_before / 2,
        "history inside the window is kept"
    );

    // Move past the window: history goes, space comes back, the present is untouched.
    env.advance_micros(120 * SECOND);
    let disk_before = {
        store.compact().unwrap();
        store.stats().disk_bytes
    };
    let report = store.sweep().unwrap();
    assert!(report.versions_removed > 0, "{report:?}");
    store.compact().unwrap();
    let stats = store.stats();
    assert_eq!(
        stats.delta_versions, 0,
        "everything settled was folded: {stats:?}"
    );
    assert!(
        stats.disk_bytes < disk_before,
        "space reclaimed: {} -> {}",
        disk_before,
        stats.disk_bytes
    );
    let now = kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table);
    assert_eq!(now, states[5].1);
    assert_eq!(now.len(), 10_000);
    // Outside the window: a clear error naming what can be read.
    let err = store
        .begin(TxnOptions::snapshot().as_of(AsOf::Commit(states[1].0)))
        .unwrap_err();
    assert!(
        matches!(err, StorageError::OutsideRetention { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("retention window"), "{err}");
    let err = store
        .begin(TxnOptions::snapshot().as_of(AsOf::Timestamp(T0)))
        .unwrap_err();
    assert!(
        matches!(err, StorageError::OutsideRetention { .. }),
        "{err}"
    );
    // The newest commit is still readable by number.
    let tt = store
        .begin(TxnOptions::snapshot().as_of(AsOf::Commit(states[5].0)))
        .unwrap();
    assert_eq!(kv_rows(&tt, table), states[5].1);
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn time_travel_floor_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c1;
    {
        let (store, env) = open_with_retention(dir.path(), SECOND);
        let table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, 1, 1);
        c1 = t.commit().unwrap().commit.unwrap();
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        let k = t.key_of(table, &[Value::BigInt(1)]).unwrap();
        t.update(table, &k, vec![Value::BigInt(1), Value::BigInt(2)])
            .unwrap();
        t.commit().unwrap();
        env.advance_micros(10 * SECOND);
        store.sweep().unwrap();
        store.close().unwrap();
    }
    let (store, _) = open_with_retention(dir.path(), SECOND);
    let err = store
        .begin(TxnOptions::snapshot().as_of(AsOf::Commit(c1)))
        .unwrap_err();
    assert!(
        matches!(err, StorageError::OutsideRetention { .. }),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_in_a_stored_value_is_detected_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let table;
    {
        let (store, _) = open(dir.path());
        table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        for k in 0..2000 {
            put(&mut t, table, k, k * 3);
        }
        t.commit().unwrap();
        store.sweep().unwrap();
        store.close().unwrap();
    }
    // Flip one byte inside a stored page, through the key-value store itself.
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let pages = db
            .keyspace("pages", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let sys = scratchbird_storage::catalog::system_table_id();
        let (k, v) = pages
            .iter()
            .map(|kv| kv.into_inner().unwrap())
            .find(|(k, _)| !k.starts_with(sys.as_bytes()))
            .unwrap();
        let mut bad = v.to_vec();
        let at = bad.len() / 2;
        bad[at] ^= 0x40;
        pages.insert(k, bad).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let (store, _) = open(dir.path());
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let err = scratchbird_storage::scan::collect_rows(&t, table).unwrap_err();
    assert!(
        matches!(err, StorageError::Corruption { what: "page", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let err = t.get(table, &[Value::BigInt(5)]).unwrap_err();
    assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
    assert!(matches!(
        store.check(),
        Err(StorageError::Corruption { .. })
    ));
}

#[test]
fn a_flipped_byte_in_a_record_version_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        let table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, 1, 1);
        t.commit().unwrap();
        store.close().unwrap();
    }
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let delta = db
            .keyspace("delta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let (k, v) = delta.iter().last().unwrap().into_inner().unwrap();
        let mut bad = v.to_vec();
        bad[0] ^= 1;
        delta.insert(k, bad).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let env = Arc::new(ManualEnv::new(T0, 1));
    let err = Storage::open(dir.path(), config(env)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Corruption {
                what: "record version",
                ..
            }
        ),
        "{err}"
    );
}

fn lineitem(store: &Storage) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let dec = SqlType::Decimal {
        precision: 15,
        scale: 2,
    };
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "lineitem".into(),
            columns: vec![
                ColumnSpec::new("tenant_id", SqlType::Integer).not_null(),
                ColumnSpec::new("quantity", dec),
                ColumnSpec::new("extendedprice", dec),
                ColumnSpec::new("returnflag", SqlType::Varchar { max_chars: 1 }),
                ColumnSpec::new("shipdate", SqlType::Date),
            ],
            primary_key: vec![],
        })
        .unwrap();
    t.commit().unwrap();
    id
}

fn line(i: i64) -> Vec<Value> {
    vec![
        Value::Integer(i32::try_from(i % 10).unwrap()),
        Value::Decimal(Decimal::new(i128::from(i % 50 + 1) * 100, 2)),
        if i % 13 == 0 {
            Value::Null
        } else {
            Value::Decimal(Decimal::new(i128::from(i) * 7, 2))
        },
        Value::Text(["A", "N", "R"][usize::try_from(i % 3).unwrap()].into()),
        Value::Date(scratchbird_types::Date(
            i32::try_from(9000 + i % 2000).unwrap(),
        )),
    ]
}

#[test]
fn bulk_load_is_invisible_until_commit_and_gone_after_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = lineitem(&store);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    assert_eq!(t.bulk_insert(table, (0..30_000).map(line)).unwrap(), 30_000);
    let other = store.begin(TxnOptions::snapshot()).unwrap();
    assert!(
        rows(&other, table).is_empty(),
        "uncommitted pages are invisible"
    );
    assert_eq!(
        rows(&t, table).len(),
        30_000,
        "the loader sees its own pages"
    );
    t.rollback().unwrap();
    assert!(rows(&store.begin(TxnOptions::snapshot()).unwrap(), table).is_empty());
    assert_eq!(store.stats().pages, 0);

    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.bulk_insert(table, (0..30_000).map(line)).unwrap();
    let c = t.commit().unwrap().commit.unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    let got = rows(&r, table);
    assert_eq!(got.len(), 30_000);
    assert_eq!(got[26], line(26));
    assert_eq!(got[29_999], line(29_999));
    // The commit log expands the bulk pages into inserts.
    let entry = store.commit_log(c).unwrap().next().unwrap().unwrap();
    assert_eq!(entry.changes.len(), 30_000);
    assert_eq!(entry.changes[7].row.as_ref().unwrap(), &line(7));
    // A NOT NULL violation anywhere in a load leaves nothing of it.
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let mut bad: Vec<Vec<Value>> = (0..10_000).map(line).collect();
    bad[9_000][0] = Value::Null;
    let err = t.bulk_insert(table, bad).unwrap_err();
    assert!(matches!(err, StorageError::NotNull { .. }), "{err}");
    assert_eq!(rows(&t, table).len(), 30_000);
}

#[test]
fn scans_return_columnar_batches_with_projection_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.bulk_insert(
        table,
        (0..10_000).map(|k| vec![Value::BigInt(k), Value::BigInt(k * 2)]),
    )
    .unwrap();
    // Some rows changed after the load, so batches mix pages and chains.
    for k in (0..10_000).step_by(97) {
        let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
        t.update(table, &key, vec![Value::BigInt(k), Value::BigInt(-1)])
            .unwrap();
    }
    t.commit().unwrap();
    let r = store.begin(TxnOptions::snapshot()).unwrap();
    let spec = ScanSpec {
        table,
        columns: vec![1],
        range: ScanRange::Key {
            lower: Bound::Included(vec![Value::BigInt(1_000)]),
            upper: Bound::Excluded(vec![Value::BigInt(3_000)]),
        },
    };
    let mut scan = r.scan(spec).unwrap();
    let layout = scan.layout(512, 0).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut keys = Vec::new();
    let mut seen = 0i64;
    loop {
        let n = scan
            .next_batch_with_keys(&layout, &mut buf, &mut keys)
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 512);
        assert_eq!(keys.len(), n);
        let view = BatchView::new(&layout, &buf).unwrap();
        for row in 0..n {
            let k = 1_000 + seen;
            let want = if k % 97 == 0 { -1 } else { k * 2 };
            assert_eq!(view.value(0, row).unwrap(), Value::BigInt(want));
            seen += 1;
        }
    }
    assert_eq!(seen, 2_000);
}

/// Table `kv` of 3,000 rows (`v` = `k % 37`) with index `kv_v` on `v`,
/// committed.
fn kv_indexed_by_v(dir: &std::path::Path) -> (Storage, TableId) {
    let (store, _) = open(dir);
    let table = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in 0..3_000 {
        put(&mut t, table, k, k % 37);
    }
    t.create_index(&IndexSpec {
        name: "kv_v".into(),
        table: "kv".into(),
        columns: vec!["v".into()],
        unique: false,
        plain: true,
    })
    .unwrap();
    t.commit().unwrap();
    (store, table)
}

#[test]
fn index_scans_and_table_scans_always_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (store, table) = kv_indexed_by_v(dir.path());
    let old = store.begin(TxnOptions::snapshot()).unwrap();
    let mut w = store.begin(TxnOptions::snapshot()).unwrap();
    for k in (0..3_000).step_by(5) {
        let key = w.key_of(table, &[Value::BigInt(k)]).unwrap();
        if k % 2 == 0 {
            w.update(
                table,
                &key,
                vec![Value::BigInt(k), Value::BigInt((k + 11) % 37)],
            )
            .unwrap();
        } else {
            w.delete(table, &key).unwrap();
        }
    }
    w.commit().unwrap();
    store.sweep().unwrap();
    let new = store.begin(TxnOptions::snapshot()).unwrap();
    let idx = new.catalog().unwrap().index_by_name("kv_v").unwrap().id;
    for reader in [&old, &new] {
        let table_rows = kv_rows(reader, table);
        for v in [0i64, 5, 11, 36] {
            let mut by_scan: Vec<i64> = table_rows
                .iter()
                .filter(|(_, x)| *x == v)
                .map(|(k, _)| *k)
                .collect();
            let mut by_index: Vec<i64> = reader
                .lookup(idx, &[Value::BigInt(v)])
                .unwrap()
                .into_iter()
                .map(|(_, r)| match r[0] {
                    Value::BigInt(k) => k,
                    _ => panic!(),
                })
                .collect();
            by_scan.sort_unstable();
            by_index.sort_unstable();
            assert_eq!(by_index, by_scan, "value {v}");
        }
        // An index range scan returns exactly the rows with v in [10, 20).
        let mut scan = reader
            .scan(ScanSpec {
                table,
                columns: vec![0, 1],
                range: ScanRange::Index {
                    index: idx,
                    lower: Bound::Included(vec![Value::BigInt(10)]),
                    upper: Bound::Excluded(vec![Value::BigInt(20)]),
                },
            })
            .unwrap();
        let layout = scan.layout(256, 0).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut got = Vec::new();
        loop {
            let n = scan.next_batch(&layout, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            let view = BatchView::new(&layout, &buf).unwrap();
            for r in 0..n {
                got.push((view.value(0, r).unwrap(), view.value(1, r).unwrap()));
            }
        }
        let mut want: Vec<(Value, Value)> = table_rows
            .iter()
            .filter(|(_, v)| (10..20).contains(v))
            .map(|(k, v)| (Value::BigInt(*k), Value::BigInt(*v)))
            .collect();
        let key = |p: &(Value, Value)| match p {
            (Value::BigInt(k), Value::BigInt(v)) => (*v, *k),
            _ => panic!(),
        };
        want.sort_by_key(key);
        assert_eq!(got, want, "index order is (value, key)");
        // Points of the index and of the primary key (given out of order and
        // twice, one with no row) return exactly the rows a filtered table
        // scan does, across batch boundaries (8 rows a batch).
        let read = |range: ScanRange| {
            let mut scan = reader
                .scan(ScanSpec {
                    table,
                    columns: vec![0, 1],
                    range,
                })
                .unwrap();
            let layout = scan.layout(8, 0).unwrap();
            let mut buf = vec![0u8; layout.total_bytes()];
            let mut got = Vec::new();
            loop {
                let n = scan.next_batch(&layout, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                let view = BatchView::new(&layout, &buf).unwrap();
                for r in 0..n {
                    match (view.value(0, r).unwrap(), view.value(1, r).unwrap()) {
                        (Value::BigInt(k), Value::BigInt(v)) => got.push((k, v)),
                        other => panic!("{other:?}"),
                    }
                }
            }
            got
        };
        let values = [36i64, 5, 11, 5, 0, 99];
        let got = read(ScanRange::Points {
            index: Some(idx),
            points: values.iter().map(|v| vec![Value::BigInt(*v)]).collect(),
        });
        let mut want: Vec<(i64, i64)> = table_rows
            .iter()
            .filter(|(_, v)| values.contains(v))
            .copied()
            .collect();
        want.sort_by_key(|(k, v)| (*v, *k));
        assert_eq!(got, want, "index points come in index order");
        let keys = [2_999i64, 5, 7, 0, 7, 5_000, 1_234];
        let got = read(ScanRange::Points {
            index: None,
            points: keys.iter().map(|k| vec![Value::BigInt(*k)]).collect(),
        });
        let mut want: Vec<(i64, i64)> = table_rows
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .copied()
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "key points come in key order");
        assert!(
            read(ScanRange::Points {
                index: None,
                points: Vec::new()
            })
            .is_empty()
        );
    }
    assert!(store.check().unwrap().problems.is_empty());
}

#[test]
fn limbo_survives_a_restart_blocks_writers_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (table, limbo_txn);
    {
        let (store, _) = open(dir.path());
        table = create_kv(&store, "kv");
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, 1, 1);
        limbo_txn = t.prepare().unwrap();
        store.close().unwrap();
    }
    let (store, _) = open(dir.path());
    assert_eq!(store.limbo_transactions(), vec![limbo_txn]);
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let err = w
        .insert(table, vec![Value::BigInt(1), Value::BigInt(2)])
        .unwrap_err();
    assert!(matches!(err, StorageError::LockConflict { .. }), "{err}");
    w.rollback().unwrap();
    assert!(kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table).is_empty());
    let cn = store.resolve_limbo(limbo_txn, true).unwrap().unwrap();
    assert_eq!(
        kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table),
        vec![(1, 1)]
    );
    // The commit log has its change, after the restart and the resolution.
    let entry = store.commit_log(cn).unwrap().next().unwrap().unwrap();
    assert_eq!(entry.txn, limbo_txn);
    assert_eq!(entry.changes.len(), 1);
    assert_eq!(
        entry.changes[0].row,
        Some(vec![Value::BigInt(1), Value::BigInt(1)])
    );
    assert!(matches!(
        store.transaction_state(limbo_txn),
        TxnState::Committed(_)
    ));
    assert!(store.resolve_limbo(limbo_txn, false).is_err());
}

#[test]
fn a_failed_fsync_makes_the_store_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let env = Arc::new(ManualEnv::new(T0, 1));
    let faults = Arc::new(Faults::default());
    let mut c = config(env);
    c.faults = Some(faults.clone());
    let store = Storage::open(dir.path(), c).unwrap();
    let table = create_kv(&store, "kv");
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut t, table, 1, 1);
    faults.fail_next_fsync();
    let err = t.commit().unwrap_err();
    assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("outcome of commits in flight is unknown"),
        "{err}"
    );
    // Never retried silently: every later write is refused, reads still work.
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    assert!(matches!(
        t.insert(table, vec![Value::BigInt(2), Value::BigInt(2)]),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(matches!(store.sweep(), Err(StorageError::Poisoned { .. })));
    assert!(t.get(table, &[Value::BigInt(1)]).is_ok());
}

#[test]
fn ddl_is_transactional_and_dropped_tables_are_removed_by_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.create_domain(&DomainSpec {
        name: "money".into(),
        base: SqlType::Decimal {
            precision: 12,
            scale: 2,
        },
        not_null: true,
        default: Some(Value::Decimal(Decimal::new(0, 2))),
        check: Some("VALUE >= 0".into()),
    })
    .unwrap();
    let acc = t
        .create_table(&TableSpec {
            distribution: None,
            name: "acc".into(),
            columns: vec![
                ColumnSpec::new("id", SqlType::Integer),
                ColumnSpec::of_domain("bal", "money"),
            ],
            primary_key: vec!["id".into()],
        })
        .unwrap();
    t.insert_columns(acc, &[0], vec![Value::Integer(1)])
        .unwrap();
    assert_eq!(
        t.get(acc, &[Value::Integer(1)]).unwrap().unwrap()[1],
        Value::Decimal(Decimal::new(0, 2)),
        "the domain default applies"
    );
    let other = store.begin(TxnOptions::snapshot()).unwrap();
    assert!(
        other.catalog().unwrap().table_by_name("acc").is_none(),
        "uncommitted DDL is invisible"
    );
    let err = t
        .insert(acc, vec![Value::Integer(2), Value::Null])
        .unwrap_err();
    assert!(
        matches!(err, StorageError::NotNull { .. }),
        "the domain's NOT NULL applies: {err}"
    );
    t.commit().unwrap();
    drop(other);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let err = t.drop_domain("money").unwrap_err();
    assert!(matches!(err, StorageError::ObjectInUse { .. }), "{err}");
    let err = t
        .create_table(&TableSpec {
            distribution: None,
            name: "acc".into(),
            columns: vec![ColumnSpec::new("x", SqlType::Integer)],
            primary_key: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    t.rollback().unwrap();

    let reader = store.begin(TxnOptions::snapshot()).unwrap();
    let mut d = store.begin(TxnOptions::snapshot()).unwrap();
    d.drop_table("acc").unwrap();
    d.commit().unwrap();
    // The old snapshot still reads the table; the sweep keeps it for that reader.
    store.sweep().unwrap();
    assert_eq!(rows(&reader, acc).len(), 1);
    drop(reader);
    let report = store.sweep().unwrap();
    assert_eq!(report.tables_removed, 1, "{report:?}");
    let now = store.begin(TxnOptions::snapshot()).unwrap();
    assert!(matches!(
        now.get(acc, &[Value::Integer(1)]),
        Err(StorageError::NotFound { .. })
    ));
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.drop_domain("money").unwrap();
    t.commit().unwrap();
    assert!(store.check().unwrap().problems.is_empty());
    let _ = CommitNumber(0);
}

#[test]
fn concurrent_ddl_of_one_name_admits_one_and_writers_block_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let spec = TableSpec {
        distribution: None,
        name: "t".into(),
        columns: vec![ColumnSpec::new("x", SqlType::Integer)],
        primary_key: vec![],
    };
    let mut a = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let mut b = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    a.create_table(&spec).unwrap();
    let err = b.create_table(&spec).unwrap_err();
    assert!(matches!(err, StorageError::LockConflict { .. }), "{err}");
    let id = a.commit().unwrap();
    let _ = id;
    let mut w = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let tid = w.table_id("t").unwrap();
    w.insert(tid, vec![Value::Integer(1)]).unwrap();
    let mut dropper = store.begin(TxnOptions::snapshot().no_wait()).unwrap();
    let err = dropper.drop_table("t").unwrap_err();
    assert!(matches!(err, StorageError::ObjectInUse { .. }), "{err}");
    w.commit().unwrap();
    dropper.drop_table("t").unwrap();
    dropper.commit().unwrap();
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = Arc::new(ManualEnv::new(T0, 1));
    let mut c = config(env);
    c.active_transactions_max = 3;
    c.transaction_versions_max = 10;
    let store = Storage::open(dir.path(), c).unwrap();
    let table = create_kv(&store, "kv");
    let _a = store.begin(TxnOptions::snapshot()).unwrap();
    let _b = store.begin(TxnOptions::snapshot()).unwrap();
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let err = store.begin(TxnOptions::snapshot()).unwrap_err();
    assert!(err.to_string().contains("active_transactions_max"), "{err}");
    for k in 0..10 {
        put(&mut t, table, k, k);
    }
    let err = t
        .insert(table, vec![Value::BigInt(99), Value::BigInt(0)])
        .unwrap_err();
    assert!(
        err.to_string().contains("transaction_versions_max"),
        "{err}"
    );
    let mut big = store.begin(TxnOptions::snapshot());
    assert!(big.is_err());
    drop(_a);
    big = store.begin(TxnOptions::snapshot());
    let mut big = big.unwrap();
    let text = store_text_table(&mut big);
    let err = big
        .insert(text, vec![Value::Text("x".repeat(5_000))])
        .unwrap_err();
    assert!(err.to_string().contains("KEY_MAX_BYTES"), "{err}");
}

fn store_text_table(t: &mut scratchbird_storage::Transaction) -> TableId {
    t.create_table(&TableSpec {
        distribution: None,
        name: "texts".into(),
        columns: vec![ColumnSpec::new("s", SqlType::Text)],
        primary_key: vec!["s".into()],
    })
    .unwrap()
}

/// COPY's write path: rows above every key go into pages (in key order,
/// whatever order they came in), the rest row by row; the same checks either
/// way, and the table's lock taken only when it is free.
#[test]
fn insert_many_appends_in_pages_when_it_can_and_row_by_row_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let table = create_kv(&store, "kv");
    let kv = |k: i64| vec![Value::BigInt(k), Value::BigInt(k * 10)];
    // out of order within the rows: sorted, then written as pages
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let mut first: Vec<Vec<Value>> = (0..2_000).rev().map(kv).collect();
    first.swap(3, 1_500);
    assert_eq!(t.insert_many(table, first).unwrap(), 2_000);
    t.commit().unwrap();
    let pages = store.stats().pages;
    assert!(pages > 0, "an append goes into pages");
    // some keys below the table's last one: those row by row, the rest pages
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let mixed: Vec<Vec<Value>> = (3_000..5_000).chain([-5, -4]).map(kv).collect();
    assert_eq!(t.insert_many(table, mixed).unwrap(), 2_002);
    t.commit().unwrap();
    assert!(store.stats().pages > pages);
    let got = kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table);
    assert_eq!(got.len(), 4_002);
    // a key given twice, or one the table has, is refused and nothing stays
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let twice: Vec<Vec<Value>> = (6_000..7_000).chain([6_500]).map(kv).collect();
    let e = t.insert_many(table, twice).unwrap_err();
    assert!(matches!(e, StorageError::PrimaryKeyViolation { .. }), "{e}");
    let again: Vec<Vec<Value>> = (7_000..8_000).chain([4_000]).map(kv).collect();
    let e = t.insert_many(table, again).unwrap_err();
    assert!(matches!(e, StorageError::PrimaryKeyViolation { .. }), "{e}");
    assert_eq!(kv_rows(&t, table).len(), 4_002);
    t.rollback().unwrap();
    // another transaction writing the table: the rows go in row by row, and
    // neither waits for the other
    let mut w = store.begin(TxnOptions::snapshot()).unwrap();
    put(&mut w, table, 100_000, 1);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let pages = store.stats().pages;
    assert_eq!(
        t.insert_many(table, (9_000..10_000).map(kv).collect())
            .unwrap(),
        1_000
    );
    assert_eq!(store.stats().pages, pages, "no page while another writes");
    t.commit().unwrap();
    w.commit().unwrap();
    assert_eq!(
        kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table).len(),
        5_003
    );
}

/// A sweep may run while a transaction rolls back: it removes the versions
/// the rollback has not undone yet (the transaction reads as rolled back) and
/// may move the inventory floor past the transaction, below which every
/// transaction reads as committed. The rollback must still end cleanly (it
/// once failed "undo of a version that is gone"), and none of its rows may
/// become visible.
#[test]
fn a_rollback_racing_the_sweep_ends_cleanly_and_shows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _env) = open(dir.path());
    let store = Arc::new(store);
    let table = create_kv(&store, "kv");
    let rounds: i64 = std::env::var("SB_SWEEP_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut sweeps = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                store.sweep().unwrap();
                sweeps += 1;
            }
            sweeps
        })
    };
    for round in 0..rounds {
        // one committed row a round moves the horizon, so the floor can move
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        put(&mut t, table, round, round);
        t.commit().unwrap();
        let mut t = store.begin(TxnOptions::snapshot()).unwrap();
        for k in 0..2_000 {
            put(&mut t, table, 1_000_000 + round * 10_000 + k, -1);
        }
        t.rollback()
            .unwrap_or_else(|e| panic!("round {round}: the rollback failed: {e}"));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let sweeps = sweeper.join().unwrap();
    assert!(sweeps > 0);
    store.sweep().unwrap();
    let seen = kv_rows(&store.begin(TxnOptions::snapshot()).unwrap(), table);
    let want: Vec<(i64, i64)> = (0..rounds).map(|r| (r, r)).collect();
    assert_eq!(seen, want, "rows of rolled-back transactions are visible");
}

/// An index read takes a page row without versions above it as the entry's
/// row without comparing their keys: that holds only while folding, pruning
/// and undo remove every entry no remaining version carries. Rows updated
/// (their indexed value changed), deleted, updated and rolled back, then
/// folded into pages, must read by index exactly as a table scan reads them.
#[test]
fn index_reads_agree_with_the_table_once_changes_are_folded_into_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, table) = kv_indexed_by_v(dir.path());
    store.sweep().unwrap();
    let mut w = store.begin(TxnOptions::snapshot()).unwrap();
    for k in (0..3_000).step_by(3) {
        let key = w.key_of(table, &[Value::BigInt(k)]).unwrap();
        if k % 2 == 0 {
            w.update(
                table,
                &key,
                vec![Value::BigInt(k), Value::BigInt((k + 5) % 37)],
            )
            .unwrap();
        } else {
            w.delete(table, &key).unwrap();
        }
    }
    w.commit().unwrap();
    let mut r = store.begin(TxnOptions::snapshot()).unwrap();
    for k in (1..3_000).step_by(7) {
        let key = r.key_of(table, &[Value::BigInt(k)]).unwrap();
        let _ = r.update(table, &key, vec![Value::BigInt(k), Value::BigInt(36)]);
    }
    r.rollback().unwrap();
    store.sweep().unwrap();
    store.sweep().unwrap();
    let reader = store.begin(TxnOptions::snapshot()).unwrap();
    let idx = reader.catalog().unwrap().index_by_name("kv_v").unwrap().id;
    let table_rows = kv_rows(&reader, table);
    for v in 0..37i64 {
        let mut by_scan: Vec<i64> = table_rows
            .iter()
            .filter(|(_, x)| *x == v)
            .map(|(k, _)| *k)
            .collect();
        let mut scan = reader
            .scan(ScanSpec {
                table,
                columns: vec![0],
                range: ScanRange::Points {
                    index: Some(idx),
                    points: vec![vec![Value::BigInt(v)]],
                },
            })
            .unwrap();
        let layout = scan.layout(64, 0).unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        let mut by_index = Vec::new();
        loop {
            let n = scan.next_batch(&layout, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            let view = BatchView::new(&layout, &buf).unwrap();
            for row in 0..n {
                match view.value(0, row).unwrap() {
                    Value::BigInt(k) => by_index.push(k),
                    other => panic!("{other:?}"),
                }
            }
        }
        by_scan.sort_unstable();
        by_index.sort_unstable();
        assert_eq!(by_index, by_scan, "value {v}");
    }
}
