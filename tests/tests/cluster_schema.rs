//! DDL is a cluster operation, on real `sbnode` processes under the control
//! plane: a schema change made at one node is put in the control log and
//! applied by every node, with the same ids (their schemas have equal
//! versions); a node that was down catches up when it returns; a change the
//! bundle does not grant, one inside BEGIN, and a claim a hostile node makes
//! up are refused, and reach no node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_control::schema::SchemaChange;
use scratchbird_control::state::Command as ControlCommand;
use scratchbird_control::wire::{self, PeerAnswer, PeerMessage};
use scratchbird_net::client::{Client, Credentials};
use scratchbird_net::endpoint::TransportLimits;
use scratchbird_net::rpc::{Request, Response};
use scratchbird_storage::TxnOptions;
use scratchbird_tests::{
    ControlCluster, Node, bin, control_cluster, effective, node_id, run, voters,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `sb sql -c SQL` at `n` as `user` (certificate and key in `dir`).
fn sql(c: &ControlCluster, n: &Node, dir: &Path, user: &str, sql: &str) -> Output {
    Command::new(bin("sb"))
        .args(["sql", "-c", sql, "--connect"])
        .arg(n.client_addr.to_string())
        .arg("--cert")
        .arg(dir.join(format!("{user}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{user}.key")))
        .arg("--ca")
        .arg(c.tmp.path().join("ca/ca.crt"))
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ops` runs `text` at `n`, which must succeed.
fn ops(c: &ControlCluster, n: &Node, text: &str) -> String {
    let o = sql(c, n, &c.certs(), "ops", text);
    assert!(o.status.success(), "{text}: {}", out(&o));
    out(&o)
}

/// Waits until `text` succeeds at every node in `nodes` (10 s at most).
fn everywhere(c: &ControlCluster, nodes: &[&Node], text: &str) {
    for n in nodes {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let o = sql(c, n, &c.certs(), "ops", text);
            if o.status.success() {
                break;
            }
            assert!(
                Instant::now() < until,
                "{text} at {}: {}\n{}",
                n.name,
                out(&o),
                n.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends `message` to the peer endpoint at `peer` as the node whose folder is
/// `dir`: the node's answer, or the error code.
fn send_as_node(c: &ControlCluster, dir: &Path, peer: &str, message: &PeerMessage) -> String {
    scratchbird_tests::block_on(async {
        let creds = Credentials::load(
            &dir.join("node.crt"),
            &dir.join("node.key"),
            &c.tmp.path().join("ca/ca.crt"),
        )
        .unwrap();
        let client = Client::connect(peer.parse().unwrap(), &creds, &TransportLimits::default())
            .await
            .unwrap();
        let mut r = client
            .send(&Request::ControlPlane(wire::encode(message).unwrap()))
            .await
            .unwrap();
        match r.next().await {
            Ok(Some(Response::ControlPlane(b))) => match wire::decode::<PeerAnswer>(&b) {
                Ok(PeerAnswer::Refused { code, message, .. }) => format!("{code}: {message}"),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        }
    })
}

/// The schema version of each data directory, read with the nodes stopped.
fn versions(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .map(|d| {
            let s = scratchbird_node::open_storage(&d.join("data")).unwrap();
            let t = s.begin(TxnOptions::snapshot()).unwrap();
            let cat = t.catalog().unwrap();
            let v = format!(
                "{} t={:?} w={:?}",
                cat.version().to_hex(),
                cat.table_by_name("t").map(|t| t.id),
                cat.table_by_name("w").map(|t| t.id)
            );
            t.rollback().unwrap();
            v
        })
        .collect()
}

#[test]
fn a_schema_change_made_at_one_node_is_every_nodes_with_the_same_ids() {
    let c = control_cluster(3);
    let nodes: Vec<Option<Node>> = c.dirs.iter().map(|d| Some(Node::spawn(d))).collect();
    let s = c.wait(
        nodes[0].as_ref().unwrap(),
        "epoch 1 effective with three voters",
        |s| effective(s, 1) && voters(s) == 3,
    );
    let leader = s["leader"].as_str().unwrap().to_owned();

    // three schema changes in one request, made at n1: every node has them
    let n1 = nodes[0].as_ref().unwrap();
    ops(
        &c,
        n1,
        "CREATE DOMAIN email AS VARCHAR(100); CREATE TABLE t (id BIGINT PRIMARY KEY, e VARCHAR(100)); CREATE INDEX t_e ON t (e)",
    );
    let all: Vec<&Node> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
    everywhere(&c, &all, "SELECT count(*) FROM t WHERE e = 'a@b.c'");
    // each node holds its own rows until distributed execution
    ops(&c, all[1], "INSERT INTO t VALUES (1, 'a@b.c')");
    assert!(ops(&c, all[1], "SELECT count(*) FROM t").contains('1'));
    // a table that exists already: refused at the node that was asked, with
    // the change's own error, and changes nothing anywhere
    let o = sql(
        &c,
        all[2],
        &c.certs(),
        "ops",
        "CREATE TABLE t (x INT PRIMARY KEY)",
    );
    assert!(
        !o.status.success() && out(&o).contains("ALREADY_EXISTS"),
        "{}",
        out(&o)
    );
    // a UNIQUE index (whether rows are unique differs between shards) is
    // refused; a change that changes nothing does not reach the log
    let o = sql(
        &c,
        all[0],
        &c.certs(),
        "ops",
        "CREATE UNIQUE INDEX t_u ON t (e)",
    );
    assert!(
        !o.status.success() && out(&o).contains("UNIQUE index"),
        "{}",
        out(&o)
    );
    unique_constraints_hold_only_with_the_placing_column(&c, all[1]);
    let changes = |n: &Node| c.status(n).unwrap()["schema_changes"].as_u64().unwrap();
    let before = changes(all[0]);
    ops(
        &c,
        all[0],
        "CREATE TABLE IF NOT EXISTS t (x INT PRIMARY KEY); DROP TABLE IF EXISTS nothing_here",
    );
    assert_eq!(changes(all[0]), before);
    // inside BEGIN ... COMMIT a schema change is refused: it commits alone
    let o = sql(
        &c,
        all[1],
        &c.certs(),
        "ops",
        "BEGIN; CREATE TABLE u (id BIGINT PRIMARY KEY); COMMIT",
    );
    assert!(
        !o.status.success() && out(&o).contains("outside BEGIN"),
        "{}",
        out(&o)
    );

    // a user the bundle does not let change the schema (reader) is refused
    // at the coordinator, and the change reaches no node
    let o = run(&mut c.sb(
        all[0],
        &[
            "member",
            "enable",
            "reader",
            "--admin-key",
            c.admin_key().to_str().unwrap(),
        ],
    ));
    assert!(o.status.success(), "{}", out(&o));
    c.wait(all[0], "epoch 2 effective", |s| effective(s, 2));
    let readers = c.tmp.path().join("reader");
    run(Command::new(bin("sb"))
        .args(["ca", "issue-user", "--dir"])
        .arg(c.tmp.path().join("ca"))
        .args(["--name", "reader", "--out"])
        .arg(&readers));
    let o = sql(
        &c,
        all[0],
        &readers,
        "reader",
        "CREATE TABLE w (id BIGINT PRIMARY KEY)",
    );
    assert!(
        !o.status.success() && out(&o).contains("PERMISSION_DENIED"),
        "{}",
        out(&o)
    );
    let o = sql(&c, all[0], &readers, "reader", "SELECT count(*) FROM t");
    assert!(o.status.success(), "{}", out(&o));

    // a hostile node: a claim it made up is refused by the leader's check,
    // and a claim in another node's name by the sender check
    let me = node_id(&c.dirs[2]);
    let made_up = PeerMessage::Submit(ControlCommand::Schema {
        from: me,
        change: SchemaChange {
            claim: b"DROP TABLE t".to_vec().into(),
            user: "ops".into(),
            id: [7; 32],
        },
    });
    let answers: Vec<String> = c
        .peers
        .iter()
        .map(|p| send_as_node(&c, &c.dirs[2], p, &made_up))
        .collect();
    assert!(
        answers.iter().any(|a| a.starts_with("REFUSED")),
        "leader {leader}: {answers:?}"
    );
    let other = PeerMessage::Submit(ControlCommand::Schema {
        from: node_id(&c.dirs[0]),
        change: SchemaChange {
            claim: b"x".to_vec().into(),
            user: "ops".into(),
            id: [8; 32],
        },
    });
    let a = send_as_node(&c, &c.dirs[2], &c.peers[0], &other);
    assert!(a.starts_with("NOT_SENDER"), "{a}");

    catch_up_after_a_stop(&c, nodes);
}

/// A UNIQUE constraint in a cluster is kept shard by shard: it is refused
/// unless it holds the column the rows are placed by, so that rows equal on
/// it are on one shard.
fn unique_constraints_hold_only_with_the_placing_column(c: &ControlCluster, n: &Node) {
    let o = sql(
        c,
        n,
        &c.certs(),
        "ops",
        "CREATE TABLE wide (id BIGINT PRIMARY KEY, e VARCHAR(10) UNIQUE)",
    );
    assert!(
        !o.status.success() && out(&o).contains("cannot be kept across shards"),
        "{}",
        out(&o)
    );
    ops(
        c,
        n,
        "CREATE TABLE wide (id BIGINT PRIMARY KEY, e VARCHAR(10), UNIQUE (e, id))",
    );
    ops(c, n, "INSERT INTO wide VALUES (1, 'a')");
    let o = sql(c, n, &c.certs(), "ops", "INSERT INTO wide VALUES (1, 'a')");
    assert!(!o.status.success(), "{}", out(&o));
}

/// n3 is down while the schema changes (an index dropped, a table and a view
/// created); back, it catches up, and every node ends with the same schema.
fn catch_up_after_a_stop(c: &ControlCluster, mut nodes: Vec<Option<Node>>) {
    // n3 is down while the schema changes; back, it catches up
    nodes[2].take().unwrap().terminate(Duration::from_secs(10));
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    ops(c, all[0], "DROP INDEX t_e");
    ops(c, all[1], "CREATE TABLE digits (id BIGINT PRIMARY KEY)");
    // a view is a schema change as well: every node applies it, with its id
    ops(
        c,
        all[0],
        "CREATE VIEW t_ids (n) AS SELECT id FROM t WHERE id > 0",
    );
    nodes[2] = Some(Node::spawn(&c.dirs[2]));
    let all: Vec<&Node> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
    everywhere(c, &all, "SELECT count(*) FROM digits");
    everywhere(c, &all, "SELECT count(n) FROM t_ids");
    // a table a view names is not dropped from under it, at any node
    let o = sql(c, all[2], &c.certs(), "ops", "DROP TABLE t");
    assert!(
        !o.status.success() && out(&o).contains("view t_ids names it"),
        "{}",
        out(&o)
    );
    assert!(
        all[2].log().contains("applied the cluster's schema change"),
        "{}",
        all[2].log()
    );
    // its status says it holds every change of the log, and is not stalled
    c.wait(all[2], "every schema change applied on n3", |s| {
        s["schema_changes"].as_u64() >= Some(5)
            && s["schema_applied"][0] == s["schema_changes"]
            && s["schema_applied"][1].is_null()
    });

    // the table the hostile node tried to drop is still there, everywhere
    everywhere(c, &all, "SELECT count(*) FROM t");
    for n in nodes.into_iter().flatten() {
        n.terminate(Duration::from_secs(10));
    }
    // same ids everywhere: equal schema versions, the same id for t
    let v = versions(&c.dirs);
    assert!(v.iter().all(|x| *x == v[0]), "{v:#?}");
    assert!(
        v[0].ends_with("w=None") && !v[0].contains("t=None"),
        "{v:#?}"
    );
}

/// A coordinator that holds no data runs every statement on the cluster's
/// shard on another node, over the peer endpoint: the shard verifies each
/// plan as its own node's and runs it as the user; transactions span
/// statements there; a shard that goes away fails the statement, naming it.
#[test]
fn a_coordinator_without_data_runs_statements_on_the_clusters_shard() {
    use scratchbird_net::Role;
    let c = scratchbird_tests::control_cluster_with(&[
        &[Role::Coordinator, Role::Voter],
        &[Role::Coordinator, Role::Shard, Role::Voter],
        &[Role::Voter],
    ]);
    let mut nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    c.wait(&nodes[0], "epoch 1 effective with three voters", |s| {
        effective(s, 1) && voters(s) == 3
    });
    ops(
        &c,
        &nodes[0],
        "CREATE TABLE t (id BIGINT PRIMARY KEY, e VARCHAR(100))",
    );
    everywhere(&c, &[&nodes[1]], "SELECT count(*) FROM t");
    ops(
        &c,
        &nodes[0],
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'a')",
    );
    // the rows are the shard's: read there, and through the coordinator
    assert!(ops(&c, &nodes[1], "SELECT count(*) FROM t").contains('3'));
    let grouped = ops(
        &c,
        &nodes[0],
        "SELECT e, count(*) FROM t GROUP BY e ORDER BY e",
    );
    let lines: Vec<&str> = grouped
        .lines()
        .filter(|l| l.contains('a') || l.contains('b'))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains('a') && l.contains('2'))
            && lines.iter().any(|l| l.contains('b') && l.contains('1')),
        "{grouped}"
    );
    // a transaction spans statements on the shard
    ops(
        &c,
        &nodes[0],
        "BEGIN; INSERT INTO t VALUES (4, 'c'); ROLLBACK",
    );
    ops(
        &c,
        &nodes[0],
        "BEGIN; INSERT INTO t VALUES (5, 'c'); COMMIT",
    );
    assert!(ops(&c, &nodes[1], "SELECT count(*) FROM t WHERE e = 'c'").contains('1'));
    assert!(ops(&c, &nodes[0], "SELECT count(*) FROM t").contains('4'));
    // the shard recorded the stages the coordinator sent, as the user
    let recs = scratchbird_tests::sb_audit_json(&c.dirs[1].join("data"));
    assert!(
        recs.iter()
            .any(|r| r["coordinator"] == nodes[0].name.as_str()
                && r["outcome"] == "ok"
                && r["principal"] == "User::\"ops\""),
        "{recs:#?}"
    );
    // the shard goes away: a statement at the coordinator fails, naming it
    let shard = nodes.remove(1);
    let shard_name = shard.name.clone();
    shard.kill();
    let started = Instant::now();
    let o = sql(&c, &nodes[0], &c.certs(), "ops", "SELECT count(*) FROM t");
    assert!(
        !o.status.success() && out(&o).contains(&shard_name),
        "{}",
        out(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    for n in nodes {
        n.terminate(Duration::from_secs(10));
    }
    // the coordinator's own data directory holds the schema, not the rows
    let s = scratchbird_node::open_storage(&c.dirs[0].join("data")).unwrap();
    let t = s.begin(TxnOptions::snapshot()).unwrap();
    let table = t.catalog().unwrap().table_by_name("t").unwrap().id;
    assert!(
        scratchbird_storage::scan::collect_rows(&t, table)
            .unwrap()
            .is_empty()
    );
}
