//! The control state's rules beyond the epoch chain: the documents an epoch
//! names travel with it, the membership is a canonical document with an enabled
//! voter, reports come from enabled members about the current epoch, and an
//! epoch is effective only when every enabled member applied it and a peer
//! observed it under it. Then: a snapshot image restores the same state, and
//! applying is deterministic over hostile command streams.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test"
)]

mod support;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use scratchbird_control::ca::CaPolicy;
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::members;
use scratchbird_control::shards::ShardMap;
use scratchbird_control::state::{
    AuditAnchor, Command, ControlState, EpochState, Missing, Observation, Outcome, Report,
};
use scratchbird_control::{
    AdminKey, Administrators, Capabilities, Documents, EpochHash, EpochRecord,
    FORCE_ACKNOWLEDGEMENT, Forced, SignedEpoch,
};
use scratchbird_net::verify::{MembersList, NodeEntry, Role};
use scratchbird_types::{ClusterId, Epoch, NodeId};

fn admin() -> SigningKey {
    SigningKey::from_bytes(&[21; 32])
}

fn ca() -> Vec<u8> {
    support::ca_policy(cluster(), support::CA_A)
}

fn cluster() -> ClusterId {
    ClusterId::from_bytes([4; 16])
}

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 16])
}

/// A membership of nodes `(n, enabled, voter)`.
fn membership(nodes: &[(u8, bool, bool)]) -> Vec<u8> {
    let list = MembersList {
        cluster: cluster(),
        nodes: nodes
            .iter()
            .map(|&(n, enabled, voter)| NodeEntry {
                id: node(n),
                name: format!("n{n}"),
                enabled,
                roles: if voter {
                    vec![Role::Voter, Role::Shard]
                } else {
                    vec![Role::Shard]
                },
                peer: Some(format!("10.0.0.{n}:7401")),
            })
            .collect(),
        users: vec![],
    };
    members::encode(&list).unwrap()
}

fn record(number: u64, prev: EpochHash, members: &[u8]) -> EpochRecord {
    EpochRecord {
        format: EPOCH_FORMAT,
        cluster: cluster(),
        number: Epoch(number),
        prev,
        created_us: 1_000 * i64::try_from(number).unwrap(),
        documents: Documents {
            ca_policy: Documents::hash(&ca()),
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
        token_fingerprint: [1; 32],
        administrators: Administrators::new(vec![AdminKey::of(&admin())], 1),
        forced: None,
        note: format!("epoch {number}"),
    }
}

fn sign(r: &EpochRecord) -> SignedEpoch {
    r.signed_by(&[&admin()]).unwrap()
}

fn publish(e: &SignedEpoch, docs: &[&[u8]]) -> Command {
    Command::Publish {
        epoch: e.clone(),
        documents: docs.iter().map(|d| d.to_vec().into()).collect(),
    }
}

fn code(o: &Outcome) -> &str {
    match o {
        Outcome::Refused { code, .. } => code,
        other => panic!("not refused: {other}"),
    }
}

/// A state at epoch 1 with nodes 1-3 enabled voters and 4 disabled.
fn started() -> (ControlState, SignedEpoch) {
    let m = membership(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, false, true),
    ]);
    let e = sign(&record(1, EpochHash::NONE, &m));
    let mut s = ControlState::default();
    assert!(matches!(
        s.apply(1, &publish(&e, &[ca().as_slice(), &m])),
        Outcome::Published { .. }
    ));
    (s, e)
}

fn applied(s: &mut ControlState, at: u64, from: u8, e: &SignedEpoch) -> Outcome {
    let r = e.read().unwrap();
    s.apply(
        at,
        &Command::Report {
            from: node(from),
            report: Report::Applied {
                epoch: r.number,
                hash: e.hash(),
            },
        },
    )
}

fn observed(s: &mut ControlState, at: u64, from: u8, peer: u8, e: &SignedEpoch) -> Outcome {
    let r = e.read().unwrap();
    s.apply(
        at,
        &Command::Report {
            from: node(from),
            report: Report::Observed(Observation {
                peer: node(peer),
                epoch: r.number,
                hash: e.hash(),
                cluster: cluster(),
                issuer: "root".into(),
                not_after: 2_000_000_000,
                at_us: 5,
            }),
        },
    )
}

