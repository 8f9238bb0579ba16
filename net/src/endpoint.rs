//! QUIC endpoints (quinn) over our TLS configuration: long-lived connections, one
//! bidirectional stream per request, a bounded number of concurrent streams, idle
//! timeouts and keep-alive.

use crate::tls::{IdentityCell, PeerVerifier, TlsError, client_config, server_config};
use crate::verify::{Refusal, Trust, Verified};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Limits of a connection.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// Requests (streams) a peer may have open at once on a connection.
    pub streams_max: u32,
    /// A connection with no traffic for this long is closed: how long a peer
    /// that vanished without closing (killed, unplugged) goes unnoticed, and so
    /// how long its queries run on. The shorter of the two ends' values applies.
    pub idle_timeout: Duration,
    /// Keep-alive interval (keeps a quiet but live connection open); well under
    /// the idle timeout.
    pub keep_alive: Duration,
    /// Largest frame.
    pub frame_max: usize,
    /// Bytes in flight per stream (flow-control window).
    pub stream_window: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            streams_max: 32,
            idle_timeout: Duration::from_secs(15),
            keep_alive: Duration::from_secs(4),
            frame_max: crate::rpc::FRAME_MAX,
            stream_window: 8 << 20,
        }
    }
}

fn transport(limits: &TransportLimits) -> Result<quinn::TransportConfig, TlsError> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(limits.streams_max.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        limits
            .idle_timeout
            .try_into()
            .map_err(|e| TlsError(format!("idle timeout: {e}")))?,
    ));
    t.keep_alive_interval(Some(limits.keep_alive));
    t.stream_receive_window(limits.stream_window.into());
    t.receive_window((limits.stream_window.saturating_mul(4)).into());
    t.send_window(u64::from(limits.stream_window) * 4);
    Ok(t)
}

/// A server endpoint on `addr` presenting `identity` and requiring client
/// certificates `verifier` accepts.
///
/// # Errors
/// The address cannot be bound, or the configuration is refused.
pub fn server(
    addr: SocketAddr,
    identity: Arc<IdentityCell>,
    verifier: Arc<PeerVerifier>,
    limits: &TransportLimits,
) -> Result<quinn::Endpoint, TlsError> {
    let tls = server_config(identity, verifier)?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(limits)?));
    cfg.migration(false);
    quinn::Endpoint::server(cfg, addr).map_err(|e| TlsError(format!("binding {addr}: {e}")))
}

/// A client endpoint bound to an ephemeral port of the family of `peer`.
///
/// # Errors
/// The socket cannot be bound, or the configuration is refused.
pub fn client(
    peer: SocketAddr,
    identity: Option<Arc<IdentityCell>>,
    verifier: Arc<PeerVerifier>,
    limits: &TransportLimits,
) -> Result<quinn::Endpoint, TlsError> {
    let tls = client_config(identity, verifier)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport(limits)?));
    let bind: SocketAddr = if peer.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut ep =
        quinn::Endpoint::client(bind).map_err(|e| TlsError(format!("binding {bind}: {e}")))?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// The verified identity of a connection's peer (its certificate checked again
/// against `trust` at `now_secs`, Unix seconds: the handshake already did, this
/// recovers the name).
///
/// # Errors
/// No certificate, or one `trust` refuses at that time.
pub fn peer_of(
    conn: &quinn::Connection,
    trust: &Trust,
    now_secs: i64,
) -> Result<Verified, Refusal> {
    let first = peer_certificate(conn).ok_or(Refusal::NoCertificate)?;
    trust.verify(&first, now_secs)
}

/// The session id both ends of `conn` derive from its TLS secrets (an RFC 5705
/// exporter): what attestations on this connection must name, so that an
/// attestation made for one connection is refused on any other.
///
/// # Errors
/// The TLS session cannot export keying material (not yet established).
pub fn session_id(conn: &quinn::Connection) -> Result<[u8; 16], String> {
    let mut out = [0u8; 16];
    conn.export_keying_material(&mut out, b"EXPORTER-scratchbird-session-v1", b"")
        .map_err(|_| "the connection's TLS session exports no keying material".to_owned())?;
    Ok(out)
}

/// The certificate (DER) the peer presented in the handshake, if any.
#[must_use]
pub fn peer_certificate(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let certs = conn.peer_identity().and_then(|a| {
        a.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    })?;
    certs.first().map(|c| c.as_ref().to_vec())
}

/// rustls wraps our refusal as `Other(OtherError(<refusal>))`: unwrap it.
fn tidy(reason: &str) -> String {
    const WRAP: &str = "Other(OtherError(";
    match reason.find(WRAP) {
        Some(i) if reason.ends_with("))") => format!(
            "{}{}",
            &reason[..i],
            &reason[i + WRAP.len()..reason.len() - 2]
        ),
        _ => reason.to_owned(),
    }
}

/// A connection error as a person reads it: the reason the peer gave when it
/// closed the connection (a refused certificate says which rule failed).
#[must_use]
pub fn describe(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let reason = tidy(&String::from_utf8_lossy(&c.reason));
            if reason.is_empty() {
                format!("the peer closed the connection ({})", c.error_code)
            } else {
                format!("the peer refused the connection: {reason}")
            }
        }
        quinn::ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason);
            format!("the peer closed the connection: {reason}")
        }
        quinn::ConnectionError::TransportError(t) => tidy(&t.to_string()),
        quinn::ConnectionError::TimedOut => {
            "no answer from the peer (timed out): is it running, and is the address right?"
                .to_owned()
        }
        other => other.to_string(),
    }
}
