//! The control plane in `sbnode` (`[control]` in node.toml): the node's member
//! of the replicated log over the QUIC peer endpoint, the membership the node
//! enforces taken from the log's current epoch (the members file is not read),
//! and the node's duties (reporting the epoch it applied, observing its peers,
//! as leader keeping the log's voters those of the epoch).

use super::*;
use scratchbird_control::log::member::{ControlMember, LogConfig};
use scratchbird_control::log::net::{Transport, TransportError};
use scratchbird_control::log::{MemberId, PeerAddr};
use scratchbird_control::service::{Observer, PeerCertificate, Service};
use scratchbird_control::state::ControlState;
use scratchbird_control::state::EpochState;
use scratchbird_control::wire::{self, AdminAnswer, AdminMessage, PeerAnswer, PeerMessage};
use scratchbird_control::{AdminKey, Documents, EpochHash};
use scratchbird_net::client::Client;
use scratchbird_policy::Bundle;
use scratchbird_types::{Epoch, NodeId};

/// How long one message to a peer may take, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the node syncs its membership from the log and does its duties.
const TICK: Duration = Duration::from_millis(250);

/// The node's control plane.
pub(super) struct ControlPlane {
    pub(super) service: Service<QuicPeers>,
    transport: Arc<QuicPeers>,
    /// The log stopped (a storage error): nobody is admitted any more.
    failed: AtomicBool,
    /// The enrolment's state: the configuration until the log holds an epoch.
    enrolment: ControlState,
    /// Peers statements could not reach, when, and why.
    unreachable: Mutex<HashMap<scratchbird_types::NodeId, (Instant, String)>>,
    /// The epoch configuration this node runs.
    running: Mutex<Option<Running>>,
    /// Why the log's current epoch could not be put in force (its bundle does
    /// not load, its token fingerprint is not this node's secret's): the node
    /// serves nobody while this is set.
    apply_error: Mutex<Option<String>>,
    /// Wakes the duties at once when an epoch was put in force (reporting it
    /// need not wait for their next tick).
    nudge: tokio::sync::Notify,
    /// The node's shard, once it exists: as leader, a schema change's claim
    /// and the bundle's grant are checked on it before the change costs an
    /// entry.
    shard: Arc<std::sync::OnceLock<std::sync::Weak<Shard>>>,
    /// The node's schema changes, once they exist: as leader, a change is
    /// checked only once the node has applied the log's earlier ones.
    schema: Arc<std::sync::OnceLock<std::sync::Weak<super::schema::NodeSchema>>>,
}

/// What the node runs of an epoch.
#[derive(Debug, Clone)]
pub(super) struct Running {
    pub epoch: Epoch,
    pub hash: EpochHash,
    /// The CA policy document's hash.
    pub ca_policy: [u8; 32],
    /// The bundle document's hash (the bundle's hash).
    pub bundle: [u8; 32],
}

/// The configuration an epoch gives a node: the roots it trusts, the bundle
/// it enforces, the token secret it must hold.
pub(super) struct EpochConfig {
    pub epoch: Epoch,
    pub hash: EpochHash,
    pub ca_policy: [u8; 32],
    pub trust: Trust,
    /// The bundle, loaded from the epoch's canonical bytes (`None`: the same
    /// bundle as `reuse` was given).
    pub bundle: Option<Arc<Bundle>>,
    pub bundle_hash: [u8; 32],
    pub token_fingerprint: [u8; 32],
}

/// Reads and checks `[control] enrolment` against the trusted administrator
/// keys.
pub(super) fn read_enrolment(cfg: &NodeConfig) -> Result<ControlState, String> {
    let path = cfg
        .control
        .as_ref()
        .and_then(|c| c.enrolment.as_ref())
        .ok_or("[control] enrolment is not set")?;
    let bytes = std::fs::read(path)
        .map_err(|e| format!("reading the enrolment {}: {e}", path.display()))?;
    ControlState::from_enrolment(&bytes, &trusted_keys(cfg)?)
        .map_err(|e| format!("the enrolment {} is refused: {e}", path.display()))
}

fn trusted_keys(cfg: &NodeConfig) -> Result<Vec<AdminKey>, String> {
    Ok(AdminTrust::from_files(&cfg.security.trusted_keys)
        .map_err(|e| format!("the trusted administrator keys: {e}"))?
        .verifying_keys()
        .map(|k| AdminKey(k.to_bytes()))
        .collect())
}

/// The CA roots of `state`'s current epoch.
pub(super) fn trust_of(
    state: &ControlState,
    cluster: scratchbird_types::ClusterId,
) -> Result<Trust, String> {
    let epoch = state.epoch().0;
    state
        .ca_policy()
        .ok_or_else(|| format!("epoch {epoch} holds no readable CA policy"))?
        .trust(cluster)
        .map_err(|e| format!("epoch {epoch}'s CA policy: {e}"))
}

