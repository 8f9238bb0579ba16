//! End to end through the binaries a user runs: `sbnode` as a real process, `sb`
//! as a real process over QUIC with mutual TLS. Tables are created and loaded,
//! queried as the owner and as principals of the saas bundle, and the output is
//! checked byte for byte. SIGTERM during long queries leaves nothing corrupted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_tests::{Node, NodeOpts, Setup, bin, ok, ops_bundle, repo, sb, setup, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sql_over_quic_between_real_processes() {
    let s = setup(
        &["admin", "alice", "sam"],
        NodeOpts {
            bundle: Some(repo().join("examples/bundles/saas")),
            ..NodeOpts::default()
        },
    );
    let demo = repo().join("examples/sql/saas-demo.sql");
    let out = ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &["-f", demo.to_str().unwrap()],
    ));
    assert_eq!(
        out,
        "CREATE DOMAIN\nCREATE TABLE\nCREATE TABLE\nINSERT 6\nINSERT 5\n"
    );
    let q = "SELECT id, tenant_id, name, email, plan FROM customers ORDER BY id";
    assert_eq!(
        ok(&sb(&s.node, &s.certs, "admin", &["-c", q])),
        "\
id | tenant_id | name          | email         | plan
---+-----------+---------------+---------------+-----
1  | 1         | Acme Rockets  | ops@acme.test | team
2  | 1         | Bolt Bikes    | hi@bolt.test  | pro
3  | 1         | Crux Climbing | NULL          | free
4  | 2         | Dyne Dynamics | cfo@dyne.test | team
5  | 2         | Eon Energy    | a@eon.test    | pro
6  | 2         | Flux Freight  | ops@flux.test | free
(6 rows)
"
    );
    // alice: her tenant only, e-mails in clear
    assert_eq!(
        ok(&sb(&s.node, &s.certs, "alice", &["-c", q])),
        "\
id | tenant_id | name          | email         | plan
---+-----------+---------------+---------------+-----
1  | 1         | Acme Rockets  | ops@acme.test | team
2  | 1         | Bolt Bikes    | hi@bolt.test  | pro
3  | 1         | Crux Climbing | NULL          | free
(3 rows)
"
    );
    // sam (support): every tenant but the hidden free-with-revenue row; e-mails
    // masked (tokens depend on the node's mask key: checked by shape)
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "sam",
            &[
                "--format",
                "csv",
                "-c",
                "SELECT id, name, plan FROM customers ORDER BY id"
            ]
        )),
        "id,name,plan\n1,Acme Rockets,team\n2,Bolt Bikes,pro\n3,Crux Climbing,free\n4,Dyne Dynamics,team\n5,Eon Energy,pro\n"
    );
    let masked = ok(&sb(
        &s.node,
        &s.certs,
        "sam",
        &[
            "--format",
            "json",
            "-c",
            "SELECT id, email FROM customers ORDER BY id",
        ],
    ));
    let lines: Vec<&str> = masked.lines().collect();
    assert_eq!(lines.len(), 5, "{masked}");
    assert!(lines[2] == r#"{"id":3,"email":null}"#, "{masked}");
    for l in [lines[0], lines[1], lines[3], lines[4]] {
        assert!(l.contains("\"email\":\"tok_") && !l.contains('@'), "{l}");
    }
    // JSON lines and CSV with NULLs, byte for byte
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "alice",
            &[
                "--format",
                "json",
                "-c",
                "SELECT id, amount, status, issued FROM invoices ORDER BY id"
            ]
        )),
        "{\"id\":100,\"amount\":\"1200.00\",\"status\":\"paid\",\"issued\":\"2026-10-01\"}\n{\"id\":101,\"amount\":\"300.00\",\"status\":\"sent\",\"issued\":\"2026-10-03\"}\n"
    );
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "admin",
            &[
                "--format",
                "csv",
                "-c",
                "SELECT id, issued FROM invoices WHERE issued IS NULL OR id = 200 ORDER BY id"
            ]
        )),
        "id,issued\n102,\n200,2026-10-02\n"
    );
    // a refused column names it; a syntax error shows where
    let o = sb(
        &s.node,
        &s.certs,
        "alice",
        &["-c", "SELECT name, mrr FROM customers"],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("error[PERMISSION_DENIED]") && err.contains("mrr"),
        "{err}"
    );
    let o = sb(
        &s.node,
        &s.certs,
        "alice",
        &["-c", "SELECT name\nFROM customers WHERE nope = 1"],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("line 2") && err.contains("^"), "{err}");
    // a principal may not change the schema, nor write outside its tenant
    let o = sb(&s.node, &s.certs, "alice", &["-c", "DROP TABLE invoices"]);
    assert!(text(&o).1.contains("PERMISSION_DENIED"), "{}", text(&o).1);
    let o = sb(
        &s.node,
        &s.certs,
        "alice",
        &[
            "-c",
            "INSERT INTO invoices VALUES (300, 2, 4, 1.00, 'paid', NULL)",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o).0);
    // multi-statement text with a transaction, over one connection
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "alice",
            &[
                "-c",
                "BEGIN; INSERT INTO invoices VALUES (103, 1, 2, 10.00, 'sent', NULL); SELECT count(*) FROM invoices; ROLLBACK; SELECT count(*) FROM invoices"
            ]
        )),
        "BEGIN\nINSERT 1\ncount\n-----\n3\n(1 row)\nROLLBACK\ncount\n-----\n2\n(1 row)\n"
    );
    let status = s.node.terminate(Duration::from_secs(20));
    assert!(status.success());
}

