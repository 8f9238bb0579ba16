//! `now()`, `current_timestamp` and `current_date`: the coordinator's time
//! when the statement is compiled, the same everywhere in one statement, and
//! never served from the statement cache (a statement run again reads the
//! time again).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, open_storage};
use scratchbird_types::Value;
use std::sync::Arc;

fn one(s: &mut LocalSession, sql: &str) -> Value {
    match s.execute(sql).unwrap().pop() {
        Some(Outcome::Rows { batches, .. }) => batches
            .iter()
            .flat_map(|b| b.rows().unwrap())
            .next()
            .unwrap()
            .into_iter()
            .next()
            .unwrap(),
        other => panic!("{sql}: not rows: {other:?}"),
    }
}

#[test]
fn the_statement_time_is_read_each_time_a_statement_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(Arc::new(open_storage(dir.path()).unwrap()), sandbox);
    let wall = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap()
    };
    let mut last = 0;
    for _ in 0..3 {
        let before = wall();
        let Value::Timestamp(t) = one(&mut s, "SELECT now()") else {
            panic!("now() is not a TIMESTAMP");
        };
        let after = wall();
        assert!(
            before <= t.0 && t.0 <= after,
            "{before} <= {} <= {after}",
            t.0
        );
        assert!(t.0 > last, "the same text run again read the time again");
        last = t.0;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // one time for the whole statement, and UTC's date of it
    assert_eq!(
        one(
            &mut s,
            "SELECT now() = current_timestamp AND current_date = CAST(now() AS DATE) AND localtimestamp = now()"
        ),
        Value::Boolean(true)
    );
    // in a write, and through a view
    s.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, at TIMESTAMP)")
        .unwrap();
    s.execute("INSERT INTO ev VALUES (1, now()), (2, now() - INTERVAL '2 days')")
        .unwrap();
    s.execute("CREATE VIEW recent AS SELECT id FROM ev WHERE at > now() - INTERVAL '1 day'")
        .unwrap();
    assert_eq!(one(&mut s, "SELECT count(*) FROM recent"), Value::BigInt(1));
    // a DEFAULT of it: each INSERT that leaves the column out reads the
    // time again (never the cached statement's)
    s.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, at TIMESTAMP DEFAULT now())")
        .unwrap();
    let mut last = 0;
    for id in 0..3 {
        let before = wall();
        s.execute(&format!("INSERT INTO d (id) VALUES ({id})"))
            .unwrap();
        let after = wall();
        let Value::Timestamp(t) = one(&mut s, &format!("SELECT at FROM d WHERE id = {id}")) else {
            panic!("the default is not a TIMESTAMP");
        };
        assert!(
            before <= t.0 && t.0 <= after,
            "{before} <= {} <= {after}",
            t.0
        );
        assert!(t.0 > last, "each INSERT read the time again");
        last = t.0;
    }
    // an expression over it cannot be a DEFAULT yet: refused, with what to do
    let e = s
        .execute("CREATE TABLE e (id INTEGER PRIMARY KEY, at TIMESTAMP DEFAULT now() + INTERVAL '1 day')")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no time here"), "{e}");
}
