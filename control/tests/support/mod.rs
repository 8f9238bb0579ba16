//! What several control tests share: two fixed CA roots (made once with
//! `sb ca init`; a root's cluster name is not checked by the policy, and its
//! expiry is the certificates' concern, so fixed roots keep every epoch's hash
//! the same from run to run, which the simulation's seeds rely on).

#![allow(dead_code, reason = "each test uses what it needs")]

use scratchbird_control::ca::{CaPolicy, Rotation};
use scratchbird_types::ClusterId;

/// The first root.
pub const CA_A: &str = include_str!("ca-a.crt");
/// The root a rotation moves to.
pub const CA_B: &str = include_str!("ca-b.crt");

/// A policy trusting `pem`'s roots, canonical bytes.
#[must_use]
pub fn ca_policy(cluster: ClusterId, pem: &str) -> Vec<u8> {
    CaPolicy::from_pem(cluster, pem).unwrap().encode().unwrap()
}

/// The overlap policy of a rotation from A to B with `stability_secs`.
#[must_use]
pub fn overlap(cluster: ClusterId, stability_secs: u64) -> Vec<u8> {
    let a = CaPolicy::from_pem(cluster, CA_A).unwrap();
    let b = CaPolicy::from_pem(cluster, CA_B).unwrap();
    let rotation = Rotation {
        from: a.fingerprints()[0].clone(),
        to: b.fingerprints()[0].clone(),
        stability_secs,
    };
    CaPolicy::of_roots(
        cluster,
        vec![a.roots[0].to_vec(), b.roots[0].to_vec()],
        Some(rotation),
    )
    .unwrap()
    .encode()
    .unwrap()
}

/// The cutover policy of that rotation: B alone, A retired.
#[must_use]
pub fn cutover(cluster: ClusterId) -> Vec<u8> {
    let mut b = CaPolicy::from_pem(cluster, CA_B).unwrap();
    b.retired = vec![fingerprint(CA_A)];
    b.check(cluster).unwrap();
    b.encode().unwrap()
}

/// The fingerprint of a root.
#[must_use]
pub fn fingerprint(pem: &str) -> String {
    CaPolicy::from_pem(ClusterId::from_bytes([0; 16]), pem)
        .unwrap()
        .fingerprints()[0]
        .clone()
}
