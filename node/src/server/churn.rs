//! Connection churn per peer (spec 10): connections made, refused (by the
//! rule's code) and ended, counted for every certificate name that reached
//! this node, on both endpoints. `sb cluster status --peers` shows it.

use scratchbird_control::wire::Churn as ChurnLine;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most peers counted by name; beyond, counts go to one line for the rest
/// (so certificates made up by the thousand cannot grow the table).
pub(super) const PEERS_MAX: usize = 4_096;

/// Longest name kept, in bytes (a certificate's name is a short URI).
const NAME_MAX: usize = 256;

/// The name the counts of peers beyond [`PEERS_MAX`] go under.
const OTHERS: &str = "(other peers)";

#[derive(Default)]
struct Counts {
    connects: u64,
    disconnects: u64,
    refused: BTreeMap<&'static str, u64>,
}

/// The counts, by peer.
#[derive(Default)]
pub(super) struct Churn {
    peers: Mutex<BTreeMap<String, Counts>>,
}

impl Churn {
    fn with(&self, peer: &str, f: impl FnOnce(&mut Counts)) {
        let peer = &peer[..peer.floor_char_boundary(NAME_MAX)];
        let mut p = super::lock(&self.peers);
        let key = if p.contains_key(peer) || p.len() < PEERS_MAX {
            peer
        } else {
            OTHERS
        };
        f(p.entry(key.to_owned()).or_default());
    }

    /// `peer` connected.
    pub(super) fn connected(&self, peer: &str) {
        self.with(peer, |c| c.connects += 1);
    }

    /// `peer`'s connection ended.
    pub(super) fn disconnected(&self, peer: &str) {
        self.with(peer, |c| c.disconnects += 1);
    }

    /// `peer` was refused by the rule `code`.
    pub(super) fn refused(&self, peer: &str, code: &'static str) {
        self.with(peer, |c| *c.refused.entry(code).or_default() += 1);
    }

    /// Every peer's counts, by name.
    pub(super) fn lines(&self) -> Vec<ChurnLine> {
        super::lock(&self.peers)
            .iter()
            .map(|(peer, c)| ChurnLine {
                peer: peer.clone(),
                connects: c.connects,
                disconnects: c.disconnects,
                refused: c
                    .refused
                    .iter()
                    .map(|(code, n)| ((*code).to_owned(), *n))
                    .collect(),
            })
            .collect()
    }
}

/// The code at the start of a refusal's text (`[CODE] ...`), for refusals
/// that are not a certificate rule's.
pub(super) fn code_of(why: &str) -> &'static str {
    const KNOWN: [&str; 4] = [
        "CONTROL_NOT_READY",
        "CONTROL_EPOCH_NOT_APPLIED",
        "NODE_NOT_SERVING",
        "NOT_A_COORDINATOR",
    ];
    KNOWN
        .into_iter()
        .find(|k| why.starts_with(&format!("[{k}]")))
        .unwrap_or("REFUSED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_peer_and_code_and_bounds_the_table() {
        let c = Churn::default();
        c.connected("sb://a");
        c.refused("sb://a", "NODE_DISABLED");
        c.refused("sb://a", "NODE_DISABLED");
        c.disconnected("sb://a");
        for i in 0..PEERS_MAX + 10 {
            c.refused(&format!("sb://made-up/{i}"), "CERT_UNKNOWN_CA");
        }
        let lines = c.lines();
        assert_eq!(lines.len(), PEERS_MAX + 1);
        let a = lines.iter().find(|l| l.peer == "sb://a").unwrap();
        assert_eq!((a.connects, a.disconnects), (1, 1));
        assert_eq!(a.refused, vec![("NODE_DISABLED".to_owned(), 2)]);
        let others = lines.iter().find(|l| l.peer == OTHERS).unwrap();
        assert_eq!(others.refused, vec![("CERT_UNKNOWN_CA".to_owned(), 11)]);
        assert_eq!(code_of("[NODE_NOT_SERVING] no"), "NODE_NOT_SERVING");
        assert_eq!(code_of("something"), "REFUSED");
    }
}
