//! The attestation: a user's signed statement "I, this user, ask this coordinator
//! to run this request of this session, until then". The client makes one per
//! request with the key of the certificate it connects with; the coordinator puts
//! it in every subplan envelope it signs, and each shard takes the principal from
//! it (after checking the certificate and the signature), never from a field the
//! coordinator fills in.
//!
//! This module holds the format and the exact bytes that are signed (and the
//! request digest, a blake3 hash); it does no signing (`net` signs and verifies with the certificate's key, Ed25519 or
//! ECDSA P-256), reads no clock and no randomness.

use crate::NodeName;
use serde::{Deserialize, Serialize};

/// Version of the attestation format.
pub const ATTESTATION_VERSION: u32 = 1;

/// Largest user certificate an attestation may carry, in bytes.
pub const CERTIFICATE_BYTES_MAX: usize = 16 << 10;

/// Largest session context a request carries, in bytes.
pub const CONTEXT_MAX: usize = 8 << 10;

/// Checks a session context's shape: a JSON object of at most [`CONTEXT_MAX`]
/// bytes. (What it may hold is the bundle's to say: the shard checks it against
/// the bundle's schema.) The client checks before it signs, the shard again.
///
/// # Errors
/// What is wrong with it.
pub fn check_context(c: &str) -> Result<(), String> {
    if c.len() > CONTEXT_MAX {
        return Err(format!(
            "the session context is {} bytes; at most {CONTEXT_MAX} are taken",
            c.len(),
        ));
    }
    if !c.trim_start().starts_with('{') {
        return Err(
            "the session context must be a JSON object, such as {\"break_glass\": true}".into(),
        );
    }
    Ok(())
}

/// Most parameters (`$1`, `$2`, ...) a request carries.
pub const PARAMS_MAX: usize = 10_000;

/// Largest total size of a request's parameter values, in bytes.
pub const PARAM_BYTES_MAX: usize = 1 << 20;

/// Checks a request's parameters against [`PARAMS_MAX`] and
/// [`PARAM_BYTES_MAX`]. The client checks before it signs, the node again.
///
/// # Errors
/// Which limit they pass.
pub fn check_params(params: &[Option<String>]) -> Result<(), String> {
    if params.len() > PARAMS_MAX {
        return Err(format!(
            "the request carries {} parameters; at most {PARAMS_MAX} are taken",
            params.len()
        ));
    }
    let bytes: usize = params.iter().flatten().map(String::len).sum();
    if bytes > PARAM_BYTES_MAX {
        return Err(format!(
            "the request's parameters are {bytes} bytes; at most {PARAM_BYTES_MAX} are taken"
        ));
    }
    Ok(())
}

/// Longest an attestation may be valid for: a request's deadline plus a margin
/// must fit in it.
pub const ATTESTATION_TTL_MAX_US: i64 = 24 * 3600 * 1_000_000;

/// How far ahead of the checker's clock an attestation's issue time may be (the
/// client's clock may run ahead).
pub const CLOCK_SKEW_MAX_US: i64 = 5 * 60 * 1_000_000;

// distinct from every other signed format's tag (the envelope's own
// attestation format included), so no signature of one reads as another
const TAG: &[u8] = b"scratchbird request attestation v1\0";

/// How a request reads across shards (spec 6.3; there is no global snapshot).
/// On one shard every mode reads one consistent snapshot per statement, which
/// satisfies all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Consistency {
    /// Each shard's part of a statement sees what that shard had committed when
    /// the part started.
    ReadCommitted,
    /// The shards' snapshots are taken as close together as the cluster can
    /// manage (best effort).
    Snapshot,
    /// Replicas may answer if they are at most this many milliseconds behind
    /// their primary.
    BoundedStaleness(u64),
}

/// The signature scheme of an attestation: the one the user's certificate key
/// has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// ECDSA over P-256 with SHA-256, the signature ASN.1 DER encoded.
    EcdsaP256Sha256,
}

