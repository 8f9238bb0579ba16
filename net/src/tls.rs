//! rustls configured our way: TLS 1.3 only, ALPN `sb/1`, ring, and our verifier on
//! both sides (client certificates mandatory). The identity a side presents and the
//! roots it trusts sit in cells that reload without a restart.

use crate::verify::{Expect, Membership, Refusal, Trust, Verified, admit};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use scratchbird_types::NodeId;
use scratchbird_types::env::Env;
use std::sync::{Arc, RwLock};

/// The one application protocol.
pub const ALPN: &[u8] = b"sb/1";

/// The crypto provider every endpoint uses (ring).
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What went wrong building a TLS configuration or loading an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// A value replaced whole on reload; readers get the current `Arc`.
#[derive(Debug)]
pub struct Cell<T>(RwLock<Arc<T>>);

impl<T> Cell<T> {
    /// A cell holding `v`.
    pub fn new(v: T) -> Self {
        Self(RwLock::new(Arc::new(v)))
    }
    /// The current value.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    /// Replaces the value.
    pub fn set(&self, v: T) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(v),
            Err(p) => *p.into_inner() = Arc::new(v),
        }
    }
}

/// A certificate and key a side presents, loaded from PEM.
pub struct Identity {
    pub(crate) key: Arc<CertifiedKey>,
    /// The same key for signing outside TLS (attestations, envelopes) when it
    /// is Ed25519: ed25519-dalek signs in about half the time of the TLS
    /// provider's signer on this machine class (`benches/README.md`).
    ed25519: Option<ed25519_dalek::SigningKey>,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("key", &self.key)
            .field("cert_der", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads a certificate and its private key from PEM text.
    ///
    /// # Errors
    /// Not PEM, no certificate or key, or a key of an unsupported kind.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let certs = crate::identity::certs_from_pem(cert_pem).map_err(|e| TlsError(e.0))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError(format!("not a PEM private key: {e}")))?;
        let ed25519 = match &key {
            PrivateKeyDer::Pkcs8(der) => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                ed25519_dalek::SigningKey::from_pkcs8_der(der.secret_pkcs8_der()).ok()
            }
            _ => None,
        };
        let signer = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError(format!("the private key cannot be used: {e}")))?;
        let cert_der = certs.first().cloned().unwrap_or_default();
        let chain = certs.into_iter().map(CertificateDer::from).collect();
        let key = Arc::new(CertifiedKey::new(chain, signer));
        key.keys_match()
            .map_err(|e| TlsError(format!("the key does not belong to the certificate: {e}")))?;
        // the second form of the key must be the same key: its public half is
        // the certificate's (otherwise signatures outside TLS would not verify)
        let ed25519 = ed25519.filter(|k| {
            crate::attest::ed25519_key_of(&cert_der)
                .is_ok_and(|pk| pk == k.verifying_key().to_bytes())
        });
        Ok(Self {
            key,
            ed25519,
            cert_der,
        })
    }

    /// Loads a certificate file and a key file.
    ///
    /// # Errors
    /// Unreadable files and what [`Identity::from_pem`] reports.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map_err(|e| TlsError(format!("reading {}: {e}", p.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?)
    }

    /// Its certificate's Ed25519 public key, when the key is Ed25519 (taken
    /// from the private key when it was loaded, and checked then to be the
    /// certificate's).
    #[must_use]
    pub fn ed25519_public(&self) -> Option<ed25519_dalek::VerifyingKey> {
        self.ed25519
            .as_ref()
            .map(ed25519_dalek::SigningKey::verifying_key)
    }

    /// The algorithm of its key.
    #[must_use]
    pub fn key_algorithm(&self) -> rustls::SignatureAlgorithm {
        self.key.key.algorithm()
    }

    /// Signs `message` with its key as Ed25519 (a node signing a subplan
    /// envelope).
    ///
    /// # Errors
    /// The key is not Ed25519, or signing failed.
    pub fn sign_ed25519(&self, message: &[u8]) -> Result<Vec<u8>, TlsError> {
        self.sign(SignatureScheme::ED25519, message)
    }

    /// Signs `message` with its key under `scheme` (an attestation, an envelope).
    ///
    /// # Errors
    /// The key cannot sign with `scheme`, or signing failed.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, TlsError> {
        if scheme == SignatureScheme::ED25519
            && let Some(k) = &self.ed25519
        {
            use ed25519_dalek::Signer;
            return Ok(k.sign(message).to_bytes().to_vec());
        }
        let signer = self.key.key.choose_scheme(&[scheme]).ok_or_else(|| {
            TlsError(format!(
                "this certificate's {:?} key cannot sign with {scheme:?}",
                self.key_algorithm()
            ))
        })?;
        signer
            .sign(message)
            .map_err(|e| TlsError(format!("signing: {e}")))
    }
}

