//! The query comparison harness: TPC-H Q6 and Q1 shapes through SQL on one core,
//! run by the sandbox, by hand-written native Rust over the same storage batches,
//! and by PostgreSQL 15 over the same rows (loaded from the same generator), all in
//! the same run. It also checks that the three agree on the answers.
//!
//! ```text
//! benches/setup-postgres.sh            # once: installs PostgreSQL 15 if missing
//! cargo run --release -p scratchbird-benches --bin query-compare -- [--rows N] [--no-pg]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use anyhow::Result;
use scratchbird_benches::postgres::Postgres;
use scratchbird_benches::{Q1, Q6};
use scratchbird_benches::{lineitem_row, load_lineitem, native_q6, open_store};
use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, display_value};
use scratchbird_storage::{Durability, Storage};
use scratchbird_types::{TableId, Value};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

struct Args {
    rows: u64,
    runs: usize,
    pg: bool,
}

fn args() -> Args {
    let mut a = Args {
        rows: 10_000_000,
        runs: 5,
        pg: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--rows" => {
                a.rows = v[i + 1].parse().expect("--rows N");
                i += 1;
            }
            "--runs" => {
                a.runs = v[i + 1].parse().expect("--runs N");
                i += 1;
            }
            "--no-pg" => a.pg = false,
            "-h" | "--help" => {
                println!(
                    "query-compare: Q6 and Q1 through SQL in the sandbox, natively, and in PostgreSQL 15.\n\n\
                     --rows N   rows of lineitem (default 10000000)\n\
                     --runs N   runs of each query; the best counts (default 5)\n\
                     --no-pg    skip PostgreSQL (otherwise benches/setup-postgres.sh must have run)"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}; see --help"),
        }
        i += 1;
    }
    a
}

fn best<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// Runs `sql` in the sandbox; returns the seconds and the rows as text.
fn sandbox_run(s: &mut LocalSession, sql: &str) -> (f64, Vec<Vec<String>>) {
    let started = Instant::now();
    let outs = s.execute(sql).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let Some(Outcome::Rows { batches, .. }) = outs.into_iter().last() else {
        panic!("no rows")
    };
    let mut rows = Vec::new();
    for b in &batches {
        for r in b.rows().unwrap() {
            rows.push(r.iter().map(display_value).collect());
        }
    }
    (secs, rows)
}

/// Q6 written by hand over the same storage batches; returns seconds and revenue.
fn timed_native_q6(store: &Storage, table: TableId) -> (f64, i128) {
    let started = Instant::now();
    let r = native_q6(store, table);
    (started.elapsed().as_secs_f64(), r)
}

