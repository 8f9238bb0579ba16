//! The shard side of every statement: a shard stage arrives in a signed envelope,
//! is verified, runs as the attested user (as the security bundle in force
//! names them) through the one shard runner
//! ([`scratchbird_host::Execution`]), and is audited before anything is
//! released. A shard session holds the transaction of one coordinator session,
//! bound to the user and session context that began it.
//!
//! The in-process transport ([`InProcess`]) hands a coordinator's envelopes to a
//! [`Shard`] on the same node: `sbnode` and [`crate::LocalSession`] run every
//! statement this way, so verification runs on every statement exactly as it
//! will for a remote coordinator.

#[path = "cluster_schema.rs"]
mod cluster_schema;
pub use cluster_schema::SchemaLog;

use scratchbird_compiler::{Catalog, Statement};
use scratchbird_coord::{Claim, ShardRun, ShardSession, ShardTransport};
use scratchbird_host::audit::{AuditLog, AuditRecord};
use scratchbird_host::envelope::{
    Authority, Consistency, Envelope, ReadAt, ReadAtWhy, ReplayGuard, SchemaClaim, SignedEnvelope,
    check_claim, verify_with,
};
use scratchbird_host::{
    Access, Cancel, Execution, Figures, HostError, ModuleBytes, Principal, Release, ResultBatch,
    Sandbox,
};
use scratchbird_policy::derive::{Deriver, SchemaAction, SchemaObject, SecurityContext};
use scratchbird_storage::catalog::{
    ColumnSpec, ColumnType, DomainSpec, IndexSpec, TableChange, TableSpec, ViewSpec,
};
use scratchbird_storage::{
    AsOf, ReadCommittedMode, Storage, StorageError, Transaction, TxnOptions,
};
use scratchbird_types::attest::CLOCK_SKEW_MAX_US;
use scratchbird_types::schema::{RowEstimates, SchemaVersion};
use scratchbird_types::{BundleHash, Epoch, NodeName, SqlType, UserName};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, PoisonError, RwLock};

/// Why a user gets no access, with a stable code and what to do.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// A stable code (`UNKNOWN_PRINCIPAL`, `BAD_CONTEXT`, ...).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<&'static str>,
}

impl Refusal {
    fn new(code: &'static str, message: String, hint: &'static str) -> Self {
        Self {
            code,
            message,
            hint: Some(hint),
        }
    }
}

/// Who the users of a node are: each runs as the principal the security bundle
/// in force names them, with the session context their request states. Nobody
/// bypasses the bundle: schema changes and unfiltered access are actions it
/// grants (`policy/BUNDLE.md`).
#[derive(Debug)]
pub struct Principals {
    /// The bundle in force and the cluster configuration epoch that put it
    /// in force, changed together.
    in_force: RwLock<(Arc<Deriver>, Epoch)>,
    mask_key: [u8; 32],
    /// Who each user ran as with each context, and under which bundle: a
    /// statement asks twice (its plan's estimates, its stage), and working it
    /// out (the principal's name parsed, the context checked against the
    /// bundle's schema, the mask key derived) cost more than the stage's
    /// lookup. An entry of another bundle than the one in force is not used,
    /// and a change of bundle forgets them all.
    known: std::sync::Mutex<std::collections::HashMap<(UserName, Option<String>), Known>>,
}

/// An entry of [`Principals::known`]: the bundle it was worked out under.
#[derive(Debug)]
struct Known {
    deriver: Arc<Deriver>,
    access: Access,
}

/// Users and contexts [`Principals::known`] keeps before it starts afresh.
const KNOWN_MAX: usize = 1024;

impl Principals {
    /// Users under `deriver`'s bundle; tokens and masks keyed by the cluster
    /// secret `mask_key`.
    #[must_use]
    /// Users under `deriver`'s bundle, in force in `epoch` (a node without the
    /// control plane runs [`Epoch::INITIAL`] for ever).
    pub fn new(deriver: Arc<Deriver>, epoch: Epoch, mask_key: [u8; 32]) -> Self {
        Self {
            in_force: RwLock::new((deriver, epoch)),
            mask_key,
            known: std::sync::Mutex::default(),
        }
    }