/// The identity a side presents, reloadable.
#[derive(Debug)]
pub struct IdentityCell(pub Cell<Identity>);

impl rustls::server::ResolvesServerCert for IdentityCell {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }
}

impl rustls::client::ResolvesClientCert for IdentityCell {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Our verifier, as rustls calls it on either side: rules 1 to 7 of
/// [`crate::verify`]. Every refusal is logged and goes to the peer in the
/// connection close.
#[derive(Debug)]
pub struct PeerVerifier {
    trust: Arc<Cell<Trust>>,
    members: Option<Arc<dyn Membership>>,
    expect: Expect,
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
    side: &'static str,
    pin: Option<NodeId>,
    /// The clock certificates are checked at: rustls asks it (through the
    /// configurations built with this verifier) and hands its time to us.
    env: Arc<dyn Env>,
    /// Told of every certificate refused: the name it carries (or what it
    /// is, when it carries none readable) and the rule's code.
    on_refusal: Option<Reporting>,
}

/// What a verifier tells of each refusal ([`PeerVerifier::reporting`]).
pub type RefusalSink = Arc<dyn Fn(&str, &'static str) + Send + Sync>;

struct Reporting(RefusalSink);

impl std::fmt::Debug for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporting")
    }
}

impl PeerVerifier {
    /// A verifier accepting peers of `expect` under `trust`, checked against
    /// `members` when this side has a membership, at the time `env` tells.
    #[must_use]
    pub fn new(
        trust: Arc<Cell<Trust>>,
        members: Option<Arc<dyn Membership>>,
        expect: Expect,
        side: &'static str,
        env: Arc<dyn Env>,
    ) -> Self {
        Self {
            trust,
            members,
            expect,
            schemes: provider().signature_verification_algorithms,
            side,
            pin: None,
            env,
            on_refusal: None,
        }
    }

    /// Tells `sink` of every certificate this verifier refuses (a node counts
    /// refusals per peer).
    #[must_use]
    pub fn reporting(mut self, sink: RefusalSink) -> Self {
        self.on_refusal = Some(Reporting(sink));
        self
    }

    /// The clock this verifier checks certificates at.
    #[must_use]
    pub fn env(&self) -> &Arc<dyn Env> {
        &self.env
    }

    /// Accepts only node `node` (a client that knows which node it means to reach).
    #[must_use]
    pub fn pinned(mut self, node: NodeId) -> Self {
        self.pin = Some(node);
        self
    }

    /// Rules 1 to 7 for `der` now.
    ///
    /// # Errors
    /// The first rule that fails.
    pub fn check(&self, der: &[u8], now: UnixTime) -> Result<Verified, Refusal> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let v = self.trust.get().verify(der, now)?;
        admit(&v, self.expect, self.members.as_deref())?;
        if let Some(pin) = self.pin
            && v.uri.node_id() != Some(pin)
        {
            return Err(Refusal::NotTheExpectedNode {
                expected: pin,
                found: v.uri.to_string(),
            });
        }
        Ok(v)
    }

    fn refuse(&self, der: &[u8], r: Refusal) -> rustls::Error {
        tracing::warn!(side = self.side, code = r.code(), reason = %r, "refused a peer certificate");
        if let Some(Reporting(sink)) = &self.on_refusal {
            // a refused certificate's name is only what it claims: counted
            // apart from verified names, and cut short
            let name = crate::identity::inspect(der)
                .ok()
                .and_then(|i| i.uris.into_iter().next())
                .map_or_else(
                    || "(unverified, no readable sb:// name)".to_owned(),
                    |u| format!("(unverified) {}", u.chars().take(160).collect::<String>()),
                );
            sink(&name, r.code());
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(Coded(r)),
        )))
    }
}