/// The configuration of `state`'s current epoch; the bundle is loaded only
/// when its hash is not `reuse`'s.
fn config_of(
    state: &ControlState,
    cluster: scratchbird_types::ClusterId,
    reuse: Option<[u8; 32]>,
) -> Result<EpochConfig, String> {
    let chain = state.chain().ok_or("no epoch yet")?;
    let record = chain.current();
    let epoch = record.number;
    let trust = trust_of(state, cluster)?;
    let bundle_hash = record.documents.bundle;
    let bundle = if reuse == Some(bundle_hash) {
        None
    } else {
        if bundle_hash == Documents::empty_hash() {
            return Err(format!(
                "epoch {} names no security bundle: publish one (sb cluster bundle publish DIR)",
                epoch.0
            ));
        }
        let bytes = state
            .document(&bundle_hash)
            .ok_or_else(|| format!("epoch {} holds no security bundle document", epoch.0))?;
        let b = Bundle::from_canonical(bytes, &format!("epoch {}", epoch.0))
            .map_err(|e| format!("epoch {}'s security bundle does not load: {e}", epoch.0))?;
        Some(Arc::new(b))
    };
    Ok(EpochConfig {
        epoch,
        hash: chain.current_hash(),
        ca_policy: record.documents.ca_policy,
        trust,
        bundle,
        bundle_hash,
        token_fingerprint: record.token_fingerprint,
    })
}

/// A schema change, as leader: the user's claim (signed for the coordinator
/// that sent it, within its window) and the bundle's grant, checked on this
/// node's shard before the change costs an entry. Every node then applies
/// what the log took without deciding again.
fn check_schema(
    state: &ControlState,
    command: &scratchbird_control::state::Command,
    shard: &std::sync::OnceLock<std::sync::Weak<Shard>>,
    now_us: i64,
) -> Result<(), (String, String)> {
    let scratchbird_control::state::Command::Schema { from, change } = command else {
        return Ok(());
    };
    let Some(chain) = state.chain() else {
        return Ok(()); // the log's own rules refuse it, by name
    };
    let Some(shard) = shard.get().and_then(std::sync::Weak::upgrade) else {
        return Err((
            "CONTROL_NOT_READY".into(),
            "this node is still starting: its shard cannot check schema changes yet; retry".into(),
        ));
    };
    let coordinator = NodeName::new(chain.current().cluster, *from);
    let refused = |e: HostError| (e.code().to_owned(), e.to_string());
    let claim = scratchbird_host::envelope::SchemaClaim::decode(&change.claim).map_err(refused)?;
    // what the log records of the claim must be the claim's
    if claim.id().map_err(refused)? != change.id
        || scratchbird_host::envelope::user_name(&claim.attestation) != change.user
    {
        return Err((
            "REFUSED".into(),
            "the schema change's id or user is not its claim's".into(),
        ));
    }
    shard
        .authorize_schema(&claim, &coordinator, now_us)
        .map(|_| ())
        .map_err(refused)
}

/// The node's own checks of an epoch it is asked to publish, as leader: the
/// bundle it names loads (the log itself cannot read bundles), and the token
/// secret's fingerprint is the current epoch's (a cluster's tokens never
/// change: a new secret would make every stored token differ).
fn validate(
    state: &ControlState,
    command: &scratchbird_control::state::Command,
) -> Result<(), (String, String)> {
    let scratchbird_control::state::Command::Publish { epoch, documents } = command else {
        return Ok(());
    };
    let refused = |code: &str, m: String| Err((code.to_owned(), m));
    let Ok(record) = epoch.read() else {
        return Ok(()); // the log's own rules refuse it, by name
    };
    if let Some(chain) = state.chain()
        && chain.current().token_fingerprint != record.token_fingerprint
    {
        return refused(
            "CONTROL_TOKEN_SECRET",
            format!(
                "epoch {} names another token secret than epoch {}: a cluster's token secret never changes (every token stored would differ)",
                record.number.0,
                chain.current().number.0
            ),
        );
    }
    let sent = documents
        .iter()
        .find(|d| Documents::hash(d) == record.documents.bundle);
    let bytes = match sent {
        Some(d) => d.as_slice(),
        None if state.document(&record.documents.bundle).is_some() => return Ok(()),
        None if record.documents.bundle == Documents::empty_hash() => {
            return refused(
                "CONTROL_BUNDLE",
                format!(
                    "epoch {} names no security bundle: every node serves under one",
                    record.number.0
                ),
            );
        }
        None => return Ok(()), // CONTROL_DOCUMENT_MISSING, from the log's rules
    };
    match Bundle::from_canonical(bytes, &format!("epoch {}", record.number.0)) {
        Ok(_) => Ok(()),
        Err(e) => refused(
            "CONTROL_BUNDLE",
            format!(
                "epoch {}'s security bundle does not load: {e}",
                record.number.0
            ),
        ),
    }
}

/// Whether `secret` is the one the epoch's fingerprint names.
pub(super) fn check_token(config: &EpochConfig, secret: &TokenSecret) -> Result<(), String> {
    if Documents::hash(secret.bytes()) == config.token_fingerprint {
        Ok(())
    } else {
        Err(format!(
            "this node's token secret is not the one epoch {} names (its fingerprint differs): tokens would differ from its peers'; copy the cluster's token.secret to security.token_secret and restart",
            config.epoch.0
        ))
    }
}

/// The control log's transport over the peer endpoint: one client connection
/// per member, made with this node's certificate and pinned to the member's
/// node id.
pub(super) struct QuicPeers {
    identity: Arc<IdentityCell>,
    trust: Arc<Cell<Trust>>,
    limits: TransportLimits,
    env: Arc<dyn Env>,
    clients: Mutex<HashMap<MemberId, Arc<Client>>>,
    /// The membership in force: a peer it does not admit is not talked to.
    members: Arc<Members>,
    /// `[control] fault_file`: links cut for tests of partitions.
    faults: Option<PathBuf>,
}

/// The node's audit trail, as the control service anchors it.
pub(super) struct Trail(pub Arc<AuditLog>);