#[test]
fn an_epoch_brings_the_documents_it_names_and_a_membership_with_a_voter() {
    let m = membership(&[(1, true, true)]);
    let e = sign(&record(1, EpochHash::NONE, &m));
    let mut s = ControlState::default();
    // the CA policy is named but not sent
    assert_eq!(
        code(&s.apply(1, &publish(&e, &[&m]))),
        "CONTROL_DOCUMENT_MISSING"
    );
    // a document the record does not name
    assert_eq!(
        code(&s.apply(2, &publish(&e, &[&m, ca().as_slice(), b"stray"]))),
        "CONTROL_DOCUMENT_UNNAMED"
    );
    assert_eq!(s.epoch(), Epoch(0), "a refused first epoch starts nothing");
    assert!(matches!(
        s.apply(3, &publish(&e, &[&m, ca().as_slice()])),
        Outcome::Published { .. }
    ));

    // Epoch 2 changes only its note: the documents it names are held already.
    let mut r2 = record(2, e.hash(), &m);
    r2.note = "unchanged documents".into();
    let e2 = sign(&r2);
    assert!(matches!(
        s.apply(4, &publish(&e2, &[])),
        Outcome::Published { .. }
    ));

    // A membership without an enabled voter, of another cluster, or not
    // canonical, is refused, and the chain does not move.
    let no_voter = membership(&[(1, true, false), (2, false, true)]);
    let e3 = sign(&record(3, e2.hash(), &no_voter));
    assert_eq!(
        code(&s.apply(5, &publish(&e3, &[&no_voter]))),
        "CONTROL_MEMBERSHIP"
    );
    let mut other = members::decode(&m, cluster()).unwrap();
    other.cluster = ClusterId::from_bytes([9; 16]);
    let mut other_bytes = Vec::new();
    ciborium::into_writer(&other, &mut other_bytes).unwrap();
    let e3 = sign(&record(3, e2.hash(), &other_bytes));
    assert_eq!(
        code(&s.apply(6, &publish(&e3, &[&other_bytes]))),
        "CONTROL_MEMBERSHIP"
    );
    let mut unsorted =
        members::decode(&membership(&[(1, true, true), (2, true, true)]), cluster()).unwrap();
    unsorted.nodes.reverse();
    let mut unsorted_bytes = Vec::new();
    ciborium::into_writer(&unsorted, &mut unsorted_bytes).unwrap();
    let e3 = sign(&record(3, e2.hash(), &unsorted_bytes));
    let refused = s.apply(7, &publish(&e3, &[&unsorted_bytes]));
    assert_eq!(code(&refused), "CONTROL_MEMBERSHIP");
    assert!(refused.to_string().contains("canonical"), "{refused}");
    assert_eq!(s.epoch(), Epoch(2));
    // and an epoch rule still comes first
    assert_eq!(code(&s.apply(8, &publish(&e2, &[]))), "EPOCH_REPEAT");
}

#[test]
fn reports_come_from_enabled_members_about_the_current_epoch() {
    let mut fresh = ControlState::default();
    let (mut s, e1) = started();
    assert_eq!(code(&applied(&mut fresh, 1, 1, &e1)), "CONTROL_NO_CLUSTER");
    assert_eq!(code(&applied(&mut s, 2, 9, &e1)), "CONTROL_NOT_MEMBER");
    assert_eq!(
        code(&applied(&mut s, 3, 4, &e1)),
        "CONTROL_NOT_MEMBER",
        "disabled"
    );
    assert_eq!(
        code(&observed(&mut s, 4, 1, 1, &e1)),
        "CONTROL_SELF_OBSERVATION"
    );
    assert_eq!(
        code(&observed(&mut s, 5, 1, 9, &e1)),
        "CONTROL_OBSERVED_NOT_MEMBER"
    );
    let mut other = Command::Report {
        from: node(1),
        report: Report::Observed(Observation {
            peer: node(2),
            epoch: Epoch(1),
            hash: e1.hash(),
            cluster: ClusterId::from_bytes([9; 16]),
            issuer: "root".into(),
            not_after: 0,
            at_us: 0,
        }),
    };
    assert_eq!(code(&s.apply(6, &other)), "CONTROL_OTHER_CLUSTER");
    // a report about another epoch (or the right number with another hash)
    let forged = sign(&record(1, EpochHash::NONE, &membership(&[(1, true, true)])));
    assert_eq!(
        code(&applied(&mut s, 7, 1, &forged)),
        "CONTROL_STALE_REPORT"
    );
    if let Command::Report {
        report: Report::Observed(o),
        ..
    } = &mut other
    {
        o.cluster = cluster();
        o.epoch = Epoch(2);
    }
    assert_eq!(code(&s.apply(8, &other)), "CONTROL_STALE_REPORT");
    assert!(s.applied_by().is_empty() && s.observations().is_empty());
}

