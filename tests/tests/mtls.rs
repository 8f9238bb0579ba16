//! The mutual-TLS refusal matrix against a real `sbnode` process: every rule of the
//! verifier (net/src/verify.rs), at the client endpoint (users) and the peer
//! endpoint (nodes), plus the client refusing the node. Each refusal must reach the
//! client with the rule's code and appear in the node's log for the operator.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use scratchbird_net::identity::{self, Issued, KeyAlg, Validity};
use scratchbird_net::tls::{Cell, Identity, IdentityCell};
use scratchbird_net::verify::{NodeEntry, UserEntry};
use scratchbird_net::{Client, ClientError, Role, SbUri, TransportLimits, Trust};
use scratchbird_tests::{Ca, Node, NodeOpts};
use scratchbird_types::env::SystemEnv;
use scratchbird_types::{ClusterId, NodeId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn days(from: i64, to: i64) -> Validity {
    let now = time::OffsetDateTime::now_utc();
    Validity {
        not_before: now + time::Duration::days(from),
        not_after: now + time::Duration::days(to),
    }
}

/// Connects presenting `who` (or nothing), trusting `trust` for the node, and
/// pings. `Ok` carries who the node saw.
async fn attempt(addr: SocketAddr, who: Option<&Issued>, trust: &Trust) -> Result<String, String> {
    let identity = who.map(|i| {
        Arc::new(IdentityCell(Cell::new(
            Identity::from_pem(&i.cert_pem, &i.key_pem).unwrap(),
        )))
    });
    let limits = TransportLimits {
        idle_timeout: Duration::from_secs(5),
        ..TransportLimits::default()
    };
    let client = Client::connect_as(
        addr,
        identity,
        Arc::new(Cell::new(trust.clone())),
        &limits,
        None,
        Arc::new(SystemEnv::default()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let pong = client
        .ping(b"hello".to_vec())
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(pong.echo, b"hello");
    client.close().await;
    Ok(pong.peer)
}

async fn connect(addr: SocketAddr, who: &Issued, trust: &Trust) -> Client {
    let identity = Arc::new(IdentityCell(Cell::new(
        Identity::from_pem(&who.cert_pem, &who.key_pem).unwrap(),
    )));
    Client::connect_as(
        addr,
        Some(identity),
        Arc::new(Cell::new(trust.clone())),
        &TransportLimits::default(),
        None,
        Arc::new(SystemEnv::default()),
    )
    .await
    .unwrap()
}

/// Waits until `f` holds, polling for up to 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

struct Case {
    name: &'static str,
    peer_endpoint: bool,
    who: Option<Issued>,
    /// The client trusts another CA than the node's.
    trust: Option<Trust>,
    /// The code (or text) the client and the node's log must show.
    code: &'static str,
    /// Whether the node logs it (a refusal by the client happens on the client only).
    node_logs: bool,
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn every_rule_refuses_with_its_reason_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let cluster = ca.cluster;
    let trust = Trust::from_pem(cluster, &ca.ca.cert_pem).unwrap();
    // people and nodes
    let admin = ca.user("admin");
    let alice = ca.user("alice");
    let dave = ca.user("dave");
    ca.members
        .users
        .iter_mut()
        .find(|u| u.name == "dave")
        .unwrap()
        .enabled = false;
    let ecdsa = {
        let p = identity::leaf_params(
            "erin",
            &[SbUri::user(cluster, "erin").unwrap().to_string()],
            days(-1, 10),
            true,
        )
        .unwrap();
        ca.members.users.push(UserEntry {
            name: "erin".into(),
            enabled: true,
        });
        identity::sign_with_ca(&ca.ca, &p, KeyAlg::EcdsaP256).unwrap()
    };
    let (_, peer_ok) = ca.node("n2", &[Role::Shard]);
    let (n3, peer_disabled) = ca.node("n3", &[Role::Shard]);
    ca.members
        .nodes
        .iter_mut()
        .find(|n| n.id == n3)
        .unwrap()
        .enabled = false;
    ca.save();
    let user_uri = |name: &str| SbUri::user(cluster, name).unwrap().to_string();
    let valid = days(-1, 10);
    let ghost = ca.sign(&[user_uri("ghost")], valid, KeyAlg::Ed25519);
    let expired = ca.sign(&[user_uri("admin")], days(-10, -1), KeyAlg::Ed25519);
    let future = ca.sign(&[user_uri("admin")], days(2, 10), KeyAlg::Ed25519);
    let other_cluster = ca.sign(
        &[SbUri::user(ClusterId::from_uuid(Uuid::new_v4()), "admin")
            .unwrap()
            .to_string()],
        valid,
        KeyAlg::Ed25519,
    );
    let two_uris = ca.sign(
        &[user_uri("admin"), user_uri("alice")],
        valid,
        KeyAlg::Ed25519,
    );
    let no_uri = ca.sign(&[], valid, KeyAlg::Ed25519);
    let https = ca.sign(
        &["https://example.com/admin".into()],
        valid,
        KeyAlg::Ed25519,
    );
    let upper = ca.sign(
        &[format!(
            "sb://cluster/{}/user/admin",
            cluster.to_string().to_uppercase()
        )],
        valid,
        KeyAlg::Ed25519,
    );
    // another cluster's CA, and a forgery of ours (same name, another key)
    let foreign_ca = identity::new_ca(
        ClusterId::from_uuid(Uuid::new_v4()),
        KeyAlg::Ed25519,
        days(-1, 10),
    )
    .unwrap();
    let foreign = identity::sign_with_ca(
        &foreign_ca,
        &identity::leaf_params("x", &[user_uri("admin")], valid, true).unwrap(),
        KeyAlg::Ed25519,
    )
    .unwrap();
    let forged_ca = identity::new_ca(cluster, KeyAlg::Ed25519, days(-1, 10)).unwrap();
    let forged = identity::sign_with_ca(
        &forged_ca,
        &identity::leaf_params("x", &[user_uri("admin")], valid, true).unwrap(),
        KeyAlg::Ed25519,
    )
    .unwrap();
    let the_ca_itself = ca.ca.clone();
    let node_uri = |id: NodeId| SbUri::node(cluster, id).to_string();
    let unknown_node = ca.sign(
        &[node_uri(NodeId::from_uuid(Uuid::new_v4()))],
        valid,
        KeyAlg::Ed25519,
    );
    let expired_node = {
        let id = NodeId::from_uuid(Uuid::new_v4());
        ca.members.nodes.push(NodeEntry {
            id,
            name: "old".into(),
            enabled: true,
            roles: vec![Role::Shard],
            peer: None,
        });
        ca.save();
        ca.sign(&[node_uri(id)], days(-10, -1), KeyAlg::Ed25519)
    };
    let forged_trust = Trust::from_pem(cluster, &forged_ca.cert_pem).unwrap();

    let node_dir = tmp.path().join("n1");
    let opts = NodeOpts {
        peers: true,
        reload_secs: Some(1),
        ..NodeOpts::default()
    };
    let node = Node::start(
        &node_dir,
        &mut ca,
        "n1",
        &[Role::Coordinator, Role::Shard],
        &opts,
    );
    let (_, node_cert) = {
        // the node's own certificate, presented by a client: a node at the user endpoint
        let pem = std::fs::read_to_string(node_dir.join("node.crt")).unwrap();
        let key = std::fs::read_to_string(node_dir.join("node.key")).unwrap();
        (
            (),
            Issued {
                cert_pem: pem,
                key_pem: key,
            },
        )
    };

    let c = |name, who: Option<&Issued>, code| Case {
        name,
        peer_endpoint: false,
        who: who.cloned(),
        trust: None,
        code,
        node_logs: true,
    };
    let p = |name, who: Option<&Issued>, code| Case {
        name,
        peer_endpoint: true,
        who: who.cloned(),
        trust: None,
        code,
        node_logs: true,
    };
    let cases = vec![
        c("no client certificate", None, "no certificates"),
        c(
            "another cluster's CA",
            Some(&foreign),
            "CERT_UNKNOWN_ISSUER",
        ),
        c(
            "a forged CA of the same name",
            Some(&forged),
            "CERT_BAD_SIGNATURE",
        ),
        c("expired", Some(&expired), "CERT_EXPIRED"),
        c("not yet valid", Some(&future), "CERT_NOT_YET_VALID"),
        c(
            "another cluster's UUID in the URI",
            Some(&other_cluster),
            "CERT_WRONG_CLUSTER",
        ),
        c("two URI SANs", Some(&two_uris), "CERT_SEVERAL_URIS"),
        c("no URI SAN", Some(&no_uri), "CERT_NO_URI"),
        c("a URI that is not sb://", Some(&https), "CERT_BAD_URI"),
        c("an upper-case cluster UUID", Some(&upper), "CERT_BAD_URI"),
        c(
            "the CA certificate as a client",
            Some(&the_ca_itself),
            "CERT_IS_CA",
        ),
        c(
            "a node certificate used as a user",
            Some(&node_cert),
            "CERT_NODE_AS_USER",
        ),
        c(
            "a user the cluster does not list",
            Some(&ghost),
            "USER_UNKNOWN",
        ),
        c("a disabled user", Some(&dave), "USER_DISABLED"),
        c(
            "a listed user the bundle does not name",
            Some(&alice),
            "UNKNOWN_PRINCIPAL",
        ),
        p(
            "no certificate at the peer endpoint",
            None,
            "no certificates",
        ),
        p(
            "a user certificate used as a node",
            Some(&admin),
            "CERT_USER_AS_NODE",
        ),
        p("an unknown node", Some(&unknown_node), "NODE_UNKNOWN"),
        p("a disabled node", Some(&peer_disabled), "NODE_DISABLED"),
        p(
            "an expired node certificate",
            Some(&expired_node),
            "CERT_EXPIRED",
        ),
        p(
            "another cluster's node",
            Some(&foreign),
            "CERT_UNKNOWN_ISSUER",
        ),
        p(
            "the CA certificate as a node",
            Some(&the_ca_itself),
            "CERT_IS_CA",
        ),
        Case {
            name: "the client does not trust the node's CA",
            peer_endpoint: false,
            who: Some(admin.clone()),
            trust: Some(forged_trust),
            code: "CERT_BAD_SIGNATURE",
            node_logs: false,
        },
    ];
    assert!(cases.len() >= 20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // the controls: what should pass does
        let me = attempt(node.client_addr, Some(&admin), &trust)
            .await
            .unwrap();
        assert_eq!(me, user_uri("admin"));
        let me = attempt(node.client_addr, Some(&ecdsa), &trust)
            .await
            .unwrap();
        assert_eq!(
            me,
            user_uri("erin"),
            "an ECDSA P-256 user certificate is accepted"
        );
        let peer = attempt(node.peer_addr.unwrap(), Some(&peer_ok), &trust)
            .await
            .unwrap();
        assert!(peer.contains("/node/"));
        for case in &cases {
            let addr = if case.peer_endpoint {
                node.peer_addr.unwrap()
            } else {
                node.client_addr
            };
            let r = attempt(
                addr,
                case.who.as_ref(),
                case.trust.as_ref().unwrap_or(&trust),
            )
            .await;
            let err = match r {
                Ok(who) => panic!("{}: accepted as {who}", case.name),
                Err(e) => e,
            };
            assert!(
                err.contains(case.code),
                "{}: the client saw {err:?}, not {}",
                case.name,
                case.code
            );
            eprintln!("{:>45}: {err}", case.name);
            if case.node_logs {
                assert!(
                    node.wait_log(case.code, Duration::from_secs(5)),
                    "{}: the node's log does not show {}:\n{}",
                    case.name,
                    case.code,
                    node.log()
                );
            }
        }
        // a valid certificate is never sufficient: disabling a user in the members
        // file closes its open connection and refuses the next, without a restart
        assert!(
            attempt(node.client_addr, Some(&admin), &trust)
                .await
                .is_ok()
        );
        let live = connect(node.client_addr, &admin, &trust).await;
        std::thread::sleep(Duration::from_millis(1100)); // a new modification time
        ca.members
            .users
            .iter_mut()
            .find(|u| u.name == "admin")
            .unwrap()
            .enabled = false;
        ca.save();
        let mut refused = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = attempt(node.client_addr, Some(&admin), &trust).await {
                refused = Some(e);
                break;
            }
        }
        let e = refused.expect("the disabled user was still accepted after the reload");
        assert!(e.contains("USER_DISABLED"), "{e}");
        let e = live
            .ping(Vec::new())
            .await
            .expect_err("the open connection survived");
        assert!(e.to_string().contains("USER_DISABLED"), "{e}");
    });
    let _ = ClientError::Setup(String::new());
    let status = node.terminate(Duration::from_secs(20));
    assert!(status.success(), "sbnode exited with {status}");
}

/// CA rotation without a restart (spec 3.2): overlap (both roots), the node
/// re-issued under the new CA, cutover (new root only). At cutover the connection
/// made under the old root is closed and old certificates are refused; the new
/// CA's users keep working throughout.
#[test]
fn ca_rotation_reloads_roots_and_closes_what_the_old_root_vouched_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let cluster = ca.cluster;
    let old_user = ca.user("admin");
    let new_ca = identity::new_ca(cluster, KeyAlg::Ed25519, days(-1, 30)).unwrap();
    let new_user = identity::issue(
        &new_ca,
        &SbUri::user(cluster, "admin").unwrap(),
        KeyAlg::Ed25519,
        days(-1, 10),
    )
    .unwrap();
    let both = Trust::from_pem(cluster, &format!("{}{}", ca.ca.cert_pem, new_ca.cert_pem)).unwrap();
    let opts = NodeOpts {
        reload_secs: Some(1),
        ..NodeOpts::default()
    };
    let node_dir = tmp.path().join("n1");
    let node = Node::start(&node_dir, &mut ca, "n1", &[Role::Coordinator], &opts);
    let ca_file = ca.dir.join("ca.crt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = node.client_addr;
        let e = attempt(addr, Some(&new_user), &both).await.unwrap_err();
        assert!(e.contains("CERT_BAD_SIGNATURE"), "{e}");
        // overlap: both roots
        std::fs::write(&ca_file, format!("{}{}", ca.ca.cert_pem, new_ca.cert_pem)).unwrap();
        assert!(eventually(|| async { attempt(addr, Some(&new_user), &both).await.is_ok() }).await);
        assert!(attempt(addr, Some(&old_user), &both).await.is_ok());
        // the node's own certificate, re-issued under the new CA, is picked up
        let pem = std::fs::read_to_string(node_dir.join("node.crt")).unwrap();
        let der = identity::certs_from_pem(&pem).unwrap().remove(0);
        let me = SbUri::parse(&identity::inspect(&der).unwrap().uris[0]).unwrap();
        let reissued = identity::issue(&new_ca, &me, KeyAlg::Ed25519, days(-1, 10)).unwrap();
        std::fs::write(node_dir.join("node.key"), &reissued.key_pem).unwrap();
        std::fs::write(node_dir.join("node.crt"), &reissued.cert_pem).unwrap();
        let new_only = Trust::from_pem(cluster, &new_ca.cert_pem).unwrap();
        assert!(
            eventually(|| async { attempt(addr, Some(&new_user), &new_only).await.is_ok() }).await
        );
        // cutover: the new root only
        let live = connect(addr, &old_user, &both).await;
        std::fs::write(&ca_file, &new_ca.cert_pem).unwrap();
        assert!(
            eventually(|| async { attempt(addr, Some(&old_user), &both).await.is_err() }).await
        );
        let e = attempt(addr, Some(&old_user), &both).await.unwrap_err();
        assert!(e.contains("CERT_BAD_SIGNATURE"), "{e}");
        let e = live
            .ping(Vec::new())
            .await
            .expect_err("the connection under the removed root survived");
        assert!(e.to_string().contains("CA_CHANGED"), "{e}");
        assert!(attempt(addr, Some(&new_user), &new_only).await.is_ok());
    });
    assert!(node.log().contains("CA_CHANGED"));
    assert!(node.terminate(Duration::from_secs(20)).success());
}

