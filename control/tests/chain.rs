//! The epoch chain's rules, one refusal at a time, then a property: whatever an
//! adversary adds to the stream of records (forks, rollbacks, replays, records
//! signed by removed or unknown keys, short of the threshold, tampered after
//! signing, downgrades), every node that reads the stream in order ends with
//! exactly the honest chain, and so does a node that reads it in any order
//! (resent until nothing more is taken) when the administrators themselves do
//! not sign two records for one epoch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "test"
)]

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use scratchbird_control::epoch::EPOCH_FORMAT;
use scratchbird_control::{
    AdminKey, Administrators, Capabilities, Documents, EpochChain, EpochError, EpochHash,
    EpochRecord, FORCE_ACKNOWLEDGEMENT, Forced, SignedEpoch,
};
use scratchbird_types::{ClusterId, Epoch};

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> AdminKey {
    AdminKey::of(&key(n))
}

fn cluster() -> ClusterId {
    ClusterId::from_bytes([7; 16])
}

const CAPS: Capabilities = Capabilities {
    protocol: 1,
    abi: 3,
    envelope: 1,
    storage_format: 2,
};

fn first(admins: &[u8], threshold: u32) -> EpochRecord {
    EpochRecord {
        format: EPOCH_FORMAT,
        cluster: cluster(),
        number: Epoch(1),
        prev: EpochHash::NONE,
        created_us: 1_000,
        documents: Documents {
            ca_policy: Documents::hash(b"ca"),
            bundle: Documents::hash(b"bundle 1"),
            membership: Documents::hash(b"members 1"),
            shard_map: Documents::hash(b"shards 1"),
            scheduler: Documents::empty_hash(),
            replication: Documents::empty_hash(),
            backup: Documents::empty_hash(),
        },
        capabilities: CAPS,
        token_fingerprint: [9; 32],
        administrators: Administrators::new(admins.iter().map(|&n| pk(n)).collect(), threshold),
        forced: None,
        note: "cluster init".into(),
    }
}

/// The record after `chain`'s current one, with a new bundle.
fn next(chain: &EpochChain, note: &str) -> EpochRecord {
    let mut r = chain.current().clone();
    r.number = r.number.next();
    r.prev = chain.current_hash();
    r.created_us += 10;
    r.documents.bundle = Documents::hash(note.as_bytes());
    r.note = note.into();
    r
}

fn sign(r: &EpochRecord, by: &[u8]) -> SignedEpoch {
    let keys: Vec<SigningKey> = by.iter().map(|&n| key(n)).collect();
    r.signed_by(&keys.iter().collect::<Vec<_>>()).unwrap()
}

/// A chain of one record, administrators 1 and 2, threshold 1.
fn started() -> EpochChain {
    EpochChain::start(cluster(), sign(&first(&[1, 2], 1), &[1]), &[pk(1), pk(2)]).unwrap()
}

fn code(r: Result<EpochRecord, EpochError>) -> &'static str {
    r.map(|_| ()).unwrap_err().code()
}

#[test]
fn a_chain_grows_by_signed_records_rotates_its_administrators_and_replays() {
    let mut c = started();
    // add administrator 3 and require two signatures from now on
    let mut r = next(&c, "two of three");
    r.administrators = Administrators::new(vec![pk(1), pk(2), pk(3)], 2);
    c.apply(sign(&r, &[2])).unwrap();
    // the previous epoch's rule applied: one signature was enough. Now two.
    let r = next(&c, "bundle 3");
    assert_eq!(
        c.check(&sign(&r, &[3])).unwrap_err(),
        EpochError::Threshold {
            valid: 1,
            needed: 2
        }
    );
    c.apply(sign(&r, &[3, 1])).unwrap();
    // remove administrator 1
    let mut r = next(&c, "without 1");
    r.administrators = Administrators::new(vec![pk(2), pk(3)], 2);
    c.apply(sign(&r, &[1, 2])).unwrap();
    assert!(c.removed_keys().contains(&pk(1)));
    // 1 may no longer sign, even beside enough good signatures
    let r = next(&c, "bundle 5");
    assert_eq!(
        c.check(&sign(&r, &[2, 3, 1])).unwrap_err(),
        EpochError::RemovedKey { key: pk(1) }
    );
    c.apply(sign(&r, &[2, 3])).unwrap();
    assert_eq!(c.current().number, Epoch(5));
    // the whole chain replays to the same head; a node trusting other keys refuses it
    let all: Vec<SignedEpoch> = c.signed().cloned().collect();
    let again = EpochChain::replay(cluster(), all.clone(), &[pk(1), pk(2)]).unwrap();
    assert_eq!(again.current_hash(), c.current_hash());
    let (at, e) = EpochChain::replay(cluster(), all.clone(), &[pk(2)]).unwrap_err();
    assert_eq!((at, e.code()), (0, "EPOCH_UNKNOWN_SIGNER"));
    // a chain missing a record in the middle refuses the one after the gap
    let mut holed = all;
    holed.remove(2);
    let (at, e) = EpochChain::replay(cluster(), holed, &[pk(1), pk(2)]).unwrap_err();
    assert_eq!((at, e.code()), (2, "EPOCH_GAP"));
}

