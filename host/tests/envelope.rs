//! A hostile coordinator against the envelope check: forged, replayed, stale,
//! foreign-bundle, mislabelled and misattributed subplans are refused, each with
//! the rule it broke; an honest one passes and names the attested principal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

mod support;

use ed25519_dalek::SigningKey;
use scratchbird_guest_ops::abi::{
    ABI_VERSION, OutputDecl, PlanManifest, ScanColumn, ScanDecl, ScanRangeDecl,
};
use scratchbird_guest_ops::emit::emit;
use scratchbird_guest_ops::plan::{Op, Program, Sink};
use scratchbird_host::HostError;
use scratchbird_host::SandboxLimits;
use scratchbird_host::envelope::ENVELOPE_VERSION;
use scratchbird_host::envelope::{
    Consistency, Envelope, LocalAuthority, Member, ReplayGuard, SignedEnvelope, referenced, verify,
};
use scratchbird_types::{BundleHash, ColumnId, SqlType, TableId};
use std::collections::HashMap;
use support::{NOW, att, key, node};

const HOUR: i64 = 3_600_000_000;

struct World {
    authority: LocalAuthority,
    module: Vec<u8>,
    env: Envelope,
}

fn module() -> Vec<u8> {
    let m = PlanManifest {
        abi: ABI_VERSION,
        scans: vec![ScanDecl {
            table: TableId::from_bytes([1; 16]),
            columns: vec![
                ScanColumn {
                    id: ColumnId::from_bytes([2; 16]),
                    ty: SqlType::BigInt,
                },
                ScanColumn {
                    id: ColumnId::from_bytes([3; 16]),
                    ty: SqlType::BigInt,
                },
            ],
            range: ScanRangeDecl::All,
            with_keys: false,
            rows_max: 1024,
            heap_bytes: 0,
        }],
        outputs: vec![OutputDecl {
            names: vec!["a".into(), "b".into()],
            types: vec![SqlType::BigInt, SqlType::BigInt],
            rows_max: 1024,
            heap_bytes: 0,
        }],
        writes: vec![],
        inputs: vec![],
    };
    let p = Program {
        inits: vec![],
        pipelines: vec![(
            Op::Scan {
                scan: 0,
                nullable: vec![true, true],
            },
            Sink::Output(0),
        )],
    };
    emit(&p, &m).unwrap()
}

fn world() -> World {
    let mut members = HashMap::new();
    let member = |k: &SigningKey, enabled, coordinator| Member {
        key: k.verifying_key(),
        enabled,
        coordinator,
    };
    members.insert(node("c1"), member(&key(1), true, true));
    members.insert(node("c2"), member(&key(2), false, true));
    members.insert(node("s3"), member(&key(3), true, false));
    let mut users = HashMap::new();
    users.insert("alice".into(), key(10).verifying_key());
    users.insert("bob".into(), key(11).verifying_key());
    let authority = LocalAuthority {
        members,
        users,
        epoch: scratchbird_types::Epoch(7),
        bundle: BundleHash([5; 32]),
    };
    let module = module();
    let manifest =
        scratchbird_host::validate::validate(&module, &SandboxLimits::default()).unwrap();
    let (tables, columns) = referenced(&manifest);
    let env = Envelope {
        version: ENVELOPE_VERSION,
        module_hash: *blake3::hash(&module).as_bytes(),
        epoch: scratchbird_types::Epoch(7),
        bundle_hash: [5; 32],
        shard_map_version: 1,
        schema_version: [0; 32],
        tables,
        columns,
        consistency: Consistency::Snapshot,
        read_at: None,
        trace: [0; 16],
        inspect: false,
        attestation: att("alice", "c1", NOW + HOUR, &key(10)),
        coordinator: node("c1"),
        shard: node("s1"),
        asked: scratchbird_host::envelope::Asked::default(),
        nonce: [4; 16],
        load: None,
    };
    World {
        authority,
        module,
        env,
    }
}

