//! The leak oracle: for each principal of a test bundle (`tests/bundles/leak`: row
//! predicates on both tables of the differential test's generated database, a mask
//! on one column), generated queries run (a) in ScratchBird with the bundle
//! enforced by the host and (b) in SQLite over a copy of the data that the oracle
//! filtered row by row with Cedar's own authorizer and masked itself. The results
//! must be identical. Queries per principal: 500 by default, `SB_LEAK_QUERIES`
//! for more, `SB_LEAK_SEED` for another seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod common;
use common::{Rng, assert_agree, compare, env_or, setup_sql};

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, Request};
use scratchbird_host::{Access, Principal, Sandbox, SandboxLimits};
use scratchbird_node::{LocalSession, Outcome, SystemEnv};
use scratchbird_policy::Bundle;
use scratchbird_policy::derive::{Deriver, SecurityContext};
use scratchbird_storage::{Storage, StorageConfig};
use scratchbird_types::Value;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/leak")
}

/// Cedar's decision on `action` for `principal` and `resource` (with `row` as the
/// resource entity, if any).
fn cedar(
    bundle: &Bundle,
    base: &[serde_json::Value],
    principal: &str,
    action: &str,
    resource: &str,
    row: Option<serde_json::Value>,
) -> bool {
    let action = EntityUid::from_str(&format!("Action::\"{action}\"")).unwrap();
    let mut ents = base.to_vec();
    ents.extend(row);
    let entities =
        Entities::from_json_value(serde_json::Value::Array(ents), Some(bundle.schema())).unwrap();
    let context =
        Context::from_json_value(serde_json::json!({}), Some((bundle.schema(), &action))).unwrap();
    let req = Request::new(
        EntityUid::from_str(principal).unwrap(),
        action,
        EntityUid::from_str(resource).unwrap(),
        context,
        Some(bundle.schema()),
    )
    .unwrap();
    Authorizer::new()
        .is_authorized(&req, bundle.policies(), &entities)
        .decision()
        == Decision::Allow
}

/// keep_last(1), written independently of the policy crate: every character but
/// the last becomes '*'.
fn keep_last_1(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + 1 < n { '*' } else { c })
        .collect()
}

fn sql_literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(x) => x.to_string(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        other => panic!("unexpected value {other:?}"),
    }
}

fn table_rows(s: &mut LocalSession, sql: &str) -> Vec<Vec<Value>> {
    let Some(Outcome::Rows { batches, .. }) = s.execute(sql).unwrap().pop() else {
        panic!("no rows");
    };
    batches.iter().flat_map(|b| b.rows().unwrap()).collect()
}

#[test]
fn principals_see_exactly_what_cedar_allows() {
    let queries: usize = env_or("SB_LEAK_QUERIES", 500);
    let seed: u64 = env_or("SB_LEAK_SEED", 0x1EA4);
    let mut rng = Rng(seed | 1);
    let setup = setup_sql(&mut rng);
    // ScratchBird: t1.s declared in the masked domain
    let ours_setup = format!(
        "CREATE DOMAIN tag AS VARCHAR(10);\n{}",
        setup.replacen("s VARCHAR(10)", "s tag", 1)
    );
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxLimits::default(), None).unwrap());
    // no retention: the sweep below may fold every committed version into pages
    let mut config = StorageConfig::new(Arc::new(SystemEnv::default()));
    config.retention_micros = 0;
    let store = Arc::new(Storage::open(dir.path(), config).unwrap());
    let mut s = LocalSession::new(store.clone(), sandbox);
    s.execute(&ours_setup).unwrap();
    let t1 = table_rows(&mut s, "SELECT id, a, b, s FROM t1");
    let t2 = table_rows(&mut s, "SELECT id, a, c, s FROM t2");
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let base: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(bundle_dir().join("entities.json")).unwrap())
            .unwrap();
    let ddl: String = setup
        .lines()
        .filter(|l| l.trim_start().starts_with("CREATE TABLE"))
        .collect::<Vec<_>>()
        .join("\n");
    let deriver = Arc::new(Deriver::new(Arc::new(Bundle::load(bundle_dir()).unwrap())));
    let mut total = 0usize;
    for (u, user) in ["low", "mid", "admin"].into_iter().enumerate() {
        if u == 1 {
            // the first principal read record versions one by one (unless the
            // background sweep folded them first); the others read pages, where
            // storage decides a page's rows at a time
            // (the background sweep may have folded them already)
            store.sweep().unwrap();
            let stats = store.stats();
            assert!(
                stats.pages > 0 && stats.delta_versions == 0,
                "not folded: {stats:?}"
            );
        }
        let principal = format!("User::\"{user}\"");
        // the oracle's copy: rows Cedar allows, t1.s masked unless Cedar unmasks
        let unmask = cedar(
            &bundle,
            &base,
            &principal,
            "Unmask",
            "Domain::\"tag\"",
            None,
        );
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA case_sensitive_like = ON;")
            .unwrap();
        conn.execute_batch(&ddl).unwrap();
        let mut visible = [0usize; 2];
        for (ti, (table, ty, cols, rows)) in [
            ("t1", "T1", ["id", "a", "b", "s"], &t1),
            ("t2", "T2", ["id", "a", "c", "s"], &t2),
        ]
        .into_iter()
        .enumerate()
        {
            for r in rows {
                let mut attrs = serde_json::Map::new();
                for (name, v) in cols.iter().zip(r) {
                    match v {
                        Value::Null => {}
                        Value::Integer(x) => {
                            attrs.insert((*name).into(), serde_json::json!(x));
                        }
                        Value::Text(t) => {
                            attrs.insert((*name).into(), serde_json::json!(t));
                        }
                        other => panic!("{other:?}"),
                    }
                }
                let Value::Integer(id) = r[0] else {
                    panic!("id")
                };
                let entity = serde_json::json!({
                    "uid": {"type": ty, "id": id.to_string()},
                    "attrs": attrs,
                    "parents": []
                });
                let resource = format!("{ty}::\"{id}\"");
                if !cedar(&bundle, &base, &principal, "Read", &resource, Some(entity)) {
                    continue;
                }
                visible[ti] += 1;
                let mut vals: Vec<String> = r.iter().map(sql_literal).collect();
                if table == "t1"
                    && !unmask
                    && let Value::Text(t) = &r[3]
                {
                    vals[3] = sql_literal(&Value::Text(keep_last_1(t)));
                }
                conn.execute_batch(&format!(
                    "INSERT INTO {table} VALUES ({});",
                    vals.join(", ")
                ))
                .unwrap();
            }
        }
        // the bundle must make a difference for the test to mean something
        if user != "admin" {
            assert!(
                visible[0] < t1.len() && visible[1] < t2.len(),
                "{user}: {visible:?}"
            );
        }
        assert!(visible[0] > 0 && visible[1] > 0, "{user}: {visible:?}");
        s.set_access(Access::Principal(Arc::new(Principal::new(
            deriver.clone(),
            SecurityContext::new(&principal),
            &[3; 32],
        ))))
        .unwrap();
        let mut qrng = Rng((seed ^ 0x55) | 1);
        let (compared, _) = assert_agree(
            compare(&mut s, &conn, &mut qrng, queries, user),
            queries,
            user,
        );
        total += compared;
        s.set_access(Access::Owner).unwrap();
    }
    eprintln!("leak oracle: {total} queries identical across 3 principals");
}
