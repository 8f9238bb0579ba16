//! The seam between the coordinator and the shards: what a coordinator signs
//! with, and what it asks a shard.

use scratchbird_compiler::{Catalog, Statement};
use scratchbird_host::envelope::{Asked, Attestation, Consistency, SignedEnvelope};
use scratchbird_host::{Cancel, Figures, HostError, Release, ResultSink};
use scratchbird_types::schema::RowEstimates;
use scratchbird_types::{BundleHash, Epoch, NodeName, UserName};
use std::sync::Arc;

/// The coordinator's identity in the cluster and what it believes is in force.
pub trait Credentials: Send + Sync {
    /// Its name, as envelopes and attestations name it.
    fn node(&self) -> NodeName;
    /// An Ed25519 signature over `message` with the key of its node certificate.
    ///
    /// # Errors
    /// The key cannot sign (not Ed25519, or the signer failed).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
    /// The cluster configuration epoch plans are made in.
    fn epoch(&self) -> Epoch;
    /// The security bundle it believes is in force (the shard checks).
    fn bundle_hash(&self) -> BundleHash;
    /// The name the audit trail records `user`'s executions under and the
    /// bundle enforced for them (`None`: an owner, under no bundle), as this
    /// node's shards name them: the merge stage's records here name the
    /// statement's user so, before any shard has reported.
    fn recorded_as(&self, user: &str) -> (String, Option<BundleHash>);
}

/// A user's claim to a request: the attestation and what it signs.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The user's attestation.
    pub attestation: Attestation,
    /// The request it signs.
    pub asked: Asked,
}

/// What a shard reports about a stage it ran: figures over rows the principal
/// may see, and who it ran the stage as (for the coordinator's own record).
#[derive(Debug, Clone)]
pub struct ShardRun {
    /// What the stage did, as the principal may be told.
    pub figures: Figures,
    /// Who ran it, as the audit trail names them (`User::"alice"`, `owner:bob`).
    pub principal: String,
    /// The bundle enforced, if any.
    pub bundle: Option<[u8; 32]>,
    /// The session context it ran with (JSON), when not empty.
    pub context: Option<String>,
    /// How long the stage took, as the coordinator measured it (from
    /// sending it to its last answer), in microseconds.
    pub elapsed_us: u64,
}

/// A coordinator session's view of one shard: the shard's transaction for the
/// session, bound to the security context of the user who began it.
pub trait ShardSession: Send {
    /// The node that runs this session's stages: envelopes are addressed to it.
    fn shard(&self) -> NodeName;

    /// The catalog the session's transaction sees (opening the statement's
    /// transaction, with `consistency`, when none is open).
    ///
    /// # Errors
    /// The shard could not open a transaction or read its catalog.
    fn catalog(&mut self, consistency: Consistency) -> Result<Arc<Catalog>, HostError>;

    /// The row estimates the planner may use for a statement of `claim`'s
    /// user over `catalog` (which chose its join order and join sides), and
    /// the scope they were given for (the statement cache keeps a plan under
    /// it). A plan, its EXPLAIN and the order of its unordered rows follow
    /// the estimates, so a shard gives a principal only those of tables whose
    /// every row it may read (what `count(*)` tells it anyway). By default,
    /// none: every table is planned as of unknown size.
    fn row_estimates(
        &mut self,
        _claim: &Claim,
        _catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn RowEstimates>)> {
        None
    }

    /// [`ShardSession::row_estimates`] for `user` with the session context
    /// `context`, whom the caller has proven already: a node's own
    /// coordinator, whose client connection proved the user by mutual TLS and
    /// whose request's attestation was checked against that connection (its
    /// signature check still running while the plan is chosen). Nothing of the
    /// plan runs, and nothing is answered, before the request is admitted. No
    /// transport between nodes offers it: by default, none.
    fn row_estimates_proven(
        &mut self,
        _user: &UserName,
        _context: Option<&str>,
        _catalog: &Arc<Catalog>,
    ) -> Option<(String, Arc<dyn RowEstimates>)> {
        None
    }

    /// Runs a signed shard stage in the session's transaction (a transaction of
    /// its own, committed when it succeeds, outside BEGIN ... COMMIT), handing
    /// its batches to `sink`.
    ///
    /// # Errors
    /// The envelope was refused, or the stage failed (its changes undone).
    fn run(
        &mut self,
        stage: &SignedEnvelope,
        release: Release,
        sink: ResultSink,
        stop: &Cancel,
    ) -> Result<ShardRun, HostError>;

    /// Transaction control (BEGIN, COMMIT, ROLLBACK, savepoints) and schema
    /// changes, for the user of `claim`: `op` is statement `index` (from 0) of
    /// the SQL the user signed, and the shard refuses it when it is not.
    /// Returns the command tag.
    ///
    /// # Errors
    /// The claim was refused, `op` is not what the user signed, the user may
    /// not, or the shard refused.
    fn control(
        &mut self,
        op: Statement,
        claim: &Claim,
        index: usize,
    ) -> Result<&'static str, HostError>;

    /// Ends a statement that will not run (it did not compile, or it was an
    /// EXPLAIN): outside BEGIN ... COMMIT its transaction is rolled back.
    fn abandon(&mut self);

    /// Whether BEGIN ... COMMIT is open.
    fn in_transaction(&self) -> bool;
}

/// How a coordinator reaches shards.
pub trait ShardTransport: Send + Sync {
    /// A session on the shard, for one coordinator session.
    ///
    /// # Errors
    /// The shard cannot be reached or refuses sessions.
    fn open(&self) -> Result<Box<dyn ShardSession>, HostError>;
}

/// The cluster's shards as a coordinator reaches them.
#[derive(Clone)]
pub struct Shards {
    /// One transport per shard, in the shard map's order: the positions
    /// routing computes ([`scratchbird_types::placement`]).
    pub transports: Vec<Arc<dyn ShardTransport>>,
    /// The position of the shard whose catalog statements are compiled
    /// against (the coordinator's own, when it holds one).
    pub home: usize,
    /// The version of the shard map the positions come from; envelopes carry
    /// it and shards of another version refuse them.
    pub map_version: u64,
    /// Each shard's name for messages (`shard 1 (node-b)`), in map order.
    pub names: Vec<String>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("shards", &self.transports.len())
            .field("home", &self.home)
            .field("map_version", &self.map_version)
            .finish_non_exhaustive()
    }
}
