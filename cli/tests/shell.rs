//! The `sb sql` shell's own commands, as a user types them: the real binary,
//! statements and commands on standard input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn shell(dir: &std::path::Path, input: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sb"))
        .args(["sql", "--local"])
        .arg(dir)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn timing_and_expanded_display_change_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let o = shell(
        dir.path(),
        "\\timing\nSELECT 1 AS a, 2 AS bb;\n\\timing off\nSELECT 3 AS a;\n\\x\n\
         SELECT 1 AS a, NULL AS longer_name;\nSELECT a FROM (VALUES (1), (2)) v(a);\n\
         \\x off\nSELECT 4 AS a;\n\\x on\n\\?\n",
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{err}");
    // \timing: one time line, for the one statement run while it was on
    assert_eq!(err.matches("time: ").count(), 1, "{err}");
    assert!(out.contains("Timing is on.") && out.contains("Timing is off."));
    // \x: a block per row, names aligned
    assert!(
        out.contains(
            "Expanded display is on.\n-[ RECORD 1 ]\na           | 1\nlonger_name | NULL\n(1 row)"
        ),
        "{out}"
    );
    assert!(
        out.contains("-[ RECORD 1 ]\na | 1\n-[ RECORD 2 ]\na | 2\n(2 rows)"),
        "{out}"
    );
    // and back to the table
    assert!(
        out.contains("Expanded display is off.\na\n-\n4\n(1 row)"),
        "{out}"
    );
    // \? lists the commands
    for c in ["\\timing", "\\x", "\\q", "\\consistency", "\\d", "\\dt"] {
        assert!(out.contains(c), "{c} in the help: {out}");
    }
}

#[test]
fn an_unknown_command_or_argument_is_an_error_and_the_shell_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = shell(dir.path(), "\\dz\n\\x maybe\nSELECT 5 AS a;\n");
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success(), "a failed line fails a script");
    assert!(
        err.contains("\\dz is not a command of this shell: \\? lists them"),
        "{err}"
    );
    assert!(err.contains("\\x takes on or off, not \"maybe\""), "{err}");
    assert!(
        out.contains("a\n-\n5\n(1 row)"),
        "the statement after ran: {out}"
    );
    // \x is for reading: with --format csv the rows stay data
    let o = Command::new(env!("CARGO_BIN_EXE_sb"))
        .args(["sql", "--format", "csv", "--local"])
        .arg(dir.path())
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = o;
    c.stdin
        .take()
        .unwrap()
        .write_all(b"\\x\nSELECT 6 AS a;\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.contains("\\x applies to the table format"), "{err}");
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "a\n6\n");
}

#[test]
fn describing_commands_list_tables_views_and_a_table_s_columns_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = shell(
        dir.path(),
        "CREATE DOMAIN email AS VARCHAR(50);\n\
         CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT 'n', mail email UNIQUE, score DECIMAL(10,2));\n\
         CREATE TABLE other (x INTEGER);\n\
         CREATE VIEW names AS SELECT name FROM person;\n\
         \\d\n\\dt\n\\dv\n\\dt p*\n\\d person\n",
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{err}");
    // \d: tables and views
    assert!(
        out.contains(
            "name   | type\n-------+------\nnames  | view\nother  | table\nperson | table\n(3 rows)"
        ),
        "{out}"
    );
    // \dt, \dv, a pattern
    assert!(
        out.contains("other  | table\nperson | table\n(2 rows)"),
        "{out}"
    );
    assert!(out.contains("names | view\n(1 row)"), "{out}");
    assert!(out.contains("person | table\n(1 row)"), "{out}");
    // \d NAME: columns with their types, then the keys
    for line in [
        "id     | integer               | not null |         |",
        "name   | text                  | not null | 'n'     |",
        "mail   | character varying(50) |          |         | email",
        "score  | numeric(10,2)         |          |         |",
        "person_pkey     | PRIMARY KEY | id",
        "person_mail_key | UNIQUE      | mail",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

#[test]
fn the_page_cache_of_a_local_directory_is_sized_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let run = |mib: &str| {
        Command::new(env!("CARGO_BIN_EXE_sb"))
            .args(["sql", "--local"])
            .arg(dir.path())
            .args(["--cache-mib", mib, "-c", "SELECT 41 + 1 AS x"])
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    let small = run("8");
    assert!(!small.status.success());
    let err = String::from_utf8(small.stderr).unwrap();
    assert!(
        err.contains("--cache-mib") && err.contains("16..=65536"),
        "{err}"
    );
    let ok = run("64");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8(ok.stdout).unwrap().contains("42"));
}
