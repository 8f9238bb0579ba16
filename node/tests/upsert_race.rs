//! INSERT ... ON CONFLICT DO UPDATE against a concurrent insert of the same
//! key, as PostgreSQL behaves under READ COMMITTED: the upsert waits for the
//! other writer and, once that commits, updates the row it wrote instead of
//! failing with the key's violation.
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
use std::time::Duration;

fn rows(s: &mut LocalSession, sql: &str) -> Vec<Vec<Value>> {
    match s.execute(sql).unwrap().pop() {
        Some(Outcome::Rows { batches, .. }) => {
            batches.iter().flat_map(|b| b.rows().unwrap()).collect()
        }
        other => panic!("{sql}: not rows: {other:?}"),
    }
}

#[test]
fn an_upsert_that_waited_for_a_concurrent_insert_updates_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(open_storage(dir.path()).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut a = LocalSession::new(storage.clone(), sandbox.clone());
    a.execute("CREATE TABLE counts (k INTEGER PRIMARY KEY, n INTEGER, tag TEXT UNIQUE)")
        .unwrap();
    for (key, tag) in [(1, "one"), (2, "two")] {
        a.execute("BEGIN").unwrap();
        a.execute(&format!("INSERT INTO counts VALUES ({key}, 10, '{tag}')"))
            .unwrap();
        // the other session's upsert of the same key waits for this
        // transaction, then sees its row committed
        let (storage, sandbox) = (storage.clone(), sandbox.clone());
        let other = std::thread::spawn(move || {
            let mut b = LocalSession::new(storage, sandbox);
            let sql = if key == 1 {
                // by the primary key
                "INSERT INTO counts VALUES (1, 5, 'uno') ON CONFLICT (k) DO UPDATE SET n = counts.n + excluded.n RETURNING k, n, tag"
            } else {
                // by a unique column, with a new key
                "INSERT INTO counts VALUES (20, 5, 'two') ON CONFLICT (tag) DO UPDATE SET n = counts.n + excluded.n RETURNING k, n, tag"
            };
            rows(&mut b, sql)
        });
        std::thread::sleep(Duration::from_millis(300));
        a.execute("COMMIT").unwrap();
        let got = other.join().unwrap();
        assert_eq!(
            got,
            vec![vec![
                Value::Integer(key),
                Value::Integer(15),
                Value::Text(tag.into())
            ]],
            "key {key}"
        );
    }
    assert_eq!(
        rows(&mut a, "SELECT k, n FROM counts ORDER BY k"),
        vec![
            vec![Value::Integer(1), Value::Integer(15)],
            vec![Value::Integer(2), Value::Integer(15)],
        ]
    );
}
