//! What an adversarial run did to the release binaries, as tests against real
//! `sbnode` and `sb` processes over QUIC: the short queries that aborted the
//! node, the figures that counted rows hidden from a principal, the session
//! context that never reached the node, and a client that vanished mid-result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::attest;
use scratchbird_net::rpc::{Query, Request, Response};
use scratchbird_net::tls::Identity;
use scratchbird_net::{Client, ClientError, Credentials, Role, TransportLimits};
use scratchbird_tests::{
    Node, NodeOpts, Setup, load_saas_demo, ok, repo, sb, sb_audit_json, sb_command, setup, text,
};
use scratchbird_types::attest::Attestation;
use scratchbird_types::{NodeId, NodeName};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn saas() -> NodeOpts {
    NodeOpts {
        bundle: Some(repo().join("examples/bundles/saas")),
        ..NodeOpts::default()
    }
}

/// `sql` in a file (SQL too long for a command-line argument).
fn sql_file(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let p = dir.join(format!("{name}.sql"));
    std::fs::write(&p, sql).unwrap();
    p
}

#[test]
fn the_inputs_that_aborted_sbnode_are_answered_or_refused_and_it_keeps_serving() {
    let mut s = setup(&["admin", "alice"], saas());
    load_saas_demo(&s);
    let list = |n: usize, f: &dyn Fn(usize) -> String, sep: &str| {
        (0..n).map(f).collect::<Vec<_>>().join(sep)
    };
    let ones = |n: usize| vec!["1"; n].join("+");
    // (what, SQL, Ok(stdout contains) or Err(stderr contains))
    let cases: Vec<(&str, String, Result<&str, &str>)> = vec![
        (
            "a 500-term sum",
            format!("SELECT {}", ones(500)),
            Err("error[54000]"),
        ),
        (
            "a 250-term sum",
            format!("SELECT {} AS s", ones(250)),
            Ok("250"),
        ),
        (
            "an IN list of 3,000",
            format!(
                "SELECT count(*) FROM customers WHERE id IN ({})",
                list(3_000, &|i| i.to_string(), ",")
            ),
            Ok("3"),
        ),
        (
            "an IN list of 10,000",
            format!(
                "SELECT count(*) FROM customers WHERE id IN ({})",
                list(10_000, &|i| i.to_string(), ",")
            ),
            Ok("3"),
        ),
        (
            "an OR chain of 2,000",
            format!(
                "SELECT count(*) FROM customers WHERE {}",
                list(2_000, &|i| format!("id = {i}"), " OR ")
            ),
            Ok("3"),
        ),
        (
            "4,000 UNION ALL branches",
            format!(
                "SELECT count(*) FROM ({}) u",
                list(4_000, &|i| format!("SELECT {i} AS x"), " UNION ALL ")
            ),
            Ok("4000"),
        ),
        (
            "5,000 UNION ALL branches",
            list(5_000, &|i| format!("SELECT {i} AS x"), " UNION ALL "),
            Err("set operations"),
        ),
        (
            "a 5,000-column select",
            format!(
                "SELECT {} FROM customers",
                list(5_000, &|_| "id".into(), ", ")
            ),
            Err("a query returns at most 1024"),
        ),
        (
            "parentheses 100,000 deep",
            format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            Err("nests deeper than"),
        ),
        (
            "NOT 100,000 times",
            format!("SELECT {}true", "NOT ".repeat(100_000)),
            Err("nests deeper than"),
        ),
        (
            "a sum of a megabyte",
            format!("SELECT {}", ones(400_000)),
            Err("error[54000]"),
        ),
    ];
    for (what, sql, want) in &cases {
        let f = sql_file(s.tmp.path(), "q", sql);
        let o = sb(&s.node, &s.certs, "alice", &["-f", f.to_str().unwrap()]);
        let (out, err) = text(&o);
        match want {
            Ok(x) => {
                assert!(o.status.success(), "{what}: {err}");
                assert!(out.contains(x), "{what}: {out}");
            }
            Err(x) => {
                assert!(!o.status.success(), "{what} succeeded: {out}");
                assert!(err.contains(x), "{what}: {err}");
                assert!(
                    err.contains("hint:"),
                    "{what}: a limit error says what to do: {err}"
                );
            }
        }
        assert!(s.node.running(), "sbnode died on {what}:\n{}", s.node.log());
    }
    // and it still answers, as it did before
    let out = ok(&sb(
        &s.node,
        &s.certs,
        "alice",
        &["--format", "csv", "-c", "SELECT count(*) FROM customers"],
    ));
    assert_eq!(out, "count\n3\n");
}

