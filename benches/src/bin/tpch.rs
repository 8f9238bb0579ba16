//! TPC-H: the data, PostgreSQL's answers, and (with `bench`) the 22 queries
//! timed beside PostgreSQL 15.
//!
//! ```text
//! benches/setup-postgres.sh      # once: installs PostgreSQL 15 if missing
//! cargo run --release -p scratchbird-benches --bin tpch -- gen --sf 1 --out /tmp/tpch-sf1
//! cargo run --release -p scratchbird-benches --bin tpch -- answers --sf 0.01
//! cargo build --release -p scratchbird-cli -p scratchbird-benches
//! target/release/tpch bench --sf 1 --data /tmp/tpch-sf1
//! ```
//!
//! `answers` loads the generated rows into a private PostgreSQL and writes
//! each query's answer as CSV into `tests/tpch/answers/sfSF/`, where
//! `tests/tests/tpch.rs` compares ScratchBird's with them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use anyhow::{Context, Result, bail};
use scratchbird_benches::postgres::Postgres;
use scratchbird_tests::tpch;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const HELP: &str = "tpch: TPC-H data, PostgreSQL 15's answers, and the 22 queries timed beside it.

Usage:
  tpch gen --sf SF --out DIR        write TABLE.csv for the 8 tables (CSV with a header)
  tpch answers --sf SF [--out DIR]  load them into PostgreSQL 15 and write qNN.csv for the
                                    22 queries (default DIR: tests/tpch/answers/sfSF)
  tpch bench --sf SF [--data DIR] [--runs N] [--sb PATH] [--timeout-ms MS] [--memory-mib MIB]
             [--no-duckdb]
                                    load the tables into PostgreSQL 15 (COPY) and into
                                    ScratchBird (`sb load --local`), run each query N times
                                    (default 3) in one psql and one `sb sql --local` process,
                                    print the best time of each beside the other and whether
                                    the answers are equal, and the geometric mean ratio
                                    (--data: CSVs `gen` wrote; default: generate them);
                                    and DuckDB (the Python package, one thread, in memory,
                                    installed by benches/setup-duckdb.sh) beside them

SF is the scale factor: 1 is 8.66 M rows (6 M in lineitem), 0.01 is 87 k.
PostgreSQL must be installed: benches/setup-postgres.sh. bench runs the sb binary
beside this program (build it: cargo build --release -p scratchbird-cli).";

struct Args {
    cmd: String,
    sf: f64,
    out: Option<PathBuf>,
    data: Option<PathBuf>,
    sb: Option<PathBuf>,
    runs: usize,
    timeout_ms: u64,
    memory_mib: u64,
    duckdb: bool,
}

fn args() -> Result<Args> {
    let v: Vec<String> = std::env::args().skip(1).collect();
    if v.is_empty() || v.iter().any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        std::process::exit(0);
    }
    let mut a = Args {
        cmd: v[0].clone(),
        sf: 0.01,
        out: None,
        data: None,
        sb: None,
        runs: 3,
        timeout_ms: 600_000,
        memory_mib: 4096,
        duckdb: true,
    };
    let mut i = 1;
    while i < v.len() {
        if v[i] == "--no-duckdb" {
            a.duckdb = false;
            i += 1;
            continue;
        }
        let val = v
            .get(i + 1)
            .with_context(|| format!("{} needs a value", v[i]))?;
        match v[i].as_str() {
            "--sf" => a.sf = val.parse().context("--sf takes a number, like 0.01 or 1")?,
            "--out" => a.out = Some(PathBuf::from(val)),
            "--data" => a.data = Some(PathBuf::from(val)),
            "--sb" => a.sb = Some(PathBuf::from(val)),
            "--runs" => a.runs = val.parse().context("--runs takes a whole number")?,
            "--timeout-ms" => {
                a.timeout_ms = val.parse().context("--timeout-ms takes milliseconds")?
            }
            "--memory-mib" => a.memory_mib = val.parse().context("--memory-mib takes MiB")?,
            other => bail!("unknown option {other}\n\n{HELP}"),
        }
        i += 2;
    }
    if !(a.sf > 0.0 && a.sf <= 100.0) {
        bail!("--sf must be above 0 and at most 100");
    }
    if !(1..=20).contains(&a.runs) {
        bail!("--runs must be from 1 to 20");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    match a.cmd.as_str() {
        "gen" => {
            let out = a.out.context("gen needs --out DIR")?;
            tpch::write_csv(&out, a.sf)?;
            println!("wrote the 8 tables at SF {} into {}", a.sf, out.display());
        }
        "answers" => answers(a.sf, a.out)?,
        "bench" => bench(&a)?,
        other => bail!("unknown command {other}\n\n{HELP}"),
    }
    Ok(())
}

