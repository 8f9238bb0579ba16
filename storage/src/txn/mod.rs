//! Transactions: Firebird's model over the version chains.
//!
//! * A write creates a record version at once (statement time) and adds it to the
//!   record's chain; it becomes visible to others when the inventory says committed.
//! * A writer that finds the newest version of a record written by another
//!   transaction that is still active waits for it (WAIT) or fails (NO WAIT); one
//!   whose newest version was committed after a SNAPSHOT writer's snapshot fails with
//!   an update conflict. READ COMMITTED writers accept any committed newest version.
//! * Every statement is atomic: it runs under an implicit savepoint, and a failure
//!   undoes exactly its own versions. User savepoints work the same way.
//! * Commit writes one record (inventory + commit log) and waits for its fsync.

use crate::catalog::{
    Catalog, DefaultFn, DomainSpec, IndexDef, IndexSpec, ObjectDef, Resolve, TableDef, TableSpec,
    ViewDef, ViewSpec, build_domain, build_index, build_table, build_view, system_table_id,
};
use crate::commitlog::{ChangeKind, encode_bulk_page, encode_row_change};
use crate::engine::{Inner, SnapshotGuard, SnapshotWanted, lock};
use crate::error::{Result, StorageError};
use crate::keys::{
    delta_key, index_key, index_prefix, page_key, split_index_key, tip_key, txlog_key,
};
use crate::limits::PAGE_ROWS_MAX;
use crate::locks::{LockWait, TableLockMode};
use crate::page::PageBuilder;
use crate::scan::{Scan, ScanCursor, ScanSpec};
use crate::table::{
    PageMeta, ReadView, RowSource, TableState, TableStore, Version, check_key_len,
    encode_page_meta, encode_version, has_null, next_rowid_key,
};
use crate::tip::{TipRecord, TxnState, encode_record};
use scratchbird_types::{ColumnId, CommitNumber, DomainId, IndexId, TableId, TxnId, Value, ViewId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

mod bulk;
mod ddl;

/// Read-committed flavours, as in Firebird.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCommittedMode {
    /// Each read sees the newest committed version; uncommitted newer versions are
    /// skipped (`RECORD_VERSION`).
    RecordVersion,
    /// A read that meets a version of an active transaction waits for it (WAIT) or
    /// fails (NO WAIT) (`NO RECORD_VERSION`).
    NoRecordVersion,
    /// Each statement reads one consistent snapshot taken when it starts
    /// (`READ CONSISTENCY`); a write conflicting with a commit after that snapshot
    /// fails with an update conflict, and the statement may be restarted.
    ReadConsistency,
}

/// Isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Firebird SNAPSHOT ("concurrency"): one snapshot for the whole transaction.
    /// Write skew is possible (two transactions may each read what the other
    /// changes); lost updates are not (an update conflict is raised).
    Snapshot,
    /// READ COMMITTED in one of its modes.
    ReadCommitted(ReadCommittedMode),
}

/// A point in the past to read at (time travel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Exactly the commits with a number at or below this one.
    Commit(CommitNumber),
    /// The commits whose timestamp is at or before this time (microseconds since the
    /// Unix epoch).
    Timestamp(i64),
}

/// How to start a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOptions {
    /// Isolation level.
    pub isolation: Isolation,
    /// Refuse writes.
    pub read_only: bool,
    /// Behaviour on a conflict with an active transaction.
    pub wait: LockWait,
    /// Read a past state (implies read-only and SNAPSHOT).
    pub as_of: Option<AsOf>,
}

impl Default for TxnOptions {
    /// SNAPSHOT, read-write, WAIT without timeout (Firebird's defaults).
    fn default() -> Self {
        Self {
            isolation: Isolation::Snapshot,
            read_only: false,
            wait: LockWait::Wait { timeout_ms: None },
            as_of: None,
        }
    }
}

impl TxnOptions {
    /// SNAPSHOT isolation.
    #[must_use]
    pub fn snapshot() -> Self {
        Self::default()
    }

    /// READ COMMITTED in `mode`.
    #[must_use]
    pub fn read_committed(mode: ReadCommittedMode) -> Self {
        Self {
            isolation: Isolation::ReadCommitted(mode),
            ..Self::default()
        }
    }

    /// Makes the transaction read-only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// NO WAIT.
    #[must_use]
    pub fn no_wait(mut self) -> Self {
        self.wait = LockWait::NoWait;
        self
    }

    /// WAIT with a lock timeout.
    #[must_use]
    pub fn wait_ms(mut self, ms: u64) -> Self {
        self.wait = LockWait::Wait {
            timeout_ms: Some(ms),
        };
        self
    }

    /// Time travel.
    #[must_use]
    pub fn as_of(mut self, at: AsOf) -> Self {
        self.as_of = Some(at);
        self.read_only = true;
        self.isolation = Isolation::Snapshot;
        self
    }
}

/// The opaque key of a record: its encoded primary key, or its hidden row number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub(crate) Vec<u8>);

impl RecordKey {
    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key handed back by someone who got it from a scan (a sandboxed module).
    /// Bytes that name no record make [`Transaction::update`] and
    /// [`Transaction::delete`] find nothing; they never name another table's rows,
    /// because every lookup is within one table.
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// The start of a statement (see [`Transaction::statement_begin`]).
#[derive(Debug)]
#[must_use = "a statement must be ended with statement_end"]
pub struct StatementMark {
    undo_len: usize,
    txlog_seq: u64,
    outer: bool,
}

/// The outcome of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// The transaction.
    pub txn: TxnId,
    /// Its commit number (`None` if it wrote nothing).
    pub commit: Option<CommitNumber>,
}

#[derive(Debug)]
enum Undo {
    Version {
        table: TableId,
        key: Vec<u8>,
        seq: u64,
    },
    CreatedTable(TableId),
    /// A table's store replaced by ALTER TABLE: the one it replaced.
    Redefined(Arc<TableStore>),
    CreatedIndex {
        table: TableId,
        index: IndexId,
    },
    BulkPage {
        table: TableId,
        first: Vec<u8>,
    },
}

#[derive(Debug)]
struct Savepoint {
    name: Option<String>,
    undo_len: usize,
    txlog_seq: u64,
}

/// What a writer finds at a record.
enum RecordState {
    /// The newest version it may build on (`None`: no live record).
    Current(Option<RowSource>),
    /// An active transaction holds the record.
    Blocked(TxnId),
    /// A transaction in limbo holds the record.
    Limbo(TxnId),
    /// SNAPSHOT writer, newer committed version.
    Conflict(TxnId),
}

enum Op {
    Insert(Vec<u8>, Vec<Value>),
    Update(Vec<u8>, Vec<Value>),
    Delete,
}

enum Step<T> {
    Done(T),
    Wait(TxnId),
}