#[test]
fn an_epoch_is_effective_only_when_every_enabled_member_applied_it_and_was_observed() {
    let (mut s, e1) = started();
    let converging = |s: &ControlState| match s.epoch_state(Epoch(1)).unwrap() {
        EpochState::Converging { missing } => missing,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        converging(&s).len(),
        3,
        "nodes 1-3; node 4 is disabled and does not count"
    );
    for n in 1..=3 {
        assert_eq!(
            applied(&mut s, 10 + u64::from(n), n, &e1),
            Outcome::Recorded { effective: false }
        );
    }
    assert!(
        converging(&s)
            .iter()
            .all(|(_, m)| *m == Missing::NotObserved)
    );
    observed(&mut s, 20, 1, 2, &e1);
    observed(&mut s, 21, 2, 3, &e1);
    assert_eq!(converging(&s), vec![(node(1), Missing::NotObserved)]);
    // an observation by the disabled node 4 is refused; node 1 stays missing
    assert_eq!(code(&observed(&mut s, 22, 4, 1, &e1)), "CONTROL_NOT_MEMBER");
    assert_eq!(
        observed(&mut s, 23, 3, 1, &e1),
        Outcome::Recorded { effective: true }
    );
    assert_eq!(
        s.epoch_state(Epoch(1)),
        Some(EpochState::Effective { at: 23 })
    );
    assert!(s.is_effective());

    // Epoch 2 re-enables node 4: nothing counts until it applies and is observed
    // under epoch 2, and epoch 1 stays effective as it was.
    let m2 = membership(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, true, true),
    ]);
    let e2 = sign(&record(2, e1.hash(), &m2));
    assert!(matches!(
        s.apply(30, &publish(&e2, &[&m2])),
        Outcome::Published { .. }
    ));
    assert_eq!(
        s.epoch_state(Epoch(1)),
        Some(EpochState::Effective { at: 23 })
    );
    assert!(!s.is_effective());
    let missing = converging_at(&s, 2);
    assert_eq!(missing.len(), 4);
    assert_eq!(
        missing[0].1,
        Missing::NotApplied {
            runs: Some(Epoch(1))
        }
    );
    assert_eq!(missing[3], (node(4), Missing::NotApplied { runs: None }));
    for n in 1..=4 {
        applied(&mut s, 40 + u64::from(n), n, &e2);
    }
    for (a, b) in [(1, 2), (2, 3), (3, 1)] {
        observed(&mut s, 50 + u64::from(a), a, b, &e2);
    }
    assert_eq!(converging_at(&s, 2), vec![(node(4), Missing::NotObserved)]);
    // Observations made under epoch 1 do not count for epoch 2.
    assert_eq!(
        code(&observed(&mut s, 60, 1, 4, &e1)),
        "CONTROL_STALE_REPORT"
    );
    assert_eq!(
        observed(&mut s, 61, 1, 4, &e2),
        Outcome::Recorded { effective: true }
    );

    // Epoch 3, published before it converged, is superseded by epoch 4.
    let e3 = sign(&record(3, e2.hash(), &m2));
    s.apply(70, &publish(&e3, &[]));
    let e4 = sign(&record(4, e3.hash(), &m2));
    s.apply(71, &publish(&e4, &[]));
    assert_eq!(s.epoch_state(Epoch(3)), Some(EpochState::Superseded));
    assert!(s.epoch_state(Epoch(9)).is_none());
}

