//! Runs every sqllogictest file under `tests/slt/` against a fresh node (real
//! storage in a temporary folder, the real compiler and the wasmtime sandbox).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, SessionError, display_value, open_storage};
use scratchbird_types::SqlType;
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::PathBuf;
use std::sync::Arc;

struct Db {
    session: LocalSession,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl sqllogictest::DB for Db {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let outs = self
            .session
            .execute(sql)
            .map_err(|e: SessionError| Error(e.to_string()))?;
        let Some(last) = outs.into_iter().last() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        Ok(match last {
            Outcome::Rows {
                columns, batches, ..
            } => {
                let types = columns
                    .iter()
                    .map(|(_, t)| match t {
                        SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => {
                            DefaultColumnType::Integer
                        }
                        SqlType::Double | SqlType::Decimal { .. } => {
                            DefaultColumnType::FloatingPoint
                        }
                        _ => DefaultColumnType::Text,
                    })
                    .collect();
                let mut rows = Vec::new();
                for b in &batches {
                    for r in b.rows().map_err(|e| Error(e.to_string()))? {
                        rows.push(
                            r.iter()
                                .map(|v| {
                                    let s = display_value(v);
                                    if s.is_empty() {
                                        "(empty)".to_owned()
                                    } else {
                                        s
                                    }
                                })
                                .collect(),
                        );
                    }
                }
                DBOutput::Rows { types, rows }
            }
            Outcome::Written { rows, .. } => DBOutput::StatementComplete(rows),
            Outcome::Done(_) => DBOutput::StatementComplete(0),
            Outcome::Streamed { .. } => {
                return Err(Error("this session does not stream rows".into()));
            }
            Outcome::Explain(text) => DBOutput::Rows {
                types: vec![DefaultColumnType::Text],
                rows: text.lines().map(|l| vec![l.to_owned()]).collect(),
            },
        })
    }

    fn engine_name(&self) -> &str {
        "scratchbird"
    }
}

fn files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/slt");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        // SB_SLT_ONLY=094 runs only the files whose name holds it
        .filter(|p| {
            std::env::var("SB_SLT_ONLY").map_or(true, |only| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(&only))
            })
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no .slt files in {}", dir.display());
    v
}

#[test]
fn sqllogictest_files() {
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut failures = Vec::new();
    let mut records = 0usize;
    for f in files() {
        let text = std::fs::read_to_string(&f).unwrap();
        records += sqllogictest::parse::<DefaultColumnType>(&text)
            .unwrap()
            .len();
        let sb = sandbox.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(open_storage(dir.path()).unwrap());
            let db = Db {
                session: LocalSession::new(storage, sb.clone()),
                _dir: dir,
            };
            async move { Ok::<_, Error>(db) }
        });
        // every record runs, so one report lists every failure
        for record in sqllogictest::parse_file::<DefaultColumnType>(&f).unwrap() {
            if let Err(e) = runner.run(record) {
                failures.push(format!("{}:\n{}", f.display(), e.display(false)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("sqllogictest: {records} records passed");
}
