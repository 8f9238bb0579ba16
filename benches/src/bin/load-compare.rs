//! Bulk load beside PostgreSQL 15: the same CSV files through `sb load`
//! (the real binary, a node inside its process over a fresh data directory)
//! and through PostgreSQL's `COPY ... FROM 'file'`.
//!
//! ```text
//! benches/setup-postgres.sh      # once: installs PostgreSQL 15 if missing
//! cargo build --release -p scratchbird-cli -p scratchbird-benches
//! target/release/load-compare                 # 2 M narrow rows and TPC-H SF 1
//! target/release/load-compare --help
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use anyhow::{Context, Result, bail};
use scratchbird_benches::postgres::Postgres;
use scratchbird_tests::tpch;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const HELP: &str = "load-compare: bulk load through `sb load` beside PostgreSQL 15's COPY.

Usage:
  load-compare [--rows N] [--sf SF] [--no-pg] [--sb PATH]

  --rows N   rows of the narrow table n (k BIGINT PRIMARY KEY, a INTEGER,
             b DECIMAL(12,2)), written in key order (default 2000000; 0 skips it)
  --sf SF    TPC-H scale factor of the 8 tables loaded after it (default 1:
             8.66 M rows, 6 M of them in lineitem; 0 skips them)
  --no-pg    ScratchBird only
  --sb PATH  the sb binary (default: sb beside this program; build it with
             cargo build --release -p scratchbird-cli)

Each table is loaded from a CSV file with a header into an empty table with its
primary key, by one `sb load TABLE FILE --header --local DIR` process (timed from
its start to its exit: opening the store, parsing, checking, writing, the final
fsync) and by PostgreSQL's server-side COPY of the same file (psql's \\timing).
PostgreSQL must be installed: benches/setup-postgres.sh.";

struct Args {
    rows: u64,
    sf: f64,
    pg: bool,
    sb: PathBuf,
}

fn args() -> Result<Args> {
    let v: Vec<String> = std::env::args().skip(1).collect();
    if v.iter().any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        std::process::exit(0);
    }
    let mut a = Args {
        rows: 2_000_000,
        sf: 1.0,
        pg: true,
        sb: PathBuf::new(),
    };
    let mut given: Option<PathBuf> = None;
    let mut i = 0;
    while i < v.len() {
        if v[i] == "--no-pg" {
            a.pg = false;
            i += 1;
            continue;
        }
        let val = v
            .get(i + 1)
            .with_context(|| format!("{} needs a value", v[i]))?;
        match v[i].as_str() {
            "--rows" => a.rows = val.parse().context("--rows takes a whole number")?,
            "--sf" => a.sf = val.parse().context("--sf takes a number, like 0.1 or 1")?,
            "--sb" => given = Some(PathBuf::from(val)),
            other => bail!("unknown option {other}\n\n{HELP}"),
        }
        i += 2;
    }
    if !(0.0..=10.0).contains(&a.sf) {
        bail!("--sf must be from 0 to 10");
    }
    a.sb = scratchbird_benches::sb_binary(given.as_deref())?;
    if a.pg && !Postgres::available() {
        bail!("PostgreSQL 15 is not installed: run benches/setup-postgres.sh (or pass --no-pg)");
    }
    Ok(a)
}

/// The narrow table's rows, in key order.
fn write_narrow(path: &Path, rows: u64) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "k,a,b")?;
    for k in 0..rows {
        let a = k.wrapping_mul(2_654_435_761) % 1_000_000;
        let cents = k.wrapping_mul(40_503) % 10_000_000;
        writeln!(w, "{k},{a},{}.{:02}", cents / 100, cents % 100)?;
    }
    w.flush()?;
    Ok(())
}

const NARROW: &str = "CREATE TABLE n (k BIGINT PRIMARY KEY, a INTEGER, b DECIMAL(12,2));";

struct Sb<'a> {
    bin: &'a Path,
    dir: PathBuf,
}

