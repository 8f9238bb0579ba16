//! Signing attestations with the key of the certificate a user connects with, and
//! checking their signatures against the certificate they carry. Who may attest
//! (the certificate chains to the cluster CA, is valid, names a member) is the
//! caller's question: [`crate::verify::Trust::verify`] and
//! [`crate::verify::admit`] answer it; this module answers only "did the key of
//! this certificate sign these bytes".

use crate::tls::{Identity, TlsError};
use scratchbird_types::attest::{Attestation, SignatureScheme};

pub use scratchbird_types::attest::request_digest;

const ED25519_OID: &str = "1.3.101.112";
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// The scheme `identity`'s key signs with.
///
/// # Errors
/// A key that is neither Ed25519 nor ECDSA P-256.
pub fn scheme_of(identity: &Identity) -> Result<SignatureScheme, TlsError> {
    match identity.key_algorithm() {
        rustls::SignatureAlgorithm::ED25519 => Ok(SignatureScheme::Ed25519),
        rustls::SignatureAlgorithm::ECDSA => Ok(SignatureScheme::EcdsaP256Sha256),
        other => Err(TlsError(format!(
            "a {other:?} key cannot sign attestations (Ed25519 or ECDSA P-256)"
        ))),
    }
}

/// Signs `unsigned` (made with [`scheme_of`]'s scheme and `identity`'s
/// certificate) with `identity`'s key.
///
/// # Errors
/// The key cannot sign with that scheme.
pub fn sign(identity: &Identity, mut unsigned: Attestation) -> Result<Attestation, TlsError> {
    let scheme = match unsigned.scheme {
        SignatureScheme::Ed25519 => rustls::SignatureScheme::ED25519,
        SignatureScheme::EcdsaP256Sha256 => rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
    };
    unsigned.signature = identity.sign(scheme, &unsigned.message())?;
    Ok(unsigned)
}

/// The Ed25519 public key of a certificate (X.509 DER): how a shard knows the
/// key a member node signs envelopes with.
///
/// # Errors
/// Not a certificate, or its key is not Ed25519.
pub fn ed25519_key_of(cert_der: &[u8]) -> Result<[u8; 32], String> {
    match cert_key(cert_der)? {
        CertKey::Ed25519(k) => Ok(k.to_bytes()),
        _ => Err("the certificate's key is not Ed25519".into()),
    }
}

/// A certificate's public key, parsed once: what checking a signature with
/// it needs.
#[derive(Debug, Clone)]
enum CertKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An uncompressed SEC1 point.
    P256(Vec<u8>),
    /// Of a kind that signs no attestation (named in the refusal).
    Other,
}

fn cert_key(cert_der: &[u8]) -> Result<CertKey, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("the certificate is not X.509 DER: {e}"))?;
    let spki = cert.public_key();
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let bytes = spki.subject_public_key.data.as_ref();
    if key_oid == ED25519_OID {
        let b = <[u8; 32]>::try_from(bytes)
            .map_err(|_| "the certificate's Ed25519 key is not 32 bytes".to_string())?;
        let k = ed25519_dalek::VerifyingKey::from_bytes(&b)
            .map_err(|_| "the certificate's Ed25519 key is not a valid point".to_string())?;
        return Ok(CertKey::Ed25519(k));
    }
    let p256 = key_oid == EC_PUBLIC_KEY_OID
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|o| o.to_id_string() == P256_OID);
    Ok(if p256 {
        CertKey::P256(bytes.to_vec())
    } else {
        CertKey::Other
    })
}

fn verify_with(a: &Attestation, key: &CertKey) -> Result<(), String> {
    let bad =
        || "the attestation's signature does not verify with its certificate's key".to_string();
    match (a.scheme, key) {
        // strict: a non-canonical signature or a weak key is refused, which
        // no honest signer produces
        (SignatureScheme::Ed25519, CertKey::Ed25519(k)) => {
            let sig = ed25519_dalek::Signature::from_slice(&a.signature).map_err(|_| bad())?;
            k.verify_strict(&a.message(), &sig).map_err(|_| bad())
        }
        (SignatureScheme::EcdsaP256Sha256, CertKey::P256(k)) => {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, k)
                .verify(&a.message(), &a.signature)
                .map_err(|_| bad())
        }
        (s, _) => Err(format!(
            "the attestation claims {s:?}, but its certificate's key is of another kind"
        )),
    }
}

