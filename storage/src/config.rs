//! Configuration of a store, and the environment it is given (clock, randomness).
//!
//! Architecture invariant: `storage` never reads the wall clock or the operating
//! system's randomness itself. The caller passes an [`Env`] (`scratchbird_types::env`);
//! tests pass [`ManualEnv`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use scratchbird_types::env::{Env, ManualEnv};

/// When a commit is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the journal holding the commit record is fsynced. Concurrent commits
    /// share one fsync (group commit). The default, and the only mode that keeps
    /// acknowledged commits across power loss.
    Fsync,
    /// After the commit record reaches the operating system, without fsync.
    /// Survives a crash of the process, not of the machine. For tests and scratch
    /// data only.
    NoFsync,
}

/// Deliberate failures, for tests of the failure paths (a mock only below what those
/// tests are about: the engine's reaction to a failed fsync).
#[derive(Debug, Default)]
pub struct Faults {
    fail_next_fsync: AtomicBool,
}

impl Faults {
    /// Makes the next fsync of the journal fail.
    pub fn fail_next_fsync(&self) {
        self.fail_next_fsync.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_fsync_failure(&self) -> bool {
        self.fail_next_fsync.swap(false, Ordering::SeqCst)
    }
}

/// How a store is run. [`StorageConfig::new`] gives production defaults.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The clock and randomness.
    pub env: Arc<dyn Env>,
    /// When commits are acknowledged.
    pub durability: Durability,
    /// Block cache of the key-value store, in bytes.
    pub cache_bytes: u64,
    /// Buffer pool of checked, parsed pages, in bytes.
    pub page_cache_bytes: usize,
    /// Write buffer of each keyspace, in bytes: the unit flushed to disk. Smaller
    /// buffers flush sooner, so less journal is replayed when a node starts.
    pub memtable_max_bytes: u64,
    /// Journal kept before buffers are flushed, in bytes (at least 64 MiB). Bounds
    /// what a start has to replay.
    pub journal_max_bytes: u64,
    /// History kept for time travel (`AS OF`) and the commit log, in microseconds.
    pub retention_micros: i64,
    /// Target size of a stored page, in bytes (a page is closed at this size or at
    /// `storage::limits::PAGE_ROWS_MAX` rows).
    pub page_target_bytes: usize,
    /// Unfolded row versions kept in memory across all tables, in bytes. Writes fail
    /// with a clear error above it; sweep folds versions into pages to stay below.
    pub delta_max_bytes: usize,
    /// Unfolded row versions above which a background sweep is started, in bytes.
    pub fold_trigger_bytes: usize,
    /// Most transactions active at once.
    pub active_transactions_max: usize,
    /// Most row versions one transaction may write (bulk loads write pages and are
    /// not counted per row).
    pub transaction_versions_max: usize,
    /// Interval of the background sweep, in milliseconds; `None`: sweep only when
    /// `Storage::sweep` is called or the fold trigger is reached.
    pub sweep_interval_ms: Option<u64>,
    /// Deliberate failures for tests.
    pub faults: Option<Arc<Faults>>,
}

impl StorageConfig {
    /// Production defaults with the given environment.
    #[must_use]
    pub fn new(env: Arc<dyn Env>) -> Self {
        Self {
            env,
            durability: Durability::Fsync,
            cache_bytes: 256 * 1024 * 1024,
            page_cache_bytes: 256 * 1024 * 1024,
            memtable_max_bytes: 32 * 1024 * 1024,
            journal_max_bytes: 256 * 1024 * 1024,
            retention_micros: 15 * 60 * 1_000_000,
            page_target_bytes: 32 * 1024,
            delta_max_bytes: 512 * 1024 * 1024,
            fold_trigger_bytes: 32 * 1024 * 1024,
            active_transactions_max: 4_096,
            transaction_versions_max: 2_000_000,
            sweep_interval_ms: Some(1_000),
            faults: None,
        }
    }
}
