//! Waiting: for a transaction that holds a record, and for table locks.
//!
//! Record-level conflicts need no lock table in Firebird's model: the newest record
//! version names its transaction, and a writer that finds an active one waits for
//! that transaction to end (WAIT) or fails at once (NO WAIT). Table locks are taken
//! by DML (shared, held to the end of the transaction) and by DDL and bulk loads on an
//! existing table (exclusive), so a table cannot be dropped or re-indexed under a
//! writer. A wait that would close a cycle is refused as a deadlock.
//!
//! Timeouts use the monotonic clock (`Instant`); the engine reads no wall clock.

use crate::error::{Result, StorageError};
use scratchbird_types::{TableId, TxnId};
use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a transaction behaves when it meets a record or lock held by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with a lock conflict.
    NoWait,
    /// Wait for the holder to end, at most this long (`None`: until it ends).
    Wait {
        /// Lock timeout in milliseconds.
        timeout_ms: Option<u64>,
    },
}

/// Table lock modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableLockMode {
    Shared,
    Exclusive,
}

#[derive(Debug, Default)]
struct TableLock {
    shared: HashSet<TxnId>,
    exclusive: Option<TxnId>,
}

#[derive(Debug, Default)]
struct State {
    waits_for: HashMap<TxnId, Vec<TxnId>>,
    tables: HashMap<TableId, TableLock>,
    held: HashMap<TxnId, Vec<TableId>>,
}

impl State {
    /// Whether `from` reaches `target` through wait edges.
    fn reaches(&self, from: TxnId, target: TxnId) -> bool {
        let mut stack = vec![from];
        let mut seen = HashSet::new();
        while let Some(t) = stack.pop() {
            if t == target {
                return true;
            }
            if seen.insert(t)
                && let Some(next) = self.waits_for.get(&t)
            {
                stack.extend(next.iter().copied());
            }
        }
        false
    }
}

/// The lock manager of one store.
#[derive(Debug, Default)]
pub(crate) struct LockManager {
    state: Mutex<State>,
    changed: Condvar,
}

fn deadline_of(wait: LockWait) -> Option<Option<Instant>> {
    match wait {
        LockWait::NoWait => None,
        LockWait::Wait { timeout_ms } => {
            Some(timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)))
        }
    }
}

