//! The storage comparison harness: every figure of the storage issue, each beside its
//! baseline measured in the same run (raw fjall doing the same key-value work, and
//! PostgreSQL 15 for the full scan).
//!
//! ```text
//! benches/setup-postgres.sh            # once: installs PostgreSQL 15 if missing
//! cargo run --release -p scratchbird-benches --bin storage-compare -- [--rows N] [--seconds S] [--no-pg]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use anyhow::Result;
use scratchbird_benches::postgres::Postgres;
use scratchbird_benches::{Rng, load_items, load_lineitem, open_raw, open_store};
use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
use scratchbird_storage::scan::ScanSpec;
use scratchbird_storage::{Durability, Storage, TxnOptions};
use scratchbird_types::{SqlType, TableId, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    rows: u64,
    seconds: f64,
    pg: bool,
    only: Option<String>,
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == part)
    }
}

fn args() -> Args {
    let mut a = Args {
        rows: 10_000_000,
        seconds: 5.0,
        pg: true,
        only: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--rows" => {
                a.rows = v[i + 1].parse().expect("--rows N");
                i += 1;
            }
            "--seconds" => {
                a.seconds = v[i + 1].parse().expect("--seconds S");
                i += 1;
            }
            "--no-pg" => a.pg = false,
            "--only" => {
                a.only = Some(v[i + 1].clone());
                i += 1;
            }
            "-h" | "--help" => {
                println!(
                    "storage-compare: ScratchBird storage figures beside their baselines.\n\n\
                     --rows N      rows in the scan, bulk-load and point-read tables (default 10000000)\n\
                     --seconds S   duration of each throughput run (default 5)\n\
                     --no-pg       skip PostgreSQL (otherwise benches/setup-postgres.sh must have run)\n\
                     --only PART   run one part: load-scan, point or commits"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}; see --help"),
        }
        i += 1;
    }
    a
}

struct Row {
    what: String,
    ours: f64,
    base_name: String,
    base: f64,
    unit: &'static str,
}

fn report(rows: &[Row]) {
    println!(
        "\n| measurement | ScratchBird | baseline | baseline value | ScratchBird / baseline |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        let ratio = if r.base > 0.0 {
            format!("{:.2}", r.ours / r.base)
        } else {
            "-".into()
        };
        println!(
            "| {} | {} {} | {} | {} {} | {} |",
            r.what,
            human(r.ours),
            r.unit,
            r.base_name,
            human(r.base),
            r.unit,
            ratio
        );
    }
}

fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.2}")
    }
}