impl scratchbird_control::service::AuditTrail for Trail {
    fn tip(&self) -> Option<(u64, [u8; 32])> {
        self.0.tip()
    }

    fn holds(&self, seq: u64, hash: [u8; 32]) -> Result<bool, String> {
        self.0
            .hash_at(seq)
            .map(|h| h == Some(hash))
            .map_err(|e| e.to_string())
    }
}

/// Whether the link to `node` is cut by the fault file at `path` (tests of
/// partitions): the file lists node UUIDs, one per line. An unreadable file
/// cuts nothing.
pub(super) fn cut(path: Option<&Path>, node: scratchbird_types::NodeId) -> bool {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|t| t.lines().any(|l| l.trim() == node.to_string()))
}

impl QuicPeers {
    /// Forgets every connection (the membership changed: the next message
    /// connects afresh, checked under it).
    fn forget_all(&self) {
        lock(&self.clients).clear();
    }

    pub(super) async fn client(
        &self,
        to: MemberId,
        addr: &PeerAddr,
    ) -> Result<Arc<Client>, TransportError> {
        if let Some(c) = lock(&self.clients).get(&to) {
            return Ok(c.clone());
        }
        let unreachable = |why: String| TransportError::Unreachable { to, why };
        let sock = tokio::net::lookup_host(addr.addr.as_str())
            .await
            .map_err(|e| unreachable(format!("{}: {e}", addr.addr)))?
            .next()
            .ok_or_else(|| unreachable(format!("{} resolves to no address", addr.addr)))?;
        // a connection presents the certificate in force when it is made; one
        // made while this node renewed its certificate presents the old one
        // (the peer would check this node's new signatures against the old
        // key), so it is made again rather than kept
        for _ in 0..3 {
            let presented = self.identity.0.get().cert_der.clone();
            let c = Client::connect_as(
                sock,
                Some(self.identity.clone()),
                self.trust.clone(),
                &self.limits,
                Some(to.node()),
                self.env.clone(),
            )
            .await
            .map_err(|e| unreachable(e.to_string()))?;
            admit(&c.server, Expect::Node(None), Some(self.members.as_ref()))
                .map_err(|e| unreachable(format!("[{}] {e}", e.code())))?;
            // checked under the lock `forget_all` takes after a renewal: a
            // connection kept here is either of the new certificate or
            // forgotten by it
            let mut kept = lock(&self.clients);
            if self.identity.0.get().cert_der != presented {
                continue;
            }
            let c = Arc::new(c);
            kept.insert(to, c.clone());
            return Ok(c);
        }
        Err(unreachable(
            "this node's certificate kept changing while it connected".into(),
        ))
    }

    fn forget(&self, to: MemberId) {
        lock(&self.clients).remove(&to);
    }

    /// The connection to `to` kept now, if any.
    fn kept(&self, to: MemberId) -> Option<Arc<Client>> {
        lock(&self.clients).get(&to).cloned()
    }

    /// Forgets the connection to `to` if it is still `dead` (a newer one is
    /// kept).
    fn forget_dead(&self, to: MemberId, dead: &Arc<Client>) {
        let mut g = lock(&self.clients);
        if g.get(&to).is_some_and(|c| Arc::ptr_eq(c, dead)) {
            g.remove(&to);
        }
    }

    async fn exchange(
        &self,
        to: MemberId,
        addr: &PeerAddr,
        bytes: Vec<u8>,
    ) -> Result<PeerAnswer, TransportError> {
        let failed = |why: String| TransportError::Failed { to, why };
        let client = self.client(to, addr).await?;
        let mut r = client
            .send(&Request::ControlPlane(bytes))
            .await
            .map_err(|e| failed(e.to_string()))?;
        match r.next().await {
            Ok(Some(Response::ControlPlane(b))) => wire::decode(&b).map_err(failed),
            Ok(Some(Response::Error(e))) => Err(TransportError::Unreachable {
                to,
                why: format!("[{}] {}", e.code, e.message),
            }),
            Ok(other) => Err(failed(format!(
                "an answer that is not the control plane's: {other:?}"
            ))),
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

impl Transport for QuicPeers {
    async fn call(
        &self,
        _from: MemberId,
        to: MemberId,
        addr: &PeerAddr,
        message: PeerMessage,
    ) -> Result<PeerAnswer, TransportError> {
        if cut(self.faults.as_deref(), to.node()) {
            return Err(TransportError::Unreachable {
                to,
                why: "the link is cut ([control] fault_file)".into(),
            });
        }
        let bytes = wire::encode(&message).map_err(|why| TransportError::Failed { to, why })?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.exchange(to, addr, bytes))
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Failed {
                    to,
                    why: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                })
            });
        if answer.is_err() {
            // the next message connects afresh (the peer may have restarted,
            // or its certificate changed)
            self.forget(to);
        }
        answer
    }
}

impl Observer for QuicPeers {
    fn certificate(&self, to: MemberId) -> Option<PeerCertificate> {
        lock(&self.clients).get(&to).map(|c| PeerCertificate {
            cluster: c.server.uri.cluster,
            issuer: c.server.root.clone(),
            not_after: c.server.not_after,
        })
    }
}

/// What the control plane needs from the node's start.
pub(super) struct Parts<'a> {
    pub cfg: &'a NodeConfig,
    pub me: &'a SbUri,
    pub identity: Arc<IdentityCell>,
    pub trust: Arc<Cell<Trust>>,
    pub limits: TransportLimits,
    pub env: Arc<dyn Env>,
    /// The enrolment, read and checked ([`read_enrolment`]).
    pub enrolment: ControlState,
    /// The membership the node enforces (filled by the caller from what
    /// [`start`] returns, then kept the log's by [`run`]).
    pub members: Arc<Members>,
}

