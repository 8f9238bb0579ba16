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
use scratchbird_net::client::{Client, Credentials};
use scratchbird_net::endpoint::TransportLimits;
use scratchbird_net::rpc::{Request, Response};
use scratchbird_tests::{Node, control_cluster, effective, epoch_state, run, voters};
use std::path::Path;
use std::time::{Duration, Instant};

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
    let c = control_cluster(3);
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

    // spare, a member node without the voter role, enabled now, tries the log.
    run(&mut c.sb(
        nodes[keep].as_ref().unwrap(),
        &[
            "member",
            "enable",
            "spare",
            "--admin-key",
            c.admin_key().to_str().unwrap(),
        ],
    ));
    c.wait(nodes[keep].as_ref().unwrap(), "epoch 4 applied", |s| {
        epoch_state(s, 4).is_some()
    });
    // a vote for itself in a far term, and a report in another node's name
    let n4 = c.tmp.path().join("spare");
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
