//! One member's control log: its store, its Raft, what it has applied.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};

use super::machine::{Applied, Reader};
use super::net::{Network, Transport};
use super::store::{OpenError, open};
use super::{LogId, MemberId, PeerAddr, Raft};
use crate::state::{COMMAND_BYTES_MAX, Command, Outcome};

/// How a member runs its log. The defaults suit members on one network; the
/// deterministic simulation and tests shorten them.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// How often the leader tells followers it is alive.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in this range (from,
    /// to) stands for election.
    pub election_timeout: (Duration, Duration),
    /// Entries applied since the last snapshot after which a new one is made
    /// and the entries it covers purged.
    pub snapshot_every: u64,
    /// Entries a snapshot covers that are still kept, so a follower a little
    /// behind catches up from the log, not a snapshot.
    pub keep_after_snapshot: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(600), Duration::from_millis(1200)),
            snapshot_every: 1_000,
            keep_after_snapshot: 200,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl LogConfig {
    fn raft(&self) -> Result<Arc<Config>, StartError> {
        let c = Config {
            cluster_name: "scratchbird-control".into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            // a chunk well within a message, so most snapshots travel whole
            // (and are checked whole before they are installed)
            snapshot_max_chunk_size: 8 << 20,
            ..Config::default()
        };
        c.validate()
            .map(Arc::new)
            .map_err(|e| StartError::Config(e.to_string()))
    }
}

/// Why a member's log did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The control directory did not open.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The timings are not usable.
    #[error("the control log's timings are not usable: {0}")]
    Config(String),
    /// openraft did not start.
    #[error("the control log did not start: {0}")]
    Raft(String),
}

/// Why a command was not committed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// This member is not the leader; submit to the leader (if one is known).
    #[error("this member is not the control log's leader{}", match .leader {
        Some((id, addr)) => format!("; the leader is member {id} at {addr}"),
        None => "; no leader is known yet: try again shortly".to_owned(),
    })]
    NotLeader {
        /// The leader this member knows of.
        leader: Option<(MemberId, PeerAddr)>,
    },
    /// The command is larger than the log takes.
    #[error("the command is {bytes} bytes; the control log takes at most {COMMAND_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The log stopped (a storage error, or it was shut down).
    #[error("the control log stopped: {0}")]
    Stopped(String),
    /// The leader refused the command before the log: it breaks a rule.
    #[error("refused ({code}): {message}")]
    Refused {
        /// The rule's stable code.
        code: String,
        /// What was wrong and what to do.
        message: String,
    },
}

/// Why a read could not be made linearizable.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// This member is not the leader, or lost leadership while checking.
    #[error("this member cannot serve a linearizable read: {0}")]
    NotLeader(String),
}

/// One member of the control log.
pub struct ControlMember {
    id: MemberId,
    raft: Raft,
    applied: Reader,
}

impl std::fmt::Debug for ControlMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlMember")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ControlMember {
    /// Opens the control directory `dir` and starts member `id` of the log
    /// over `transport`.
    ///
    /// # Errors
    /// The directory does not open, the timings are unusable, or openraft
    /// refuses the stored state.
    pub async fn start<T: Transport>(
        id: MemberId,
        dir: &Path,
        config: &LogConfig,
        transport: Arc<T>,
    ) -> Result<Self, StartError> {
        let (log, machine) = open(dir)?;
        let applied = machine.reader();
        let raft = Raft::new(
            id,
            config.raft()?,
            Network::new(id, transport),
            log,
            machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        Ok(Self { id, raft, applied })
    }

    /// This member.
    #[must_use]
    pub const fn id(&self) -> MemberId {
        self.id
    }

    /// Its Raft handle (metrics, membership changes, serving peers).
    #[must_use]
    pub const fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Makes this member's log the first of a new cluster, with `voters` (this
    /// member among them). Done once, on one member.
    ///
    /// # Errors
    /// The log is already initialised, or this member is not among `voters`.
    pub async fn initialize(&self, voters: BTreeMap<MemberId, PeerAddr>) -> Result<(), String> {
        self.raft
            .initialize(voters)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether this member's log was started (by [`ControlMember::initialize`]
    /// here, or by joining a leader's).
    ///
    /// # Errors
    /// The log stopped.
    pub async fn is_initialized(&self) -> Result<bool, String> {
        self.raft.is_initialized().await.map_err(|e| e.to_string())
    }

    /// Submits a command and waits until it is committed and applied here.
    ///
    /// # Errors
    /// This member is not the leader, the command is too large, or the log
    /// stopped. A command that breaks a rule is committed and its outcome says
    /// so ([`Outcome::Refused`]).
    pub async fn submit(&self, command: Command) -> Result<(LogId, Outcome), SubmitError> {
        let mut bytes = Vec::new();
        ciborium::into_writer(&command, &mut bytes)
            .map_err(|e| SubmitError::Stopped(e.to_string()))?;
        if bytes.len() > COMMAND_BYTES_MAX {
            return Err(SubmitError::TooLarge { bytes: bytes.len() });
        }
        match self.raft.client_write(command).await {
            Ok(r) => Ok((r.log_id, r.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(SubmitError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Err(e) => Err(SubmitError::Stopped(e.to_string())),
        }
    }

    /// Waits until this member, as leader, has confirmed with a quorum that it
    /// still leads and has applied everything committed before now; what
    /// [`ControlMember::applied`] then shows is linearizable.
    ///
    /// # Errors
    /// This member is not the leader or lost leadership.
    pub async fn linearize(&self) -> Result<(), ReadError> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| ReadError::NotLeader(e.to_string()))
    }

    /// What this member has applied (it may lag the leader; see
    /// [`ControlMember::linearize`]).
    pub fn applied(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.applied.read()
    }

    /// Waits until this member leads the log, for at most `timeout`.
    ///
    /// # Errors
    /// It did not become the leader in time.
    pub async fn wait_leading(&self, timeout: Duration) -> Result<(), String> {
        self.raft
            .wait(Some(timeout))
            .state(openraft::ServerState::Leader, "this member leading")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The leader this member knows of.
    #[must_use]
    pub fn leader(&self) -> Option<MemberId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops the member's log (its store stays as it is on disk).
    ///
    /// # Errors
    /// The log's task had already failed (it panicked).
    pub async fn shutdown(&self) -> Result<(), String> {
        self.raft.shutdown().await.map_err(|e| e.to_string())
    }
}
