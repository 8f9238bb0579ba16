//! The one shard runner's audit rule, through the path every statement takes
//! (the coordinator core, a signed envelope, the shard, `host::Execution`): no
//! batch leaves before a durable record names its execution. A one-batch answer
//! is held until the execution's own record is durable (one record); a
//! many-batch answer writes a `started` record before its first batch leaves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::audit::{AuditLog, read_records};
use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Step, open_storage};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The outcomes of the records in the trail at `dir`.
fn outcomes(dir: &std::path::Path) -> Vec<String> {
    let (recs, _) = read_records(&dir.join("audit.log")).unwrap();
    recs.into_iter().map(|r| r.outcome).collect()
}

#[test]
fn no_batch_leaves_before_a_durable_record_names_its_execution() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(open_storage(&tmp.path().join("db")).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(storage, sandbox);
    s.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        .unwrap();
    let values: Vec<String> = (0..20_000).map(|i| format!("({i}, {})", i % 7)).collect();
    s.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .unwrap();
    let trail: PathBuf = tmp.path().join("audit");
    s.set_audit(Arc::new(
        AuditLog::open(
            &trail,
            &scratchbird_types::NodeName::LOCAL,
            Arc::new(scratchbird_node::SystemEnv::default()),
        )
        .unwrap(),
    ))
    .unwrap();
    // what the trail held each time a batch reached the client
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let (t2, s2) = (trail.clone(), seen.clone());
    s.set_stream(Some(Box::new(move |step| {
        if let Step::Batch(_) = step {
            s2.lock().unwrap().push(outcomes(&t2));
        }
        Ok(())
    })));

    // one batch: held until the execution's own record is durable
    s.execute("SELECT v FROM t WHERE id = 3").unwrap();
    assert_eq!(outcomes(&trail), ["ok"]);
    assert_eq!(seen.lock().unwrap().as_slice(), [vec!["ok".to_owned()]]);

    // many batches: a durable `started` record before the first leaves
    seen.lock().unwrap().clear();
    s.execute("SELECT id, v FROM t").unwrap();
    assert_eq!(outcomes(&trail), ["ok", "started", "ok"]);
    {
        let seen = seen.lock().unwrap();
        assert!(seen.len() > 1, "{} batches", seen.len());
        assert_eq!(seen[0], ["ok", "started"]);
    }

    // a query that fails in its first batch: nothing leaves, the error is recorded
    seen.lock().unwrap().clear();
    let e = s.execute("SELECT 1 / (v - 3) FROM t").unwrap_err();
    assert!(e.to_string().contains("division"), "{e}");
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(outcomes(&trail).last().map(String::as_str), Some("error"));
}
