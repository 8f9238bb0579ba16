//! A client connection's attestations: each request's is checked against the
//! connection (its user, certificate and session), the request it signs and
//! this node, then its sequence number is admitted once, within a window.

use super::{Shared, lock};
use scratchbird_host::envelope::Attestation;
use scratchbird_net::SbUri;
use scratchbird_net::rpc;
use std::sync::Mutex;

/// Sequence numbers a connection's attestations may lag behind the highest seen
/// (requests on one connection run on concurrent streams and may arrive out of
/// order); older ones are refused as possible replays.
const SEQUENCE_WINDOW: u64 = 4096;

/// One connection's attestation state.
pub(super) struct Attested {
    /// The session id both ends derive from the connection's TLS secrets.
    session: [u8; 16],
    /// The highest sequence number seen.
    high: u64,
    /// Those seen, down to [`SEQUENCE_WINDOW`] below the highest.
    seen: std::collections::BTreeSet<u64>,
    /// Attestations refused so far.
    pub(super) refused: u32,
}

impl Attested {
    pub(super) fn new(session: [u8; 16]) -> Self {
        Self {
            session,
            high: 0,
            seen: std::collections::BTreeSet::new(),
            refused: 0,
        }
    }
}

/// Checks what a request's attestation claims, in this order: present;
/// version, size and validity window; it names the connection's user, carries
/// the certificate the connection was made with, and names this node; it signs
/// this very request (SQL, context, deadline, parameters). Returns the attestation; its
/// signature and sequence number are [`check_signed`]'s.
pub(super) fn check_claimed<'q>(
    shared: &Shared,
    peer: &SbUri,
    cert: &[u8],
    q: &'q rpc::Query,
) -> Result<&'q Attestation, String> {
    let a = q.attestation.as_deref().ok_or(
        "the request carries no attestation: this node runs only requests their user signs (use sb or scratchbird_net::Client of this version)",
    )?;
    a.check_window(shared.env.now_micros())?;
    if a.user != peer.to_string() {
        return Err(format!(
            "the attestation names {}, but the connection is {peer}",
            a.user
        ));
    }
    if a.certificate != cert {
        return Err(
            "the attestation carries another certificate than the one this connection was made with".into(),
        );
    }
    if Some(a.coordinator) != shared.me.node_name() {
        return Err(format!(
            "the attestation is for coordinator {}, not this node {}",
            a.coordinator, shared.me
        ));
    }
    if a.request
        != scratchbird_net::attest::request_digest(
            &q.sql,
            q.context.as_deref(),
            q.deadline_ms,
            &q.params,
        )
    {
        return Err(
            "the attestation signs another request (SQL, context, deadline or parameters) than this one".into(),
        );
    }
    Ok(a)
}

/// Checks that the key of the attestation's certificate made its signature,
/// then admits its sequence number: the session is this connection's, and the
/// number is new and within the window. Only an attestation whose signature
/// verified spends a sequence number.
pub(super) fn check_signed(
    shared: &Shared,
    state: &Mutex<Attested>,
    a: &Attestation,
) -> Result<(), String> {
    shared.authority.users.checked.signatures.verify(a)?;
    lock(state).admit(&a.session, a.sequence)
}

impl Attested {
    /// Admits attestation `sequence` of `session` once: it is this
    /// connection's session, and the number is new and within the window.
    fn admit(&mut self, session: &[u8; 16], sequence: u64) -> Result<(), String> {
        if *session != self.session {
            return Err("the attestation was made for another connection's session".into());
        }
        if sequence == 0
            || sequence.saturating_add(SEQUENCE_WINDOW) <= self.high
            || !self.seen.insert(sequence)
        {
            return Err(format!(
                "attestation {sequence} of this session was already used or is too old: a replay is refused"
            ));
        }
        self.high = self.high.max(sequence);
        // forget those that fell below the window: a split, not a walk over all
        // that are kept (up to the window's size, on every request)
        let floor = self.high.saturating_sub(SEQUENCE_WINDOW - 1);
        if self.seen.first().is_some_and(|&x| x < floor) {
            self.seen = self.seen.split_off(&floor);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Attested, SEQUENCE_WINDOW};

    #[test]
    fn an_attestation_sequence_is_admitted_once_and_within_the_window() {
        let mut a = Attested::new([7; 16]);
        assert!(a.admit(&[8; 16], 1).is_err(), "another session");
        assert!(a.admit(&[7; 16], 0).is_err(), "zero is never used");
        // out of order within the window is fine, each number once
        for s in [3, 1, 2] {
            a.admit(&[7; 16], s).unwrap();
        }
        assert!(a.admit(&[7; 16], 2).is_err(), "a replay");
        let far = 3 + SEQUENCE_WINDOW * 3;
        a.admit(&[7; 16], far).unwrap();
        // everything at or below the window's floor is refused, and forgotten
        assert!(a.admit(&[7; 16], far - SEQUENCE_WINDOW).is_err());
        a.admit(&[7; 16], far - SEQUENCE_WINDOW + 1).unwrap();
        assert_eq!(a.seen.len(), 2);
        assert_eq!(a.seen.first(), Some(&(far - SEQUENCE_WINDOW + 1)));
        // a long run keeps at most the window's size
        for s in far + 1..far + 2 * SEQUENCE_WINDOW {
            a.admit(&[7; 16], s).unwrap();
        }
        assert!(a.seen.len() <= usize::try_from(SEQUENCE_WINDOW).unwrap());
        assert!(a.admit(&[7; 16], far + 5).is_err());
    }
}
