//! Shard-local Firebird-style MVCC storage on fjall.
//!
//! Each shard is one MVCC universe: transactions get increasing numbers; a transaction
//! inventory holds each one's state; record versions are written when a statement
//! runs and become visible when the inventory says committed, so commit is one
//! durable write. Records live in columnar pages (many per stored value, for scans)
//! with recent versions in per-record chains on top; sweep folds settled versions
//! into pages and removes what no snapshot can see, keeping a retention window for
//! time travel and the commit log.
//!
//! The on-disk format and the fsync order are in `docs/storage-format.md`.
//!
//! Architecture invariants: this crate knows nothing of the network, policy, wasm or
//! the wall clock (the clock is passed in through [`Env`]).
//!
//! ```no_run
//! use scratchbird_storage::{ManualEnv, Storage, StorageConfig, TxnOptions};
//! use scratchbird_storage::catalog::{ColumnSpec, TableSpec};
//! use scratchbird_types::{SqlType, Value};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), scratchbird_storage::StorageError> {
//! let env = Arc::new(ManualEnv::new(0, 1));
//! let store = Storage::open("/tmp/shard0", StorageConfig::new(env))?;
//! let mut t = store.begin(TxnOptions::snapshot())?;
//! let id = t.create_table(&TableSpec {
//!     name: "accounts".into(),
//!     columns: vec![ColumnSpec::new("id", SqlType::BigInt), ColumnSpec::new("owner", SqlType::Text)],
//!     primary_key: vec!["id".into()],
//!     distribution: None,
//! })?;
//! t.insert(id, vec![Value::BigInt(1), Value::Text("ada".into())])?;
//! t.commit()?;
//! # Ok(())
//! # }
//! ```

pub mod catalog;
pub mod check;
mod codec;
pub mod commitlog;
mod config;
mod engine;
mod error;
pub(crate) mod identity;
mod keys;
pub mod limits;
mod locks;
mod page;
mod pagedir;
pub mod scan;
mod stats;
mod sweep;
mod table;
mod tip;
mod txn;

pub use config::{Durability, Env, Faults, ManualEnv, StorageConfig};
pub use engine::FORMAT_VERSION;
pub use error::{Result, StorageError};
pub use locks::LockWait;
pub use sweep::{IntegrityReport, SweepReport};
pub use tip::TxnState;
pub use txn::{
    AsOf, CommitInfo, IdSource, Isolation, ReadCommittedMode, RecordKey, StatementMark,
    Transaction, TxnOptions,
};

use engine::{Inner, lock};
use scratchbird_types::{CommitNumber, TxnId};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// A shard's store. Cheap to share by reference across threads; transactions may run
/// on any thread.
#[derive(Debug)]
pub struct Storage {
    inner: Arc<Inner>,
    sweeper: Option<JoinHandle<()>>,
}

/// Counters of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStats {
    /// Newest visible commit.
    pub visible_commit: CommitNumber,
    /// Oldest commit time travel may read (the garbage-collection floor).
    pub gc_floor: CommitNumber,
    /// Oldest commit log position still readable.
    pub oldest_log_position: CommitNumber,
    /// Next transaction number.
    pub next_transaction: TxnId,
    /// Oldest transaction the inventory still tracks ("oldest interesting").
    pub oldest_interesting: TxnId,
    /// Oldest active transaction, if any.
    pub oldest_active: Option<TxnId>,
    /// Oldest snapshot held by a transaction or statement, if any.
    pub oldest_snapshot: Option<CommitNumber>,
    /// Active transactions.
    pub active_transactions: usize,
    /// Bytes of unfolded record versions in memory.
    pub delta_bytes: usize,
    /// Record versions in chains, over all tables.
    pub delta_versions: usize,
    /// Pages over all tables.
    pub pages: usize,
    /// Bytes of pages over all tables.
    pub page_bytes: u64,
    /// Bytes the key-value store occupies on disk.
    pub disk_bytes: u64,
}