fn scan_all(store: &Storage, table: TableId, cols: usize) -> (usize, f64) {
    let t = store.begin(TxnOptions::snapshot().read_only()).unwrap();
    let started = Instant::now();
    let mut scan = t.scan(ScanSpec::full(table, (0..cols).collect())).unwrap();
    let layout = scan.layout(1024, 64 * 1024).unwrap();
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut n = 0usize;
    loop {
        let k = scan.next_batch(&layout, &mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    (n, started.elapsed().as_secs_f64())
}

fn best<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn kv_table(store: &Storage, name: &str) -> TableId {
    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
    let id = t
        .create_table(&TableSpec {
            distribution: None,
            name: name.into(),
            columns: vec![
                ColumnSpec::new("k", SqlType::BigInt),
                ColumnSpec::new("v", SqlType::Text),
            ],
            primary_key: vec!["k".into()],
        })
        .unwrap();
    t.commit().unwrap();
    id
}

/// Durable single-row insert commits per second from `writers` threads.
fn commits(store: &Arc<Storage>, table: TableId, writers: u64, seconds: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut k =
                    (i64::try_from(writers).unwrap() << 50) | (i64::try_from(w).unwrap() << 40);
                while !stop.load(Ordering::Relaxed) {
                    let mut t = store.begin(TxnOptions::snapshot()).unwrap();
                    t.insert(
                        table,
                        vec![Value::BigInt(k), Value::Text("payload-of-a-row".into())],
                    )
                    .unwrap();
                    t.commit().unwrap();
                    k += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Raw fjall: one insert plus one fsync per "commit", from `writers` threads.
fn raw_commits(writers: u64, seconds: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (db, ks) = open_raw(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (db, ks, stop, done) = (db.clone(), ks.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut k = w << 40;
                while !stop.load(Ordering::Relaxed) {
                    ks.insert(k.to_be_bytes(), b"payload-of-a-row").unwrap();
                    db.persist(fjall::PersistMode::SyncAll).unwrap();
                    k += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() -> Result<()> {
    let a = args();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("rows: {}, throughput runs: {} s each", a.rows, a.seconds);
    let mut out = Vec::new();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(open_store(dir.path(), Durability::Fsync));
    if a.runs("load-scan") {
        load_and_scan(&a, &store, &mut out)?;
    }
    if a.runs("point") {
        point_reads(&a, &store, &mut out)?;
    }
    if a.runs("commits") {
        let kv = kv_table(&store, "commits");
        for writers in [1u64, 32] {
            let ours = commits(&store, kv, writers, a.seconds);
            let raw = raw_commits(writers, a.seconds);
            out.push(Row {
                what: format!("durable single-row insert commits, {writers} writer(s)"),
                ours,
                base_name: "raw fjall: insert + fsync".into(),
                base: raw,
                unit: "commits/s",
            });
        }
    }
    report(&out);
    Ok(())
}

fn load_and_scan(a: &Args, store: &Storage, out: &mut Vec<Row>) -> Result<()> {
    // Bulk load.
    let started = Instant::now();
    let lineitem = load_lineitem(store, a.rows);
    let load_s = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "bulk load: {} rows in {load_s:.2} s ({} pages, {} MB)",
        a.rows,
        stats.pages,
        stats.page_bytes / 1_000_000
    );
    let page_value = usize::try_from(stats.page_bytes / (stats.pages.max(1) as u64)).unwrap();
    let raw_dir = tempfile::tempdir()?;
    let (raw_db, raw_pages) = open_raw(raw_dir.path());
    let started = Instant::now();
    let value = vec![0x5Au8; page_value];
    let mut b = raw_db.batch();
    for p in 0..stats.pages as u64 {
        b.insert(&raw_pages, p.to_be_bytes(), value.clone());
        if b.len() == 64 {
            b.commit()?;
            b = raw_db.batch();
        }
    }
    b.commit()?;
    raw_db.persist(fjall::PersistMode::SyncAll)?;
    let raw_load_s = started.elapsed().as_secs_f64();
    out.push(Row {
        what: format!("bulk load, {} rows (lineitem)", a.rows),
        ours: a.rows as f64 / load_s,
        base_name: "raw fjall: same pair count and bytes".into(),
        base: a.rows as f64 / raw_load_s,
        unit: "rows/s",
    });
    println!("bulk load took {load_s:.2} s (limit 60 s)");

    // Full scan, warm.
    let _ = scan_all(store, lineitem, 8);
    let scan_s = best(5, || scan_all(store, lineitem, 8).1);
    let raw_scan_s = best(5, || {
        let mut buf = vec![0u8; page_value];
        let started = Instant::now();
        for kv in raw_pages.iter() {
            let v = kv.value().unwrap();
            let n = v.len().min(buf.len());
            buf[..n].copy_from_slice(&v[..n]);
        }
        std::hint::black_box(&buf);
        started.elapsed().as_secs_f64()
    });
    out.push(Row {
        what: "full scan, 8 columns into columnar batches".into(),
        ours: a.rows as f64 / scan_s,
        base_name: "raw fjall: iterate and copy the same pages".into(),
        base: a.rows as f64 / raw_scan_s,
        unit: "rows/s",
    });
    // The naive layout: one pair per row.
    let (row_db_dir, row_ks) = {
        let d = tempfile::tempdir()?;
        let (_db, ks) = open_raw(d.path());
        let mut ing = ks.start_ingestion()?;
        let row = vec![7u8; 60];
        for i in 0..a.rows {
            ing.write(i.to_be_bytes(), row.clone())?;
        }
        ing.finish()?;
        (d, ks)
    };
    let _ = row_ks.iter().count();
    let row_scan_s = best(3, || {
        let started = Instant::now();
        let mut n = 0usize;
        for kv in row_ks.iter() {
            n += kv.value().unwrap().len();
        }
        std::hint::black_box(n);
        started.elapsed().as_secs_f64()
    });
    out.push(Row {
        what: "full scan, 8 columns into columnar batches".into(),
        ours: a.rows as f64 / scan_s,
        base_name: "raw fjall: one pair per row".into(),
        base: a.rows as f64 / row_scan_s,
        unit: "rows/s",
    });
    if a.pg {
        if Postgres::available() {
            let pg = Postgres::start(55_432)?;
            pg.sql(
                "CREATE TABLE lineitem (tenant_id int NOT NULL, quantity numeric(15,2), extendedprice numeric(15,2), \
                 discount numeric(15,2), tax numeric(15,2), returnflag char(1), linestatus char(1), shipdate date)",
            )?;
            pg.sql(&format!(
                "INSERT INTO lineitem SELECT i % 10, (i % 50 + 1)::numeric(15,2), (900 + (i * 7919) % 1000)::numeric(15,2), \
                 ((i % 11) / 100.0)::numeric(15,2), ((i % 9) / 100.0)::numeric(15,2), substr('ANR', (i % 3)::int + 1, 1), \
                 substr('FO', (i % 2)::int + 1, 1), date '1992-01-01' + (i % 2526)::int FROM generate_series(0::bigint, {} - 1) AS i",
                a.rows
            ))?;
            pg.sql("VACUUM ANALYZE lineitem")?;
            let _ = pg.time("SELECT count(*) FROM lineitem")?;
            let pg_s = best(5, || pg.time("SELECT count(*) FROM lineitem").unwrap());
            out.push(Row {
                what: "full scan, 8 columns into columnar batches".into(),
                ours: a.rows as f64 / scan_s,
                base_name: "PostgreSQL 15 `count(*)`, 1 core".into(),
                base: a.rows as f64 / pg_s,
                unit: "rows/s",
            });
        } else {
            println!(
                "PostgreSQL 15 is not installed: run benches/setup-postgres.sh (or pass --no-pg)"
            );
        }
    }
    drop(row_db_dir);

    Ok(())
}

fn point_reads(a: &Args, store: &Storage, out: &mut Vec<Row>) -> Result<()> {
    // Point reads by primary key, one thread.
    let items = load_items(store, a.rows);
    let reader = store.begin(TxnOptions::snapshot().read_only())?;
    let mut rng = Rng(0x1234_5678);
    for _ in 0..200_000 {
        let id = i64::try_from(rng.next_u64() % a.rows).unwrap();
        std::hint::black_box(reader.get(items, &[Value::BigInt(id)])?);
    }
    let n = 1_000_000u64;
    let started = Instant::now();
    for _ in 0..n {
        let id = i64::try_from(rng.next_u64() % a.rows).unwrap();
        let r = reader.get(items, &[Value::BigInt(id)])?;
        assert!(r.is_some());
    }
    let ours_pr = n as f64 / started.elapsed().as_secs_f64();
    let point_dir = tempfile::tempdir()?;
    let (_pdb, pks) = open_raw(point_dir.path());
    {
        let mut ing = pks.start_ingestion()?;
        let row = vec![7u8; 80];
        for i in 0..a.rows {
            ing.write(i.to_be_bytes(), row.clone())?;
        }
        ing.finish()?;
    }
    for _ in 0..200_000 {
        std::hint::black_box(pks.get((rng.next_u64() % a.rows).to_be_bytes())?);
    }
    let started = Instant::now();
    for _ in 0..n {
        assert!(pks.get((rng.next_u64() % a.rows).to_be_bytes())?.is_some());
    }
    let raw_pr = n as f64 / started.elapsed().as_secs_f64();
    out.push(Row {
        what: format!("point read by primary key, {} rows, 1 thread", a.rows),
        ours: ours_pr,
        base_name: "raw fjall: get of one pair per row".into(),
        base: raw_pr,
        unit: "reads/s",
    });
    drop(reader);
    Ok(())
}
