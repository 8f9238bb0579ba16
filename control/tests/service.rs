//! Whole control services in one process on the in-process transport: a
//! cluster starts from `sb cluster init`'s genesis on one node, the leader
//! brings the epoch's voters into the log, every node reports the epoch it
//! applied and observes its peers, and the epoch becomes effective; an
//! administrator's next epoch, sent to a follower, disables a node: it leaves
//! the log's voters, its reports stop counting, and the epoch converges
//! without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::log::member::{ControlMember, LogConfig};
use scratchbird_control::log::net::{Handler, Loopback};
use scratchbird_control::log::{MemberId, PeerAddr};
use scratchbird_control::members;
use scratchbird_control::service::{PeerCertificate, Service};
use scratchbird_control::state::{Command, ControlState, EpochState, Outcome, Report};
use scratchbird_control::wire::{AdminAnswer, AdminMessage, PeerAnswer, PeerMessage};
use scratchbird_control::{
    AdminKey, Administrators, Capabilities, Documents, EpochHash, EpochRecord, SignedEpoch,
};
use scratchbird_net::verify::{MembersList, NodeEntry, Role};
use scratchbird_types::{ClusterId, Epoch, NodeId};
use tempfile::TempDir;

fn admin() -> SigningKey {
    SigningKey::from_bytes(&[31; 32])
}

fn cluster() -> ClusterId {
    ClusterId::from_bytes([6; 16])
}

fn node(i: u64) -> NodeId {
    MemberId::from(i).node()
}

fn addr(i: u64) -> String {
    format!("member-{i}")
}

fn membership(enabled: &[u64]) -> Vec<u8> {
    members::encode(&MembersList {
        cluster: cluster(),
        nodes: (1..=3)
            .map(|i| NodeEntry {
                id: node(i),
                name: format!("n{i}"),
                enabled: enabled.contains(&i),
                roles: vec![Role::Voter, Role::Shard],
                peer: Some(addr(i)),
            })
            .collect(),
        users: vec![],
    })
    .unwrap()
}

fn record(n: u64, prev: EpochHash, members: &[u8], note: &str) -> EpochRecord {
    EpochRecord {
        format: EPOCH_FORMAT,
        cluster: cluster(),
        number: Epoch(n),
        prev,
        created_us: 1_000 * i64::try_from(n).unwrap(),
        documents: Documents {
            ca_policy: Documents::hash(&support::ca_policy(cluster(), support::CA_A)),
            bundle: Documents::empty_hash(),
            membership: Documents::hash(members),
            shard_map: Documents::empty_hash(),
            scheduler: Documents::empty_hash(),
            replication: Documents::empty_hash(),
            backup: Documents::empty_hash(),
        },
        capabilities: Capabilities {
            protocol: 1,
            abi: 1,
            envelope: 1,
            storage_format: 1,
        },
        token_fingerprint: [2; 32],
        administrators: Administrators::new(vec![AdminKey::of(&admin())], 1),
        forced: None,
        note: note.into(),
    }
}

fn quick() -> LogConfig {
    LogConfig {
        heartbeat: Duration::from_millis(40),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        ..LogConfig::default()
    }
}

struct Node {
    service: Arc<Service<Loopback>>,
    _dir: TempDir,
}

async fn start(i: u64, net: &Arc<Loopback>) -> Node {
    let dir = TempDir::new().unwrap();
    let member = ControlMember::start(MemberId::from(i), dir.path(), &quick(), Arc::clone(net))
        .await
        .unwrap();
    let service = Arc::new(Service::new(
        node(i),
        member,
        Arc::clone(net),
        Arc::new(|| 7),
    ));
    let s = Arc::clone(&service);
    let handler: Handler = Arc::new(move |from, message| {
        let s = Arc::clone(&s);
        Box::pin(async move { s.peer(from.node(), message).await })
    });
    net.attach_handler(MemberId::from(i), handler);
    net.present(
        MemberId::from(i),
        PeerCertificate {
            cluster: cluster(),
            issuer: "root-a".into(),
            not_after: 2_000_000_000,
        },
    );
    Node { service, _dir: dir }
}

/// Runs every node's duties until `done` holds on all of them (15 s at most).
async fn until(nodes: &BTreeMap<u64, Node>, what: &str, done: impl Fn(&ControlState) -> bool) {
    for _ in 0..150 {
        for n in nodes.values() {
            let _ = n.service.duties().await;
        }
        if nodes
            .values()
            .all(|n| done(&n.service.member().applied().state))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, n) in nodes {
        eprintln!("node {i}: {:?}", n.service.status());
    }
    panic!("not every node saw: {what}");
}

