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
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// The file in a data directory that says how many of the cluster's schema
/// changes it holds.
pub(super) const POSITION_FILE: &str = "cluster-schema";

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
    applied: Mutex<Applied>,
}

#[derive(Default)]
struct Applied {
    /// The next change to apply.
    next: u64,
    /// How recent changes ended here.
    outcomes: BTreeMap<u64, Result<&'static str, String>>,
    /// Why applying stopped (a change that failed for a reason of this node,
    /// not of the change: retried at the next tick).
    stalled: Option<String>,
}

impl std::fmt::Debug for NodeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSchema")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Whether `e` is this node's trouble (retry later) rather than the change's
/// (the same on every node: the change ends in it everywhere).
fn transient(e: &HostError) -> bool {
    match e {
        HostError::Audit(_) | HostError::Internal { .. } => true,
        HostError::Storage(s) => matches!(
            s.code(),
            "LOCK_CONFLICT"
                | "DEADLOCK"
                | "UPDATE_CONFLICT"
                | "STORAGE_FAILED"
                | "STORAGE_INTERNAL"
                | "READ_ONLY"
                | "DIRECTORY_LOCKED"
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
            applied: Mutex::new(Applied {
                next,
                ..Applied::default()
            }),
        })
    }

    /// The shard the changes are applied to.
    pub(super) fn attach(&self, shard: &Arc<Shard>) {
        let _ = self.shard.set(Arc::downgrade(shard));
    }

    /// The next change this node will apply, and why applying is stalled.
    pub(super) fn position(&self) -> (u64, Option<String>) {
        let a = lock(&self.applied);
        (a.next, a.stalled.clone())
    }

    /// Applies the log's changes this node does not hold yet, in order.
    pub(super) fn catch_up_now(&self) {
        let _ = self.apply_pending(None);
    }

    /// [`NodeSchema::catch_up`]; the outcome of change `want` when it was
    /// applied now (its error whole, with its own code).
    fn apply_pending(&self, want: Option<u64>) -> Option<Result<&'static str, HostError>> {
        let shard = self.shard.get().and_then(Weak::upgrade)?;
        let mut mine = None;
        let mut a = lock(&self.applied);
        loop {
            let entries = {
                let applied = self.plane.service.member().applied();
                applied.state.schema_changes(a.next, APPLY_BATCH).to_vec()
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
                    && transient(err)
                {
                    tracing::warn!(change = e.seq, error = %err, "a schema change of the cluster could not be applied here yet; retrying");
                    a.stalled = Some(format!("schema change {}: {err}", e.seq));
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
                a.stalled = None;
                a.next = e.seq + 1;
                if let Err(err) = write_position(&self.file, self.cluster, a.next) {
                    a.stalled = Some(err.clone());
                    tracing::error!(error = %err, "the data directory's schema position could not be written");
                }
                let kept = match &r {
                    Ok(tag) => Ok(*tag),
                    Err(err) => Err(err.to_string()),
                };
                a.outcomes.insert(e.seq, kept);
                if want == Some(e.seq) {
                    mine = Some(r);
                }
                while a.outcomes.len() > OUTCOMES_KEPT {
                    a.outcomes.pop_first();
                }
            }
        }
    }

    /// How change `seq` ended here, once applied.
    fn outcome(&self, seq: u64) -> Option<Result<&'static str, String>> {
        let a = lock(&self.applied);
        if seq >= a.next {
            return None;
        }
        Some(
            a.outcomes
                .get(&seq)
                .cloned()
                .unwrap_or(Err(format!("schema change {seq} was applied long ago"))),
        )
    }
}

impl SchemaLog for NodeSchema {
    fn catch_up(&self) {
        self.catch_up_now();
    }

    fn submit(&self, claim: &SchemaClaim) -> Result<&'static str, HostError> {
        let change = SchemaChange {
            claim: claim.encode()?.into(),
            user: user_name(&claim.attestation).to_owned(),
        };
        let command = Command::Schema {
            from: self.me.node,
            change,
        };
        let outcome = self
            .handle
            .block_on(self.plane.service.submit(command))
            .map_err(|e| {
                HostError::Session(format!(
                    "the cluster's log did not take the schema change: {e}; whether it was taken is not known: look before you retry"
                ))
            })?;
        let seq = match outcome.1 {
            LogOutcome::SchemaChanged { seq } => seq,
            LogOutcome::Refused { code, message } => {
                return Err(HostError::Envelope(format!("[{code}] {message}")));
            }
            other => {
                return Err(HostError::internal(format!(
                    "the cluster's log answered a schema change with: {other}"
                )));
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
