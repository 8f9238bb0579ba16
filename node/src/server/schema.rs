//! The cluster's schema changes on this node. A statement that changes the
//! schema goes to the control log ([`NodeSchema::submit`], the shard's
//! [`SchemaLog`]); every node applies the log's changes in order to its own
//! storage ([`NodeSchema::catch_up`], at each tick of the control loop and
//! before a submitter is answered), with ids drawn from each change, and notes
//! how far it got in its data directory (`cluster-schema`), so that a restart
//! (or a data directory restored from a copy) goes on from where that data
//! directory stands.

use super::cluster::ControlPlane;
use crate::shard::{SchemaLog, Shard};
use scratchbird_control::schema::SchemaChange;
use scratchbird_control::state::{Command, Outcome as LogOutcome};
use scratchbird_host::HostError;
use scratchbird_host::envelope::{SchemaClaim, user_name};
use scratchbird_storage::IdSource;
use scratchbird_types::{ClusterId, NodeName};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// The file in a data directory that says how many of the cluster's schema
/// changes it holds.
pub(super) const POSITION_FILE: &str = "cluster-schema";

/// The leader's answer while it has not applied the log's earlier schema
/// changes (the change is sent again shortly).
pub(super) const SCHEMA_BEHIND: &str = "SCHEMA_BEHIND";

/// Changes applied at one go (the rest at the next).
const APPLY_BATCH: usize = 64;

/// Outcomes kept for submitters that have not looked yet.
const OUTCOMES_KEPT: usize = 256;

/// How long a submitter waits for its change to be applied here.
const APPLIED_WAIT: Duration = Duration::from_secs(10);

/// This node's part in the cluster's schema changes.
pub(super) struct NodeSchema {
    plane: Arc<ControlPlane>,
    shard: OnceLock<Weak<Shard>>,
    cluster: ClusterId,
    me: NodeName,
    handle: tokio::runtime::Handle,
    file: PathBuf,
    /// Held while changes are applied (one applier at a time); readers of
    /// the position never wait for it.
    applying: Mutex<()>,
    /// The next change to apply.
    next: AtomicU64,
    /// How recent changes ended here, and why applying is stalled (a change
    /// that failed for a reason of this node, not of the change: retried).
    outcomes: Mutex<BTreeMap<u64, Result<&'static str, String>>>,
    stalled: Mutex<Option<String>>,
}

impl std::fmt::Debug for NodeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSchema")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Whether a change that failed with `e` failed alike on every node: an
/// error of the catalog, which every node holds alike (a table that exists
/// already, a name not found, a definition refused, an object in use), or of
/// the claim itself. Anything else (a lock held by a running transaction, the
/// disk, the audit trail, a row this node holds) is this node's: it stalls
/// and retries, rather than skip a change other nodes applied.
fn same_everywhere(e: &HostError) -> bool {
    match e {
        HostError::Envelope(_) => true,
        HostError::Storage(s) => matches!(
            s.code(),
            "ALREADY_EXISTS" | "NOT_FOUND" | "INVALID_DEFINITION" | "OBJECT_IN_USE"
        ),
        _ => false,
    }
}

impl NodeSchema {
    /// This node's schema changes, its position read from `data_dir`.
    ///
    /// # Errors
    /// The position file is not readable, or belongs to another cluster.
    pub(super) fn new(
        plane: Arc<ControlPlane>,
        me: NodeName,
        data_dir: &std::path::Path,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        let file = data_dir.join(POSITION_FILE);
        let next = match std::fs::read_to_string(&file) {
            Ok(text) => {
                parse_position(&text, me.cluster).map_err(|e| format!("{}: {e}", file.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        Ok(Self {
            plane,
            shard: OnceLock::new(),
            cluster: me.cluster,
            me,
            handle,
            file,
            applying: Mutex::new(()),
            next: AtomicU64::new(next),
            outcomes: Mutex::default(),
            stalled: Mutex::default(),
        })
    }

    /// The shard the changes are applied to.
    pub(super) fn attach(&self, shard: &Arc<Shard>) {
        let _ = self.shard.set(Arc::downgrade(shard));
    }

    /// The next change this node will apply, and why applying is stalled.
    pub(super) fn position(&self) -> (u64, Option<String>) {
        (
            self.next.load(Ordering::SeqCst),
            lock(&self.stalled).clone(),
        )
    }

    /// Whether this node has applied fewer than `changes` changes.
    pub(super) fn behind(&self, changes: u64) -> bool {
        self.next.load(Ordering::SeqCst) < changes
    }

    /// [`SchemaLog::catch_up`]; the outcome of change `want` when it was
    /// applied now (its error whole, with its own code). When another thread
    /// is applying, returns at once (that thread applies what is pending).
    fn apply_pending(&self, want: Option<u64>) -> Option<Result<&'static str, HostError>> {
        let shard = self.shard.get().and_then(Weak::upgrade)?;
        let Ok(_applying) = self.applying.try_lock() else {
            return None;
        };
        let mut mine = None;
        loop {
            let next = self.next.load(Ordering::SeqCst);
            let entries = {
                let applied = self.plane.service.member().applied();
                applied.state.schema_changes(next, APPLY_BATCH).to_vec()
            };
            if entries.is_empty() {
                return mine;
            }
            for e in entries {
                let from = NodeName::new(self.cluster, e.from);
                let cluster = self.cluster;
                let ids = || -> IdSource { Box::new(e.ids(cluster)) };
                let r = SchemaClaim::decode(&e.change.claim)
                    .and_then(|claim| shard.apply_logged(&claim, e.seq, &from, &ids));
                if let Err(err) = &r
                    && !same_everywhere(err)
                {
                    tracing::warn!(change = e.seq, error = %err, "a schema change of the cluster could not be applied here yet; retrying");
                    *lock(&self.stalled) = Some(format!("schema change {}: {err}", e.seq));
                    return mine;
                }
                // the position moves only once it is durable: a change is
                // never skipped, and one applied just before a crash is known
                // by its ids
                if let Err(err) = write_position(&self.file, self.cluster, e.seq + 1) {
                    tracing::error!(error = %err, "the data directory's schema position could not be written");
                    *lock(&self.stalled) = Some(err);
                    return mine;
                }
                match &r {
                    Ok(tag) => {
                        tracing::info!(change = e.seq, tag, "applied the cluster's schema change")
                    }
                    Err(err) => {
                        tracing::info!(change = e.seq, error = %err, "the cluster's schema change failed, as on every node")
                    }
                }
                *lock(&self.stalled) = None;
                self.next.store(e.seq + 1, Ordering::SeqCst);
                let kept = match &r {
                    Ok(tag) => Ok(*tag),
                    Err(err) => Err(err.to_string()),
                };
                {
                    let mut outcomes = lock(&self.outcomes);
                    outcomes.insert(e.seq, kept);
                    while outcomes.len() > OUTCOMES_KEPT {
                        outcomes.pop_first();
                    }
                }
                if want == Some(e.seq) {
                    mine = Some(r);
                }
            }
        }
    }

    /// How change `seq` ended here, once applied.
    fn outcome(&self, seq: u64) -> Option<Result<&'static str, String>> {
        if seq >= self.next.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            lock(&self.outcomes)
                .get(&seq)
                .cloned()
                .unwrap_or(Err(format!("schema change {seq} was applied long ago"))),
        )
    }
}

impl SchemaLog for NodeSchema {
    /// Applies the log's changes this node does not hold yet, in order.
    fn catch_up(&self) {
        let _ = self.apply_pending(None);
    }

