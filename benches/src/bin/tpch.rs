//! TPC-H: the data, PostgreSQL's answers, and (with `bench`) the 22 queries
//! timed beside PostgreSQL 15.
//!
//! ```text
//! benches/setup-postgres.sh      # once: installs PostgreSQL 15 if missing
//! cargo run --release -p scratchbird-benches --bin tpch -- gen --sf 1 --out /tmp/tpch-sf1
//! cargo run --release -p scratchbird-benches --bin tpch -- answers --sf 0.01
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
use std::path::PathBuf;

const HELP: &str = "tpch: TPC-H data and PostgreSQL 15's answers.

Usage:
  tpch gen --sf SF --out DIR        write TABLE.csv for the 8 tables (CSV with a header)
  tpch answers --sf SF [--out DIR]  load them into PostgreSQL 15 and write qNN.csv for the
                                    22 queries (default DIR: tests/tpch/answers/sfSF)

SF is the scale factor: 1 is 8.66 M rows (6 M in lineitem), 0.01 is 87 k.
PostgreSQL must be installed: benches/setup-postgres.sh.";

struct Args {
    cmd: String,
    sf: f64,
    out: Option<PathBuf>,
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
    };
    let mut i = 1;
    while i < v.len() {
        let val = v
            .get(i + 1)
            .with_context(|| format!("{} needs a value", v[i]))?;
        match v[i].as_str() {
            "--sf" => a.sf = val.parse().context("--sf takes a number, like 0.01 or 1")?,
            "--out" => a.out = Some(PathBuf::from(val)),
            other => bail!("unknown option {other}\n\n{HELP}"),
        }
        i += 2;
    }
    if !(a.sf > 0.0 && a.sf <= 100.0) {
        bail!("--sf must be above 0 and at most 100");
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
