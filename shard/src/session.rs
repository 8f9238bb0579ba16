//! A session on one node's own storage, for its owner: the coordinator core
//! (`scratchbird_coord`) over the in-process transport to a shard of that
//! storage. Tests, benchmarks and `sb sql --local` use it; `sbnode` runs the
//! same core for its clients.

use crate::shard::{InProcess, Shard, ShardParts, Users};
use ed25519_dalek::{Signer, SigningKey};
use scratchbird_compiler::Catalog;
use scratchbird_coord::{
    Claim, Credentials, Outcome, Session, SessionError, StatementCache, StepSink,
};
use scratchbird_host::audit::AuditLog;
use scratchbird_host::envelope::{Asked, LocalAuthority, Member, local_attestation_for};
use scratchbird_host::{Access, Cancel, Sandbox};
use scratchbird_storage::{Env, Storage, StorageConfig, StorageError, Transaction};
use scratchbird_types::env::SystemEnv;
use scratchbird_types::{BundleHash, Epoch, NodeName};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A session on a local node: the coordinator core over the in-process
/// transport to a shard of the same storage, for one caller who owns the data
/// directory (tests, benchmarks, `sb sql --local`). Every statement takes the
/// path a client's does on `sbnode`: its shard stage is signed by the
/// coordinator, verified by the shard and run by the one shard runner; the
/// caller's access ([`LocalSession::set_access`]) is what the shard runs it as.
pub struct LocalSession {
    storage: Arc<Storage>,
    sandbox: Arc<Sandbox>,
    inner: Session,
    access: Access,
    audit: Option<Arc<AuditLog>>,
    /// The in-process coordinator's key.
    node_key: SigningKey,
    /// The in-process user's key: it attests each request.
    user_key: SigningKey,
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession")
            .field("in_transaction", &self.inner.in_transaction())
            .finish_non_exhaustive()
    }
}

/// The node of a [`LocalSession`]'s in-process cluster.
const LOCAL: NodeName = NodeName::LOCAL;
/// The user a [`LocalSession`]'s requests are attested by.
const LOCAL_USER: &str = "local";

/// How long a local request's attestation is good for.
const LOCAL_ATTESTATION_US: i64 = 3_600_000_000;

/// The in-process coordinator of a [`LocalSession`].
struct LocalCreds {
    key: SigningKey,
    bundle: BundleHash,
    /// Whom the in-process shard records executions under, and whether it
    /// enforces the bundle (not for an owner).
    label: String,
    enforced: bool,
}

impl Credentials for LocalCreds {
    fn node(&self) -> NodeName {
        LOCAL
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.key.sign(message).to_bytes().to_vec())
    }
    fn epoch(&self) -> Epoch {
        Epoch::INITIAL
    }
    fn bundle_hash(&self) -> BundleHash {
        self.bundle
    }
    fn recorded_as(&self, _user: &str) -> (String, Option<BundleHash>) {
        (self.label.clone(), self.enforced.then_some(self.bundle))
    }
}

/// The name the in-process shard records `access`'s executions under.
fn label_of(access: &Access) -> String {
    match access {
        Access::Owner => "owner".to_owned(),
        Access::Principal(p) => p.name().to_owned(),
    }
}

/// An in-process key only this session uses, from the store's randomness.
fn random_key(env: &dyn Env) -> SigningKey {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&env.random_bytes());
    b[16..].copy_from_slice(&env.random_bytes());
    SigningKey::from_bytes(&b)
}

/// Opens the storage of a node's data directory on the system's clock and
/// randomness (what `sbnode` and `sb sql --local` run on).
///
/// # Errors
/// Storage could not open the directory.
pub fn open_storage(dir: &Path) -> Result<Storage, StorageError> {
    open_storage_in(dir, Arc::new(SystemEnv::default()))
}

/// Opens the storage of a node's data directory on `env`.
///
/// # Errors
/// Storage could not open the directory.
pub fn open_storage_in(dir: &Path, env: Arc<dyn Env>) -> Result<Storage, StorageError> {
    Storage::open(dir, StorageConfig::new(env))
}