/// Checks that the key of the certificate the attestation carries made its
/// signature, with the scheme it names, and that the key is of that kind.
///
/// # Errors
/// Why not, in words.
pub fn verify_signature(a: &Attestation) -> Result<(), String> {
    verify_with(a, &cert_key(&a.certificate)?)
}

/// Attestations whose signature verified, so the same attestation checked
/// again on the same node (by the coordinator when the request arrives, then
/// by the shard inside the envelope) costs a hash, not a second signature
/// check. Keyed by everything the check reads (the signed message, scheme,
/// signature and certificate); only successes are kept.
#[derive(Debug, Default)]
pub struct SignatureCache {
    inner: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    /// Certificates' keys by the blake3 of the certificate: parsing X.509
    /// on every request cost about as much as a third of the signature check.
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], CertKey>>,
}

/// Signatures a [`SignatureCache`] keeps before it starts afresh.
pub const SIGNATURE_CACHE_MAX: usize = 4096;

impl SignatureCache {
    /// [`verify_signature`], remembered.
    ///
    /// # Errors
    /// As [`verify_signature`].
    pub fn verify(&self, a: &Attestation) -> Result<(), String> {
        let mut h = blake3::Hasher::new();
        for part in [
            a.message().as_slice(),
            format!("{:?}", a.scheme).as_bytes(),
            &a.signature,
            &a.certificate,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let key = *h.finalize().as_bytes();
        let seen = |k: &[u8; 32]| {
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(k)
        };
        if seen(&key) {
            return Ok(());
        }
        let cert = *blake3::hash(&a.certificate).as_bytes();
        let known = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&cert)
            .cloned();
        let ck = match known {
            Some(k) => k,
            None => {
                let k = cert_key(&a.certificate)?;
                let mut g = self
                    .keys
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if g.len() >= SIGNATURE_CACHE_MAX {
                    g.clear();
                }
                g.insert(cert, k.clone());
                k
            }
        };
        verify_with(a, &ck)?;
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.len() >= SIGNATURE_CACHE_MAX {
            g.clear();
        }
        g.insert(key);
        Ok(())
    }
}

/// Ed25519 signatures this process made with an identity it holds, so that
/// checking one again (a node's shard verifying the envelope its own
/// coordinator just signed) costs a hash, not a verification. Only signatures
/// made through [`OwnSignatures::sign`] are remembered, keyed by the public
/// key, the message and the signature: a strict verification of a signature
/// its key's owner made always holds, so the answer is the one
/// `verify_strict` would give. Anything else is verified in full.
#[derive(Debug, Default)]
pub struct OwnSignatures {
    made: std::sync::Mutex<OwnRing>,
}

#[derive(Debug, Default)]
struct OwnRing {
    set: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

/// Signatures an [`OwnSignatures`] remembers; the oldest are forgotten first
/// (a forgotten one is verified in full).
pub const OWN_SIGNATURES_MAX: usize = 1024;

fn own_key(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &ed25519_dalek::Signature,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"scratchbird own ed25519 signature v1");
    h.update(key.as_bytes());
    h.update(&signature.to_bytes());
    h.update(&(message.len() as u64).to_le_bytes());
    h.update(message);
    *h.finalize().as_bytes()
}

impl OwnSignatures {
    /// Signs `message` with `identity`'s Ed25519 key and remembers it (an
    /// Ed25519 key only the TLS signer holds signs without being remembered).
    ///
    /// # Errors
    /// The identity's key cannot sign Ed25519.
    pub fn sign(&self, identity: &Identity, message: &[u8]) -> Result<Vec<u8>, String> {
        let sig = identity.sign_ed25519(message).map_err(|e| e.0)?;
        let Some(key) = identity.ed25519_public() else {
            return Ok(sig);
        };
        let Ok(s) = ed25519_dalek::Signature::from_slice(&sig) else {
            return Err("the Ed25519 signer gave a signature of another size".into());
        };
        let k = own_key(&key, message, &s);
        let mut g = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.set.insert(k) {
            g.order.push_back(k);
            if g.order.len() > OWN_SIGNATURES_MAX
                && let Some(old) = g.order.pop_front()
            {
                g.set.remove(&old);
            }
        }
        Ok(sig)
    }