fn check(w: &World, s: &SignedEnvelope) -> Result<String, HostError> {
    verify(
        s,
        &w.authority,
        &node("s1"),
        &SandboxLimits::default(),
        &ReplayGuard::default(),
        NOW,
    )
    .map(|v| v.principal)
}

fn refused(r: Result<String, HostError>, what: &str) {
    match r {
        Err(HostError::Envelope(m) | HostError::Signature(m)) => {
            assert!(m.contains(what), "'{m}' does not say '{what}'");
        }
        other => panic!("expected a refusal saying '{what}', got {other:?}"),
    }
}

/// `w.env` changed by `f`, signed by `k` as it travels with `w.module`.
fn signed(w: &World, k: &SigningKey, f: impl FnOnce(&mut Envelope)) -> SignedEnvelope {
    let mut e = w.env.clone();
    f(&mut e);
    SignedEnvelope::sign(&e, w.module.clone(), k).unwrap()
}

#[test]
fn an_honest_envelope_passes_once_and_names_the_attested_principal() {
    let w = world();
    let s = signed(&w, &key(1), |_| {});
    let replay = ReplayGuard::default();
    let run = || {
        verify(
            &s,
            &w.authority,
            &node("s1"),
            &SandboxLimits::default(),
            &replay,
            NOW,
        )
    };
    let v = run().unwrap();
    assert_eq!(v.principal, "User::\"alice\"");
    assert_eq!(v.id, s.id());
    // the same envelope again is a replay
    let e = run().unwrap_err();
    assert!(
        matches!(&e, HostError::Envelope(m) if m.contains("replay")),
        "{e:?}"
    );
}

#[test]
fn a_coordinator_session_counts_up_and_an_older_envelope_is_a_replay() {
    let w = world();
    let replay = ReplayGuard::default();
    let at = |session: u8, counter: u64| {
        signed(&w, &key(1), |e| {
            e.nonce[..8].copy_from_slice(&[session; 8]);
            e.nonce[8..].copy_from_slice(&counter.to_le_bytes());
        })
    };
    let ok = |s: &SignedEnvelope| {
        verify(
            s,
            &w.authority,
            &node("s1"),
            &SandboxLimits::default(),
            &replay,
            NOW,
        )
        .map(drop)
    };
    ok(&at(1, 5)).unwrap();
    ok(&at(1, 6)).unwrap();
    // an envelope the session sent before its latest, a new one or not
    for counter in [6, 5, 2] {
        let e = ok(&at(1, counter)).unwrap_err();
        assert!(
            matches!(&e, HostError::Envelope(m) if m.contains("replay")),
            "{e:?}"
        );
    }
    // another session of the same coordinator counts on its own
    ok(&at(2, 1)).unwrap();
    ok(&at(1, 7)).unwrap();
}

#[test]
fn forged_signatures_and_signers_are_refused() {
    let w = world();
    // a flipped bit in the signature
    let mut s = signed(&w, &key(1), |_| {});
    s.signature[5] ^= 1;
    refused(check(&w, &s), "does not verify");
    // claims to be c1, signed with another key
    refused(check(&w, &signed(&w, &key(99), |_| {})), "does not verify");
    // a signature of the wrong length
    let mut s = signed(&w, &key(1), |_| {});
    s.signature.truncate(10);
    refused(check(&w, &s), "not an ed25519 signature");
    // the envelope changed after signing
    let mut s = signed(&w, &key(1), |_| {});
    let e2 = signed(&w, &key(1), |e| e.epoch = scratchbird_types::Epoch(8));
    s.envelope = e2.envelope;
    refused(check(&w, &s), "does not verify");
    // unknown, disabled, and non-coordinator signers
    refused(
        check(&w, &signed(&w, &key(4), |e| e.coordinator = node("c4"))),
        "not a member",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(2), |e| {
                e.coordinator = node("c2");
                e.attestation = att("alice", "c2", NOW + HOUR, &key(10));
            }),
        ),
        "disabled member",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(3), |e| {
                e.coordinator = node("s3");
                e.attestation = att("alice", "s3", NOW + HOUR, &key(10));
            }),
        ),
        "coordinator role",
    );
}