/// How a node's storage is sized.
#[derive(Debug, Clone, Copy)]
pub struct StorageSizes {
    /// Back versions are kept this long (time travel's window).
    pub retention_secs: u64,
    /// The buffer pool of parsed pages, in bytes.
    pub page_cache_bytes: usize,
    /// The key-value store's block cache, in bytes.
    pub kv_cache_bytes: u64,
}

/// [`open_storage_in`], sized by `sizes`.
///
/// # Errors
/// Storage could not open the directory.
pub fn open_storage_keeping(
    dir: &Path,
    env: Arc<dyn Env>,
    sizes: StorageSizes,
) -> Result<Storage, StorageError> {
    let mut config = StorageConfig::new(env);
    config.retention_micros =
        i64::try_from(sizes.retention_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    config.page_cache_bytes = sizes.page_cache_bytes;
    config.cache_bytes = sizes.kv_cache_bytes;
    Storage::open(dir, config)
}

/// The schema a transaction sees: what the compiler binds against.
///
/// # Errors
/// The catalog could not be read.
pub fn catalog_of(txn: &Transaction) -> Result<Arc<Catalog>, StorageError> {
    txn.catalog()
}

impl LocalSession {
    /// A session over `storage` running modules in `sandbox`, as the data
    /// directory's owner until [`LocalSession::set_access`] says otherwise.
    ///
    /// # Panics
    /// Never in practice: opening the in-process shard session cannot fail.
    #[must_use]
    pub fn new(storage: Arc<Storage>, sandbox: Arc<Sandbox>) -> Self {
        let node_key = random_key(storage.env().as_ref());
        let user_key = random_key(storage.env().as_ref());
        let (creds, transport) = Self::world(
            &storage,
            &sandbox,
            &Access::Owner,
            None,
            &node_key,
            &user_key,
        );
        #[expect(
            clippy::expect_used,
            reason = "the in-process transport opens sessions infallibly"
        )]
        let mut inner = Session::open(creds, &transport, sandbox.clone(), storage.env().clone())
            .expect("an in-process shard session");
        inner.set_statements(Arc::new(StatementCache::default()));
        Self {
            storage,
            sandbox,
            inner,
            access: Access::Owner,
            audit: None,
            node_key,
            user_key,
        }
    }

    /// The one-node cluster a local session runs in: this coordinator, a shard
    /// of `storage` trusting it and the session's user, running statements as
    /// `access`.
    fn world(
        storage: &Arc<Storage>,
        sandbox: &Arc<Sandbox>,
        access: &Access,
        audit: Option<&Arc<AuditLog>>,
        node_key: &SigningKey,
        user_key: &SigningKey,
    ) -> (Arc<dyn Credentials>, InProcess) {
        let bundle = match access {
            Access::Owner => BundleHash([0; 32]),
            Access::Principal(p) => p.bundle_hash(),
        };
        let label = label_of(access);
        let authority = LocalAuthority {
            members: HashMap::from([(
                LOCAL,
                Member {
                    key: node_key.verifying_key(),
                    enabled: true,
                    coordinator: true,
                },
            )]),
            users: HashMap::from([(LOCAL_USER.to_owned(), user_key.verifying_key())]),
            epoch: Epoch::INITIAL,
            bundle,
        };
        let shard = Shard::from_parts(ShardParts {
            storage: storage.clone(),
            sandbox: sandbox.clone(),
            authority: Arc::new(authority),
            users: Users::Fixed {
                access: access.clone(),
                label,
            },
            audit: audit.cloned(),
            node: LOCAL,
        });
        let creds = Arc::new(LocalCreds {
            key: node_key.clone(),
            bundle,
            label: label_of(access),
            enforced: matches!(access, Access::Principal(_)),
        });
        (creds, InProcess(Arc::new(shard)))
    }

    /// Rebuilds the in-process cluster after the access or audit trail changed.
    fn rebuild(&mut self) -> Result<(), SessionError> {
        let (creds, transport) = Self::world(
            &self.storage,
            &self.sandbox,
            &self.access,
            self.audit.as_ref(),
            &self.node_key,
            &self.user_key,
        );
        self.inner.reopen(creds, &transport)
    }

    /// Cancels the statements that run from now on when `stop` is raised.
    pub fn set_stop(&mut self, stop: Cancel) {
        self.inner.set_stop(stop);
    }

    /// Hands query rows to `sink` as they are produced (outcomes are then
    /// [`Outcome::Streamed`]) instead of collecting them; `None` collects again.
    pub fn set_stream(&mut self, sink: Option<StepSink>) {
        self.inner.set_stream(sink);
    }

    /// Appends a record of every execution to `log` from now on, durably, before
    /// the execution's result is released (an execution whose record cannot be
    /// written fails, and its changes are undone).
    ///
    /// # Errors
    /// A transaction is open.
    pub fn set_audit(&mut self, log: Arc<AuditLog>) -> Result<(), SessionError> {
        self.check_idle("the audit trail")?;
        self.inner.set_audit(log.clone());
        self.audit = Some(log);
        self.rebuild()
    }

    fn check_idle(&self, what: &str) -> Result<(), SessionError> {
        if self.inner.in_transaction() {
            return Err(SessionError::Session(format!(
                "{what} cannot change inside a transaction: COMMIT or ROLLBACK first"
            )));
        }
        Ok(())
    }

    /// Runs the session's statements for `access` from now on: a principal under a
    /// security bundle, or the data directory's owner. The security context is
    /// bound per transaction, so it cannot change while one is open.
    ///
    /// # Errors
    /// A transaction is open.
    pub fn set_access(&mut self, access: Access) -> Result<(), SessionError> {
        self.check_idle("the security context")?;
        self.access = access;
        self.rebuild()
    }

    /// Who the session's statements run for.
    #[must_use]
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Whether an explicit transaction is open.
    #[must_use]
    pub fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    /// Runs every statement of `sql` in order and returns their outcomes; stops at
    /// the first error. Outside BEGIN ... COMMIT each statement commits on its own.
    ///
    /// # Errors
    /// The first statement that failed (earlier ones keep their effect).
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>, SessionError> {
        let mut out = Vec::new();
        self.execute_each(sql, &mut |o| {
            out.push(o);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs every statement of `sql` in order, handing each outcome to `each` as
    /// soon as its statement finishes; stops at the first error (of a statement or
    /// of `each`).
    ///
    /// # Errors
    /// The first statement that failed (earlier ones keep their effect).
    pub fn execute_each(
        &mut self,
        sql: &str,
        each: &mut dyn FnMut(Outcome) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        self.execute_with(sql, &[], each)
    }

    /// Runs the one statement `sql` with the values of its parameters `$1`,
    /// `$2`, ... (`None`: NULL), each read as a literal of the type its place
    /// asks for; with no values, as [`LocalSession::execute_each`].
    ///
    /// # Errors
    /// The statement failed, or the values do not fit it.
    pub fn execute_with(
        &mut self,
        sql: &str,
        params: &[Option<String>],
        each: &mut dyn FnMut(Outcome) -> Result<(), SessionError>,
    ) -> Result<(), SessionError> {
        scratchbird_types::attest::check_params(params).map_err(SessionError::Session)?;
        let asked = Asked {
            sql: sql.to_owned(),
            context: None,
            deadline_ms: 0,
            params: params.to_vec(),
        };
        let now = self.storage.env().now_micros();
        let attestation = local_attestation_for(
            LOCAL_USER,
            LOCAL,
            &asked,
            now,
            now.saturating_add(LOCAL_ATTESTATION_US),
            &self.user_key,
        );
        self.inner.execute_each(&Claim { attestation, asked }, each)
    }
}
