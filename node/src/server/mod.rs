//! The node as a server: QUIC endpoints with mandatory mutual TLS, one SQL session
//! per client connection (a thread that owns it), result batches streamed under
//! flow control, reload of identities, roots, members and bundle without a restart,
//! and a clean shutdown.

use crate::authority::{Checked, NodeAuthority, PeerAuthority, UserCerts};
use crate::config::{NodeConfig, OnCaChange};
use crate::session::open_storage_keeping;
use crate::shard::{InProcess, Principals, Refusal, Shard, ShardParts, ShardSessionOf, Users};
use scratchbird_coord::{Claim, Credentials, Outcome, Session, SessionError, StatementCache, Step};
use scratchbird_coord::{ShardSession, ShardTransport, Shards};
use scratchbird_host::audit::AuditLog;
use scratchbird_host::envelope::{Asked, SignedEnvelope};
use scratchbird_host::{Access, Cancel, HostError, Release, Sandbox, SandboxLimits};
use scratchbird_net::endpoint::{self, TransportLimits, describe};
use scratchbird_types::env::{Env, SystemEnv};
use tracing::Instrument;

use scratchbird_net::rpc::{self, Done, Pong, Request, Response, RpcError, WireBatch};
use scratchbird_net::tls::{Cell, Identity, IdentityCell, PeerVerifier};
use scratchbird_net::verify::{Expect, Members, MembersList, Trust, Verified, admit};
use scratchbird_net::{Role, SbUri};
use scratchbird_policy::derive::Deriver;
use scratchbird_policy::secret::TokenSecret;
use scratchbird_policy::sign::{Trust as AdminTrust, load_signed};
use scratchbird_storage::Storage;
use scratchbird_types::{BundleHash, Epoch, NodeName, UserName};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod admit;
mod attest;
mod churn;
mod client;
mod cluster;
mod peer;
mod reloading;
mod remote;
mod reply;
mod schema;

use attest::{Attested, check_claimed, check_signed};
use client::{Running, client_session, reply};
use peer::peer_session;
use reloading::{not_serving, recheck, reload, reload_loop};
use reply::{done_of, error_of, wire};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn fail(what: impl std::fmt::Display) -> StartError {
    StartError(what.to_string())
}

/// Reads the cluster's tokenisation secret and checks it against the fingerprint
/// the configuration names.
///
/// # Errors
/// Not configured, unreadable, readable by others, or another cluster's secret.
pub fn token_secret(cfg: &NodeConfig) -> Result<TokenSecret, String> {
    let (Some(path), Some(want)) = (&cfg.security.token_secret, &cfg.security.token_fingerprint)
    else {
        return Err("security.token_secret and security.token_fingerprint are needed".into());
    };
    let secret = TokenSecret::read(path).map_err(|e| format!("the token secret: {e}"))?;
    let have = secret.fingerprint();
    if have != want.trim() {
        return Err(format!(
            "the token secret {} has fingerprint {have}, but security.token_fingerprint is {want:?}: this node holds another cluster's secret (tokens would differ from its peers'); copy the cluster's token.secret from the CA folder, or correct the fingerprint (sb ca list shows it)",
            path.display()
        ));
    }
    Ok(secret)
}

/// An open connection, as reload re-checks it.
struct Open {
    conn: quinn::Connection,
    peer: Verified,
    kind: Kind,
    /// The bundle its session was bound to (principals only).
    bundle: Option<BundleHash>,
    /// Raised when this node renewed its certificate: a peer connection then
    /// runs no new request and closes once those it runs have answered.
    retire: watch::Sender<bool>,
}

