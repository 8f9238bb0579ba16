//! What an attested request costs (issue 14): the client signing the attestation
//! of one request with its certificate's key, and the node checking it (the
//! request digest over the SQL text, the validity window, parsing the certificate
//! and verifying the signature), for Ed25519 and ECDSA P-256 certificates.
//!
//! And what signing and verifying a subplan envelope costs per statement: the
//! coordinator signing it with its node certificate's Ed25519 key, and the
//! shard verifying it (canonical form, signer, signature, epoch, bundle, module
//! hash, the module's declared references with its manifest from the cache, the
//! attestation's window and digest, the user's Ed25519 signature, replay).
//!
//!   cargo bench -p scratchbird-benches --bench attest
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench"
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use scratchbird_net::SbUri;
use scratchbird_net::attest::{request_digest, scheme_of, sign, verify_signature};
use scratchbird_net::identity::{self, KeyAlg, Validity};
use scratchbird_net::tls::Identity;
use scratchbird_types::attest::{ATTESTATION_VERSION, Attestation, Consistency};
use scratchbird_types::{ClusterId, NodeId, NodeName};
use std::hint::black_box;

const SQL: &str = "SELECT id, name, email FROM customers WHERE id = 42";

fn identity_of(alg: KeyAlg) -> (Identity, String) {
    let cluster = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::new_v4());
    let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(2)).unwrap();
    let uri = SbUri::user(cluster, "bench").unwrap();
    let user = identity::issue(&ca, &uri, alg, Validity::days_from_now(1)).unwrap();
    (
        Identity::from_pem(&user.cert_pem, &user.key_pem).unwrap(),
        uri.to_string(),
    )
}

fn unsigned(id: &Identity, user: &str) -> Attestation {
    Attestation {
        version: ATTESTATION_VERSION,
        user: user.to_owned(),
        coordinator: NodeName::new(ClusterId::from_bytes([0; 16]), NodeId::from_bytes([1; 16])),
        session: [7; 16],
        sequence: 1,
        consistency: Consistency::ReadCommitted,
        request: request_digest(SQL, None, 0, &[]),
        issued_us: 1_800_000_000_000_000,
        expires_us: 1_800_000_660_000_000,
        scheme: scheme_of(id).unwrap(),
        signature: Vec::new(),
        certificate: id.cert_der.clone(),
    }
}

fn attestations(c: &mut Criterion) {
    let mut g = c.benchmark_group("attestation");
    for (name, alg) in [
        ("ed25519", KeyAlg::Ed25519),
        ("ecdsa-p256", KeyAlg::EcdsaP256),
    ] {
        let (id, user) = identity_of(alg);
        let a = unsigned(&id, &user);
        g.bench_with_input(BenchmarkId::new("client signs", name), &a, |b, a| {
            b.iter(|| sign(&id, black_box(a.clone())).unwrap());
        });
        let signed = sign(&id, a).unwrap();
        g.bench_with_input(BenchmarkId::new("node checks", name), &signed, |b, s| {
            b.iter(|| {
                let s = black_box(s);
                assert_eq!(s.request, request_digest(SQL, None, 0, &[]));
                s.check_window(1_800_000_000_000_001).unwrap();
                verify_signature(s).unwrap();
            });
        });
    }
    g.finish();
}

fn envelopes(c: &mut Criterion) {
    use scratchbird_host::envelope::{
        Asked, ENVELOPE_VERSION, Envelope, LocalAuthority, Member, ReplayGuard, SignedEnvelope,
        local_attestation_for, referenced, verify_with,
    };
    let (node, _) = identity_of(KeyAlg::Ed25519);
    let node_key = scratchbird_net::attest::ed25519_key_of(&node.cert_der).unwrap();
    let user_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let parsed = scratchbird_compiler::parse(SQL_NO_TABLE).unwrap();
    let scratchbird_compiler::Statement::Query(compiled) =
        scratchbird_compiler::compile(&parsed[0], &scratchbird_compiler::Catalog::default())
            .unwrap()
    else {
        panic!("not a query")
    };
    let manifest = std::sync::Arc::new(compiled.manifest.clone());
    let (tables, columns) = referenced(&manifest);
    let asked = Asked {
        sql: SQL_NO_TABLE.into(),
        context: None,
        deadline_ms: 0,
        params: Vec::new(),
    };
    let now = 1_800_000_000_000_000;
    let env = Envelope {
        version: ENVELOPE_VERSION,
        module_hash: compiled.hash,
        epoch: scratchbird_types::Epoch(0),
        bundle_hash: [0; 32],
        shard_map_version: 0,
        schema_version: compiled.schema.0,
        tables,
        columns,
        consistency: Consistency::ReadCommitted,
        read_at: None,
        trace: [0; 16],
        inspect: false,
        attestation: local_attestation_for(
            "u",
            NodeName::LOCAL,
            &asked,
            now,
            now + 60_000_000,
            &user_key,
        ),
        asked,
        coordinator: NodeName::LOCAL,
        shard: NodeName::LOCAL,
        nonce: [1; 16],
        load: None,
    };
    let authority = LocalAuthority {
        members: std::collections::HashMap::from([(
            NodeName::LOCAL,
            Member {
                key: ed25519_dalek::VerifyingKey::from_bytes(&node_key).unwrap(),
                enabled: true,
                coordinator: true,
            },
        )]),
        users: std::collections::HashMap::from([("u".to_owned(), user_key.verifying_key())]),
        epoch: scratchbird_types::Epoch(0),
        bundle: scratchbird_types::BundleHash([0; 32]),
    };
    let mut g = c.benchmark_group("envelope");
    g.bench_function("coordinator signs (node certificate, Ed25519)", |b| {
        b.iter(|| {
            SignedEnvelope::sign_with(black_box(&env), compiled.module.clone(), |m| {
                node.sign_ed25519(m).map_err(|e| e.0)
            })
            .unwrap()
        });
    });
    let signed = SignedEnvelope::sign_with(&env, compiled.module.clone(), |m| {
        node.sign_ed25519(m).map_err(|e| e.0)
    })
    .unwrap();
    g.bench_function("shard verifies (module cached)", |b| {
        b.iter(|| {
            let replay = ReplayGuard::default();
            verify_with(
                black_box(&signed),
                &authority,
                &NodeName::LOCAL,
                &|_| Ok(manifest.clone()),
                &replay,
                now + 1,
            )
            .unwrap()
        });
    });
    g.finish();
}

/// A statement without tables, so the envelope bench needs no catalog.
const SQL_NO_TABLE: &str = "SELECT 1 + 2 AS three";

criterion_group!(benches, attestations, envelopes);
criterion_main!(benches);
