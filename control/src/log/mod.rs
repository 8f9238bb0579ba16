//! The replicated control-plane log: openraft among the voter members, its log
//! and state machine persisted in fjall in the node's control directory.
//!
//! - [`store`]: the control directory, the log store (entries, vote, committed
//!   and purged positions) and its durability rules.
//! - [`machine`]: the state machine that applies committed entries to a
//!   [`ControlState`](crate::state::ControlState) and keeps its snapshots.
//! - [`net`]: the messages members exchange, the transport seam they travel
//!   over, and an in-process transport for tests and simulation.
//! - [`member`]: one member's log: opening it, starting the cluster, submitting
//!   commands, reading the state linearizably.

// openraft's storage and network traits return its own error types (over 300
// bytes); the helpers that build them return the same types.
#[allow(clippy::result_large_err, reason = "openraft's error types, not ours")]
pub mod machine;
pub mod member;
#[allow(clippy::result_large_err, reason = "openraft's error types, not ours")]
pub mod net;
pub mod runtime;
#[allow(clippy::result_large_err, reason = "openraft's error types, not ours")]
pub mod store;

use std::io::Cursor;

/// The Raft implementation the log runs on, for callers that build its
/// messages (tests that forge them).
pub use openraft;

use serde::{Deserialize, Serialize};

use crate::state::{Command, Outcome};

/// A member of the control log: the node's UUID as a number (openraft orders
/// and prints it; the UUID is the node's identity in its certificate).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MemberId(pub u128);

impl MemberId {
    /// The member that is node `node`.
    #[must_use]
    pub fn of(node: scratchbird_types::NodeId) -> Self {
        Self(node.as_uuid().as_u128())
    }

    /// The node this member is.
    #[must_use]
    pub fn node(self) -> scratchbird_types::NodeId {
        scratchbird_types::NodeId::from_bytes(self.0.to_be_bytes())
    }
}

impl From<u64> for MemberId {
    fn from(n: u64) -> Self {
        Self(u128::from(n))
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.node(), f)
    }
}

/// Where a member's peer endpoint listens (`host:port`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// `host:port` of the member's peer endpoint.
    pub addr: String,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// The control log's openraft types.
    pub ControlRaft:
        D = Command,
        R = Outcome,
        NodeId = MemberId,
        Node = PeerAddr,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::ControlRuntime,
);

/// A member's Raft handle.
pub type Raft = openraft::Raft<ControlRaft>;
/// A log entry.
pub type Entry = openraft::Entry<ControlRaft>;
/// A position in the log.
pub type LogId = openraft::LogId<MemberId>;
/// A storage error as openraft carries it.
pub type StorageError = openraft::StorageError<MemberId>;
