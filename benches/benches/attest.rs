//! What an attested request costs (issue 14): the client signing the attestation
//! of one request with its certificate's key, and the node checking it (the
//! request digest over the SQL text, the validity window, parsing the certificate
//! and verifying the signature), for Ed25519 and ECDSA P-256 certificates.
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
use std::hint::black_box;

const SQL: &str = "SELECT id, name, email FROM customers WHERE id = 42";

fn identity_of(alg: KeyAlg) -> (Identity, String) {
    let cluster = uuid::Uuid::new_v4();
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
        coordinator: "sb://cluster/00000000-0000-0000-0000-000000000000/node/00000000-0000-0000-0000-000000000001".into(),
        session: [7; 16],
        sequence: 1,
        consistency: Consistency::ReadCommitted,
        request: request_digest(SQL, None, 0),
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
                assert_eq!(s.request, request_digest(SQL, None, 0));
                s.check_window(1_800_000_000_000_001).unwrap();
                verify_signature(s).unwrap();
            });
        });
    }
    g.finish();
}

criterion_group!(benches, attestations);
criterion_main!(benches);