fn converging_at(s: &ControlState, n: u64) -> Vec<(NodeId, Missing)> {
    match s.epoch_state(Epoch(n)).unwrap() {
        EpochState::Converging { missing } => missing,
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_enabled_member_is_effective_once_it_applies() {
    let m = membership(&[(1, true, true), (2, false, false)]);
    let e = sign(&record(1, EpochHash::NONE, &m));
    let mut s = ControlState::default();
    s.apply(1, &publish(&e, &[&m, ca().as_slice()]));
    assert!(!s.is_effective());
    assert_eq!(
        applied(&mut s, 2, 1, &e),
        Outcome::Recorded { effective: true }
    );
}

#[test]
fn a_snapshot_image_restores_the_same_state() {
    let (mut s, e1) = started();
    for n in 1..=3 {
        applied(&mut s, u64::from(n), n, &e1);
    }
    observed(&mut s, 5, 1, 2, &e1);
    observed(&mut s, 6, 2, 3, &e1);
    observed(&mut s, 7, 3, 1, &e1);
    let back = ControlState::from_image(&s.image().unwrap()).unwrap();
    assert_eq!(back.image().unwrap(), s.image().unwrap());
    assert_eq!(back.epoch_state(Epoch(1)), s.epoch_state(Epoch(1)));
    assert_eq!(back.members(), s.members());
    assert_eq!(back.observations(), s.observations());
    // bytes that are not an image, and an image of a later format, are refused
    assert!(ControlState::from_image(b"\xa1not an image").is_err());
    assert!(ControlState::from_image(&[]).unwrap().chain().is_none());
}

// ------------------------------------------------------------ determinism

/// A command drawn from a small world: epochs 1-4 (honest or forged), reports
/// from members and strangers, about current and stale epochs.
/// Reports are mostly about the state's current epoch, publications mostly of
/// the next one, so that epochs do converge.
fn command(pick: (u8, u8, u8, u8), chain: &[(SignedEpoch, Vec<u8>)], current: Epoch) -> Command {
    let (kind, a, b, which) = pick;
    let honest = usize::try_from(current.0).unwrap();
    let at = match (which, kind) {
        (0..=5, 0 | 1) => honest.min(chain.len() - 2),
        (0..=5, _) => honest.saturating_sub(1),
        _ => usize::from(which) % chain.len(),
    };
    let (e, m) = &chain[at];
    match kind {
        0 => publish(e, &[m.as_slice(), ca().as_slice()]),
        1 => publish(e, &[]),
        2..=20 => {
            let r = e.read().unwrap();
            Command::Report {
                from: node(a % 6),
                report: Report::Applied {
                    epoch: r.number,
                    hash: e.hash(),
                },
            }
        }
        _ => {
            let r = e.read().unwrap();
            Command::Report {
                from: node(a % 6),
                report: Report::Observed(Observation {
                    peer: node(b % 6),
                    epoch: r.number,
                    hash: e.hash(),
                    cluster: cluster(),
                    issuer: "root".into(),
                    not_after: 0,
                    at_us: i64::from(a),
                }),
            }
        }
    }
}

fn world() -> Vec<(SignedEpoch, Vec<u8>)> {
    let sets: [&[(u8, bool, bool)]; 4] = [
        &[(1, true, true), (2, true, true), (3, true, false)],
        &[
            (1, true, true),
            (2, false, true),
            (3, true, false),
            (4, true, true),
        ],
        &[(2, true, true), (4, true, true)],
        &[(1, true, true)],
    ];
    let mut out = Vec::new();
    let mut prev = EpochHash::NONE;
    for (i, set) in sets.iter().enumerate() {
        let m = membership(set);
        let e = sign(&record(i as u64 + 1, prev, &m));
        prev = e.hash();
        out.push((e, m));
    }
    // a fork of epoch 2
    let m = membership(&[(5, true, true)]);
    out.push((sign(&record(2, out[0].0.hash(), &m)), m));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SB_CONTROL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// Two members applying the same entries end in the same state, whatever
    /// the entries; every refusal leaves the state as it was; an epoch once
    /// effective stays so; an effective current epoch has every enabled member
    /// applied and observed by a peer.
    #[test]
    fn applying_is_deterministic_and_refusals_change_nothing(
        picks in proptest::collection::vec((0u8..40, 0u8..6, 0u8..6, 0u8..9), 1..120)
    ) {
        let chain = world();
        let (mut a, mut b) = (ControlState::default(), ControlState::default());
        let mut ever_effective = Vec::new();
        for (i, p) in picks.into_iter().enumerate() {
            let c = command(p, &chain, a.epoch());
            let before = a.image().unwrap();
            let oa = a.apply(i as u64, &c);
            let ob = b.apply(i as u64, &c);
            prop_assert_eq!(&oa, &ob);
            prop_assert_eq!(a.image().unwrap(), b.image().unwrap());
            if matches!(oa, Outcome::Refused { .. }) {
                prop_assert_eq!(a.image().unwrap(), before);
            }
            for n in &ever_effective {
                let effective = matches!(a.epoch_state(*n), Some(EpochState::Effective { .. }));
                prop_assert!(effective, "epoch {} stopped being effective", n.0);
            }
            if a.is_effective() {
                ever_effective.push(a.epoch());
                let list = a.members().unwrap();
                let cur = a.chain().unwrap().current_hash();
                let enabled: Vec<NodeId> = members::enabled_nodes(list).map(|n| n.id).collect();
                for n in &enabled {
                    prop_assert_eq!(a.applied_by().get(n).map(|x| x.1), Some(cur));
                    if enabled.len() > 1 {
                        let by = a.observations().get(n).unwrap();
                        prop_assert!(by.keys().any(|o| o != n && enabled.contains(o)));
                    }
                }
            }
        }
    }
}

/// An observation by `from` of `peer` presenting a certificate of `issuer`,
/// made at `at_us`.
fn observed_under(
    s: &mut ControlState,
    from: u8,
    peer: u8,
    e: &SignedEpoch,
    issuer: &str,
    at_us: i64,
) -> Outcome {
    let r = e.read().unwrap();
    s.apply(
        0,
        &Command::Report {
            from: node(from),
            report: Report::Observed(Observation {
                peer: node(peer),
                epoch: r.number,
                hash: e.hash(),
                cluster: cluster(),
                issuer: issuer.into(),
                not_after: 2_000_000_000,
                at_us,
            }),
        },
    )
}

/// Epoch `n` after `prev` with the CA policy `ca`, made at `created_us`.
fn with_ca(n: u64, prev: &SignedEpoch, m: &[u8], ca: &[u8], created_us: i64) -> SignedEpoch {
    let mut r = record(n, prev.hash(), m);
    r.documents.ca_policy = Documents::hash(ca);
    r.created_us = created_us;
    sign(&r)
}

/// Every enabled node (1-3) applies `e` and is observed by the next one
/// presenting a certificate of `issuer` at `at_us`.
fn converge(s: &mut ControlState, e: &SignedEpoch, issuer: &str, at_us: i64) {
    for n in 1..=3 {
        assert!(matches!(applied(s, 0, n, e), Outcome::Recorded { .. }));
        let by = n % 3 + 1;
        assert!(matches!(
            observed_under(s, by, n, e, issuer, at_us),
            Outcome::Recorded { .. }
        ));
    }
}

#[test]
fn a_ca_rotation_goes_through_overlap_and_cuts_over_only_after_convergence_and_the_window() {
    let (mut s, e1) = started();
    let m = membership(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, false, true),
    ]);
    let (a, b) = (
        support::fingerprint(support::CA_A),
        support::fingerprint(support::CA_B),
    );
    let only_b = support::ca_policy(cluster(), support::CA_B);
    let cut = support::cutover(cluster());
    // replacing the root without an overlap is refused
    let direct = with_ca(2, &e1, &m, &only_b, 10_000);
    assert_eq!(
        code(&s.apply(2, &publish(&direct, &[&only_b]))),
        "CONTROL_CA_POLICY"
    );
    // a document that is not a CA policy is refused
    let junk = with_ca(2, &e1, &m, b"not a policy", 10_000);
    assert_eq!(
        code(&s.apply(2, &publish(&junk, &[b"not a policy"]))),
        "CONTROL_CA_POLICY"
    );
    // begin: the overlap of A and B
    let overlap = support::overlap(cluster(), 60);
    let e2 = with_ca(2, &e1, &m, &overlap, 10_000);
    assert!(matches!(
        s.apply(2, &publish(&e2, &[&overlap])),
        Outcome::Published { .. }
    ));
    // a second rotation cannot begin, and the overlap cannot step back to A
    let back = with_ca(3, &e2, &m, &ca(), 20_000);
    assert_eq!(
        code(&s.apply(3, &publish(&back, &[&ca()]))),
        "CONTROL_CA_POLICY"
    );
    // cutover before the overlap epoch is effective
    // B alone without retiring A is no cutover
    let unretired = with_ca(3, &e2, &m, &only_b, 20_000);
    assert_eq!(
        code(&s.apply(3, &publish(&unretired, &[&only_b]))),
        "CONTROL_CA_POLICY"
    );
    let early = with_ca(3, &e2, &m, &cut, 20_000);
    let refused = s.apply(3, &publish(&early, &[&cut]));
    assert_eq!(code(&refused), "CONTROL_CUTOVER_NOT_CONVERGED");
    assert!(refused.to_string().contains("not effective"), "{refused}");
    // effective, but every node still presents a certificate of A
    converge(&mut s, &e2, &a, 30_000_000);
    assert!(matches!(
        s.epoch_state(Epoch(2)),
        Some(EpochState::Effective { .. })
    ));
    let refused = s.apply(3, &publish(&early, &[&cut]));
    assert_eq!(code(&refused), "CONTROL_CUTOVER_NOT_CONVERGED");
    assert!(refused.to_string().contains(&b), "{refused}");
    // two of three seen under B: still refused, naming the third
    assert!(matches!(
        observed_under(&mut s, 2, 1, &e2, &b, 40_000_000),
        Outcome::Recorded { .. }
    ));
    assert!(matches!(
        observed_under(&mut s, 3, 2, &e2, &b, 41_000_000),
        Outcome::Recorded { .. }
    ));
    let refused = s.apply(3, &publish(&early, &[&cut]));
    assert!(
        refused.to_string().contains(&node(3).to_string()),
        "{refused}"
    );
    // a node's own report never counts: node 3 observing itself is refused
    assert_eq!(
        code(&observed_under(&mut s, 3, 3, &e2, &b, 42_000_000)),
        "CONTROL_SELF_OBSERVATION"
    );
    assert!(matches!(
        observed_under(&mut s, 1, 3, &e2, &b, 42_000_000),
        Outcome::Recorded { .. }
    ));
    // every node seen under B at 42 s at the latest: the window of 60 s runs
    // to 102 s
    let inside = with_ca(3, &e2, &m, &cut, 101_000_000);
    let refused = s.apply(3, &publish(&inside, &[&cut]));
    assert_eq!(code(&refused), "CONTROL_CUTOVER_NOT_CONVERGED");
    assert!(
        refused.to_string().contains("stability window"),
        "{refused}"
    );
    // a cutover that also changes the membership would escape the check
    let m2 = membership(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, true, true),
    ]);
    let widened = with_ca(3, &e2, &m2, &cut, 102_000_000);
    assert_eq!(
        code(&s.apply(3, &publish(&widened, &[&cut, &m2]))),
        "CONTROL_CA_POLICY"
    );
    let after = with_ca(3, &e2, &m, &cut, 102_000_000);
    assert!(matches!(
        s.apply(3, &publish(&after, &[&cut])),
        Outcome::Published { .. }
    ));
    // and there is no way back to A, nor to the overlap
    let again = with_ca(4, &after, &m, &overlap, 200_000_000);
    assert_eq!(
        code(&s.apply(4, &publish(&again, &[&overlap]))),
        "CONTROL_CA_POLICY"
    );
    assert_ne!(a, b);
}

