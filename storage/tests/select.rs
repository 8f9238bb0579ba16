//! Selecting scans (`Transaction::next_batch_where`): storage decides each row on
//! the selector's columns and copies only the rows kept. Checked against a plain
//! scan filtered afterwards, over pages (bulk load), delta versions (updates,
//! deletes, inserts after the load) and an index range, at batch sizes and heaps
//! small enough to cut runs anywhere; and every batch but the last is full.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod common;

use scratchbird_storage::catalog::{ColumnSpec, IndexSpec, TableSpec};
use scratchbird_storage::scan::{RowSelect, ScanRange, ScanSpec};
use scratchbird_storage::{RecordKey, StorageError, Transaction, TxnOptions};
use scratchbird_types::batch::{BatchLayout, BatchView};
use scratchbird_types::{IndexId, SqlType, TableId, Value};
use std::ops::Bound;

const LOADED: i64 = 6_000;

fn name_of(k: i64) -> Option<String> {
    (k % 5 != 0).then(|| "x".repeat((k % 37) as usize))
}

/// The rule the selector applies, on values.
fn wanted(tenant: &Value, name: &Value) -> bool {
    let t = match tenant {
        Value::Integer(t) => *t,
        other => panic!("tenant {other:?}"),
    };
    let even = match name {
        Value::Null => true,
        Value::Text(s) => s.len() % 2 == 0,
        other => panic!("name {other:?}"),
    };
    (t == 0 || t == 3) && even
}

/// Keeps rows whose tenant (column 1) is 0 or 3 and whose name (column 2) is NULL
/// or of even length; counts the rows it was asked about.
struct Tenants {
    columns: Vec<usize>,
    asked: u64,
    fail: bool,
}

impl RowSelect for Tenants {
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn select(&mut self, batch: &BatchView<'_>, keep: &mut Vec<u64>) -> Result<(), String> {
        if self.fail {
            return Err("the selector refuses".into());
        }
        keep.resize(batch.rows().div_ceil(64), 0);
        for r in 0..batch.rows() {
            self.asked += 1;
            if wanted(&batch.value(0, r).unwrap(), &batch.value(1, r).unwrap()) {
                keep[r / 64] |= 1 << (r % 64);
            }
        }
        // bits past the last row are set on purpose: storage must ignore them
        if let Some(last) = keep.last_mut() {
            *last |= !((1u64 << (batch.rows() % 64)) - 1)
                & u64::from(batch.rows() % 64 != 0).wrapping_neg();
        }
        Ok(())
    }
}

fn setup(store: &scratchbird_storage::Storage) -> (TableId, IndexId) {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let table = t
        .create_table(&TableSpec {
            distribution: None,
            name: "t".into(),
            columns: vec![
                ColumnSpec::new("k", SqlType::BigInt),
                ColumnSpec::new("tenant", SqlType::Integer),
                ColumnSpec::new("name", SqlType::Varchar { max_chars: 40 }),
                ColumnSpec::new("v", SqlType::BigInt),
            ],
            primary_key: vec!["k".into()],
        })
        .unwrap();
    let index = t
        .create_index(&IndexSpec {
            name: "t_v".into(),
            table: "t".into(),
            columns: vec!["v".into()],
            unique: false,
            plain: true,
        })
        .unwrap();
    t.commit().unwrap();
    let row = |k: i64, tenant: i64| {
        vec![
            Value::BigInt(k),
            Value::Integer(i32::try_from(tenant % 7).unwrap()),
            name_of(k).map_or(Value::Null, Value::Text),
            if k % 17 == 0 {
                Value::Null
            } else {
                Value::BigInt((k * 7_919) % 1_000)
            },
        ]
    };
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.bulk_insert(table, (0..LOADED).map(|k| row(k, k)))
        .unwrap();
    t.commit().unwrap();
    // versions over the pages: moved between tenants, deleted, appended
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    for k in (0..LOADED).step_by(11) {
        let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
        assert!(t.update(table, &key, row(k, k + 3)).unwrap());
    }
    for k in (0..LOADED).step_by(13) {
        let key = t.key_of(table, &[Value::BigInt(k)]).unwrap();
        t.delete(table, &key).unwrap();
    }
    for k in LOADED..LOADED + 300 {
        t.insert(table, row(k, k)).unwrap();
    }
    t.commit().unwrap();
    (table, index)
}

/// Every row of a plain scan with its key.
fn plain(t: &Transaction, spec: ScanSpec) -> Vec<(RecordKey, Vec<Value>)> {
    let mut cur = t.open_cursor(spec).unwrap();
    let layout = cur.layout(256, 1 << 20).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut keys = Vec::new();
    let mut out = Vec::new();
    loop {
        let n = t
            .next_batch(&mut cur, &layout, &mut buf, Some(&mut keys))
            .unwrap();
        if n == 0 {
            return out;
        }
        let view = BatchView::new(&layout, &buf).unwrap();
        for (r, k) in keys.iter().enumerate() {
            out.push((k.clone(), view.row(r).unwrap()));
        }
    }
}

/// Rows with their record keys.
type Keyed = Vec<(RecordKey, Vec<Value>)>;

