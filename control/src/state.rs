//! What the replicated log holds and how an entry changes it: the commands
//! members submit and the state every member derives by applying them in the
//! log's order.
//!
//! Applying is deterministic: the same entries give the same state and the same
//! outcomes on every member, whatever the member's own configuration. A command
//! that breaks a rule is still an entry of the log; applying it changes nothing
//! and its outcome names the rule, the same on every member.

use std::collections::{BTreeMap, BTreeSet};

use scratchbird_net::verify::MembersList;
use scratchbird_types::{ClusterId, Epoch, NodeId};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::ca::{self, CaPolicy};
use crate::chain::EpochChain;
use crate::epoch::{Documents, EpochHash, EpochRecord, SignedEpoch};
use crate::error::EpochError;
use crate::members::{self, MembersError};
use crate::schema::{SCHEMA_CHANGES_MAX, SCHEMA_CLAIM_BYTES_MAX, SchemaChange, SchemaEntry};
use crate::shards::ShardMap;

/// The most bytes one command may have on the log (an epoch record is at most
/// 64 KiB; the documents an epoch names come with it).
pub const COMMAND_BYTES_MAX: usize = 4 << 20;

/// Peer observations of one member kept for the current epoch (one from a
/// peer is what convergence needs; a few more are evidence).
pub const OBSERVERS_KEPT: usize = 3;

/// A change submitted to the control log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Publish the next epoch of the cluster's chain. The first one starts the
    /// chain: it must be epoch 1 and be signed by its own administrators at its
    /// own threshold.
    Publish {
        /// The signed record.
        epoch: SignedEpoch,
        /// The canonical bytes of each document the record names that the log
        /// does not already hold (a document unchanged since the previous
        /// epoch need not be sent again).
        documents: Vec<ByteBuf>,
    },
    /// What a node reports. `from` is the node the report came from, as the
    /// transport authenticated it (the member that received it over mutual
    /// TLS sets it; a node's own reports are made by its own member).
    Report {
        /// The reporting node.
        from: NodeId,
        /// What it reports.
        report: Report,
    },
    /// A schema change a user signed, sent by coordinator `from` (as the
    /// transport authenticated it): every node applies it, in log order.
    Schema {
        /// The coordinator.
        from: NodeId,
        /// The change.
        change: SchemaChange,
    },
}

/// What a node reports to the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// It has applied this epoch: it now runs its configuration.
    Applied {
        /// The epoch.
        epoch: Epoch,
        /// Its hash.
        hash: EpochHash,
    },
    /// It connected to a peer and observed its certificate chain.
    Observed(Observation),
    /// The head of its execution-audit trail: anchored in the log, so a trail
    /// rewritten together with its head no longer matches.
    AuditHead(AuditAnchor),
}

/// How many anchors of each node the log keeps (a trail must still hold
/// every one of them).
pub const ANCHORS_KEPT: usize = 16;

/// A node's execution-audit trail at one point: its last record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// The record's position in the trail, from 0.
    pub seq: u64,
    /// The record's hash (it chains every record before it).
    pub hash: [u8; 32],
    /// When the node anchored it (µs since 1970, its clock).
    pub at_us: i64,
}

/// What one node observed of a peer (spec 3.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The peer observed.
    pub peer: NodeId,
    /// The epoch both ran: the observer's, and the one the peer stated.
    pub epoch: Epoch,
    /// Its hash.
    pub hash: EpochHash,
    /// The cluster in the peer's certificate.
    pub cluster: ClusterId,
    /// The fingerprint of the root that issued the peer's certificate.
    pub issuer: String,
    /// When the peer's certificate expires (Unix seconds).
    pub not_after: i64,
    /// When the observation was made (µs since 1970, the observer's clock).
    pub at_us: i64,
}

impl Command {
    /// What the command asks for, for logs and errors.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Publish { epoch, .. } => format!("publish epoch {}", epoch.hash()),
            Self::Report {
                from,
                report: Report::Applied { epoch, .. },
            } => format!("node {from} applied epoch {}", epoch.0),
            Self::Report {
                from,
                report: Report::Observed(o),
            } => format!(
                "node {from} observed node {} under epoch {}",
                o.peer, o.epoch.0
            ),
            Self::Report {
                from,
                report: Report::AuditHead(a),
            } => format!("node {from} anchored its audit trail at record {}", a.seq),
            Self::Schema { from, change } => {
                format!("node {from} sent a schema change of user {:?}", change.user)
            }
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An entry with nothing to apply (a leader's first entry, a membership
    /// change of the log itself).
    Nothing,
    /// The epoch is published: committed to the log and now the current one.
    Published {
        /// Its number.
        number: Epoch,
        /// Its hash.
        hash: EpochHash,
    },
    /// The report is recorded.
    Recorded {
        /// Whether the current epoch is effective now (it may have become so
        /// with this report).
        effective: bool,
    },
    /// The schema change is taken: the `seq`th of the cluster (from 0).
    SchemaChanged {
        /// Its place in the schema history.
        seq: u64,
    },
    /// The command was refused; nothing changed.
    Refused {
        /// The rule's stable code (`EPOCH_FORK`, `CONTROL_DOCUMENT_MISSING`...).
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("nothing to apply"),
            Self::Published { number, hash } => write!(f, "published epoch {} ({hash})", number.0),
            Self::SchemaChanged { seq } => write!(f, "schema change {seq} taken"),
            Self::Recorded { effective: true } => f.write_str("recorded; the epoch is effective"),
            Self::Recorded { effective: false } => f.write_str("recorded"),
            Self::Refused { code, message } => write!(f, "refused ({code}): {message}"),
        }
    }
}