#[test]
fn the_first_record_must_start_the_chain_and_be_signed_by_trusted_keys() {
    let trusted = [pk(1), pk(2)];
    let start = |r: &EpochRecord, by: &[u8]| {
        EpochChain::start(cluster(), sign(r, by), &trusted)
            .map(|_| ())
            .unwrap_err()
    };
    let mut r = first(&[1, 2], 1);
    r.number = Epoch(2);
    assert_eq!(start(&r, &[1]).code(), "EPOCH_NOT_FIRST");
    let mut r = first(&[1, 2], 1);
    r.prev = EpochHash([1; 32]);
    assert_eq!(start(&r, &[1]).code(), "EPOCH_NOT_FIRST");
    // an administrator the node does not trust, even one that does not sign
    assert_eq!(
        start(&first(&[1, 5], 1), &[1]),
        EpochError::UnknownSigner {
            key: pk(5),
            whose: "an administrator key this node trusts".into()
        }
    );
    assert_eq!(start(&first(&[1, 2], 2), &[1]).code(), "EPOCH_THRESHOLD");
    assert_eq!(start(&first(&[1, 2], 1), &[]).code(), "EPOCH_THRESHOLD");
    assert_eq!(
        start(&first(&[1, 2], 0), &[1]).code(),
        "EPOCH_ADMINISTRATORS"
    );
    assert_eq!(
        start(&first(&[1, 2], 3), &[1, 2]).code(),
        "EPOCH_ADMINISTRATORS"
    );
    assert_eq!(start(&first(&[], 1), &[1]).code(), "EPOCH_ADMINISTRATORS");
    let other = EpochChain::start(
        ClusterId::from_bytes([8; 16]),
        sign(&first(&[1], 1), &[1]),
        &trusted,
    );
    assert_eq!(other.map(|_| ()).unwrap_err().code(), "EPOCH_OTHER_CLUSTER");
}

