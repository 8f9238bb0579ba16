//! The control plane's messages as they travel inside `net`'s
//! `Request::ControlPlane` / `Response::ControlPlane` frames.
//!
//! - On the **peer endpoint**, between members: [`PeerMessage`] and
//!   [`PeerAnswer`] (the log's traffic, commands forwarded to the leader, the
//!   hello by which members observe each other under an epoch).
//! - On the **client endpoint**, from `sb cluster ...`: [`AdminMessage`] and
//!   [`AdminAnswer`]. An administrator is whoever holds an administrator key:
//!   what they publish carries its own signatures, so the connection's user
//!   certificate only has to be a member's.
//!
//! Every message is CBOR and at most [`MESSAGE_BYTES_MAX`] bytes.

use scratchbird_net::verify::MembersList;
use scratchbird_types::{Epoch, NodeId};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::epoch::{EpochHash, SignedEpoch};
pub use crate::log::net::{MESSAGE_BYTES_MAX, decode_message as decode, encode_message as encode};
use crate::log::net::{RaftReply, RaftRequest};
use crate::state::{Command, EpochState, Outcome};

/// A message from one member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    /// The replicated log's own traffic.
    Raft(RaftRequest),
    /// A command for the leader: the sender's own report, or an
    /// administrator's publication that reached the sender.
    Submit(Command),
    /// The sender runs this epoch; which do you? (the hello by which members
    /// observe each other under an epoch).
    Hello {
        /// The sender's current epoch.
        epoch: Epoch,
        /// Its hash.
        hash: EpochHash,
    },
}

/// The answer to a [`PeerMessage`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerAnswer {
    /// To [`PeerMessage::Raft`] (boxed: openraft's answers are large).
    Raft(Box<RaftReply>),
    /// The command is committed: its log index and outcome.
    Committed {
        /// The entry's index.
        index: u64,
        /// What applying it did.
        outcome: Outcome,
    },
    /// To [`PeerMessage::Hello`]: the epoch the answering member runs.
    Hello {
        /// Its current epoch.
        epoch: Epoch,
        /// Its hash.
        hash: EpochHash,
    },
    /// Refused before it reached the log.
    Refused {
        /// A stable code (`NOT_LEADER`, `NOT_SENDER`, ...).
        code: String,
        /// What was wrong and what to do.
        message: String,
        /// The leader, when the code is `NOT_LEADER` and one is known:
        /// (node, peer address).
        leader: Option<(NodeId, String)>,
    },
}

/// A command from `sb cluster ...`.
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminMessage {
    /// Where the cluster stands.
    Status,
    /// The cluster's signed chain and the current epoch's documents, as an
    /// enrolment image (what `sb` builds the next epoch on).
    Chain,
    /// Publish this epoch, with the documents it names that the log does not
    /// hold.
    Publish {
        /// The signed record.
        epoch: SignedEpoch,
        /// The documents.
        documents: Vec<ByteBuf>,
    },
}

/// The answer to an [`AdminMessage`].
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminAnswer {
    /// To [`AdminMessage::Status`].
    Status(Box<Status>),
    /// To [`AdminMessage::Chain`]: an enrolment image
    /// ([`crate::state::ControlState::image`]).
    Chain(ByteBuf),
    /// To [`AdminMessage::Publish`]: the entry's index and what applying it did.
    Published {
        /// The entry's index.
        index: u64,
        /// What applying it did (a refusal names its rule).
        outcome: Outcome,
    },
    /// Refused before it reached the log.
    Refused {
        /// A stable code.
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
}

/// Where the cluster stands, as the answering member sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The member that answered.
    pub answered_by: NodeId,
    /// The log's leader, if known.
    pub leader: Option<NodeId>,
    /// The leader's term.
    pub term: u64,
    /// The log's voters and learners (node, peer address, voter).
    pub log_members: Vec<(NodeId, String, bool)>,
    /// The last entry the answering member applied.
    pub applied_index: Option<u64>,
    /// Every published epoch, oldest first: number, hash, note, state.
    pub epochs: Vec<EpochLine>,
    /// The current epoch's membership.
    pub members: Option<MembersList>,
    /// The last epoch each node reported applying.
    pub applied_by: Vec<(NodeId, Epoch)>,
    /// Observations under the current epoch: (observer, observed, the
    /// fingerprint of the root that issued the certificate it presented).
    pub observed: Vec<(NodeId, NodeId, String)>,
    /// The execution gate on the answering node (spec 1.2, 4.3): `None` when
    /// open (its current epoch is effective and it runs that epoch's bundle),
    /// else why it is closed. Set by the node, which knows what it runs.
    #[serde(default)]
    pub gate: Option<String>,
    /// Each node's last anchored audit head: (node, record, its hash, when
    /// the node anchored it in µs since 1970, log index).
    #[serde(default)]
    pub anchors: Vec<(NodeId, u64, String, i64, u64)>,
    /// Connection churn on the answering node, per peer certificate name
    /// (set by the node).
    #[serde(default)]
    pub churn: Vec<Churn>,
    /// The schema changes the log holds.
    #[serde(default)]
    pub schema_changes: u64,
    /// How many of them the answering node has applied, and why it is
    /// stalled, if it is (set by the node).
    #[serde(default)]
    pub schema_applied: Option<(u64, Option<String>)>,
    /// Peers the answering node's statements could not reach lately: the
    /// node, how long ago in milliseconds, and why (set by the node).
    #[serde(default)]
    pub unreachable: Vec<(NodeId, u64, String)>,
}

/// Connections one peer made to a node, and how they ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Churn {
    /// The name its certificate carries.
    pub peer: String,
    /// Connections admitted.
    pub connects: u64,
    /// Admitted connections that ended.
    pub disconnects: u64,
    /// Refusals, by the rule's code.
    pub refused: Vec<(String, u64)>,
}

/// One epoch in a [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLine {
    /// Its number.
    pub number: Epoch,
    /// Its hash.
    pub hash: EpochHash,
    /// What its administrator said it changed.
    pub note: String,
    /// When it was made (µs since 1970, the signer's clock).
    pub created_us: i64,
    /// Whether it was a forced step.
    pub forced: bool,
    /// Published, converging, effective or superseded.
    pub state: EpochState,
}