/// Why the log refused a command, beyond the epoch chain's own rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// An epoch chain rule (`EPOCH_*`).
    #[error(transparent)]
    Epoch(#[from] EpochError),
    /// `CONTROL_DOCUMENT_MISSING`: the record names a document whose bytes
    /// neither came with it nor are held by the log.
    #[error(
        "epoch {epoch} names a {what} document {hash} that is neither sent with it nor held by the log; publish it with the document's bytes"
    )]
    DocumentMissing {
        /// The epoch.
        epoch: u64,
        /// Which document.
        what: &'static str,
        /// Its hash.
        hash: String,
    },
    /// `CONTROL_DOCUMENT_UNNAMED`: a document sent that the record does not name.
    #[error("a document {hash} was sent with epoch {epoch}, which does not name it")]
    DocumentUnnamed {
        /// The epoch.
        epoch: u64,
        /// The document's hash.
        hash: String,
    },
    /// `CONTROL_MEMBERSHIP`: the membership document is not valid, or leaves
    /// no enabled voter.
    #[error("epoch {epoch}'s membership is refused: {why}")]
    Membership {
        /// The epoch.
        epoch: u64,
        /// Why.
        why: String,
    },
    /// `CONTROL_CA_POLICY`: the CA policy document is not valid, or changes
    /// in a way only a forced epoch may.
    #[error("epoch {epoch}'s CA policy is refused: {why}")]
    CaPolicy {
        /// The epoch.
        epoch: u64,
        /// Why.
        why: String,
    },
    /// `CONTROL_CUTOVER_NOT_CONVERGED`: a CA cutover before the overlap has
    /// converged and the stability window has passed.
    #[error("epoch {epoch}'s CA cutover is refused: {why}")]
    CutoverNotConverged {
        /// The epoch.
        epoch: u64,
        /// What is missing.
        why: String,
    },
    /// `CONTROL_AUDIT_REWOUND`: an audit head behind, or beside, the one the
    /// log anchored for the node: its trail was replaced or rewritten.
    #[error(
        "node {node}'s audit trail is at record {seq} with hash {hash}, but the log anchored record {anchored_seq} with hash {anchored_hash}: its trail was rewritten or replaced since"
    )]
    AuditRewound {
        /// The node.
        node: NodeId,
        /// The record it reported.
        seq: u64,
        /// Its hash.
        hash: String,
        /// The record anchored.
        anchored_seq: u64,
        /// Its hash.
        anchored_hash: String,
    },
    /// `CONTROL_SHARD_MAP`: the shard map is not valid for the epoch's
    /// membership (an owner that is not a member node with the shard role).
    #[error("epoch {epoch}'s shard map is refused: {why}")]
    ShardMap {
        /// The epoch.
        epoch: u64,
        /// Why.
        why: String,
    },
    /// `CONTROL_NOT_COORDINATOR`: a schema change from a node that is not an
    /// enabled member with the coordinator role.
    #[error(
        "node {node} is not an enabled coordinator of epoch {epoch}; only a coordinator sends schema changes"
    )]
    NotCoordinator {
        /// The node.
        node: NodeId,
        /// The current epoch.
        epoch: u64,
    },
    /// `CONTROL_SCHEMA`: a schema change the log does not take (its claim too
    /// large, taken before, or the history full).
    #[error("the schema change is refused: {why}")]
    Schema {
        /// Why.
        why: String,
    },
    /// `CONTROL_NO_CLUSTER`: a report before the first epoch.
    #[error("the cluster has no epoch yet; a node reports only once the first epoch is published")]
    NoCluster,
    /// `CONTROL_NOT_MEMBER`: a report from a node that is not an enabled member.
    #[error("node {node} is not an enabled member of epoch {epoch}; its reports do not count")]
    NotMember {
        /// The node.
        node: NodeId,
        /// The current epoch.
        epoch: u64,
    },
    /// `CONTROL_STALE_REPORT`: a report about an epoch that is not the current one.
    #[error(
        "the report is about epoch {reported} ({hash}); the current epoch is {current}: report under the current epoch"
    )]
    StaleReport {
        /// The epoch reported.
        reported: u64,
        /// The hash reported.
        hash: String,
        /// The current one.
        current: u64,
    },
    /// `CONTROL_SELF_OBSERVATION`: a node reporting an observation of itself
    /// (spec 3.3: self-report is insufficient).
    #[error("node {node} reported an observation of itself; only a peer's observation counts")]
    SelfObservation {
        /// The node.
        node: NodeId,
    },
    /// `CONTROL_OBSERVED_NOT_MEMBER`: an observation of a node that is not a member.
    #[error("node {from} observed node {peer}, which is not a member of epoch {epoch}")]
    ObservedNotMember {
        /// The observer.
        from: NodeId,
        /// The peer.
        peer: NodeId,
        /// The current epoch.
        epoch: u64,
    },
    /// `CONTROL_OTHER_CLUSTER`: an observed certificate of another cluster.
    #[error("node {from} observed a certificate of cluster {found}, not this cluster {expected}")]
    ObservedOtherCluster {
        /// The observer.
        from: NodeId,
        /// The cluster in the certificate.
        found: ClusterId,
        /// This cluster.
        expected: ClusterId,
    },
}