impl LockManager {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sleeps until the state changes or `deadline` passes (then: a lock timeout
    /// naming `holder`, and `me`'s wait edges are removed).
    fn wait<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        me: TxnId,
        holder: TxnId,
        deadline: Option<Instant>,
        started: Instant,
    ) -> Result<MutexGuard<'a, State>> {
        let Some(d) = deadline else {
            return Ok(self
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner));
        };
        let now = Instant::now();
        if now >= d {
            st.waits_for.remove(&me);
            return Err(StorageError::LockTimeout {
                concurrent: holder,
                waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        Ok(self
            .changed
            .wait_timeout(st, d - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0)
    }

    /// Blocks `me` until `done()` holds for `other` (it ended), the timeout passes, or
    /// waiting would deadlock. `done` is evaluated under the lock manager's mutex, and
    /// every transaction end calls [`LockManager::notify`] after changing its state, so
    /// no wake-up is lost.
    pub(crate) fn wait_for_txn(
        &self,
        me: TxnId,
        other: TxnId,
        wait: LockWait,
        done: impl Fn() -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let Some(deadline) = deadline_of(wait) else {
            return Err(StorageError::Internal(
                "wait_for_txn called in NO WAIT mode",
            ));
        };
        let mut st = self.lock();
        loop {
            if done() {
                st.waits_for.remove(&me);
                return Ok(());
            }
            if st.reaches(other, me) {
                st.waits_for.remove(&me);
                return Err(StorageError::Deadlock { txn: me, other });
            }
            st.waits_for.insert(me, vec![other]);
            st = self.wait(st, me, other, deadline, started)?;
        }
    }

    /// Takes a table lock for `me`, held until [`LockManager::release_all`].
    pub(crate) fn lock_table(
        &self,
        me: TxnId,
        table: TableId,
        table_name: &str,
        mode: TableLockMode,
        wait: LockWait,
    ) -> Result<()> {
        let started = Instant::now();
        let deadline = deadline_of(wait);
        let mut st = self.lock();
        loop {
            let lock = st.tables.entry(table).or_default();
            let blockers: Vec<TxnId> = match mode {
                TableLockMode::Shared => lock.exclusive.filter(|&t| t != me).into_iter().collect(),
                TableLockMode::Exclusive => lock
                    .shared
                    .iter()
                    .copied()
                    .chain(lock.exclusive)
                    .filter(|&t| t != me)
                    .collect(),
            };
            if blockers.is_empty() {
                match mode {
                    TableLockMode::Shared => {
                        lock.shared.insert(me);
                    }
                    TableLockMode::Exclusive => lock.exclusive = Some(me),
                }
                st.waits_for.remove(&me);
                let held = st.held.entry(me).or_default();
                if !held.contains(&table) {
                    held.push(table);
                }
                return Ok(());
            }
            let first = blockers.first().copied().unwrap_or_default();
            let Some(deadline) = deadline else {
                return Err(StorageError::ObjectInUse {
                    name: table_name.to_owned(),
                    reason: format!(
                        "transaction {first} uses the table; retry after it ends, or use WAIT"
                    ),
                });
            };
            if let Some(&b) = blockers.iter().find(|&&b| st.reaches(b, me)) {
                st.waits_for.remove(&me);
                return Err(StorageError::Deadlock { txn: me, other: b });
            }
            st.waits_for.insert(me, blockers);
            st = self.wait(st, me, first, deadline, started)?;
        }
    }

    /// Whether `me` holds an exclusive lock on `table`.
    pub(crate) fn holds_exclusive(&self, me: TxnId, table: TableId) -> bool {
        self.lock().tables.get(&table).and_then(|l| l.exclusive) == Some(me)
    }

    /// Releases every table lock of `me` and wakes waiters.
    pub(crate) fn release_all(&self, me: TxnId) {
        let mut st = self.lock();
        if let Some(tables) = st.held.remove(&me) {
            for t in tables {
                if let Some(l) = st.tables.get_mut(&t) {
                    l.shared.remove(&me);
                    if l.exclusive == Some(me) {
                        l.exclusive = None;
                    }
                    if l.shared.is_empty() && l.exclusive.is_none() {
                        st.tables.remove(&t);
                    }
                }
            }
        }
        st.waits_for.remove(&me);
        drop(st);
        self.changed.notify_all();
    }

    /// Wakes waiters after a transaction changed state.
    pub(crate) fn notify(&self) {
        let _guard = self.lock();
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn exclusive_blocks_shared_until_released() {
        let lm = LockManager::default();
        let t = TableId::from_bytes([1; 16]);
        lm.lock_table(TxnId(1), t, "t", TableLockMode::Exclusive, LockWait::NoWait)
            .unwrap();
        let err = lm
            .lock_table(TxnId(2), t, "t", TableLockMode::Shared, LockWait::NoWait)
            .unwrap_err();
        assert!(matches!(err, StorageError::ObjectInUse { .. }));
        let err = lm
            .lock_table(
                TxnId(2),
                t,
                "t",
                TableLockMode::Shared,
                LockWait::Wait {
                    timeout_ms: Some(20),
                },
            )
            .unwrap_err();
        assert!(matches!(err, StorageError::LockTimeout { .. }));
        lm.release_all(TxnId(1));
        lm.lock_table(TxnId(2), t, "t", TableLockMode::Shared, LockWait::NoWait)
            .unwrap();
    }

    #[test]
    fn a_wait_cycle_is_a_deadlock() {
        let lm = Arc::new(LockManager::default());
        let released = Arc::new(AtomicBool::new(false));
        let (lm2, r2) = (lm.clone(), released.clone());
        let waiter = std::thread::spawn(move || {
            lm2.wait_for_txn(
                TxnId(1),
                TxnId(2),
                LockWait::Wait { timeout_ms: None },
                || r2.load(Ordering::SeqCst),
            )
        });
        // Wait until txn 1's edge is registered, then make txn 2 wait for txn 1.
        while !lm.lock().waits_for.contains_key(&TxnId(1)) {
            std::thread::yield_now();
        }
        let err = lm
            .wait_for_txn(
                TxnId(2),
                TxnId(1),
                LockWait::Wait { timeout_ms: None },
                || false,
            )
            .unwrap_err();
        assert!(matches!(err, StorageError::Deadlock { .. }));
        released.store(true, Ordering::SeqCst);
        lm.notify();
        waiter.join().unwrap().unwrap();
    }
}