/// Roles decide what a node serves: a node with the shard role only starts,
/// authenticates nodes at its peer endpoint, and tells a user who connects at
/// `listen` that it takes no SQL and where to send it.
#[test]
fn a_shard_only_node_starts_and_sends_users_to_a_coordinator() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::new(&tmp.path().join("ca"));
    let alice = ca.user("alice");
    let (_, peer) = ca.node("n2", &[Role::Coordinator, Role::Shard]);
    let node = Node::start(
        &tmp.path().join("n1"),
        &mut ca,
        "n1",
        &[Role::Shard],
        &NodeOpts {
            peers: true,
            ..NodeOpts::default()
        },
    );
    let trust = Trust::from_pem(ca.cluster, &ca.ca.cert_pem).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt
        .block_on(attempt(node.client_addr, Some(&alice), &trust))
        .unwrap_err();
    assert!(
        refused.contains("NOT_A_COORDINATOR") && refused.contains("send SQL to a coordinator"),
        "{refused}"
    );
    assert!(
        node.wait_log("refused a client", Duration::from_secs(10)),
        "{}",
        node.log()
    );
    let seen = rt
        .block_on(attempt(node.peer_addr.unwrap(), Some(&peer), &trust))
        .unwrap();
    assert!(seen.contains("/node/"), "{seen}");
    assert!(node.terminate(Duration::from_secs(30)).success());
}
