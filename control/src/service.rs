//! A node's control service: its member of the log, what it answers peers and
//! administrators, and the duties it performs on its own (reporting the epoch
//! it applied, observing its peers under it, and, as leader, keeping the log's
//! voters those of the current epoch's membership).
//!
//! The service is the same whatever carries its messages: `sbnode` gives it
//! the QUIC peer endpoint, tests and the simulation give it [`Loopback`].
//!
//! [`Loopback`]: crate::log::net::Loopback

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use scratchbird_net::verify::Role;
use scratchbird_types::{ClusterId, Epoch, NodeId};
use serde_bytes::ByteBuf;

use crate::epoch::{AdminKey, EpochHash};
use crate::log::member::{ControlMember, SubmitError};
use crate::log::net::{Transport, TransportError, serve};
use crate::log::{MemberId, PeerAddr};
use crate::members;
use crate::state::{AuditAnchor, Command, ControlState, Observation, Outcome, Report};
use crate::wire::{AdminAnswer, AdminMessage, PeerAnswer, PeerMessage, Status};

/// What a node's transport saw of a peer's certificate chain on its last
/// connection to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The cluster in the certificate.
    pub cluster: ClusterId,
    /// The fingerprint of the root that issued it.
    pub issuer: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

/// What the service needs of its transport beyond carrying messages: the
/// certificate a peer presented, for observations.
pub trait Observer: Transport {
    /// The certificate `to` presented on the transport's connection to it, if
    /// there is one.
    fn certificate(&self, to: MemberId) -> Option<PeerCertificate>;
}

/// How long a command forwarded to the leader may take, leader changes
/// included.
pub const SUBMIT_DEADLINE: Duration = Duration::from_secs(10);

/// A node's control service.
pub struct Service<T: Observer> {
    me: NodeId,
    member: ControlMember,
    transport: Arc<T>,
    /// What this node last reported: the epoch it applied, and the peers it
    /// observed under it.
    reported: Mutex<Reported>,
    /// The clock observations are stamped with (µs since 1970).
    now_us: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The administrator keys this node trusts to have signed the cluster's
    /// first epoch (`None`: no anchor of its own, as in tests of the log).
    trusted: Option<Vec<AdminKey>>,
    /// With [`Service::confirming`]: the epoch whose configuration the node
    /// has put in force (`None` until it has). Without, the log's current
    /// epoch counts as applied as soon as the log has applied it.
    running: Option<Mutex<Option<(Epoch, EpochHash)>>>,
    /// What the node checks of a command beyond the log's rules, as leader,
    /// before it costs the log an entry (a bundle that does not load, say:
    /// the control crate cannot read bundles, the node can).
    validate: Option<Validator>,
    /// Where the node's execution-audit head comes from (set once the trail
    /// is open): anchored in the log every [`ANCHOR_EVERY_US`] when it moved.
    audit_head: Mutex<Option<AuditHeadSource>>,
    /// What each node sending commands here may still send.
    allowances: Mutex<BTreeMap<NodeId, Allowance>>,
}

/// The node's execution-audit trail, as anchoring needs it.
pub trait AuditTrail: Send + Sync {
    /// Its last record's position and hash (`None` while empty).
    fn tip(&self) -> Option<(u64, [u8; 32])>;
    /// Whether it holds record `seq` with hash `hash`.
    ///
    /// # Errors
    /// The trail cannot be read.
    fn holds(&self, seq: u64, hash: [u8; 32]) -> Result<bool, String>;
}

/// The node's audit trail, shared.
pub type AuditHeadSource = Arc<dyn AuditTrail>;

/// How far ahead of the leader's clock an epoch's creation time may be.
pub const CLOCK_AHEAD_US: i64 = 300_000_000;

/// How often a node anchors its audit head in the log, when it moved.
pub const ANCHOR_EVERY_US: i64 = 5_000_000;