    fn read(&self) -> (Arc<Deriver>, Epoch) {
        match self.in_force.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn write(&self, f: impl FnOnce(&mut (Arc<Deriver>, Epoch))) {
        match self.in_force.write() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The bundle in force.
    #[must_use]
    pub fn deriver(&self) -> Arc<Deriver> {
        self.read().0
    }

    /// The cluster configuration epoch in force: coordinators make plans in
    /// it and shards run only plans made in it.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.read().1
    }

    /// Puts `d` in force in the same epoch (a node without the control plane
    /// reloading its signed bundle).
    pub fn set_deriver(&self, d: Arc<Deriver>) {
        self.write(|g| g.0 = d);
        self.forget();
    }

    /// Forgets the accesses worked out under earlier bundles (each would keep
    /// its bundle in memory until its user came back).
    fn forget(&self) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Puts epoch `epoch` in force with the bundle `d` it names (`None`: the
    /// bundle in force already is that epoch's).
    pub fn set_epoch(&self, epoch: Epoch, d: Option<Arc<Deriver>>) {
        let changed = d.is_some();
        self.write(|g| {
            if let Some(d) = d {
                g.0 = d;
            }
            g.1 = epoch;
        });
        if changed {
            self.forget();
        }
    }

    /// The hash of the bundle in force.
    #[must_use]
    pub fn bundle_hash(&self) -> BundleHash {
        self.deriver().bundle().hash()
    }

    /// The name `user`'s executions are recorded under.
    #[must_use]
    pub fn label(&self, user: &UserName) -> String {
        self.deriver()
            .bundle()
            .principal_of(user.as_str())
            .unwrap_or_else(|_| format!("User::{user:?}"))
    }

    /// Who `user` runs as with the session context `context` (a JSON object; none
    /// is the empty context).
    ///
    /// # Errors
    /// The bundle cannot name the user, or the context does not fit the bundle.
    pub fn access(&self, user: &UserName, context: Option<&str>) -> Result<Access, Refusal> {
        let deriver = self.deriver();
        let key = (user.clone(), context.map(str::to_owned));
        let known = |g: &std::collections::HashMap<_, Known>| {
            g.get(&key)
                .filter(|k| Arc::ptr_eq(&k.deriver, &deriver))
                .map(|k| k.access.clone())
        };
        if let Some(a) = known(&self.known.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(a);
        }
        let access = self.work_out(&deriver, user, context)?;
        let mut g = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if g.len() >= KNOWN_MAX {
            g.clear();
        }
        g.insert(
            key,
            Known {
                deriver,
                access: access.clone(),
            },
        );
        Ok(access)
    }

    /// [`Principals::access`] under `deriver`'s bundle, worked out afresh.
    fn work_out(
        &self,
        deriver: &Arc<Deriver>,
        user: &UserName,
        context: Option<&str>,
    ) -> Result<Access, Refusal> {
        let principal = deriver.bundle().principal_of(user.as_str()).map_err(|e| {
            Refusal::new(
                "BUNDLE_PRINCIPALS",
                e,
                "give the bundle's actions one principal type (User, say)",
            )
        })?;
        if !deriver.bundle().knows_principal(&principal) {
            return Err(Refusal::new(
                "UNKNOWN_PRINCIPAL",
                format!(
                    "user {user:?} is a member of the cluster, but the security bundle in force does not name {principal}"
                ),
                "add the principal to the bundle's entities.json (with its roles), sign the bundle and reload the node",
            ));
        }
        let mut ctx = SecurityContext::new(&principal);
        if let Some(c) = context {
            let bad = |why: String| {
                Refusal::new(
                    "BAD_CONTEXT",
                    why,
                    "send a JSON object of the attributes the bundle's context type declares",
                )
            };
            scratchbird_types::attest::check_context(c).map_err(bad)?;
            ctx.context = serde_json::from_str(c)
                .map_err(|e| bad(format!("the session context is not JSON: {e}")))?;
            // checked against the bundle's schema now, so a bad context is refused
            // before anything runs, never taken for an empty one
            deriver
                .check_context(&ctx)
                .map_err(|e| bad(format!("the session context does not fit the bundle: {e}")))?;
        }
        Ok(Access::Principal(Arc::new(Principal::new(
            deriver.clone(),
            ctx,
            &self.mask_key,
        ))))
    }
}

/// How a shard decides who a verified user runs as.
#[derive(Debug)]
pub enum Users {
    /// One in-process caller, with the access it set over its own data directory
    /// ([`crate::LocalSession`]); `label` names it in the audit trail.
    Fixed {
        /// The access.
        access: Access,
        /// Its name in audit records.
        label: String,
    },
    /// The users of the cluster.
    Cluster(Arc<Principals>),
}

/// What a shard is made of.
pub struct ShardParts {
    /// Its storage.
    pub storage: Arc<Storage>,
    /// Its sandbox.
    pub sandbox: Arc<Sandbox>,
    /// Whom it trusts for members, users, the epoch and the bundle in force.
    pub authority: Arc<dyn Authority>,
    /// Who users run as.
    pub users: Users,
    /// Its audit trail (`None`: unrecorded, for an embedded store).
    pub audit: Option<Arc<AuditLog>>,
    /// Its own name: the coordinator named by claims that come without an
    /// envelope (BEGIN, schema changes) from the in-process coordinator.
    pub node: NodeName,
}

/// A shard: its storage and sandbox, the authority it verifies envelopes with,
/// who users run as, and its audit trail.
pub struct Shard {
    storage: Arc<Storage>,
    sandbox: Arc<Sandbox>,
    authority: Arc<dyn Authority>,
    users: Users,
    replay: ReplayGuard,
    audit: Option<Arc<AuditLog>>,
    node: NodeName,
    /// Under the cluster's control log: where schema changes go.
    schema: std::sync::OnceLock<Arc<dyn SchemaLog>>,
    /// The version of the cluster's shard map this shard holds its rows by
    /// (0 outside a cluster): plans routed by another are refused.
    map_version: std::sync::atomic::AtomicU64,
}

impl Shard {
    /// The shard map version this shard runs plans of.
    #[must_use]
    pub fn map_version(&self) -> u64 {
        self.map_version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// From now on this shard is position `index` of `shards` in the
    /// cluster's shard map of version `version`: it runs plans routed by that
    /// map only, and its storage refuses rows placed on another shard.
    pub fn set_placement(&self, version: u64, index: u32, shards: u32) {
        self.storage.set_placement(index, shards);
        self.map_version
            .store(version, std::sync::atomic::Ordering::Release);
    }
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a subplan returned ([`Shard::execute`]).
#[derive(Debug)]
pub struct SubplanResult {
    /// The result batches, per output.
    pub batches: Vec<ResultBatch>,
    /// What the shard reports: figures over visible rows, who it ran as.
    pub run: ShardRun,
}

/// The user a verified envelope or claim names, and the context it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    user: UserName,
    context: Option<String>,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "user {} with {}",
            self.user,
            self.context.as_deref().unwrap_or("no session context")
        )
    }
}

impl Shard {
    /// A shard of `parts`.
    #[must_use]
    pub fn from_parts(parts: ShardParts) -> Self {
        Self {
            storage: parts.storage,
            sandbox: parts.sandbox,
            authority: parts.authority,
            users: parts.users,
            replay: ReplayGuard::default(),
            audit: parts.audit,
            node: parts.node,
            schema: std::sync::OnceLock::new(),
            map_version: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A shard enforcing the bundle of `deriver` for every user,
    /// which must be the bundle the authority says is in force.
    ///
    /// # Errors
    /// The bundles differ.
    pub fn new(
        storage: Arc<Storage>,
        sandbox: Arc<Sandbox>,
        authority: Arc<dyn Authority>,
        deriver: Arc<Deriver>,
        mask_secret: [u8; 32],
        audit: Arc<AuditLog>,
    ) -> Result<Self, HostError> {
        if deriver.bundle().hash() != authority.bundle_hash() {
            return Err(HostError::Session(
                "the loaded security bundle is not the one the cluster has in force".into(),
            ));
        }
        let epoch = authority.epoch();
        Ok(Self::from_parts(ShardParts {
            storage,
            sandbox,
            authority,
            users: Users::Cluster(Arc::new(Principals::new(deriver, epoch, mask_secret))),
            audit: Some(audit),
            node: NodeName::LOCAL,
        }))
    }

    /// A session for one coordinator session.
    #[must_use]
    pub fn session(self: &Arc<Self>) -> ShardSessionOf {
        ShardSessionOf {
            shard: self.clone(),
            authority: self.authority.clone(),
            not_before_us: i64::MIN,
            peer: None,
            txn: None,
            signed_sql: None,
            bound: None,
        }
    }

    /// A session for the coordinator node `peer`: envelopes
    /// and control statements verified with `authority` (which knows that
    /// node), attestations given to `peer`, and attestations issued before
    /// `not_before_us` refused (when this node started: a request made before a
    /// restart could be a replay the in-memory guard no longer remembers).
    #[must_use]
    pub fn peer_session(
        self: &Arc<Self>,
        authority: Arc<dyn Authority>,
        not_before_us: i64,
        peer: NodeName,
    ) -> ShardSessionOf {
        ShardSessionOf {
            shard: self.clone(),
            authority,
            not_before_us,
            peer: Some(peer),
            txn: None,
            signed_sql: None,
            bound: None,
        }
    }

    /// Verifies `signed` and runs its module in a transaction of its own, as the
    /// attested user, at time `now_us` (microseconds since the Unix epoch),
    /// collecting its batches. Refused envelopes are audited too.
    ///
    /// # Errors
    /// The envelope or module was refused, the execution failed, or the record
    /// could not be written (then no result is released and writes are undone).
    pub fn execute(
        self: &Arc<Self>,
        signed: &SignedEnvelope,
        now_us: i64,
    ) -> Result<SubplanResult, HostError> {
        let out: Rc<RefCell<Vec<ResultBatch>>> = Rc::default();
        let o2 = out.clone();
        let mut s = self.session();
        let run = s.run_at(
            signed,
            Release::AfterReturn,
            Box::new(move |b| {
                o2.borrow_mut().push(b);
                Ok(())
            }),
            &Cancel::never(),
            now_us,
        )?;
        let batches = std::mem::take(&mut *out.borrow_mut());
        Ok(SubplanResult { batches, run })
    }

    /// The name `user` is recorded under.
    fn label(&self, user: &UserName) -> String {
        match &self.users {
            Users::Fixed { label, .. } => label.clone(),
            Users::Cluster(p) => p.label(user),
        }
    }

    /// `user`'s access with `context`, the name it is recorded under, and the
    /// bundle enforced.
    fn access(&self, b: &Bound) -> Result<(Access, String), HostError> {
        match &self.users {
            Users::Fixed { access, label } => Ok((access.clone(), label.clone())),
            Users::Cluster(p) => {
                let access = p
                    .access(&b.user, b.context.as_deref())
                    .map_err(|r| HostError::Permission(format!("[{}] {}", r.code, r.message)))?;
                let label = match &access {
                    Access::Owner => format!("owner:{}", b.user),
                    Access::Principal(p) => p.name().to_owned(),
                };
                Ok((access, label))
            }
        }
    }

    fn audit_refusal(&self, mut rec: AuditRecord, e: &HostError) -> Result<(), HostError> {
        rec.outcome = "error".into();
        rec.error = Some(e.to_string());
        if let Some(log) = &self.audit {
            log.append(rec).map_err(HostError::Audit)?;
        }
        Ok(())
    }

    /// The rows of a load stage: statement `index` of the request the user
    /// signed (`sql`) must be a `COPY ... FROM STDIN` that compiles, against
    /// the schema `txn` sees, to exactly `module`: a coordinator can neither
    /// send other rows than the user's nor write them elsewhere.
    fn copy_of(
        &self,
        module: ModuleBytes<'_>,
        index: u32,
        sql: &str,
        txn: &Transaction,
    ) -> Result<Arc<scratchbird_compiler::copy::Load>, HostError> {
        let refuse = |m: String| HostError::Envelope(m);
        let parsed = scratchbird_compiler::parse(sql).map_err(|e| {
            refuse(format!(
                "the request of the load stage does not parse: {}",
                e.message
            ))
        })?;
        let p = usize::try_from(index)
            .ok()
            .and_then(|i| parsed.get(i))
            .ok_or_else(|| {
                refuse(format!(
                    "the request has no statement {index} for the load stage"
                ))
            })?;
        let cat = txn.catalog()?;
        let (_, shards) = self.storage.placement();
        let c = match scratchbird_compiler::compile_over(p, &cat, shards) {
            Ok(Statement::Query(c)) => c,
            Ok(_) => return Err(refuse("the load stage's statement is not a COPY".into())),
            Err(e) => {
                return Err(refuse(format!(
                    "the load stage's COPY does not compile here: {}",
                    e.message
                )));
            }
        };
        let load = c.load.clone().ok_or_else(|| {
            refuse("the load stage's statement is not a COPY ... FROM STDIN".into())
        })?;
        if c.hash != module.hash() {
            return Err(refuse(
                "the load stage is not the module the user's COPY compiles to".into(),
            ));
        }
        Ok(load)
    }

    fn begin(&self, opts: TxnOptions) -> Result<Transaction, HostError> {
        // lock waits are bounded by the query time limit: a module blocked in a
        // host call is not interrupted by the sandbox deadline
        Ok(self
            .storage
            .begin(opts.wait_ms(self.sandbox.limits().timeout_ms))?)
    }
}

/// A load stage's rows as its input 0: read (this shard's only) on a
/// thread of their own from the request the user signed, each batch handed
/// to the stage as soon as it is full, so reading and writing go on at once.
/// The reader stops when the stage ends.
fn load_rows(
    exec: &Execution<'_>,
    module: ModuleBytes<'_>,
    load: &Arc<scratchbird_compiler::copy::Load>,
    (keep, shards): (usize, usize),
    txn: Transaction,
    access: &Access,
    rec: AuditRecord,
) -> (Transaction, Result<scratchbird_host::ExecStats, HostError>) {
    let layout = match load.layout() {
        Ok(l) => Arc::new(l),
        Err(e) => return (txn, Err(rows_error(e))),
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Option<Vec<u8>>, HostError>>(
            crate::limits::COPY_BATCHES_AHEAD,
        );
        let reader = std::thread::Builder::new()
            .name("copy rows".into())
            .spawn_scoped(scope, move || {
                let r = load.batches(keep, shards, &mut |b| {
                    tx.send(Ok(Some(b))).map_err(|_| {
                        scratchbird_compiler::CompileError::stopped("the load stage ended")
                    })
                });
                // the end is said, so a reader that died is not taken for one
                // that read every row
                let _ = tx.send(r.map(|_| None).map_err(rows_error));
            });
        if let Err(e) = reader {
            return (
                txn,
                Err(HostError::internal(format!(
                    "no thread to read the rows: {e}"
                ))),
            );
        }
        exec.load(
            module,
            Box::new(Streamed {
                rx,
                layout,
                done: false,
            }),
            txn,
            access,
            rec,
        )
    })
}

fn rows_error(e: scratchbird_compiler::CompileError) -> HostError {
    HostError::Rows {
        code: e.code,
        message: match e.hint {
            Some(h) => format!("{}\n  hint: {h}", e.message),
            None => e.message,
        },
    }
}

/// The batches a load stage's reader hands over, as its input 0.
struct Streamed {
    rx: std::sync::mpsc::Receiver<Result<Option<Vec<u8>>, HostError>>,
    layout: Arc<scratchbird_types::batch::BatchLayout>,
    /// The reader said it read every row.
    done: bool,
}

impl scratchbird_host::MergeInputs for Streamed {
    fn next(&mut self, input: usize) -> Result<Option<ResultBatch>, HostError> {
        if input != 0 || self.done {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(Ok(Some(bytes))) => ResultBatch::from_bytes(0, self.layout.clone(), bytes).map(Some),
            Ok(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HostError::internal(
                "the reader of the COPY's rows stopped before their end",
            )),
        }
    }
}

/// Whether `access` may see what the policies withheld in a stage reading
/// `tables` (the bundle's `Inspect` on each; an owner, whom no policy
/// restricts, may). Undecidable is no (logged).
fn may_inspect(access: &Access, txn: &Transaction, tables: &[scratchbird_types::TableId]) -> bool {
    let Access::Principal(p) = access else {
        return true;
    };
    let Ok(cat) = txn.catalog() else {
        return false;
    };
    let mut names = Vec::with_capacity(tables.len());
    for id in tables {
        match cat.table(*id) {
            Some(def) => names.push(def.name.clone()),
            None => return false,
        }
    }
    p.may_inspect(names.iter().map(String::as_str))
        .unwrap_or_else(|e| {
            tracing::warn!("deciding Inspect: {e}");
            false
        })
}

/// The row estimates a principal's statements are planned with: only of the
/// tables whose every row it may read (what `count(*)` would tell it), and
/// distinct values only of the columns of those it reads unmasked; the
/// others are planned as of unknown size, so no plan, EXPLAIN or order of
/// unordered rows depends on rows or values the bundle hides from it.
#[derive(Debug)]
struct CountableRows {
    all: Arc<dyn RowEstimates>,
    principal: Arc<scratchbird_host::Principal>,
    catalog: Arc<Catalog>,
}

impl RowEstimates for CountableRows {
    fn rows(&self, table: scratchbird_types::TableId) -> Option<u64> {
        let def = self.catalog.table(table)?;
        if self.principal.may_count(def, &self.catalog) {
            self.all.rows(table)
        } else {
            None
        }
    }