#[test]
fn each_rule_refuses_with_its_name_and_leaves_the_chain_as_it_was() {
    let mut c = started();
    c.apply(sign(&next(&c, "e2"), &[1])).unwrap();
    let head = c.current_hash();
    let e2 = c.get(Epoch(2)).unwrap().1.clone();

    // the very record again: a repeat; the first one again too
    assert_eq!(code(c.check(&e2)), "EPOCH_REPEAT");
    let e1 = c.get(Epoch(1)).unwrap().1.clone();
    assert_eq!(code(c.check(&e1)), "EPOCH_REPEAT");
    // another epoch 2 (sideways), another epoch 1 (backwards)
    let mut side = c.get(Epoch(2)).unwrap().0.clone();
    side.note = "another 2".into();
    assert_eq!(code(c.check(&sign(&side, &[1]))), "EPOCH_FORK");
    let mut back = c.get(Epoch(1)).unwrap().0.clone();
    back.note = "another 1".into();
    assert_eq!(
        c.check(&sign(&back, &[1])).unwrap_err(),
        EpochError::Rollback {
            number: Epoch(1),
            current: Epoch(2)
        }
    );
    // skipping an epoch; the right number on top of another record
    let mut gap = next(&c, "e4");
    gap.number = Epoch(4);
    assert_eq!(code(c.check(&sign(&gap, &[1]))), "EPOCH_GAP");
    let mut astray = next(&c, "e3");
    astray.prev = c.get(Epoch(1)).unwrap().2;
    assert_eq!(code(c.check(&sign(&astray, &[1]))), "EPOCH_NOT_EXTENDING");

    // signatures
    let r = next(&c, "e3");
    assert_eq!(code(c.check(&sign(&r, &[]))), "EPOCH_THRESHOLD");
    assert_eq!(code(c.check(&sign(&r, &[1, 1]))), "EPOCH_SIGNED_TWICE");
    assert_eq!(
        c.check(&sign(&r, &[1, 6])).unwrap_err(),
        EpochError::UnknownSigner {
            key: pk(6),
            whose: "an administrator of epoch 2".into()
        }
    );
    let mut bad = sign(&r, &[1]);
    bad.signatures[0].signature[5] ^= 1;
    assert_eq!(code(c.check(&bad)), "EPOCH_BAD_SIGNATURE");
    let mut short = sign(&r, &[1]);
    short.signatures[0].signature.pop();
    assert_eq!(code(c.check(&short)), "EPOCH_BAD_SIGNATURE");
    // a signature claimed by administrator 2, made by someone else's key
    let mut forged = sign(&r, &[6]);
    forged.signatures[0].key = pk(2);
    assert_eq!(code(c.check(&forged)), "EPOCH_BAD_SIGNATURE");
    // the record changed after it was signed (its bytes re-encoded canonically)
    let mut tampered = sign(&r, &[1]);
    let mut changed = r.clone();
    changed.documents.bundle = Documents::hash(b"evil bundle");
    tampered.record = changed.canonical().unwrap();
    assert_eq!(code(c.check(&tampered)), "EPOCH_BAD_SIGNATURE");

    // reading
    let mut junk = sign(&r, &[1]);
    junk.record = b"not cbor at all".to_vec();
    assert_eq!(code(c.check(&junk)), "EPOCH_UNREADABLE");
    let mut trailing = sign(&r, &[1]);
    trailing.record.push(0);
    assert_eq!(code(c.check(&trailing)), "EPOCH_NOT_CANONICAL");
    let mut v2 = r.clone();
    v2.format = EPOCH_FORMAT + 1;
    assert_eq!(code(c.check(&sign(&v2, &[1]))), "EPOCH_FORMAT");
    let mut long = r.clone();
    long.note = "x".repeat(2000);
    assert_eq!(code(c.check(&sign(&long, &[1]))), "EPOCH_TOO_LARGE");
    let mut elsewhere = r.clone();
    elsewhere.cluster = ClusterId::from_bytes([8; 16]);
    assert_eq!(
        code(c.check(&sign(&elsewhere, &[1]))),
        "EPOCH_OTHER_CLUSTER"
    );

    // content
    let mut early = r.clone();
    early.created_us = 5;
    assert_eq!(code(c.check(&sign(&early, &[1]))), "EPOCH_CLOCK");
    let mut down = r.clone();
    down.capabilities.abi -= 1;
    assert_eq!(
        c.check(&sign(&down, &[1])).unwrap_err(),
        EpochError::Downgrade {
            what: "abi",
            from: 3,
            to: 2
        }
    );
    let mut no_admins = r.clone();
    no_admins.administrators = Administrators::new(vec![], 1);
    assert_eq!(
        code(c.check(&sign(&no_admins, &[1]))),
        "EPOCH_ADMINISTRATORS"
    );
    let mut unsorted = r.clone();
    unsorted.administrators = Administrators {
        keys: vec![pk(2), pk(1)],
        threshold: 1,
    };
    unsorted
        .administrators
        .keys
        .sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        code(c.check(&sign(&unsorted, &[1]))),
        "EPOCH_ADMINISTRATORS"
    );
    let mut forced = r.clone();
    forced.forced = Some(Forced {
        what: "cutover without convergence".into(),
        acknowledgement: "yes".into(),
    });
    assert_eq!(code(c.check(&sign(&forced, &[1]))), "EPOCH_FORCE");

    // nothing above changed the chain; the honest record still goes on, and a
    // forced step acknowledged word for word is taken and stays recorded
    assert_eq!(c.current_hash(), head);
    c.apply(sign(&r, &[2])).unwrap();
    let mut f = next(&c, "forced");
    f.forced = Some(Forced {
        what: "cutover without convergence".into(),
        acknowledgement: FORCE_ACKNOWLEDGEMENT.into(),
    });
    c.apply(sign(&f, &[1])).unwrap();
    assert!(c.get(Epoch(4)).unwrap().0.forced.is_some());
    assert_eq!(c.current().number, Epoch(4));
}