/// Starts the node's member of the control log and returns it with the
/// membership the node enforces from now: the log's current epoch, or the
/// enrolment's until the log holds one. With `bootstrap`, a log that is not
/// yet started is started here with this node alone, and the enrolment's first
/// epoch is published in it.
pub(super) async fn start(parts: Parts<'_>) -> Result<(ControlPlane, MembersList), String> {
    let Some(c) = parts.cfg.control.as_ref() else {
        return Err("no [control] section".into());
    };
    let node = parts
        .me
        .node_id()
        .ok_or("this node's certificate names no node id")?;
    let trusted = trusted_keys(parts.cfg)?;
    // openraft's election timeouts draw from the node's randomness
    scratchbird_control::log::runtime::set_source(parts.env.clone());
    let config = LogConfig {
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        election_timeout: (
            Duration::from_millis(c.election_timeout_ms),
            Duration::from_millis(c.election_timeout_ms * 2),
        ),
        ..LogConfig::default()
    };
    // a peer that vanished (killed, unplugged) is noticed within a few
    // seconds: the statements that need its shard fail then, not after the
    // clients' longer idle timeout
    let limits = TransportLimits {
        idle_timeout: parts.limits.idle_timeout.min(PEER_IDLE_MAX),
        keep_alive: parts.limits.keep_alive.min(PEER_IDLE_MAX / 4),
        ..parts.limits
    };
    let transport = Arc::new(QuicPeers {
        identity: parts.identity,
        trust: parts.trust,
        limits,
        env: parts.env.clone(),
        clients: Mutex::default(),
        members: parts.members.clone(),
        faults: c.fault_file.clone(),
    });
    std::fs::create_dir_all(&c.dir)
        .map_err(|e| format!("creating the control directory {}: {e}", c.dir.display()))?;
    let member = ControlMember::start(MemberId::of(node), &c.dir, &config, transport.clone())
        .await
        .map_err(|e| e.to_string())?;
    let env = parts.env.clone();
    let shard: Arc<std::sync::OnceLock<std::sync::Weak<Shard>>> = Arc::default();
    let schema: Arc<std::sync::OnceLock<std::sync::Weak<super::schema::NodeSchema>>> =
        Arc::default();
    let checker = {
        let (shard, schema) = (shard.clone(), schema.clone());
        let env = parts.env.clone();
        Arc::new(
            move |state: &ControlState, command: &scratchbird_control::state::Command| {
                validate(state, command)?;
                if matches!(command, scratchbird_control::state::Command::Schema { .. })
                    && schema
                        .get()
                        .and_then(std::sync::Weak::upgrade)
                        .is_some_and(|s| s.behind(state.schema_len()))
                {
                    return Err((
                        super::schema::SCHEMA_BEHIND.to_owned(),
                        "the leader has not applied the cluster's earlier schema changes yet; send it again shortly".into(),
                    ));
                }
                check_schema(state, command, &shard, env.now_micros())
            },
        )
    };
    let plane = ControlPlane {
        service: Service::new(
            node,
            member,
            transport.clone(),
            Arc::new(move || env.now_micros()),
        )
        .trusting(trusted)
        .confirming()
        .validating(checker),
        shard,
        schema,
        transport,
        failed: AtomicBool::new(false),
        enrolment: parts.enrolment,
        unreachable: Mutex::default(),
        running: Mutex::new(None),
        apply_error: Mutex::new(None),
        nudge: tokio::sync::Notify::new(),
    };
    // Until the log holds an epoch the members it admits are the enrolment's:
    // the log's voters must reach it to bring it in (and bootstrap asks the
    // genesis voters whether a log exists already).
    if let Some(list) = plane.members_from_log()? {
        parts.members.replace(&list);
    } else if let Some(list) = plane.enrolment.members() {
        parts.members.replace(list);
    }
    if c.bootstrap {
        bootstrap(&plane, node).await?;
    }
    let list = match plane.members_from_log()? {
        Some(list) => list,
        None => plane
            .enrolment
            .members()
            .cloned()
            .ok_or("the enrolment holds no membership")?,
    };
    if list.cluster != parts.me.cluster {
        return Err(format!(
            "the control plane's membership is of cluster {}, but this node's certificate is of cluster {}",
            list.cluster, parts.me.cluster
        ));
    }
    Ok((plane, list))
}