    /// Only of a column it reads unmasked in a table it may count (what
    /// `count(DISTINCT col)` would tell it).
    fn distinct(&self, table: scratchbird_types::TableId, column: usize) -> Option<f64> {
        let def = self.catalog.table(table)?;
        let sees = self.principal.may_count(def, &self.catalog)
            && self
                .principal
                .sees_whole(def, &self.catalog, &[column])
                .unwrap_or(false);
        if sees {
            self.all.distinct(table, column)
        } else {
            None
        }
    }
}

/// A shard's session for one coordinator session ([`Shard::session`]).
pub struct ShardSessionOf {
    shard: Arc<Shard>,
    /// Whom this session verifies envelopes with.
    authority: Arc<dyn Authority>,
    /// Attestations issued before this are refused.
    not_before_us: i64,
    /// The remote coordinator this session serves (`None`: this node's own,
    /// whose control statements are bound to a client connection).
    peer: Option<NodeName>,
    /// The open transaction: BEGIN ... COMMIT's (with `bound`), or the current
    /// autocommit statement's.
    txn: Option<Transaction>,
    /// The statements of the last request a control request was checked
    /// against, by the request's digest (which its attestation signs): a script
    /// of many schema changes is parsed here once, not once per statement.
    signed_sql: Option<([u8; 32], Arc<Vec<scratchbird_compiler::Parsed>>)>,
    /// Who BEGIN bound the transaction to.
    bound: Option<Bound>,
}

/// How far ahead of a shard's clock a best-effort read time may be and still
/// be read at (the shard waits for its clock to reach it).
const AHEAD_WAIT_MAX_US: i64 = 250_000;

/// How long before this shard's clock a best-effort snapshot's time may be
/// (a statement's stages are signed again, with the same time, for up to a
/// few seconds while an epoch takes effect), beyond a staleness bound.
const READ_AT_LAG_MAX_US: i64 = 10_000_000;

/// Refuses a read time the user did not ask for: a time travel's time, for
/// the tables the stage reads (`names`: the present catalog's names of the
/// envelope's tables), must be what one statement of the user's signed SQL
/// asks; a best-effort snapshot's must be close to now (at most
/// [`READ_AT_LAG_MAX_US`] before this shard's clock, and not before the user's
/// attestation, give or take the clock skew allowed), under snapshot
/// consistency; bounded staleness's no earlier than the user's bound before
/// then. A coordinator cannot make a shard read further into the past than
/// the user asked.
fn check_read_at(env: &Envelope, names: &[String], now_us: i64) -> Result<(), HostError> {
    let Some(at) = env.read_at else {
        return Ok(());
    };
    let issued = env.attestation.issued_us;
    let recent = |bound: i64| {
        at.at_us
            >= issued
                .saturating_sub(bound)
                .saturating_sub(CLOCK_SKEW_MAX_US)
            && at.at_us
                >= now_us
                    .saturating_sub(bound)
                    .saturating_sub(READ_AT_LAG_MAX_US)
            && at.at_us <= now_us.saturating_add(CLOCK_SKEW_MAX_US)
    };
    let ok = match (at.why, env.attestation.consistency) {
        (ReadAtWhy::TimeTravel, _) => scratchbird_compiler::time_travel_points(&env.asked.sql)
            .iter()
            .any(|(t, tables)| *t == at.at_us && names.iter().all(|n| tables.contains(n))),
        (ReadAtWhy::Snapshot, Consistency::Snapshot) => recent(0),
        (ReadAtWhy::Staleness, Consistency::BoundedStaleness(ms)) => {
            recent(i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(HostError::Envelope(format!(
            "the envelope reads at {} UTC ({:?}), which the user's signed request does not allow",
            scratchbird_types::Timestamp(at.at_us),
            at.why
        )))
    }
}

/// The transaction an autocommit statement of `consistency` runs in.
fn autocommit_options(consistency: Consistency) -> TxnOptions {
    match consistency {
        // one shard: every mode reads one consistent snapshot, the primary's
        // (there is no replica to be stale)
        Consistency::Snapshot | Consistency::BoundedStaleness(_) => TxnOptions::snapshot(),
        Consistency::ReadCommitted => {
            TxnOptions::read_committed(ReadCommittedMode::ReadConsistency)
        }
    }
}

impl std::fmt::Debug for ShardSessionOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSessionOf")
            .field("in_transaction", &self.bound.is_some())
            .finish_non_exhaustive()
    }
}

/// The first 8 bytes of `id` in hex: enough to find an envelope in the audit
/// trail from a log line.
fn short_hex(id: &[u8; 32]) -> String {
    scratchbird_types::hex(&id[..8])
}

/// The refusal of a transaction-control statement by `who` in a transaction
/// `bound` to someone else (another user, or the same with another context).
fn not_binding(bound: &Bound, who: &Bound) -> HostError {
    refuse(format!(
        "this transaction was begun by {bound}, not by {who}"
    ))
}

fn refuse(msg: String) -> HostError {
    HostError::Session(msg)
}

impl ShardSessionOf {
    fn txn(&mut self, consistency: Consistency) -> Result<&mut Transaction, HostError> {
        if self.txn.is_none() {
            self.txn = Some(self.shard.begin(autocommit_options(consistency))?);
        }
        self.txn
            .as_mut()
            .ok_or_else(|| HostError::internal("no transaction"))
    }

    /// The transaction of a statement for `who`: BEGIN's, which must be bound
    /// to the same user and context, or the autocommit statement's.
    fn statement_txn(
        &mut self,
        who: &Bound,
        consistency: Consistency,
    ) -> Result<Transaction, HostError> {
        if let Some(b) = &self.bound
            && b != who
        {
            return Err(HostError::Bound(format!(
                "the security context cannot change inside a transaction: it was begun by {b}; a statement for {who} cannot run in it: COMMIT or ROLLBACK first"
            )));
        }
        let opts = autocommit_options(consistency);
        if let Some(t) = self.txn.take() {
            if self.bound.is_some() || t.options().isolation == opts.isolation {
                return Ok(t);
            }
            // the catalog was read in a transaction of another mode than the
            // envelope asks for: the statement gets the mode it asked for
            let _ = t.rollback();
        }
        self.shard.begin(opts)
    }