#[test]
fn sigterm_during_long_queries_leaves_nothing_corrupted() {
    let s = setup(
        &["admin"],
        NodeOpts {
            limits: "shutdown_grace_secs = 1\n".into(),
            ..NodeOpts::default()
        },
    );
    ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &[
            "-c",
            "CREATE TABLE digits (n INTEGER PRIMARY KEY); INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9); CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO big SELECT a.n * 1000 + b.n * 100 + c.n * 10 + d.n, a.n FROM digits a, digits b, digits c, digits d",
        ],
    ));
    // a long write and a long read, then SIGTERM while both run
    let spawn = |sql: &str| {
        Command::new(bin("sb"))
            .args(["sql", "--connect", &s.node.client_addr.to_string()])
            .arg("--cert")
            .arg(s.certs.join("admin.crt"))
            .arg("--key")
            .arg(s.certs.join("admin.key"))
            .arg("--ca")
            .arg(s.certs.join("ca.crt"))
            .args(["--format", "csv", "-c", sql])
            .env("HOME", &s.certs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // (about 100 s and 10 s alone in a debug build: both are still running when
    // the grace of 1 s ends)
    let write = spawn(
        "INSERT INTO big SELECT 1000000 + a.n * 100000 + b.n * 10000 + c.n * 1000 + d.n * 100 + e.n * 10 + f.n, 0 FROM digits a, digits b, digits c, digits d, digits e, digits f",
    );
    let read = spawn(
        "SELECT count(*) FROM digits a, digits b, digits c, digits d, digits e, digits f, digits g, digits h, digits i WHERE a.n + b.n + c.n + d.n + e.n + f.n + g.n + h.n + i.n = 37",
    );
    // and a client that stops reading: a query of a million rows, never read
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let creds = scratchbird_net::Credentials::load(
        &s.certs.join("admin.crt"),
        &s.certs.join("admin.key"),
        &s.certs.join("ca.crt"),
    )
    .unwrap();
    let client = rt
        .block_on(scratchbird_net::Client::connect(
            s.node.client_addr,
            &creds,
            &scratchbird_net::TransportLimits::default(),
        ))
        .unwrap();
    let mut stuck = rt
        .block_on(client.query("SELECT a.id, b.n, c.n FROM big a, digits b, digits c", 0))
        .unwrap();
    // the setup's connection and these three ("disconnected" lines not counted)
    let connected = || {
        s.node
            .log()
            .lines()
            .filter(|l| l.contains("connected") && !l.contains("disconnected"))
            .count()
    };
    for _ in 0..1000 {
        if connected() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(connected() >= 4, "{}", s.node.log());
    // the node logs a connection when its handshake ends; the clients send
    // their queries after theirs (later still on a loaded machine)
    std::thread::sleep(Duration::from_millis(2_000));
    let dir = s.node.dir.clone();
    let status = s.node.terminate(Duration::from_secs(30));
    assert!(status.success(), "sbnode exited with {status}");
    let (w, r) = (
        write.wait_with_output().unwrap(),
        read.wait_with_output().unwrap(),
    );
    // what was in flight drains, then the stream fails: never a clean end
    let end = rt.block_on(async {
        loop {
            match stuck.next().await {
                Ok(Some(_)) => {}
                other => return other.map(|_| ()),
            }
        }
    });
    assert!(end.is_err(), "the stalled reader got a complete answer");
    drop(client);
    for o in [&w, &r] {
        let (out, err) = text(o);
        assert!(!o.status.success(), "a query outlived the node: {out}");
        assert!(
            err.contains("CANCELLED")
                || err.contains("SHUTTING_DOWN")
                || err.contains("shutting down"),
            "{err}"
        );
    }
    // restart on the same data: what was committed is there, the cancelled write
    // left nothing, and the audit trail verifies
    let node = Node::spawn(&dir);
    let s2 = Setup { node, ..s };
    assert_eq!(
        ok(&sb(
            &s2.node,
            &s2.certs,
            "admin",
            &["--format", "csv", "-c", "SELECT count(*), max(id) FROM big"]
        )),
        "count,max\n10000,9999\n"
    );
    let status = s2.node.terminate(Duration::from_secs(20));
    assert!(status.success());
    let audit = Command::new(bin("sb"))
        .args(["audit", "verify", "--data"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(audit.status.success(), "{}", text(&audit).1);
}

#[test]
fn the_demo_runs_its_tour_and_cleans_up() {
    let out = Command::new(bin("sb"))
        .arg("demo")
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // three nodes under the control plane, the data on three shards
    assert!(
        stdout.contains("3 shard(s), shard map version 1")
            && stdout.contains("the execution gate is open"),
        "{stdout}"
    );
    // alice sees tenant 1 in clear; sam every visible tenant, from every
    // shard, with tokens
    assert!(
        stdout.contains("1  | 1         | Acme Rockets  | ops@acme.test | team"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(3 rows)") && stdout.contains("(7 rows)"),
        "{stdout}"
    );
    // one e-mail, two shards: one token
    let token = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name) && l.contains("tok_"))
            .and_then(|l| l.split('|').nth(3))
            .map(str::trim)
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no token for {name}: {stdout}"))
    };
    assert_eq!(token("Acme Rockets EU"), token("Acme Rockets    "));
    assert!(
        stderr.contains("error[PERMISSION_DENIED]")
            && stderr.contains("permission denied for column customers.mrr"),
        "{stderr}"
    );
    assert!(stderr.contains("error[CROSS_SHARD_WRITE]"), "{stderr}");
    // a hostile coordinator's forged plan, refused by the shard
    assert!(
        stdout.contains("n2 refused it") && stdout.contains("not user sam"),
        "{stdout}"
    );
    assert!(
        stdout.contains("principal  User::\"alice\"")
            && stdout.contains("principal  User::\"sam\"")
    );
    assert_eq!(stdout.matches("the chain verifies").count(), 3, "{stdout}");
    // a node stopped: a query of every shard fails naming the shard, the
    // status shows the node unreachable
    assert!(
        stderr.contains("error[SHARD_UNREACHABLE]: shard 2") && stdout.contains("UNREACHABLE from"),
        "{stdout}\n{stderr}"
    );
    let folder = stdout
        .lines()
        .find_map(|l| l.strip_prefix("removed "))
        .expect("the demo says what it removed");
    assert!(!Path::new(folder).exists(), "{folder} was left behind");
}

/// The whole path a new operator takes, with the binaries only: `sb ca init`,
/// `issue-node`, `issue-user` (keys and the token secret 0600), `sb ca list`,
/// `sbnode init` (which fills in the token secret's fingerprint), a bundle signed
/// with `sb bundle keygen` and `sb bundle sign`, the node started on that config
/// with JSON logs, `sb sql --connect` as its owner.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn an_operator_sets_up_a_node_with_the_binaries_alone() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = |args: &[&str]| {
        let o = Command::new(bin("sb"))
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "sb {args:?} failed:\n{out}\n{err}");
        out
    };
    let out = run(&["ca", "init", "--dir", "ca"]);
    assert!(out.starts_with("cluster "), "{out}");
    run(&[
        "ca",
        "issue-node",
        "--dir",
        "ca",
        "--name",
        "n1",
        "--out",
        "n1",
    ]);
    run(&[
        "ca",
        "issue-user",
        "--dir",
        "ca",
        "--name",
        "ops",
        "--out",
        "ops",
        "--alg",
        "ecdsa-p256",
    ]);
    for key in [
        "ca/ca.key",
        "ca/token.secret",
        "n1/node.key",
        "n1/token.secret",
        "ops/ops.key",
    ] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // never overwritten, never printed
    let again = Command::new(bin("sb"))
        .args([
            "ca",
            "issue-user",
            "--dir",
            "ca",
            "--name",
            "ops",
            "--out",
            "ops",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).1.contains("never overwritten"));
    let list = run(&["ca", "list", "--dir", "ca"]);
    assert!(list.contains("2 certificate(s) issued"), "{list}");
    assert!(
        list.contains("/user/ops") && list.contains("days left"),
        "{list}"
    );
    assert!(list.contains("n1 enabled [coordinator,shard]"), "{list}");
    assert!(!list.contains("PRIVATE KEY"));
    let fp = list
        .lines()
        .find_map(|l| l.strip_prefix("token secret fingerprint "))
        .unwrap_or_else(|| panic!("sb ca list shows the token secret's fingerprint:\n{list}"))
        .to_owned();
    let secret = std::fs::read_to_string(d.join("ca/token.secret")).unwrap();
    assert!(
        !list.contains(secret.lines().nth(1).unwrap()),
        "the secret itself is never printed"
    );
    // an administrator key signs the bundle the node will load
    run(&["bundle", "keygen", "--out", "officer"]);
    let bundle = d.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    // the tests' bundle: ops is an administrator (Create, Alter, Drop, every row)
    for e in std::fs::read_dir(ops_bundle()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bundle.join(e.file_name())).unwrap();
    }
    let signed = run(&["bundle", "sign", "bundle", "--key", "officer.key"]);
    assert!(signed.starts_with("signed bundle "), "{signed}");
    // sbnode init, then the few edits an operator makes
    let init = Command::new(bin("sbnode"))
        .args(["init", "--out", "n1/node.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init).1);
    let cfg = std::fs::read_to_string(d.join("n1/node.toml")).unwrap();
    assert!(
        cfg.contains(&format!("token_fingerprint = \"{fp}\"")),
        "sbnode init fills in the fingerprint of the token secret beside it:\n{cfg}"
    );
    let cfg = cfg
        .replace("bundle = \"bundle\"", "bundle = \"../bundle\"")
        .replace(
            "trusted_keys = [\"admin.pub\"]",
            "trusted_keys = [\"../officer.pub\"]",
        )
        .replace("127.0.0.1:7400", "127.0.0.1:0")
        .replace(
            "members = \"members.toml\"",
            "members = \"../ca/members.toml\"",
        );
    // a configuration from before bundles granted schema changes: refused,
    // saying what replaces the owners list
    std::fs::write(
        d.join("n1/node.toml"),
        cfg.replacen("roles = ", "owners = [\"ops\"]\nroles = ", 1),
    )
    .unwrap();
    let old = Command::new(bin("sbnode"))
        .args(["--config", "n1/node.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!old.status.success());
    assert!(
        text(&old).1.contains("owners is no longer accepted")
            && text(&old).1.contains("Create, Alter and Drop"),
        "{}",
        text(&old).1
    );
    std::fs::write(d.join("n1/node.toml"), cfg).unwrap();
    let mut child = Command::new(bin("sbnode"))
        .args(["--config", "n1/node.toml", "--log-format", "json"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let addr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("clients="))
        .unwrap()
        .to_owned();
    let q = Command::new(bin("sb"))
        .args(["sql", "--connect", &addr, "--cert", "ops/ops.crt", "--key", "ops/ops.key", "--ca", "ops/ca.crt"])
        .args(["-c", "CREATE TABLE t (a INT PRIMARY KEY); INSERT INTO t VALUES (1),(2); SELECT sum(a) FROM t"])
        .current_dir(d)
        .env("HOME", d)
        .output()
        .unwrap();
    assert_eq!(
        text(&q).0,
        "CREATE TABLE\nINSERT 2\nsum\n---\n3\n(1 row)\n",
        "{}",
        text(&q).1
    );
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8(out.stderr).unwrap();
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(log.contains("security bundle"), "{log}");
    assert!(log.contains("verified"), "{log}");
}

/// A node keeps compiled statements for all its sessions: after one user's
/// schema change on another connection, the same text compiles again for the
/// schema as it now is.
#[test]
fn a_kept_statement_follows_a_schema_change_made_on_another_connection() {
    let s = setup(&["admin", "ops", "reader"], NodeOpts::default());
    let read = |q: &str| {
        ok(&sb(
            &s.node,
            &s.certs,
            "reader",
            &["--format", "csv", "-c", q],
        ))
    };
    ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &["-c", "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)"],
    ));
    let q = "SELECT * FROM t";
    assert_eq!(read(q), "a\n1\n");
    assert_eq!(read(q), "a\n1\n", "kept");
    ok(&sb(
        &s.node,
        &s.certs,
        "ops",
        &[
            "-c",
            "DROP TABLE t; CREATE TABLE t (a INTEGER, b VARCHAR(5)); INSERT INTO t VALUES (2, 'x')",
        ],
    ));
    assert_eq!(read(q), "a,b\n2,x\n");
}