/// Commands one node may send the leader in a burst ([`SUBMITS_PER_SEC`] more
/// each second): a node's duties send a few a second at most, so more is a
/// node gone wrong or an administrator's commands in a loop, and the leader
/// refuses them (`CONTROL_RATE_LIMITED`) rather than let one member fill the
/// log.
pub const SUBMITS_BURST: u32 = 64;

/// The steady rate of commands one node may send the leader.
pub const SUBMITS_PER_SEC: u32 = 16;

/// The senders whose rate is kept (every member fits many times over).
const SENDERS_MAX: usize = 4_096;

/// A sender's allowance: commands it may still send, and when it was counted.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    /// In millionths of a command.
    left: u64,
    at_us: i64,
}

/// A node's own check of a command ([`Service::validating`]).
pub type Validator =
    Arc<dyn Fn(&ControlState, &Command) -> Result<(), (String, String)> + Send + Sync>;

/// How often a node says hello again to a peer it has observed, to see whether
/// its certificate changed (a new one is reported; the same one is not).
pub const HELLO_AGAIN_US: i64 = 2_000_000;

#[derive(Default)]
struct Reported {
    applied: Option<(Epoch, EpochHash)>,
    /// The audit head last anchored, and when it was tried.
    anchored: Option<(u64, [u8; 32])>,
    anchor_tried_us: i64,
    /// Whether the local trail was found to hold the log's last anchor of
    /// this node (checked once per start): `Some(Err)` when it does not, and
    /// the node anchors nothing more.
    trail_checked: Option<Result<(), String>>,
    /// What was reported of each peer under an epoch, and when it was last
    /// greeted.
    observed: BTreeMap<(Epoch, NodeId), Seen>,
}

struct Seen {
    certificate: PeerCertificate,
    greeted_us: i64,
}

impl<T: Observer> std::fmt::Debug for Service<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn refused(code: &str, message: impl Into<String>) -> PeerAnswer {
    PeerAnswer::Refused {
        code: code.into(),
        message: message.into(),
        leader: None,
    }
}

impl<T: Observer> Service<T> {
    /// The service of node `me`, over its started member and transport;
    /// `now_us` stamps its observations.
    pub fn new(
        me: NodeId,
        member: ControlMember,
        transport: Arc<T>,
        now_us: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        Self {
            me,
            member,
            transport,
            reported: Mutex::default(),
            now_us,
            trusted: None,
            running: None,
            validate: None,
            audit_head: Mutex::new(None),
            allowances: Mutex::default(),
        }
    }

    /// Takes one command from `from`'s allowance ([`SUBMITS_BURST`],
    /// refilled at [`SUBMITS_PER_SEC`] on this node's clock).
    ///
    /// # Errors
    /// The allowance is spent: how long until the next command is taken.
    fn allow(&self, from: NodeId) -> Result<(), String> {
        // one command is a million units; a microsecond refills
        // SUBMITS_PER_SEC of them, so nothing is lost to rounding
        const UNIT: u64 = 1_000_000;
        let full = u64::from(SUBMITS_BURST) * UNIT;
        let now = (self.now_us)();
        let mut all = lock(&self.allowances);
        if all.len() >= SENDERS_MAX && !all.contains_key(&from) {
            // senders are authenticated members; so many means a churn of
            // members, and a fresh count for all is the safe side of it
            all.clear();
        }
        let a = all.entry(from).or_insert(Allowance {
            left: full,
            at_us: now,
        });
        let elapsed_us = u64::try_from(now.saturating_sub(a.at_us)).unwrap_or(0);
        a.left = a
            .left
            .saturating_add(elapsed_us.saturating_mul(u64::from(SUBMITS_PER_SEC)))
            .min(full);
        a.at_us = a.at_us.max(now);
        if a.left < UNIT {
            let wait_ms = (UNIT - a.left) / u64::from(SUBMITS_PER_SEC) / 1_000;
            return Err(format!(
                "node {from} sent more than {SUBMITS_BURST} commands at once ({SUBMITS_PER_SEC} a second are taken): the next is taken in {} ms",
                wait_ms.max(1)
            ));
        }
        a.left -= UNIT;
        Ok(())
    }

