//! Shared pieces of the benchmarks: the `lineitem` data set of `shared/PERFORMANCE.md`
//! (deterministic), store setup, and the environment the benchmarks run in.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

pub mod postgres;

use scratchbird_storage::catalog::{ColumnSpec, DomainSpec, TableSpec};
use scratchbird_storage::{Durability, Env, Storage, StorageConfig, TxnOptions};
use scratchbird_types::{Date, Decimal, SqlType, TableId, Value};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock and a counter-based id source (benchmarks need no secure randomness).
#[derive(Debug, Default)]
pub struct BenchEnv(AtomicU64);

impl Env for BenchEnv {
    fn now_micros(&self) -> i64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
    fn random_bytes(&self) -> [u8; 16] {
        let n = self.0.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        out[8..].copy_from_slice(&u64::try_from(self.now_micros()).unwrap_or(0).to_le_bytes());
        out
    }
}

/// A store for benchmarks: fsync on, background sweep off (it would compete for the
/// core being measured), a cache large enough for the data set.
pub fn open_store(dir: &Path, durability: Durability) -> Storage {
    let mut c = StorageConfig::new(Arc::new(BenchEnv::default()));
    c.durability = durability;
    c.sweep_interval_ms = None;
    c.cache_bytes = 1024 * 1024 * 1024;
    c.page_cache_bytes = 2 * 1024 * 1024 * 1024;
    c.retention_micros = 0;
    c.fold_trigger_bytes = usize::MAX;
    c.delta_max_bytes = usize::MAX;
    c.transaction_versions_max = usize::MAX;
    Storage::open(dir, c).unwrap()
}

/// A fjall database configured as the store configures its page keyspace, for the
/// raw key-value baselines.
pub fn open_raw(dir: &Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(dir)
        .cache_size(4 * 1024 * 1024 * 1024)
        .manual_journal_persist(true)
        .open()
        .unwrap();
    let ks = db
        .keyspace("raw", || {
            fjall::KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
        })
        .unwrap();
    (db, ks)
}

fn dec() -> SqlType {
    SqlType::Decimal {
        precision: 15,
        scale: 2,
    }
}

/// TPC-H Q6 over `lineitem`.
pub const Q6: &str = "SELECT sum(extendedprice * discount) AS revenue FROM lineitem \
    WHERE shipdate >= DATE '1994-01-01' AND shipdate < DATE '1995-01-01' \
    AND discount BETWEEN 0.05 AND 0.07 AND quantity < 24";

/// TPC-H Q1 over `lineitem`.
pub const Q1: &str = "SELECT returnflag, linestatus, sum(quantity) AS sum_qty, sum(extendedprice) AS sum_base_price, \
    sum(extendedprice * (1 - discount)) AS sum_disc_price, \
    sum(extendedprice * (1 - discount) * (1 + tax)) AS sum_charge, \
    CAST(avg(quantity) AS DECIMAL(15,2)) AS avg_qty, CAST(avg(extendedprice) AS DECIMAL(15,2)) AS avg_price, \
    CAST(avg(discount) AS DECIMAL(15,2)) AS avg_disc, count(*) AS count_order \
    FROM lineitem WHERE shipdate <= DATE '1998-12-01' - INTERVAL '90' DAY \
    GROUP BY returnflag, linestatus ORDER BY returnflag, linestatus";

/// The eight `lineitem` columns of PERFORMANCE.md.
pub fn lineitem_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("tenant_id", SqlType::Integer).not_null(),
        ColumnSpec::new("quantity", dec()),
        ColumnSpec::new("extendedprice", dec()),
        ColumnSpec::new("discount", dec()),
        ColumnSpec::new("tax", dec()),
        ColumnSpec::new("returnflag", SqlType::Varchar { max_chars: 1 }),
        ColumnSpec::new("linestatus", SqlType::Varchar { max_chars: 1 }),
        ColumnSpec::new("shipdate", SqlType::Date),
    ]
}

/// Row `i` of `lineitem` (deterministic; the PostgreSQL loader computes the same).
#[must_use]
pub fn lineitem_row(i: u64) -> Vec<Value> {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let quantity = i128::from(h % 50 + 1) * 100;
    let price = i128::from(h % 100_000 + 90_000);
    let discount = i128::from(h % 11);
    let tax = i128::from(h % 9);
    let flags = ["A", "N", "R"];
    let status = ["F", "O"];
    vec![
        Value::Integer(i32::try_from(i % 10).unwrap()),
        Value::Decimal(Decimal::new(quantity, 2)),
        Value::Decimal(Decimal::new(price, 2)),
        Value::Decimal(Decimal::new(discount, 2)),
        Value::Decimal(Decimal::new(tax, 2)),
        Value::Text(flags[usize::try_from(h % 3).unwrap()].into()),
        Value::Text(status[usize::try_from((h >> 3) % 2).unwrap()].into()),
        Value::Date(Date(8_035 + i32::try_from(h % 2_526).unwrap())),
    ]
}