impl Sb<'_> {
    fn sql(&self, sql: &str) -> Result<()> {
        let out = Command::new(self.bin)
            .args(["sql", "--local"])
            .arg(&self.dir)
            .args(["-c", sql])
            .output()?;
        if !out.status.success() {
            bail!("sb sql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Seconds from the start of `sb load` to its exit.
    fn load(&self, table: &str, file: &Path) -> Result<f64> {
        let t = Instant::now();
        let out = Command::new(self.bin)
            .args(["load", table])
            .arg(file)
            .args(["--header", "--local"])
            .arg(&self.dir)
            .output()?;
        let s = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "sb load {table} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(s)
    }
}

struct Row {
    table: String,
    rows: u64,
    sb: f64,
    pg: Option<f64>,
}

fn rate(rows: u64, s: f64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "a printed rate")]
    let r = rows as f64 / s;
    if r >= 1e6 {
        format!("{:.2} M rows/s", r / 1e6)
    } else {
        format!("{:.0} k rows/s", r / 1e3)
    }
}

fn lines(path: &Path) -> Result<u64> {
    use std::io::BufRead;
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut n = 0u64;
    for l in f.split(b'\n') {
        l?;
        n += 1;
    }
    Ok(n.saturating_sub(1))
}

fn main() -> Result<()> {
    let a = args()?;
    let tmp = tempfile::Builder::new().prefix("sb-load").tempdir()?;
    // PostgreSQL's server reads the files as the postgres user
    Command::new("chmod")
        .args(["755", &tmp.path().display().to_string()])
        .status()?;
    let mut jobs: Vec<(String, PathBuf)> = Vec::new();
    let mut schema = String::new();
    if a.rows > 0 {
        let f = tmp.path().join("n.csv");
        eprintln!("writing {} narrow rows", a.rows);
        write_narrow(&f, a.rows)?;
        jobs.push(("n".into(), f));
        schema.push_str(NARROW);
    }
    if a.sf > 0.0 {
        eprintln!("writing TPC-H at SF {}", a.sf);
        tpch::write_csv(tmp.path(), a.sf)?;
        for t in tpch::TABLES {
            jobs.push(((*t).to_owned(), tmp.path().join(format!("{t}.csv"))));
        }
        schema.push_str(&tpch::schema());
    }
    let sb = Sb {
        bin: &a.sb,
        dir: tmp.path().join("sb"),
    };
    sb.sql(&schema)?;
    let pg = if a.pg {
        let pg = Postgres::start(5496)?;
        pg.sql(&schema)?;
        Some(pg)
    } else {
        None
    };
    let mut results = Vec::new();
    for (table, file) in &jobs {
        let rows = lines(file)?;
        eprintln!("loading {table} ({rows} rows)");
        let s = sb.load(table, file)?;
        let p = match &pg {
            Some(pg) => Some(pg.time(&format!(
                "COPY {table} FROM '{}' WITH (FORMAT csv, HEADER true)",
                file.display()
            ))?),
            None => None,
        };
        results.push(Row {
            table: table.clone(),
            rows,
            sb: s,
            pg: p,
        });
    }
    println!("| table | rows | sb load | rate | PostgreSQL 15 COPY | rate | PostgreSQL / sb |");
    println!("|---|---|---|---|---|---|---|");
    let mut tpch_rows = 0;
    let (mut tpch_sb, mut tpch_pg) = (0.0, 0.0);
    for r in &results {
        let (pt, pr, ratio) = match r.pg {
            Some(p) => (
                format!("{p:.2} s"),
                rate(r.rows, p),
                format!("{:.2}", p / r.sb),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.2} s | {} | {pt} | {pr} | {ratio} |",
            r.table,
            r.rows,
            r.sb,
            rate(r.rows, r.sb)
        );
        if r.table != "n" {
            tpch_rows += r.rows;
            tpch_sb += r.sb;
            tpch_pg += r.pg.unwrap_or(0.0);
        }
    }
    if tpch_rows > 0 {
        let (pt, pr, ratio) = if pg.is_some() {
            (
                format!("{tpch_pg:.2} s"),
                rate(tpch_rows, tpch_pg),
                format!("{:.2}", tpch_pg / tpch_sb),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| TPC-H SF {}, 8 tables | {tpch_rows} | {tpch_sb:.2} s | {} | {pt} | {pr} | {ratio} |",
            a.sf,
            rate(tpch_rows, tpch_sb)
        );
    }
    Ok(())
}
