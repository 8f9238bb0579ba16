//! The control plane in real `sbnode` processes on loopback: three voters start
//! from `sb cluster init`'s genesis (one bootstraps the log, the others join
//! from their enrolment), the leader brings them into the log, every node
//! reports and observes its peers, and the epoch becomes effective as
//! `sb cluster status` shows; the leader is killed (SIGKILL), another is
//! elected and an administrator's next epoch commits; the killed node comes
//! back from its control directory and catches up; a node disabled by
//! `sb cluster member disable` is refused by the others within 2 seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_control::EpochHash;
use scratchbird_control::log::net::RaftRequest;
use scratchbird_control::log::{MemberId, openraft};
use scratchbird_control::state::{Command as ControlCommand, Report};
use scratchbird_control::wire::{self, PeerAnswer, PeerMessage};
use scratchbird_net::Role;
use scratchbird_net::client::{Client, Credentials};
use scratchbird_net::endpoint::TransportLimits;
use scratchbird_net::rpc::{Request, Response};
use scratchbird_policy::sign;
use scratchbird_tests::{Ca, Node, NodeOpts, bin, write_pair};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A free UDP port on loopback (QUIC listens on UDP).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Cluster {
    tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    peers: Vec<String>,
}

impl Cluster {
    fn certs(&self) -> PathBuf {
        self.tmp.path().join("ops")
    }

    fn admin_key(&self) -> PathBuf {
        self.tmp.path().join("admin.key")
    }

    /// `sb cluster ARGS` against node `n`.
    fn sb(&self, n: &Node, args: &[&str]) -> Command {
        let mut c = Command::new(bin("sb"));
        c.arg("cluster")
            .args(args)
            .arg("--connect")
            .arg(n.client_addr.to_string())
            .arg("--cert")
            .arg(self.certs().join("ops.crt"))
            .arg("--key")
            .arg(self.certs().join("ops.key"))
            .arg("--ca")
            .arg(self.tmp.path().join("ca/ca.crt"));
        c
    }

