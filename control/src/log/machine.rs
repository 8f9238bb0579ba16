//! The state machine: committed entries applied, in the log's order, to a
//! [`ControlState`], and its snapshots kept in the control directory.
//!
//! The state itself lives in memory and is rebuilt on start from the last
//! snapshot; openraft then applies again the committed entries after it (the
//! log store keeps the committed position for that), so nothing applied before
//! a crash is lost and nothing is applied twice into the same state. A snapshot
//! is written durably (fsync) before openraft may purge the entries it covers.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use fjall::{Database, Keyspace, PersistMode};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::store::{encode, read};
use super::{ControlRaft, Entry, LogId, MemberId, PeerAddr, StorageError};
use crate::state::{ControlState, Outcome};

/// The largest snapshot image a member installs (the state is the epoch chain
/// and the documents it names; far below this).
pub const IMAGE_BYTES_MAX: usize = 256 << 20;

const SNAP_META: &[u8] = b"meta";
const SNAP_IMAGE: &[u8] = b"image";

/// What the state machine has applied.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The last entry applied.
    pub last: Option<LogId>,
    /// The log's voter and learner configuration as of the last membership
    /// entry applied.
    pub membership: StoredMembership<MemberId, PeerAddr>,
    /// The control state.
    pub state: ControlState,
}

/// A stored snapshot: its metadata and its state image.
type StoredSnapshot = (SnapshotMeta<MemberId, PeerAddr>, Vec<u8>);

/// How a snapshot's metadata is stored.
#[derive(Serialize, Deserialize)]
struct StoredMeta {
    meta: SnapshotMeta<MemberId, PeerAddr>,
}

/// The state machine.
pub struct StateMachine {
    db: Database,
    snapshots: Keyspace,
    applied: Arc<RwLock<Applied>>,
    /// Snapshots built by this member, to give each its own id.
    built: Arc<AtomicU64>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

/// A read handle on what the state machine has applied.
#[derive(Debug, Clone)]
pub struct Reader(Arc<RwLock<Applied>>);

impl Reader {
    /// What is applied now.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sm_read(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_state_machine(AnyError::error(e)).into()
}

fn snap_write(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::error(e)).into()
}

impl StateMachine {
    /// Opens the state machine over the control directory's `snapshot`
    /// keyspace, restored from the last snapshot stored there.
    pub(super) fn open(db: Database, snapshots: Keyspace) -> Result<Self, StorageError> {
        let sm = Self {
            db,
            snapshots,
            applied: Arc::default(),
            built: Arc::default(),
        };
        if let Some((meta, image)) = sm.stored()? {
            let state = ControlState::from_image(&image).map_err(sm_read)?;
            *sm.applied.write().unwrap_or_else(PoisonError::into_inner) = Applied {
                last: meta.last_log_id,
                membership: meta.last_membership,
                state,
            };
        }
        Ok(sm)
    }

    /// A read handle on the applied state.
    #[must_use]
    pub fn reader(&self) -> Reader {
        Reader(Arc::clone(&self.applied))
    }

    /// The stored snapshot: its metadata and image.
    fn stored(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let Some(meta) = read::<StoredMeta>(&self.snapshots, SNAP_META).map_err(sm_read)? else {
            return Ok(None);
        };
        let image = self
            .snapshots
            .get(SNAP_IMAGE)
            .map_err(sm_read)?
            .ok_or_else(|| sm_read("a snapshot's metadata is stored without its image"))?;
        Ok(Some((meta.meta, image.to_vec())))
    }

    /// Stores a snapshot durably, image and metadata in one batch.
    fn store(
        &self,
        meta: &SnapshotMeta<MemberId, PeerAddr>,
        image: &[u8],
    ) -> Result<(), StorageError> {
        let m = encode(&StoredMeta { meta: meta.clone() }).map_err(snap_write)?;
        let mut batch = self.db.batch();
        batch.insert(&self.snapshots, SNAP_IMAGE, image);
        batch.insert(&self.snapshots, SNAP_META, m);
        batch.commit().map_err(snap_write)?;
        self.db.persist(PersistMode::SyncAll).map_err(snap_write)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RaftSnapshotBuilder<ControlRaft> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<ControlRaft>, StorageError> {
        let (last, membership, image) = {
            let a = self.reader();
            let a = a.read();
            (
                a.last,
                a.membership.clone(),
                a.state.image().map_err(snap_write)?,
            )
        };
        let n = self.built.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{n}", l.leader_id.term, l.index),
            None => format!("0-0-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id,
        };
        self.store(&meta, &image)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(image)),
        })
    }
}

impl RaftStateMachine<ControlRaft> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<MemberId, PeerAddr>), StorageError> {
        let a = self.reader();
        let a = a.read();
        Ok((a.last, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut a = self.write();
        let mut out = Vec::new();
        for e in entries {
            a.last = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => Outcome::Nothing,
                EntryPayload::Normal(command) => a.state.apply(e.log_id.index, &command),
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(e.log_id), m);
                    Outcome::Nothing
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            applied: Arc::clone(&self.applied),
            built: Arc::clone(&self.built),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<MemberId, PeerAddr>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let image = snapshot.into_inner();
        let refuse = |what: String| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(what)).into()
        };
        if image.len() > IMAGE_BYTES_MAX {
            return Err(refuse(format!(
                "a snapshot of {} bytes is more than the {IMAGE_BYTES_MAX} a member installs",
                image.len()
            )));
        }
        // Every record of the snapshot's chain is checked as the log checked it:
        // a snapshot from a hostile or broken leader is refused, not installed.
        let state = ControlState::from_image(&image).map_err(|e| refuse(e.to_string()))?;
        self.store(meta, &image)?;
        *self.write() = Applied {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ControlRaft>>, StorageError> {
        Ok(self.stored()?.map(|(meta, image)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(image)),
        }))
    }
}
