//! The control plane's speed on a three-node loopback cluster of real `sbnode`
//! processes (QUIC with mutual TLS between them, each log in fjall with fsync):
//!
//! - **commit latency**: an administrator's publication sent to a node that is
//!   not the leader, answered once committed and applied: forwarded to the
//!   leader, a linearizable read there, the rules checked, the entry made
//!   durable on a quorum, applied. p50 and p99.
//! - **publish to effective**: from sending the publication until the answering
//!   node sees the epoch effective (every node applied it and was observed
//!   under it by a peer). Nodes do their duties every 250 ms, which this
//!   figure mostly measures.
//!
//! Build the binaries first: `cargo build --release --bins`. Then
//! `cargo bench -p scratchbird-benches --bench control`. `SB_CONTROL_N` sets the
//! epochs published (default 40).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "benchmark"
)]

use scratchbird_control::state::{ControlState, EpochState, Outcome};
use scratchbird_control::wire::{self, AdminAnswer, AdminMessage};
use scratchbird_control::{Documents, members};
use scratchbird_net::rpc::{Request, Response};
use scratchbird_net::{Client, Credentials, TransportLimits};
use scratchbird_tests::{Node, control_cluster, effective, voters};
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

async fn ask(c: &Client, m: &AdminMessage) -> AdminAnswer {
    let mut r = c
        .send(&Request::ControlPlane(wire::encode(m).unwrap()))
        .await
        .unwrap();
    match r.next().await.unwrap() {
        Some(Response::ControlPlane(b)) => wire::decode(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn main() {
    let n: usize = std::env::var("SB_CONTROL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let c = control_cluster(3);
    let nodes: Vec<Node> = c.dirs.iter().map(|d| Node::spawn(d)).collect();
    let s = c.wait(&nodes[0], "epoch 1 effective", |s| {
        effective(s, 1) && voters(s) == 3
    });
    let leader = s["leader"].as_str().unwrap().to_owned();
    let via = nodes.iter().find(|n| !n.name.ends_with(&leader)).unwrap();
    let admin = scratchbird_policy::sign::read_secret_key(&c.admin_key()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut commit, mut to_effective) = rt.block_on(async {
        let creds = Credentials::load(
            &c.certs().join("ops.crt"),
            &c.certs().join("ops.key"),
            &c.tmp.path().join("ca/ca.crt"),
        )
        .unwrap();
        let client = Client::connect(via.client_addr, &creds, &TransportLimits::default())
            .await
            .unwrap();
        let (mut commit, mut to_effective) = (Vec::new(), Vec::new());
        for k in 0..n {
            let AdminAnswer::Chain(image) = ask(&client, &AdminMessage::Chain).await else {
                panic!("no chain")
            };
            let state = ControlState::from_image(&image).unwrap();
            let chain = state.chain().unwrap();
            let mut list = state.members().cloned().unwrap();
            for u in &mut list.users {
                if u.name == "reader" {
                    u.enabled = k % 2 == 1;
                }
            }
            let membership = members::encode(&list).unwrap();
            let mut r = chain.current().clone();
            r.number = r.number.next();
            r.prev = chain.current_hash();
            r.documents.membership = Documents::hash(&membership);
            r.note = format!("bench {k}");
            let epoch = r.signed_by(&[&admin]).unwrap();
            let number = r.number;
            let started = Instant::now();
            let answer = ask(
                &client,
                &AdminMessage::Publish {
                    epoch,
                    documents: vec![membership.into()],
                },
            )
            .await;
            assert!(
                matches!(
                    answer,
                    AdminAnswer::Published {
                        outcome: Outcome::Published { .. },
                        ..
                    }
                ),
                "{answer:?}"
            );
            commit.push(started.elapsed());
            loop {
                let AdminAnswer::Status(s) = ask(&client, &AdminMessage::Status).await else {
                    panic!("no status")
                };
                let done = s
                    .epochs
                    .iter()
                    .any(|e| e.number == number && matches!(e.state, EpochState::Effective { .. }));
                if done {
                    to_effective.push(started.elapsed());
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "epoch {number:?} never effective"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        (commit, to_effective)
    });
    println!(
        "control-log commit (publication through a follower, 3 voters on loopback): p50 {:.2} ms, p99 {:.2} ms ({n} epochs)",
        pct(&mut commit, 0.5),
        pct(&mut commit, 0.99)
    );
    println!(
        "publish to effective (3 voters, duties every 250 ms): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut to_effective, 0.5),
        pct(&mut to_effective, 0.99)
    );
    drop(nodes);
}
