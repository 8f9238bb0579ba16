//! The control plane administered through the binaries a user runs, on real
//! `sbnode` processes: a full CA rotation (`sb ca rotate new|begin|status|
//! cutover`) under continuous queries and writes from several clients, and the
//! configuration an epoch carries (`sb cluster bundle publish`, `member
//! add|remove`, `epoch list|show|verify`) put in force by every node.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::{Client, Credentials, TransportLimits};
use scratchbird_tests::{Node, bin, control_cluster, effective, epoch_state, run, voters};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A user's certificate, key and the CA file they trust.
#[derive(Clone, Debug)]
struct Creds {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Creds {
    fn of(dir: &Path, name: &str, ca: &Path) -> Self {
        Self {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: ca.to_owned(),
        }
    }
}

/// `sb ARGS --connect NODE --cert --key --ca`.
fn sb(n: &Node, who: &Creds, args: &[&str]) -> Command {
    let mut c = Command::new(bin("sb"));
    c.args(args)
        .arg("--connect")
        .arg(n.client_addr.to_string())
        .arg("--cert")
        .arg(&who.cert)
        .arg("--key")
        .arg(&who.key)
        .arg("--ca")
        .arg(&who.ca);
    c
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status(n: &Node, who: &Creds) -> Option<serde_json::Value> {
    let o = sb(n, who, &["cluster", "status", "--json"])
        .output()
        .unwrap();
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

fn wait(n: &Node, who: &Creds, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < until {
        if let Some(s) = status(n, who) {
            if check(&s) {
                return;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what}: not within 30 s; last status {last:#?}\n{}",
        n.log()
    );
}

fn node_id(dir: &Path) -> String {
    let pem = std::fs::read_to_string(dir.join("node.crt")).unwrap();
    let der = scratchbird_net::identity::certs_from_pem(&pem).unwrap();
    let info = scratchbird_net::identity::inspect(&der[0]).unwrap();
    info.uris[0].rsplit('/').next().unwrap().to_owned()
}

/// Whether a connection as `who` (a user's or node's certificate) to `addr`
/// is refused.
fn refused(cert: &Path, key: &Path, ca: &Path, addr: &str) -> Result<(), String> {
    scratchbird_tests::block_on(async {
        let creds = Credentials::load(cert, key, ca).map_err(|e| e.to_string())?;
        let c = Client::connect(addr.parse().unwrap(), &creds, &TransportLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        // a handshake the server refuses can complete on the client's side
        // first: the first request says
        let mut r = c.query("SELECT 1", 0).await.map_err(|e| e.to_string())?;
        r.next().await.map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Clients that keep running SQL through `sb sql` (a new connection each
/// time, with whatever credentials are current) against every node, and one
/// that keeps a single connection open.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    creds: Arc<Mutex<Creds>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(nodes: &[Node], creds: Creds) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let creds = Arc::new(Mutex::new(creds));
        let mut threads = Vec::new();
        for (j, n) in nodes.iter().enumerate() {
            let addr = n.client_addr.to_string();
            let (stop, done, failures, creds) =
                (stop.clone(), done.clone(), failures.clone(), creds.clone());
            threads.push(std::thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let who = creds.lock().unwrap().clone();
                    let id = 1_000_000 * (j as u64 + 1) + k;
                    k += 1;
                    let o = Command::new(bin("sb"))
                        .args(["sql", "--connect", &addr, "--cert"])
                        .arg(&who.cert)
                        .arg("--key")
                        .arg(&who.key)
                        .arg("--ca")
                        .arg(&who.ca)
                        .arg("-c")
                        .arg(format!(
                            "INSERT INTO t VALUES ({id}, {j}); SELECT count(*) FROM t WHERE id = {id}"
                        ))
                        .output()
                        .unwrap();
                    if o.status.success() && String::from_utf8_lossy(&o.stdout).contains('1') {
                        done.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("client {j} with {who:?}: {}", out(&o)));
                    }
                }
            }));
        }
        Self {
            stop,
            done,
            failures,
            creds,
            threads,
        }
    }

    fn use_creds(&self, c: Creds) {
        *self.creds.lock().unwrap() = c;
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.done.load(Ordering::SeqCst), failures)
    }
}

/// One connection kept open under the old CA, querying until it is closed:
/// it must last through the overlap and end only at cutover.
fn kept_open(addr: String, who: Creds) -> std::thread::JoinHandle<(u64, String, Instant)> {
    std::thread::spawn(move || {
        scratchbird_tests::block_on(async {
            let creds = Credentials::load(&who.cert, &who.key, &who.ca).unwrap();
            let c = Client::connect(addr.parse().unwrap(), &creds, &TransportLimits::default())
                .await
                .unwrap();
            let mut n = 0u64;
            loop {
                let r = async {
                    let mut r = c.query("SELECT count(*) FROM t", 0).await?;
                    while r.next().await?.is_some() {}
                    Ok::<_, scratchbird_net::ClientError>(())
                }
                .await;
                match r {
                    Ok(()) => n += 1,
                    Err(e) => return (n, e.to_string(), Instant::now()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    })
}

#[test]
fn a_ca_rotation_under_load_fails_no_request_and_ends_the_old_ca_everywhere() {
    let c = control_cluster(3);
    let tmp = c.tmp.path().to_owned();
    let nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    let ops_a = Creds::of(&c.certs(), "ops", &tmp.join("ca/ca.crt"));
    wait(&nodes[0], &ops_a, "epoch 1 effective", |s| {
        effective(s, 1) && voters(s) == 3
    });
    // a schema change is the cluster's: made at one node, every node has the
    // table (each holds its own rows until distributed execution)
    create_everywhere(&nodes, &ops_a, "");

    let load = Load::start(&nodes, ops_a.clone());
    let kept = kept_open(nodes[1].client_addr.to_string(), ops_a.clone());

    // the next CA of the same cluster; clients trust both roots from now
    let o = run(Command::new(bin("sb"))
        .args(["ca", "rotate", "new", "--from"])
        .arg(tmp.join("ca"))
        .arg("--dir")
        .arg(tmp.join("ca2")));
    assert!(out(&o).contains("overlap.crt"), "{}", out(&o));
    let overlap = tmp.join("ca2/overlap.crt");
    let ops_a_overlap = Creds::of(&c.certs(), "ops", &overlap);
    load.use_creds(ops_a_overlap.clone());

    // begin: every node trusts both roots once it applies epoch 2
    let admin = c.admin_key();
    let o = run(sb(
        &nodes[2],
        &ops_a_overlap,
        &[
            "ca",
            "rotate",
            "begin",
            "--new",
            tmp.join("ca2").to_str().unwrap(),
            "--stability-secs",
            "2",
            "--admin-key",
            admin.to_str().unwrap(),
        ],
    )
    .env("NO_COLOR", "1"));
    assert!(out(&o).contains("published epoch 2"), "{}", out(&o));
    wait(
        &nodes[0],
        &ops_a_overlap,
        "the overlap epoch effective",
        |s| effective(s, 2),
    );

    // no cutover while the nodes still present certificates of the old root
    let o = sb(
        &nodes[0],
        &ops_a_overlap,
        &[
            "ca",
            "rotate",
            "cutover",
            "--admin-key",
            admin.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(
        out(&o).contains("CONTROL_CUTOVER_NOT_CONVERGED"),
        "{}",
        out(&o)
    );

    // every node and the user get certificates of the new CA; nodes reload
    // theirs (SIGHUP) and their peers see them on the next connection
    let old_n1 = renew_node_certificates(&c, &nodes);
    let o = run(Command::new(bin("sb"))
        .args(["ca", "issue-user", "--dir"])
        .arg(tmp.join("ca2"))
        .args(["--name", "ops", "--out"])
        .arg(tmp.join("ops-b")));
    assert!(o.status.success(), "{}", out(&o));
    let ops_b = Creds::of(&tmp.join("ops-b"), "ops", &overlap);
    load.use_creds(ops_b.clone());

    // status says when cutover may be made
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sb(&nodes[1], &ops_b, &["ca", "rotate", "status"])
            .output()
            .unwrap();
        if out(&o).contains("may be made now") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the rotation did not converge: {}\n{}",
            out(&o),
            nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut = Instant::now();
    let o = run(&mut sb(
        &nodes[1],
        &ops_b,
        &[
            "ca",
            "rotate",
            "cutover",
            "--admin-key",
            admin.to_str().unwrap(),
        ],
    ));
    assert!(out(&o).contains("published epoch 3"), "{}", out(&o));
    let ops_b_only = Creds::of(&tmp.join("ops-b"), "ops", &tmp.join("ca2/ca.crt"));
    wait(&nodes[2], &ops_b_only, "the cutover epoch effective", |s| {
        effective(s, 3)
    });
    std::thread::sleep(Duration::from_secs(1));
    let (done, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} request(s) failed during the rotation:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(done >= 20, "only {done} requests ran during the rotation");

    // the connection kept open under the old CA served through the overlap
    // and was closed at cutover, saying why
    let (served, why, ended) = kept.join().unwrap();
    assert!(
        ended >= cut,
        "the old-CA connection ended before cutover: {why}"
    );
    assert!(served >= 10, "{served}");
    assert!(
        why.contains("CA_CHANGED") || why.contains("no longer trusted"),
        "{why}"
    );

    // after cutover, certificates of the old CA are refused at every node,
    // a user's on the client endpoint and a node's on the peer endpoint
    old_ca_refused_everywhere(&c, &nodes, &ops_a, &old_n1, &overlap, &ops_b_only);
    let s = status(&nodes[0], &ops_b_only).unwrap();
    assert!(epoch_state(&s, 2).is_some());
    let notes: Vec<&str> = s["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["note"].as_str().unwrap())
        .collect();
    assert!(
        notes[1].contains("CA rotation begins") && notes[2].contains("CA cutover"),
        "{notes:?}"
    );
}

/// Issues every node a certificate of the new CA in `ca2` (same id, roles,
/// peer address) and puts it in place; each node reloads it on SIGHUP.
/// Returns a folder holding n1's old certificate and key.
fn renew_node_certificates(c: &scratchbird_tests::ControlCluster, nodes: &[Node]) -> PathBuf {
    let tmp = c.tmp.path();
    let old_n1 = tmp.join("n1-old");
    std::fs::create_dir_all(&old_n1).unwrap();
    for f in ["node.crt", "node.key"] {
        std::fs::copy(c.dirs[0].join(f), old_n1.join(f)).unwrap();
    }
    for (i, n) in nodes.iter().enumerate() {
        let fresh = tmp.join(format!("n{}-new", i + 1));
        let o = run(Command::new(bin("sb"))
            .args(["ca", "issue-node", "--dir"])
            .arg(tmp.join("ca2"))
            .args([
                "--name",
                &format!("n{}", i + 1),
                "--id",
                &node_id(&c.dirs[i]),
            ])
            .args([
                "--roles",
                "coordinator,shard,voter",
                "--peer",
                &c.peers[i],
                "--out",
            ])
            .arg(&fresh));
        assert!(o.status.success(), "{}", out(&o));
        for f in ["node.key", "node.crt"] {
            let tmp_file = c.dirs[i].join(format!("{f}.new"));
            std::fs::copy(fresh.join(f), &tmp_file).unwrap();
            std::fs::rename(&tmp_file, c.dirs[i].join(f)).unwrap();
        }
        n.signal("HUP");
    }
    old_n1
}

/// After cutover: the old CA's user and node certificates are refused at
/// every node; the new CA's user certificate is taken.
fn old_ca_refused_everywhere(
    c: &scratchbird_tests::ControlCluster,
    nodes: &[Node],
    ops_a: &Creds,
    old_n1: &Path,
    overlap: &Path,
    ops_b_only: &Creds,
) {
    for (i, n) in nodes.iter().enumerate() {
        let r = refused(&ops_a.cert, &ops_a.key, overlap, &n.client_addr.to_string());
        assert!(
            r.is_err(),
            "n{} took a user certificate of the old CA",
            i + 1
        );
        let r = refused(
            &old_n1.join("node.crt"),
            &old_n1.join("node.key"),
            overlap,
            &c.peers[i],
        );
        assert!(
            r.is_err(),
            "n{} took a node certificate of the old CA",
            i + 1
        );
        let r = refused(
            &ops_b_only.cert,
            &ops_b_only.key,
            &ops_b_only.ca,
            &n.client_addr.to_string(),
        );
        assert!(r.is_ok(), "n{} refused the new CA: {r:?}", i + 1);
    }
}

#[test]
fn bundles_members_and_the_chain_are_the_epochs_and_every_node_runs_them() {
    let c = control_cluster(3);
    let tmp = c.tmp.path().to_owned();
    let nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    let ca = tmp.join("ca/ca.crt");
    let ops = Creds::of(&c.certs(), "ops", &ca);
    let admin = c.admin_key();
    let admin = admin.to_str().unwrap();
    wait(&nodes[0], &ops, "epoch 1 effective", |s| {
        effective(s, 1) && voters(s) == 3
    });
    // the rows are the cluster's, placed on its shards by id: one statement
    // for each (no statement writes on two shards)
    create_everywhere(
        &nodes,
        &ops,
        "INSERT INTO t VALUES (1, 1); INSERT INTO t VALUES (2, 2); INSERT INTO t VALUES (3, 3)",
    );

    // a user added by an epoch is admitted by every node; one never added is not
    let o = run(Command::new(bin("sb"))
        .args(["ca", "issue-user", "--dir"])
        .arg(tmp.join("ca"))
        .args(["--name", "erin", "--out"])
        .arg(tmp.join("erin")));
    assert!(o.status.success(), "{}", out(&o));
    let erin = Creds::of(&tmp.join("erin"), "erin", &ca);
    let count = |n: &Node, who: &Creds| {
        sb(n, who, &["sql", "-c", "SELECT count(*) FROM t"])
            .output()
            .unwrap()
    };
    assert!(
        !count(&nodes[1], &erin).status.success(),
        "erin is not a member yet"
    );
    let o = run(&mut sb(
        &nodes[1],
        &ops,
        &["cluster", "member", "add", "erin", "--admin-key", admin],
    ));
    assert!(out(&o).contains("published epoch 2"), "{}", out(&o));
    let o = run(&mut sb(
        &nodes[2],
        &ops,
        &[
            "cluster",
            "member",
            "enable",
            "reader",
            "--admin-key",
            admin,
        ],
    ));
    assert!(out(&o).contains("published epoch 3"), "{}", out(&o));
    wait(&nodes[0], &ops, "epoch 3 effective", |s| effective(s, 3));
    let o = run(Command::new(bin("sb"))
        .args(["ca", "issue-user", "--dir"])
        .arg(tmp.join("ca"))
        .args(["--name", "reader", "--out"])
        .arg(tmp.join("reader")));
    assert!(o.status.success(), "{}", out(&o));
    let reader = Creds::of(&tmp.join("reader"), "reader", &ca);
    for n in &nodes {
        for who in [&erin, &reader] {
            let o = count(n, who);
            assert!(o.status.success() && out(&o).contains('3'), "{}", out(&o));
        }
    }

    // a bundle published in an epoch is what every node enforces: without
    // the readers' permit, erin (a dba) still reads, nobody else does
    let v2 = tmp.join("bundle-v2");
    std::fs::create_dir_all(&v2).unwrap();
    for f in ["schema.cedarschema", "entities.json"] {
        std::fs::copy(scratchbird_tests::ops_bundle().join(f), v2.join(f)).unwrap();
    }
    std::fs::write(
        v2.join("policies.cedar"),
        "@id(\"dba\")\npermit (principal in Role::\"dba\", action, resource);\n",
    )
    .unwrap();
    // a folder that does not load is refused before anything is published
    let broken = tmp.join("bundle-broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("policies.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let o = sb(
        &nodes[0],
        &ops,
        &[
            "cluster",
            "bundle",
            "publish",
            broken.to_str().unwrap(),
            "--admin-key",
            admin,
        ],
    )
    .output()
    .unwrap();
    assert!(!o.status.success(), "{}", out(&o));
    let o = run(&mut sb(
        &nodes[0],
        &ops,
        &[
            "cluster",
            "bundle",
            "publish",
            v2.to_str().unwrap(),
            "--admin-key",
            admin,
        ],
    ));
    assert!(out(&o).contains("published epoch 4"), "{}", out(&o));
    wait(&nodes[1], &ops, "epoch 4 effective", |s| {
        effective(s, 4) && s["gate"].is_null()
    });
    for n in &nodes {
        let o = count(n, &erin);
        assert!(o.status.success() && out(&o).contains('3'), "{}", out(&o));
        let o = count(n, &reader);
        assert!(
            !(o.status.success() && out(&o).contains('3')),
            "reader still reads under the new bundle: {}",
            out(&o)
        );
        assert!(
            n.log().contains("security bundle of the epoch in force"),
            "{}",
            n.log()
        );
        last_stage_ran_in(n, 4);
    }

    // signed by the administrator but naming bytes that are no bundle, sent
    // straight to a node (not through sb's checks): the leader refuses it
    // before it costs the log an entry, so no node is left without a bundle
    let answer = publish_raw(&nodes[1], &ops, &c.admin_key(), b"not a bundle");
    assert!(answer.contains("CONTROL_BUNDLE"), "{answer}");

    chain_commands(&nodes[2], &ops, &tmp);

    // remove: erin is refused by every node
    let o = run(&mut sb(
        &nodes[0],
        &ops,
        &["cluster", "member", "remove", "erin", "--admin-key", admin],
    ));
    assert!(out(&o).contains("published epoch 5"), "{}", out(&o));
    wait(&nodes[0], &ops, "epoch 5 effective", |s| effective(s, 5));
    for n in &nodes {
        assert!(!count(n, &erin).status.success());
    }
    rules_refuse_other_keys(&nodes, &ops, &tmp, admin);
}

/// Creates table `t` at the first node, waits until every node has it (the
/// cluster's schema change applied everywhere), then runs `then` once, at
/// the first node (the table's rows are the cluster's).
fn create_everywhere(nodes: &[Node], who: &Creds, then: &str) {
    let o = run(&mut sb(
        &nodes[0],
        who,
        &["sql", "-c", "CREATE TABLE t (id BIGINT PRIMARY KEY, k INT)"],
    ));
    assert!(o.status.success(), "{}", out(&o));
    for n in nodes {
        let until = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let o = sb(n, who, &["sql", "-c", "SELECT count(*) FROM t"])
                .output()
                .unwrap();
            if o.status.success() {
                break;
            }
            assert!(
                Instant::now() < until,
                "no table t at {}: {}",
                n.name,
                out(&o)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    if !then.is_empty() {
        let o = run(&mut sb(&nodes[0], who, &["sql", "-c", then]));
        assert!(o.status.success(), "{}", out(&o));
    }
}

/// Plans are made and run in the epoch in force: the last shard stage that
/// ran on `n` is recorded under epoch `epoch`.
fn last_stage_ran_in(n: &Node, epoch: u64) {
    let recs = scratchbird_tests::sb_audit_json(&n.dir.join("data"));
    let last = recs
        .iter()
        .rev()
        .find(|r| r["envelope"].is_string() && r["outcome"] == "ok")
        .expect("a shard stage in the trail");
    assert_eq!(last["epoch"], epoch, "{last}");
}

/// `sb ca rules`: once the CA policy takes only Ed25519 keys, a user's ECDSA
/// certificate, taken before, is refused by every node (`CERT_POLICY`).
fn rules_refuse_other_keys(nodes: &[Node], ops: &Creds, tmp: &Path, admin: &str) {
    let o = run(Command::new(bin("sb"))
        .args(["ca", "issue-user", "--dir"])
        .arg(tmp.join("ca"))
        .args(["--name", "ops", "--alg", "ecdsa-p256", "--out"])
        .arg(tmp.join("ops-ec")));
    assert!(o.status.success(), "{}", out(&o));
    let ec = Creds::of(&tmp.join("ops-ec"), "ops", &ops.ca);
    let addr = nodes[0].client_addr.to_string();
    refused(&ec.cert, &ec.key, &ec.ca, &addr).unwrap();
    let o = run(&mut sb(
        &nodes[1],
        ops,
        &[
            "ca",
            "rules",
            "--key-algorithms",
            "ed25519",
            "--admin-key",
            admin,
        ],
    ));
    assert!(out(&o).contains("published epoch 6"), "{}", out(&o));
    wait(&nodes[0], ops, "epoch 6 effective", |s| effective(s, 6));
    for n in nodes {
        let r = refused(&ec.cert, &ec.key, &ec.ca, &n.client_addr.to_string());
        assert!(
            r.as_ref().is_err_and(|e| e.contains("CERT_POLICY")),
            "{r:?}"
        );
        refused(&ops.cert, &ops.key, &ops.ca, &n.client_addr.to_string()).unwrap();
    }
}

/// Publishes, over the wire, the epoch after the current one naming `bundle`
/// as its security bundle, signed with the administrator key; returns the
/// node's answer.
fn publish_raw(n: &Node, who: &Creds, admin_key: &Path, bundle: &[u8]) -> String {
    use scratchbird_control::Documents;
    use scratchbird_control::state::ControlState;
    use scratchbird_control::wire::{self, AdminAnswer, AdminMessage};
    use scratchbird_net::rpc::{Request, Response};
    async fn ask(c: &Client, m: &AdminMessage) -> AdminAnswer {
        let mut r = c
            .send(&Request::ControlPlane(wire::encode(m).unwrap()))
            .await
            .unwrap();
        match r.next().await.unwrap() {
            Some(Response::ControlPlane(b)) => wire::decode::<AdminAnswer>(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }
    let admin = scratchbird_policy::sign::read_secret_key(admin_key).unwrap();
    scratchbird_tests::block_on(async {
        let creds = Credentials::load(&who.cert, &who.key, &who.ca).unwrap();
        let c = Client::connect(n.client_addr, &creds, &TransportLimits::default())
            .await
            .unwrap();
        let AdminAnswer::Chain(image) = ask(&c, &AdminMessage::Chain).await else {
            panic!("no chain")
        };
        let state = ControlState::from_image(&image).unwrap();
        let chain = state.chain().unwrap();
        let mut r = chain.current().clone();
        r.number = r.number.next();
        r.prev = chain.current_hash();
        r.created_us += 1;
        r.documents.bundle = Documents::hash(bundle);
        r.note = "hostile".into();
        let epoch = r.signed_by(&[&admin]).unwrap();
        let message = AdminMessage::Publish {
            epoch,
            documents: vec![bundle.to_vec().into()],
        };
        format!("{:?}", ask(&c, &message).await)
    })
}

#[test]
fn the_log_anchors_each_nodes_audit_head_and_a_replaced_trail_is_caught() {
    let c = control_cluster(3);
    let tmp = c.tmp.path().to_owned();
    let mut nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    let ops = Creds::of(&c.certs(), "ops", &tmp.join("ca/ca.crt"));
    wait(&nodes[0], &ops, "epoch 1 effective", |s| effective(s, 1));
    for sql in [
        "CREATE TABLE t (id BIGINT PRIMARY KEY, k INT)",
        "INSERT INTO t VALUES (1, 1)",
        "SELECT count(*) FROM t",
    ] {
        let o = run(&mut sb(&nodes[0], &ops, &["sql", "-c", sql]));
        assert!(o.status.success(), "{}", out(&o));
    }
    let n1 = node_id(&c.dirs[0]);
    wait(&nodes[1], &ops, "n1's audit head anchored", |s| {
        s["anchors"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x[0].as_str() == Some(n1.as_str()) && x[1].as_u64() >= Some(2))
        })
    });
    let admin_pub = tmp.join("ca/admin.pub");
    let data = c.dirs[0].join("data");
    let verify = |n: &Node| {
        sb(
            n,
            &ops,
            &[
                "audit",
                "spine",
                "verify",
                "--data",
                data.to_str().unwrap(),
                "--trust",
                admin_pub.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap()
    };
    let o = verify(&nodes[1]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("the control log anchored"), "{}", out(&o));
    let o = run(&mut sb(&nodes[2], &ops, &["audit", "spine", "show"]));
    assert!(
        out(&o).contains("cluster init") && out(&o).contains(&n1),
        "{}",
        out(&o)
    );

    // the node's trail and head replaced together (here: removed, so the
    // node starts a new one): the trail verifies on its own, but not against
    // the log, and the node's next anchor is refused
    let n = nodes.remove(0);
    n.terminate(Duration::from_secs(10));
    std::fs::remove_dir_all(data.join("audit")).unwrap();
    nodes.insert(0, Node::spawn(&c.dirs[0]));
    let o = run(&mut sb(
        &nodes[0],
        &ops,
        &["sql", "-c", "SELECT count(*) FROM t"],
    ));
    assert!(o.status.success(), "{}", out(&o));
    let o = run(Command::new(bin("sb"))
        .args(["audit", "verify", "--data"])
        .arg(&data));
    assert!(
        o.status.success(),
        "the replaced trail verifies on its own: {}",
        out(&o)
    );
    let o = verify(&nodes[1]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("REPLACED") || out(&o).contains("REWRITTEN"),
        "{}",
        out(&o)
    );
    // the node itself sees its trail no longer holds what was anchored, and
    // anchors nothing more (the evidence in the log stays)
    assert!(
        nodes[0].wait_log("does not hold record", Duration::from_secs(20)),
        "{}",
        nodes[0].log()
    );
    let s = status(&nodes[1], &ops).unwrap();
    let kept = s["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x[0].as_str() == Some(n1.as_str()))
        .unwrap()
        .clone();
    std::thread::sleep(Duration::from_secs(6));
    let s = status(&nodes[1], &ops).unwrap();
    assert!(
        s["anchors"].as_array().unwrap().contains(&kept),
        "the anchor moved: {s:#}"
    );
}

/// `sb cluster epoch list|show|verify` after the four epochs of the test
/// above: verify takes the administrator's key and refuses another.
fn chain_commands(n: &Node, ops: &Creds, tmp: &Path) {
    // the chain: list, show, and verify here against the administrator's key
    let o = run(&mut sb(n, ops, &["cluster", "shards"]));
    assert!(
        out(&o).contains("3 shard(s), shard map version 1") && out(&o).contains("owned by n1"),
        "{}",
        out(&o)
    );
    let o = run(&mut sb(n, ops, &["cluster", "epoch", "list"]));
    assert!(
        out(&o).contains("add erin") && out(&o).contains("bundle "),
        "{}",
        out(&o)
    );
    let o = run(&mut sb(n, ops, &["cluster", "epoch", "show", "4"]));
    assert!(
        out(&o).contains("epoch         4") && out(&o).contains("signed by"),
        "{}",
        out(&o)
    );
    let admin_pub = tmp.join("ca/admin.pub");
    let o = run(&mut sb(
        n,
        ops,
        &[
            "cluster",
            "epoch",
            "verify",
            "--trust",
            admin_pub.to_str().unwrap(),
        ],
    ));
    assert!(out(&o).contains("verified 4 epoch(s)"), "{}", out(&o));
    // against a key that did not sign it, the chain is refused
    let o = run(Command::new(bin("sb"))
        .args(["bundle", "keygen", "--out"])
        .arg(tmp.join("other")));
    assert!(o.status.success(), "{}", out(&o));
    let o = sb(
        n,
        ops,
        &[
            "cluster",
            "epoch",
            "verify",
            "--trust",
            tmp.join("other.pub").to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        !o.status.success() && out(&o).contains("REFUSED"),
        "{}",
        out(&o)
    );
}
