//! Configuration of a store, and the environment it is given (clock, randomness).
//!
//! Architecture invariant: `storage` never reads the wall clock or the operating
//! system's randomness itself. The caller passes an [`Env`]; tests pass [`ManualEnv`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The outside world as the engine sees it.
pub trait Env: Send + Sync + std::fmt::Debug {
    /// Wall-clock time in microseconds since 1970-01-01 UTC. Used for commit
    /// timestamps (time travel `AS OF TIMESTAMP`, retention). Need not be monotonic:
    /// commit timestamps are made non-decreasing by the engine.
    fn now_micros(&self) -> i64;
    /// 16 random bytes, for object UUIDs.
    fn random_bytes(&self) -> [u8; 16];
}

/// A deterministic environment: a clock that moves only when told to, and a seeded
/// pseudo-random generator. For tests and tools that need repeatable runs.
#[derive(Debug)]
pub struct ManualEnv {
    now: AtomicI64,
    rng: Mutex<u64>,
}

impl ManualEnv {
    /// Starts the clock at `now_micros` and the generator at `seed`.
    #[must_use]
    pub fn new(now_micros: i64, seed: u64) -> Self {
        Self {
            now: AtomicI64::new(now_micros),
            rng: Mutex::new(seed),
        }
    }

    /// Moves the clock forward.
    pub fn advance_micros(&self, micros: i64) {
        self.now.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set_micros(&self, micros: i64) {
        self.now.store(micros, Ordering::SeqCst);
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Env for ManualEnv {
    fn now_micros(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn random_bytes(&self) -> [u8; 16] {
        let mut state = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = splitmix(&mut state);
        let b = splitmix(&mut state);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }
}

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