#[test]
fn stale_epochs_foreign_bundles_and_other_versions_are_refused() {
    let w = world();
    // an envelope of another epoch than the shard's (older or newer) is told
    // apart from other refusals: a coordinator signs it again in the epoch
    // in force (retrying never gets past any other rule)
    for other in [6, 8] {
        match check(
            &w,
            &signed(&w, &key(1), |e| e.epoch = scratchbird_types::Epoch(other)),
        ) {
            Err(e @ HostError::EpochChanged { envelope, shard }) => {
                assert_eq!((envelope.0, shard.0), (other, 7));
                assert_eq!(e.code(), "EPOCH_CHANGED");
                assert!(e.to_string().contains(&format!("epoch {other}")), "{e}");
            }
            r => panic!("{r:?}"),
        }
    }
    // the epoch is checked only after the signer and its signature: a forged
    // envelope learns nothing about the shard's epoch
    refused(
        check(
            &w,
            &signed(&w, &key(2), |e| e.epoch = scratchbird_types::Epoch(6)),
        ),
        "signature",
    );
    refused(
        check(&w, &signed(&w, &key(1), |e| e.bundle_hash = [6; 32])),
        "another security bundle",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| e.version = ENVELOPE_VERSION + 1),
        ),
        &format!("reads version {ENVELOPE_VERSION}"),
    );
    refused(
        check(&w, &signed(&w, &key(1), |e| e.shard = node("s2"))),
        &format!(
            "addressed to node {}, not to this node {}",
            node("s2"),
            node("s1")
        ),
    );
}

#[test]
fn modules_that_are_not_what_the_envelope_says_are_refused() {
    let w = world();
    // bytes that do not hash to the envelope's hash
    let mut s = signed(&w, &key(1), |_| {});
    s.module.push(0);
    refused(check(&w, &s), "hash does not match");
    // a module that reads a column the envelope does not list
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.columns.pop();
            }),
        ),
        "differ from the envelope",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.tables.clear();
            }),
        ),
        "differ from the envelope",
    );
    // a correctly signed envelope around a module that breaks the ABI
    let bad = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (func (export "sb_main")))"#,
    )
    .unwrap();
    let mut e = w.env.clone();
    e.module_hash = *blake3::hash(&bad).as_bytes();
    let s = SignedEnvelope::sign(&e, bad, &key(1)).unwrap();
    match check(&w, &s) {
        Err(HostError::Refused { what: m, .. }) => assert!(m.contains("import"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn attestations_that_do_not_prove_the_principal_are_refused() {
    let w = world();
    // the coordinator claims another principal: the user field says bob, the
    // signature is alice's
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| e.attestation.user = "bob".into()),
        ),
        "not signed by user bob",
    );
    // bob's signature made by someone else's key
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.attestation = att("bob", "c1", NOW + HOUR, &key(10));
            }),
        ),
        "not signed by user bob",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.attestation = att("mallory", "c1", NOW + HOUR, &key(12));
            }),
        ),
        "not known",
    );
    // an attestation given to another coordinator
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.attestation = att("alice", "c9", NOW + HOUR, &key(10));
            }),
        ),
        &format!("given to coordinator {}", node("c9")),
    );
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.attestation = att("alice", "c1", NOW - 1, &key(10));
            }),
        ),
        "expired",
    );
    refused(
        check(
            &w,
            &signed(&w, &key(1), |e| {
                e.attestation = att("alice", "c1", NOW + 25 * HOUR, &key(10));
            }),
        ),
        "longer than 24 hours",
    );
    // the expiry moved after the user signed
    refused(
        check(&w, &signed(&w, &key(1), |e| e.attestation.expires_us += 1)),
        "not signed by user alice",
    );
    // bob's own attestation is fine, and names bob
    let s = signed(&w, &key(1), |e| {
        e.attestation = att("bob", "c1", NOW + HOUR, &key(11));
    });
    assert_eq!(check(&w, &s).unwrap(), "User::\"bob\"");
}