    /// Whether `key` made `signature` over `message` (strict Ed25519): from
    /// memory when this process made it, else verified.
    #[must_use]
    pub fn verify(
        &self,
        key: &ed25519_dalek::VerifyingKey,
        message: &[u8],
        signature: &ed25519_dalek::Signature,
    ) -> bool {
        let k = own_key(key, message, signature);
        let made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set
            .contains(&k);
        made || key.verify_strict(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{self, KeyAlg, Validity};
    use crate::uri::SbUri;
    use scratchbird_types::attest::Consistency;

    fn identity(alg: KeyAlg) -> Identity {
        let cluster = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::new_v4());
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(1)).unwrap();
        let user = identity::issue(
            &ca,
            &SbUri::user(cluster, "alice").unwrap(),
            alg,
            Validity::days_from_now(1),
        )
        .unwrap();
        Identity::from_pem(&user.cert_pem, &user.key_pem).unwrap()
    }

    fn signed(id: &Identity) -> Attestation {
        let a = Attestation {
            version: scratchbird_types::attest::ATTESTATION_VERSION,
            user: "sb://cluster/c/user/alice".into(),
            coordinator: scratchbird_types::NodeName::LOCAL,
            session: [3; 16],
            sequence: 1,
            consistency: Consistency::Snapshot,
            request: request_digest("SELECT 1", None, 0, &[]),
            issued_us: 10,
            expires_us: 20,
            scheme: scheme_of(id).unwrap(),
            signature: Vec::new(),
            certificate: id.cert_der.clone(),
        };
        sign(id, a).unwrap()
    }