/// Everything a principal receives for `sql` on `node`: every response frame,
/// every field (the node's elapsed time, which depends on all rows and is not a
/// figure the node computes over them, set to zero).
async fn responses(client: &Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut r = match client.query(sql, 0).await {
        Ok(r) => r,
        Err(e) => return vec![format!("refused: {e}")],
    };
    loop {
        match r.next().await {
            Ok(Some(Response::Done(mut d))) => {
                d.elapsed_us = 0;
                out.push(format!("{d:?}"));
            }
            Ok(Some(other)) => out.push(format!("{other:?}")),
            Ok(None) => break,
            Err(ClientError::Rpc(e)) => {
                out.push(format!("{e:?}"));
                break;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    out
}

/// `sb sql --timing` output with the times (not figures: clocks) replaced.
fn timed(node: &Node, certs: &Path, user: &str, sql: &str) -> (String, String) {
    let o = sb(
        node,
        certs,
        user,
        &["--timing", "--format", "csv", "-c", sql],
    );
    let (out, err) = text(&o);
    let err: String = err
        .lines()
        .map(|l| match l.find("ms here;") {
            Some(i) if l.starts_with("time: ") => format!("time: ... {}", &l[i + 8..]),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (out, err)
}

/// The statements a principal compares between two nodes whose data differs
/// only in rows hidden from them.
const PROBES: &[&str] = &[
    "SELECT id, tenant_id, name, email, plan FROM customers ORDER BY id",
    "SELECT count(*), min(id), max(id) FROM customers",
    "SELECT plan, count(*) FROM customers GROUP BY plan ORDER BY plan",
    "SELECT sum(amount), count(*) FROM invoices",
    "SELECT c.name, i.amount FROM customers c JOIN invoices i ON i.customer_id = c.id ORDER BY 1, 2",
    // index range scans over keys only hidden rows hold, and their plans
    "SELECT id FROM invoices WHERE customer_id > 6",
    "SELECT id FROM invoices WHERE customer_id BETWEEN 7 AND 8",
    "SELECT count(*) FROM customers WHERE tenant_id = 3",
    "SELECT id FROM customers WHERE tenant_id >= 2 ORDER BY id",
    "EXPLAIN SELECT id FROM invoices WHERE customer_id > 6",
    // errors: a refused column, a run-time error on visible rows
    "SELECT mrr FROM customers",
    "SELECT 1 / (id - 2) FROM customers ORDER BY id",
    // several statements in one request
    "SELECT count(*) FROM invoices; SELECT count(*) FROM customers WHERE id > 2",
];

#[test]
fn what_a_principal_receives_does_not_depend_on_rows_hidden_from_them() {
    let s = setup(&["admin", "alice", "sam"], saas());
    load_saas_demo(&s);
    ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &[
            "-c",
            "CREATE INDEX inv_customer ON invoices (customer_id); CREATE INDEX cust_tenant ON customers (tenant_id)",
        ],
    ));
    // a second node over a copy of the first's data directory (same object ids,
    // the cluster's token secret), then rows neither alice nor sam may see added there:
    // another tenant's free customer with revenue, one of alice's tenant with
    // revenue on the free plan, and drafts
    let Setup {
        tmp,
        mut ca,
        certs,
        node,
    } = s;
    let dir1 = node.dir.clone();
    assert!(node.terminate(Duration::from_secs(30)).success());
    let dir2 = tmp.path().join("n2");
    copy_dir(&dir1.join("data"), &dir2.join("data"));
    let n1 = Node::spawn(&dir1);
    let n2 = Node::start(
        &dir2,
        &mut ca,
        "n2",
        &[Role::Coordinator, Role::Shard],
        &saas(),
    );
    ok(&sb(
        &n2,
        &certs,
        "admin",
        &[
            "-c",
            "INSERT INTO customers VALUES (7, 3, 'Gale Gears', 'g@gale.test', 'free', 99.00), \
             (8, 1, 'Halo Homes', 'h@halo.test', 'free', 5.00); \
             INSERT INTO invoices VALUES (103, 1, 1, 999.00, 'draft', NULL), (202, 3, 7, 1.00, 'draft', NULL), \
             (104, 1, 8, 5.00, 'draft', NULL)",
        ],
    ));
    assert_eq!(
        ok(&sb(
            &n2,
            &certs,
            "admin",
            &["--format", "csv", "-c", "SELECT count(*) FROM customers"]
        )),
        "count\n8\n"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for user in ["alice", "sam"] {
        let creds = Credentials::load(
            &certs.join(format!("{user}.crt")),
            &certs.join(format!("{user}.key")),
            &certs.join("ca.crt"),
        )
        .unwrap();
        let limits = TransportLimits::default();
        let (c1, c2) = rt.block_on(async {
            (
                Client::connect(n1.client_addr, &creds, &limits)
                    .await
                    .unwrap(),
                Client::connect(n2.client_addr, &creds, &limits)
                    .await
                    .unwrap(),
            )
        });
        for sql in PROBES {
            let (a, b) =
                rt.block_on(async { (responses(&c1, sql).await, responses(&c2, sql).await) });
            assert_eq!(a, b, "{user} can tell the nodes apart over QUIC with {sql}");
            assert_eq!(
                timed(&n1, &certs, user, sql),
                timed(&n2, &certs, user, sql),
                "{user} can tell the nodes apart with sb sql --timing and {sql}"
            );
        }
        rt.block_on(async {
            c1.close().await;
            c2.close().await;
        });
    }
    // the probes are worth something: rows and figures came back
    let (out, err) = timed(&n1, &certs, "alice", PROBES[0]);
    assert!(
        out.contains("Acme Rockets") && err.contains("read 3 rows"),
        "{out}{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

const CLINICAL: &str = "
CREATE DOMAIN mrn AS VARCHAR(12) CHECK (VALUE LIKE 'MRN-%');
CREATE TABLE patients (id BIGINT PRIMARY KEY, mrn mrn NOT NULL, name VARCHAR(120) NOT NULL,
  ward VARCHAR(40) NOT NULL, attending VARCHAR(10) NOT NULL, diagnosis VARCHAR(60),
  risk_score INTEGER);
INSERT INTO patients VALUES
  (1, 'MRN-1', 'Ann', 'cardio', 'S100', 'angina', 20),
  (2, 'MRN-2', 'Ben', 'cardio', 'S101', 'arrhythmia', 95),
  (3, 'MRN-3', 'Cal', 'oncology', 'S101', 'lymphoma', 40);
";

#[test]
fn break_glass_over_quic_opens_every_patient_and_is_recorded_with_its_reason() {
    let s = setup(
        &["admin", "dr_lee"],
        NodeOpts {
            bundle: Some(repo().join("examples/bundles/clinical")),
            ..NodeOpts::default()
        },
    );
    ok(&sb(&s.node, &s.certs, "admin", &["-c", CLINICAL]));
    let q = "SELECT id, name FROM patients ORDER BY id";
    let csv = |extra: &[&str]| {
        let mut args = vec!["--format", "csv", "-c", q];
        args.extend_from_slice(extra);
        ok(&sb(&s.node, &s.certs, "dr_lee", &args))
    };
    // dr_lee (Staff S100) attends Ann only
    assert_eq!(csv(&[]), "id,name\n1,Ann\n");
    // the glass broken: every patient, the high-risk one too
    let glass = r#"{"break_glass": true, "reason": "code blue, bed 4"}"#;
    assert_eq!(csv(&["--context", glass]), "id,name\n1,Ann\n2,Ben\n3,Cal\n");
    // recorded in the audit trail, with the reason
    let trail = sb_audit_json(&s.node.dir.join("data"));
    let last = trail
        .iter()
        .rev()
        .find(|r| {
            r["principal"] == "Staff::\"dr_lee\""
                && r["outcome"] == "ok"
                && r["tables"] == serde_json::json!(["patients"])
        })
        .unwrap();
    assert_eq!(
        last["recorded"],
        serde_json::json!(["break-glass"]),
        "{last}"
    );
    assert!(
        last["context"]
            .as_str()
            .unwrap()
            .contains("code blue, bed 4"),
        "{last}"
    );
    // a context the bundle's schema does not have, one that is not an object:
    // refused, never taken for an empty context
    for (who, ctx, code) in [
        ("dr_lee", r#"{"break_glass": "yes"}"#, "BAD_CONTEXT"),
        ("dr_lee", r#"{"emergency": true}"#, "BAD_CONTEXT"),
        ("dr_lee", "[true]", "session context must be a JSON object"),
    ] {
        let o = sb(&s.node, &s.certs, who, &["--context", ctx, "-c", q]);
        let (_, err) = text(&o);
        assert!(
            !o.status.success() && err.contains(code),
            "{who} {ctx}: {err}"
        );
    }
    // the context binds per transaction: it cannot change inside one
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let creds = Credentials::load(
        &s.certs.join("dr_lee.crt"),
        &s.certs.join("dr_lee.key"),
        &s.certs.join("ca.crt"),
    )
    .unwrap();
    rt.block_on(async {
        let c = Client::connect(s.node.client_addr, &creds, &TransportLimits::default())
            .await
            .unwrap();
        let mut r = c.query("BEGIN", 0).await.unwrap();
        while r.next().await.unwrap().is_some() {}
        let mut r = c.query_in(q, 0, Some(glass)).await.unwrap();
        let e = loop {
            match r.next().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a context changed inside a transaction"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("CONTEXT_IN_TRANSACTION"), "{e}");
        c.close().await;
    });
}

/// Waits until the audit trail of `data` has a record of a cancelled execution
/// beyond `seen` records; returns how long that took.
fn until_cancelled(data: &Path, seen: usize, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let trail = sb_audit_json(data);
        if trail.iter().skip(seen).any(|r| {
            r["outcome"] == "error" && r["error"].as_str().is_some_and(|e| e.contains("cancelled"))
        }) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A node owned by admin with `digits` (0..9) for cross joins of any size.
fn digits_node(idle_secs: u64) -> Setup {
    let s = setup(
        &["admin"],
        NodeOpts {
            limits: format!("idle_timeout_secs = {idle_secs}\n"),
            ..NodeOpts::default()
        },
    );
    ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &[
            "-c",
            "CREATE TABLE digits (n INTEGER PRIMARY KEY); \
             INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
        ],
    ));
    s
}

const HUGE: &str = "SELECT a.n, b.n, c.n, d.n, e.n, f.n, g.n FROM digits a, digits b, digits c, digits d, digits e, digits f, digits g";

#[test]
fn a_client_that_goes_away_mid_result_has_its_query_cancelled_promptly() {
    // a reader that stops reading (sb's output piped into `head`): sb cancels
    // and closes, and the node stops at once, long before its idle timeout
    let s = digits_node(60);
    let data = s.node.dir.join("data");
    let seen = sb_audit_json(&data).len();
    let mut child = sb_command(&s.node, &s.certs, "admin", &["--format", "csv", "-c", HUGE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    lines.read_line(&mut first).unwrap();
    drop(lines);
    let waited = until_cancelled(&data, seen, Duration::from_secs(20));
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "sb exits quietly when its reader goes: {status}"
    );
    let waited = waited.expect("the node never cancelled the query");
    assert!(
        waited < Duration::from_secs(10),
        "cancelled only after {waited:?}"
    );

    // a client killed outright sends nothing: the node notices the silence
    // after its idle timeout (3 s here) and cancels then
    let s = digits_node(3);
    let data = s.node.dir.join("data");
    let seen = sb_audit_json(&data).len();
    let mut child = sb_command(&s.node, &s.certs, "admin", &["--format", "csv", "-c", HUGE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // it streams (and then, unread, holds the node back under flow control)
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let waited = until_cancelled(&data, seen, Duration::from_secs(30))
        .expect("the node never cancelled the query of a killed client");
    assert!(
        waited < Duration::from_secs(15),
        "cancelled only after {waited:?}"
    );
    drop(out);
    // and it serves the next client
    assert_eq!(
        ok(&sb(
            &s.node,
            &s.certs,
            "admin",
            &["--format", "csv", "-c", "SELECT count(*) FROM digits"]
        )),
        "count\n10\n"
    );
}

/// Sends `q` as it is; the error it is refused with, or `answered`.
async fn sent(c: &Client, q: Query) -> String {
    let mut r = match c.send(&Request::Query(q)).await {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    loop {
        match r.next().await {
            Ok(Some(_)) => {}
            Ok(None) => return "answered".into(),
            Err(e) => return e.to_string(),
        }
    }
}

const COUNT: &str = "SELECT count(*) FROM customers";

fn query(a: Option<Attestation>) -> Query {
    Query {
        sql: COUNT.into(),
        deadline_ms: 0,
        params: Vec::new(),
        context: None,
        attestation: a.map(Box::new),
    }
}

/// A hostile client holding a valid certificate: requests with no attestation,
/// another user's, an altered one, an expired one, one made for another node,
/// another connection or another request, a replayed one. Each is refused with
/// the rule it broke and recorded in the node's audit trail; the eighth refusal
/// closes the connection; honest requests on other connections keep working.
#[test]
fn requests_without_a_valid_fresh_attestation_of_their_user_are_refused_and_audited() {
    let s = setup(&["admin", "alice", "bob"], saas());
    load_saas_demo(&s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let files = |u: &str| {
        (
            s.certs.join(format!("{u}.crt")),
            s.certs.join(format!("{u}.key")),
        )
    };
    let creds = |u: &str| {
        let (c, k) = files(u);
        Credentials::load(&c, &k, &s.certs.join("ca.crt")).unwrap()
    };
    let (alice_crt, alice_key) = files("alice");
    let alice_id = Identity::load(&alice_crt, &alice_key).unwrap();
    let limits = TransportLimits::default();
    let digest = attest::request_digest(COUNT, None, 0, &[]);
    rt.block_on(async {
        let c = Client::connect(s.node.client_addr, &creds("alice"), &limits)
            .await
            .unwrap();
        let other = Client::connect(s.node.client_addr, &creds("alice"), &limits)
            .await
            .unwrap();
        let bob = Client::connect(s.node.client_addr, &creds("bob"), &limits)
            .await
            .unwrap();
        let honest = c.attestation(digest, 0).unwrap().unwrap();
        let made = |coordinator: NodeName, issued_us: i64, expires_us: i64| {
            let mut a = honest.clone();
            a.coordinator = coordinator;
            a.sequence += 1000;
            a.issued_us = issued_us;
            a.expires_us = expires_us;
            attest::sign(&alice_id, a).unwrap()
        };
        let mut altered = c.attestation(digest, 0).unwrap().unwrap();
        altered.sequence += 500;
        let past = honest.issued_us - 3_600_000_000;
        let elsewhere = NodeName::new(s.ca.cluster, NodeId::from_uuid(uuid::Uuid::new_v4()));
        let cases = [
            (None, "carries no attestation"),
            (
                bob.attestation(digest, 0).unwrap(),
                "/user/bob, but the connection is",
            ),
            (Some(altered), "does not verify"),
            (
                Some(made(honest.coordinator, past, past + 1_000_000)),
                "expired",
            ),
            (
                Some(made(elsewhere, honest.issued_us, honest.expires_us)),
                "not this node",
            ),
            (
                other.attestation(digest, 0).unwrap(),
                "another connection's session",
            ),
            (
                c.attestation(attest::request_digest("SELECT 1", None, 0, &[]), 0)
                    .unwrap(),
                "signs another request",
            ),
        ];
        // an honest attestation runs once
        assert_eq!(sent(&c, query(Some(honest.clone()))).await, "answered");
        for (a, why) in cases {
            let e = sent(&c, query(a)).await;
            assert!(
                e.contains("ATTESTATION_REFUSED") && e.contains(why),
                "{why}: {e}"
            );
        }
        // the same bytes again are a replay, the eighth refusal: the node closes
        // the connection
        let e = sent(&c, query(Some(honest))).await;
        assert!(e.contains("replay"), "{e}");
        let e = sent(&c, query(c.attestation(digest, 0).unwrap())).await;
        assert!(e.contains("refused attestations"), "{e}");
        // honest requests on the other connections keep working
        for client in [&other, &bob] {
            let r = responses(client, "SELECT 1").await;
            assert!(r.last().is_some_and(|d| d.starts_with("Done")), "{r:?}");
        }
        other.close().await;
        bob.close().await;
    });
    let refused: Vec<_> = sb_audit_json(&s.node.dir.join("data"))
        .into_iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("attestation refused"))
        })
        .collect();
    assert_eq!(refused.len(), 8, "every refusal is in the audit trail");
    assert!(refused.iter().all(|r| r["principal"] == "User::\"alice\""));
}

/// The node compiles a request while it checks the signature of its
/// attestation, so a forged signature is found after the statement was
/// planned and its stage signed. Nothing of it may run: an INSERT, a schema
/// change and a transaction under an attestation whose signature does not
/// verify are each refused, the table keeps its rows, no table appears, and the
/// trail records the refusals.
#[test]
fn a_refused_attestation_runs_nothing_though_its_request_was_compiled_meanwhile() {
    let s = setup(&["admin"], saas());
    load_saas_demo(&s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let creds = Credentials::load(
        &s.certs.join("admin.crt"),
        &s.certs.join("admin.key"),
        &s.certs.join("ca.crt"),
    )
    .unwrap();
    let statements = [
        "INSERT INTO customers VALUES (7, 1, 'Gale Gliders', 'g@gale.test', 'pro', 10.00)",
        "CREATE TABLE forged (id BIGINT PRIMARY KEY)",
        "BEGIN; DELETE FROM customers; COMMIT",
        "DELETE FROM customers WHERE id = 1",
    ];
    rt.block_on(async {
        let c = Client::connect(s.node.client_addr, &creds, &TransportLimits::default())
            .await
            .unwrap();
        for sql in statements {
            let digest = attest::request_digest(sql, None, 0, &[]);
            // signed for this very request, this node and this connection;
            // then changed, so only its signature is wrong
            let mut forged = c.attestation(digest, 0).unwrap().unwrap();
            forged.sequence += 100;
            let q = Query {
                sql: sql.into(),
                deadline_ms: 0,
                params: Vec::new(),
                context: None,
                attestation: Some(Box::new(forged)),
            };
            let e = sent(&c, q).await;
            assert!(
                e.contains("ATTESTATION_REFUSED") && e.contains("does not verify"),
                "{sql}: {e}"
            );
        }
        // a genuine signature the gate alone must stop: the same attestation
        // again (its sequence number is spent; the shard, which sees a fresh
        // envelope, would run it)
        let bump = "UPDATE customers SET mrr = mrr + 1 WHERE id = 1";
        let once = c
            .attestation(attest::request_digest(bump, None, 0, &[]), 0)
            .unwrap()
            .unwrap();
        let q = || Query {
            sql: bump.into(),
            deadline_ms: 0,
            params: Vec::new(),
            context: None,
            attestation: Some(Box::new(once.clone())),
        };
        assert_eq!(sent(&c, q()).await, "answered");
        let e = sent(&c, q()).await;
        assert!(
            e.contains("ATTESTATION_REFUSED") && e.contains("replay"),
            "{e}"
        );
        let count = responses(&c, "SELECT id FROM customers ORDER BY id").await;
        assert!(
            count
                .iter()
                .any(|l| l.starts_with("Done") && l.contains("rows: 6")),
            "{count:?}"
        );
        let r = responses(&c, "SELECT count(*) FROM forged").await;
        assert!(
            r.iter()
                .any(|l| l.contains("forged") && !l.starts_with("Done")),
            "{r:?}"
        );
        c.close().await;
    });
    // the replayed UPDATE ran once
    let mrr = ok(&sb(
        &s.node,
        &s.certs,
        "admin",
        &["-c", "SELECT mrr FROM customers WHERE id = 1"],
    ));
    assert!(mrr.contains("1201.00"), "{mrr}");
    let records = sb_audit_json(&s.node.dir.join("data"));
    let refused = records
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("attestation refused"))
        })
        .count();
    assert_eq!(
        refused,
        statements.len() + 1,
        "every refusal is in the audit trail"
    );
    // and nothing else failed: no shard was handed a stage or a change of
    // these requests to refuse
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r["outcome"] == "error")
        .filter(|r| {
            !r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("attestation refused"))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