#[test]
fn envelopes_that_are_not_canonical_or_not_envelopes_are_refused() {
    let w = world();
    let mut s = signed(&w, &key(1), |_| {});
    s.envelope.push(0);
    let r = check(&w, &s);
    assert!(matches!(&r, Err(HostError::Envelope(_))), "{r:?}");
    let mut s = signed(&w, &key(1), |_| {});
    s.envelope = vec![0xff; 40];
    refused(check(&w, &s), "not readable");
}

/// A schema change's claim is one claim whatever bytes its signature takes:
/// its id leaves the signature out (a scheme that verifies two encodings of
/// one signature cannot make it two claims), and covers everything signed.
#[test]
fn a_schema_claims_id_ignores_the_signature_bytes_only() {
    use scratchbird_host::envelope::{Asked, SchemaClaim};
    let claim = SchemaClaim {
        attestation: att("alice", "c1", NOW + HOUR, &key(10)),
        asked: Asked::default(),
        index: 0,
    };
    let mut other_bytes = claim.clone();
    other_bytes.attestation.signature = vec![1; 64];
    assert_eq!(claim.id().unwrap(), other_bytes.id().unwrap());
    let mut next = claim.clone();
    next.index = 1;
    assert_ne!(claim.id().unwrap(), next.id().unwrap());
    let mut later = claim.clone();
    later.attestation.expires_us += 1;
    assert_ne!(claim.id().unwrap(), later.id().unwrap());
    // canonical bytes round trip; others are refused
    let bytes = claim.encode().unwrap();
    assert_eq!(SchemaClaim::decode(&bytes).unwrap(), claim);
    assert!(SchemaClaim::decode(&bytes[..bytes.len() - 1]).is_err());
}

/// A load stage: its input 0 (one BIGINT column) into a write target.
fn load_module() -> Vec<u8> {
    use scratchbird_guest_ops::abi::{InputDecl, WriteDecl, WriteKind};
    let m = PlanManifest {
        abi: ABI_VERSION,
        scans: vec![],
        outputs: vec![],
        writes: vec![WriteDecl {
            table: TableId::from_bytes([1; 16]),
            kind: WriteKind::Insert,
            on_conflict: scratchbird_guest_ops::abi::OnConflict::Fail,
            sets: vec![],
            columns: vec![ScanColumn {
                id: ColumnId::from_bytes([2; 16]),
                ty: SqlType::BigInt,
            }],
            rows_max: 1024,
            heap_bytes: 0,
        }],
        inputs: vec![InputDecl {
            types: vec![SqlType::BigInt],
            rows_max: 1024,
            heap_bytes: 0,
        }],
    };
    let p = Program {
        inits: vec![],
        pipelines: vec![(
            Op::Input {
                input: 0,
                nullable: vec![true],
            },
            Sink::Write(0),
        )],
    };
    emit(&p, &m).unwrap()
}

/// A load stage's envelope names the COPY statement of the request whose
/// rows the shard reads (the rows are the user's signed text, never the
/// coordinator's): only a load stage names one, and a load stage must.
#[test]
fn only_a_load_stage_names_a_copy_statement_and_a_load_stage_must() {
    let mut w = world();
    w.module = load_module();
    let manifest =
        scratchbird_host::validate::validate(&w.module, &SandboxLimits::default()).unwrap();
    assert!(manifest.is_load() && !manifest.is_merge());
    (w.env.tables, w.env.columns) = referenced(&manifest);
    w.env.module_hash = *blake3::hash(&w.module).as_bytes();
    check(&w, &signed(&w, &key(1), |e| e.load = Some(0))).unwrap();
    refused(
        check(&w, &signed(&w, &key(1), |e| e.load = None)),
        "a load stage whose envelope names no COPY statement",
    );
    let q = world();
    refused(
        check(&q, &signed(&q, &key(1), |e| e.load = Some(0))),
        "names a COPY statement for a stage that is not a load stage",
    );
}