impl ControlError {
    /// The rule's stable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Epoch(e) => e.code(),
            Self::DocumentMissing { .. } => "CONTROL_DOCUMENT_MISSING",
            Self::DocumentUnnamed { .. } => "CONTROL_DOCUMENT_UNNAMED",
            Self::Membership { .. } => "CONTROL_MEMBERSHIP",
            Self::CaPolicy { .. } => "CONTROL_CA_POLICY",
            Self::CutoverNotConverged { .. } => "CONTROL_CUTOVER_NOT_CONVERGED",
            Self::AuditRewound { .. } => "CONTROL_AUDIT_REWOUND",
            Self::ShardMap { .. } => "CONTROL_SHARD_MAP",
            Self::NotCoordinator { .. } => "CONTROL_NOT_COORDINATOR",
            Self::Schema { .. } => "CONTROL_SCHEMA",
            Self::NoCluster => "CONTROL_NO_CLUSTER",
            Self::NotMember { .. } => "CONTROL_NOT_MEMBER",
            Self::StaleReport { .. } => "CONTROL_STALE_REPORT",
            Self::SelfObservation { .. } => "CONTROL_SELF_OBSERVATION",
            Self::ObservedNotMember { .. } => "CONTROL_OBSERVED_NOT_MEMBER",
            Self::ObservedOtherCluster { .. } => "CONTROL_OTHER_CLUSTER",
        }
    }
}

/// Why an enabled member keeps the current epoch from being effective.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Missing {
    /// It has not reported applying the epoch (it last reported `runs`).
    NotApplied {
        /// The last epoch it reported applying, if any.
        runs: Option<Epoch>,
    },
    /// No enabled peer has reported observing it under the epoch.
    NotObserved,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotApplied { runs: Some(e) } => {
                write!(f, "has not applied it (last applied epoch {})", e.0)
            }
            Self::NotApplied { runs: None } => f.write_str("has not applied any epoch"),
            Self::NotObserved => f.write_str("no enabled peer has observed it under this epoch"),
        }
    }
}

/// Where an epoch stands (spec 1.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EpochState {
    /// Committed to the log, not yet effective: the members still missing.
    Converging {
        /// Each enabled member that is missing, and why.
        missing: Vec<(NodeId, Missing)>,
    },
    /// Every enabled member applied it and was observed under it by a peer;
    /// it became so at this log index.
    Effective {
        /// The log index of the report that completed it.
        at: u64,
    },
    /// A later epoch was published before this one became effective.
    Superseded,
}

/// The state every member derives from the log.
#[derive(Clone, Debug, Default)]
pub struct ControlState {
    chain: Option<EpochChain>,
    /// The current epoch's documents, by hash.
    documents: DocumentSet,
    /// The current epoch's membership, decoded.
    members: Option<MembersList>,
    /// The last epoch each node reported applying.
    applied: BTreeMap<NodeId, (Epoch, EpochHash)>,
    /// Observations of each node under the current epoch (at most
    /// [`OBSERVERS_KEPT`] observers each).
    observed: BTreeMap<NodeId, BTreeMap<NodeId, Observation>>,
    /// Each node's last audit head anchored, with the log index it was
    /// anchored at (kept for nodes that left: evidence outlives membership).
    anchors: BTreeMap<NodeId, Vec<(AuditAnchor, u64)>>,
    /// When each epoch became effective (log index), for those that did.
    effective: BTreeMap<Epoch, u64>,
    /// The cluster's schema changes, in order, and their claims' ids.
    schema: Vec<SchemaEntry>,
    claims: BTreeSet<[u8; 32]>,
}

/// The state as a snapshot holds it.
#[derive(Serialize, Deserialize)]
struct Image {
    format: u32,
    /// Every record of the chain, first first: restoring replays the chain, so
    /// a snapshot is checked record by record as the log was.
    epochs: Vec<SignedEpoch>,
    documents: Vec<ByteBuf>,
    applied: Vec<(NodeId, Epoch, EpochHash)>,
    observed: Vec<(NodeId, Observation)>,
    effective: Vec<(Epoch, u64)>,
    /// Audit anchors (format 3; none in format 2).
    #[serde(default)]
    anchors: Vec<(NodeId, AuditAnchor, u64)>,
    /// Schema changes (format 4; none before).
    #[serde(default)]
    schema: Vec<SchemaEntry>,
}

/// The format of a snapshot's image.
const IMAGE_FORMAT: u32 = 4;
/// The earlier formats still read (2 had no audit anchors, 3 no schema
/// changes).
const IMAGE_FORMATS_OLD: [u32; 2] = [2, 3];

/// Why a snapshot image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The bytes are not an image.
    #[error("the control-state snapshot is not readable: {0}")]
    Unreadable(String),
    /// An image of another format.
    #[error("control-state snapshot format {found}; this version reads format {IMAGE_FORMAT}")]
    Format {
        /// The image's format.
        found: u32,
    },
    /// A record of the image's chain breaks a rule.
    #[error("the control-state snapshot's epoch chain breaks a rule at record {at}: {error}")]
    Chain {
        /// Its position, from 0.
        at: usize,
        /// The rule.
        error: EpochError,
    },
    /// The image's documents are not those its current epoch names.
    #[error("the control-state snapshot's documents do not match its epoch: {0}")]
    Documents(ControlError),
}

/// Documents by hash.
type DocumentSet = BTreeMap<[u8; 32], Vec<u8>>;