#[test]
fn a_forced_epoch_may_replace_the_roots_and_says_so() {
    let (mut s, e1) = started();
    let m = membership(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, false, true),
    ]);
    let only_b = support::ca_policy(cluster(), support::CA_B);
    let mut r = record(2, e1.hash(), &m);
    r.documents.ca_policy = Documents::hash(&only_b);
    r.forced = Some(Forced {
        what: "CA cutover without convergence: CA A's key was stolen".into(),
        acknowledgement: FORCE_ACKNOWLEDGEMENT.into(),
    });
    let e2 = sign(&r);
    assert!(matches!(
        s.apply(2, &publish(&e2, &[&only_b])),
        Outcome::Published { .. }
    ));
    assert!(
        s.epoch_lines()
            .iter()
            .any(|l| l.number == Epoch(2) && l.forced)
    );
    // a forced epoch with the wrong acknowledgement is not taken
    let mut r = record(3, e2.hash(), &m);
    r.documents.ca_policy = Documents::hash(&ca());
    r.forced = Some(Forced {
        what: "back".into(),
        acknowledgement: "yes".into(),
    });
    assert!(matches!(
        s.apply(3, &publish(&sign(&r), &[&ca()])),
        Outcome::Refused { .. }
    ));
}

#[test]
fn audit_heads_only_move_forward_and_survive_a_snapshot() {
    let (mut s, _) = started();
    let head = |seq: u64, h: u8| Command::Report {
        from: node(2),
        report: Report::AuditHead(AuditAnchor {
            seq,
            hash: [h; 32],
            at_us: 7,
        }),
    };
    assert!(matches!(s.apply(2, &head(10, 1)), Outcome::Recorded { .. }));
    assert!(matches!(s.apply(3, &head(10, 1)), Outcome::Recorded { .. }));
    assert!(matches!(s.apply(4, &head(12, 2)), Outcome::Recorded { .. }));
    // behind the anchor, or the same record with another hash: rewritten
    assert_eq!(code(&s.apply(5, &head(3, 9))), "CONTROL_AUDIT_REWOUND");
    assert_eq!(code(&s.apply(5, &head(12, 9))), "CONTROL_AUDIT_REWOUND");
    // a node that is not an enabled member anchors nothing
    let stranger = Command::Report {
        from: node(4),
        report: Report::AuditHead(AuditAnchor {
            seq: 1,
            hash: [1; 32],
            at_us: 7,
        }),
    };
    assert_eq!(code(&s.apply(5, &stranger)), "CONTROL_NOT_MEMBER");
    // the history: the same record again adds nothing
    let kept = s.anchors().get(&node(2)).unwrap().clone();
    let seqs: Vec<(u64, u64)> = kept.iter().map(|(a, at)| (a.seq, *at)).collect();
    assert_eq!(seqs, [(10, 2), (12, 4)]);
    let (a, _) = kept.last().unwrap();
    assert_eq!(a.hash, [2; 32]);
    // and keeps the last ANCHORS_KEPT
    for k in 0..40u64 {
        assert!(matches!(
            s.apply(10 + k, &head(13 + k, 3)),
            Outcome::Recorded { .. }
        ));
    }
    let kept = s.anchors().get(&node(2)).unwrap();
    assert_eq!(kept.len(), scratchbird_control::state::ANCHORS_KEPT);
    assert_eq!(kept.last().unwrap().0.seq, 52);
    let back = ControlState::from_image(&s.image().unwrap()).unwrap();
    assert_eq!(back.anchors(), s.anchors());
}