#[test]
fn a_removed_key_cannot_come_back() {
    let mut c = started();
    let mut r = next(&c, "without 2");
    r.administrators = Administrators::new(vec![pk(1)], 1);
    c.apply(sign(&r, &[2])).unwrap();
    let mut back = next(&c, "2 again");
    back.administrators = Administrators::new(vec![pk(1), pk(2)], 1);
    let e = c.check(&sign(&back, &[1])).unwrap_err();
    assert_eq!(e.code(), "EPOCH_ADMINISTRATORS");
    assert!(e.to_string().contains("cannot come back"), "{e}");
}

#[test]
fn every_rule_has_its_own_stable_code() {
    let all = [
        EpochError::Unreadable { why: String::new() },
        EpochError::NotCanonical,
        EpochError::Format { found: 2, reads: 1 },
        EpochError::TooLarge {
            what: String::new(),
            max: 1,
        },
        EpochError::OtherCluster {
            found: cluster(),
            expected: cluster(),
        },
        EpochError::NotFirst {
            number: Epoch(2),
            prev: EpochHash::NONE,
        },
        EpochError::Repeat { number: Epoch(1) },
        EpochError::Fork { number: Epoch(1) },
        EpochError::Rollback {
            number: Epoch(1),
            current: Epoch(2),
        },
        EpochError::Gap {
            number: Epoch(3),
            expected: Epoch(2),
        },
        EpochError::NotExtending {
            number: Epoch(2),
            found: EpochHash::NONE,
            expected: EpochHash::NONE,
        },
        EpochError::Clock {
            created_us: 0,
            previous_us: 1,
        },
        EpochError::Administrators { why: String::new() },
        EpochError::Downgrade {
            what: "abi",
            from: 2,
            to: 1,
        },
        EpochError::Force { expected: "" },
        EpochError::BadSignature { key: pk(1) },
        EpochError::SignedTwice { key: pk(1) },
        EpochError::RemovedKey { key: pk(1) },
        EpochError::UnknownSigner {
            key: pk(1),
            whose: String::new(),
        },
        EpochError::Threshold {
            valid: 0,
            needed: 1,
        },
    ];
    let codes: std::collections::BTreeSet<&str> = all.iter().map(EpochError::code).collect();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|c| c.starts_with("EPOCH_")));
}

/// What the honest administrators do next.
#[derive(Debug, Clone)]
enum Step {
    /// A new bundle.
    Bundle,
    /// Add a fresh administrator key.
    Add,
    /// Remove an administrator (by index among the current ones).
    Remove(usize),
    /// Set the threshold (clamped to the number of keys).
    Threshold(u32),
}

/// What an adversary sends beside it.
#[derive(Debug, Clone)]
enum Attack {
    /// A different record for the current epoch.
    Fork,
    /// A record for an earlier epoch.
    Rollback(usize),
    /// The honest next record, signed by a key removed earlier (if any) as well.
    SignedByRemoved,
    /// The honest next record, signed by an outsider as well.
    SignedByOutsider,
    /// The honest next record with one signature fewer than the threshold.
    Short,
    /// The honest next record with its bundle replaced after signing.
    Tampered,
    /// The honest next record with a lower capability.
    Downgrade,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Bundle),
        1 => Just(Step::Add),
        1 => (0usize..8).prop_map(Step::Remove),
        1 => (1u32..4).prop_map(Step::Threshold),
    ]
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        Just(Attack::Fork),
        (0usize..64).prop_map(Attack::Rollback),
        Just(Attack::SignedByRemoved),
        Just(Attack::SignedByOutsider),
        Just(Attack::Short),
        Just(Attack::Tampered),
        Just(Attack::Downgrade),
    ]
}