/// The documents a record names, with their names.
fn named(d: &Documents) -> [(&'static str, [u8; 32]); 7] {
    [
        ("CA policy", d.ca_policy),
        ("security bundle", d.bundle),
        ("membership", d.membership),
        ("shard map", d.shard_map),
        ("scheduler", d.scheduler),
        ("replication", d.replication),
        ("backup", d.backup),
    ]
}

/// The documents of `record` from those `sent` and those `held`, and its
/// membership decoded.
fn gather(
    record: &EpochRecord,
    sent: &[ByteBuf],
    held: &DocumentSet,
) -> Result<(DocumentSet, MembersList), ControlError> {
    let epoch = record.number.0;
    let names = named(&record.documents);
    let mut docs = BTreeMap::new();
    for d in sent {
        let h = Documents::hash(d);
        if !names.iter().any(|(_, n)| *n == h) {
            return Err(ControlError::DocumentUnnamed {
                epoch,
                hash: scratchbird_types::hex(&h),
            });
        }
        docs.insert(h, d.to_vec());
    }
    let empty = Documents::empty_hash();
    for (what, h) in names {
        if h == empty || docs.contains_key(&h) {
            continue;
        }
        let Some(d) = held.get(&h) else {
            return Err(ControlError::DocumentMissing {
                epoch,
                what,
                hash: scratchbird_types::hex(&h),
            });
        };
        docs.insert(h, d.clone());
    }
    let membership = |why: String| ControlError::Membership { epoch, why };
    let bytes = docs
        .get(&record.documents.membership)
        .ok_or_else(|| membership("an epoch must name a membership document".into()))?;
    let list = members::decode(bytes, record.cluster)
        .map_err(|e: MembersError| membership(e.to_string()))?;
    if !members::enabled_nodes(&list)
        .any(|n| n.roles.contains(&scratchbird_net::verify::Role::Voter))
    {
        return Err(membership(
            "it leaves no enabled voter; the control log needs at least one".into(),
        ));
    }
    Ok((docs, list))
}

impl ControlState {
    /// Applies one command, the entry at log index `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        let done = match command {
            Command::Publish { epoch, documents } => self.publish(epoch, documents),
            Command::Report { from, report } => self.report(index, *from, report),
            Command::Schema { from, change } => self.take_schema(index, *from, change),
        };
        done.unwrap_or_else(|e| Outcome::Refused {
            code: e.code().to_owned(),
            message: e.to_string(),
        })
    }

    /// Whether `command` would be taken, without taking it: what a member
    /// checks before it puts a command in the log, so that what breaks a rule
    /// never costs the log an entry. With `trusted`, a first epoch must also be
    /// signed only by those administrator keys (the receiving node's own
    /// anchor; applying the log never depends on it).
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn precheck(
        &self,
        command: &Command,
        trusted: Option<&[crate::epoch::AdminKey]>,
    ) -> Result<(), ControlError> {
        match command {
            Command::Publish { epoch, documents } => {
                let (record, _, _) = self.check_publish(epoch, documents)?;
                if let (None, Some(trusted)) = (&self.chain, trusted)
                    && let Some(key) = record.untrusted_administrator(trusted)
                {
                    return Err(EpochError::UnknownSigner {
                        key,
                        whose: "an administrator key this node trusts".into(),
                    }
                    .into());
                }
                Ok(())
            }
            Command::Report { from, report } => self.check_report(*from, report).map(|_| ()),
            Command::Schema { from, change } => self.check_schema(*from, change),
        }
    }

    /// Whether the log takes schema change `change` from coordinator `from`.
    fn check_schema(&self, from: NodeId, change: &SchemaChange) -> Result<(), ControlError> {
        let chain = self.chain.as_ref().ok_or(ControlError::NoCluster)?;
        let list = self.members.as_ref().ok_or(ControlError::NoCluster)?;
        if !members::node(list, from).is_some_and(|n| {
            n.enabled
                && n.roles
                    .contains(&scratchbird_net::verify::Role::Coordinator)
        }) {
            return Err(ControlError::NotCoordinator {
                node: from,
                epoch: chain.current().number.0,
            });
        }
        let why = if change.claim.len() > SCHEMA_CLAIM_BYTES_MAX {
            format!(
                "its request is {} bytes; a schema change is taken from a request of at most {SCHEMA_CLAIM_BYTES_MAX} bytes (send a long script a few statements at a time)",
                change.claim.len()
            )
        } else if self.claims.contains(&change.id()) {
            "the log took this signed statement before: a claim is taken once".into()
        } else if self.schema.len() >= SCHEMA_CHANGES_MAX {
            format!("the cluster's schema history holds its limit of {SCHEMA_CHANGES_MAX} changes")
        } else {
            return Ok(());
        };
        Err(ControlError::Schema { why })
    }

    fn take_schema(
        &mut self,
        index: u64,
        from: NodeId,
        change: &SchemaChange,
    ) -> Result<Outcome, ControlError> {
        self.check_schema(from, change)?;
        let seq = self.schema.len() as u64;
        self.claims.insert(change.id());
        self.schema.push(SchemaEntry {
            seq,
            from,
            index,
            change: change.clone(),
        });
        Ok(Outcome::SchemaChanged { seq })
    }

    /// The cluster's schema changes from the `from`th on (at most `max`).
    #[must_use]
    pub fn schema_changes(&self, from: u64, max: usize) -> &[SchemaEntry] {
        let start = usize::try_from(from).map_or(self.schema.len(), |f| f.min(self.schema.len()));
        let end = start.saturating_add(max).min(self.schema.len());
        &self.schema[start..end]
    }

    /// How many schema changes the log holds.
    #[must_use]
    pub fn schema_len(&self) -> u64 {
        self.schema.len() as u64
    }

    fn check_publish(
        &self,
        epoch: &SignedEpoch,
        sent: &[ByteBuf],
    ) -> Result<(EpochRecord, DocumentSet, MembersList), ControlError> {
        let record = match &self.chain {
            Some(chain) => chain.check(epoch)?,
            None => start(epoch)?.current().clone(),
        };
        let (documents, list) = gather(&record, sent, &self.documents)?;
        self.check_ca_policy(&record, &documents)?;
        if record.documents.shard_map != Documents::empty_hash() {
            let bytes = documents
                .get(&record.documents.shard_map)
                .map_or(&[][..], Vec::as_slice);
            ShardMap::decode(bytes, &list).map_err(|e| ControlError::ShardMap {
                epoch: record.number.0,
                why: e.to_string(),
            })?;
        }
        Ok((record, documents, list))
    }

    /// The CA policy of `record` (with its documents) against the current
    /// one: valid, and changed only by a rotation's begin, or by its cutover
    /// once the overlap converged ([`crate::ca`]); a forced epoch may change
    /// it in any way.
    fn check_ca_policy(
        &self,
        record: &EpochRecord,
        documents: &DocumentSet,
    ) -> Result<(), ControlError> {
        let epoch = record.number.0;
        let refused = |why: String| ControlError::CaPolicy { epoch, why };
        let new = documents
            .get(&record.documents.ca_policy)
            .ok_or_else(|| refused("an epoch must name a CA policy document".into()))?;
        let new = CaPolicy::decode(new, record.cluster).map_err(|e| refused(e.to_string()))?;
        let Some(chain) = &self.chain else {
            return Ok(());
        };
        // a forced epoch may replace any policy, even one that no longer reads
        if record.forced.is_some() {
            return Ok(());
        }
        let old = self
            .documents
            .get(&chain.current().documents.ca_policy)
            .and_then(|b| CaPolicy::decode(b, record.cluster).ok())
            .ok_or_else(|| refused("the current epoch holds no readable CA policy (only a forced epoch can replace it)".into()))?;
        match ca::change(&old, &new).map_err(|e| refused(e.to_string()))? {
            ca::Change::None | ca::Change::Begin | ca::Change::Rules => Ok(()),
            ca::Change::Cutover { to, stability_secs } => {
                self.check_cutover(record, &to, stability_secs)
            }
        }
    }

    /// A cutover to root `to`: the current (overlap) epoch is effective, every
    /// enabled node has been observed under it by another enabled node
    /// presenting a certificate of `to`, and `record` was made at least
    /// `stability_secs` after the last of those observations.
    fn check_cutover(
        &self,
        record: &EpochRecord,
        to: &str,
        stability_secs: u64,
    ) -> Result<(), ControlError> {
        let not_yet = |why: String| ControlError::CutoverNotConverged {
            epoch: record.number.0,
            why,
        };
        // the convergence checked is the current membership's: a cutover
        // that also changed the membership would escape it
        if self
            .chain
            .as_ref()
            .is_some_and(|c| c.current().documents.membership != record.documents.membership)
        {
            return Err(ControlError::CaPolicy {
                epoch: record.number.0,
                why: "a cutover changes nothing but the CA policy (change the membership in an epoch of its own)".into(),
            });
        }
        match self.state_of_current() {
            Some(EpochState::Effective { .. }) => {}
            Some(EpochState::Converging { missing }) => {
                let who: Vec<String> = missing.iter().map(|(n, w)| format!("{n} {w}")).collect();
                return Err(not_yet(format!(
                    "the overlap epoch is not effective yet ({})",
                    who.join("; ")
                )));
            }
            _ => return Err(not_yet("the overlap epoch is not effective".into())),
        }
        let list = self.members.as_ref().ok_or(ControlError::NoCluster)?;
        let enabled: BTreeSet<NodeId> = members::enabled_nodes(list).map(|n| n.id).collect();
        let mut converged_at = i64::MIN;
        let mut unseen = Vec::new();
        for node in &enabled {
            let seen = self.observed.get(node).and_then(|by| {
                by.iter()
                    .filter(|(o, ob)| *o != node && enabled.contains(*o) && ob.issuer == to)
                    .map(|(_, ob)| ob.at_us)
                    .min()
            });
            match seen {
                Some(at) => converged_at = converged_at.max(at),
                None => unseen.push(node.to_string()),
            }
        }
        if !unseen.is_empty() && enabled.len() > 1 {
            return Err(not_yet(format!(
                "no peer has yet seen a certificate of the new root {to} from node(s) {} (issue them new certificates: sb ca issue-node with the new CA)",
                unseen.join(", ")
            )));
        }
        let window_us = i64::try_from(stability_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let due = converged_at.saturating_add(window_us);
        if enabled.len() > 1 && record.created_us < due {
            return Err(not_yet(format!(
                "the stability window of {stability_secs} s has not passed since every node was seen under the new root (the cutover may be made {} s from now, by its creation time)",
                due.saturating_sub(record.created_us)
                    .saturating_add(999_999)
                    / 1_000_000
            )));
        }
        Ok(())
    }

    fn publish(&mut self, epoch: &SignedEpoch, sent: &[ByteBuf]) -> Result<Outcome, ControlError> {
        let (record, documents, list) = self.check_publish(epoch, sent)?;
        match &mut self.chain {
            Some(chain) => {
                chain.apply(epoch.clone())?;
            }
            None => self.chain = Some(start(epoch)?),
        }
        self.documents = documents;
        // Reports of nodes that are no longer members are dropped.
        self.applied
            .retain(|n, _| members::node(&list, *n).is_some());
        self.members = Some(list);
        // Observations are per epoch; those of the previous one no longer count.
        self.observed.clear();
        Ok(Outcome::Published {
            number: record.number,
            hash: epoch.hash(),
        })
    }

    /// Checks a report against the current epoch; returns that epoch's number
    /// and hash.
    fn check_report(
        &self,
        from: NodeId,
        report: &Report,
    ) -> Result<(Epoch, EpochHash), ControlError> {
        let chain = self.chain.as_ref().ok_or(ControlError::NoCluster)?;
        let (current, hash) = (chain.current(), chain.current_hash());
        let list = self.members.as_ref().ok_or(ControlError::NoCluster)?;
        if !members::node(list, from).is_some_and(|n| n.enabled) {
            return Err(ControlError::NotMember {
                node: from,
                epoch: current.number.0,
            });
        }
        let (reported, reported_hash) = match report {
            Report::Applied { epoch, hash } => (*epoch, *hash),
            Report::Observed(o) => (o.epoch, o.hash),
            Report::AuditHead(a) => {
                // an anchor only moves forward along the same chain; the
                // hashes of records between anchors are the node's to prove
                if let Some((old, _)) = self.anchors.get(&from).and_then(|h| h.last())
                    && (a.seq < old.seq || (a.seq == old.seq && a.hash != old.hash))
                {
                    return Err(ControlError::AuditRewound {
                        node: from,
                        seq: a.seq,
                        hash: scratchbird_types::hex(&a.hash),
                        anchored_seq: old.seq,
                        anchored_hash: scratchbird_types::hex(&old.hash),
                    });
                }
                return Ok((current.number, hash));
            }
        };
        if (reported, reported_hash) != (current.number, hash) {
            return Err(ControlError::StaleReport {
                reported: reported.0,
                hash: reported_hash.to_string(),
                current: current.number.0,
            });
        }
        if let Report::Observed(o) = report {
            if o.peer == from {
                return Err(ControlError::SelfObservation { node: from });
            }
            if members::node(list, o.peer).is_none() {
                return Err(ControlError::ObservedNotMember {
                    from,
                    peer: o.peer,
                    epoch: current.number.0,
                });
            }
            if o.cluster != current.cluster {
                return Err(ControlError::ObservedOtherCluster {
                    from,
                    found: o.cluster,
                    expected: current.cluster,
                });
            }
        }
        Ok((current.number, hash))
    }

    fn report(
        &mut self,
        index: u64,
        from: NodeId,
        report: &Report,
    ) -> Result<Outcome, ControlError> {
        let (number, hash) = self.check_report(from, report)?;
        match report {
            Report::Applied { .. } => {
                self.applied.insert(from, (number, hash));
            }
            Report::Observed(o) => {
                let by = self.observed.entry(o.peer).or_default();
                if by.len() < OBSERVERS_KEPT || by.contains_key(&from) {
                    by.insert(from, o.clone());
                }
            }
            Report::AuditHead(a) => {
                let kept = self.anchors.entry(from).or_default();
                if kept.last().is_some_and(|(old, _)| old == a) {
                    // the same record again: nothing new
                } else {
                    kept.push((a.clone(), index));
                    if kept.len() > ANCHORS_KEPT {
                        kept.remove(0);
                    }
                }
            }
        }
        let effective = self.effective.contains_key(&number)
            || match self.state_of_current() {
                Some(EpochState::Effective { .. }) => {
                    self.effective.insert(number, index);
                    true
                }
                _ => false,
            };
        Ok(Outcome::Recorded { effective })
    }

    /// The current epoch's convergence, computed from the reports (`None`
    /// before the first epoch). Effective means: every enabled member of the
    /// epoch's membership has applied it, and each has been observed under it
    /// by another enabled member (a node's report about itself never counts).
    /// A membership of one enabled node has no peer to observe it: applying
    /// is all it can show.
    fn state_of_current(&self) -> Option<EpochState> {
        let chain = self.chain.as_ref()?;
        let list = self.members.as_ref()?;
        let (number, hash) = (chain.current().number, chain.current_hash());
        if let Some(at) = self.effective.get(&number) {
            return Some(EpochState::Effective { at: *at });
        }
        let enabled: BTreeSet<NodeId> = members::enabled_nodes(list).map(|n| n.id).collect();
        let alone = enabled.len() == 1;
        let mut missing = Vec::new();
        for node in &enabled {
            match self.applied.get(node) {
                Some((e, h)) if (*e, *h) == (number, hash) => {}
                other => {
                    missing.push((
                        *node,
                        Missing::NotApplied {
                            runs: other.map(|(e, _)| *e),
                        },
                    ));
                    continue;
                }
            }
            let seen = self
                .observed
                .get(node)
                .is_some_and(|by| by.keys().any(|o| o != node && enabled.contains(o)));
            if !seen && !alone {
                missing.push((*node, Missing::NotObserved));
            }
        }
        Some(if missing.is_empty() {
            EpochState::Effective { at: 0 }
        } else {
            EpochState::Converging { missing }
        })
    }

    /// Where epoch `n` stands (`None` if it was never published).
    #[must_use]
    pub fn epoch_state(&self, n: Epoch) -> Option<EpochState> {
        let chain = self.chain.as_ref()?;
        chain.get(n)?;
        if let Some(at) = self.effective.get(&n) {
            return Some(EpochState::Effective { at: *at });
        }
        if n == chain.current().number {
            self.state_of_current()
        } else {
            Some(EpochState::Superseded)
        }
    }

    /// Whether the current epoch is effective.
    #[must_use]
    pub fn is_effective(&self) -> bool {
        self.chain
            .as_ref()
            .is_some_and(|c| self.effective.contains_key(&c.current().number))
    }

    /// The cluster's epoch chain, once its first epoch is published.
    #[must_use]
    pub fn chain(&self) -> Option<&EpochChain> {
        self.chain.as_ref()
    }

    /// The cluster, once its first epoch is published.
    #[must_use]
    pub fn cluster(&self) -> Option<ClusterId> {
        self.chain.as_ref().map(EpochChain::cluster)
    }

    /// The current epoch's number (0 before the first).
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.chain.as_ref().map_or(Epoch(0), |c| c.current().number)
    }

    /// The current epoch's membership.
    #[must_use]
    pub fn members(&self) -> Option<&MembersList> {
        self.members.as_ref()
    }

    /// A document of the current epoch, by hash.
    #[must_use]
    pub fn document(&self, hash: &[u8; 32]) -> Option<&[u8]> {
        self.documents.get(hash).map(Vec::as_slice)
    }

    /// The last epoch each node reported applying.
    #[must_use]
    pub fn applied_by(&self) -> &BTreeMap<NodeId, (Epoch, EpochHash)> {
        &self.applied
    }

    /// The current epoch's shard map (`None` before the first epoch or when
    /// it names none).
    #[must_use]
    pub fn shard_map(&self) -> Option<ShardMap> {
        let r = self.chain.as_ref()?.current();
        ShardMap::decode(
            self.document(&r.documents.shard_map)?,
            self.members.as_ref()?,
        )
        .ok()
    }

    /// The shard map's version: the first epoch of the run of epochs up to
    /// the current one that name the current map (0 before the first epoch).
    /// It changes exactly when the map does; envelopes carry it.
    #[must_use]
    pub fn shard_map_version(&self) -> u64 {
        let Some(chain) = self.chain.as_ref() else {
            return 0;
        };
        let cur = chain.current();
        let mut first = cur.number.0;
        while first > 1 {
            match chain.get(Epoch(first - 1)) {
                Some((r, _, _)) if r.documents.shard_map == cur.documents.shard_map => first -= 1,
                _ => break,
            }
        }
        first
    }

    /// The current epoch's CA policy (`None` before the first epoch).
    #[must_use]
    pub fn ca_policy(&self) -> Option<CaPolicy> {
        let chain = self.chain.as_ref()?;
        let r = chain.current();
        CaPolicy::decode(self.document(&r.documents.ca_policy)?, r.cluster).ok()
    }

    /// Each node's last [`ANCHORS_KEPT`] anchored audit heads, oldest first,
    /// with the log index each was anchored at.
    #[must_use]
    pub fn anchors(&self) -> &BTreeMap<NodeId, Vec<(AuditAnchor, u64)>> {
        &self.anchors
    }

    /// The observations of each node under the current epoch, by observer.
    #[must_use]
    pub fn observations(&self) -> &BTreeMap<NodeId, BTreeMap<NodeId, Observation>> {
        &self.observed
    }

    /// The state as a snapshot's bytes.
    ///
    /// # Errors
    /// The encoder's error (out of memory).
    pub fn image(&self) -> Result<Vec<u8>, ImageError> {
        self.image_with(true)
    }

    /// The state's chain, documents and reports as an image, without its
    /// schema changes (they hold users' signed requests: what a user who
    /// asks for the chain is not told).
    ///
    /// # Errors
    /// The encoder's error (out of memory).
    pub fn chain_image(&self) -> Result<Vec<u8>, ImageError> {
        self.image_with(false)
    }

    fn image_with(&self, schema: bool) -> Result<Vec<u8>, ImageError> {
        let image = Image {
            format: IMAGE_FORMAT,
            epochs: self
                .chain
                .as_ref()
                .map(|c| c.signed().cloned().collect())
                .unwrap_or_default(),
            documents: self.document_bytes(),
            applied: self
                .applied
                .iter()
                .map(|(n, (e, h))| (*n, *e, *h))
                .collect(),
            observed: self
                .observed
                .values()
                .flat_map(|by| by.iter().map(|(o, obs)| (*o, obs.clone())))
                .collect(),
            effective: self.effective.iter().map(|(e, at)| (*e, *at)).collect(),
            anchors: self
                .anchors
                .iter()
                .flat_map(|(n, kept)| kept.iter().map(|(a, at)| (*n, a.clone(), *at)))
                .collect(),
            schema: if schema {
                self.schema.clone()
            } else {
                Vec::new()
            },
        };
        let mut out = Vec::new();
        ciborium::into_writer(&image, &mut out)
            .map_err(|e| ImageError::Unreadable(e.to_string()))?;
        Ok(out)
    }

    /// Restores the state from a snapshot's bytes, checking every record of its
    /// chain as the log did and its documents against the current epoch.
    ///
    /// # Errors
    /// The bytes are not an image of this format, a record breaks a rule, or
    /// the documents are not the current epoch's.
    pub fn from_image(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let image: Image =
            ciborium::from_reader(bytes).map_err(|e| ImageError::Unreadable(e.to_string()))?;
        if image.format != IMAGE_FORMAT && !IMAGE_FORMATS_OLD.contains(&image.format) {
            return Err(ImageError::Format {
                found: image.format,
            });
        }
        let mut epochs = image.epochs.into_iter();
        let Some(first) = epochs.next() else {
            return Ok(Self::default());
        };
        let mut chain = start(&first).map_err(|error| ImageError::Chain { at: 0, error })?;
        for (i, e) in epochs.enumerate() {
            chain
                .apply(e)
                .map_err(|error| ImageError::Chain { at: i + 1, error })?;
        }
        let (documents, list) = gather(chain.current(), &image.documents, &BTreeMap::new())
            .map_err(ImageError::Documents)?;
        let mut observed: BTreeMap<NodeId, BTreeMap<NodeId, Observation>> = BTreeMap::new();
        for (by, o) in image.observed {
            observed.entry(o.peer).or_default().insert(by, o);
        }
        Ok(Self {
            chain: Some(chain),
            documents,
            members: Some(list),
            applied: image
                .applied
                .into_iter()
                .map(|(n, e, h)| (n, (e, h)))
                .collect(),
            observed,
            effective: image.effective.into_iter().collect(),
            anchors: image.anchors.into_iter().fold(
                BTreeMap::new(),
                |mut m: BTreeMap<NodeId, Vec<(AuditAnchor, u64)>>, (n, a, at)| {
                    m.entry(n).or_default().push((a, at));
                    m
                },
            ),
            claims: image.schema.iter().map(|e| e.change.id()).collect(),
            schema: schema_in_order(image.schema)?,
        })
    }
}