    /// The transaction a stage of `env` runs in, the schema version in force
    /// (what its plan must have been compiled against), and, for a
    /// best-effort read time this shard could not read at, a note saying so.
    fn stage_txn(
        &mut self,
        who: &Bound,
        env: &Envelope,
        now_us: i64,
    ) -> Result<(Transaction, SchemaVersion, Option<String>), HostError> {
        let present = self.statement_txn(who, env.consistency)?;
        let cat = present.catalog()?;
        let seen = cat.version();
        let Some(at) = env.read_at else {
            return Ok((present, seen, None));
        };
        let names: Vec<String> = env
            .tables
            .iter()
            .filter_map(|t| cat.table(*t).map(|d| d.name.clone()))
            .collect();
        if seen.0 != env.schema_version {
            // another schema: the schema check after this refuses the plan
            return Ok((present, seen, None));
        }
        if names.len() != env.tables.len() {
            // a table this schema does not have: no time can be checked
            // for it, so the stage is refused rather than read in the present
            self.end_statement(present, false)?;
            return Err(HostError::Envelope(
                "the envelope names a table this shard's schema does not have".into(),
            ));
        }
        if let Err(e) = check_read_at(env, &names, now_us) {
            self.end_statement(present, false)?;
            return Err(e);
        }
        if self.bound.is_some() {
            self.txn = Some(present);
            return Err(refuse(
                "a stage that reads at a point in time runs outside BEGIN ... COMMIT, and this session's transaction is open".into(),
            ));
        }
        match self.past_txn(at, &env.tables) {
            Ok(txn) => {
                let _ = present.rollback();
                Ok((txn, seen, None))
            }
            Err(e) if at.why == ReadAtWhy::TimeTravel => {
                let _ = present.rollback();
                Err(e)
            }
            // the present is within any staleness bound: nothing to say
            Err(_) if at.why == ReadAtWhy::Staleness => Ok((present, seen, None)),
            Err(e) => Ok((
                present,
                seen,
                Some(format!(
                    "node {} read its present state, not the snapshot at {} UTC the coordinator chose: {e}",
                    self.shard.node,
                    scratchbird_types::Timestamp(at.at_us)
                )),
            )),
        }
    }

    /// A read-only transaction over the commits made at or before `at`, in
    /// which every one of `tables` existed. A time a little ahead of this
    /// shard's clock (clocks differ) is waited for, up to
    /// [`AHEAD_WAIT_MAX_US`]: commits still to come here could otherwise be
    /// stamped before it.
    fn past_txn(
        &self,
        at: ReadAt,
        tables: &[scratchbird_types::TableId],
    ) -> Result<Transaction, HostError> {
        let env = self.shard.storage.env().clone();
        let ahead = at.at_us.saturating_sub(env.now_micros());
        if ahead > 0 {
            if ahead > AHEAD_WAIT_MAX_US || at.why == ReadAtWhy::TimeTravel {
                return Err(HostError::Route {
                    code: "CLOCK_BEHIND",
                    message: format!(
                        "the time is {} ms after this shard's clock (node {}); its clock is behind the coordinator's",
                        ahead / 1000,
                        self.shard.node
                    ),
                });
            }
            let until = std::time::Instant::now()
                + std::time::Duration::from_micros(u64::try_from(ahead).unwrap_or(0));
            while env.now_micros() < at.at_us && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if env.now_micros() < at.at_us {
                return Err(HostError::Route {
                    code: "CLOCK_BEHIND",
                    message: format!(
                        "this shard's clock (node {}) did not reach the time within {} ms",
                        self.shard.node,
                        AHEAD_WAIT_MAX_US / 1000
                    ),
                });
            }
        }
        let txn = self
            .shard
            .begin(TxnOptions::snapshot().as_of(AsOf::Timestamp(at.at_us)))
            .map_err(|e| match e {
                HostError::Storage(StorageError::OutsideRetention { oldest, newest, .. }) => {
                    HostError::Storage(StorageError::OutsideRetention {
                        requested: format!("{} UTC", scratchbird_types::Timestamp(at.at_us)),
                        oldest,
                        newest,
                    })
                }
                other => other,
            })?;
        let cat = txn.catalog()?;
        if let Some(missing) = tables.iter().find(|t| cat.table(**t).is_none()) {
            let _ = txn.rollback();
            return Err(HostError::Route {
                code: "OUTSIDE_RETENTION",
                message: format!(
                    "a table the statement reads (id {missing}) did not exist at {} UTC",
                    scratchbird_types::Timestamp(at.at_us)
                ),
            });
        }
        Ok(txn)
    }

    /// Ends a statement's use of `txn`: kept inside BEGIN ... COMMIT, else
    /// committed when `ok` and rolled back when not.
    fn end_statement(&mut self, txn: Transaction, ok: bool) -> Result<(), HostError> {
        if self.bound.is_some() {
            self.txn = Some(txn);
            return Ok(());
        }
        if ok {
            txn.commit()?;
        } else {
            let _ = txn.rollback();
        }
        Ok(())
    }

    /// [`ShardSession::run`] at time `now_us`.
    fn run_at(
        &mut self,
        signed: &SignedEnvelope,
        release: Release,
        sink: scratchbird_host::ResultSink,
        stop: &Cancel,
        now_us: i64,
    ) -> Result<ShardRun, HostError> {
        let shard = self.shard.clone();
        let authority = self.authority.clone();
        let mut rec = AuditRecord::new("unverified");
        rec.envelope = Some(signed.id());
        rec.epoch = authority.epoch();
        rec.bundle = Some(authority.bundle_hash().0);
        // validated (and compiled) by the sandbox's prepare, so a module in its
        // cache is not validated again
        let checked = verify_with(
            signed,
            authority.as_ref(),
            &shard.node,
            &|m| shard.sandbox.prepare(m).map(|(p, _)| p.manifest.clone()),
            &shard.replay,
            now_us,
        )
        .and_then(|v| {
            let map = shard.map_version();
            if v.envelope.shard_map_version != map {
                // routed by another shard map than this shard's: the rows it
                // would read or write may not be here
                return Err(HostError::Route {
                    code: "SHARD_MAP_CHANGED",
                    message: format!(
                        "the plan was routed with shard map version {}; this shard runs version {map}: run the statement again",
                        v.envelope.shard_map_version
                    ),
                });
            }
            if v.envelope.attestation.issued_us < self.not_before_us {
                return Err(HostError::Envelope(
                    "the attestation was issued before this node last started: an envelope from before a restart is refused as a possible replay".into(),
                ));
            }
            Ok(v)
        })
        .and_then(|v| {
            let who = Bound {
                user: v.user.clone(),
                context: v.envelope.asked.context.clone(),
            };
            let (access, label) = shard.access(&who)?;
            rec.principal = label;
            rec.coordinator = Some(v.envelope.coordinator.to_string());
            rec.trace = Some(scratchbird_types::hex(&v.envelope.trace));
            rec.context.clone_from(&who.context);
            if matches!(access, Access::Owner) {
                rec.bundle = None;
            }
            let (txn, seen, note) = self.stage_txn(&who, &v.envelope, now_us)?;
            if seen.0 != v.envelope.schema_version {
                // nothing ran: the transaction is kept inside BEGIN ... COMMIT
                // (a snapshot does not see later changes), the statement's own
                // rolled back; a node behind the cluster's log catches up, so
                // the coordinator's retry finds the schema it compiled against
                self.end_statement(txn, false)?;
                if let Some(log) = shard.schema_log() {
                    log.catch_up();
                }
                return Err(HostError::SchemaChanged {
                    envelope: SchemaVersion(v.envelope.schema_version),
                    shard: seen,
                });
            }
            // what the policies withheld, when asked (EXPLAIN ANALYZE) and
            // the bundle lets the principal see it for every table read
            let inspect = v.envelope.inspect && may_inspect(&access, &txn, &v.envelope.tables);
            let load = v.envelope.load.map(|i| (i, v.envelope.asked.sql.clone()));
            Ok((access, txn, note, inspect, load, v.module))
        });
        let (access, txn, note, inspect, load, module) = match checked {
            Ok(x) => x,
            Err(e) => {
                rec.modules = vec![*blake3::hash(&signed.module).as_bytes()];
                // a plan of another epoch did not run: the statement's
                // transaction (its catalog compiled the plan) stays for the
                // coordinator's retry in the epoch in force, or its abandon
                if !self.in_transaction() && !matches!(e, HostError::EpochChanged { .. }) {
                    self.abandon();
                }
                shard.audit_refusal(rec, &e)?;
                return Err(e);
            }
        };
        rec.modules = vec![module.hash()];
        // the stage's log lines name who it runs as, in which transaction
        let span = tracing::info_span!(
            "stage",
            trace = %rec.trace.as_deref().unwrap_or_default(),
            principal = %rec.principal,
            txn = %txn.id().0,
            envelope = %rec.envelope.map(|e| short_hex(&e)).unwrap_or_default(),
        );
        let _in = span.enter();
        let run = ShardRun {
            figures: Figures::default(),
            principal: rec.principal.clone(),
            bundle: rec.bundle,
            context: rec.context.clone(),
            elapsed_us: 0,
        };
        let exec = Execution {
            sandbox: &shard.sandbox,
            audit: shard.audit.as_ref(),
            stop,
        };
        let (txn, result) = match load {
            Some((index, sql)) => {
                let rows = match shard.copy_of(module, index, &sql, &txn) {
                    Ok(r) => r,
                    Err(e) => {
                        self.end_statement(txn, false)?;
                        shard.audit_refusal(rec, &e)?;
                        return Err(e);
                    }
                };
                let (keep, shards) = shard.storage.placement();
                load_rows(&exec, module, &rows, (keep, shards), txn, &access, rec)
            }
            None if !self.in_transaction() => {
                // the statement's own transaction: an upsert that collides
                // with a row committed meanwhile runs again in a new one
                let opts = txn.options();
                let renew = || shard.begin(opts);
                exec.shard_autocommit(module, txn, &access, rec, release, sink, &renew)
            }
            None => exec.shard(module, txn, &access, rec, release, sink),
        };
        self.end_statement(txn, result.is_ok())?;
        let stats = result?;
        let mut figures = stats.figures();
        figures.notes.extend(note);
        if inspect {
            figures.withheld = Some(stats.withheld());
        }
        Ok(ShardRun { figures, ..run })
    }

