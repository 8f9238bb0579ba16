//! Differential test against SQLite (rusqlite, bundled): generated tables, generated
//! queries (including uncorrelated IN / EXISTS / scalar subqueries) in the SQL both
//! engines define the same way; the results must be
//! identical (as multisets, or as lists where ORDER BY fixes the order). A query
//! that ScratchBird refuses with a SQL error (overflow, for instance) where SQLite
//! returns something is counted and skipped: that is where the engines define the
//! result differently. Queries: 2,000 by default
//! (`.ci/soak` runs 20,000); `SB_DIFF_QUERIES` for more,
//! `SB_DIFF_SEED` to change the seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, open_storage};
use std::sync::Arc;

mod common;
use common::{Rng, assert_agree, compare, env_or, setup_sql};

#[test]
fn generated_queries_agree_with_sqlite() {
    let queries: usize = env_or("SB_DIFF_QUERIES", 2000);
    let seed: u64 = env_or("SB_DIFF_SEED", 0x5B_D1FF);
    let mut rng = Rng(seed | 1);
    let setup = setup_sql(&mut rng);
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("PRAGMA case_sensitive_like = ON;")
        .unwrap();
    conn.execute_batch(&setup).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut s = LocalSession::new(Arc::new(open_storage(dir.path()).unwrap()), sandbox);
    s.execute(&setup).unwrap();
    let (compared, skipped) = assert_agree(
        compare(&mut s, &conn, &mut rng, queries, "sqlite"),
        queries,
        "sqlite",
    );
    eprintln!(
        "differential: {compared} queries identical, {skipped} skipped (defined differently)"
    );
}