/// A user's attestation for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// [`ATTESTATION_VERSION`].
    pub version: u32,
    /// The user's `sb://` name, as its certificate carries it.
    pub user: String,
    /// The coordinator the client sends it to.
    pub coordinator: NodeName,
    /// The client's session: derived from the TLS connection the request travels
    /// on (both ends compute it), so an attestation is good on that connection
    /// only.
    pub session: [u8; 16],
    /// Strictly increasing within a session: one value per request, so a request
    /// cannot be replayed within its session.
    pub sequence: u64,
    /// How the request reads.
    pub consistency: Consistency,
    /// The digest of what the request asks (its SQL text, session context and
    /// deadline): the attestation authorises that request and no other.
    pub request: [u8; 32],
    /// Microseconds since the Unix epoch when it was made.
    pub issued_us: i64,
    /// Microseconds since the Unix epoch after which it is void.
    pub expires_us: i64,
    /// The scheme of `signature`.
    pub scheme: SignatureScheme,
    /// The user's signature over [`Attestation::message`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The user's certificate (X.509 DER): it vouches for the key that signed.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
}

/// What a client asked of a coordinator: the request its attestation's
/// `request` field digests. Envelopes carry it, so a shard takes the session
/// context (which the bundle may read) from the user's signed words, never from
/// the coordinator's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// The SQL text of the request.
    pub sql: String,
    /// The session context (a JSON object's text), if the request names one.
    pub context: Option<String>,
    /// The request's deadline in milliseconds (0: none).
    pub deadline_ms: u64,
    /// The values of the statement's parameters `$1`, `$2`, ... as text
    /// (`None`: NULL), each read as a literal of the type its place asks for;
    /// empty for a request without parameters.
    #[serde(default)]
    pub params: Vec<Option<String>>,
}

impl Asked {
    /// [`request_digest`] of this request.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        request_digest(
            &self.sql,
            self.context.as_deref(),
            self.deadline_ms,
            &self.params,
        )
    }
}