    /// The node reports an epoch applied, and answers peers' hellos with it,
    /// only once it says it has put that epoch's configuration in force
    /// ([`Service::set_running`]): a node that cannot load an epoch's bundle
    /// or roots never counts toward its convergence.
    #[must_use]
    pub fn confirming(mut self) -> Self {
        self.running = Some(Mutex::new(None));
        self
    }

    /// As leader, checks every command with `check` too (its error: a code
    /// and a message) before it is put in the log.
    #[must_use]
    pub fn validating(mut self, check: Validator) -> Self {
        self.validate = Some(check);
        self
    }

    /// Anchors the head `source` gives in the log from now on.
    pub fn anchor_audit(&self, source: AuditHeadSource) {
        *lock(&self.audit_head) = Some(source);
    }

    /// The node now runs epoch `epoch` (with [`Service::confirming`]).
    pub fn set_running(&self, epoch: Epoch, hash: EpochHash) {
        if let Some(r) = &self.running {
            *lock(r) = Some((epoch, hash));
        }
    }

    /// The epoch whose configuration this node runs: the one it confirmed,
    /// or without confirmation the log's current one.
    #[must_use]
    pub fn running(&self) -> (Epoch, EpochHash) {
        match &self.running {
            Some(r) => lock(r).unwrap_or((Epoch(0), EpochHash::NONE)),
            None => self.current(),
        }
    }

    /// This node trusts only `keys` to have signed the cluster's first epoch:
    /// as leader it refuses a first epoch signed by any other key, and it
    /// follows the membership of a log only when that log's first epoch is
    /// signed by them.
    #[must_use]
    pub fn trusting(mut self, keys: Vec<AdminKey>) -> Self {
        self.trusted = Some(keys);
        self
    }

    /// Whether the log's chain starts with a first epoch this node trusts
    /// (`Ok(false)`: no chain yet).
    ///
    /// # Errors
    /// The first epoch is signed by a key this node does not trust.
    pub fn trusts_log(&self) -> Result<bool, String> {
        let a = self.member.applied();
        let Some(chain) = a.state.chain() else {
            return Ok(false);
        };
        let Some(trusted) = &self.trusted else {
            return Ok(true);
        };
        let Some((first, _, _)) = chain.get(Epoch(1)) else {
            return Err("the log's chain has no first epoch".into());
        };
        match first.untrusted_administrator(trusted) {
            Some(k) => Err(format!(
                "the control log's first epoch is signed by administrator key {k}, which this node does not trust (security.trusted_keys): refusing the log's configuration"
            )),
            None => Ok(true),
        }
    }