    fn status(&self, n: &Node) -> Option<serde_json::Value> {
        let out = self.sb(n, &["status", "--json"]).output().unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until `check` holds for node `n`'s status (30 s at most).
    fn wait(
        &self,
        n: &Node,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < until {
            if let Some(s) = self.status(n) {
                if check(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what}: not within 30 s; last status: {:#?}\nnode log:\n{}",
            last,
            n.log()
        );
    }
}

fn epoch_state(s: &serde_json::Value, n: u64) -> Option<&serde_json::Value> {
    s["epochs"]
        .as_array()?
        .iter()
        .find(|e| e["number"] == n)
        .map(|e| &e["state"])
}

fn effective(s: &serde_json::Value, n: u64) -> bool {
    epoch_state(s, n).is_some_and(|st| st.get("Effective").is_some())
}

fn voters(s: &serde_json::Value) -> usize {
    s["log_members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|x| x[2] == true).count())
}

/// Three voters' folders, certificates and configs, and the genesis.
fn cluster() -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let roles = [Role::Coordinator, Role::Shard, Role::Voter];
    let mut dirs = Vec::new();
    let mut peers = Vec::new();
    for i in 1..=3 {
        let dir = tmp.path().join(format!("n{i}"));
        let (_, issued) = ca.node(&format!("n{i}"), &roles);
        let peer = format!("127.0.0.1:{}", free_port());
        ca.members.nodes.last_mut().unwrap().peer = Some(peer.clone());
        ca.save();
        write_pair(&dir, "node", &issued);
        dirs.push(dir);
        peers.push(peer);
    }
    // n4: an enabled member with the shard role only, never started: a node
    // certificate a hostile operator could hold
    // (listed disabled: an enabled member that never runs would keep every
    // epoch from converging; the test enables it at the end)
    let (_, n4) = ca.node("n4", &[Role::Shard]);
    ca.members.nodes.last_mut().unwrap().enabled = false;
    ca.save();
    write_pair(&tmp.path().join("n4"), "node", &n4);
    let ops = ca.user("ops");
    write_pair(&tmp.path().join("ops"), "ops", &ops);
    ca.user("reader");
    std::fs::write(
        tmp.path().join("admin.key"),
        sign::secret_key_text(&ca.admin),
    )
    .unwrap();
    for (i, dir) in dirs.iter().enumerate() {
        let text = Node::config(
            dir,
            &ca,
            &roles,
            &NodeOpts {
                peers: true,
                ..NodeOpts::default()
            },
        );
        let text = text
            .replace(
                "peer_listen = \"127.0.0.1:0\"",
                &format!("peer_listen = {:?}", peers[i]),
            )
            .lines()
            .filter(|l| !l.starts_with("members = "))
            .collect::<Vec<_>>()
            .join("\n");
        let control = format!(
            "\n[control]\ndir = \"control\"\nenrolment = {:?}\nbootstrap = {}\nheartbeat_ms = 100\nelection_timeout_ms = 500\n",
            tmp.path().join("genesis.sbc"),
            i == 0
        );
        std::fs::write(dir.join("node.toml"), text + &control).unwrap();
    }
    run(Command::new(bin("sb"))
        .args(["cluster", "init", "--ca"])
        .arg(tmp.path().join("ca"))
        .arg("--key")
        .arg(tmp.path().join("admin.key"))
        .arg("--bundle")
        .arg(dirs[0].join("bundle"))
        .arg("--out")
        .arg(tmp.path().join("genesis.sbc")));
    Cluster { tmp, dirs, peers }
}

/// The node id in the certificate in `dir`.
fn node_id(dir: &Path) -> scratchbird_types::NodeId {
    let pem = std::fs::read_to_string(dir.join("node.crt")).unwrap();
    let der = scratchbird_net::identity::certs_from_pem(&pem)
        .unwrap()
        .remove(0);
    let info = scratchbird_net::identity::inspect(&der).unwrap();
    scratchbird_net::SbUri::parse(&info.uris[0])
        .unwrap()
        .node_id()
        .unwrap()
}

/// Connects to `peer` as the node whose folder is `dir`: the answer is the
/// refusal, if any.
fn connect_as_node(dir: &Path, ca: &Path, peer: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let creds = Credentials::load(&dir.join("node.crt"), &dir.join("node.key"), ca)
            .map_err(|e| e.to_string())?;
        Client::connect(peer.parse().unwrap(), &creds, &TransportLimits::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

/// Sends `message` to the peer endpoint at `peer` as the node whose folder is
/// `dir`; returns the node's answer (or its error code).
fn send_as_node(
    dir: &Path,
    ca: &Path,
    peer: &str,
    message: &PeerMessage,
) -> Result<PeerAnswer, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let creds = Credentials::load(&dir.join("node.crt"), &dir.join("node.key"), ca)
            .map_err(|e| e.to_string())?;
        let c = Client::connect(peer.parse().unwrap(), &creds, &TransportLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        let bytes = wire::encode(message).unwrap();
        let mut r = c
            .send(&Request::ControlPlane(bytes))
            .await
            .map_err(|e| e.to_string())?;
        match r.next().await {
            Ok(Some(Response::ControlPlane(b))) => wire::decode(&b),
            Ok(Some(Response::Error(e))) => Err(e.code),
            Err(scratchbird_net::client::ClientError::Rpc(e)) => Err(e.code),
            other => Err(format!("{other:?}")),
        }
    })
}

#[test]
fn three_voters_converge_survive_their_leader_and_refuse_a_disabled_node() {
    let c = cluster();
    let mut nodes: Vec<Option<Node>> = c.dirs.iter().map(|d| Some(Node::spawn(d))).collect();
    let s = c.wait(
        nodes[1].as_ref().unwrap(),
        "epoch 1 effective with three voters",
        |s| effective(s, 1) && voters(s) == 3,
    );
    let leader = s["leader"].as_str().unwrap().to_owned();

    let names: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.as_ref()
                .unwrap()
                .name
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let l = names.iter().position(|n| *n == leader).unwrap();

    // SIGKILL the leader: the two others elect one and take the next epoch.
    nodes[l].take().unwrap().kill();
    let other = (l + 1) % 3;
    c.wait(nodes[other].as_ref().unwrap(), "a new leader", |s| {
        s["leader"].as_str().is_some_and(|x| x != leader)
    });
    let out = run(&mut c.sb(
        nodes[other].as_ref().unwrap(),
        &[
            "member",
            "enable",
            "reader",
            "--admin-key",
            c.admin_key().to_str().unwrap(),
        ],
    ));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published epoch 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The killed leader comes back from its control directory and catches up.
    nodes[l] = Some(Node::spawn(&c.dirs[l]));
    c.wait(
        nodes[l].as_ref().unwrap(),
        "the old leader has epoch 2",
        |s| epoch_state(s, 2).is_some(),
    );
    let survivor = nodes[other].as_ref().unwrap();
    c.wait(survivor, "epoch 2 effective", |s| effective(s, 2));

    // Disable a node that is not the leader now; the others refuse it within 2 s.
    let s = c.status(survivor).unwrap();
    let now_leader = s["leader"].as_str().unwrap().to_owned();
    let d = names.iter().position(|n| *n != now_leader).unwrap();
    let asked = nodes
        .iter()
        .position(|n| n.is_some())
        .filter(|i| *i != d)
        .unwrap_or((d + 1) % 3);
    run(&mut c.sb(
        nodes[asked].as_ref().unwrap(),
        &[
            "member",
            "disable",
            &format!("n{}", d + 1),
            "--admin-key",
            c.admin_key().to_str().unwrap(),
        ],
    ));
    // committed on the leader when the command returns
    let started = Instant::now();
    let ca = c.tmp.path().join("ca/ca.crt");
    for (i, peer) in c.peers.iter().enumerate() {
        if i == d {
            continue;
        }
        loop {
            match connect_as_node(&c.dirs[d], &ca, peer) {
                Err(e) if e.contains("disabled") || e.contains("DISABLED") => break,
                other => {
                    assert!(
                        started.elapsed() < Duration::from_secs(2),
                        "node n{} still admitted by n{} {:?} after the disable: {other:?}",
                        d + 1,
                        i + 1,
                        started.elapsed()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let keep = (0..3).find(|i| *i != d).unwrap();
    let s = c.wait(
        nodes[keep].as_ref().unwrap(),
        "epoch 3 effective without the disabled node",
        |s| effective(s, 3),
    );
    assert_eq!(voters(&s), 2, "{s:#}");

    // n4, a member node without the voter role, enabled now, tries the log.
    run(&mut c.sb(
        nodes[keep].as_ref().unwrap(),
        &[
            "member",
            "enable",
            "n4",
            "--admin-key",
            c.admin_key().to_str().unwrap(),
        ],
    ));
    c.wait(nodes[keep].as_ref().unwrap(), "epoch 4 applied", |s| {
        epoch_state(s, 4).is_some()
    });
    // a vote for itself in a far term, and a report in another node's name
    let n4 = c.tmp.path().join("n4");
    let n4_id = node_id(&n4);
    let forged_vote = PeerMessage::Raft(RaftRequest::Vote(openraft::raft::VoteRequest {
        vote: openraft::Vote::new(1_000, MemberId::of(n4_id)),
        last_log_id: None,
    }));
    // (the node puts a newly applied epoch's membership in force within 250 ms)
    let until = Instant::now() + Duration::from_secs(2);
    let refused = loop {
        let got = send_as_node(&n4, &ca, &c.peers[keep], &forged_vote).unwrap_err();
        if !got.contains("NODE_DISABLED") || Instant::now() > until {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused, "NODE_MISSING_ROLE");
    let as_n1 = PeerMessage::Submit(ControlCommand::Report {
        from: node_id(&c.dirs[keep]),
        report: Report::Applied {
            epoch: scratchbird_types::Epoch(1),
            hash: EpochHash::NONE,
        },
    });
    let answer = send_as_node(&n4, &ca, &c.peers[keep], &as_n1).unwrap();
    assert!(
        matches!(&answer, PeerAnswer::Refused { code, .. } if code == "NOT_SENDER"),
        "{answer:?}"
    );
    let s_after = c.status(nodes[keep].as_ref().unwrap()).unwrap();
    assert!(
        s_after["term"].as_u64().unwrap() < 1_000,
        "the forged term moved the log"
    );
}