#[test]
fn the_shard_map_names_member_shard_nodes_and_keeps_its_owners_members() {
    let (mut s, e1) = started();
    let list = |nodes: &[(u8, bool, bool)]| {
        let bytes = membership(nodes);
        (members::decode(&bytes, cluster()).unwrap(), bytes)
    };
    let (all, m) = list(&[
        (1, true, true),
        (2, true, true),
        (3, true, true),
        (4, false, true),
    ]);
    // every test node has the shard role: a shard for each enabled one
    let map = ShardMap::one_per_node(&all);
    assert_eq!(map.shards.len(), 3);
    let bytes = map.encode().unwrap();
    let mut r = record(2, e1.hash(), &m);
    r.documents.shard_map = Documents::hash(&bytes);
    let e2 = sign(&r);
    assert!(matches!(
        s.apply(2, &publish(&e2, &[&bytes])),
        Outcome::Published { .. }
    ));
    assert_eq!(s.shard_map(), Some(map.clone()));
    // removing a node that owns a shard is refused until the shard moves
    let (_, without_3) = list(&[(1, true, true), (2, true, true), (4, false, true)]);
    let mut r = record(3, e2.hash(), &without_3);
    r.documents.shard_map = Documents::hash(&bytes);
    let refused = s.apply(3, &publish(&sign(&r), &[&without_3]));
    assert_eq!(code(&refused), "CONTROL_SHARD_MAP");
    assert!(refused.to_string().contains("not a member"), "{refused}");
    // a map naming a stranger, or out of canonical order, is refused
    let mut stranger = map.clone();
    stranger.shards[0].owners = vec![node(9)];
    let mut unsorted = map.clone();
    unsorted.shards.swap(0, 1);
    for bad in [stranger.encode().unwrap(), unsorted.encode().unwrap()] {
        let mut r = record(3, e2.hash(), &m);
        r.documents.shard_map = Documents::hash(&bad);
        assert_eq!(
            code(&s.apply(3, &publish(&sign(&r), &[&bad]))),
            "CONTROL_SHARD_MAP"
        );
    }
    // the CA policy's rules may change alone, roots kept
    let mut p = CaPolicy::decode(&ca(), cluster()).unwrap();
    p.rules.key_algorithms = vec!["ed25519".into()];
    p.rules.leaf_days_max = 90;
    let tighter = p.encode().unwrap();
    let mut r = record(3, e2.hash(), &m);
    r.documents.shard_map = Documents::hash(&bytes);
    r.documents.ca_policy = Documents::hash(&tighter);
    assert!(matches!(
        s.apply(3, &publish(&sign(&r), &[&tighter])),
        Outcome::Published { .. }
    ));
    assert_eq!(s.ca_policy().unwrap().rules.leaf_days_max, 90);
    // rules no certificate could meet are refused
    p.rules.key_algorithms = vec!["rsa".into()];
    let bad = p.encode().unwrap();
    let mut r = record(4, s.chain().unwrap().current_hash(), &m);
    r.documents.shard_map = Documents::hash(&bytes);
    r.documents.ca_policy = Documents::hash(&bad);
    assert_eq!(
        code(&s.apply(4, &publish(&sign(&r), &[&bad]))),
        "CONTROL_CA_POLICY"
    );
}