/// Signs `r` with the first `n` of `admins`.
fn sign_first(r: &EpochRecord, admins: &[u8], n: usize) -> SignedEpoch {
    sign(r, &admins[..n.min(admins.len())])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SB_EPOCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_node_ends_with_exactly_the_honest_chain(
        plan in proptest::collection::vec((step(), proptest::collection::vec(attack(), 0..3)), 1..12),
        shuffle_seed in any::<u64>(),
    ) {
        // the honest administrators build the chain, and the adversary's
        // records are made against the same state
        let mut honest = started();
        let mut admins: Vec<u8> = vec![1, 2];
        let mut removed: Vec<u8> = Vec::new();
        let mut fresh = 10u8;
        let mut stream: Vec<(SignedEpoch, bool, bool)> = Vec::new();
        for (i, (s, attacks)) in plan.iter().enumerate() {
            let mut r = next(&honest, &format!("step {i}"));
            let mut new_admins = admins.clone();
            match s {
                Step::Bundle => {}
                Step::Add => {
                    new_admins.push(fresh);
                    fresh += 1;
                }
                Step::Remove(k) if admins.len() > 1 => {
                    new_admins.remove(k % admins.len());
                }
                Step::Remove(_) => {}
                Step::Threshold(_) => {}
            }
            let threshold = match s {
                Step::Threshold(t) => (*t).min(new_admins.len() as u32),
                _ => honest.current().administrators.threshold.min(new_admins.len() as u32),
            };
            r.administrators =
                Administrators::new(new_admins.iter().map(|&n| pk(n)).collect(), threshold);
            let need = honest.current().administrators.threshold as usize;
            let good = sign_first(&r, &admins, need);
            for a in attacks {
                let bad = match a {
                    Attack::Fork => {
                        let mut f = honest.current().clone();
                        f.note = format!("fork at {i}");
                        sign_first(&f, &admins, need)
                    }
                    Attack::Rollback(k) => {
                        let n = honest.current().number.0;
                        let target = Epoch(1 + (*k as u64) % n);
                        let mut b = honest.get(target).unwrap().0.clone();
                        b.note = format!("rollback to {}", target.0);
                        sign_first(&b, &admins, need)
                    }
                    Attack::SignedByRemoved => {
                        let Some(&gone) = removed.first() else { continue };
                        let mut s = good.clone();
                        s.sign(&key(gone));
                        s
                    }
                    Attack::SignedByOutsider => {
                        let mut s = good.clone();
                        s.sign(&key(200));
                        s
                    }
                    Attack::Short => sign_first(&r, &admins, need - 1),
                    Attack::Tampered => {
                        let mut s = good.clone();
                        let mut t = r.clone();
                        t.documents.bundle = Documents::hash(b"tampered");
                        s.record = t.canonical().unwrap();
                        s
                    }
                    Attack::Downgrade => {
                        let mut d = r.clone();
                        d.capabilities.envelope = 0;
                        sign_first(&d, &admins, need)
                    }
                };
                prop_assert!(honest.check(&bad).is_err(), "{a:?} was taken at step {i}");
                // a fork or rollback signed by enough administrators is their
                // own equivocation: a node that has not yet taken the honest
                // record of that epoch would take it. The chain cannot tell
                // which of two such records came first; the replicated log's
                // order decides, so only nodes that read the log in order see
                // them below
                let equivocation = matches!(a, Attack::Fork | Attack::Rollback(_));
                stream.push((bad, false, equivocation));
            }
            honest.apply(good.clone()).unwrap();
            stream.push((good, true, false));
            for k in &admins {
                if !new_admins.contains(k) {
                    removed.push(*k);
                }
            }
            admins = new_admins;
        }
        // nodes see the stream in order, and shuffled with every record resent
        // until nothing more is taken (as a gossiping node would)
        let trusted = [pk(1), pk(2)];
        let genesis = honest.get(Epoch(1)).unwrap().1.clone();
        let mut in_order = EpochChain::start(cluster(), genesis.clone(), &trusted).unwrap();
        for (s, is_good, _) in &stream {
            prop_assert_eq!(in_order.apply(s.clone()).is_ok(), *is_good);
        }
        prop_assert_eq!(in_order.current_hash(), honest.current_hash());

        let mut shuffled: Vec<SignedEpoch> = stream
            .iter()
            .filter(|(_, _, equivocation)| !equivocation)
            .map(|(s, _, _)| s.clone())
            .collect();
        let mut x = shuffle_seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut gossip = EpochChain::start(cluster(), genesis, &trusted).unwrap();
        loop {
            let before = gossip.current().number;
            for s in &shuffled {
                let _ = gossip.apply(s.clone());
            }
            if gossip.current().number == before {
                break;
            }
        }
        prop_assert_eq!(gossip.current_hash(), honest.current_hash());
        prop_assert_eq!(gossip.current().number, honest.current().number);
    }
}
