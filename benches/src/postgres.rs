//! A private PostgreSQL 15 cluster for side-by-side measurements: created in a temp
//! directory, run as the `postgres` user on a Unix socket in that directory, stopped
//! and removed on drop.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

fn run(mut c: Command, what: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Postgres {
    /// Whether PostgreSQL 15 is installed (`benches/setup-postgres.sh` installs it).
    #[must_use]
    pub fn available() -> bool {
        Path::new(BIN).join("postgres").exists()
    }

    /// Creates and starts a cluster: one core per query, buffers large enough for
    /// the data set (a warm comparison, as ours).
    ///
    /// # Errors
    /// initdb or start failed.
    pub fn start(port: u16) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("sb-bench-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres", &dir.display().to_string()]);
                c
            },
            "chown",
        )?;
        let data = dir.join("data");
        let mut c = as_postgres(&format!("{BIN}/initdb"));
        c.args([
            "-D",
            &data.display().to_string(),
            "--no-sync",
            "-A",
            "trust",
            "-E",
            "UTF8",
        ]);
        run(c, "initdb")?;
        let opts = format!(
            "-p {port} -k {} -c shared_buffers=3GB -c max_parallel_workers_per_gather=0 -c jit=off -c listen_addresses=''",
            dir.display()
        );
        let mut c = as_postgres(&format!("{BIN}/pg_ctl"));
        c.args([
            "-D",
            &data.display().to_string(),
            "-w",
            "-o",
            &opts,
            "-l",
            &dir.join("log").display().to_string(),
            "start",
        ]);
        run(c, "pg_ctl start")?;
        Ok(Self { dir, port })
    }

    /// Runs SQL; returns psql's output.
    ///
    /// # Errors
    /// psql failed.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut c = self.psql();
        c.args(["-A", "-t"]);
        c.args(["-c", "\\timing on", "-c", sql]);
        run(c, "psql")
    }

    /// psql, connected to the cluster's `postgres` database, quiet, without
    /// a startup file.
    fn psql(&self) -> Command {
        let mut c = as_postgres(&format!("{BIN}/psql"));
        c.args([
            "-h",
            &self.dir.display().to_string(),
            "-p",
            &self.port.to_string(),
            "-d",
            "postgres",
            "-X",
            "-q",
        ]);
        c
    }

    /// Runs a file of SQL; returns psql's output as CSV with a header (`--csv`).
    /// psql stops at the first error.
    ///
    /// # Errors
    /// psql failed (the error is in the message).
    pub fn csv_file(&self, file: &Path) -> Result<String> {
        let mut c = self.psql();
        c.args([
            "--csv",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            &file.display().to_string(),
        ]);
        run(c, "psql")
    }

    /// The best of `runs` runs of a file of statements, in seconds: psql's
    /// `\timing` of each statement, summed over a run's statements.
    ///
    /// # Errors
    /// psql failed or printed no timing.
    pub fn time_file(&self, file: &Path, runs: usize) -> Result<f64> {
        let mut c = self.psql();
        c.args(["-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "\\timing on"]);
        let f = file.display().to_string();
        for _ in 0..runs {
            c.args(["-f", &f]);
        }
        let out = run(c, "psql")?;
        let times: Vec<f64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Time:"))
            .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .collect();
        let per = times.len() / runs.max(1);
        if per == 0 || !times.len().is_multiple_of(runs.max(1)) {
            bail!("psql printed {} timings for {runs} runs", times.len());
        }
        let best = times
            .chunks(per)
            .map(|c| c.iter().sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        Ok(best / 1000.0)
    }

    /// The server-side time of one statement, in seconds (psql's `\timing`).
    ///
    /// # Errors
    /// psql failed or printed no timing.
    pub fn time(&self, sql: &str) -> Result<f64> {
        let out = self.sql(sql)?;
        let line = out
            .lines()
            .find(|l| l.starts_with("Time:"))
            .context("psql printed no timing")?;
        let ms: f64 = line
            .trim_start_matches("Time:")
            .split_whitespace()
            .next()
            .context("timing")?
            .parse()?;
        Ok(ms / 1000.0)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut c = as_postgres(&format!("{BIN}/pg_ctl"));
        c.args([
            "-D",
            &self.dir.join("data").display().to_string(),
            "-m",
            "immediate",
            "stop",
        ]);
        let _ = c.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