/// Starts the log with this node alone and publishes the enrolment's first
/// epoch, once. A log that holds a chain is left as it is; one started but
/// without a chain (a crash between the two steps) gets the genesis again. A
/// node whose control directory was lost does not start a second log: if any
/// other voter of the genesis already runs an epoch, bootstrap is refused.
async fn bootstrap(plane: &ControlPlane, node: scratchbird_types::NodeId) -> Result<(), String> {
    let member = plane.service.member();
    let started = member.is_initialized().await?;
    if started && plane.service.current().0 != Epoch(0) {
        return Ok(());
    }
    let genesis = &plane.enrolment;
    let command = genesis.genesis().ok_or(
        "[control] bootstrap starts a new log from a genesis of exactly one epoch; this enrolment holds more (start this node without bootstrap: it joins the log that exists)",
    )?;
    let list = genesis.members().ok_or("the genesis has no membership")?;
    if !started {
        for peer in scratchbird_control::members::enabled_nodes(list).filter(|n| n.id != node) {
            let Some(addr) = peer.peer.clone() else {
                continue;
            };
            let hello = PeerMessage::Hello {
                epoch: Epoch(0),
                hash: EpochHash::NONE,
            };
            if let Ok(PeerAnswer::Hello { epoch, .. }) = plane
                .transport
                .call(
                    MemberId::of(node),
                    MemberId::of(peer.id),
                    &PeerAddr { addr },
                    hello,
                )
                .await
                && epoch != Epoch(0)
            {
                return Err(format!(
                    "bootstrap refused: node {} ({}) already runs epoch {} of this cluster's log; a second log would split the cluster. Remove bootstrap = true and give this node the current chain (sb cluster enrol) as its enrolment",
                    peer.name, peer.id, epoch.0
                ));
            }
        }
        let addr = scratchbird_control::members::node(list, node)
            .and_then(|n| n.peer.clone())
            .ok_or(
                "the genesis membership gives this node no peer address (sb ca issue-node --peer HOST:PORT)",
            )?;
        member
            .initialize([(MemberId::of(node), PeerAddr { addr })].into())
            .await?;
    }
    member
        .wait_leading(Duration::from_secs(10))
        .await
        .map_err(|e| format!("the new log elected no leader: {e}"))?;
    let (index, outcome) = plane
        .service
        .submit(command)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(index, %outcome, "control log started with the genesis epoch");
    Ok(())
}

impl ControlPlane {
    /// The membership of the log's current epoch, if the log holds one whose
    /// first epoch this node trusts (and is the enrolment's).
    fn members_from_log(&self) -> Result<Option<MembersList>, String> {
        if !self.service.trusts_log()? {
            return Ok(None);
        }
        let a = self.service.member().applied();
        if let (Some((first, _)), Some(chain)) = (self.enrolled(), a.state.chain())
            && chain.get(Epoch(1)).map(|(_, _, h)| h) != Some(first)
        {
            return Err(format!(
                "the control log's first epoch is not the enrolment's ({first}): this log is another cluster's configuration; refusing it"
            ));
        }
        Ok(a.state.members().cloned())
    }

    /// The enrolment's first epoch, which the log's must be, and its current
    /// epoch, which the log must reach before this node serves clients.
    fn enrolled(&self) -> Option<(EpochHash, Epoch)> {
        let chain = self.enrolment.chain()?;
        Some((chain.get(Epoch(1))?.2, chain.current().number))
    }

    /// The state whose current epoch configures this node: the log's, once
    /// it holds a chain this node trusts; until then the enrolment's.
    fn configuring(&self) -> Result<ControlState, String> {
        if self.members_from_log()?.is_some() {
            Ok(self.service.member().applied().state.clone())
        } else {
            Ok(self.enrolment.clone())
        }
    }

    /// The configuration of the current epoch; its bundle is loaded unless
    /// its hash is `reuse`.
    pub(super) fn config(
        &self,
        cluster: scratchbird_types::ClusterId,
        reuse: Option<[u8; 32]>,
    ) -> Result<EpochConfig, String> {
        config_of(&self.configuring()?, cluster, reuse)
    }

    /// The node now runs `config` (its roots, bundle and token secret are in
    /// force): reported as applied, and answered in peers' hellos.
    pub(super) fn now_running(&self, config: &EpochConfig) {
        *lock(&self.running) = Some(Running {
            epoch: config.epoch,
            hash: config.hash,
            ca_policy: config.ca_policy,
            bundle: config.bundle_hash,
        });
        *lock(&self.apply_error) = None;
        self.service.set_running(config.epoch, config.hash);
    }

    /// A connection to member `node` at peer address `addr`, over the
    /// transport the control plane uses (node certificate, pinned to the
    /// member, checked under the membership in force).
    pub(super) async fn peer_client(
        &self,
        node: scratchbird_types::NodeId,
        addr: &str,
    ) -> Result<Arc<Client>, String> {
        // a peer that could not be reached a moment ago is not tried again at
        // once: a statement's retry, or the next statements, fail fast
        // instead of each waiting for a handshake that will time out
        if let Some((at, why)) = lock(&self.unreachable).get(&node)
            && at.elapsed() < PEER_RETRY_AFTER
        {
            return Err(format!(
                "{why} (less than {} s ago; not tried again yet)",
                PEER_RETRY_AFTER.as_secs()
            ));
        }
        let peer = PeerAddr {
            addr: addr.to_owned(),
        };
        let connect = self.transport.client(MemberId::of(node), &peer);
        let (r, silent) = match tokio::time::timeout(PEER_CONNECT_MAX, connect).await {
            Ok(r) => (r.map_err(|e| e.to_string()), false),
            Err(_) => (
                Err(format!(
                    "no answer to a connection within {} s",
                    PEER_CONNECT_MAX.as_secs()
                )),
                true,
            ),
        };
        let mut u = lock(&self.unreachable);
        match &r {
            Ok(_) => {
                u.remove(&node);
            }
            // only a peer that does not answer is left alone for a while: one
            // that answered with a refusal (a certificate being renewed, say)
            // is tried again by the next statement
            Err(why) if silent => {
                if u.len() >= PEERS_REMEMBERED_MAX {
                    u.clear();
                }
                u.insert(node, (Instant::now(), why.clone()));
            }
            Err(_) => {}
        }
        r
    }