/// Creates `lineitem` with `extendedprice` declared in domain `money` (DECIMAL(15,2);
/// the policy-overhead bundle masks it) and bulk loads `rows` rows.
pub fn load_lineitem_with_money_domain(store: &Storage, rows: u64) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    t.create_domain(&DomainSpec {
        name: "money".into(),
        base: dec(),
        not_null: false,
        default: None,
        check: None,
    })
    .unwrap();
    let columns = lineitem_columns()
        .into_iter()
        .map(|c| {
            if c.name == "extendedprice" {
                ColumnSpec::of_domain("extendedprice", "money")
            } else {
                c
            }
        })
        .collect();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "lineitem".into(),
            columns,
            primary_key: vec![],
        })
        .unwrap();
    t.bulk_insert(id, (0..rows).map(lineitem_row)).unwrap();
    t.commit().unwrap();
    id
}

/// Creates `lineitem` (no primary key, as in PostgreSQL) and bulk loads `rows` rows.
pub fn load_lineitem(store: &Storage, rows: u64) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "lineitem".into(),
            columns: lineitem_columns(),
            primary_key: vec![],
        })
        .unwrap();
    t.bulk_insert(id, (0..rows).map(lineitem_row)).unwrap();
    t.commit().unwrap();
    id
}

/// `items(id BIGINT PRIMARY KEY, ...lineitem columns)`, bulk loaded with ids 0..rows.
pub fn load_items(store: &Storage, rows: u64) -> TableId {
    let mut cols = vec![ColumnSpec::new("id", SqlType::BigInt)];
    cols.extend(lineitem_columns());
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: "items".into(),
            columns: cols,
            primary_key: vec!["id".into()],
        })
        .unwrap();
    t.bulk_insert(
        id,
        (0..rows).map(|i| {
            let mut r = vec![Value::BigInt(i64::try_from(i).unwrap())];
            r.extend(lineitem_row(i));
            r
        }),
    )
    .unwrap();
    t.commit().unwrap();
    id
}

/// TPC-H Q6 over `lineitem`, hand-written in idiomatic Rust over the storage's
/// columnar batches (quantity, extendedprice, discount, shipdate; 1,024 rows per
/// batch): the native baseline the sandbox is measured against. Returns the revenue
/// at scale 4. `lineitem` has no NULLs, so the columns are read without looking at
/// the validity bits.
pub fn native_q6(store: &Storage, table: TableId) -> i128 {
    let t = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    let mut scan = t
        .scan(scratchbird_storage::scan::ScanSpec::full(
            table,
            vec![1, 2, 3, 7],
        ))
        .unwrap();
    let layout = scan.layout(1024, 0).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let (q, p, d, s) = (
        layout.values_range(0).unwrap(),
        layout.values_range(1).unwrap(),
        layout.values_range(2).unwrap(),
        layout.values_range(3).unwrap(),
    );
    // 1994-01-01 and 1995-01-01 as days since 1970-01-01
    let (lo, hi) = (8766, 9131);
    let mut revenue: i128 = 0;
    loop {
        let n = scan.next_batch(&layout, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        let col64 = |r: &std::ops::Range<usize>| {
            buf[r.start..r.start + n * 8]
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        };
        let dates = buf[s.start..s.start + n * 4]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()));
        for (((qty, price), disc), date) in col64(&q).zip(col64(&p)).zip(col64(&d)).zip(dates) {
            if (lo..hi).contains(&date) && (5..=7).contains(&disc) && qty < 2400 {
                revenue += i128::from(price) * i128::from(disc);
            }
        }
    }
    revenue
}

/// A tiny deterministic generator for benchmark inputs.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `sb` binary a harness runs: `given`, or the one beside the harness
/// (the same target directory).
///
/// # Errors
/// There is no such file (the message says how to build it).
pub fn sb_binary(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let bin = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("sb"),
    };
    if !bin.exists() {
        anyhow::bail!(
            "no sb binary at {}: build it with `cargo build --release -p scratchbird-cli`, or name it with --sb",
            bin.display()
        );
    }
    Ok(bin)
}