fn effective(s: &ControlState, n: u64) -> bool {
    matches!(s.epoch_state(Epoch(n)), Some(EpochState::Effective { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_trusts_other_keys_refuses_a_first_epoch_before_the_log() {
    let net = Arc::new(Loopback::default());
    let node1 = start(1, &net).await;
    // node 1 trusts only an administrator key that did not sign this genesis
    let Node { service, _dir } = node1;
    net.detach(MemberId::from(1));
    let service = Arc::try_unwrap(service)
        .unwrap()
        .trusting(vec![AdminKey([9; 32])]);
    let m1 = membership(&[1, 2, 3]);
    let e1 = record(1, EpochHash::NONE, &m1, "cluster init")
        .signed_by(&[&admin()])
        .unwrap();
    service
        .member()
        .initialize([(MemberId::from(1), PeerAddr { addr: addr(1) })].into())
        .await
        .unwrap();
    service
        .member()
        .wait_leading(Duration::from_secs(5))
        .await
        .unwrap();
    // everything committed so far (the new leader's first entry) applied
    service.member().linearize().await.unwrap();
    let before = service.member().applied().last;
    let refused = service
        .submit(Command::Publish {
            epoch: e1,
            documents: vec![
                m1.into(),
                support::ca_policy(cluster(), support::CA_A).into(),
            ],
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("EPOCH_UNKNOWN_SIGNER"),
        "{refused}"
    );
    assert_eq!(
        service.member().applied().last,
        before,
        "the refusal cost the log an entry"
    );
    assert_eq!(service.current().0, Epoch(0));
    service.member().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_starts_from_its_genesis_converges_and_disables_a_node() {
    let net = Arc::new(Loopback::default());
    // sb cluster init: the genesis, checked as a state before it is written
    let m1 = membership(&[1, 2, 3]);
    let e1 = record(1, EpochHash::NONE, &m1, "cluster init")
        .signed_by(&[&admin()])
        .unwrap();
    let mut genesis = ControlState::default();
    assert!(matches!(
        genesis.apply(
            0,
            &Command::Publish {
                epoch: e1.clone(),
                documents: vec![
                    m1.clone().into(),
                    support::ca_policy(cluster(), support::CA_A).into()
                ]
            }
        ),
        Outcome::Published { .. }
    ));
    let image = genesis.image().unwrap();
    // a node that does not trust the administrator refuses the genesis
    assert!(ControlState::from_enrolment(&image, &[AdminKey([0; 32])]).is_err());
    let genesis = ControlState::from_enrolment(&image, &[AdminKey::of(&admin())]).unwrap();

    let mut nodes = BTreeMap::new();
    for i in 1..=3 {
        nodes.insert(i, start(i, &net).await);
    }
    // Node 1 starts the log alone and publishes the genesis.
    let first = nodes[&1].service.member();
    first
        .initialize([(MemberId::from(1), PeerAddr { addr: addr(1) })].into())
        .await
        .unwrap();
    first
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .state(openraft::ServerState::Leader, "leader")
        .await
        .unwrap();
    nodes[&1]
        .service
        .submit(genesis.genesis().unwrap())
        .await
        .unwrap();

    until(&nodes, "epoch 1 effective", |s| effective(s, 1)).await;
    let status = nodes[&2].service.status();
    assert_eq!(
        status
            .log_members
            .iter()
            .filter(|(_, _, voter)| *voter)
            .count(),
        3,
        "{status:?}"
    );
    for i in 1..=3 {
        assert!(
            status
                .observed
                .iter()
                .any(|(by, of, _)| *of == node(i) && *by != node(i)),
            "node {i} effective without a peer's observation: {status:?}"
        );
    }

    // A report sent in another node's name is refused before the log.
    let forged = nodes[&1]
        .service
        .peer(
            node(2),
            PeerMessage::Submit(Command::Report {
                from: node(3),
                report: Report::Applied {
                    epoch: Epoch(1),
                    hash: e1.hash(),
                },
            }),
        )
        .await;
    assert!(matches!(&forged, PeerAnswer::Refused { code, .. } if code == "NOT_SENDER"));

    // The administrator disables node 3 through a follower.
    let m2 = membership(&[1, 2]);
    let e2 = record(2, e1.hash(), &m2, "disable n3")
        .signed_by(&[&admin()])
        .unwrap();
    let leader = nodes[&1].service.member().leader().unwrap();
    let follower = (1..=3).find(|i| MemberId::from(*i) != leader).unwrap();
    let answer = nodes[&follower]
        .service
        .admin(AdminMessage::Publish {
            epoch: e2.clone(),
            documents: vec![m2.into()],
        })
        .await;
    assert!(
        matches!(
            &answer,
            AdminAnswer::Published {
                outcome: Outcome::Published {
                    number: Epoch(2),
                    ..
                },
                ..
            }
        ),
        "{answer:?}"
    );
    // Node 3 leaves the log's voters: it hears no more, so only nodes 1 and 2
    // are asked to see epoch 2 effective.
    let mut live = nodes;
    let out = live.remove(&3).unwrap();
    until(&live, "epoch 2 effective without node 3", |s| {
        effective(s, 2)
    })
    .await;
    live.insert(3, out);
    for _ in 0..50 {
        let voters: Vec<MemberId> = live[&1]
            .service
            .status()
            .log_members
            .iter()
            .filter(|(_, _, v)| *v)
            .map(|(n, _, _)| MemberId::of(*n))
            .collect();
        if voters.len() == 2 {
            assert!(!voters.contains(&MemberId::from(3)));
            break;
        }
        for n in live.values() {
            let _ = n.service.duties().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // node 3's reports no longer count
    let late = live[&3]
        .service
        .submit(Command::Report {
            from: node(3),
            report: Report::Applied {
                epoch: Epoch(2),
                hash: e2.hash(),
            },
        })
        .await;
    assert!(
        matches!(&late, Ok((_, Outcome::Refused { code, .. })) if code == "CONTROL_NOT_MEMBER")
            || late.is_err(),
        "{late:?}"
    );
    refusals_cost_nothing_and_the_chain_exports(&live, &e1, &e2).await;
}

/// A publication that breaks a rule is refused before the log (no entry); the
/// chain a member exports reads back as an enrolment.
async fn refusals_cost_nothing_and_the_chain_exports(
    live: &BTreeMap<u64, Node>,
    e1: &SignedEpoch,
    e2: &SignedEpoch,
) {
    // A publication that breaks a rule is refused before the log: no entry.
    live[&1].service.member().linearize().await.ok();
    let before = live[&1].service.member().applied().last;
    let stale = live[&2]
        .service
        .admin(AdminMessage::Publish {
            epoch: e1.clone(),
            documents: vec![],
        })
        .await;
    assert!(
        matches!(&stale, AdminAnswer::Refused { code, .. } if code == "EPOCH_REPEAT"),
        "{stale:?}"
    );
    assert_eq!(live[&1].service.member().applied().last, before);

    let chain = live[&2].service.admin(AdminMessage::Chain).await;
    let AdminAnswer::Chain(image) = chain else {
        panic!("{chain:?}")
    };
    let copy = ControlState::from_enrolment(&image, &[AdminKey::of(&admin())]).unwrap();
    assert_eq!(copy.epoch(), Epoch(2));
    assert_eq!(copy.chain().unwrap().current_hash(), SignedEpoch::hash(e2));
}

/// The code of a peer's answer to a report from node `from`.
async fn report_code(service: &Service<Loopback>, from: u64) -> String {
    let answer = service
        .peer(
            node(from),
            PeerMessage::Submit(Command::Report {
                from: node(from),
                report: Report::Applied {
                    epoch: Epoch(9),
                    hash: EpochHash::NONE,
                },
            }),
        )
        .await;
    match answer {
        PeerAnswer::Refused { code, .. } => code,
        other => format!("{other:?}"),
    }
}

/// One member cannot fill the log: the leader takes a burst of
/// `SUBMITS_BURST` commands from a node, then `SUBMITS_PER_SEC` a second
/// (`CONTROL_RATE_LIMITED` beyond, saying when the next is taken); another
/// node's allowance is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_too_many_commands_is_slowed_not_obeyed() {
    use scratchbird_control::service::{SUBMITS_BURST, SUBMITS_PER_SEC};
    use std::sync::atomic::{AtomicI64, Ordering};
    let net = Arc::new(Loopback::default());
    let dir = TempDir::new().unwrap();
    let member = ControlMember::start(MemberId::from(1), dir.path(), &quick(), Arc::clone(&net))
        .await
        .unwrap();
    let clock = Arc::new(AtomicI64::new(1_000_000));
    let c2 = Arc::clone(&clock);
    let service = Service::new(
        node(1),
        member,
        Arc::clone(&net),
        Arc::new(move || c2.load(Ordering::SeqCst)),
    );
    service
        .member()
        .initialize([(MemberId::from(1), PeerAddr { addr: addr(1) })].into())
        .await
        .unwrap();
    service
        .member()
        .wait_leading(Duration::from_secs(5))
        .await
        .unwrap();
    // each report is refused by the log's rules (no epoch 9), after it was
    // counted
    for i in 0..SUBMITS_BURST {
        let code = report_code(&service, 2).await;
        assert_ne!(code, "CONTROL_RATE_LIMITED", "command {i}");
    }
    assert_eq!(report_code(&service, 2).await, "CONTROL_RATE_LIMITED");
    assert_ne!(report_code(&service, 3).await, "CONTROL_RATE_LIMITED");
    // a second later, a second's worth is taken again, and no more
    clock.fetch_add(1_000_000, Ordering::SeqCst);
    for i in 0..SUBMITS_PER_SEC {
        let code = report_code(&service, 2).await;
        assert_ne!(code, "CONTROL_RATE_LIMITED", "command {i} after a second");
    }
    let answer = service
        .peer(
            node(2),
            PeerMessage::Submit(Command::Report {
                from: node(2),
                report: Report::Applied {
                    epoch: Epoch(9),
                    hash: EpochHash::NONE,
                },
            }),
        )
        .await;
    match answer {
        PeerAnswer::Refused { code, message, .. } => {
            assert_eq!(code, "CONTROL_RATE_LIMITED");
            assert!(message.contains("the next is taken in 62 ms"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    service.member().shutdown().await.unwrap();
}