    /// Puts a command in the log, as leader: first everything committed is
    /// applied here (a linearizable read), then the command is checked against
    /// that state, so that a command that breaks a rule never costs the log an
    /// entry; the log checks it again as it applies it.
    async fn commit(&self, command: Command) -> Result<(u64, Outcome), SubmitError> {
        if self.member.linearize().await.is_err() {
            return Err(SubmitError::NotLeader {
                leader: self.member.leader().and_then(|l| {
                    let m = self.member.raft().metrics().borrow().clone();
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|a| (l, a.clone()))
                }),
            });
        }
        // an epoch made in the future would move the chain's clock (each
        // record is made no earlier than the one before) and the CA
        // cutover's stability window ahead of time
        if let Command::Publish { epoch, .. } = &command
            && let Ok(r) = epoch.read()
            && r.created_us > (self.now_us)().saturating_add(CLOCK_AHEAD_US)
        {
            return Err(SubmitError::Refused {
                code: "CONTROL_CLOCK_AHEAD".into(),
                message: format!(
                    "epoch {} was made {} s ahead of the leader's clock (at most {} s is taken): check the signer's clock",
                    r.number.0,
                    (r.created_us - (self.now_us)()) / 1_000_000,
                    CLOCK_AHEAD_US / 1_000_000
                ),
            });
        }
        {
            let a = self.member.applied();
            if let Err(e) = a.state.precheck(&command, self.trusted.as_deref()) {
                return Err(SubmitError::Refused {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                });
            }
            if let Some(check) = &self.validate
                && let Err((code, message)) = check(&a.state, &command)
            {
                return Err(SubmitError::Refused { code, message });
            }
        }
        self.member
            .submit(command)
            .await
            .map(|(id, outcome)| (id.index, outcome))
    }

    /// This node's member of the log.
    #[must_use]
    pub const fn member(&self) -> &ControlMember {
        &self.member
    }

    /// Answers a message from the authenticated node `from`.
    pub async fn peer(&self, from: NodeId, message: PeerMessage) -> PeerAnswer {
        match message {
            PeerMessage::Raft(r) => PeerAnswer::Raft(Box::new(
                serve(self.member.raft(), MemberId::of(from), r).await,
            )),
            PeerMessage::Submit(command) => {
                if let Err(why) = self.allow(from) {
                    return refused("CONTROL_RATE_LIMITED", why);
                }
                if let Command::Report { from: claimed, .. } | Command::Schema { from: claimed, .. } =
                    &command
                    && *claimed != from
                {
                    return refused(
                        "NOT_SENDER",
                        format!("node {from} sent a command in the name of node {claimed}"),
                    );
                }
                match self.commit(command).await {
                    Ok((index, outcome)) => PeerAnswer::Committed { index, outcome },
                    Err(SubmitError::Refused { code, message }) => refused(&code, message),
                    Err(SubmitError::NotLeader { leader }) => PeerAnswer::Refused {
                        code: "NOT_LEADER".into(),
                        message: "this member is not the control log's leader".into(),
                        leader: leader.map(|(m, a)| (m.node(), a.addr)),
                    },
                    Err(e) => refused("NOT_COMMITTED", e.to_string()),
                }
            }
            PeerMessage::Hello { .. } => {
                let (epoch, hash) = self.running();
                PeerAnswer::Hello { epoch, hash }
            }
        }
    }

    /// The epoch this node has applied (0 and no hash before the first).
    #[must_use]
    pub fn current(&self) -> (Epoch, EpochHash) {
        let a = self.member.applied();
        a.state.chain().map_or((Epoch(0), EpochHash::NONE), |c| {
            (c.current().number, c.current_hash())
        })
    }

    /// Commits a command through the leader, wherever it is: here, or
    /// forwarded over the transport, following leader changes until
    /// [`SUBMIT_DEADLINE`].
    ///
    /// # Errors
    /// No leader accepted it in time, or it is too large.
    pub async fn submit(&self, command: Command) -> Result<(u64, Outcome), SubmitError> {
        let deadline = tokio::time::Instant::now() + SUBMIT_DEADLINE;
        let mut last = SubmitError::NotLeader { leader: None };
        while tokio::time::Instant::now() < deadline {
            // a leader cut off from its quorum neither commits nor says so:
            // the deadline bounds the wait
            let Ok(tried) = tokio::time::timeout_at(deadline, self.commit(command.clone())).await
            else {
                return Err(SubmitError::Stopped(format!(
                    "no quorum of the log's voters confirmed the command within {} s (a partition, or too few voters running); whether it will still commit is unknown: check sb cluster status before trying again",
                    SUBMIT_DEADLINE.as_secs()
                )));
            };
            match tried {
                Ok(done) => return Ok(done),
                Err(SubmitError::NotLeader {
                    leader: Some((to, addr)),
                }) if to != MemberId::of(self.me) => {
                    match self
                        .transport
                        .call(
                            MemberId::of(self.me),
                            to,
                            &addr,
                            PeerMessage::Submit(command.clone()),
                        )
                        .await
                    {
                        Ok(PeerAnswer::Committed { index, outcome }) => {
                            return Ok((index, outcome));
                        }
                        Ok(PeerAnswer::Refused { code, message, .. }) if code != "NOT_LEADER" => {
                            return Err(SubmitError::Refused { code, message });
                        }
                        Ok(_) => {
                            last = SubmitError::NotLeader {
                                leader: Some((to, addr)),
                            };
                        }
                        Err(
                            e
                            @ (TransportError::Unreachable { .. } | TransportError::Failed { .. }),
                        ) => {
                            last = SubmitError::Stopped(e.to_string());
                        }
                    }
                }
                Err(e @ SubmitError::NotLeader { .. }) => last = e,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// Answers an administrator's command.
    pub async fn admin(&self, message: AdminMessage) -> AdminAnswer {
        match message {
            AdminMessage::Status => AdminAnswer::Status(Box::new(self.status())),
            AdminMessage::Chain => match self.member.applied().state.chain_image() {
                Ok(image) => AdminAnswer::Chain(ByteBuf::from(image)),
                Err(e) => AdminAnswer::Refused {
                    code: "CONTROL_INTERNAL".into(),
                    message: e.to_string(),
                },
            },
            AdminMessage::Publish { epoch, documents } => {
                match self.submit(Command::Publish { epoch, documents }).await {
                    Ok((index, outcome)) => AdminAnswer::Published { index, outcome },
                    Err(SubmitError::Refused { code, message }) => {
                        AdminAnswer::Refused { code, message }
                    }
                    Err(e) => AdminAnswer::Refused {
                        code: "NOT_COMMITTED".into(),
                        message: e.to_string(),
                    },
                }
            }
        }
    }

    /// Where the cluster stands, as this member sees it.
    #[must_use]
    pub fn status(&self) -> Status {
        let m = self.member.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<MemberId> = membership.voter_ids().collect();
        let a = self.member.applied();
        Status {
            answered_by: self.me,
            leader: m.current_leader.map(MemberId::node),
            term: m.current_term,
            log_members: membership
                .nodes()
                .map(|(id, addr)| (id.node(), addr.addr.clone(), voters.contains(id)))
                .collect(),
            applied_index: m.last_applied.map(|l| l.index),
            epochs: a.state.epoch_lines(),
            members: a.state.members().cloned(),
            applied_by: a
                .state
                .applied_by()
                .iter()
                .map(|(n, (e, _))| (*n, *e))
                .collect(),
            observed: a
                .state
                .observations()
                .iter()
                .flat_map(|(peer, by)| by.iter().map(|(o, ob)| (*o, *peer, ob.issuer.clone())))
                .collect(),
            gate: None,
            anchors: a
                .state
                .anchors()
                .iter()
                .filter_map(|(n, kept)| {
                    let (an, at) = kept.last()?;
                    Some((*n, an.seq, scratchbird_types::hex(&an.hash), an.at_us, *at))
                })
                .collect(),
            churn: Vec::new(),
            schema_changes: a.state.schema_len(),
            schema_applied: None,
            unreachable: Vec::new(),
        }
    }

    /// One round of the node's duties: as leader, make the log's voters and
    /// learners those of the current epoch's membership; report the epoch
    /// applied; observe each enabled peer under it. Each step that fails is
    /// tried again next round; what failed is returned for the node's log.
    pub async fn duties(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.reconcile().await {
            problems.push(format!("keeping the log's voters: {e}"));
        }
        let (epoch, hash) = self.current();
        if epoch == Epoch(0) || !self.enabled() {
            return problems;
        }
        lock(&self.reported)
            .observed
            .retain(|(e, _), _| *e == epoch);
        let due =
            lock(&self.reported).applied != Some((epoch, hash)) && self.running() == (epoch, hash);
        if due {
            match self
                .submit(Command::Report {
                    from: self.me,
                    report: Report::Applied { epoch, hash },
                })
                .await
            {
                Ok((_, Outcome::Refused { code, message })) => {
                    problems.push(format!("reporting epoch {}: {code}: {message}", epoch.0));
                }
                Ok(_) => lock(&self.reported).applied = Some((epoch, hash)),
                Err(e) => problems.push(format!("reporting epoch {}: {e}", epoch.0)),
            }
        }
        let now = (self.now_us)();
        for (peer, addr) in self.peers() {
            let greet = lock(&self.reported)
                .observed
                .get(&(epoch, peer))
                .is_none_or(|s| now.saturating_sub(s.greeted_us) >= HELLO_AGAIN_US);
            if greet && let Err(e) = self.observe(peer, &addr, epoch, hash).await {
                problems.push(format!("observing node {peer}: {e}"));
            }
        }
        if let Err(e) = self.anchor(now).await {
            problems.push(format!("anchoring the audit trail's head: {e}"));
        }
        problems
    }

    /// Anchors the node's audit head in the log, if it moved and the last
    /// try was [`ANCHOR_EVERY_US`] ago.
    async fn anchor(&self, now: i64) -> Result<(), String> {
        let Some(source) = lock(&self.audit_head).clone() else {
            return Ok(());
        };
        let checked = lock(&self.reported).trail_checked.clone();
        match checked {
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
            None => {
                // the trail this process appends to must continue the one the
                // log anchored: a trail replaced or rewritten since never
                // overwrites the evidence
                let anchored = self
                    .member
                    .applied()
                    .state
                    .anchors()
                    .get(&self.me)
                    .and_then(|k| k.last().cloned());
                let verdict = match anchored {
                    None => Ok(()),
                    Some((a, at)) => match source.holds(a.seq, a.hash) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(format!(
                            "this node's audit trail does not hold record {} as the control log anchored it (log index {at}): the trail was rewritten or replaced; not anchoring it (sb audit spine verify --data shows it)",
                            a.seq
                        )),
                        Err(e) => return Err(format!("reading the audit trail: {e}")),
                    },
                };
                lock(&self.reported).trail_checked = Some(verdict.clone());
                verdict?;
            }
        }
        let Some((seq, hash)) = source.tip() else {
            return Ok(());
        };
        {
            let mut r = lock(&self.reported);
            if r.anchored == Some((seq, hash))
                || now.saturating_sub(r.anchor_tried_us) < ANCHOR_EVERY_US
            {
                return Ok(());
            }
            r.anchor_tried_us = now;
        }
        self.report(Report::AuditHead(AuditAnchor {
            seq,
            hash,
            at_us: now,
        }))
        .await?;
        lock(&self.reported).anchored = Some((seq, hash));
        Ok(())
    }

    /// Commits a report of this node's own through the leader.
    async fn report(&self, report: Report) -> Result<(), String> {
        match self
            .submit(Command::Report {
                from: self.me,
                report,
            })
            .await
        {
            Ok((_, Outcome::Refused { code, message })) => Err(format!("[{code}] {message}")),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn enabled(&self) -> bool {
        let a = self.member.applied();
        a.state
            .members()
            .and_then(|l| members::node(l, self.me))
            .is_some_and(|n| n.enabled)
    }

    /// The enabled peers of the current epoch that have a peer address.
    fn peers(&self) -> Vec<(NodeId, PeerAddr)> {
        let a = self.member.applied();
        a.state.members().map_or_else(Vec::new, |l| {
            members::enabled_nodes(l)
                .filter(|n| n.id != self.me)
                .filter_map(|n| n.peer.clone().map(|addr| (n.id, PeerAddr { addr })))
                .collect()
        })
    }

    async fn observe(
        &self,
        peer: NodeId,
        addr: &PeerAddr,
        epoch: Epoch,
        hash: EpochHash,
    ) -> Result<(), String> {
        let to = MemberId::of(peer);
        let answer = self
            .transport
            .call(
                MemberId::of(self.me),
                to,
                addr,
                PeerMessage::Hello { epoch, hash },
            )
            .await
            .map_err(|e| e.to_string())?;
        match answer {
            PeerAnswer::Hello { epoch: e, hash: h } if (e, h) == (epoch, hash) => {}
            PeerAnswer::Hello { epoch: e, .. } => {
                return Err(format!("it runs epoch {}, not {}", e.0, epoch.0));
            }
            other => return Err(format!("it answered {other:?}")),
        }
        let cert = self
            .transport
            .certificate(to)
            .ok_or("the transport kept no certificate of it")?;
        let now = (self.now_us)();
        {
            let mut r = lock(&self.reported);
            if let Some(seen) = r.observed.get_mut(&(epoch, peer))
                && seen.certificate == cert
            {
                // the same certificate as reported: nothing new for the log
                seen.greeted_us = now;
                return Ok(());
            }
        }
        let report = Report::Observed(Observation {
            peer,
            epoch,
            hash,
            cluster: cert.cluster,
            issuer: cert.issuer.clone(),
            not_after: cert.not_after,
            at_us: now,
        });
        self.report(report).await?;
        lock(&self.reported).observed.insert(
            (epoch, peer),
            Seen {
                certificate: cert,
                greeted_us: now,
            },
        );
        Ok(())
    }

    /// As leader, makes the log's voters and learners those of the current
    /// epoch's membership: enabled nodes with the voter role (and a peer
    /// address) vote; enabled learners follow; the rest are removed.
    async fn reconcile(&self) -> Result<(), String> {
        // only the membership of a log this node trusts decides the voters
        if !self.trusts_log()? {
            return Ok(());
        }
        let raft = self.member.raft();
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(MemberId::of(self.me)) {
            return Ok(());
        }
        let (want_voters, want_learners) = {
            let a = self.member.applied();
            let Some(list) = a.state.members() else {
                return Ok(());
            };
            let mut voters = BTreeMap::new();
            let mut learners = BTreeMap::new();
            for n in members::enabled_nodes(list) {
                let Some(addr) = n.peer.clone() else { continue };
                if n.roles.contains(&Role::Voter) {
                    voters.insert(MemberId::of(n.id), PeerAddr { addr });
                } else if n.roles.contains(&Role::Learner) {
                    learners.insert(MemberId::of(n.id), PeerAddr { addr });
                }
            }
            (voters, learners)
        };
        if want_voters.is_empty() {
            return Ok(());
        }
        let have = m.membership_config.membership().clone();
        let have_voters: BTreeSet<MemberId> = have.voter_ids().collect();
        let have_nodes: BTreeSet<MemberId> = have.nodes().map(|(id, _)| *id).collect();
        for (id, addr) in want_voters.iter().chain(want_learners.iter()) {
            if !have_nodes.contains(id) {
                raft.add_learner(*id, addr.clone(), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let target: BTreeSet<MemberId> = want_voters.keys().copied().collect();
        let learners_ok = have
            .learner_ids()
            .all(|l| want_learners.contains_key(&l) || want_voters.contains_key(&l));
        if target != have_voters || !learners_ok {
            // Voters not wanted and learners no longer members are removed
            // (retain = false); joint consensus keeps a quorum throughout.
            let keep: BTreeSet<MemberId> = target
                .iter()
                .copied()
                .chain(want_learners.keys().copied())
                .collect();
            raft.change_membership(target, false)
                .await
                .map_err(|e| e.to_string())?;
            let after = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .clone();
            let stray: Vec<MemberId> = after
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| !keep.contains(id))
                .collect();
            if !stray.is_empty() {
                raft.change_membership(
                    openraft::ChangeMembers::RemoveNodes(stray.into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
