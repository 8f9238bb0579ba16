//! The control directory and the log store in it.
//!
//! The control directory is the node's own (`<node>/control`), apart from its
//! data directory, so restoring a data directory never restores trust. It is
//! one fjall database with three keyspaces:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `log` | the entry's index, 8 bytes big-endian | the entry, CBOR |
//! | `meta` | `format`, `vote`, `committed`, `purged` | CBOR |
//! | `snapshot` | `meta`, `image` | the last snapshot's metadata and state image |
//!
//! Durability: an append and a vote are on disk (fsync) before openraft is told
//! they are; a truncation and a purge are made durable by the next append's or
//! vote's sync, and a purge records its position before it deletes anything, so
//! a crash between the two leaves entries the purge position already covers,
//! never a gap.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::machine::StateMachine;
use super::{ControlRaft, Entry, LogId, MemberId, StorageError};

/// The control directory's layout version.
pub const CONTROL_FORMAT: u64 = 1;

const KS_LOG: &str = "log";
const KS_META: &str = "meta";
const KS_SNAPSHOT: &str = "snapshot";

const META_FORMAT: &[u8] = b"format";
const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_PURGED: &[u8] = b"purged";

/// Why a control directory did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process has it open.
    #[error(
        "the control directory {path} is in use by another process; stop the other sbnode or give this one its own directory"
    )]
    Locked {
        /// The directory.
        path: String,
    },
    /// A layout this version does not read.
    #[error(
        "the control directory {path} has layout {found}; this version reads layout {CONTROL_FORMAT}"
    )]
    Format {
        /// The directory.
        path: String,
        /// Its layout.
        found: u64,
    },
    /// fjall could not open or read it.
    #[error("the control directory {path} could not be opened: {source}")]
    Storage {
        /// The directory.
        path: String,
        /// fjall's error.
        #[source]
        source: fjall::Error,
    },
    /// What it holds does not read back.
    #[error("the control directory {path} is damaged: {what}")]
    Damaged {
        /// The directory.
        path: String,
        /// What did not read.
        what: String,
    },
}

/// Opens (or creates) the control directory at `path`: its log store and its
/// state machine, restored from the last snapshot.
///
/// # Errors
/// The directory is locked, of another layout, or damaged.
pub fn open(path: &Path) -> Result<(LogStore, StateMachine), OpenError> {
    let shown = || path.display().to_string();
    let storage = |source| OpenError::Storage {
        path: shown(),
        source,
    };
    let db = Database::builder(path)
        .manual_journal_persist(true)
        .open()
        .map_err(|e| match e {
            fjall::Error::Locked => OpenError::Locked { path: shown() },
            other => storage(other),
        })?;
    let opts = || KeyspaceCreateOptions::default().manual_journal_persist(true);
    let log = db.keyspace(KS_LOG, opts).map_err(storage)?;
    let meta = db.keyspace(KS_META, opts).map_err(storage)?;
    let snapshot = db.keyspace(KS_SNAPSHOT, opts).map_err(storage)?;
    let damaged = |what: String| OpenError::Damaged {
        path: shown(),
        what,
    };
    match read::<u64>(&meta, META_FORMAT).map_err(|e| damaged(e.to_string()))? {
        None => {
            meta.insert(
                META_FORMAT,
                encode(&CONTROL_FORMAT).map_err(|e| damaged(e.to_string()))?,
            )
            .map_err(storage)?;
            db.persist(PersistMode::SyncAll).map_err(storage)?;
        }
        Some(CONTROL_FORMAT) => {}
        Some(found) => {
            return Err(OpenError::Format {
                path: shown(),
                found,
            });
        }
    }
    let machine = StateMachine::open(db.clone(), snapshot).map_err(|e| damaged(e.to_string()))?;
    Ok((LogStore { db, log, meta }, machine))
}

/// CBOR of a value.
pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, ciborium::ser::Error<std::io::Error>> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out)?;
    Ok(out)
}

