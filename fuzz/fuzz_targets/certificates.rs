//! Certificates from libFuzzer's input, through the verifier a node runs on every
//! handshake (`Trust::verify`, then the membership rules). Even first byte: up to
//! eight byte edits of a valid user certificate; odd: the input itself as DER. A
//! crash is a panic, or an edited certificate accepted under another name or
//! validity than the one the CA signed (the signature covers both).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scratchbird_net::identity::{self, KeyAlg, Validity};
use scratchbird_net::verify::{Expect, Members, MembersList, Trust, UserEntry, admit};
use scratchbird_net::SbUri;

struct State {
    trust: Trust,
    members: Members,
    der: Vec<u8>,
    now: i64,
    uri: SbUri,
    not_after: i64,
}

thread_local! {
    static STATE: State = {
        let cluster = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::from_u128(0x5b));
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(30)).expect("ca");
        let uri = SbUri::user(cluster, "alice").expect("uri");
        let user = identity::issue(&ca, &uri, KeyAlg::Ed25519, Validity::days_from_now(10)).expect("issue");
        let der = identity::certs_from_pem(&user.cert_pem).expect("pem").remove(0);
        let trust = Trust::from_pem(cluster, &ca.cert_pem).expect("trust");
        let members = Members::new(&MembersList {
            cluster,
            nodes: Vec::new(),
            users: vec![UserEntry { name: "alice".into(), enabled: true }],
        });
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let v = trust.verify(&der, now).expect("the issued certificate verifies");
        State { trust, members, der, now, uri, not_after: v.not_after }
    };
}

fn mutate(base: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits.chunks(3).take(8) {
        let (op, at, val) = (e[0] % 4, usize::from(*e.get(1).unwrap_or(&0)) * 3, *e.get(2).unwrap_or(&0));
        if v.is_empty() {
            v.push(val);
            continue;
        }
        let i = at % v.len();
        match op {
            0 => v[i] ^= val | 1,
            1 => v.insert(i, val),
            2 => {
                v.remove(i);
            }
            _ => v.truncate(i),
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|s| {
        let der = match data.first() {
            Some(b) if b % 2 == 0 => mutate(&s.der, data.get(1..).unwrap_or(&[])),
            _ => data.to_vec(),
        };
        if let Ok(v) = s.trust.verify(&der, s.now) {
            assert_eq!(v.uri, s.uri, "a certificate the CA did not sign was accepted");
            assert_eq!(v.not_after, s.not_after, "an edited validity was accepted");
            let _ = admit(&v, Expect::User, Some(&s.members));
            let _ = admit(&v, Expect::Node(None), Some(&s.members));
        }
    });
});