fn csv_for_postgres(rows: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sb-lineitem-{rows}.csv"));
    if path.exists() {
        return path;
    }
    let tmp = path.with_extension("tmp");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    for i in 0..rows {
        let r = lineitem_row(i);
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                Value::Text(s) => s.clone(),
                other => display_value(other),
            })
            .collect();
        writeln!(w, "{}", cells.join(",")).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn main() -> Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path(), Durability::NoFsync);
    let started = Instant::now();
    let table = load_lineitem(&store, a.rows);
    println!(
        "loaded {} rows in {:.1} s",
        a.rows,
        started.elapsed().as_secs_f64()
    );
    let store = Arc::new(store);
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None)?);
    let mut s = LocalSession::new(store.clone(), sandbox);

    let (_, q6_rows) = sandbox_run(&mut s, Q6);
    let q6_sb = best(a.runs, || sandbox_run(&mut s, Q6).0);
    let (_, q1_rows) = sandbox_run(&mut s, Q1);
    let q1_sb = best(a.runs, || sandbox_run(&mut s, Q1).0);
    let (_, native_rev) = timed_native_q6(&store, table);
    let q6_native = best(a.runs, || timed_native_q6(&store, table).0);
    // the native sum is at scale 4 (price x discount), as the SQL result
    let native_text = scratchbird_types::Decimal::new(native_rev, 4).to_string();
    assert_eq!(
        q6_rows,
        vec![vec![native_text.clone()]],
        "sandbox and native Q6 disagree"
    );

    let n = a.rows as f64;
    println!("\n| query | engine | best of {} | rows/s |", a.runs);
    println!("|---|---|---|---|");
    println!(
        "| Q6 | ScratchBird sandbox (SQL -> wasm) | {:.1} ms | {:.1} M |",
        q6_sb * 1e3,
        n / q6_sb / 1e6
    );
    println!(
        "| Q6 | native Rust over the same storage batches | {:.1} ms | {:.1} M |",
        q6_native * 1e3,
        n / q6_native / 1e6
    );
    println!(
        "| Q1 | ScratchBird sandbox (SQL -> wasm) | {:.1} ms | {:.1} M |",
        q1_sb * 1e3,
        n / q1_sb / 1e6
    );
    let mut ratios = vec![format!(
        "sandbox / native, Q6: {:.2}x the time",
        q6_sb / q6_native
    )];

    if a.pg {
        if Postgres::available() {
            let csv = csv_for_postgres(a.rows);
            let pg = Postgres::start(55_433)?;
            pg.sql(
                "CREATE TABLE lineitem (tenant_id int NOT NULL, quantity numeric(15,2), extendedprice numeric(15,2), \
                 discount numeric(15,2), tax numeric(15,2), returnflag varchar(1), linestatus varchar(1), shipdate date)",
            )?;
            let _ = std::process::Command::new("chmod")
                .args(["a+r", &csv.display().to_string()])
                .status();
            pg.sql(&format!(
                "COPY lineitem FROM '{}' WITH (FORMAT csv)",
                csv.display()
            ))?;
            pg.sql("VACUUM ANALYZE lineitem")?;
            let pg_q6_out = pg.sql(Q6)?;
            let q6_pg = best(a.runs, || pg.time(Q6).unwrap());
            let pg_q1_out = pg.sql(Q1)?;
            let q1_pg = best(a.runs, || pg.time(Q1).unwrap());
            // same answers
            let pg_q6: Vec<&str> = pg_q6_out
                .lines()
                .filter(|l| !l.starts_with("Time:"))
                .collect();
            assert_eq!(
                pg_q6,
                vec![native_text.as_str()],
                "PostgreSQL and ScratchBird disagree on Q6"
            );
            let pg_q1: Vec<String> = pg_q1_out
                .lines()
                .filter(|l| !l.starts_with("Time:") && !l.is_empty())
                .map(str::to_owned)
                .collect();
            let ours_q1: Vec<String> = q1_rows.iter().map(|r| r.join("|")).collect();
            assert_eq!(ours_q1, pg_q1, "PostgreSQL and ScratchBird disagree on Q1");
            println!(
                "| Q6 | PostgreSQL 15, 1 core | {:.1} ms | {:.1} M |",
                q6_pg * 1e3,
                n / q6_pg / 1e6
            );
            println!(
                "| Q1 | PostgreSQL 15, 1 core | {:.1} ms | {:.1} M |",
                q1_pg * 1e3,
                n / q1_pg / 1e6
            );
            ratios.push(format!(
                "ScratchBird / PostgreSQL, Q6: {:.2}x the speed",
                q6_pg / q6_sb
            ));
            ratios.push(format!(
                "ScratchBird / PostgreSQL, Q1: {:.2}x the speed",
                q1_pg / q1_sb
            ));
            println!(
                "\nanswers: Q6 and Q1 identical in ScratchBird, native Rust (Q6) and PostgreSQL"
            );
        } else {
            println!(
                "PostgreSQL 15 is not installed: run benches/setup-postgres.sh (or pass --no-pg)"
            );
        }
    }
    println!();
    for r in ratios {
        println!("{r}");
    }
    Ok(())
}