/// A transaction. Dropping an active transaction rolls it back.
#[derive(Debug)]
pub struct Transaction {
    pub(crate) inner: Arc<Inner>,
    pub(crate) id: TxnId,
    pub(crate) opts: TxnOptions,
    pub(crate) snapshot: CommitNumber,
    stmt_snapshot: Option<(CommitNumber, SnapshotGuard)>,
    active: bool,
    wrote: bool,
    /// The whole transaction is being rolled back: a sweep may remove its
    /// versions (and move the inventory floor past it) while it undoes them.
    rolling_back: bool,
    ddl: bool,
    undo: Vec<Undo>,
    savepoints: Vec<Savepoint>,
    txlog_seq: u64,
    versions: usize,
    catalog_cache: Mutex<Option<Arc<Catalog>>>,
    shared_locked: HashSet<TableId>,
    /// Where the ids of objects this transaction creates come from, when
    /// they are given ([`Transaction::set_ids`]); randomness otherwise.
    ids: Mutex<Option<GivenIds>>,
    /// What this transaction's bulk loads counted of each table's columns
    /// (by position) and how many rows: added to the table's statistics when
    /// it commits ([`crate::stats`]).
    loaded: HashMap<TableId, (Vec<crate::stats::Sketch>, u64)>,
}

/// An [`IdSource`] a transaction holds.
pub(crate) struct GivenIds(pub(crate) IdSource);

impl std::fmt::Debug for GivenIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GivenIds")
    }
}

/// Ids for the objects a schema change creates, in the order it creates them
/// (a table's id, then one per column; a domain's; an index's): a cluster's
/// schema change draws the same ids on every node, so each names its objects
/// alike.
pub type IdSource = Box<dyn FnMut() -> [u8; 16] + Send>;

impl Transaction {
    pub(crate) fn begin(inner: Arc<Inner>, opts: TxnOptions) -> Result<Self> {
        let id = TxnId(inner.next_txn.fetch_add(1, Ordering::SeqCst));
        inner.tip.set(id, TxnState::Active);
        let snapshot = match (opts.as_of, opts.isolation) {
            (Some(AsOf::Commit(cn)), _) => {
                let visible = inner.visible();
                if cn > visible {
                    inner.tip.set(id, TxnState::Committed(CommitNumber(0)));
                    return Err(StorageError::OutsideRetention {
                        requested: format!("commit {cn}"),
                        oldest: CommitNumber(inner.gc_floor.load(Ordering::SeqCst)),
                        newest: visible,
                    });
                }
                Some(cn)
            }
            (Some(AsOf::Timestamp(ts)), _) => {
                match inner.commit_at_or_before(ts).inspect_err(|_| {
                    inner.tip.set(id, TxnState::Committed(CommitNumber(0)));
                })? {
                    Some(cn) => Some(cn),
                    None => {
                        inner.tip.set(id, TxnState::Committed(CommitNumber(0)));
                        return Err(StorageError::OutsideRetention {
                            requested: format!("timestamp {ts}"),
                            oldest: CommitNumber(inner.gc_floor.load(Ordering::SeqCst)),
                            newest: inner.visible(),
                        });
                    }
                }
            }
            (None, Isolation::Snapshot) => None,
            (None, Isolation::ReadCommitted(_)) => None,
        };
        let want = match (snapshot, opts.isolation) {
            (Some(cn), _) => SnapshotWanted::At(cn),
            (None, Isolation::Snapshot) => SnapshotWanted::Current,
            (None, Isolation::ReadCommitted(_)) => SnapshotWanted::None,
        };
        let snapshot = match inner.register_txn(id, want) {
            Ok(cn) => cn,
            Err(e) => {
                inner.tip.set(id, TxnState::Committed(CommitNumber(0)));
                return Err(e);
            }
        };
        Ok(Self {
            inner,
            id,
            opts,
            snapshot,
            stmt_snapshot: None,
            active: true,
            wrote: false,
            rolling_back: false,
            ddl: false,
            undo: Vec::new(),
            savepoints: Vec::new(),
            txlog_seq: 0,
            versions: 0,
            catalog_cache: Mutex::new(None),
            shared_locked: HashSet::new(),
            ids: Mutex::new(None),
            loaded: HashMap::new(),
        })
    }

    /// The transaction number.
    #[must_use]
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// The options it was started with.
    #[must_use]
    pub fn options(&self) -> TxnOptions {
        self.opts
    }

    /// The snapshot (commit number) reads see now.
    #[must_use]
    pub fn snapshot(&self) -> CommitNumber {
        match (&self.opts.isolation, &self.stmt_snapshot) {
            (Isolation::Snapshot, _) => self.snapshot,
            (_, Some((cn, _))) => *cn,
            _ => self.inner.visible(),
        }
    }