/// Schema changes as an image holds them, checked to be in order and within
/// the limits.
fn schema_in_order(entries: Vec<SchemaEntry>) -> Result<Vec<SchemaEntry>, ImageError> {
    if entries.len() > SCHEMA_CHANGES_MAX {
        return Err(ImageError::Unreadable(format!(
            "{} schema changes; at most {SCHEMA_CHANGES_MAX} are kept",
            entries.len()
        )));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 || e.change.claim.len() > SCHEMA_CLAIM_BYTES_MAX {
            return Err(ImageError::Unreadable(format!(
                "schema change {i} is out of order or too large"
            )));
        }
    }
    Ok(entries)
}

/// Why an enrolment image was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The image does not restore.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// It holds no epoch.
    #[error("the enrolment holds no epoch")]
    Empty,
    /// The cluster's first epoch is signed by administrators this node does
    /// not trust.
    #[error(
        "the cluster's first epoch is signed by administrator key {key}, which this node does not trust; add it to [control] administrators in node.toml if it is yours"
    )]
    Untrusted {
        /// The key.
        key: crate::epoch::AdminKey,
    },
}

impl ControlState {
    /// Restores a state from an enrolment image (an image that travels to a
    /// node that has no log yet: `sb cluster init`'s genesis, or a member's
    /// current chain), checking it as [`ControlState::from_image`] does and that
    /// the cluster's first epoch is signed only by administrators in `trusted`.
    ///
    /// # Errors
    /// The image does not restore, holds no epoch, or its first epoch's
    /// administrators are not all trusted.
    pub fn from_enrolment(
        bytes: &[u8],
        trusted: &[crate::epoch::AdminKey],
    ) -> Result<Self, EnrolmentError> {
        let s = Self::from_image(bytes)?;
        let chain = s.chain.as_ref().ok_or(EnrolmentError::Empty)?;
        let (first, _, _) = chain.get(Epoch(1)).ok_or(EnrolmentError::Empty)?;
        if let Some(key) = first.untrusted_administrator(trusted) {
            return Err(EnrolmentError::Untrusted { key });
        }
        Ok(s)
    }