    /// Peers statements could not reach (and have not reached since): the
    /// node, how long ago in milliseconds, and why.
    pub(super) fn unreachable_peers(&self) -> Vec<(NodeId, u64, String)> {
        let mut v: Vec<_> = lock(&self.unreachable)
            .iter()
            .map(|(n, (at, why))| {
                (
                    *n,
                    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
                    why.clone(),
                )
            })
            .collect();
        v.sort_by_key(|x| x.1);
        v
    }

    /// Whether `c` is still the connection to `node` this node keeps: a
    /// connection it dropped (its certificate was renewed, or the CA roots
    /// changed) presents a certificate whose key no longer signs this node's
    /// envelopes.
    pub(super) fn still_kept(&self, node: scratchbird_types::NodeId, c: &Arc<Client>) -> bool {
        self.transport
            .kept(MemberId::of(node))
            .is_some_and(|k| Arc::ptr_eq(&k, c))
    }

    /// A connection to member `node` other than `dead`, which failed.
    pub(super) async fn peer_client_again(
        &self,
        node: scratchbird_types::NodeId,
        addr: &str,
        dead: &Arc<Client>,
    ) -> Result<Arc<Client>, String> {
        self.transport.forget_dead(MemberId::of(node), dead);
        self.peer_client(node, addr).await
    }

    /// The cluster's shards as this node routes statements to them, from the
    /// current epoch's shard map.
    ///
    /// # Errors
    /// No epoch, or no shard map.
    pub(super) fn placement(&self, me: NodeId) -> Result<Placement, String> {
        placement_of(&self.configuring()?, me)
    }

    /// The node's shard is `shard`, its schema changes `schema` (schema
    /// changes are checked on them).
    pub(super) fn attach_shard(&self, shard: &Arc<Shard>, schema: &Arc<super::schema::NodeSchema>) {
        let _ = self.shard.set(Arc::downgrade(shard));
        let _ = self.schema.set(Arc::downgrade(schema));
    }

    /// Drops every connection to peers (the next message connects afresh,
    /// presenting this node's current certificate).
    pub(super) fn forget_connections(&self) {
        self.transport.forget_all();
    }

    /// What the node runs.
    pub(super) fn running(&self) -> Option<Running> {
        lock(&self.running).clone()
    }

    /// The execution gate (spec 1.2, 4.3): open when the log's current epoch
    /// is effective and this node runs it, with that epoch's bundle. What
    /// needs it (CA cutover is checked by the log itself; distributed
    /// execution and the scheduler will ask here) is refused, or runs
    /// local-only, otherwise.
    ///
    /// # Errors
    /// Why the gate is closed, naming the epoch and what is missing.
    pub(super) fn gate(&self, loaded: BundleHash) -> Result<Epoch, String> {
        let a = self.service.member().applied();
        let chain = a
            .state
            .chain()
            .ok_or("the control log holds no epoch yet")?;
        let (epoch, hash) = (chain.current().number, chain.current_hash());
        match a.state.epoch_state(epoch) {
            Some(EpochState::Effective { .. }) => {}
            Some(EpochState::Converging { missing }) => {
                let who: Vec<String> = missing.iter().map(|(n, w)| format!("{n} {w}")).collect();
                return Err(format!(
                    "epoch {} is not effective yet: {}",
                    epoch.0,
                    who.join("; ")
                ));
            }
            _ => return Err(format!("epoch {} is not effective", epoch.0)),
        }
        let running = lock(&self.running).clone();
        match running {
            Some(r) if (r.epoch, r.hash) == (epoch, hash) => {
                if r.bundle != chain.current().documents.bundle || loaded.0 != r.bundle {
                    return Err(format!(
                        "this node enforces bundle {loaded}, not the one epoch {} names",
                        epoch.0
                    ));
                }
                Ok(epoch)
            }
            Some(r) => Err(format!(
                "this node still runs epoch {}, not the current epoch {}",
                r.epoch.0, epoch.0
            )),
            None => Err("this node runs no epoch yet".into()),
        }
    }

    /// Whether the node may serve clients under the control plane: the log is
    /// running, holds a chain this node trusts, and has reached the
    /// enrolment's epoch (a node that joined does not serve under an old
    /// membership while it catches up), and the node could put the current
    /// epoch's configuration in force.
    pub(super) fn ready(&self) -> bool {
        if self.failed.load(Ordering::SeqCst) || lock(&self.apply_error).is_some() {
            return false;
        }
        let (epoch, _) = self.service.current();
        let reached = self.enrolled().is_none_or(|(_, at)| epoch >= at);
        reached && epoch != Epoch(0) && matches!(self.members_from_log(), Ok(Some(_)))
    }

    /// Why the node does not serve under the control plane, if it is because
    /// the current epoch could not be put in force.
    pub(super) fn apply_error(&self) -> Option<String> {
        lock(&self.apply_error).clone()
    }
}

/// How long a statement waits for a connection to a peer (a handshake on a
/// live network takes milliseconds).
const PEER_CONNECT_MAX: Duration = Duration::from_secs(2);

/// How long a peer that could not be reached is not tried again by
/// statements.
const PEER_RETRY_AFTER: Duration = Duration::from_secs(3);

/// Most unreachable peers remembered at once.
const PEERS_REMEMBERED_MAX: usize = 4_096;

/// The longest a connection to a peer stays open without traffic: how long a
/// peer that vanished goes unnoticed (keep-alives go four times as often).
const PEER_IDLE_MAX: Duration = Duration::from_secs(6);

