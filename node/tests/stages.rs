//! The distributed split on one node: which statements get a merge stage, which are
//! marked single-shard, and that the shard stage's outputs combined by the merge
//! stage give the answer (the sqllogictest and SQLite suites check every other
//! statement through the same two stages).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_compiler::{Compiled, Statement, compile, parse};
use scratchbird_host::{Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, catalog_of, display_value, open_storage};
use scratchbird_storage::{Storage, TxnOptions};
use std::sync::Arc;

struct Node {
    _dir: tempfile::TempDir,
    storage: Arc<Storage>,
    session: LocalSession,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(open_storage(dir.path()).unwrap());
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    let mut session = LocalSession::new(storage.clone(), sandbox);
    for sql in [
        "CREATE TABLE t (a INTEGER, b TEXT, c DECIMAL(10,2))",
        "CREATE TABLE u (k INTEGER, v INTEGER)",
        "INSERT INTO t VALUES (1, 'x', 1.50), (2, 'y', 2.25), (3, 'x', NULL), \
         (NULL, NULL, 4.00), (5, 'z', 0.10), (6, 'x', 3.00)",
        "INSERT INTO u VALUES (1, 10), (1, 11), (2, 20), (9, 90)",
    ] {
        session.execute(sql).unwrap();
    }
    Node {
        _dir: dir,
        storage,
        session,
    }
}

fn compiled(n: &Node, sql: &str) -> Compiled {
    let txn = n.storage.begin(TxnOptions::snapshot()).unwrap();
    let cat = catalog_of(&txn).unwrap();
    txn.rollback().unwrap();
    match compile(&parse(sql).unwrap()[0], &cat).unwrap() {
        Statement::Query(c) => *c,
        other => panic!("not a query: {other:?}"),
    }
}

fn rows(n: &mut Node, sql: &str) -> Vec<String> {
    let out = n.session.execute(sql).unwrap();
    let Some(Outcome::Rows { batches, .. }) = out.into_iter().last() else {
        panic!("no rows from {sql}");
    };
    let mut v = Vec::new();
    for b in batches {
        for r in b.rows().unwrap() {
            v.push(r.iter().map(display_value).collect::<Vec<_>>().join("|"));
        }
    }
    v
}

#[test]
fn plain_scans_filters_and_joins_have_no_merge_stage() {
    let n = node();
    for sql in [
        "SELECT a, b FROM t WHERE a > 2",
        "SELECT t.a, u.v FROM t JOIN u ON t.a = u.k",
        "SELECT a FROM t UNION ALL SELECT k FROM u",
        "SELECT 1 + 1",
    ] {
        let c = compiled(&n, sql);
        assert!(c.merge.is_none(), "{sql} has a merge stage");
        assert!(!c.single_shard, "{sql} is marked single-shard");
        assert_eq!(c.manifest.outputs.len(), 1);
    }
}

#[test]
fn aggregates_sorts_limits_and_distinct_get_a_merge_stage() {
    let n = node();
    for (sql, shard_outputs) in [
        ("SELECT count(*), sum(c), min(b), max(a) FROM t", 1),
        ("SELECT b, avg(a) FROM t GROUP BY b HAVING count(*) > 1", 1),
        ("SELECT a FROM t ORDER BY a DESC", 1),
        ("SELECT a FROM t ORDER BY a LIMIT 2 OFFSET 1", 1),
        ("SELECT a FROM t LIMIT 3", 1),
        ("SELECT DISTINCT b FROM t", 1),
        ("SELECT count(DISTINCT b) FROM t", 1),
        (
            "SELECT count(*) FROM t UNION ALL (SELECT a FROM t ORDER BY a LIMIT 1)",
            2,
        ),
    ] {
        let c = compiled(&n, sql);
        let m = c
            .merge
            .as_ref()
            .unwrap_or_else(|| panic!("{sql}: no merge stage"));
        assert!(!c.single_shard, "{sql}");
        assert_eq!(c.manifest.outputs.len(), shard_outputs, "{sql}");
        // the merge stage reads exactly the shard outputs and no table
        assert_eq!(m.manifest.inputs.len(), shard_outputs, "{sql}");
        assert!(m.manifest.scans.is_empty() && m.manifest.writes.is_empty());
        for (i, o) in m.manifest.inputs.iter().zip(&c.manifest.outputs) {
            assert_eq!(i.types, o.types, "{sql}");
            assert_eq!((i.rows_max, i.heap_bytes), (o.rows_max, o.heap_bytes));
        }
        assert!(c.plan.contains("Merge stage") && c.plan.contains("Exchange"));
    }
}

#[test]
fn shapes_routing_cannot_split_yet_are_marked_single_shard() {
    let n = node();
    for sql in [
        // a join over a grouped derived table
        "SELECT t.a, s.n FROM t JOIN (SELECT k, count(*) AS n FROM u GROUP BY k) s ON t.a = s.k",
        // uncorrelated subqueries read tables in init plans
        "SELECT a FROM t WHERE a IN (SELECT k FROM u)",
        "SELECT (SELECT max(v) FROM u), count(*) FROM t",
    ] {
        let c = compiled(&n, sql);
        assert!(c.single_shard, "{sql} is not marked single-shard");
    }
}