    #[test]
    fn the_request_digest_separates_its_parts() {
        let d = request_digest("SELECT 1", None, 0, &[]);
        assert_ne!(d, request_digest("SELECT 1", Some(""), 0, &[]));
        assert_ne!(d, request_digest("SELECT 1", None, 1, &[]));
        assert_ne!(d, request_digest("SELECT 2", None, 0, &[]));
        assert_ne!(
            request_digest("ab", Some("c"), 0, &[]),
            request_digest("a", Some("bc"), 0, &[])
        );
        let one = |p: &[Option<&str>]| {
            let p: Vec<Option<String>> = p.iter().map(|v| v.map(str::to_owned)).collect();
            request_digest("SELECT $1", None, 0, &p)
        };
        // a NULL, an empty text, another value and another split all differ
        let all = [
            one(&[]),
            one(&[None]),
            one(&[Some("")]),
            one(&[Some("1")]),
            one(&[Some("1"), Some("2")]),
            one(&[Some("12")]),
            one(&[Some("1"), None]),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn an_ed25519_identity_signs_outside_tls_with_its_certificate_s_key() {
        let id = identity(KeyAlg::Ed25519);
        let key = id
            .ed25519_public()
            .expect("an Ed25519 identity keeps its key");
        assert_eq!(key.to_bytes(), ed25519_key_of(&id.cert_der).unwrap());
        // Ed25519 is deterministic: the TLS provider's signer gives the same bytes
        let msg = b"an envelope";
        let tls = id
            .key
            .key
            .choose_scheme(&[rustls::SignatureScheme::ED25519])
            .unwrap()
            .sign(msg)
            .unwrap();
        assert_eq!(id.sign_ed25519(msg).unwrap(), tls);
        // an ECDSA identity has no Ed25519 key and signs through the provider
        let ec = identity(KeyAlg::EcdsaP256);
        assert!(ec.ed25519_public().is_none());
        assert!(ec.sign_ed25519(msg).is_err());
        verify_signature(&signed(&ec)).unwrap();
    }

    #[test]
    fn the_signature_cache_remembers_only_what_verified() {
        let cache = SignatureCache::default();
        for alg in [KeyAlg::Ed25519, KeyAlg::EcdsaP256] {
            let id = identity(alg);
            let a = signed(&id);
            cache.verify(&a).unwrap();
            cache.verify(&a).unwrap();
            // whatever differs from what verified is checked afresh, and refused
            let mut b = a.clone();
            b.sequence += 1;
            assert!(cache.verify(&b).is_err(), "{alg:?}: a changed field");
            let mut c = a.clone();
            if let Some(x) = c.signature.last_mut() {
                *x ^= 1;
            }
            assert!(cache.verify(&c).is_err(), "{alg:?}: a changed signature");
            let mut d = a;
            d.certificate = identity(alg).cert_der;
            assert!(cache.verify(&d).is_err(), "{alg:?}: another certificate");
        }
    }

    #[test]
    fn both_key_kinds_sign_and_any_change_is_refused() {
        for alg in [KeyAlg::Ed25519, KeyAlg::EcdsaP256] {
            let id = identity(alg);
            let a = signed(&id);
            verify_signature(&a).unwrap();
            let mut b = a.clone();
            b.sequence += 1;
            assert!(verify_signature(&b).is_err(), "{alg:?}: a changed field");
            let mut c = a.clone();
            if let Some(x) = c.signature.last_mut() {
                *x ^= 1;
            }
            assert!(
                verify_signature(&c).is_err(),
                "{alg:?}: a changed signature"
            );
            // the same bytes presented under another certificate
            let mut d = a.clone();
            d.certificate = identity(alg).cert_der;
            assert!(
                verify_signature(&d).is_err(),
                "{alg:?}: another certificate"
            );
            // the scheme is part of the message and must fit the key
            let mut e = a;
            e.scheme = match e.scheme {
                SignatureScheme::Ed25519 => SignatureScheme::EcdsaP256Sha256,
                SignatureScheme::EcdsaP256Sha256 => SignatureScheme::Ed25519,
            };
            assert!(verify_signature(&e).is_err(), "{alg:?}: another scheme");
        }
        let mut junk = signed(&identity(KeyAlg::Ed25519));
        junk.certificate = vec![0x30, 0x03, 1, 2, 3];
        assert!(verify_signature(&junk).is_err());
    }

    #[test]
    fn own_signatures_answer_as_a_strict_verification_would() {
        let own = OwnSignatures::default();
        let id = identity(KeyAlg::Ed25519);
        let key = id.ed25519_public().unwrap();
        let msg = b"an envelope";
        let sig = ed25519_dalek::Signature::from_slice(&own.sign(&id, msg).unwrap()).unwrap();
        // remembered, and true of the signature itself
        assert!(key.verify_strict(msg, &sig).is_ok());
        assert!(own.verify(&key, msg, &sig));
        // another message, signature or key is not what was made: each is
        // verified in full and refused
        assert!(!own.verify(&key, b"another envelope", &sig));
        let mut bytes = sig.to_bytes();
        bytes[0] ^= 1;
        assert!(!own.verify(&key, msg, &ed25519_dalek::Signature::from_bytes(&bytes)));
        let other = identity(KeyAlg::Ed25519).ed25519_public().unwrap();
        assert!(!own.verify(&other, msg, &sig));
        // a signature made elsewhere verifies in full without being remembered
        let id2 = identity(KeyAlg::Ed25519);
        let sig2 = ed25519_dalek::Signature::from_slice(&id2.sign_ed25519(msg).unwrap()).unwrap();
        assert!(own.verify(&id2.ed25519_public().unwrap(), msg, &sig2));
        assert_eq!(own.made.lock().unwrap().set.len(), 1);
        // a P-256 identity cannot sign envelopes
        assert!(own.sign(&identity(KeyAlg::EcdsaP256), msg).is_err());
        // the oldest are forgotten first, and a forgotten one still verifies
        for i in 0..OWN_SIGNATURES_MAX {
            own.sign(&id, &i.to_le_bytes()).unwrap();
        }
        let g = own.made.lock().unwrap();
        assert_eq!(g.set.len(), OWN_SIGNATURES_MAX);
        assert!(!g.set.contains(&own_key(&key, msg, &sig)));
        drop(g);
        assert!(own.verify(&key, msg, &sig));
    }
}