    /// The command that publishes this state's first epoch with its
    /// documents: how a new log starts from `sb cluster init`'s genesis.
    /// `None` unless the state holds exactly one epoch.
    #[must_use]
    pub fn genesis(&self) -> Option<Command> {
        let chain = self.chain.as_ref()?;
        if chain.current().number != Epoch(1) {
            return None;
        }
        let (_, signed, _) = chain.get(Epoch(1))?;
        Some(Command::Publish {
            epoch: signed.clone(),
            documents: self.document_bytes(),
        })
    }

    /// The current epoch's documents, as they travel.
    fn document_bytes(&self) -> Vec<ByteBuf> {
        self.documents
            .values()
            .cloned()
            .map(ByteBuf::from)
            .collect()
    }

    /// Every published epoch, oldest first, with where it stands.
    #[must_use]
    pub fn epoch_lines(&self) -> Vec<crate::wire::EpochLine> {
        let Some(chain) = self.chain.as_ref() else {
            return Vec::new();
        };
        (1..=chain.current().number.0)
            .filter_map(|n| {
                let (r, _, hash) = chain.get(Epoch(n))?;
                Some(crate::wire::EpochLine {
                    number: r.number,
                    hash,
                    note: r.note.clone(),
                    created_us: r.created_us,
                    forced: r.forced.is_some(),
                    state: self.epoch_state(r.number)?,
                })
            })
            .collect()
    }
}

/// Starts a chain from the log's first epoch: signed by its own administrators.
/// Whether those are administrators this node trusts is the node's own check,
/// made outside the log so that every member applies the log alike.
fn start(first: &SignedEpoch) -> Result<EpochChain, EpochError> {
    let record = first.read()?;
    EpochChain::start(record.cluster, first.clone(), &record.administrators.keys)
}