/// The node that serves a shard (its first enabled owner) with its peer
/// address, if it has one; `None`: no enabled owner.
pub(super) type Serves = Option<(NodeName, Option<String>)>;

/// The cluster's shards as a node routes statements to them.
#[derive(Debug, Clone)]
pub(super) struct Placement {
    /// The shard map's version ([`ControlState::shard_map_version`]).
    pub(super) version: u64,
    /// Each shard in map order: its id, and the node that serves it (its
    /// first enabled owner) with that node's peer address, if it has one.
    pub(super) shards: Vec<(u32, Serves)>,
    /// The position of this node's shard, when it owns one.
    pub(super) mine: Option<usize>,
}

fn placement_of(state: &ControlState, me: NodeId) -> Result<Placement, String> {
    let chain = state.chain().ok_or("the control log holds no epoch yet")?;
    let cluster = chain.current().cluster;
    let map = state
        .shard_map()
        .ok_or("the current epoch has no shard map")?;
    let list = state
        .members()
        .ok_or("the current epoch has no membership")?;
    let mut mine = None;
    let mut shards = Vec::with_capacity(map.shards.len());
    for (i, sh) in map.shards.iter().enumerate() {
        if sh.owners.contains(&me) && mine.is_none() {
            mine = Some(i);
        }
        let serves = sh
            .owners
            .iter()
            .filter_map(|o| scratchbird_control::members::node(list, *o))
            .find(|n| n.enabled)
            .map(|n| (NodeName::new(cluster, n.id), n.peer.clone()));
        shards.push((sh.id, serves));
    }
    Ok(Placement {
        version: state.shard_map_version(),
        shards,
        mine,
    })
}

/// Puts the current shard map in force on this node's shard (`me`): it holds
/// the rows the map places on it, and runs plans routed by that map only.
pub(super) fn place(shard: &Shard, plane: &ControlPlane, me: NodeId) {
    let Ok(p) = plane.placement(me) else {
        return;
    };
    let n = u32::try_from(p.shards.len()).unwrap_or(u32::MAX);
    match p.mine.and_then(|i| u32::try_from(i).ok()) {
        Some(i) => shard.set_placement(p.version, i, n),
        // a shard the map does not name yet takes no rows
        None => shard.set_placement(p.version, 0, 0),
    }
}

/// Puts the log's current epoch's configuration in force: its CA roots (what
/// they no longer trust is closed by the recheck), its bundle (sessions bound
/// to the old one are closed), after checking this node's token secret. What
/// fails keeps the node from serving until an epoch that loads arrives.
fn apply_config(shared: &Shared, plane: &ControlPlane) {
    let cluster = shared.me.cluster;
    let fail = |e: String| {
        tracing::error!(
            "the control log's current epoch cannot be put in force; serving nobody: {e}"
        );
        *lock(&plane.apply_error) = Some(e);
    };
    let state = match plane.configuring() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The roots first, on their own: a bundle or token-secret problem never
    // leaves a root the epoch retired trusted. Roots that cannot be read
    // admit nobody.
    let ca_policy = state.chain().map(|c| c.current().documents.ca_policy);
    match trust_of(&state, cluster) {
        Ok(trust) => {
            if plane.running().map(|r| r.ca_policy) != ca_policy {
                tracing::info!(
                    epoch = state.epoch().0,
                    roots = %trust.fingerprints().join(","),
                    "CA roots of the epoch in force"
                );
                shared.trust.set(trust);
                plane.transport.forget_all();
            }
        }
        Err(e) => {
            shared.members.replace(&MembersList {
                cluster,
                nodes: Vec::new(),
                users: Vec::new(),
            });
            return fail(e);
        }
    }
    let reuse = plane.running().map(|r| r.bundle);
    let applied = config_of(&state, cluster, reuse).and_then(|config| {
        let secret = token_secret(&shared.cfg)?;
        check_token(&config, &secret)?;
        Ok(config)
    });
    match applied {
        Ok(config) => {
            let deriver = config.bundle.as_ref().map(|bundle| {
                tracing::info!(epoch = config.epoch.0, bundle = %bundle.hash(), "security bundle of the epoch in force");
                Arc::new(scratchbird_policy::derive::Deriver::new(bundle.clone()))
            });
            // plans are made, and run, in this epoch from now on
            shared.principals.set_epoch(config.epoch, deriver);
            // and routed by its shard map
            if shared.cfg.roles.contains(&Role::Shard) {
                place(&shared.shard, plane, shared.creds.me.node);
            }
            plane.now_running(&config);
        }
        Err(e) => fail(e),
    }
}