/// The digest of what a request asks, which its attestation signs: blake3 over a
/// tag, the SQL text, the session context (absent and empty differ), the
/// deadline and, when there are any, the parameters (each NULL or
/// length-prefixed text), each length-prefixed. A request without parameters
/// digests as it did before they existed.
#[must_use]
pub fn request_digest(
    sql: &str,
    context: Option<&str>,
    deadline_ms: u64,
    params: &[Option<String>],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"scratchbird request v1\0");
    h.update(&(sql.len() as u64).to_le_bytes());
    h.update(sql.as_bytes());
    match context {
        None => {
            h.update(&[0]);
        }
        Some(c) => {
            h.update(&[1]);
            h.update(&(c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
    }
    h.update(&deadline_ms.to_le_bytes());
    if !params.is_empty() {
        h.update(&(params.len() as u64).to_le_bytes());
        for p in params {
            match p {
                None => {
                    h.update(&[0]);
                }
                Some(v) => {
                    h.update(&[1]);
                    h.update(&(v.len() as u64).to_le_bytes());
                    h.update(v.as_bytes());
                }
            }
        }
    }
    *h.finalize().as_bytes()
}

fn put(m: &mut Vec<u8>, b: &[u8]) {
    m.extend_from_slice(&(b.len() as u64).to_le_bytes());
    m.extend_from_slice(b);
}

impl Attestation {
    /// The bytes the user signs: a domain tag, then every field but the signature,
    /// each length-prefixed where its length varies, so no two attestations share
    /// them. The certificate is covered whole, so it cannot be swapped for another
    /// one with the same key.
    #[must_use]
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(TAG.len() + 128 + self.certificate.len());
        m.extend_from_slice(TAG);
        m.extend_from_slice(&self.version.to_le_bytes());
        put(&mut m, self.user.as_bytes());
        put(&mut m, self.coordinator.to_string().as_bytes());
        m.extend_from_slice(&self.session);
        m.extend_from_slice(&self.sequence.to_le_bytes());
        match self.consistency {
            Consistency::ReadCommitted => m.push(0),
            Consistency::Snapshot => m.push(1),
            Consistency::BoundedStaleness(ms) => {
                m.push(2);
                m.extend_from_slice(&ms.to_le_bytes());
            }
        }
        m.extend_from_slice(&self.request);
        m.extend_from_slice(&self.issued_us.to_le_bytes());
        m.extend_from_slice(&self.expires_us.to_le_bytes());
        m.push(match self.scheme {
            SignatureScheme::Ed25519 => 0,
            SignatureScheme::EcdsaP256Sha256 => 1,
        });
        put(&mut m, &self.certificate);
        m
    }

    /// Checks what needs no key and no certificate parsing: the version, the
    /// certificate's size, and that `now_us` lies in its validity window of at
    /// most [`ATTESTATION_TTL_MAX_US`], issued no more than
    /// [`CLOCK_SKEW_MAX_US`] ahead. (Whether a certificate is needed at all is the
    /// verifier's rule: a connection's, or a certificate authority's.)
    ///
    /// # Errors
    /// The rule it breaks, in words.
    pub fn check_window(&self, now_us: i64) -> Result<(), String> {
        if self.version != ATTESTATION_VERSION {
            return Err(format!(
                "attestation version {} (this build reads version {ATTESTATION_VERSION})",
                self.version
            ));
        }
        if self.certificate.len() > CERTIFICATE_BYTES_MAX {
            return Err(format!(
                "the attestation's certificate is larger than {CERTIFICATE_BYTES_MAX} bytes"
            ));
        }
        if self.expires_us <= now_us {
            return Err("the attestation has expired".into());
        }
        if self.issued_us >= self.expires_us {
            return Err("the attestation expires before it was issued".into());
        }
        if self.issued_us > now_us.saturating_add(CLOCK_SKEW_MAX_US) {
            return Err(
                "the attestation was issued more than 5 minutes in the future (check the client's clock)"
                    .into(),
            );
        }
        if self.expires_us.saturating_sub(self.issued_us) > ATTESTATION_TTL_MAX_US
            || self.expires_us.saturating_sub(now_us) > ATTESTATION_TTL_MAX_US
        {
            return Err("the attestation is valid for longer than 24 hours".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterId, NodeId};

    fn sample() -> Attestation {
        Attestation {
            version: ATTESTATION_VERSION,
            user: "sb://cluster/c/user/alice".into(),
            coordinator: NodeName::new(ClusterId::from_bytes([3; 16]), NodeId::from_bytes([4; 16])),
            session: [1; 16],
            sequence: 7,
            consistency: Consistency::Snapshot,
            request: [5; 32],
            issued_us: 1_000,
            expires_us: 2_000,
            scheme: SignatureScheme::Ed25519,
            signature: Vec::new(),
            certificate: vec![9; 10],
        }
    }

    #[test]
    fn every_field_changes_the_signed_bytes() {
        let a = sample();
        let base = a.message();
        type Change = Box<dyn Fn(&mut Attestation)>;
        let variants: Vec<Change> = vec![
            Box::new(|a| a.user.push('x')),
            Box::new(|a| a.coordinator.node = NodeId::from_bytes([5; 16])),
            Box::new(|a| a.session[0] = 2),
            Box::new(|a| a.sequence += 1),
            Box::new(|a| a.consistency = Consistency::ReadCommitted),
            Box::new(|a| a.consistency = Consistency::BoundedStaleness(0)),
            Box::new(|a| a.request[31] = 0),
            Box::new(|a| a.issued_us += 1),
            Box::new(|a| a.expires_us += 1),
            Box::new(|a| a.scheme = SignatureScheme::EcdsaP256Sha256),
            Box::new(|a| a.certificate.push(0)),
            Box::new(|a| a.version += 1),
        ];
        for f in variants {
            let mut b = a.clone();
            f(&mut b);
            assert_ne!(b.message(), base);
        }
        // the signature is not part of what is signed
        let mut b = a.clone();
        b.signature = vec![1, 2, 3];
        assert_eq!(b.message(), base);
        // a byte more in the user's name changes the bytes (length prefixes)
        let mut c = a;
        c.user.push('s');
        assert_ne!(c.message(), base);
    }

    #[test]
    fn the_window_is_checked() {
        let a = sample();
        assert!(a.check_window(1_500).is_ok());
        assert!(a.check_window(2_000).unwrap_err().contains("expired"));
        let mut long = a.clone();
        long.expires_us = ATTESTATION_TTL_MAX_US + 1_001;
        assert!(long.check_window(1_500).unwrap_err().contains("24 hours"));
        let mut large = a.clone();
        large.certificate = vec![0; CERTIFICATE_BYTES_MAX + 1];
        assert!(large.check_window(1_500).is_err());
        let mut ahead = a.clone();
        ahead.issued_us = 1_500 + CLOCK_SKEW_MAX_US + 1;
        ahead.expires_us = ahead.issued_us + 1;
        assert!(ahead.check_window(1_500).unwrap_err().contains("future"));
        let mut inverted = a;
        inverted.issued_us = 2_000;
        assert!(inverted.check_window(1_500).is_err());
    }
}