impl Storage {
    /// Opens (or creates) the store in `path`, recovering from the journal: commits
    /// that were acknowledged are present; transactions that were active are rolled
    /// back; transactions in limbo stay in limbo.
    ///
    /// # Errors
    /// The directory cannot be used, has another format version, or a stored value
    /// failed its checks.
    pub fn open(path: impl AsRef<Path>, config: StorageConfig) -> Result<Self> {
        let interval = config.sweep_interval_ms;
        let inner = Inner::open(path.as_ref(), config)?;
        // Remove what the interrupted transactions left before anyone reads.
        inner.sweep()?;
        inner.settle_table_defs()?;
        let weak = Arc::downgrade(&inner);
        let sweeper = std::thread::Builder::new()
            .name("sb-sweep".into())
            .spawn(move || sweeper_loop(&weak, interval))
            .map_err(|_| StorageError::Internal("could not start the sweeper thread"))?;
        Ok(Self {
            inner,
            sweeper: Some(sweeper),
        })
    }

    /// Which shard of how many this store is, as [`Storage::set_placement`]
    /// last set it: `(0, 1)` outside a cluster.
    #[must_use]
    pub fn placement(&self) -> (usize, usize) {
        let packed = self
            .inner
            .placement
            .load(std::sync::atomic::Ordering::Acquire);
        if packed == 0 {
            return (0, 1);
        }
        ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize)
    }

    /// This store is shard `index` (its position in the cluster's shard map)
    /// of `shards`: from now on a row written to a table (not a system table)
    /// whose placing value puts it on another shard is refused
    /// ([`StorageError::WrongShard`]). `shards` of 0 or 1 lifts the check.
    pub fn set_placement(&self, index: u32, shards: u32) {
        let packed = if shards <= 1 {
            0
        } else {
            (u64::from(index) << 32) | u64::from(shards)
        };
        self.inner
            .placement
            .store(packed, std::sync::atomic::Ordering::Release);
    }

    /// The clock and randomness the store was opened with: what the rest of a
    /// node over this store reads too, so a simulated store has simulated
    /// neighbours.
    #[must_use]
    pub fn env(&self) -> &Arc<dyn Env> {
        &self.inner.config.env
    }

    /// Live estimates of how many rows each table holds (every row, whoever
    /// may see it): read from the tables' directories in memory, never from
    /// a row. Whoever hands them to a planner decides whom its plans serve
    /// (they count rows a principal's row policy hides).
    #[must_use]
    pub fn row_estimates(&self) -> Arc<dyn scratchbird_types::schema::RowEstimates> {
        self.inner.row_estimates()
    }

    /// Starts a transaction.
    ///
    /// # Errors
    /// Too many active transactions, or time travel outside the retention window.
    pub fn begin(&self, opts: TxnOptions) -> Result<Transaction> {
        Transaction::begin(self.inner.clone(), opts)
    }

    /// Runs one garbage-collection pass now.
    ///
    /// # Errors
    /// A stored value failed its checks, or the store refuses writes.
    pub fn sweep(&self) -> Result<SweepReport> {
        self.inner.sweep()
    }

    /// Reads the commit log from position `from` (a commit number) on.
    ///
    /// # Errors
    /// [`StorageError::LogTruncated`] if `from` is no longer retained.
    pub fn commit_log(&self, from: CommitNumber) -> Result<commitlog::CommitLogReader> {
        commitlog::CommitLogReader::new(self.inner.clone(), from)
    }

    /// The newest commit whose timestamp is at or before `ts` (for `AS OF TIMESTAMP`).
    ///
    /// # Errors
    /// A stored value failed its checks.
    pub fn commit_at(&self, ts_micros: i64) -> Result<Option<CommitNumber>> {
        self.inner.commit_at_or_before(ts_micros)
    }

    /// Transactions in limbo (prepared, not resolved).
    #[must_use]
    pub fn limbo_transactions(&self) -> Vec<TxnId> {
        let (base, states) = self.inner.tip.snapshot();
        states
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == TxnState::Limbo)
            .map(|(i, _)| TxnId(base + i as u64))
            .collect()
    }

    /// Commits or rolls back a transaction in limbo. Behind the `two-phase`
    /// feature, which no binary builds (no write spans shards).
    ///
    /// # Errors
    /// The transaction is not in limbo, or the store refuses writes.
    #[cfg(feature = "two-phase")]
    pub fn resolve_limbo(&self, txn: TxnId, commit: bool) -> Result<Option<CommitNumber>> {
        let _one_at_a_time = lock(&self.inner.limbo_lock);
        if self.inner.tip.state(txn) != TxnState::Limbo {
            return Err(StorageError::NotInLimbo { txn });
        }
        let out = if commit {
            // Its log entries are numbered 0..n; the last key tells n.
            let entries = match self.inner.ks.txlog.prefix(txn.0.to_be_bytes()).next_back() {
                Some(kv) => keys::u64_key(kv.key()?.get(8..).unwrap_or(&[]))? + 1,
                None => 0,
            };
            // The transaction may have changed the catalog: count it as DDL.
            Some(self.inner.commit_txn(txn, true, entries)?)
        } else {
            self.inner.write_tip(txn, TxnState::RolledBack, true)?;
            self.inner.tip.set(txn, TxnState::RolledBack);
            None
        };
        self.inner.locks.release_all(txn);
        Ok(out)
    }

    /// The state of a transaction.
    #[must_use]
    pub fn transaction_state(&self, txn: TxnId) -> TxnState {
        self.inner.tip.state(txn)
    }

    /// Reads every stored page and version, checking checksums, and checks that the
    /// indexes and the tables agree.
    ///
    /// # Errors
    /// A stored value failed its checks.
    pub fn check(&self) -> Result<IntegrityReport> {
        self.inner.check()
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> StorageStats {
        use std::sync::atomic::Ordering;
        let i = &self.inner;
        let (oldest_active, oldest_snapshot, active) = {
            let a = lock(&i.active);
            let snap = a.txns.values().flatten().min().copied();
            let stmt = a.stmt.keys().next().copied();
            let oldest = match (snap, stmt) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            (a.txns.keys().next().copied(), oldest, a.txns.len())
        };
        let (mut versions, mut pages, mut page_bytes) = (0usize, 0usize, 0u64);
        for store in i
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            let st = store.read();
            versions += st.delta.values().map(Vec::len).sum::<usize>();
            pages += st.pages.len();
            page_bytes += st.pages.values().map(|m| u64::from(m.bytes)).sum::<u64>();
        }
        StorageStats {
            visible_commit: i.visible(),
            gc_floor: CommitNumber(i.gc_floor.load(Ordering::SeqCst)),
            oldest_log_position: CommitNumber(i.log_floor.load(Ordering::SeqCst) + 1),
            next_transaction: TxnId(i.next_txn.load(Ordering::SeqCst)),
            oldest_interesting: i.tip.floor(),
            oldest_active,
            oldest_snapshot,
            active_transactions: active,
            delta_bytes: i.delta_bytes.load(Ordering::SeqCst),
            delta_versions: versions,
            pages,
            page_bytes,
            disk_bytes: i.db.disk_space().unwrap_or(0),
        }
    }

    /// Compacts the key-value store fully, so that space freed by sweep is returned
    /// to the file system now rather than by background compaction.
    ///
    /// # Errors
    /// I/O errors.
    pub fn compact(&self) -> Result<()> {
        let ks = &self.inner.ks;
        for k in [
            &ks.pages,
            &ks.pagedir,
            &ks.delta,
            &ks.index,
            &ks.txlog,
            &ks.commitlog,
            &ks.tip,
        ] {
            k.rotate_memtable_and_wait()?;
            k.major_compact()?;
        }
        Ok(())
    }

    /// Stops the sweeper and makes everything written durable.
    ///
    /// # Errors
    /// The final fsync failed.
    pub fn close(mut self) -> Result<()> {
        self.stop_sweeper();
        self.inner.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn stop_sweeper(&mut self) {
        let (m, cv) = &self.inner.sweeper_wake;
        lock(m).stop = true;
        cv.notify_all();
        if let Some(h) = self.sweeper.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.stop_sweeper();
    }
}

fn sweeper_loop(inner: &Weak<Inner>, interval_ms: Option<u64>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        {
            let (m, cv) = &strong.sweeper_wake;
            let mut sig = lock(m);
            if !sig.stop && !sig.requested {
                sig = match interval_ms {
                    Some(ms) => {
                        cv.wait_timeout(sig, Duration::from_millis(ms))
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0
                    }
                    None => cv
                        .wait(sig)
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                };
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
        }
        if let Err(e) = strong.sweep() {
            tracing::warn!(error = %e, "background sweep failed");
        }
    }
}