/// Keeps the node's membership and configuration those of the log's current
/// epoch (closing what they no longer admit), checked every tick, until
/// shutdown; the node's duties run beside it, so a peer that does not answer
/// never delays an epoch taking effect here.
pub(super) async fn run(shared: Arc<Shared>) {
    let Some(plane) = shared.control.clone() else {
        return;
    };
    let duties = tokio::spawn(duties_loop(plane.clone(), shared.shutdown.clone()));
    let mut shutdown = shared.shutdown.clone();
    // what start put in force: an epoch the log applied since is taken at
    // the first tick
    let mut synced = plane
        .running()
        .map_or((Epoch(0), EpochHash::NONE), |r| (r.epoch, r.hash));
    let mut ready = plane.ready();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let running = plane
            .service
            .member()
            .raft()
            .metrics()
            .borrow()
            .running_state
            .clone();
        if let Err(fatal) = running {
            // Fail closed: a node whose log stopped cannot follow membership
            // changes, so it admits nobody (every open connection is closed).
            if !plane.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    "the control log stopped ({fatal}): this node admits nobody until it is restarted"
                );
                shared.members.replace(&MembersList {
                    cluster: shared.me.cluster,
                    nodes: Vec::new(),
                    users: Vec::new(),
                });
                recheck(&shared);
            }
            continue;
        }
        let now = plane.service.current();
        if now != synced {
            match plane.members_from_log() {
                Ok(Some(list)) if list.cluster == shared.me.cluster => {
                    shared.members.replace(&list);
                    plane.transport.forget_all();
                    apply_config(&shared, &plane);
                    plane.nudge.notify_one();
                    tracing::info!(epoch = now.0.0, hash = %now.1, "applied control epoch: membership in force");
                    recheck(&shared);
                    synced = now;
                }
                Ok(Some(list)) => tracing::error!(
                    "the control log's membership is of cluster {}, not this node's {}: not applied",
                    list.cluster,
                    shared.me.cluster
                ),
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        let is_ready = plane.ready();
        if is_ready != ready {
            ready = is_ready;
            recheck(&shared);
        }
        // the cluster's schema changes this node does not hold yet (storage
        // work: off the runtime's threads)
        // (not awaited: a long index build never holds up an epoch; one
        // applier at a time, the others return at once)
        if let Some(schema) = shared.schema.clone() {
            drop(tokio::task::spawn_blocking(move || {
                crate::shard::SchemaLog::catch_up(schema.as_ref());
            }));
        }
    }
    let _ = duties.await;
    if let Err(e) = plane.service.member().shutdown().await {
        tracing::error!("stopping the control log: {e}");
    }
}

/// The node's duties ([`Service::duties`]) every tick, until shutdown; what
/// fails is logged when it changes.
async fn duties_loop(plane: Arc<ControlPlane>, mut shutdown: watch::Receiver<bool>) {
    let mut last_problems = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = plane.nudge.notified() => {}
            _ = shutdown.changed() => break,
        }
        if plane.failed.load(Ordering::SeqCst) {
            continue;
        }
        let problems = tokio::select! {
            p = plane.service.duties() => p,
            _ = shutdown.changed() => break,
        };
        if problems != last_problems {
            for p in &problems {
                tracing::warn!("control plane: {p}");
            }
            last_problems = problems;
        }
    }
}

/// Answers a control-plane message from a peer node.
pub(super) async fn peer_message(shared: &Shared, peer: &Verified, bytes: &[u8]) -> Response {
    let Some(plane) = shared.control.as_ref() else {
        return Response::Error(
            RpcError::new(
                "NO_CONTROL_PLANE",
                "this node takes no part in a control log",
            )
            .hint("configure [control] in its node.toml"),
        );
    };
    let Some(from) = peer.uri.node_id() else {
        return Response::Error(RpcError::new(
            "NOT_A_NODE",
            "only nodes talk to the control log",
        ));
    };
    if cut(
        shared
            .cfg
            .control
            .as_ref()
            .and_then(|c| c.fault_file.as_deref()),
        from,
    ) {
        return Response::Error(RpcError::new(
            "LINK_CUT",
            "the link is cut ([control] fault_file)",
        ));
    }
    let message: PeerMessage = match wire::decode(bytes) {
        Ok(m) => m,
        Err(e) => return Response::Error(RpcError::new("BAD_CONTROL_MESSAGE", e)),
    };
    // The log's own traffic comes only from its voters and learners.
    if matches!(message, PeerMessage::Raft(_)) {
        let voter = admit(
            peer,
            Expect::Node(Some(Role::Voter)),
            Some(shared.members.as_ref()),
        );
        let learner = admit(
            peer,
            Expect::Node(Some(Role::Learner)),
            Some(shared.members.as_ref()),
        );
        if let (Err(e), Err(_)) = (voter, learner) {
            return Response::Error(RpcError::new(e.code(), format!("the control log: {e}")));
        }
    }
    let answer = plane.service.peer(from, message).await;
    match wire::encode(&answer) {
        Ok(b) => Response::ControlPlane(b),
        Err(e) => Response::Error(RpcError::new("CONTROL_INTERNAL", e)),
    }
}

/// Answers an administrator's `sb cluster ...` command from a user.
pub(super) async fn admin_message(shared: &Shared, bytes: &[u8]) -> Response {
    let Some(plane) = shared.control.as_ref() else {
        return Response::Error(
            RpcError::new(
                "NO_CONTROL_PLANE",
                "this node takes no part in a control log",
            )
            .hint("send sb cluster commands to a node configured with [control]"),
        );
    };
    let answer = match wire::decode::<AdminMessage>(bytes) {
        Ok(m) => match plane.service.admin(m).await {
            AdminAnswer::Status(mut status) => {
                status.gate = plane.gate(shared.principals.bundle_hash()).err();
                status.churn = shared.churn.lines();
                status.schema_applied = shared.schema.as_ref().map(|s| s.position());
                status.unreachable = plane.unreachable_peers();
                AdminAnswer::Status(status)
            }
            other => other,
        },
        Err(e) => AdminAnswer::Refused {
            code: "BAD_CONTROL_MESSAGE".into(),
            message: e,
        },
    };
    match wire::encode(&answer) {
        Ok(b) => Response::ControlPlane(b),
        Err(e) => Response::Error(RpcError::new("CONTROL_INTERNAL", e)),
    }
}