/// State every connection shares.
struct Shared {
    cfg: NodeConfig,
    me: SbUri,
    storage: Arc<Storage>,
    sandbox: Arc<Sandbox>,
    audit: Arc<AuditLog>,
    /// Who users run as: the bundle in force.
    principals: Arc<Principals>,
    /// The shard every statement's shard stage runs on (in-process).
    shard: Arc<Shard>,
    /// What the shard trusts (peers' envelopes are checked against it too).
    authority: Arc<NodeAuthority>,
    /// When this node started (microseconds since 1970): peers' envelopes with
    /// older attestations are refused.
    started_us: i64,
    /// The clock and randomness the node runs on.
    env: Arc<dyn Env>,
    /// This node as a coordinator: its name, key and the bundle in force.
    creds: Arc<NodeCreds>,
    /// Statements its sessions compiled (shared: compiling names no user).
    statements: Arc<StatementCache>,
    /// When the manifest of the bundle in force was created: reload takes no
    /// older one.
    bundle_signed_at: std::sync::atomic::AtomicI64,
    trust: Arc<Cell<Trust>>,
    members: Arc<Members>,
    identity: Arc<IdentityCell>,
    frame_max: usize,
    /// Open connections: the connection and the root its peer's certificate chains to.
    conns: Mutex<HashMap<u64, Open>>,
    /// Queries running, by job id.
    active: Mutex<HashMap<u64, Cancel>>,
    sessions: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Connections and handshakes at once (`connections_max`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Whether this node may serve clients (it is an enabled coordinator).
    serving: Arc<AtomicBool>,
    /// The node's member of the control log (`[control]`), whose current epoch
    /// is the membership in `members`.
    control: Option<Arc<cluster::ControlPlane>>,
    /// Connections made, refused and ended, per peer.
    churn: Arc<churn::Churn>,
    /// Under the control plane: the cluster's schema changes on this node.
    schema: Option<Arc<schema::NodeSchema>>,
    /// The runtime, for session threads that wait on the network.
    handle: tokio::runtime::Handle,
}

/// This node as a coordinator: it signs shard stages with its certificate's
/// Ed25519 key (reloaded with the certificate).
#[derive(Debug)]
struct NodeCreds {
    me: NodeName,
    identity: Arc<IdentityCell>,
    principals: Arc<Principals>,
    /// Where the signatures it makes are remembered for this node's shard.
    checked: Arc<Checked>,
}

impl Credentials for NodeCreds {
    fn node(&self) -> NodeName {
        self.me
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.checked.own.sign(&self.identity.0.get(), message)
    }
    fn epoch(&self) -> Epoch {
        self.principals.epoch()
    }
    fn bundle_hash(&self) -> BundleHash {
        self.principals.bundle_hash()
    }
    fn recorded_as(&self, user: &str) -> (String, Option<BundleHash>) {
        let label = UserName::new(user)
            .map_or_else(|_| format!("User::{user:?}"), |u| self.principals.label(&u));
        (label, Some(self.principals.bundle_hash()))
    }
}

fn load_trust(path: &Path, cluster: scratchbird_types::ClusterId) -> Result<Trust, String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
    Trust::from_pem(cluster, &pem).map_err(|e| format!("the CA file {}: {e}", path.display()))
}

fn load_members(path: &Path, cluster: scratchbird_types::ClusterId) -> Result<MembersList, String> {
    let list = MembersList::load(path)?;
    if list.cluster != cluster {
        return Err(format!(
            "the members file {} describes cluster {}, but this node's certificate is of cluster {cluster}",
            path.display(),
            list.cluster
        ));
    }
    Ok(list)
}

/// Loads the bundle `path` only if its manifest is signed by the configured
/// administrator keys (read afresh, so a removed key stops counting at reload).
fn load_bundle(cfg: &NodeConfig, path: &Path) -> Result<(Arc<Deriver>, i64), String> {
    let trust = AdminTrust::from_files(&cfg.security.trusted_keys)
        .map_err(|e| format!("the trusted administrator keys: {e}"))?;
    if trust.len() < cfg.security.signatures_required {
        return Err(format!(
            "security.signatures_required is {}, but security.trusted_keys holds {} key(s): no bundle could ever be trusted",
            cfg.security.signatures_required,
            trust.len()
        ));
    }
    let signed = load_signed(path, &trust, cfg.security.signatures_required)
        .map_err(|e| format!("the security bundle {} is refused: {e}", path.display()))?;
    tracing::info!(
        bundle = %signed.bundle.hash(),
        signers = %signed.signers.join(","),
        "security bundle {} verified",
        path.display()
    );
    Ok((
        Arc::new(Deriver::new(Arc::new(signed.bundle))),
        signed.created_at_micros,
    ))
}

/// A node that is serving.
pub struct RunningNode {
    shared: Arc<Shared>,
    client: quinn::Endpoint,
    peer: Option<quinn::Endpoint>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("node", &self.shared.me.to_string())
            .finish_non_exhaustive()
    }
}

/// Starts a node: checks its own identity and membership, opens storage, binds
/// its endpoints and serves until [`RunningNode::shutdown`].
///
/// # Errors
/// Anything that keeps it from serving, named.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, StartError> {
    start_in(cfg, Arc::new(SystemEnv::default())).await
}