fn answers(sf: f64, out: Option<PathBuf>) -> Result<()> {
    if !Postgres::available() {
        bail!("PostgreSQL 15 is not installed: run benches/setup-postgres.sh");
    }
    let out = out.unwrap_or_else(|| tpch::dir().join("answers").join(format!("sf{sf}")));
    let tmp = tempfile::Builder::new().prefix("sb-tpch").tempdir()?;
    // PostgreSQL's psql runs as the postgres user: it must read the files
    std::process::Command::new("chmod")
        .args(["755", &tmp.path().display().to_string()])
        .status()?;
    tpch::write_csv(tmp.path(), sf)?;
    let pg = Postgres::start(5497)?;
    let load = tmp.path().join("load.sql");
    let mut sql = tpch::schema();
    for t in tpch::TABLES {
        sql.push_str(&format!(
            "\n\\copy {t} FROM '{}' WITH (FORMAT csv, HEADER true)",
            tmp.path().join(format!("{t}.csv")).display()
        ));
    }
    sql.push_str("\nANALYZE;\n");
    std::fs::write(&load, sql)?;
    pg.csv_file(&load)?;
    std::fs::create_dir_all(&out)?;
    for (name, q) in tpch::queries(sf) {
        let f = tmp.path().join(format!("{name}.sql"));
        std::fs::write(&f, &q)?;
        let answer = pg
            .csv_file(&f)
            .with_context(|| format!("{name} in PostgreSQL"))?;
        std::fs::write(out.join(format!("{name}.csv")), &answer)?;
        println!("{name}: {} rows", answer.lines().count().saturating_sub(1));
    }
    println!("answers in {}", out.display());
    Ok(())
}

/// Indexes on the foreign keys, as TPC-H allows (spec 1.4.2.3), for
/// PostgreSQL.
const PG_INDEXES: &str = "
CREATE INDEX ON lineitem (l_partkey, l_suppkey);
CREATE INDEX ON lineitem (l_suppkey);
CREATE INDEX ON partsupp (ps_suppkey);
CREATE INDEX ON orders (o_custkey);
CREATE INDEX ON customer (c_nationkey);
CREATE INDEX ON supplier (s_nationkey);
CREATE INDEX ON nation (n_regionkey);";

/// The same indexes, named, for ScratchBird (made after the load: each
/// builds from the rows in one pass).
const SB_INDEXES: &str = "
CREATE INDEX lineitem_part_supp ON lineitem (l_partkey, l_suppkey);
CREATE INDEX lineitem_supp ON lineitem (l_suppkey);
CREATE INDEX partsupp_supp ON partsupp (ps_suppkey);
CREATE INDEX orders_cust ON orders (o_custkey);
CREATE INDEX customer_nation ON customer (c_nationkey);
CREATE INDEX supplier_nation ON supplier (s_nationkey);
CREATE INDEX nation_region ON nation (n_regionkey);";

/// `sb sql --local DIR`.
fn sb(bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["sql", "--local"]).arg(dir);
    c
}

fn checked(mut c: Command, what: &str) -> Result<std::process::Output> {
    let o = c.output().with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(o)
}

/// One query's figures.
struct Timed {
    name: String,
    sb: Result<f64, String>,
    pg: Result<f64, String>,
    equal: Result<(), String>,
}

/// Runs `file` `runs` times in one `sb sql --local` process: the first run's
/// CSV and the best run's time (the `time:` lines of `--timing`, summed per
/// run).
fn sb_query(
    a: &Args,
    bin: &Path,
    dir: &Path,
    tmp: &Path,
    name: &str,
    q: &str,
) -> Result<(String, f64), String> {
    let f = tmp.join(format!("{name}-x{}.sql", a.runs));
    let mut text = String::new();
    for _ in 0..a.runs {
        text.push_str(q);
        text.push('\n');
    }
    std::fs::write(&f, text).map_err(|e| e.to_string())?;
    let mut c = sb(bin, dir);
    c.args(["--format", "csv", "--timing"])
        .args(["--timeout-ms", &a.timeout_ms.to_string()])
        .args(["--memory-mib", &a.memory_mib.to_string()])
        // the buffer pool PostgreSQL gets (shared_buffers=3GB)
        .args(["--cache-mib", "3072"])
        .arg("-f")
        .arg(&f);
    let o = c.output().map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        let why = err
            .lines()
            .find(|l| l.contains("rror"))
            .unwrap_or_else(|| err.trim());
        return Err(why.to_owned());
    }
    let times: Vec<f64> = err
        .lines()
        .filter_map(|l| l.strip_prefix("time: "))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .collect();
    let per = times.len() / a.runs;
    if per == 0 || !times.len().is_multiple_of(a.runs) {
        return Err(format!("{} timings for {} runs", times.len(), a.runs));
    }
    let best = times
        .chunks(per)
        .map(|c| c.iter().sum::<f64>())
        .fold(f64::INFINITY, f64::min)
        / 1000.0;
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    if !lines.len().is_multiple_of(a.runs) {
        return Err(format!(
            "{} lines of output for {} runs",
            lines.len(),
            a.runs
        ));
    }
    let first = lines[..lines.len() / a.runs].join("\n");
    Ok((first, best))
}