/// A refusal as it travels in a TLS error: its code first, so the peer can tell
/// which rule failed from the connection close alone. (rustls shows it with
/// `Debug`, so both forms are the message.)
struct Coded(Refusal);

impl std::fmt::Debug for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.0.code(), self.0)
    }
}

impl std::error::Error for Coded {}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.check(end_entity, now) {
            Ok(v) => {
                tracing::debug!(side = self.side, peer = %v.uri, "accepted a client certificate");
                Ok(ClientCertVerified::assertion())
            }
            Err(r) => Err(self.refuse(end_entity, r)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, now) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(r) => Err(self.refuse(end_entity, r)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}

/// A server configuration: TLS 1.3, ALPN `sb/1`, presenting `identity`, requiring
/// a client certificate `verifier` accepts.
///
/// # Errors
/// rustls refuses the combination.
pub fn server_config(
    identity: Arc<IdentityCell>,
    verifier: Arc<PeerVerifier>,
) -> Result<rustls::ServerConfig, TlsError> {
    let time = Arc::new(EnvTime(verifier.env.clone()));
    let mut cfg = rustls::ServerConfig::builder_with_details(provider(), time)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    // no session resumption: a resumed handshake would skip the verifier, so a
    // user or node disabled since its first handshake could come back
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.ticketer = Arc::new(NoTickets);
    Ok(cfg)
}

/// A client configuration: TLS 1.3, ALPN `sb/1`, presenting `identity` (always, in
/// ScratchBird; `None` only to test that servers refuse a client without one),
/// accepting a server `verifier` accepts.
///
/// # Errors
/// rustls refuses the combination.
pub fn client_config(
    identity: Option<Arc<IdentityCell>>,
    verifier: Arc<PeerVerifier>,
) -> Result<rustls::ClientConfig, TlsError> {
    let time = Arc::new(EnvTime(verifier.env.clone()));
    let b = rustls::ClientConfig::builder_with_details(provider(), time)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match identity {
        Some(id) => b.with_client_cert_resolver(id),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_early_data = false;
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}

/// rustls's clock is the verifier's [`Env`]: the time it passes to the
/// verifier (and uses for its own checks) is the node's, real or simulated.
#[derive(Debug)]
struct EnvTime(Arc<dyn Env>);

impl rustls::time_provider::TimeProvider for EnvTime {
    fn current_time(&self) -> Option<UnixTime> {
        u64::try_from(self.0.now_secs())
            .ok()
            .map(|s| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s)))
    }
}

/// A ticketer that issues no tickets (no stateless resumption either).
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{self, KeyAlg, Validity};
    use crate::uri::SbUri;

    #[test]
    fn no_session_resumption_on_either_side() {
        // a resumed handshake would skip the verifier (membership included)
        let cluster = scratchbird_types::ClusterId::from_uuid(uuid::Uuid::new_v4());
        let ca = identity::new_ca(cluster, KeyAlg::Ed25519, Validity::days_from_now(1)).unwrap();
        let node = identity::issue(
            &ca,
            &SbUri::node(cluster, NodeId::from_uuid(uuid::Uuid::new_v4())),
            KeyAlg::Ed25519,
            Validity::days_from_now(1),
        )
        .unwrap();
        let id = Arc::new(IdentityCell(Cell::new(
            Identity::from_pem(&node.cert_pem, &node.key_pem).unwrap(),
        )));
        let trust = Arc::new(Cell::new(Trust::from_pem(cluster, &ca.cert_pem).unwrap()));
        let v = Arc::new(PeerVerifier::new(
            trust,
            None,
            Expect::User,
            "test",
            Arc::new(scratchbird_types::SystemEnv::default()),
        ));
        let server = server_config(id.clone(), v.clone()).unwrap();
        assert_eq!(server.send_tls13_tickets, 0);
        assert!(!server.session_storage.can_cache());
        assert!(!server.ticketer.enabled());
        assert_eq!(server.max_early_data_size, 0);
        let client = client_config(Some(id), v).unwrap();
        assert!(!client.enable_early_data);
        assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
    }
}