#[test]
fn merged_results_are_the_whole_answer() {
    let mut n = node();
    assert_eq!(
        rows(
            &mut n,
            "SELECT count(*), count(a), sum(a), min(b), max(c) FROM t"
        ),
        ["6|5|17|x|4.00"]
    );
    // an empty input: one row, the counts 0 and the rest NULL
    assert_eq!(
        rows(
            &mut n,
            "SELECT count(*), sum(a), max(b) FROM t WHERE a > 100"
        ),
        ["0|NULL|NULL"]
    );
    assert_eq!(
        rows(
            &mut n,
            "SELECT b, count(*), sum(c) FROM t GROUP BY b HAVING count(*) > 1 ORDER BY b"
        ),
        ["x|3|4.50"]
    );
    assert_eq!(
        rows(
            &mut n,
            "SELECT a FROM t ORDER BY a NULLS FIRST LIMIT 2 OFFSET 1"
        ),
        ["1", "2"]
    );
    assert_eq!(
        rows(
            &mut n,
            "SELECT b, count(DISTINCT a) FROM t GROUP BY b ORDER BY b"
        ),
        ["x|3", "y|1", "z|1", "NULL|0"]
    );
    assert_eq!(
        rows(
            &mut n,
            "SELECT DISTINCT b FROM t WHERE b IS NOT NULL ORDER BY b DESC LIMIT 2"
        ),
        ["z", "y"]
    );
    assert_eq!(
        rows(
            &mut n,
            "SELECT count(*) FROM t UNION ALL (SELECT k FROM u ORDER BY v DESC LIMIT 1)"
        ),
        ["6", "9"]
    );
    // the merge stage's statistics: rows read from storage by the shard stage,
    // rows read from the shard output by the merge stage
    let out = n
        .session
        .execute("SELECT b, count(*) FROM t GROUP BY b")
        .unwrap();
    let Some(Outcome::Rows { figures, .. }) = out.into_iter().last() else {
        panic!("no rows");
    };
    assert_eq!(figures.rows_read, 6);
    assert_eq!(figures.rows_input, 4);
    assert_eq!(figures.rows_returned, 4);
}

/// A session keeps compiled statements by their text and catalog: the same text
/// after a schema change (committed, or inside a transaction and rolled back)
/// is compiled again for the schema it now sees.
#[test]
fn a_kept_statement_is_compiled_again_after_a_schema_change() {
    let mut n = node();
    let sql = "SELECT * FROM u WHERE k = 2";
    assert_eq!(rows(&mut n, sql), ["2|20"]);
    assert_eq!(rows(&mut n, sql), ["2|20"], "kept");
    n.session.execute("DROP TABLE u").unwrap();
    n.session
        .execute("CREATE TABLE u (k INTEGER, v TEXT, w INTEGER)")
        .unwrap();
    n.session
        .execute("INSERT INTO u VALUES (2, 'two', 7)")
        .unwrap();
    assert_eq!(rows(&mut n, sql), ["2|two|7"]);
    // a schema change the transaction has not committed is seen by its own
    // statements only, and forgotten with it
    n.session.execute("BEGIN").unwrap();
    n.session.execute("DROP TABLE u").unwrap();
    n.session.execute("CREATE TABLE u (k INTEGER)").unwrap();
    n.session.execute("INSERT INTO u VALUES (2)").unwrap();
    assert_eq!(rows(&mut n, sql), ["2"]);
    n.session.execute("ROLLBACK").unwrap();
    assert_eq!(rows(&mut n, sql), ["2|two|7"]);
    assert!(n.session.execute("DROP TABLE u").is_ok());
    let gone = n.session.execute(sql).unwrap_err().to_string();
    assert!(gone.contains("u"), "{gone}");
}

/// Over several shards, a join of tables placed apart runs in the merge
/// stage; each table's shard output carries only the columns the statement
/// names (a principal who may not read `t.c` can still join `t`).
#[test]
fn a_join_in_the_merge_stage_reads_only_the_columns_it_names() {
    let n = node();
    let txn = n.storage.begin(TxnOptions::snapshot()).unwrap();
    let cat = catalog_of(&txn).unwrap();
    txn.rollback().unwrap();
    let sql = "SELECT t.b, count(*) FROM t JOIN u ON t.a = u.v GROUP BY t.b";
    let Statement::Query(c) =
        scratchbird_compiler::compile_over(&parse(sql).unwrap()[0], &cat, 3).unwrap()
    else {
        panic!("not a query");
    };
    assert!(c.merge.is_some(), "{}", c.plan);
    let (_, columns) = scratchbird_host::envelope::referenced(&c.manifest);
    let t = cat.table_by_name("t").unwrap();
    let names: Vec<&str> = t
        .columns
        .iter()
        .filter(|col| columns.contains(&col.id))
        .map(|col| col.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "{}", c.plan);
}