    fn submit(&self, claim: &SchemaClaim) -> Result<&'static str, HostError> {
        let change = SchemaChange {
            claim: claim.encode()?.into(),
            user: user_name(&claim.attestation).to_owned(),
            id: claim.id()?,
        };
        let command = Command::Schema {
            from: self.me.node,
            change,
        };
        // a leader that has not applied the log's earlier changes yet cannot
        // check this one against them: it says so, and it is sent again
        let behind_until = std::time::Instant::now() + APPLIED_WAIT;
        let seq = loop {
            let outcome = self
                .handle
                .block_on(self.plane.service.submit(command.clone()))
                .map_err(|e| match e {
                    scratchbird_control::log::member::SubmitError::Refused { code, message } => {
                        (code, message)
                    }
                    other => (
                        String::new(),
                        format!(
                            "the cluster's log did not take the schema change: {other}; whether it was taken is not known: look before you retry"
                        ),
                    ),
                });
            match outcome {
                Ok((_, LogOutcome::SchemaChanged { seq })) => break seq,
                Err((code, _))
                    if code == SCHEMA_BEHIND && std::time::Instant::now() < behind_until =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((code, message)) if code.is_empty() => return Err(HostError::Session(message)),
                Err((code, message)) | Ok((_, LogOutcome::Refused { code, message })) => {
                    return Err(HostError::Envelope(format!("[{code}] {message}")));
                }
                Ok((_, other)) => {
                    return Err(HostError::internal(format!(
                        "the cluster's log answered a schema change with: {other}"
                    )));
                }
            }
        };
        let deadline = std::time::Instant::now() + APPLIED_WAIT;
        loop {
            if let Some(r) = self.apply_pending(Some(seq)) {
                return r;
            }
            if let Some(r) = self.outcome(seq) {
                return r.map_err(HostError::Session);
            }
            if std::time::Instant::now() >= deadline {
                return Err(HostError::Session(format!(
                    "the cluster took schema change {seq}, but this node has not applied it within {} s{}",
                    APPLIED_WAIT.as_secs(),
                    self.position()
                        .1
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `cluster <uuid>\nnext <n>\n`.
fn parse_position(text: &str, cluster: ClusterId) -> Result<u64, String> {
    let mut found_cluster = None;
    let mut next = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("cluster", c)) => found_cluster = Some(c.trim().to_owned()),
            Some(("next", n)) => {
                next = Some(
                    n.trim()
                        .parse::<u64>()
                        .map_err(|e| format!("next {n:?}: {e}"))?,
                );
            }
            _ => return Err(format!("an unreadable line {line:?}")),
        }
    }
    if found_cluster.as_deref() != Some(cluster.to_string().as_str()) {
        return Err(format!(
            "it belongs to cluster {}, not this node's cluster {cluster}: this data directory holds another cluster's schema",
            found_cluster.unwrap_or_default()
        ));
    }
    next.ok_or_else(|| "it names no position".into())
}

fn write_position(file: &std::path::Path, cluster: ClusterId, next: u64) -> Result<(), String> {
    let tmp = file.with_extension("tmp");
    let text = format!("cluster {cluster}\nnext {next}\n");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("writing {}: {e}", file.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