/// A selecting scan of `spec`, batch by batch: rows with keys and heap used per
/// batch, and the cursor's selection counts.
fn selecting(
    t: &Transaction,
    spec: ScanSpec,
    layout: &BatchLayout,
    sel: &mut Tenants,
) -> (Vec<Keyed>, Vec<usize>, (u64, u64)) {
    let mut cur = t.open_cursor(spec).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut keys = Vec::new();
    let (mut batches, mut heaps) = (Vec::new(), Vec::new());
    loop {
        let n = t
            .next_batch_where(&mut cur, layout, &mut buf, Some(&mut keys), sel)
            .unwrap();
        if n == 0 {
            return (batches, heaps, cur.selected());
        }
        let view = BatchView::new(layout, &buf).unwrap();
        assert_eq!(keys.len(), n);
        batches.push(
            keys.iter()
                .enumerate()
                .map(|(r, k)| (k.clone(), view.row(r).unwrap()))
                .collect(),
        );
        heaps.push(view.heap_used());
    }
}

fn var_bytes(row: &[Value]) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Text(s) => s.len(),
            _ => 0,
        })
        .sum()
}

/// Checks a selecting scan of `columns` over `range` against the plain scan.
fn check(t: &Transaction, table: TableId, columns: &[usize], range: &ScanRange) {
    let all: Vec<usize> = (0..4).collect();
    let spec = |cols: &[usize]| ScanSpec {
        table,
        columns: cols.to_vec(),
        range: range.clone(),
    };
    let every = plain(t, spec(&all));
    let expected: Vec<(RecordKey, Vec<Value>)> = every
        .iter()
        .filter(|(_, r)| wanted(&r[1], &r[2]))
        .map(|(k, r)| (k.clone(), columns.iter().map(|&c| r[c].clone()).collect()))
        .collect();
    assert!(expected.len() > 100, "the test selects too few rows");
    assert!(
        expected.len() < every.len() / 2,
        "the test rejects too few rows"
    );
    let types: Vec<SqlType> = t
        .open_cursor(spec(columns))
        .unwrap()
        .output_types()
        .to_vec();
    for (rows_max, heap) in [(8u32, 48u32), (16, 200), (64, 4_096), (1_024, 1 << 20)] {
        let layout = BatchLayout::new(&types, rows_max, heap).unwrap();
        let mut sel = Tenants {
            columns: vec![1, 2],
            asked: 0,
            fail: false,
        };
        let (batches, heaps, (examined, rejected)) = selecting(t, spec(columns), &layout, &mut sel);
        let got: Vec<(RecordKey, Vec<Value>)> = batches.iter().flatten().cloned().collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "rows_max {rows_max}, heap {heap}"
        );
        assert_eq!(got, expected, "rows_max {rows_max}, heap {heap}");
        // full batches: only the last may be short, and a short one only because
        // the next row kept would not fit its heap
        let mut next = 0usize;
        for (b, (batch, used)) in batches.iter().zip(&heaps).enumerate() {
            next += batch.len();
            if b + 1 == batches.len() {
                break;
            }
            if batch.len() < rows_max as usize {
                let after = &expected[next].1;
                assert!(
                    used + var_bytes(after) > heap as usize,
                    "batch {b} has {} rows and {used} heap bytes; the next row ({} bytes) would have fit",
                    batch.len(),
                    var_bytes(after)
                );
            }
        }
        assert_eq!(examined, every.len() as u64, "every row decided once");
        assert_eq!(rejected, (every.len() - expected.len()) as u64);
        assert!(
            sel.asked >= examined,
            "the selector saw every row it decided"
        );
    }
}

#[test]
fn selecting_table_scan_returns_exactly_the_rows_kept_in_full_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _env) = common::open(dir.path());
    let (table, _) = setup(&store);
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    // the selector's columns among the output, and not among it
    check(&t, table, &[0, 2, 3], &ScanRange::All);
    check(&t, table, &[3], &ScanRange::All);
    check(
        &t,
        table,
        &[2, 0],
        &ScanRange::Key {
            lower: Bound::Included(vec![Value::BigInt(1_000)]),
            upper: Bound::Excluded(vec![Value::BigInt(6_100)]),
        },
    );
}

#[test]
fn selecting_scan_after_the_sweep_folds_versions_into_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _env) = common::open(dir.path());
    let (table, _) = setup(&store);
    store.sweep().unwrap();
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    check(&t, table, &[0, 2, 3], &ScanRange::All);
}

#[test]
fn selecting_index_scan_returns_exactly_the_rows_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _env) = common::open(dir.path());
    let (table, index) = setup(&store);
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    check(
        &t,
        table,
        &[0, 2],
        &ScanRange::Index {
            index,
            lower: Bound::Included(vec![Value::BigInt(100)]),
            upper: Bound::Excluded(vec![Value::BigInt(700)]),
        },
    );
}

#[test]
fn a_failing_selector_fails_the_scan_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _env) = common::open(dir.path());
    let (table, _) = setup(&store);
    let t = store.begin(TxnOptions::snapshot()).unwrap();
    let mut cur = t.open_cursor(ScanSpec::full(table, vec![0])).unwrap();
    let layout = cur.layout(64, 1_024).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut sel = Tenants {
        columns: vec![1, 2],
        asked: 0,
        fail: true,
    };
    match t.next_batch_where(&mut cur, &layout, &mut buf, None, &mut sel) {
        Err(StorageError::Selection(m)) => assert_eq!(m, "the selector refuses"),
        other => panic!("expected a selection error, got {other:?}"),
    }
}