    fn check_active(&self) -> Result<()> {
        if self.active {
            Ok(())
        } else {
            Err(StorageError::TransactionEnded(self.id))
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_active()?;
        if self.opts.read_only {
            return Err(StorageError::ReadOnly);
        }
        self.inner.check_writable()
    }

    /// The view for one read, and the guard holding its snapshot if it is a fresh one.
    pub(crate) fn read_view(&self) -> (ReadView, Option<SnapshotGuard>) {
        match (&self.opts.isolation, &self.stmt_snapshot) {
            (Isolation::Snapshot, _) => (
                ReadView {
                    me: self.id,
                    snapshot: self.snapshot,
                },
                None,
            ),
            (_, Some((cn, _))) => (
                ReadView {
                    me: self.id,
                    snapshot: *cn,
                },
                None,
            ),
            _ => {
                let (cn, guard) = self.inner.current_snapshot();
                (
                    ReadView {
                        me: self.id,
                        snapshot: cn,
                    },
                    Some(guard),
                )
            }
        }
    }

    /// The catalog as this transaction sees it now.
    ///
    /// # Errors
    /// A catalog row failed its checks.
    pub fn catalog(&self) -> Result<Arc<Catalog>> {
        self.check_active()?;
        let cache_ok =
            matches!(self.opts.isolation, Isolation::Snapshot) || self.stmt_snapshot.is_some();
        if cache_ok && let Some(c) = lock(&self.catalog_cache).as_ref() {
            return Ok(c.clone());
        }
        let (view, _guard) = self.read_view();
        let cat = self.inner.catalog_for(view, self.ddl)?;
        if cache_ok {
            *lock(&self.catalog_cache) = Some(cat.clone());
        }
        Ok(cat)
    }

    fn forget_catalog(&mut self) {
        *lock(&self.catalog_cache) = None;
    }

    /// Resolves a table name.
    ///
    /// # Errors
    /// [`StorageError::NotFound`].
    pub fn table_id(&self, name: &str) -> Result<TableId> {
        Ok(self.catalog()?.resolve_table(name)?.id)
    }

    pub(crate) fn table_for(&self, table: TableId) -> Result<(Arc<TableDef>, Arc<TableStore>)> {
        let cat = self.catalog()?;
        let def = cat
            .table(table)
            .cloned()
            .ok_or_else(|| StorageError::NotFound {
                kind: "table",
                name: table.to_string(),
            })?;
        let store = self.inner.table(table).ok_or(StorageError::Internal(
            "a table of the catalog has no store",
        ))?;
        Ok((def, store))
    }

    fn table_for_write(&mut self, table: TableId) -> Result<(Arc<TableDef>, Arc<TableStore>)> {
        self.check_writable()?;
        if table == system_table_id() {
            return Err(StorageError::InvalidDefinition {
                object: format!("table {}", crate::catalog::SYSTEM_TABLE_NAME),
                reason: "the system catalog is changed by DDL only",
            });
        }
        let (def, _) = self.table_for(table)?;
        self.lock_table(&def, TableLockMode::Shared)?;
        // the store as of the lock: an ALTER TABLE that held it may have
        // replaced (and, undone, restored) the one seen before
        let store = self.inner.table(table).ok_or(StorageError::Internal(
            "a table of the catalog has no store",
        ))?;
        Ok((def, store))
    }

    fn lock_table(&mut self, def: &TableDef, mode: TableLockMode) -> Result<()> {
        if mode == TableLockMode::Shared && self.shared_locked.contains(&def.id) {
            return Ok(());
        }
        if mode == TableLockMode::Exclusive && self.inner.locks.holds_exclusive(self.id, def.id) {
            return Ok(());
        }
        self.inner
            .locks
            .lock_table(self.id, def.id, &def.name, mode, self.opts.wait)?;
        // The table may have been dropped or altered by a transaction that
        // committed after this one's snapshot: writing into it would write
        // into nothing, or rows of another shape.
        let latest = self.latest_catalog()?;
        match latest.table(def.id) {
            None if latest.table_by_name(&def.name).is_some() => {
                return Err(StorageError::TableAltered {
                    table: def.name.clone(),
                });
            }
            None => {
                return Err(StorageError::TableDropped {
                    table: def.name.clone(),
                });
            }
            Some(now) if **now != *def => {
                return Err(StorageError::TableAltered {
                    table: def.name.clone(),
                });
            }
            Some(_) => {}
        }
        // only now: a retry in this transaction checks again
        self.shared_locked.insert(def.id);
        Ok(())
    }

    /// The catalog as committed now (plus this transaction's own changes),
    /// whatever this transaction's snapshot: what a lock holder must check
    /// after it waited, since others may have committed meanwhile.
    fn latest_catalog(&self) -> Result<Arc<Catalog>> {
        self.inner.catalog_for(
            ReadView {
                me: self.id,
                snapshot: self.inner.visible(),
            },
            self.ddl,
        )
    }

    /// Locks a view against DROP VIEW (shared) or against new views naming it
    /// (exclusive). Views are locked by their id in the table lock space: ids
    /// are random UUIDs, so a view's never equals a table's.
    fn lock_view(&mut self, def: &ViewDef, mode: TableLockMode) -> Result<()> {
        let id = TableId::from_bytes(*def.id.as_bytes());
        if mode == TableLockMode::Shared && self.shared_locked.contains(&id) {
            return Ok(());
        }
        if mode == TableLockMode::Exclusive && self.inner.locks.holds_exclusive(self.id, id) {
            return Ok(());
        }
        self.inner
            .locks
            .lock_table(self.id, id, &def.name, mode, self.opts.wait)?;
        self.shared_locked.insert(id);
        if self.latest_catalog()?.view_by_name(&def.name).map(|v| v.id) != Some(def.id) {
            return Err(StorageError::TableDropped {
                table: def.name.clone(),
            });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- statements

    /// Runs `f` as one statement: if it fails, exactly its own changes are undone.
    /// In READ COMMITTED READ CONSISTENCY mode the statement reads one snapshot.
    ///
    /// # Errors
    /// The error of `f`, or of undoing it.
    pub fn statement<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let mark = self.statement_begin()?;
        let result = f(self);
        let failed = result.is_err();
        self.statement_end(mark, failed)?;
        result
    }

    /// Starts a statement whose work happens outside a closure (the sandbox holds
    /// the transaction while it runs); end it with [`Transaction::statement_end`].
    ///
    /// # Errors
    /// The transaction has ended.
    pub fn statement_begin(&mut self) -> Result<StatementMark> {
        self.check_active()?;
        let outer = self.stmt_snapshot.is_none()
            && self.opts.isolation == Isolation::ReadCommitted(ReadCommittedMode::ReadConsistency);
        if outer {
            let (cn, guard) = self.inner.current_snapshot();
            self.stmt_snapshot = Some((cn, guard));
            self.forget_catalog();
        }
        Ok(StatementMark {
            undo_len: self.undo.len(),
            txlog_seq: self.txlog_seq,
            outer,
        })
    }

    /// Ends a statement: with `failed`, exactly its own changes are undone.
    ///
    /// # Errors
    /// Undo failed.
    pub fn statement_end(&mut self, mark: StatementMark, failed: bool) -> Result<()> {
        if mark.outer {
            self.stmt_snapshot = None;
            self.forget_catalog();
        }
        if failed {
            self.undo_to(mark.undo_len, mark.txlog_seq)?;
        }
        Ok(())
    }

    /// Sets a savepoint (a savepoint of the same name is replaced).
    ///
    /// # Errors
    /// The transaction has ended.
    pub fn savepoint(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        self.savepoints.retain(|s| s.name.as_deref() != Some(name));
        self.savepoints.push(Savepoint {
            name: Some(name.to_owned()),
            undo_len: self.undo.len(),
            txlog_seq: self.txlog_seq,
        });
        Ok(())
    }

    /// Undoes everything done since the savepoint; the savepoint stays, later ones go.
    ///
    /// # Errors
    /// No such savepoint, or undo failed.
    pub fn rollback_to_savepoint(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        let pos = self
            .savepoints
            .iter()
            .rposition(|s| s.name.as_deref() == Some(name))
            .ok_or_else(|| StorageError::NoSuchSavepoint(name.to_owned()))?;
        let (undo_len, txlog_seq) = self
            .savepoints
            .get(pos)
            .map_or((0, 0), |s| (s.undo_len, s.txlog_seq));
        self.savepoints.truncate(pos + 1);
        self.undo_to(undo_len, txlog_seq)
    }

    /// Forgets a savepoint and the ones after it (their changes stay).
    ///
    /// # Errors
    /// No such savepoint.
    pub fn release_savepoint(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        let pos = self
            .savepoints
            .iter()
            .rposition(|s| s.name.as_deref() == Some(name))
            .ok_or_else(|| StorageError::NoSuchSavepoint(name.to_owned()))?;
        self.savepoints.truncate(pos);
        Ok(())
    }

    fn undo_to(&mut self, undo_len: usize, txlog_seq: u64) -> Result<()> {
        while self.undo.len() > undo_len {
            if let Some(u) = self.undo.pop() {
                self.undo_one(u)?;
            }
        }
        if self.txlog_seq > txlog_seq {
            let mut b = self.inner.db.batch();
            for seq in txlog_seq..self.txlog_seq {
                b.remove(&self.inner.ks.txlog, txlog_key(self.id, seq));
            }
            self.inner.write_batch(b)?;
            // Entry numbers are not reused: the commit record counts up to the
            // highest one, and readers skip the missing ones.
        }
        Ok(())
    }

    fn undo_one(&mut self, u: Undo) -> Result<()> {
        let inner = self.inner.clone();
        match u {
            Undo::Version { table, key, seq } => {
                let store = inner
                    .table(table)
                    .ok_or(StorageError::Internal("undo of an unknown table"))?;
                let mut st = store.write();
                // A rollback marks the transaction rolled back before undoing, so a
                // sweep may have pruned the version (and its index entries)
                // already, and then moved the inventory floor past the
                // transaction (below the floor every transaction reads as
                // committed: its state is no guide here). Inside an active
                // transaction nothing prunes it.
                let pruned = self.rolling_back;
                let Some(pos) = st
                    .delta
                    .get(&key)
                    .and_then(|c| c.iter().position(|v| v.seq == seq))
                else {
                    return if pruned {
                        Ok(())
                    } else {
                        Err(StorageError::Internal("undo of a version that is gone"))
                    };
                };
                let Some(chain) = st.delta.get_mut(&key) else {
                    return Err(StorageError::Internal("undo of a version that is gone"));
                };
                let removed = chain.remove(pos);
                if chain.is_empty() {
                    st.delta.remove(&key);
                }
                let mut b = inner.db.batch();
                b.remove(&inner.ks.delta, delta_key(table, &key, seq));
                if let Some(row) = &removed.row {
                    let values = store.layout.decode(row)?.values()?;
                    inner.remove_uncarried_index_entries(&store, &st, &key, &[values], &mut b)?;
                }
                inner.write_batch(b)?;
                let bytes = removed.mem_bytes();
                st.delta_bytes = st.delta_bytes.saturating_sub(bytes);
                inner.delta_bytes.fetch_sub(
                    bytes.min(inner.delta_bytes.load(Ordering::SeqCst)),
                    Ordering::SeqCst,
                );
                self.versions = self.versions.saturating_sub(1);
            }
            Undo::CreatedTable(id) => {
                inner
                    .tables
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            }
            Undo::Redefined(store) => {
                inner
                    .tables
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(store.def.id, store);
            }
            Undo::CreatedIndex { table, index } => {
                if let Some(store) = inner.table(table) {
                    store
                        .indexes
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .retain(|i| i.id != index);
                }
                inner.remove_index_entries(index)?;
            }
            Undo::BulkPage { table, first } => {
                let store = inner
                    .table(table)
                    .ok_or(StorageError::Internal("undo of an unknown table"))?;
                let mut st = store.write();
                // A sweep may have removed the page already: the transaction was
                // marked rolled back before its undo ran.
                let Some(generation) = st.pages.get(&first).map(|m| m.generation) else {
                    return Ok(());
                };
                let mut b = inner.db.batch();
                inner.remove_page(&store, &first, generation, &mut b)?;
                inner.write_batch(b)?;
                st.pages.remove(&first);
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- reads

    /// The row with primary key `pk`, as this transaction sees it.
    ///
    /// # Errors
    /// Unknown table, wrong key, a stored value failed its checks, or (READ
    /// COMMITTED NO RECORD_VERSION) a conflict with an active writer.
    pub fn get(&self, table: TableId, pk: &[Value]) -> Result<Option<Vec<Value>>> {
        let (_, store) = self.table_for(table)?;
        let key = store.encode_pk(pk)?;
        self.get_key(&store, &key)
    }

    /// The row with record key `key`.
    ///
    /// # Errors
    /// As [`Transaction::get`].
    pub fn get_by_key(&self, table: TableId, key: &RecordKey) -> Result<Option<Vec<Value>>> {
        let (_, store) = self.table_for(table)?;
        self.get_key(&store, &key.0)
    }

    fn get_key(&self, store: &TableStore, key: &[u8]) -> Result<Option<Vec<Value>>> {
        loop {
            let (view, _guard) = self.read_view();
            let step = {
                let st = store.read();
                match self.read_blocker(&st, key) {
                    Some(t) => Step::Wait(t),
                    None => Step::Done(
                        match store.visible_row(
                            &st,
                            &self.inner.pages(),
                            &self.inner.tip,
                            view,
                            key,
                        )? {
                            None => None,
                            Some(row) => Some(store.row_values(&row)?),
                        },
                    ),
                }
            };
            match step {
                Step::Done(r) => return Ok(r),
                Step::Wait(t) => self.wait_for(t, &store.def.name)?,
            }
        }
    }

    /// In NO RECORD_VERSION mode, the active transaction whose version a read must
    /// wait for.
    pub(crate) fn read_blocker(&self, st: &TableState, key: &[u8]) -> Option<TxnId> {
        if self.opts.isolation != Isolation::ReadCommitted(ReadCommittedMode::NoRecordVersion) {
            return None;
        }
        let chain = st.delta.get(key)?;
        for v in chain.iter().rev() {
            if v.txn == self.id {
                return None;
            }
            match self.inner.tip.state(v.txn) {
                TxnState::RolledBack => {}
                TxnState::Active | TxnState::Limbo => return Some(v.txn),
                TxnState::Committed(_) => return None,
            }
        }
        None
    }

    /// The rows whose index key equals `values` (one value per index column).
    ///
    /// # Errors
    /// Unknown index, wrong arity or type.
    pub fn lookup(&self, index: IndexId, values: &[Value]) -> Result<Vec<(RecordKey, Vec<Value>)>> {
        let cat = self.catalog()?;
        let idx = cat
            .index(index)
            .cloned()
            .ok_or_else(|| StorageError::NotFound {
                kind: "index",
                name: index.to_string(),
            })?;
        let (_, store) = self.table_for(idx.table)?;
        let mut probe = vec![Value::Null; store.types.len()];
        if values.len() != idx.columns.len() {
            return Err(StorageError::InvalidDefinition {
                object: format!("lookup in index {}", idx.name),
                reason: "give one value per index column",
            });
        }
        for (&c, v) in idx.columns.iter().zip(values) {
            if let Some(slot) = probe.get_mut(c) {
                *slot = v.clone();
            }
        }
        let ikey = store.index_key_of(&idx, &probe)?;
        let (view, _guard) = self.read_view();
        let st = store.read();
        let mut out = Vec::new();
        for kv in self.inner.ks.index.prefix(index_prefix(idx.id, &ikey)) {
            let k = kv.key()?;
            let (ek, rk) = split_index_key(&k)?;
            if ek != ikey.as_slice() {
                continue;
            }
            if let Some(row) =
                store.visible_row(&st, &self.inner.pages(), &self.inner.tip, view, rk)?
            {
                let vals = store.row_values(&row)?;
                if store.index_key_of(&idx, &vals)? == ikey {
                    out.push((RecordKey(rk.to_vec()), vals));
                }
            }
        }
        Ok(out)
    }

    /// Starts a scan.
    ///
    /// # Errors
    /// Unknown table, index or column.
    pub fn scan(&self, spec: ScanSpec) -> Result<Scan<'_>> {
        Ok(Scan::new(self, self.open_cursor(spec)?))
    }

    /// Starts a scan whose state does not borrow the transaction; advance it with
    /// [`Transaction::next_batch`].
    ///
    /// # Errors
    /// Unknown table, index or column.
    pub fn open_cursor(&self, spec: ScanSpec) -> Result<ScanCursor> {
        self.check_active()?;
        let (def, store) = self.table_for(spec.table)?;
        let index = match &spec.range {
            crate::scan::ScanRange::Index { index, .. }
            | crate::scan::ScanRange::Points {
                index: Some(index), ..
            } => {
                let cat = self.catalog()?;
                let idx = cat
                    .index(*index)
                    .cloned()
                    .ok_or_else(|| StorageError::NotFound {
                        kind: "index",
                        name: index.to_string(),
                    })?;
                if idx.table != def.id {
                    return Err(StorageError::InvalidDefinition {
                        object: format!("scan of {} by index {}", def.name, idx.name),
                        reason: "the index belongs to another table",
                    });
                }
                Some(idx)
            }
            _ => None,
        };
        let (view, guard) = self.read_view();
        ScanCursor::new(store, spec, index, view, guard)
    }

    /// Fills `buf` with the next batch of `cursor` (see [`Scan::next_batch`]). With
    /// `keys`, also returns each row's record key.
    ///
    /// # Errors
    /// As [`Scan::next_batch`]; and a cursor opened by another transaction.
    pub fn next_batch(
        &self,
        cursor: &mut ScanCursor,
        layout: &scratchbird_types::batch::BatchLayout,
        buf: &mut [u8],
        keys: Option<&mut Vec<RecordKey>>,
    ) -> Result<usize> {
        self.advance(cursor, layout, buf, keys, None)
    }

    /// As [`Transaction::next_batch`], returning only the rows `sel` accepts: each
    /// candidate row's selector columns are decided first, and only accepted rows
    /// are copied into `buf`, which is filled with them up to its capacity. Counts
    /// of the rows decided and rejected: [`ScanCursor::selected`]. Every fill of
    /// one cursor must be given the same selector: the verdicts on a page run are
    /// kept across fills.
    ///
    /// # Errors
    /// As [`Transaction::next_batch`]; [`StorageError::Selection`] when `sel`
    /// fails.
    pub fn next_batch_where(
        &self,
        cursor: &mut ScanCursor,
        layout: &scratchbird_types::batch::BatchLayout,
        buf: &mut [u8],
        keys: Option<&mut Vec<RecordKey>>,
        sel: &mut dyn crate::scan::RowSelect,
    ) -> Result<usize> {
        self.advance(cursor, layout, buf, keys, Some(sel))
    }

    fn advance(
        &self,
        cursor: &mut ScanCursor,
        layout: &scratchbird_types::batch::BatchLayout,
        buf: &mut [u8],
        mut keys: Option<&mut Vec<RecordKey>>,
        sel: Option<&mut (dyn crate::scan::RowSelect + '_)>,
    ) -> Result<usize> {
        if cursor.transaction() != self.id {
            return Err(StorageError::Internal(
                "a scan cursor was advanced by a transaction that did not open it",
            ));
        }
        self.check_active()?;
        if let Some(k) = keys.as_deref_mut() {
            k.clear();
        }
        cursor.fill(self, layout, buf, keys, sel)
    }

    pub(crate) fn wait_for(&self, other: TxnId, table: &str) -> Result<()> {
        if self.inner.tip.state(other) == TxnState::Limbo {
            return Err(StorageError::LockConflict {
                table: table.to_owned(),
                concurrent: other,
            });
        }
        match self.opts.wait {
            LockWait::NoWait => Err(StorageError::LockConflict {
                table: table.to_owned(),
                concurrent: other,
            }),
            wait => {
                let inner = &self.inner;
                // A holder whose commit failed stays active in memory for good: the
                // store is poisoned then, and waiting ends with that error.
                inner.locks.wait_for_txn(self.id, other, wait, || {
                    !matches!(inner.tip.state(other), TxnState::Active)
                        || inner.poisoned.load(Ordering::SeqCst)
                })?;
                inner.check_writable()
            }
        }
    }

    // ---------------------------------------------------------------- writes

    /// Inserts a row (one value per column, in column order).
    ///
    /// # Errors
    /// NOT NULL, type, primary key or unique violations; conflicts; limits.
    pub fn insert(&mut self, table: TableId, values: Vec<Value>) -> Result<RecordKey> {
        self.statement(|t| t.insert_row(table, values))
    }

    /// Inserts a row giving only some columns; the others take their default (or NULL).
    ///
    /// # Errors
    /// As [`Transaction::insert`], and unknown columns.
    pub fn insert_columns(
        &mut self,
        table: TableId,
        columns: &[usize],
        values: Vec<Value>,
    ) -> Result<RecordKey> {
        self.statement(|t| {
            let (def, _) = t.table_for(table)?;
            if columns.len() != values.len() {
                return Err(StorageError::InvalidDefinition {
                    object: format!("insert into {}", def.name),
                    reason: "give one value per named column",
                });
            }
            let mut row: Vec<Option<Value>> = vec![None; def.columns.len()];
            for (&c, v) in columns.iter().zip(values) {
                let slot = row.get_mut(c).ok_or_else(|| StorageError::NotFound {
                    kind: "column",
                    name: format!("{}.#{c}", def.name),
                })?;
                *slot = Some(v);
            }
            let mut full = Vec::with_capacity(row.len());
            for (i, (v, c)) in row.into_iter().zip(&def.columns).enumerate() {
                full.push(match v {
                    Some(v) => v,
                    None if c.default_fn.is_some_and(DefaultFn::is_identity) => {
                        t.inner.draw_identity(&def, i)?
                    }
                    None => c.default.clone().unwrap_or(Value::Null),
                });
            }
            t.insert_row(table, full)
        })
    }

    /// The next value of column `column` (its position) of `table`, a SERIAL
    /// or identity column, for a row this transaction inserts without one.
    /// The value is never given again, whether or not the transaction
    /// commits (see `docs/storage-format.md`, identity counters).
    ///
    /// # Errors
    /// An unknown table or column, a column that is not SERIAL or identity,
    /// [`StorageError::IdentityExhausted`], and a failed durable write.
    pub fn next_identity(&mut self, table: TableId, column: usize) -> Result<Value> {
        self.check_writable()?;
        let (def, _) = self.table_for(table)?;
        if !def
            .columns
            .get(column)
            .and_then(|c| c.default_fn)
            .is_some_and(DefaultFn::is_identity)
        {
            return Err(StorageError::InvalidDefinition {
                object: format!("column {}.#{column}", def.name),
                reason: "only a SERIAL or identity column draws values",
            });
        }
        self.inner.draw_identity(&def, column)
    }

    /// Refuses a row this shard does not hold, when it is one of several
    /// (system tables are each node's own).
    fn check_placed(&self, def: &TableDef, values: &[Value]) -> Result<()> {
        let packed = self.inner.placement.load(Ordering::Acquire);
        let (this, shards) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if shards <= 1 || def.is_system() {
            return Ok(());
        }
        let d = def.placement();
        let col = d.column();
        let (Some(c), Some(v)) = (def.columns.get(col), values.get(col)) else {
            return Ok(());
        };
        let belongs = scratchbird_types::placement::shard_of(&d, &c.ty, v, shards)?;
        if belongs == this {
            return Ok(());
        }
        Err(StorageError::WrongShard {
            table: def.name.clone(),
            column: c.name.clone(),
            value: v.to_string(),
            belongs,
            this,
        })
    }

    fn insert_row(&mut self, table: TableId, values: Vec<Value>) -> Result<RecordKey> {
        let (def, store) = self.table_for_write(table)?;
        let row = encode_checked(&def, &store, &values)?;
        self.check_placed(&def, &values)?;
        let key = if def.is_keyless() {
            next_rowid_key(&store)
        } else {
            store.key_of_values(&values)?
        };
        self.write_record(&store, &key, Op::Insert(row, values))?;
        Ok(RecordKey(key))
    }

    /// Replaces the row with key `key` by `values` (all columns). A change of the
    /// primary key moves the record: the old key is deleted and the new inserted.
    /// Returns whether the record existed.
    ///
    /// # Errors
    /// As [`Transaction::insert`].
    pub fn update(&mut self, table: TableId, key: &RecordKey, values: Vec<Value>) -> Result<bool> {
        self.statement(|t| {
            let (def, store) = t.table_for_write(table)?;
            let row = encode_checked(&def, &store, &values)?;
            t.check_placed(&def, &values)?;
            let new_key = if def.is_keyless() {
                key.0.clone()
            } else {
                store.key_of_values(&values)?
            };
            if new_key == key.0 {
                t.write_record(&store, &key.0, Op::Update(row, values))
            } else {
                if !t.write_record(&store, &key.0, Op::Delete)? {
                    return Ok(false);
                }
                t.write_record(&store, &new_key, Op::Insert(row, values))?;
                Ok(true)
            }
        })
    }

    /// Deletes the record with key `key`. Returns whether it existed.
    ///
    /// # Errors
    /// Conflicts.
    pub fn delete(&mut self, table: TableId, key: &RecordKey) -> Result<bool> {
        self.statement(|t| {
            let (_, store) = t.table_for_write(table)?;
            t.write_record(&store, &key.0, Op::Delete)
        })
    }

    /// The record key of a primary key.
    ///
    /// # Errors
    /// Unknown table or wrong key.
    pub fn key_of(&self, table: TableId, pk: &[Value]) -> Result<RecordKey> {
        let (_, store) = self.table_for(table)?;
        Ok(RecordKey(store.encode_pk(pk)?))
    }

    /// Whether writes of this transaction check for commits after a snapshot.
    fn conflict_snapshot(&self) -> Option<CommitNumber> {
        match (&self.opts.isolation, &self.stmt_snapshot) {
            (Isolation::Snapshot, _) => Some(self.snapshot),
            (Isolation::ReadCommitted(ReadCommittedMode::ReadConsistency), Some((cn, _))) => {
                Some(*cn)
            }
            _ => None,
        }
    }

    fn record_state(&self, store: &TableStore, st: &TableState, key: &[u8]) -> Result<RecordState> {
        let tip = &self.inner.tip;
        let judge = |txn: TxnId| -> Option<RecordState> {
            if txn == self.id {
                return None;
            }
            match tip.state(txn) {
                TxnState::Active => Some(RecordState::Blocked(txn)),
                TxnState::Limbo => Some(RecordState::Limbo(txn)),
                TxnState::Committed(cn) => match self.conflict_snapshot() {
                    Some(s) if cn > s => Some(RecordState::Conflict(txn)),
                    _ => None,
                },
                TxnState::RolledBack => None,
            }
        };
        if let Some(chain) = st.delta.get(key) {
            for v in chain.iter().rev() {
                if v.txn != self.id && tip.state(v.txn) == TxnState::RolledBack {
                    continue;
                }
                if let Some(s) = judge(v.txn) {
                    return Ok(s);
                }
                return Ok(RecordState::Current(v.row.clone().map(RowSource::Delta)));
            }
        }
        match store.base_row(st, &self.inner.pages(), key)? {
            None => Ok(RecordState::Current(None)),
            Some((creator, row)) => {
                if creator != self.id && tip.state(creator) == TxnState::RolledBack {
                    return Ok(RecordState::Current(None));
                }
                if let Some(s) = judge(creator) {
                    return Ok(s);
                }
                Ok(RecordState::Current(Some(row)))
            }
        }
    }

    fn write_record(&mut self, store: &Arc<TableStore>, key: &[u8], op: Op) -> Result<bool> {
        check_key_len(key)?;
        if self.versions >= self.inner.config.transaction_versions_max {
            return Err(StorageError::LimitExceeded {
                limit: "transaction_versions_max",
                max: self.inner.config.transaction_versions_max as u64,
                needed: self.versions as u64 + 1,
            });
        }
        let total = self.inner.delta_bytes.load(Ordering::SeqCst);
        if total >= self.inner.config.fold_trigger_bytes {
            self.inner.request_sweep();
        }
        if total >= self.inner.config.delta_max_bytes {
            return Err(StorageError::LimitExceeded {
                limit: "delta_max_bytes (unfolded row versions; a long-running transaction may be holding back garbage collection)",
                max: self.inner.config.delta_max_bytes as u64,
                needed: total as u64,
            });
        }
        let enforced = self.enforced_unique(store)?;
        loop {
            let step = {
                let mut st = store.write();
                self.try_write(store, &mut st, key, &op, &enforced)?
            };
            match step {
                Step::Done(r) => return Ok(r),
                Step::Wait(t) => self.wait_for(t, &store.def.name)?,
            }
        }
    }

    /// The unique indexes of `store` a write must respect: those in the newest
    /// committed catalog or this transaction's own (an index dropped and committed
    /// is still maintained for older snapshots, but no longer enforced; one this
    /// transaction dropped is enforced until the drop commits). The system
    /// catalog's own index is always enforced.
    fn enforced_unique(&self, store: &TableStore) -> Result<Vec<IndexId>> {
        let unique: Vec<Arc<IndexDef>> = store
            .index_defs()
            .into_iter()
            .filter(|i| i.unique)
            .collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        if store.def.id == system_table_id() {
            return Ok(unique.iter().map(|i| i.id).collect());
        }
        // Newest committed (as nobody in particular sees it), and this transaction's.
        let committed = self.inner.catalog_for(
            ReadView {
                me: TxnId(0),
                snapshot: self.inner.visible(),
            },
            false,
        )?;
        let own = self.catalog()?;
        Ok(unique
            .iter()
            .filter(|i| committed.index(i.id).is_some() || own.index(i.id).is_some())
            .map(|i| i.id)
            .collect())
    }

    fn try_write(
        &mut self,
        store: &Arc<TableStore>,
        st: &mut TableState,
        key: &[u8],
        op: &Op,
        enforced: &[IndexId],
    ) -> Result<Step<bool>> {
        let current = match self.record_state(store, st, key)? {
            RecordState::Blocked(t) => return Ok(Step::Wait(t)),
            RecordState::Limbo(t) => {
                return Err(StorageError::LockConflict {
                    table: store.def.name.clone(),
                    concurrent: t,
                });
            }
            RecordState::Conflict(t) => {
                return Err(StorageError::UpdateConflict {
                    table: store.def.name.clone(),
                    concurrent: t,
                });
            }
            RecordState::Current(c) => c,
        };
        let (kind, new_row, new_values) = match (op, &current) {
            (Op::Insert(..), Some(_)) => {
                let key_text = describe_key(store, key);
                return Err(StorageError::PrimaryKeyViolation {
                    table: store.def.name.clone(),
                    key: key_text,
                });
            }
            (Op::Update(..) | Op::Delete, None) => return Ok(Step::Done(false)),
            (Op::Insert(row, values), None) => {
                (ChangeKind::Insert, Some(row.as_slice()), Some(values))
            }
            (Op::Update(row, values), Some(_)) => {
                (ChangeKind::Update, Some(row.as_slice()), Some(values))
            }
            (Op::Delete, Some(_)) => (ChangeKind::Delete, None, None),
        };
        let indexes = store.index_defs();
        if let Some(values) = new_values {
            let current_values = match &current {
                Some(c) => Some(store.row_values(c)?),
                None => None,
            };
            for idx in indexes.iter().filter(|i| enforced.contains(&i.id)) {
                if has_null(idx, values) {
                    continue;
                }
                let ikey = store.index_key_of(idx, values)?;
                if let Some(cv) = &current_values
                    && store.index_key_of(idx, cv)? == ikey
                {
                    continue;
                }
                if let Some(t) = self.unique_conflict(store, st, key, idx, &ikey, values)? {
                    return Ok(Step::Wait(t));
                }
            }
        }
        // Apply: one journal batch holds the version, its index entries and its
        // commit log entry.
        let inner = self.inner.clone();
        let seq = inner.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut b = inner.db.batch();
        if !self.wrote {
            let rec = TipRecord {
                state: TxnState::Active,
                commit_ts: 0,
            };
            b.insert(&inner.ks.tip, tip_key(self.id), encode_record(self.id, rec));
        }
        let dk = delta_key(store.def.id, key, seq);
        let version_value = encode_version(&dk, self.id, new_row);
        b.insert(&inner.ks.delta, dk, version_value);
        if let Some(values) = new_values {
            for idx in &indexes {
                let ik = store.index_key_of(idx, values)?;
                b.insert(
                    &inner.ks.index,
                    index_key(idx.id, &ik, key)?,
                    Vec::<u8>::new(),
                );
            }
        }
        b.insert(
            &inner.ks.txlog,
            txlog_key(self.id, self.txlog_seq),
            encode_row_change(self.id, self.txlog_seq, kind, store.def.id, key, new_row)?,
        );
        inner.write_batch(b)?;
        self.wrote = true;
        self.txlog_seq += 1;
        let version = Version {
            seq,
            txn: self.id,
            row: new_row.map(Arc::from),
        };
        let bytes = version.mem_bytes();
        st.delta.entry(key.to_vec()).or_default().push(version);
        st.delta_bytes += bytes;
        inner.delta_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.undo.push(Undo::Version {
            table: store.def.id,
            key: key.to_vec(),
            seq,
        });
        self.versions += 1;
        Ok(Step::Done(true))
    }

    /// Whether another record holds unique key `ikey`: `Err` for a committed (or own)
    /// holder, `Ok(Some(t))` when the answer depends on active transaction `t`.
    fn unique_conflict(
        &self,
        store: &TableStore,
        st: &TableState,
        key: &[u8],
        idx: &IndexDef,
        ikey: &[u8],
        values: &[Value],
    ) -> Result<Option<TxnId>> {
        let tip = &self.inner.tip;
        let violation = || StorageError::UniqueViolation {
            index: idx.name.clone(),
            table: store.def.name.clone(),
            key: idx
                .columns
                .iter()
                .map(|&c| {
                    values
                        .get(c)
                        .map_or_else(String::new, |v| v.to_display_truncated(40))
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        for kv in self.inner.ks.index.prefix(index_prefix(idx.id, ikey)) {
            let k = kv.key()?;
            let (ek, rk) = split_index_key(&k)?;
            if ek != ikey || rk == key {
                continue;
            }
            // The versions of record `rk`, newest first, ending with its base row.
            let mut versions: Vec<(TxnId, Option<RowSource>)> = st
                .delta
                .get(rk)
                .map(|c| {
                    c.iter()
                        .rev()
                        .map(|v| (v.txn, v.row.clone().map(RowSource::Delta)))
                        .collect()
                })
                .unwrap_or_default();
            if let Some((creator, row)) = store.base_row(st, &self.inner.pages(), rk)? {
                versions.push((creator, Some(row)));
            }
            let carries = |row: &Option<RowSource>| -> Result<bool> {
                match row {
                    None => Ok(false),
                    Some(r) => Ok(store.index_key_of(idx, &store.row_values(r)?)? == ikey),
                }
            };
            let live: Vec<&(TxnId, Option<RowSource>)> = versions
                .iter()
                .filter(|(t, _)| *t == self.id || tip.state(*t) != TxnState::RolledBack)
                .collect();
            let Some((t, row)) = live.first().copied() else {
                continue;
            };
            if *t == self.id {
                if carries(row)? {
                    return Err(violation());
                }
                continue;
            }
            match tip.state(*t) {
                TxnState::Committed(_) => {
                    if carries(row)? {
                        return Err(violation());
                    }
                }
                TxnState::Active | TxnState::Limbo => {
                    // The key is taken if the holder keeps any of its versions (it
                    // may roll back to a savepoint) or rolls back to the committed
                    // version below all of them.
                    for (_, r) in live.iter().take_while(|(holder, _)| holder == t) {
                        if carries(r)? {
                            return Ok(Some(*t));
                        }
                    }
                    let below = live
                        .iter()
                        .find(|(holder, _)| holder != t)
                        .and_then(|(_, r)| r.clone());
                    if carries(&below)? {
                        return Ok(Some(*t));
                    }
                }
                TxnState::RolledBack => {}
            }
        }
        Ok(None)
    }

    // ---------------------------------------------------------------- bulk load

    /// Commits: one durable write. Returns once the commit is durable and visible.
    ///
    /// # Errors
    /// The store is poisoned (the outcome is then unknown: the commit record may or
    /// may not have reached the disk).
    pub fn commit(mut self) -> Result<CommitInfo> {
        self.check_active()?;
        let result = if self.wrote {
            let r = self
                .inner
                .commit_txn(self.id, self.ddl, self.txlog_seq)
                .map(Some);
            if r.is_ok() {
                self.count_loaded();
            }
            r
        } else {
            // Nothing written: nothing to make durable.
            self.inner
                .tip
                .set(self.id, TxnState::Committed(CommitNumber(0)));
            Ok(None)
        };
        self.finish();
        result.map(|commit| CommitInfo {
            txn: self.id,
            commit,
        })
    }

    /// Adds what the committed bulk loads counted to their tables'
    /// statistics. A failure is logged, not returned: the commit stands, and
    /// the sweep computes statistics it finds missing or stale.
    fn count_loaded(&mut self) {
        for (table, (sketches, rows)) in std::mem::take(&mut self.loaded) {
            let Some(store) = self.inner.table(table) else {
                continue;
            };
            let def = &store.def;
            let added = crate::stats::TableStats {
                rows,
                columns: def.columns.iter().map(|c| c.id).zip(sketches).collect(),
            };
            if let Err(e) = self.inner.merge_stats(def, &added) {
                tracing::warn!(table = %def.name, error = %e, "keeping a load's column statistics failed");
            }
        }
    }

    /// Rolls back: undoes every version this transaction wrote.
    ///
    /// # Errors
    /// Undo failed (the transaction is still marked rolled back; sweep or the next
    /// start removes what remains).
    pub fn rollback(mut self) -> Result<()> {
        self.rollback_inner()
    }

    fn rollback_inner(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.inner.tip.set(
            self.id,
            if self.wrote {
                TxnState::RolledBack
            } else {
                TxnState::Committed(CommitNumber(0))
            },
        );
        self.rolling_back = self.wrote;
        let mut first_err = None;
        if self.inner.check_writable().is_ok() {
            // Undo everything possible; what an error leaves is garbage of a
            // rolled-back transaction, which sweep removes.
            while let Some(u) = self.undo.pop() {
                if let Err(e) = self.undo_one(u) {
                    first_err.get_or_insert(e);
                }
            }
            if self.wrote {
                // a sweep that moved the floor past it removed its record too
                let below_floor = self.id < self.inner.tip.floor();
                let r = self.undo_to(0, 0).and_then(|()| {
                    if below_floor {
                        Ok(())
                    } else {
                        self.inner.write_tip(self.id, TxnState::RolledBack, false)
                    }
                });
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.finish();
        first_err.map_or(Ok(()), Err)
    }

    /// Prepares for two-phase commit: the transaction enters limbo durably and
    /// survives restarts until `Storage::resolve_limbo` commits or rolls it back.
    /// Behind the `two-phase` feature, which no binary builds: a cluster never
    /// writes on two shards, so nothing prepares.
    ///
    /// # Errors
    /// Nothing was written (there is nothing to prepare), or the store is poisoned.
    #[cfg(feature = "two-phase")]
    pub fn prepare(mut self) -> Result<TxnId> {
        self.check_writable()?;
        if !self.wrote {
            return Err(StorageError::NotInLimbo { txn: self.id });
        }
        let r = self.inner.write_tip(self.id, TxnState::Limbo, true);
        if r.is_ok() {
            self.inner.tip.set(self.id, TxnState::Limbo);
            // A transaction in limbo keeps its table locks until it is resolved, so
            // no DDL or bulk load runs under its versions.
            self.active = false;
            self.stmt_snapshot = None;
            self.inner.unregister_txn(self.id);
            self.undo.clear();
        } else {
            self.finish();
        }
        r.map(|()| self.id)
    }

    fn finish(&mut self) {
        self.active = false;
        self.stmt_snapshot = None;
        self.inner.unregister_txn(self.id);
        self.inner.locks.release_all(self.id);
        self.undo.clear();
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.active
            && let Err(e) = self.rollback_inner()
        {
            tracing::warn!(txn = %self.id, error = %e, "rollback of a dropped transaction failed");
        }
    }
}

/// Checks NOT NULL and types of a full row and encodes it.
fn encode_checked(def: &TableDef, store: &TableStore, values: &[Value]) -> Result<Vec<u8>> {
    encode_checked_values(def, store, values)?;
    let mut row = Vec::new();
    store.layout.encode(values, &mut row)?;
    Ok(row)
}

fn encode_checked_values(def: &TableDef, store: &TableStore, values: &[Value]) -> Result<()> {
    if values.len() != def.columns.len() {
        return Err(StorageError::Type(scratchbird_types::TypeError::Arity {
            expected: def.columns.len(),
            got: values.len(),
        }));
    }
    for ((c, v), check) in def.columns.iter().zip(values).zip(&store.checks) {
        let check = match check {
            None => None,
            Some((domain, Ok(check))) => Some((domain, check)),
            // fail closed: a CHECK that cannot be evaluated admits nothing
            Some((domain, Err(reason))) => {
                return Err(StorageError::CheckUnsupported {
                    domain: domain.clone(),
                    reason: format!(
                        "{reason}; writes to {}.{} are refused until the domain is recreated",
                        def.name, c.name
                    ),
                });
            }
        };
        if let Some((domain, check)) = check
            && !check.admits(v)
        {
            return Err(StorageError::CheckViolation(Box::new(
                crate::error::CheckViolation {
                    table: def.name.clone(),
                    column: c.name.clone(),
                    domain: domain.clone(),
                    check: check.text().to_owned(),
                    value: v.to_display_truncated(64),
                },
            )));
        }
        if v.is_null() {
            if !c.nullable {
                return Err(StorageError::NotNull {
                    table: def.name.clone(),
                    column: c.name.clone(),
                });
            }
            continue;
        }
        c.ty.check_value(v)
            .map_err(|source| StorageError::ColumnValue {
                table: def.name.clone(),
                column: c.name.clone(),
                source,
            })?;
    }
    for (name, check) in &store.table_checks {
        match check {
            // fail closed: a CHECK that cannot be evaluated admits nothing
            Err(reason) => {
                return Err(StorageError::TableCheckUnsupported {
                    table: def.name.clone(),
                    constraint: name.clone(),
                    reason: format!(
                        "{reason}; writes to {} are refused until the constraint is dropped",
                        def.name
                    ),
                });
            }
            Ok(check) if !check.admits_row(values) => {
                return Err(StorageError::TableCheckViolation {
                    table: def.name.clone(),
                    constraint: name.clone(),
                    check: check.text().to_owned(),
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn describe_values(idx: &IndexDef, values: &[Value]) -> String {
    idx.columns
        .iter()
        .map(|&c| {
            values
                .get(c)
                .map_or_else(String::new, |v| v.to_display_truncated(40))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_key(store: &TableStore, key: &[u8]) -> String {
    match scratchbird_types::key::decode_key(&store.key_types, key) {
        Ok(vals) => vals
            .iter()
            .map(|v| v.to_display_truncated(40))
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => format!("{} key bytes", key.len()),
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::catalog::{ColumnCheck, system_table_def};

    /// A CHECK that cannot be evaluated admits nothing: the write is refused,
    /// naming the domain, the column and why.
    #[test]
    fn a_check_that_does_not_parse_refuses_every_write() {
        let mut def = system_table_def();
        if let Some(c) = def.columns.get_mut(2) {
            c.check = Some(ColumnCheck {
                domain: "legacy".into(),
                expr: "VALUE ~ 'x'".into(),
            });
        }
        let store = TableStore::new(Arc::new(def.clone())).unwrap();
        let values = vec![
            Value::Blob(vec![1; 16]),
            Value::SmallInt(1),
            Value::Text("name".into()),
            Value::Blob(vec![]),
        ];
        match encode_checked_values(&def, &store, &values) {
            Err(StorageError::CheckUnsupported { domain, reason }) => {
                assert_eq!(domain, "legacy");
                assert!(
                    reason.contains("writes to SB$OBJECTS.NAME are refused"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