    /// The coordinator whose claims and envelopes this session takes.
    fn coordinator(&self) -> &NodeName {
        self.peer.as_ref().unwrap_or(&self.shard.node)
    }

    /// The user of `claim`, for its statement `index` (checked as an
    /// envelope's attestation is; from a remote coordinator, also refused when
    /// issued before this node started or when that statement was already run).
    fn claimed(&self, claim: &Claim, index: usize) -> Result<Bound, HostError> {
        let shard = &self.shard;
        let now = shard.storage.env().now_micros();
        let user = check_claim(
            &claim.attestation,
            &claim.asked,
            self.coordinator(),
            self.authority.as_ref(),
            now,
        )?;
        if let Some(peer) = &self.peer {
            // what an envelope's signer must be, a control statement's sender
            // must be too: an enabled member with the coordinator role
            if !self
                .authority
                .member(peer)
                .is_some_and(|m| m.enabled && m.coordinator)
            {
                return Err(HostError::Envelope(format!(
                    "node {peer} is not an enabled member with the coordinator role: its control statements are refused"
                )));
            }
            if claim.attestation.issued_us < self.not_before_us {
                return Err(HostError::Envelope(
                    "the attestation was issued before this node last started: a control statement from before a restart is refused as a possible replay".into(),
                ));
            }
            shard
                .replay
                .admit_statement(peer, &claim.attestation, index, now)?;
        }
        Ok(Bound {
            user,
            context: claim.asked.context.clone(),
        })
    }

    /// `who`'s access, a refusal recorded in the audit trail.
    fn access_audited(&mut self, who: &Bound) -> Result<(Access, String), HostError> {
        self.shard.access(who).or_else(|e| {
            let mut rec = AuditRecord::new(&self.shard.label(&who.user));
            rec.epoch = self.authority.epoch();
            rec.coordinator = Some(self.coordinator().to_string());
            rec.context.clone_from(&who.context);
            self.shard.audit_refusal(rec, &e)?;
            Err(e)
        })
    }

    /// Statement `index` of the SQL the user signed in `claim`, compiled here
    /// against the catalog this session sees: what a control request may run,
    /// so a coordinator cannot turn a signed `SELECT` into a `DROP TABLE`.
    fn signed(&mut self, claim: &Claim, index: usize) -> Result<Statement, HostError> {
        // a control statement never takes parameters (the coordinator refuses
        // values beside anything but a query or a write): a request with
        // values is no control request the user made
        if !claim.asked.params.is_empty() {
            return Err(HostError::Envelope(
                "the user's request carries parameter values, which no control statement takes"
                    .into(),
            ));
        }
        // `claimed` checked that the attestation signs exactly this request
        let digest = claim.attestation.request;
        let parsed = match &self.signed_sql {
            Some((d, p)) if *d == digest => p.clone(),
            _ => {
                let p = Arc::new(scratchbird_compiler::parse(&claim.asked.sql).map_err(|e| {
                    HostError::Envelope(format!("the SQL the user signed does not parse here: {e}"))
                })?);
                self.signed_sql = Some((digest, p.clone()));
                p
            }
        };
        let p = parsed.get(index).ok_or_else(|| {
            HostError::Envelope(format!(
                "the user signed {} statement(s); the coordinator sent statement {}",
                parsed.len(),
                index + 1
            ))
        })?;
        let cat = self.catalog(claim.attestation.consistency)?;
        scratchbird_compiler::compile(p, &cat).map_err(|e| {
            HostError::Envelope(format!(
                "statement {} the user signed does not compile here: {e}",
                index + 1
            ))
        })
    }

    /// Runs statement `index` of the SQL the user signed in `claim`, a control
    /// statement (transaction control or a schema change) the shard compiles
    /// itself: what a remote coordinator sends in place of the statement.
    ///
    /// # Errors
    /// As [`ShardSession::control`].
    pub fn control_signed(
        &mut self,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        self.control_checked(None, claim, index)
    }

    /// [`ShardSession::control`], with `sent` the statement the coordinator
    /// compiled (refused when it is not the one the user signed), or none.
    fn control_checked(
        &mut self,
        sent: Option<Statement>,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        let checked = self.claimed(claim, index).and_then(|who| {
            let mine = self.signed(claim, index)?;
            if sent.is_some_and(|op| op != mine) {
                return Err(HostError::Envelope(format!(
                    "the coordinator's control request is not statement {} the user signed",
                    index + 1
                )));
            }
            if matches!(
                mine,
                Statement::Query(_) | Statement::Explain(_) | Statement::ExplainAnalyze(_)
            ) {
                return Err(HostError::Envelope(format!(
                    "statement {} the user signed is a query: it runs in a signed envelope, not as a control request",
                    index + 1
                )));
            }
            Ok((who, mine))
        });
        let (who, op) = match checked {
            Ok(x) => x,
            Err(e) => {
                if !self.in_transaction() {
                    self.abandon();
                }
                let mut rec = AuditRecord::new("unverified");
                rec.epoch = self.authority.epoch();
                rec.coordinator = Some(self.coordinator().to_string());
                self.shard.audit_refusal(rec, &e)?;
                return Err(e);
            }
        };
        if let Some(log) = self.shard.schema_log().cloned()
            && is_schema_change(&op)
        {
            return self.schema_through_log(log.as_ref(), &who, claim, index);
        }
        self.apply_control(op, who)
    }

    /// A schema change under the cluster's control log: checked here, then
    /// put in the log, which every node applies (this one before it answers).
    fn schema_through_log(
        &mut self,
        log: &dyn SchemaLog,
        who: &Bound,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        let checked = if self.bound.is_some() {
            Err(HostError::Session(
                "in a cluster a schema change commits on its own, through the cluster's log: run it outside BEGIN ... COMMIT".into(),
            ))
        } else if self.peer.is_some() {
            Err(HostError::Envelope(
                "a schema change goes to the cluster's log from the coordinator the user sent it to, not to a shard".into(),
            ))
        } else {
            u32::try_from(index)
                .map_err(|_| HostError::Envelope("a statement index beyond 2^32".into()))
        };
        // the statement's transaction (its catalog was read) is not used
        if self.bound.is_none() {
            self.abandon();
        }
        let sc = checked.map(|index| SchemaClaim {
            attestation: claim.attestation.clone(),
            asked: claim.asked.clone(),
            index,
        });
        // what the bundle refuses never reaches the log (its leader checks
        // again before the change costs an entry)
        let now = self.shard.storage.env().now_micros();
        let authorized = sc.and_then(|sc| {
            Ok((
                self.shard.authorize_schema(&sc, self.coordinator(), now)?,
                sc,
            ))
        });
        let (noop, sc) = match authorized {
            Ok(x) => x,
            Err(e) => {
                let mut rec = AuditRecord::new(&self.shard.label(&who.user));
                rec.epoch = self.authority.epoch();
                rec.coordinator = Some(self.coordinator().to_string());
                rec.context.clone_from(&who.context);
                self.shard.audit_refusal(rec, &e)?;
                return Err(e);
            }
        };
        if let Some(tag) = noop {
            return Ok(tag);
        }
        log.submit(&sc)
    }

    /// Applies the schema change `op` for `who`, if the bundle grants it on
    /// every object it touches. Granted or refused, the change is recorded in
    /// the audit trail before its outcome is returned.
    fn schema_change(&mut self, op: Statement, who: &Bound) -> Result<&'static str, HostError> {
        let (access, label) = self.access_audited(who)?;
        let mut rec = AuditRecord::new(&label);
        rec.epoch = self.authority.epoch();
        rec.coordinator = Some(self.coordinator().to_string());
        rec.context.clone_from(&who.context);
        if let Access::Principal(p) = &access {
            rec.bundle = Some(p.bundle_hash().0);
        }
        let started = std::time::Instant::now();
        let r = self.schema_change_checked(op, who, &access, &mut rec);
        rec.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &r {
            Ok(_) => {
                if let Some(log) = &self.shard.audit {
                    // durable before the change is reported; a failed record
                    // leaves the change committed but unreported, never unrecorded
                    log.append(rec).map_err(HostError::Audit)?;
                }
            }
            Err(e) => self.shard.audit_refusal(rec, e)?,
        }
        r
    }

    fn schema_change_checked(
        &mut self,
        op: Statement,
        who: &Bound,
        access: &Access,
        rec: &mut AuditRecord,
    ) -> Result<&'static str, HostError> {
        if let Some(b) = &self.bound
            && b != who
        {
            return Err(refuse(format!(
                "this transaction was begun by {b}; a schema change for {who} cannot run in it"
            )));
        }
        let mut txn = match self.txn.take() {
            Some(t) => t,
            None => self.shard.begin(TxnOptions::snapshot())?,
        };
        let r = (|| -> Result<&'static str, HostError> {
            let cat = txn.catalog()?;
            let (tag, objects) = schema_objects(&op, &cat)?;
            rec.change = Some(describe_change(tag, &objects));
            rec.tables = tables_of(&objects);
            check_grants(access, &objects, &mut rec.recorded)?;
            check_columns_governed(access, &op, &cat)?;
            apply_schema_change(&mut txn, &cat, op)
        })();
        let ok = r.is_ok();
        self.end_statement(txn, ok)?;
        r
    }
}