/// Schema changes (DDL as a cluster operation): taken from an enabled
/// coordinator only, once per claim, in order, within the limits; kept by a
/// snapshot with their claims (a replay after a restore is still refused);
/// each entry draws its own ids, the same on every node.
#[test]
fn schema_changes_come_from_coordinators_once_each_in_order() {
    use scratchbird_control::schema::{SCHEMA_CLAIM_BYTES_MAX, SchemaChange};
    let list = MembersList {
        cluster: cluster(),
        nodes: [
            (1u8, vec![Role::Voter, Role::Coordinator]),
            (2, vec![Role::Voter, Role::Shard]),
        ]
        .into_iter()
        .map(|(n, roles)| NodeEntry {
            id: node(n),
            name: format!("n{n}"),
            enabled: true,
            roles,
            peer: Some(format!("10.0.0.{n}:7401")),
        })
        .collect(),
        users: vec![],
    };
    let m = members::encode(&list).unwrap();
    let e = sign(&record(1, EpochHash::NONE, &m));
    let mut s = ControlState::default();
    let change = |sql: &str| SchemaChange {
        claim: sql.as_bytes().to_vec().into(),
        user: "alice".into(),
        id: *blake3::hash(sql.as_bytes()).as_bytes(),
    };
    let schema = |from: u8, c: &SchemaChange| Command::Schema {
        from: node(from),
        change: c.clone(),
    };
    // before any epoch, nothing is taken
    assert_eq!(
        code(&s.apply(1, &schema(1, &change("a")))),
        "CONTROL_NO_CLUSTER"
    );
    assert!(matches!(
        s.apply(2, &publish(&e, &[ca().as_slice(), &m])),
        Outcome::Published { .. }
    ));
    assert_eq!(
        s.apply(3, &schema(1, &change("CREATE TABLE a"))),
        Outcome::SchemaChanged { seq: 0 }
    );
    assert_eq!(
        s.apply(4, &schema(1, &change("CREATE TABLE b"))),
        Outcome::SchemaChanged { seq: 1 }
    );
    // a shard that is not a coordinator, an unknown node
    assert_eq!(
        code(&s.apply(5, &schema(2, &change("CREATE TABLE c")))),
        "CONTROL_NOT_COORDINATOR"
    );
    assert_eq!(
        code(&s.apply(5, &schema(9, &change("CREATE TABLE c")))),
        "CONTROL_NOT_COORDINATOR"
    );
    // the same claim again, from any coordinator; a claim too large
    assert_eq!(
        code(&s.apply(5, &schema(1, &change("CREATE TABLE a")))),
        "CONTROL_SCHEMA"
    );
    let big = "x".repeat(SCHEMA_CLAIM_BYTES_MAX + 1);
    assert_eq!(
        code(&s.apply(5, &schema(1, &change(&big)))),
        "CONTROL_SCHEMA"
    );
    assert!(
        s.precheck(&schema(1, &change("CREATE TABLE a")), None)
            .is_err()
    );
    assert!(
        s.precheck(&schema(1, &change("CREATE TABLE c")), None)
            .is_ok()
    );
    let held = s.schema_changes(0, 10).to_vec();
    assert_eq!(held.len(), 2);
    assert_eq!((held[1].seq, held[1].index, held[1].from), (1, 4, node(1)));
    assert_eq!(s.schema_changes(1, 10).len(), 1);
    assert!(s.schema_changes(5, 10).is_empty());
    // ids: the same for an entry wherever drawn, distinct between entries
    let draw = |i: usize| {
        let mut ids = held[i].ids(cluster());
        [ids(), ids(), ids()]
    };
    assert_eq!(draw(0), draw(0));
    assert_ne!(draw(0)[0], draw(0)[1]);
    assert_ne!(draw(0)[0], draw(1)[0]);
    // a snapshot keeps them, and still refuses the replay
    let restored = ControlState::from_image(&s.image().unwrap()).unwrap();
    assert_eq!(restored.schema_changes(0, 10), &held[..]);
    assert!(
        restored
            .precheck(&schema(1, &change("CREATE TABLE b")), None)
            .is_err()
    );
    // the chain a user may ask for leaves out the users' signed requests
    let chain = ControlState::from_image(&s.chain_image().unwrap()).unwrap();
    assert!(chain.schema_changes(0, 10).is_empty());
    assert_eq!(
        chain.chain().unwrap().current_hash(),
        s.chain().unwrap().current_hash()
    );
}
