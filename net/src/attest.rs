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
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 DER certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return Err("the certificate's key is not Ed25519".into());
    }
    <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
        .map_err(|_| "the certificate's Ed25519 key is not 32 bytes".into())
}

/// Checks that the key of the certificate the attestation carries made its
/// signature, with the scheme it names, and that the key is of that kind.
///
/// # Errors
/// Why not, in words.
pub fn verify_signature(a: &Attestation) -> Result<(), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(&a.certificate)
        .map_err(|e| format!("the attestation's certificate is not X.509 DER: {e}"))?;
    let spki = cert.public_key();
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let alg: &dyn ring::signature::VerificationAlgorithm = match a.scheme {
        SignatureScheme::Ed25519 if key_oid == ED25519_OID => &ring::signature::ED25519,
        SignatureScheme::EcdsaP256Sha256
            if key_oid == EC_PUBLIC_KEY_OID
                && spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .is_some_and(|o| o.to_id_string() == P256_OID) =>
        {
            &ring::signature::ECDSA_P256_SHA256_ASN1
        }
        s => {
            return Err(format!(
                "the attestation claims {s:?}, but its certificate's key is of another kind"
            ));
        }
    };
    ring::signature::UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(&a.message(), &a.signature)
        .map_err(|_| {
            "the attestation's signature does not verify with its certificate's key".into()
        })
}

/// Attestations whose signature verified, so the same attestation checked
/// again on the same node (by the coordinator when the request arrives, then
/// by the shard inside the envelope) costs a hash, not a second signature
/// check. Keyed by everything the check reads (the signed message, scheme,
/// signature and certificate); only successes are kept.
#[derive(Debug, Default)]
pub struct SignatureCache {
    inner: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
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
        verify_signature(a)?;
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
            request: request_digest("SELECT 1", None, 0),
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
        let d = request_digest("SELECT 1", None, 0);
        assert_ne!(d, request_digest("SELECT 1", Some(""), 0));
        assert_ne!(d, request_digest("SELECT 1", None, 1));
        assert_ne!(d, request_digest("SELECT 2", None, 0));
        assert_ne!(
            request_digest("ab", Some("c"), 0),
            request_digest("a", Some("bc"), 0)
        );
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
}