/// Why a stored value did not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error("{0}")]
    Storage(#[from] fjall::Error),
    #[error("the value under {key:?} does not decode: {why}")]
    Decode { key: String, why: String },
}

/// Reads and decodes the value under `key`.
pub(super) fn read<T: DeserializeOwned>(ks: &Keyspace, key: &[u8]) -> Result<Option<T>, ReadError> {
    let Some(v) = ks.get(key)? else {
        return Ok(None);
    };
    ciborium::from_reader(v.as_ref())
        .map(Some)
        .map_err(|e| ReadError::Decode {
            key: String::from_utf8_lossy(key).into_owned(),
            why: e.to_string(),
        })
}

/// The log store: entries, the vote, the committed and purged positions.
#[derive(Clone)]
pub struct LogStore {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl LogStore {
    /// Decodes a stored entry, checking it is the one its key says.
    fn decode(key: &[u8], value: &[u8]) -> Result<Entry, StorageError> {
        let index = <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                StorageError::from(StorageIOError::read_logs(AnyError::error(format!(
                    "a log key of {} bytes, not 8",
                    key.len()
                ))))
            })?;
        let entry: Entry = ciborium::from_reader(value).map_err(|e| {
            StorageError::from(StorageIOError::read_log_at_index(index, AnyError::new(&e)))
        })?;
        if entry.log_id.index != index {
            return Err(StorageIOError::read_log_at_index(
                index,
                AnyError::error(format!(
                    "the entry stored at index {index} says it is at index {}",
                    entry.log_id.index
                )),
            )
            .into());
        }
        Ok(entry)
    }

    fn meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        read(&self.meta, key).map_err(|e| read_err(&e))
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], v: &T) -> Result<(), StorageError> {
        let bytes = encode(v).map_err(|e| write_err(&e))?;
        self.meta.insert(key, bytes).map_err(|e| write_err(&e))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| write_err(&e))
    }

    /// Deletes the entries whose indexes are in `range`.
    fn delete(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for kv in self.log.range(range) {
            let key = kv.key().map_err(|e| write_err(&e))?;
            batch.remove(&self.log, key);
        }
        batch.commit().map_err(|e| write_err(&e))
    }
}

impl RaftLogReader<ControlRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bound = |b: Bound<&u64>| match b {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let keys = (bound(range.start_bound()), bound(range.end_bound()));
        let mut out = Vec::new();
        for kv in self.log.range(keys) {
            let (k, v) = kv.into_inner().map_err(|e| read_err(&e))?;
            out.push(Self::decode(&k, &v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<ControlRaft> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<ControlRaft>, StorageError> {
        let purged: Option<LogId> = self.meta(META_PURGED)?;
        let last = match self.log.last_key_value() {
            Some(kv) => {
                let (k, v) = kv.into_inner().map_err(|e| read_err(&e))?;
                Some(Self::decode(&k, &v)?.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<MemberId>) -> Result<(), StorageError> {
        let bytes = encode(vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.meta
            .insert(META_VOTE, bytes)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<MemberId>>, StorageError> {
        read(&self.meta, META_VOTE).map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(META_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(META_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ControlRaft>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.db.batch();
        for e in entries {
            let bytes = encode(&e).map_err(|err| {
                StorageError::from(StorageIOError::write_log_entry(
                    e.log_id,
                    AnyError::new(&err),
                ))
            })?;
            batch.insert(&self.log, index_key(e.log_id.index), bytes);
        }
        let done = batch
            .commit()
            .and_then(|()| self.db.persist(PersistMode::SyncAll));
        match done {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = write_err(&e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete((Bound::Included(index_key(log_id.index)), Bound::Unbounded))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(META_PURGED, &log_id)?;
        self.sync()?;
        self.delete((Bound::Unbounded, Bound::Included(index_key(log_id.index))))
    }
}