/// Whether `op` changes the schema.
fn is_schema_change(op: &Statement) -> bool {
    matches!(
        op,
        Statement::CreateTable { .. }
            | Statement::AlterTable { .. }
            | Statement::DropTable { .. }
            | Statement::CreateView { .. }
            | Statement::DropView { .. }
            | Statement::CreateDomain { .. }
            | Statement::DropDomain { .. }
            | Statement::CreateIndex { .. }
            | Statement::DropIndex { .. }
    )
}

/// The bundle actions a schema change needs, each on its object.
type Needs = Vec<(SchemaAction, Object)>;

/// An object a schema change acts on.
#[derive(Debug, Clone)]
enum Object {
    Table(String),
    Domain(String),
}

impl Object {
    fn as_ref(&self) -> SchemaObject<'_> {
        match self {
            Self::Table(t) => SchemaObject::Table(t),
            Self::Domain(d) => SchemaObject::Domain(d),
        }
    }
}

/// The command tag of `op` and the bundle actions it needs: `Create`, `Alter`
/// (an index is an alteration of its table) or `Drop` of each table or domain.
fn schema_objects(op: &Statement, cat: &Catalog) -> Result<(&'static str, Needs), HostError> {
    let tables = |a: SchemaAction, names: &[String]| -> Needs {
        names
            .iter()
            .map(|n| (a, Object::Table(n.clone())))
            .collect()
    };
    Ok(match op {
        Statement::CreateTable { name, .. } => (
            "CREATE TABLE",
            tables(SchemaAction::Create, std::slice::from_ref(name)),
        ),
        Statement::DropTable { names, .. } => ("DROP TABLE", tables(SchemaAction::Drop, names)),
        Statement::AlterTable { name, actions, .. } => {
            let mut needs = tables(SchemaAction::Alter, std::slice::from_ref(name));
            // a relation of the new name is made: the right to create one
            for a in actions {
                if let scratchbird_compiler::AlterAction::RenameTable { to } = a {
                    needs.push((SchemaAction::Create, Object::Table(to.clone())));
                }
            }
            ("ALTER TABLE", needs)
        }
        // a view is a relation: the bundle's rights on a table of its name
        Statement::CreateView { name, .. } => (
            "CREATE VIEW",
            tables(SchemaAction::Create, std::slice::from_ref(name)),
        ),
        Statement::DropView { names, .. } => ("DROP VIEW", tables(SchemaAction::Drop, names)),
        Statement::CreateDomain { name, .. } => (
            "CREATE DOMAIN",
            vec![(SchemaAction::Create, Object::Domain(name.clone()))],
        ),
        Statement::DropDomain { name, .. } => (
            "DROP DOMAIN",
            vec![(SchemaAction::Drop, Object::Domain(name.clone()))],
        ),
        Statement::CreateIndex { table, .. } => (
            "CREATE INDEX",
            tables(SchemaAction::Alter, std::slice::from_ref(table)),
        ),
        Statement::DropIndex { names, .. } => {
            // an index that does not exist needs no right: dropping it changes
            // nothing (IF EXISTS) or fails as not found
            let mut of: Vec<String> = names
                .iter()
                .filter_map(|n| cat.index_by_name(n))
                .filter_map(|i| cat.table(i.table))
                .map(|t| t.name.clone())
                .collect();
            of.dedup();
            ("DROP INDEX", tables(SchemaAction::Alter, &of))
        }
        other => {
            return Err(HostError::internal(format!(
                "not a schema change: {other:?}"
            )));
        }
    })
}

/// A rename (`what`) from `names.0` to `names.1` is refused when the bundle
/// singles out one of the names (`from` and `to` say why) and not the other:
/// the rows or values would leave their rules, or come under others'. `Err`
/// is the denial's text.
fn one_side_named(
    from: Option<String>,
    to: Option<String>,
    what: &str,
    names: (&str, &str),
) -> Result<(), String> {
    match (from, to) {
        (Some(why), None) => Err(format!("{what}: {why}, and nothing names {}", names.1)),
        (None, Some(why)) => Err(format!("{what}: {why}, and nothing names {}", names.0)),
        _ => Ok(()),
    }
}

/// Whether `access` may make a schema change needing `objects`: a principal
/// needs the bundle's grant of each action on each object (what the policies
/// decided on is added to `recorded`); the owner needs none.
///
/// # Errors
/// `PERMISSION_DENIED`, naming the first action not granted.
fn check_grants(
    access: &Access,
    objects: &Needs,
    recorded: &mut Vec<String>,
) -> Result<(), HostError> {
    let Access::Principal(p) = access else {
        return Ok(());
    };
    for (action, object) in objects {
        let (allowed, why) = p.may_change_schema(*action, object.as_ref())?;
        recorded.extend(why);
        if !allowed {
            return Err(HostError::Permission(format!(
                "permission denied: the security bundle does not permit {} to {} {}",
                p.name(),
                action.name(),
                object.as_ref()
            )));
        }
    }
    Ok(())
}

