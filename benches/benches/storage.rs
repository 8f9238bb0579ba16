//! Criterion benches of the storage engine, each beside raw fjall doing the same
//! key-value work in the same run. Full-scale figures (10 M rows, PostgreSQL) come from
//! the `storage-compare` harness; see benches/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scratchbird_benches::{Rng, load_items, load_lineitem, open_raw, open_store};
use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::scan::ScanSpec;
use scratchbird_storage::{Durability, TxnOptions};
use scratchbird_types::{SqlType, Value};
use std::hint::black_box;

const ROWS: u64 = 1_000_000;

fn scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), Durability::NoFsync);
    let table = load_lineitem(&store, ROWS);
    let stats = store.stats();
    let page_value = usize::try_from(stats.page_bytes / stats.pages as u64).unwrap();
    let raw_dir = tempfile::tempdir().unwrap();
    let (raw_db, raw) = open_raw(raw_dir.path());
    let mut b = raw_db.batch();
    for p in 0..stats.pages as u64 {
        b.insert(&raw, p.to_be_bytes(), vec![1u8; page_value]);
    }
    b.commit().unwrap();
    let mut g = c.benchmark_group("full_scan_lineitem_1m");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(20);
    g.bench_function("scratchbird_8_columns_to_batches", |bench| {
        let t = store.begin(TxnOptions::snapshot().read_only()).unwrap();
        let layout = t
            .scan(ScanSpec::full(table, (0..8).collect()))
            .unwrap()
            .layout(1024, 64 * 1024)
            .unwrap();
        let mut buf = vec![0u8; layout.total_bytes()];
        bench.iter(|| {
            let mut scan = t.scan(ScanSpec::full(table, (0..8).collect())).unwrap();
            let mut n = 0;
            loop {
                let k = scan.next_batch(&layout, &mut buf).unwrap();
                if k == 0 {
                    break;
                }
                n += k;
            }
            assert_eq!(n as u64, ROWS);
        });
    });
    g.bench_function("raw_fjall_same_pages", |bench| {
        let mut buf = vec![0u8; page_value];
        bench.iter(|| {
            for kv in raw.iter() {
                let v = kv.value().unwrap();
                buf.copy_from_slice(&v);
            }
            black_box(&buf);
        });
    });
    g.finish();
}

fn point_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), Durability::NoFsync);
    let items = load_items(&store, ROWS);
    let raw_dir = tempfile::tempdir().unwrap();
    let (_raw_db, raw) = open_raw(raw_dir.path());
    let mut ing = raw.start_ingestion().unwrap();
    for i in 0..ROWS {
        ing.write(i.to_be_bytes(), vec![7u8; 80]).unwrap();
    }
    ing.finish().unwrap();
    let mut g = c.benchmark_group("point_read_by_primary_key_1m");
    g.throughput(Throughput::Elements(1));
    let t = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    let mut rng = Rng(42);
    g.bench_function("scratchbird_get", |bench| {
        bench.iter(|| {
            let id = i64::try_from(rng.next_u64() % ROWS).unwrap();
            black_box(t.get(items, &[Value::BigInt(id)]).unwrap().unwrap());
        });
    });
    g.bench_function("raw_fjall_get_one_pair_per_row", |bench| {
        bench.iter(|| {
            black_box(
                raw.get((rng.next_u64() % ROWS).to_be_bytes())
                    .unwrap()
                    .unwrap(),
            )
        });
    });
    g.finish();
}

fn durable_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), Durability::Fsync);
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let table = t
        .create_table(&TableSpec {
            distribution: None,
            name: "kv".into(),
            columns: vec![
                ColumnSpec::new("k", SqlType::BigInt),
                ColumnSpec::new("v", SqlType::Text),
            ],
            primary_key: vec!["k".into()],
        })
        .unwrap();
    t.commit().unwrap();
    let raw_dir = tempfile::tempdir().unwrap();
    let (raw_db, raw) = open_raw(raw_dir.path());
    let mut g = c.benchmark_group("durable_single_row_insert_commit");
    g.throughput(Throughput::Elements(1));
    let mut k = 0i64;
    g.bench_function(BenchmarkId::new("scratchbird", "1_writer"), |bench| {
        bench.iter(|| {
            let mut t = store.begin(TxnOptions::snapshot()).unwrap();
            t.insert(
                table,
                vec![Value::BigInt(k), Value::Text("payload-of-a-row".into())],
            )
            .unwrap();
            t.commit().unwrap();
            k += 1;
        });
    });
    let mut rk = 0u64;
    g.bench_function(
        BenchmarkId::new("raw_fjall_insert_fsync", "1_writer"),
        |bench| {
            bench.iter(|| {
                raw.insert(rk.to_be_bytes(), b"payload-of-a-row").unwrap();
                raw_db.persist(fjall::PersistMode::SyncAll).unwrap();
                rk += 1;
            });
        },
    );
    g.finish();
}

criterion_group!(benches, scan, point_read, durable_commit);
criterion_main!(benches);