fn bench(a: &Args) -> Result<()> {
    if !Postgres::available() {
        bail!("PostgreSQL 15 is not installed: run benches/setup-postgres.sh");
    }
    let bin = scratchbird_benches::sb_binary(a.sb.as_deref())?;
    let tmp = tempfile::Builder::new().prefix("sb-tpch-bench").tempdir()?;
    // PostgreSQL's server reads the files as the postgres user
    Command::new("chmod")
        .args(["755", &tmp.path().display().to_string()])
        .status()?;
    let data = match &a.data {
        Some(d) => d.clone(),
        None => {
            eprintln!("writing TPC-H at SF {}", a.sf);
            tpch::write_csv(tmp.path(), a.sf)?;
            tmp.path().to_path_buf()
        }
    };
    let dir = tmp.path().join("sb");
    eprintln!("loading ScratchBird (sb load)");
    let t = Instant::now();
    let schema = tmp.path().join("schema.sql");
    std::fs::write(&schema, tpch::schema())?;
    let mut c = sb(&bin, &dir);
    c.arg("-f").arg(&schema);
    checked(c, "sb sql (schema)")?;
    for t in tpch::TABLES {
        let mut c = Command::new(&bin);
        c.args(["load", t])
            .arg(data.join(format!("{t}.csv")))
            .args(["--header", "--local"])
            .arg(&dir);
        checked(c, &format!("sb load {t}"))?;
    }
    let indexes = tmp.path().join("indexes.sql");
    std::fs::write(&indexes, SB_INDEXES)?;
    let mut c = sb(&bin, &dir);
    c.arg("-f").arg(&indexes);
    checked(c, "sb sql (indexes)")?;
    let sb_load = t.elapsed().as_secs_f64();
    eprintln!("loading PostgreSQL 15 (COPY, ANALYZE)");
    let pg = Postgres::start(5495)?;
    let t = Instant::now();
    let load = tmp.path().join("load.sql");
    let mut sql = tpch::schema();
    for t in tpch::TABLES {
        sql.push_str(&format!(
            "\nCOPY {t} FROM '{}' WITH (FORMAT csv, HEADER true);",
            data.join(format!("{t}.csv")).display()
        ));
    }
    // the indexes TPC-H allows (foreign keys), without which PostgreSQL runs
    // Q17's and Q20's correlated subqueries as a scan of lineitem per row
    sql.push_str(PG_INDEXES);
    sql.push_str("\nANALYZE;\n");
    std::fs::write(&load, sql)?;
    pg.csv_file(&load)?;
    let pg_load = t.elapsed().as_secs_f64();
    pg.sql(&format!(
        "ALTER SYSTEM SET statement_timeout = {}",
        a.timeout_ms
    ))?;
    pg.sql("SELECT pg_reload_conf()")?;
    let duck = if a.duckdb {
        duckdb(a, &data, tmp.path())
    } else {
        Err("--no-duckdb".to_owned())
    };
    if let Err(e) = &duck {
        eprintln!("DuckDB: {e}");
    }
    let mut rows: Vec<Timed> = Vec::new();
    for (name, q) in tpch::queries(a.sf) {
        eprintln!("{name}");
        let f = tmp.path().join(format!("{name}.sql"));
        std::fs::write(&f, &q)?;
        let expected = pg.csv_file(&f).map_err(|e| e.to_string());
        let pg_s = match &expected {
            Ok(_) => pg.time_file(&f, a.runs).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let (sb_s, equal) = match (sb_query(a, &bin, &dir, tmp.path(), &name, &q), &expected) {
            (Ok((got, s)), Ok(expected)) => (Ok(s), tpch::compare(expected, &got)),
            (Ok((_, s)), Err(_)) => (Ok(s), Err("PostgreSQL did not answer".into())),
            (Err(e), _) => (Err(e), Err("did not run".into())),
        };
        eprintln!(
            "{name}: ScratchBird {}, PostgreSQL {}, same answer: {}",
            match &sb_s {
                Ok(s) => format!("{:.1} ms", s * 1000.0),
                Err(e) => format!("failed ({e})"),
            },
            match &pg_s {
                Ok(s) => format!("{:.1} ms", s * 1000.0),
                Err(e) => format!("failed ({})", e.lines().next().unwrap_or_default()),
            },
            match &equal {
                Ok(()) => "yes".to_owned(),
                Err(e) => e.lines().next().unwrap_or_default().to_owned(),
            }
        );
        rows.push(Timed {
            name,
            sb: sb_s,
            pg: pg_s,
            equal,
        });
    }
    report(a, &rows, &duck.unwrap_or_default(), sb_load, pg_load);
    Ok(())
}

/// Prints the table of `bench`'s figures and the geometric means.
fn report(a: &Args, rows: &[Timed], duck: &HashMap<String, f64>, sb_load: f64, pg_load: f64) {
    println!(
        "TPC-H SF {}, best of {} runs each, one core each; load: ScratchBird {sb_load:.1} s (sb load), PostgreSQL {pg_load:.1} s (COPY and ANALYZE){}\n",
        a.sf,
        a.runs,
        duck.get("load")
            .map(|s| format!(", DuckDB {s:.1} s (COPY, in memory)"))
            .unwrap_or_default()
    );
    println!(
        "| query | ScratchBird | PostgreSQL 15 | PostgreSQL / ScratchBird | DuckDB | DuckDB / ScratchBird | same answer as PostgreSQL |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut logs = 0.0;
    let mut n = 0u32;
    let (mut dlogs, mut dn) = (0.0, 0u32);
    for r in rows {
        let s = match &r.sb {
            Ok(s) => format!("{:.1} ms", s * 1000.0),
            Err(e) => format!("failed: {e}"),
        };
        let p = match &r.pg {
            Ok(p) => format!("{:.1} ms", p * 1000.0),
            Err(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
        };
        let ratio = match (&r.sb, &r.pg) {
            (Ok(s), Ok(p)) => {
                logs += (p / s).ln();
                n += 1;
                format!("{:.2}", p / s)
            }
            _ => "-".into(),
        };
        let eq = match &r.equal {
            Ok(()) => "yes".to_owned(),
            Err(e) => format!("**no**: {}", e.lines().next().unwrap_or_default()),
        };
        let d = duck.get(&r.name);
        let (dt, dr) = match (d, &r.sb) {
            (Some(d), Ok(s)) => {
                dlogs += (d / s).ln();
                dn += 1;
                (format!("{:.1} ms", d * 1000.0), format!("{:.2}", d / s))
            }
            (Some(d), Err(_)) => (format!("{:.1} ms", d * 1000.0), "-".into()),
            (None, _) => ("-".into(), "-".into()),
        };
        println!("| {} | {s} | {p} | {ratio} | {dt} | {dr} | {eq} |", r.name);
    }
    if n > 0 {
        println!(
            "\ngeometric mean of PostgreSQL / ScratchBird over the {n} queries both ran: {:.2}",
            (logs / f64::from(n)).exp()
        );
    }
    if dn > 0 {
        println!(
            "geometric mean of DuckDB / ScratchBird over the {dn} queries both ran: {:.2}",
            (dlogs / f64::from(dn)).exp()
        );
    }
}

/// DuckDB's best time per query (and `load`), from `duckdb_tpch.py` run by
/// the Python of `setup-duckdb.sh`'s environment.
fn duckdb(a: &Args, data: &Path, tmp: &Path) -> Result<HashMap<String, f64>, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = Command::new("bash")
        .arg(here.join("setup-duckdb.sh"))
        .output()
        .map_err(|e| format!("setup-duckdb.sh: {e}"))?;
    if !setup.status.success() {
        return Err(format!(
            "setup-duckdb.sh failed: {}",
            String::from_utf8_lossy(&setup.stderr).trim()
        ));
    }
    let python = String::from_utf8_lossy(&setup.stdout).trim().to_owned();
    let schema = tmp.join("duckdb-schema.sql");
    std::fs::write(&schema, tpch::schema()).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for (name, q) in tpch::queries(a.sf) {
        let f = tmp.join(format!("duckdb-{name}.sql"));
        std::fs::write(&f, q).map_err(|e| e.to_string())?;
        files.push(f);
    }
    eprintln!("DuckDB: loading and running the 22 queries");
    let o = Command::new(python)
        .arg(here.join("duckdb_tpch.py"))
        .arg(data)
        .arg(&schema)
        .arg(a.runs.to_string())
        .args(&files)
        .output()
        .map_err(|e| format!("python: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "duckdb_tpch.py failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (name, secs) = l.split_once(' ')?;
            let name = name.strip_prefix("duckdb-").unwrap_or(name);
            Some((name.to_owned(), secs.trim().parse().ok()?))
        })
        .collect())
}