/// Whether `access` may make the changes of columns and constraints `op`
/// makes. A principal may not:
/// - rename a column when the bundle singles out one of its old and new
///   names and not the other: the values would move out from under the
///   rules written for the old name, or under rules written for another
///   column (a bundle that names both, as one made for the rename does, lets
///   it happen);
/// - drop a column the bundle's row policies read, nor add one they read
///   (its values, filled into every row, would decide which rows show);
/// - add a constraint over the rows held (a CHECK, NOT NULL, UNIQUE, a NOT
///   NULL column without a default) unless it sees every row of the table
///   and reads the columns the constraint reads unmasked: whether the change
///   fails would tell about the rows and values it does not see.
///
/// The owner, outside a cluster, may.
///
/// # Errors
/// `PERMISSION_DENIED`, naming the rule.
fn check_columns_governed(access: &Access, op: &Statement, cat: &Catalog) -> Result<(), HostError> {
    let Access::Principal(p) = access else {
        return Ok(());
    };
    let (name, actions) = match op {
        Statement::AlterTable { name, actions, .. } => (name, actions.as_slice()),
        Statement::CreateIndex {
            table,
            columns,
            unique: true,
            ..
        } => {
            let Some(def) = cat.table_by_name(table) else {
                return Ok(());
            };
            let at: Vec<usize> = columns
                .iter()
                .filter_map(|c| def.columns.iter().position(|x| x.name == *c))
                .collect();
            if !p.sees_whole(def, cat, &at)? {
                return Err(whole_denied(
                    p,
                    &format!("create a unique index on {table}"),
                ));
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let denied = |what: String| {
        HostError::Permission(format!(
            "permission denied: {} may not {what}; sign a bundle that names both the old and the new name (for a rename) or no longer reads the column (for a drop or an add), then retry",
            p.name()
        ))
    };
    let Some(def) = cat.table_by_name(name) else {
        return Ok(());
    };
    // the table's columns as the actions before each one leave them: name,
    // type, and position in the table as it is (none for one this statement
    // adds, whose values are the principal's)
    let mut columns: Vec<(String, SqlType, Option<usize>)> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), c.ty, Some(i)))
        .collect();
    let position = |columns: &[(String, SqlType, Option<usize>)], c: &str| {
        columns.iter().position(|x| x.0 == c)
    };
    let whole = |columns: &[(String, SqlType, Option<usize>)], read: &[usize]| {
        let old: Vec<usize> = read
            .iter()
            .filter_map(|&i| columns.get(i).and_then(|c| c.2))
            .collect();
        p.sees_whole(def, cat, &old)
    };
    use scratchbird_compiler::AlterAction as A;
    for a in actions {
        match a {
            A::RenameTable { to } => one_side_named(
                p.bundle_names_table(name),
                p.bundle_names_table(to),
                &format!("rename table {name} to {to}"),
                (name, to),
            )
            .map_err(denied)?,
            A::RenameColumn { from, to } => {
                one_side_named(
                    p.bundle_names_column(name, from),
                    p.bundle_names_column(name, to),
                    &format!("rename column {name}.{from} to {to}"),
                    (&format!("{name}.{from}"), &format!("{name}.{to}")),
                )
                .map_err(denied)?;
                if let Some(i) = position(&columns, from)
                    && let Some(c) = columns.get_mut(i)
                {
                    c.0.clone_from(to);
                }
            }
            A::DropColumn { name: c, .. } => {
                if let Some(why) = p.bundle_names_column(name, c)
                    && why.contains("row policies")
                {
                    return Err(denied(format!("drop column {name}.{c}: {why}")));
                }
                if let Some(i) = position(&columns, c) {
                    columns.remove(i);
                }
            }
            A::AddColumn { column, .. } => {
                if let Some(why) = p.bundle_names_column(name, &column.name)
                    && why.contains("row policies")
                {
                    return Err(denied(format!("add column {name}.{}: {why}", column.name)));
                }
                let domain = column.domain.as_ref().and_then(|d| cat.domain_by_name(d));
                let not_null = column.not_null || domain.is_some_and(|d| !d.nullable);
                // (a SERIAL column added to a table that holds rows is
                // refused: that tells whether it holds any)
                let default = column.default.is_some()
                    || column
                        .default_fn
                        .is_some_and(scratchbird_types::schema::DefaultFn::is_time)
                    || domain.is_some_and(|d| d.default.is_some());
                if not_null && !default && !whole(&columns, &[])? {
                    return Err(whole_denied(
                        p,
                        &format!(
                            "add the NOT NULL column {} without a default to {name}",
                            column.name
                        ),
                    ));
                }
                let ty = column
                    .ty
                    .or_else(|| domain.map(|d| d.base))
                    .unwrap_or(SqlType::Text);
                columns.push((column.name.clone(), ty, None));
            }
            A::SetNotNull {
                column,
                not_null: true,
            } => {
                let at: Vec<usize> = position(&columns, column).into_iter().collect();
                if !whole(&columns, &at)? {
                    return Err(whole_denied(p, &format!("set {name}.{column} NOT NULL")));
                }
            }
            A::AddCheck { expr, .. } => {
                let named: Vec<(String, SqlType)> =
                    columns.iter().map(|c| (c.0.clone(), c.1)).collect();
                // one this cannot read counts as reading every column
                let read = scratchbird_storage::check::Check::parse_table(expr, &named)
                    .map_or_else(|_| (0..columns.len()).collect(), |k| k.columns());
                if !whole(&columns, &read)? {
                    return Err(whole_denied(p, &format!("add a CHECK to {name}")));
                }
            }
            A::AddUnique { columns: on, .. } => {
                let at: Vec<usize> = on.iter().filter_map(|c| position(&columns, c)).collect();
                if !whole(&columns, &at)? {
                    return Err(whole_denied(
                        p,
                        &format!("add a UNIQUE constraint to {name}"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The refusal of a constraint over rows or values the principal does not
/// see.
fn whole_denied(p: &Principal, what: &str) -> HostError {
    HostError::Permission(format!(
        "permission denied: {} may not {what}: it does not see every row of the table, or reads a column the constraint reads masked or not at all, and whether the change succeeds would tell about those; ask a principal who sees the whole table",
        p.name()
    ))
}

/// The tables a schema change acts on, as its audit record names them.
fn tables_of(objects: &Needs) -> Vec<String> {
    objects
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Table(t) => Some(t.clone()),
            Object::Domain(_) => None,
        })
        .collect()
}

/// `CREATE TABLE customers`, `ALTER Table::"t"` ...: what an audit record of a
/// schema change says it was.
fn describe_change(tag: &str, objects: &[(SchemaAction, Object)]) -> String {
    let names: Vec<&str> = objects
        .iter()
        .map(|(_, o)| match o {
            Object::Table(n) | Object::Domain(n) => n.as_str(),
        })
        .collect();
    format!("{tag} {}", names.join(", "))
}

impl ShardSession for ShardSessionOf {
    fn shard(&self) -> NodeName {
        self.shard.node
    }

    fn catalog(&mut self, consistency: Consistency) -> Result<Arc<Catalog>, HostError> {
        // the schema the transaction sees, which the compiler binds against as it is
        Ok(self.txn(consistency)?.catalog()?)
    }

    fn row_estimates(
        &mut self,
        claim: &Claim,
        catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn RowEstimates>)> {
        // the user the attestation proves (a claim that proves none is
        // planned without estimates, and refused where it runs)
        let now = self.shard.storage.env().now_micros();
        let user = scratchbird_host::envelope::check_claim(
            &claim.attestation,
            &claim.asked,
            self.coordinator(),
            self.authority.as_ref(),
            now,
        )
        .ok()?;
        self.row_estimates_proven(&user, claim.asked.context.as_deref(), catalog)
    }

    fn row_estimates_proven(
        &mut self,
        user: &UserName,
        context: Option<&str>,
        catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn RowEstimates>)> {
        let who = Bound {
            user: user.clone(),
            context: context.map(str::to_owned),
        };
        let (access, label) = self.shard.access(&who).ok()?;
        let all = self.shard.storage.row_estimates();
        Some(match access {
            Access::Owner => (label, all),
            Access::Principal(principal) => (
                format!("{label}\0{}", who.context.as_deref().unwrap_or("")),
                Arc::new(CountableRows {
                    all,
                    principal,
                    catalog: catalog.clone(),
                }),
            ),
        })
    }

    fn run(
        &mut self,
        stage: &SignedEnvelope,
        release: Release,
        sink: scratchbird_host::ResultSink,
        stop: &Cancel,
    ) -> Result<ShardRun, HostError> {
        let now = self.shard.storage.env().now_micros();
        self.run_at(stage, release, sink, stop, now)
    }

    fn control(
        &mut self,
        op: Statement,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError> {
        self.control_checked(Some(op), claim, index)
    }

    fn abandon(&mut self) {
        if self.bound.is_none()
            && let Some(t) = self.txn.take()
        {
            let _ = t.rollback();
        }
    }

    fn in_transaction(&self) -> bool {
        self.bound.is_some()
    }
}

impl ShardSessionOf {
    /// Runs the control statement `op` for `who`, whose claim was checked.
    fn apply_control(&mut self, op: Statement, who: Bound) -> Result<&'static str, HostError> {
        match op {
            Statement::Begin {
                isolation,
                read_only,
            } => {
                if self.bound.is_some() {
                    return Err(refuse(
                        "a transaction is already open: COMMIT or ROLLBACK it first".into(),
                    ));
                }
                // the user must have access now: the transaction is bound to it
                self.access_audited(&who)?;
                let mut opts = match isolation {
                    scratchbird_compiler::Isolation::Snapshot => TxnOptions::snapshot(),
                    scratchbird_compiler::Isolation::ReadCommitted => {
                        TxnOptions::read_committed(ReadCommittedMode::ReadConsistency)
                    }
                };
                if read_only {
                    opts = opts.read_only();
                }
                // the autocommit transaction the catalog was read in
                self.abandon();
                self.txn = Some(self.shard.begin(opts)?);
                self.bound = Some(who);
                Ok("BEGIN")
            }
            Statement::Commit | Statement::Rollback => {
                let commit = matches!(op, Statement::Commit);
                let word = if commit { "COMMIT" } else { "ROLLBACK" };
                let Some(b) = &self.bound else {
                    self.abandon();
                    return Err(refuse(format!("{word} without BEGIN")));
                };
                if *b != who {
                    return Err(not_binding(b, &who));
                }
                self.bound = None;
                let t = self
                    .txn
                    .take()
                    .ok_or_else(|| HostError::internal("no transaction"))?;
                if commit {
                    t.commit()?;
                } else {
                    t.rollback()?;
                }
                Ok(word)
            }
            Statement::Savepoint(n) => self.savepoint(&who, |t| t.savepoint(&n), "SAVEPOINT"),
            Statement::RollbackTo(n) => self.savepoint(
                &who,
                |t| t.rollback_to_savepoint(&n),
                "ROLLBACK TO SAVEPOINT",
            ),
            Statement::Release(n) => {
                self.savepoint(&who, |t| t.release_savepoint(&n), "RELEASE SAVEPOINT")
            }
            Statement::Query(_) | Statement::Explain(_) | Statement::ExplainAnalyze(_) => {
                Err(HostError::internal("a query came as a control request"))
            }
            ddl => self.schema_change(ddl, &who),
        }
    }

    fn savepoint(
        &mut self,
        who: &Bound,
        f: impl FnOnce(&mut Transaction) -> Result<(), StorageError>,
        tag: &'static str,
    ) -> Result<&'static str, HostError> {
        if let Some(b) = &self.bound
            && b != who
        {
            return Err(not_binding(b, who));
        }
        let r = f(self.txn(Consistency::Snapshot)?);
        if self.bound.is_none() {
            // outside BEGIN ... COMMIT a savepoint lives and dies with its statement
            self.abandon();
        }
        r?;
        Ok(tag)
    }
}

impl Drop for ShardSessionOf {
    fn drop(&mut self) {
        if let Some(t) = self.txn.take() {
            let _ = t.rollback();
        }
    }
}

/// Applies a schema change in `txn`, whose catalog is `cat`. Returns its
/// command tag.
/// The unique indexes of a new table's UNIQUE constraints: named as the
/// constraint, else `TABLE_COLUMNS_key` as PostgreSQL names them (with a
/// number when an index has that name).
/// Applies one action of ALTER TABLE to `table`.
fn alter_action(
    t: &mut Transaction,
    table: &str,
    a: scratchbird_compiler::AlterAction,
) -> Result<(), StorageError> {
    use scratchbird_compiler::AlterAction as A;
    let change = match a {
        A::AddColumn {
            column,
            if_not_exists,
        } => {
            let cat = t.catalog()?;
            if if_not_exists
                && cat
                    .table_by_name(table)
                    .is_some_and(|d| d.columns.iter().any(|c| c.name == column.name))
            {
                return Ok(());
            }
            TableChange::AddColumn(column_spec(column))
        }
        A::DropColumn { name, if_exists } => {
            let cat = t.catalog()?;
            if if_exists
                && cat
                    .table_by_name(table)
                    .is_some_and(|d| !d.columns.iter().any(|c| c.name == name))
            {
                return Ok(());
            }
            TableChange::DropColumn(name)
        }
        A::RenameColumn { from, to } => TableChange::RenameColumn { from, to },
        A::RenameTable { to } => TableChange::RenameTable { to },
        A::SetDefault {
            column,
            default,
            default_fn,
        } => TableChange::SetDefault {
            column,
            default,
            default_fn,
        },
        A::SetNotNull { column, not_null } => TableChange::SetNotNull { column, not_null },
        A::AddCheck { name, expr } => TableChange::AddCheck { name, expr },
        A::AddUnique { name, columns } => {
            let cat = t.catalog()?;
            for i in unique_indexes(&cat, table, vec![(name, columns)]) {
                if cat
                    .table_by_name(table)
                    .is_some_and(|d| d.checks.iter().any(|k| k.name == i.name))
                {
                    return Err(StorageError::AlreadyExists {
                        kind: "constraint",
                        name: format!("{} of table {table}", i.name),
                    });
                }
                t.create_index(&i)?;
            }
            return Ok(());
        }
        A::DropConstraint { name, if_exists } => {
            let cat = t.catalog()?;
            let def = scratchbird_storage::catalog::Resolve::resolve_table(&*cat, table)?.clone();
            if def.checks.iter().any(|k| k.name == name) {
                TableChange::DropCheck(name)
            } else if let Some(i) = cat
                .index_by_name(&name)
                .filter(|i| i.table == def.id && i.unique && !i.plain)
            {
                let n = i.name.clone();
                return t.drop_index(&n);
            } else if if_exists {
                return Ok(());
            } else {
                return Err(StorageError::NotFound {
                    kind: "constraint",
                    name: format!("{name} of table {table}"),
                });
            }
        }
    };
    t.alter_table(table, &change)
}

/// A new column as storage takes it.
fn column_spec(c: scratchbird_compiler::NewColumn) -> ColumnSpec {
    ColumnSpec {
        name: c.name,
        ty: match (c.ty, c.domain) {
            (_, Some(d)) => ColumnType::Domain(d),
            (Some(t), None) => ColumnType::Sql(t),
            (None, None) => ColumnType::Sql(SqlType::Text),
        },
        not_null: c.not_null,
        default: c.default,
        default_fn: c.default_fn,
        seq: c.seq,
    }
}

fn unique_indexes(
    cat: &Catalog,
    table: &str,
    unique: Vec<(Option<String>, Vec<String>)>,
) -> Vec<IndexSpec> {
    let mut taken: Vec<String> = Vec::new();
    unique
        .into_iter()
        .map(|(name, columns)| {
            let name = name.unwrap_or_else(|| {
                let base = format!("{table}_{}_key", columns.join("_"));
                let free = |n: &String| cat.index_by_name(n).is_none() && !taken.contains(n);
                let mut n = base.clone();
                let mut k = 0;
                while !free(&n) {
                    k += 1;
                    n = format!("{base}{k}");
                }
                n
            });
            taken.push(name.clone());
            IndexSpec {
                name,
                table: table.to_owned(),
                columns,
                unique: true,
                plain: false,
            }
        })
        .collect()
}

/// The views of one DROP VIEW in an order that drops each after the views
/// among them that name it (`DROP VIEW a, b` where `b` names `a`).
fn views_in_drop_order(cat: &Catalog, names: &[String]) -> Vec<String> {
    let mut left: Vec<String> = names.to_vec();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let free = left.iter().position(|n| {
            !cat.views_on(n)
                .any(|v| left.contains(&v.name) && v.name != *n)
        });
        // a name nothing frees (not possible among views, which cannot name
        // each other in a cycle) goes as written, and fails as it would
        let i = free.unwrap_or(0);
        out.push(left.remove(i));
    }
    out
}

fn apply_schema_change(
    txn: &mut Transaction,
    cat: &Catalog,
    op: Statement,
) -> Result<&'static str, HostError> {
    match op {
        Statement::CreateTable {
            name,
            columns,
            primary_key,
            if_not_exists,
            distribution,
            unique,
            checks,
        } => {
            if if_not_exists && cat.table_by_name(&name).is_some_and(|t| !t.is_system()) {
                return Ok("CREATE TABLE");
            }
            let table = name.clone();
            let indexes = unique_indexes(cat, &table, unique);
            let spec = TableSpec {
                distribution,
                name,
                columns: columns.into_iter().map(column_spec).collect(),
                primary_key,
            };
            txn.statement(|t| {
                t.create_table(&spec)?;
                // each UNIQUE constraint is a unique index, made with the table
                for i in &indexes {
                    t.create_index(i)?;
                }
                checks.into_iter().try_for_each(|(name, expr)| {
                    t.alter_table(&table, &TableChange::AddCheck { name, expr })
                })
            })?;
            Ok("CREATE TABLE")
        }
        Statement::AlterTable {
            name,
            if_exists,
            actions,
        } => {
            if !(if_exists && cat.table_by_name(&name).is_none_or(|t| t.is_system())) {
                txn.statement(|t| {
                    actions
                        .into_iter()
                        .try_for_each(|a| alter_action(t, &name, a))
                })?;
            }
            Ok("ALTER TABLE")
        }
        Statement::DropTable { names, if_exists } => {
            txn.statement(|t| {
                for n in &names {
                    if if_exists
                        && cat.table_by_name(n).is_none_or(|t| t.is_system())
                        && cat.view_by_name(n).is_none()
                    {
                        continue;
                    }
                    t.drop_table(n)?;
                }
                Ok(())
            })?;
            Ok("DROP TABLE")
        }
        Statement::CreateView {
            name,
            columns,
            query,
            depends,
        } => {
            txn.statement(|t| {
                t.create_view(&ViewSpec {
                    name,
                    columns,
                    query,
                    depends,
                })
            })?;
            Ok("CREATE VIEW")
        }
        Statement::DropView { names, if_exists } => {
            let names: Vec<String> = names
                .into_iter()
                .filter(|n| {
                    !(if_exists && cat.view_by_name(n).is_none() && cat.table_by_name(n).is_none())
                })
                .collect();
            txn.statement(|t| {
                for n in views_in_drop_order(cat, &names) {
                    t.drop_view(&n)?;
                }
                Ok(())
            })?;
            Ok("DROP VIEW")
        }
        Statement::CreateDomain {
            name,
            base,
            default,
            check,
        } => {
            txn.statement(|t| {
                t.create_domain(&DomainSpec {
                    name,
                    base,
                    not_null: false,
                    default,
                    check,
                })
            })?;
            Ok("CREATE DOMAIN")
        }
        Statement::DropDomain { name, if_exists } => {
            if !(if_exists && cat.domain_by_name(&name).is_none()) {
                txn.statement(|t| t.drop_domain(&name))?;
            }
            Ok("DROP DOMAIN")
        }
        Statement::CreateIndex {
            name,
            table,
            columns,
            unique,
        } => {
            txn.statement(|t| {
                t.create_index(&IndexSpec {
                    name,
                    table,
                    columns,
                    unique,
                    plain: true,
                })
            })?;
            Ok("CREATE INDEX")
        }
        Statement::DropIndex { names, if_exists } => {
            drop_indexes(txn, cat, &names, if_exists)?;
            Ok("DROP INDEX")
        }
        other => Err(HostError::internal(format!(
            "not a schema change: {other:?}"
        ))),
    }
}

/// DROP INDEX: each named index, refusing a UNIQUE constraint's (it goes
/// with the constraint, as in PostgreSQL).
fn drop_indexes(
    txn: &mut Transaction,
    cat: &Catalog,
    names: &[String],
    if_exists: bool,
) -> Result<(), HostError> {
    txn.statement(|t| {
        for n in names {
            if if_exists && cat.index_by_name(n).is_none() {
                continue;
            }
            // a UNIQUE constraint's index goes with the constraint
            if let Some(i) = cat.index_by_name(n).filter(|i| i.unique && !i.plain) {
                let table = cat.table(i.table).map_or("?", |d| d.name.as_str());
                return Err(StorageError::ObjectInUse {
                    name: format!("index {n}"),
                    reason: format!(
                        "constraint {n} on table {table} requires it; drop the \
                         constraint instead: ALTER TABLE {table} DROP CONSTRAINT {n}"
                    ),
                });
            }
            t.drop_index(n)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The in-process transport: a coordinator's shard sessions on a [`Shard`] of
/// the same node.
#[derive(Debug, Clone)]
pub struct InProcess(pub Arc<Shard>);

impl ShardTransport for InProcess {
    fn open(&self) -> Result<Box<dyn ShardSession>, HostError> {
        Ok(Box::new(self.0.session()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Access, Principals};
    use scratchbird_policy::bundle::Bundle;
    use scratchbird_policy::derive::Deriver;
    use scratchbird_types::{Epoch, UserName};
    use std::sync::Arc;

    fn deriver() -> Arc<Deriver> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bundles/saas");
        Arc::new(Deriver::new(Arc::new(Bundle::load(dir).unwrap())))
    }

    fn principal(a: Access) -> Arc<scratchbird_host::Principal> {
        match a {
            Access::Principal(p) => p,
            Access::Owner => panic!("a cluster user is a principal"),
        }
    }

    #[test]
    fn an_access_is_remembered_only_while_its_bundle_is_in_force() {
        let p = Principals::new(deriver(), Epoch::INITIAL, [1; 32]);
        let alice = UserName::new("alice").unwrap();
        let first = principal(p.access(&alice, None).unwrap());
        let again = principal(p.access(&alice, None).unwrap());
        assert!(Arc::ptr_eq(&first, &again), "remembered");
        // another context is another access
        let ctx = principal(p.access(&alice, Some("{}")).unwrap());
        assert!(!Arc::ptr_eq(&first, &ctx));
        // a context that is not JSON is refused every time, never remembered
        for _ in 0..2 {
            assert!(p.access(&alice, Some("{not json")).is_err());
        }
        // a new bundle in force: worked out afresh under it
        p.set_deriver(deriver());
        let after = principal(p.access(&alice, None).unwrap());
        assert!(!Arc::ptr_eq(&first, &after), "not the old bundle's");
        let after_again = principal(p.access(&alice, None).unwrap());
        assert!(Arc::ptr_eq(&after, &after_again));
        // and through an epoch that names a bundle
        p.set_epoch(Epoch::INITIAL, Some(deriver()));
        assert!(!Arc::ptr_eq(
            &after,
            &principal(p.access(&alice, None).unwrap())
        ));
    }
}