/// [`start`] on the clock and randomness of `env`: every time the node decides
/// by (certificate and attestation windows, envelope expiry, audit records,
/// commit timestamps) is `env`'s, so whole nodes can run on a simulated clock.
///
/// # Errors
/// As [`start`].
#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
pub async fn start_in(cfg: NodeConfig, env: Arc<dyn Env>) -> Result<RunningNode, StartError> {
    let identity = Identity::load(&cfg.tls.cert, &cfg.tls.key).map_err(fail)?;
    let info = scratchbird_net::identity::inspect(&identity.cert_der).map_err(fail)?;
    let me = match info.uris.as_slice() {
        [one] => SbUri::parse(one).map_err(|e| fail(format!("this node's certificate: {e}")))?,
        _ => {
            return Err(fail(
                "this node's certificate does not carry exactly one sb:// name",
            ));
        }
    };
    let Some(name) = me.node_name() else {
        return Err(fail(format!(
            "{} is a user's certificate; a node needs one from sb ca issue-node",
            cfg.tls.cert.display()
        )));
    };
    // the CA roots: the file's, or under the control plane the enrolment's
    // until the log is read (then its current epoch's, below)
    let enrolment = match &cfg.control {
        Some(_) => Some(cluster::read_enrolment(&cfg).map_err(fail)?),
        None => None,
    };
    let trust = match (&enrolment, &cfg.tls.ca) {
        (Some(e), _) => cluster::trust_of(e, me.cluster)
            .map_err(|e| fail(format!("the enrolment's CA policy: {e}")))?,
        (None, Some(path)) => load_trust(path, me.cluster).map_err(fail)?,
        (None, None) => return Err(fail("tls.ca is not set and there is no [control]")),
    };
    let trust = Arc::new(Cell::new(trust));
    let identity = Arc::new(IdentityCell(Cell::new(identity)));
    let transport = TransportLimits {
        streams_max: cfg.limits.streams_max,
        idle_timeout: Duration::from_secs(cfg.limits.idle_timeout_secs),
        // well inside the idle timeout, however short it is configured
        keep_alive: Duration::from_millis(
            (cfg.limits.idle_timeout_secs * 1000 / 3).clamp(250, 4000),
        ),
        frame_max: cfg.limits.frame_max_mib << 20,
        ..TransportLimits::default()
    };
    // the membership: the control log's current epoch, or the members file
    let members = Arc::new(Members::default());
    let (control, members_list, members_from) = match (&cfg.control, &cfg.tls.members) {
        (Some(c), _) => {
            let (plane, list) = cluster::start(cluster::Parts {
                cfg: &cfg,
                me: &me,
                identity: identity.clone(),
                trust: trust.clone(),
                limits: transport.clone(),
                env: env.clone(),
                enrolment: enrolment.clone().unwrap_or_default(),
                members: members.clone(),
            })
            .await
            .map_err(fail)?;
            let from = format!(
                "the control log in {} (publish an epoch whose membership gives it those roles)",
                c.dir.display()
            );
            (Some(Arc::new(plane)), list, from)
        }
        (None, Some(path)) => (
            None,
            load_members(path, me.cluster).map_err(fail)?,
            format!("the members file {}", path.display()),
        ),
        (None, None) => return Err(fail("tls.members is not set and there is no [control]")),
    };
    members.replace(&members_list);
    // under the control plane: the current epoch's roots, bundle and token
    // secret (the secret is checked below with the fingerprint it names)
    let epoch_config = match &control {
        Some(plane) => {
            let config = plane.config(me.cluster, None).map_err(fail)?;
            trust.set(config.trust.clone());
            Some(config)
        }
        None => None,
    };
    // the node's own certificate must pass the rules its peers apply
    let verified = trust
        .get()
        .verify(&identity.0.get().cert_der, env.now_secs())
        .map_err(|e| fail(format!("this node's own certificate is refused: {e}")))?;
    // the membership must give the node every role it is configured with
    for role in cfg.roles.iter().copied().map(Some).chain([None]) {
        admit(&verified, Expect::Node(role), Some(members.as_ref())).map_err(|e| {
            fail(format!(
                "{e} (this node is configured with roles {:?}; fix {members_from} or the roles)",
                cfg.roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ))
        })?;
    }
    // the cluster's secret and a signed bundle, before anything is opened
    let secret = token_secret(&cfg).map_err(fail)?;
    let mask_key = *secret.bytes();
    let (deriver, signed_at) = match (&epoch_config, &cfg.security.bundle) {
        (Some(config), _) => {
            cluster::check_token(config, &secret).map_err(fail)?;
            let bundle = config
                .bundle
                .clone()
                .ok_or_else(|| fail("the epoch's bundle was not loaded"))?;
            tracing::info!(epoch = config.epoch.0, bundle = %bundle.hash(), "security bundle of the epoch in force");
            (Arc::new(Deriver::new(bundle)), 0)
        }
        (None, Some(bundle)) => load_bundle(&cfg, bundle).map_err(fail)?,
        (None, None) => {
            return Err(fail(
                "security.bundle is not set: a node serves users only under a signed security bundle",
            ));
        }
    };
    if let (Some(plane), Some(config)) = (&control, &epoch_config) {
        plane.now_running(config);
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| fail(format!("creating {}: {e}", cfg.data_dir.display())))?;
    let storage = open_storage_keeping(
        &cfg.data_dir,
        env.clone(),
        crate::session::StorageSizes {
            retention_secs: cfg.limits.history_retention_secs,
            page_cache_bytes: cfg.limits.page_cache_mib << 20,
            kv_cache_bytes: cfg.limits.kv_cache_mib << 20,
        },
    )
    .map_err(|e| {
        fail(format!(
            "opening the data directory {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    let limits = SandboxLimits {
        timeout_ms: cfg.limits.query_timeout_ms,
        memory_bytes_max: cfg.limits.memory_mib.saturating_mul(1 << 20),
        ..SandboxLimits::default()
    };
    let sandbox = Sandbox::new(limits, Some(&cfg.data_dir.join("module-cache")))
        .map_err(|e| fail(format!("starting the sandbox: {e}")))?;
    let audit = AuditLog::open(&cfg.data_dir.join("audit"), &name, env.clone())
        .map_err(|e| fail(format!("opening the audit trail: {e}")))?;
    let churn = Arc::new(churn::Churn::default());
    let sink = {
        let churn = churn.clone();
        Arc::new(move |peer: &str, code: &'static str| churn.refused(peer, code))
    };
    let user_verifier = Arc::new(
        PeerVerifier::new(
            trust.clone(),
            Some(members.clone()),
            Expect::User,
            "server",
            env.clone(),
        )
        .reporting(sink.clone()),
    );
    // a node without the coordinator role still answers at `listen`, to tell a
    // client where not to send SQL
    let coordinator = cfg.roles.contains(&Role::Coordinator);
    if coordinator
        && let Err(e) = scratchbird_net::attest::ed25519_key_of(&identity.0.get().cert_der)
    {
        return Err(fail(format!(
            "this node's certificate cannot sign subplan envelopes ({e}): a coordinator signs them with its certificate's Ed25519 key; issue its certificate with sb ca issue-node --alg ed25519"
        )));
    }
    let epoch = epoch_config.as_ref().map_or(Epoch::INITIAL, |c| c.epoch);
    let principals = Arc::new(Principals::new(deriver, epoch, mask_key));
    // under the control plane a node serves once its log has reached the
    // enrolment's epoch (cluster::run re-checks as it gets there)
    let serving = Arc::new(AtomicBool::new(
        coordinator && control.as_ref().is_none_or(|c| c.ready()),
    ));
    let storage = Arc::new(storage);
    let sandbox = Arc::new(sandbox);
    let audit = Arc::new(audit);
    // the trail's head is anchored in the control log, so a trail rewritten
    // together with its head no longer matches what the cluster holds
    if let Some(plane) = &control {
        plane
            .service
            .anchor_audit(Arc::new(cluster::Trail(audit.clone())));
    }
    let checked = Arc::new(Checked::default());
    let authority = Arc::new(NodeAuthority {
        me: name,
        identity: identity.clone(),
        serving: serving.clone(),
        users: UserCerts {
            trust: trust.clone(),
            members: members.clone(),
            checked: checked.clone(),
            env: env.clone(),
        },
        principals: principals.clone(),
    });
    let shard = Arc::new(Shard::from_parts(ShardParts {
        storage: storage.clone(),
        sandbox: sandbox.clone(),
        authority: authority.clone(),
        users: Users::Cluster(principals.clone()),
        audit: Some(audit.clone()),
        node: name,
    }));
    // under the control plane schema changes are the cluster's: through its
    // log, applied by every node alike
    let schema = match &control {
        Some(plane) => {
            let schema = Arc::new(
                schema::NodeSchema::new(
                    plane.clone(),
                    name,
                    &cfg.data_dir,
                    tokio::runtime::Handle::current(),
                )
                .map_err(fail)?,
            );
            schema.attach(&shard);
            shard.set_schema_log(schema.clone());
            plane.attach_shard(&shard, &schema);
            if cfg.roles.contains(&Role::Shard) {
                cluster::place(&shard, plane, name.node);
            }
            Some(schema)
        }
        None => None,
    };
    let creds = Arc::new(NodeCreds {
        me: name,
        identity: identity.clone(),
        principals: principals.clone(),
        checked,
    });
    let client =
        endpoint::server(cfg.listen, identity.clone(), user_verifier, &transport).map_err(fail)?;
    let peer = match cfg.peer_listen {
        Some(addr) => {
            let v = Arc::new(
                PeerVerifier::new(
                    trust.clone(),
                    Some(members.clone()),
                    Expect::Node(None),
                    "server",
                    env.clone(),
                )
                .reporting(sink),
            );
            Some(endpoint::server(addr, identity.clone(), v, &transport).map_err(fail)?)
        }
        None => None,
    };
    let (stop, shutdown) = watch::channel(false);
    let connections_max = cfg.limits.connections_max;
    let shared = Arc::new(Shared {
        frame_max: transport.frame_max,
        cfg,
        me,
        storage,
        sandbox,
        audit,
        principals,
        shard,
        authority,
        started_us: env.now_micros(),
        env,
        creds,
        statements: Arc::new(StatementCache::default()),
        bundle_signed_at: std::sync::atomic::AtomicI64::new(signed_at),
        trust,
        members,
        identity,
        conns: Mutex::default(),
        active: Mutex::default(),
        sessions: Mutex::default(),
        next: AtomicU64::new(1),
        shutdown,
        slots: Arc::new(tokio::sync::Semaphore::new(connections_max)),
        serving,
        control,
        churn,
        schema,
        handle: tokio::runtime::Handle::current(),
    });
    let mut tasks = vec![tokio::spawn(accept_loop(
        shared.clone(),
        client.clone(),
        Kind::Client,
    ))];
    if let Some(p) = &peer {
        tasks.push(tokio::spawn(accept_loop(
            shared.clone(),
            p.clone(),
            Kind::Peer,
        )));
    }
    tasks.push(tokio::spawn(reload_loop(shared.clone())));
    tasks.push(tokio::spawn(cluster::run(shared.clone())));
    tracing::info!(node = %shared.me, "serving");
    Ok(RunningNode {
        shared,
        client,
        peer,
        stop,
        tasks,
    })
}

impl RunningNode {
    /// Where clients connect.
    ///
    /// # Errors
    /// The socket has no address.
    pub fn client_addr(&self) -> std::io::Result<SocketAddr> {
        self.client.local_addr()
    }

    /// Where peers connect, if the node listens for them.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().and_then(|p| p.local_addr().ok())
    }

    /// The node's name.
    #[must_use]
    pub fn name(&self) -> &SbUri {
        &self.shared.me
    }

    /// Re-reads certificates, roots, members and bundle now.
    pub fn reload(&self) {
        reload(&self.shared);
    }

    /// Stops serving: no new connections or queries; running queries get `grace`
    /// to finish and are then cancelled; sessions roll back what is open; storage
    /// closes cleanly.
    ///
    /// # Errors
    /// Storage did not close cleanly.
    pub async fn shutdown(self, grace: Duration) -> Result<(), String> {
        let _ = self.stop.send(true);
        tracing::info!("shutting down: no new connections or queries");
        let until = Instant::now() + grace;
        loop {
            let running = lock(&self.shared.active).len();
            if running == 0 {
                break;
            }
            if Instant::now() >= until {
                tracing::warn!(running, "cancelling the queries still running");
                for c in lock(&self.shared.active).values() {
                    c.raise("the node is shutting down");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // queries end within a sandbox tick of the cancel, so their clients get the
        // error; a query blocked on a client that does not read is ended by closing
        // its connection below
        let until = Instant::now() + Duration::from_secs(5);
        while !lock(&self.shared.active).is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for o in lock(&self.shared.conns).values() {
            o.conn.close(
                CLOSE_SHUTDOWN.into(),
                b"[SHUTTING_DOWN] the node is shutting down",
            );
        }
        let until = Instant::now() + Duration::from_secs(30);
        while !lock(&self.shared.active).is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client.close(
            CLOSE_SHUTDOWN.into(),
            b"[SHUTTING_DOWN] the node is shutting down",
        );
        if let Some(p) = &self.peer {
            p.close(
                CLOSE_SHUTDOWN.into(),
                b"[SHUTTING_DOWN] the node is shutting down",
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.wait_idle()).await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let sessions = std::mem::take(&mut *lock(&self.shared.sessions));
        for s in sessions {
            let _ = tokio::task::spawn_blocking(move || s.join()).await;
        }
        let Self { shared, .. } = self;
        let shared = Arc::try_unwrap(shared)
            .map_err(|_| "a connection still holds the node's state".to_owned())?;
        drop(shared.shard);
        drop(shared.sandbox);
        drop(shared.audit);
        let storage = Arc::try_unwrap(shared.storage)
            .map_err(|_| "a session still holds the storage".to_owned())?;
        storage
            .close()
            .map_err(|e| format!("closing storage: {e}"))?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

const CLOSE_REFUSED: u32 = 2;
const CLOSE_SHUTDOWN: u32 = 3;
const CLOSE_REVOKED: u32 = 5;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    Peer,
}

async fn accept_loop(shared: Arc<Shared>, ep: quinn::Endpoint, kind: Kind) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = ep.accept() => i,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        // a client must show it owns its address before a handshake costs anything
        if !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        // handshakes and connections together are bounded
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            tracing::warn!(from = %incoming.remote_address(), "refused a connection: connections_max reached");
            incoming.refuse();
            continue;
        };
        // finished session threads are joined as new connections come
        lock(&shared.sessions).retain(|t| !t.is_finished());
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(shared, incoming, kind).await;
            drop(slot);
        });
    }
}

async fn connection(shared: Arc<Shared>, incoming: quinn::Incoming, kind: Kind) {
    let from = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // our verifier has logged which rule failed; this is the handshake's end
            tracing::info!(%from, reason = %describe(&e), "a connection failed its handshake");
            return;
        }
    };
    let expect = match kind {
        Kind::Client => Expect::User,
        Kind::Peer => Expect::Node(None),
    };
    // every rule again, membership included, on the connection as established
    let verified = endpoint::peer_of(&conn, &shared.trust.get(), shared.env.now_secs());
    let checked = verified
        .clone()
        .and_then(|p| admit(&p, expect, Some(shared.members.as_ref())).map(|()| p));
    let peer = match checked {
        Ok(p) => p,
        Err(r) => {
            tracing::warn!(%from, code = r.code(), reason = %r, "refused a connection");
            let name = verified.map_or_else(
                |_| format!("(unverified, from {})", from.ip()),
                |p| p.uri.to_string(),
            );
            shared.churn.refused(&name, r.code());
            conn.close(
                CLOSE_REFUSED.into(),
                format!("[{}] {r}", r.code()).as_bytes(),
            );
            return;
        }
    };
    if kind == Kind::Client && !shared.serving.load(Ordering::SeqCst) {
        let why = not_serving(&shared);
        tracing::warn!(%from, peer = %peer.uri, "refused a client: {why}");
        shared
            .churn
            .refused(&peer.uri.to_string(), churn::code_of(&why));
        conn.close(CLOSE_REFUSED.into(), why.as_bytes());
        return;
    }
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    let (retire, retired) = watch::channel(false);
    lock(&shared.conns).insert(
        id,
        Open {
            conn: conn.clone(),
            peer: peer.clone(),
            kind,
            bundle: None,
            retire,
        },
    );
    // everything this connection does is logged inside its span: the node, the
    // connection's id and its peer (requests and statements add theirs)
    let span = tracing::info_span!(
        "conn",
        node = %shared.me,
        conn = id,
        peer = %peer.uri,
        epoch = %scratchbird_host::envelope::Authority::epoch(shared.authority.as_ref()),
    );
    shared.churn.connected(&peer.uri.to_string());
    async {
        tracing::info!(%from, "connected");
        // a reload between the check above and the insert would have missed it
        recheck(&shared);
        match kind {
            Kind::Client => client_session(&shared, &conn, &peer.uri, id).await,
            Kind::Peer => peer_session(&shared, &conn, &peer, retired).await,
        }
        lock(&shared.conns).remove(&id);
        shared.churn.disconnected(&peer.uri.to_string());
        tracing::info!(%from, "disconnected");
    }
    .instrument(span)
    .await;
}
