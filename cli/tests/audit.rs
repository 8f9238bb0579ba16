//! `sb sql --local` as a principal and `sb audit ...`, as a user runs them: the real
//! binary over a real data directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn saas() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/bundles/saas")
        .display()
        .to_string()
}

fn sb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sb"))
        .args(args)
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = sb(args);
    assert!(
        o.status.success(),
        "sb {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

const SETUP: &str = "CREATE DOMAIN email AS VARCHAR(254); \
    CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id INTEGER NOT NULL, \
    name VARCHAR(120) NOT NULL, email email, plan VARCHAR(20) NOT NULL, mrr DECIMAL(12,2)); \
    INSERT INTO customers VALUES (1, 1, 'Acme', 'ops@acme.test', 'pro', 120.00), \
    (2, 1, 'Bolt', 'hi@bolt.test', 'free', 0.00), (4, 2, 'Dyne', 'a@dyne.test', 'pro', 300.00)";

#[test]
fn principals_see_their_rows_and_every_execution_is_audited() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db");
    let db = db.to_str().unwrap();
    let bundle = saas();
    ok(&["sql", "--local", db, "-c", SETUP]);
    let q = "SELECT id, email FROM customers ORDER BY id";
    let alice = ok(&[
        "sql", "--local", db, "--bundle", &bundle, "--user", "alice", "--format", "csv", "-c", q,
    ]);
    assert_eq!(alice, "id,email\n1,ops@acme.test\n2,hi@bolt.test\n");
    let sam = ok(&[
        "sql", "--local", db, "--bundle", &bundle, "--user", "sam", "--format", "csv", "-c", q,
    ]);
    assert_eq!(sam.lines().count(), 4, "{sam}");
    assert!(!sam.contains('@'), "support saw an address: {sam}");
    let denied = sb(&[
        "sql",
        "--local",
        db,
        "--bundle",
        &bundle,
        "--user",
        "alice",
        "-c",
        "SELECT mrr FROM customers",
    ]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr)
            .contains("permission denied for column customers.mrr")
    );

    // records: the two schema changes; the insert; each ORDER BY query's shard
    // stage and merge stage; the refused query's shard stage
    let verified = ok(&["audit", "verify", "--data", db]);
    assert!(verified.starts_with("ok: 8 records"), "{verified}");
    let all = ok(&["audit", "show", "--data", db]);
    assert!(
        all.contains("schema change: CREATE DOMAIN email;")
            && all.contains("schema change: CREATE TABLE customers;"),
        "{all}"
    );
    let shown = ok(&[
        "audit",
        "show",
        "--data",
        db,
        "--principal",
        "User::\"alice\"",
    ]);
    assert_eq!(shown.lines().count(), 3, "{shown}");
    let errors = ok(&[
        "audit",
        "show",
        "--data",
        db,
        "--outcome",
        "error",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(errors.trim()).unwrap();
    assert_eq!(v["principal"], "User::\"alice\"");
    assert!(v["error"].as_str().unwrap().contains("customers.mrr"));
    let sam_rec = ok(&[
        "audit",
        "show",
        "--data",
        db,
        "--principal",
        "User::\"sam\"",
        "--table",
        "customers",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(sam_rec.trim()).unwrap();
    assert_eq!(v["cells_masked"], 3);
    assert_eq!(v["tables"][0], "customers");
    assert_eq!(
        ok(&["audit", "tail", "--data", db, "-n", "1"])
            .lines()
            .count(),
        1
    );
    assert_eq!(
        ok(&["audit", "show", "--data", db, "--since", "2999-01-01"]),
        ""
    );

    // one changed byte in the trail: verify names the record and fails
    let log = d.path().join("db/audit/audit.log");
    let mut b = std::fs::read(&log).unwrap();
    // the end of the last record (the file goes on in zeros it was grown by)
    let mut n = 0;
    while let Some(len) = b
        .get(n..n + 4)
        .map(|h| u32::from_le_bytes(h.try_into().unwrap()))
    {
        if len == 0 {
            break;
        }
        n += 4 + len as usize;
    }
    b[n - 3] ^= 1;
    std::fs::write(&log, b).unwrap();
    let o = sb(&["audit", "verify", "--data", db]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("BROKEN at record 7"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // and the node refuses to add to it
    let o = sb(&["sql", "--local", db, "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sb audit verify"));
}

#[test]
fn a_relative_data_directory_works_and_its_trail_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_sb"))
            .args(args)
            .current_dir(d.path())
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sb {args:?} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    run(&[
        "sql",
        "--local",
        "rel/db",
        "-c",
        "CREATE TABLE t (a INT); INSERT INTO t VALUES (1)",
    ]);
    let out = run(&[
        "sql",
        "--local",
        "./rel/db",
        "--format",
        "csv",
        "-c",
        "SELECT a FROM t",
    ]);
    assert_eq!(out, "a\n1\n");
    assert!(run(&["audit", "verify", "--data", "rel/db"]).starts_with("ok: "));
    let mode = |p: &str| {
        std::fs::metadata(d.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("rel/db/audit"), 0o700);
    assert_eq!(mode("rel/db/audit/audit.log"), 0o600);
}

#[test]
fn results_before_a_failing_statement_are_printed() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db");
    let db = db.to_str().unwrap();
    let o = sb(&[
        "sql",
        "--local",
        db,
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a; SELECT 2 AS b; SELECT nosuch; SELECT 3 AS c",
    ]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out, "a\n1\nb\n2\n", "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nosuch"));
}

#[test]
fn a_command_may_start_with_a_comment() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("db");
    let db = db.to_str().unwrap();
    let out = ok(&[
        "sql",
        "--local",
        db,
        "--format",
        "csv",
        "-c",
        "-- the schema's first line is often a comment\nSELECT 1 AS a",
    ]);
    assert_eq!(out, "a\n1\n", "{out}");
}
