//! The store: opening and recovery, the commit pipeline (group commit), the snapshot
//! registry and the garbage-collection horizon, the catalog cache.

use crate::catalog::{
    Catalog, IndexDef, ObjectDef, TableDef, system_index_def, system_table_def, system_table_id,
};
use crate::codec::{Reader, seal, unseal};
use crate::config::{Durability, StorageConfig};
use crate::error::{Result, StorageError};
use crate::keys::{
    KS_COMMITLOG, KS_DELTA, KS_INDEX, KS_META, KS_PAGEDIR, KS_PAGES, KS_TIP, KS_TXLOG, META_FORMAT,
    META_GC_FLOOR, META_LAST_CN, META_LAST_TS, META_TIP_FLOOR, commitlog_key, split_delta_key,
    split_page_key, tip_key, u64_key,
};
use crate::locks::LockManager;
use crate::pagedir::PageDir;
use crate::stats::TableStats;
use crate::table::{
    PageMeta, ReadView, RowSource, TableState, TableStore, Version, decode_page_meta,
    decode_version,
};
use crate::tip::{Tip, TipRecord, TxnState, decode_record, encode_record};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use scratchbird_types::{CommitNumber, IndexId, TableId, TxnId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

/// On-disk format version written in the meta keyspace.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) struct Keyspaces {
    pub meta: fjall::Keyspace,
    pub tip: fjall::Keyspace,
    pub pages: fjall::Keyspace,
    pub pagedir: fjall::Keyspace,
    pub delta: fjall::Keyspace,
    pub index: fjall::Keyspace,
    pub txlog: fjall::Keyspace,
    pub commitlog: fjall::Keyspace,
}

#[derive(Debug, Default)]
pub(crate) struct CommitState {
    pub next_cn: u64,
    pub written: u64,
    pub durable: u64,
    pub syncing: bool,
    pub pending: Vec<(TxnId, CommitNumber, bool)>,
    pub last_ts: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Active {
    /// Active transactions and, for SNAPSHOT and time-travel ones, their snapshot.
    pub txns: BTreeMap<TxnId, Option<CommitNumber>>,
    /// Snapshots held by statements and scans of READ COMMITTED transactions.
    pub stmt: BTreeMap<CommitNumber, usize>,
}

impl Active {
    fn oldest(&self) -> Option<CommitNumber> {
        let a = self.txns.values().flatten().min().copied();
        let b = self.stmt.keys().next().copied();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The planner's row estimates, read live from the tables' directories: the
/// rows of their pages plus the records with versions not yet folded into
/// one (a record in both counts twice; a deletion counts as a row until
/// folded). Nothing is read from disk. Distinct values come from the
/// tables' statistics ([`crate::stats`]).
#[derive(Debug)]
struct TableRows {
    tables: std::sync::Weak<RwLock<HashMap<TableId, Arc<TableStore>>>>,
    stats: std::sync::Weak<RwLock<StatsMap>>,
}

/// Every table's statistics.
pub(crate) type StatsMap = HashMap<TableId, Arc<TableStats>>;

impl TableRows {
    fn store(&self, table: TableId) -> Option<Arc<TableStore>> {
        let tables = self.tables.upgrade()?;
        tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&table)
            .cloned()
    }
}

/// The rows `store` holds, as [`TableRows`] counts them.
fn rows_held(store: &TableStore) -> u64 {
    let st = store.read();
    st.pages.rows().saturating_add(st.delta.len() as u64)
}

impl scratchbird_types::schema::RowEstimates for TableRows {
    fn rows(&self, table: TableId) -> Option<u64> {
        self.store(table).map(|s| rows_held(&s))
    }

    fn distinct(&self, table: TableId, column: usize) -> Option<f64> {
        let store = self.store(table)?;
        let id = store.def.columns.get(column)?.id;
        let rows = rows_held(&store);
        let stats = self.stats.upgrade()?;
        let s = stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&table)
            .cloned()?;
        s.distinct(id, rows)
    }
}

pub(crate) struct Inner {
    pub db: Database,
    pub ks: Keyspaces,
    pub config: StorageConfig,
    pub tip: Tip,
    pub locks: LockManager,
    pub tables: Arc<RwLock<HashMap<TableId, Arc<TableStore>>>>,
    pub commit: Mutex<CommitState>,
    pub commit_cv: Condvar,
    pub visible_cn: AtomicU64,
    pub next_txn: AtomicU64,
    pub next_seq: AtomicU64,
    pub active: Mutex<Active>,
    /// Oldest commit number a snapshot may still use (time travel below it is refused).
    pub gc_floor: AtomicU64,
    /// The horizon pruning may use: the GC floor once it is durable. Raised only
    /// after `gc_floor_cn` is written, so nothing is removed that a restart (which
    /// reads the durable floor) would still let time travel ask for.
    pub prune_floor: AtomicU64,
    /// Oldest commit log position still readable, minus one.
    pub log_floor: AtomicU64,
    pub poisoned: AtomicBool,
    pub poison_cause: Mutex<Option<String>>,
    pub catalog_cache: RwLock<Option<(u64, Arc<Catalog>)>>,
    pub last_ddl_cn: AtomicU64,
    pub delta_bytes: AtomicUsize,
    pub sweep_lock: Mutex<()>,
    /// Serialises the resolution of transactions in limbo.
    #[cfg(feature = "two-phase")]
    pub limbo_lock: Mutex<()>,
    pub sweeper_wake: (Mutex<SweeperSignal>, Condvar),
    pub page_cache: crate::page::PageCache,
    /// Which shard of how many this store is, packed (index << 32 | count);
    /// 0 while it is not one of several ([`crate::Storage::set_placement`]).
    pub placement: AtomicU64,
    /// Every table's column statistics ([`crate::stats`]).
    pub stats: Arc<RwLock<StatsMap>>,
    /// SERIAL and identity columns' counters ([`crate::identity`]).
    pub identity: Mutex<crate::identity::Counters>,
}

#[derive(Debug, Default)]
pub(crate) struct SweeperSignal {
    pub stop: bool,
    pub requested: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("visible_cn", &self.visible_cn)
            .field("next_txn", &self.next_txn)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A durable commit log record: `[txn u64][commit ts i64][entries u64]`, sealed.
pub(crate) fn encode_commit_record(cn: CommitNumber, txn: TxnId, ts: i64, entries: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(24);
    p.extend_from_slice(&txn.0.to_le_bytes());
    p.extend_from_slice(&ts.to_le_bytes());
    p.extend_from_slice(&entries.to_le_bytes());
    seal(&commitlog_key(cn), p)
}

pub(crate) fn decode_commit_record(cn: CommitNumber, v: &[u8]) -> Result<(TxnId, i64, u64)> {
    let p = unseal("commit log record", &commitlog_key(cn), v)?;
    let mut r = Reader::new("commit log record", p);
    let out = (TxnId(r.u64()?), r.i64()?, r.u64()?);
    r.finish()?;
    Ok(out)
}

pub(crate) fn meta_u64(meta: &fjall::Keyspace, key: &[u8]) -> Result<Option<u64>> {
    match meta.get(key)? {
        None => Ok(None),
        Some(v) => {
            let p = unseal("meta value", key, &v)?;
            let mut r = Reader::new("meta value", p);
            let x = r.u64()?;
            r.finish()?;
            Ok(Some(x))
        }
    }
}

pub(crate) fn meta_value(key: &[u8], v: u64) -> Vec<u8> {
    seal(key, v.to_le_bytes().to_vec())
}

/// What snapshot a new transaction registers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SnapshotWanted {
    None,
    Current,
    At(CommitNumber),
}

/// Releases a statement snapshot when dropped.
#[derive(Debug)]
pub(crate) struct SnapshotGuard {
    inner: Arc<Inner>,
    cn: CommitNumber,
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let mut a = lock(&self.inner.active);
        if let Some(n) = a.stmt.get_mut(&self.cn) {
            *n -= 1;
            if *n == 0 {
                a.stmt.remove(&self.cn);
            }
        }
    }
}

impl Inner {
    pub(crate) fn open(path: &Path, config: StorageConfig) -> Result<Arc<Self>> {
        let memtable = config.memtable_max_bytes.max(1024 * 1024);
        let db = Database::builder(path)
            .cache_size(config.cache_bytes)
            .max_journaling_size(config.journal_max_bytes.max(64 * 1024 * 1024))
            // Pages are written once and read often; compressing them into the
            // journal costs the bulk load without saving much.
            .journal_compression(fjall::CompressionType::None)
            .manual_journal_persist(true)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StorageError::DirectoryLocked {
                    path: path.display().to_string(),
                },
                other => StorageError::from(other),
            })?;
        let plain = || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable)
        };
        // Pages are already compact and are read on the scan path: no block
        // compression, so a cached block is used in place.
        let pages_opts = || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable)
                .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
        };
        let ks = Keyspaces {
            meta: db.keyspace(KS_META, plain)?,
            tip: db.keyspace(KS_TIP, plain)?,
            pages: db.keyspace(KS_PAGES, pages_opts)?,
            pagedir: db.keyspace(KS_PAGEDIR, plain)?,
            delta: db.keyspace(KS_DELTA, plain)?,
            index: db.keyspace(KS_INDEX, plain)?,
            txlog: db.keyspace(KS_TXLOG, plain)?,
            commitlog: db.keyspace(KS_COMMITLOG, plain)?,
        };
        match meta_u64(&ks.meta, META_FORMAT)? {
            None => {
                ks.meta.insert(
                    META_FORMAT,
                    meta_value(META_FORMAT, u64::from(FORMAT_VERSION)),
                )?;
            }
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(StorageError::FormatVersion {
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    expected: FORMAT_VERSION,
                });
            }
        }
        let gc_floor = meta_u64(&ks.meta, META_GC_FLOOR)?.unwrap_or(0);
        let tip_floor = meta_u64(&ks.meta, META_TIP_FLOOR)?.unwrap_or(1).max(1);
        let mut last_cn = meta_u64(&ks.meta, META_LAST_CN)?.unwrap_or(0);

        // The transaction inventory. Transactions that were active when the store
        // stopped are rolled back now: nothing of theirs was acknowledged.
        let tip = Tip::new(tip_floor);
        let mut max_txn = tip_floor - 1;
        let mut last_ts = meta_u64(&ks.meta, META_LAST_TS)?.unwrap_or(0).cast_signed();
        let mut interrupted = Vec::new();
        for kv in ks.tip.range(tip_key(TxnId(tip_floor))..) {
            let (k, v) = kv.into_inner()?;
            let txn = TxnId(u64_key(&k)?);
            let rec = decode_record(txn, &v)?;
            max_txn = max_txn.max(txn.0);
            match rec.state {
                TxnState::Active => {
                    interrupted.push(txn);
                    tip.set(txn, TxnState::RolledBack);
                }
                TxnState::Committed(cn) => {
                    last_cn = last_cn.max(cn.0);
                    last_ts = last_ts.max(rec.commit_ts);
                    tip.set(txn, rec.state);
                }
                other => tip.set(txn, other),
            }
        }
        // Transactions that never wrote left no record (a record is written with the
        // first version): they have nothing anyone could see.
        let (base, states) = tip.snapshot();
        for (i, s) in states.iter().enumerate() {
            if *s == TxnState::Active && !interrupted.contains(&TxnId(base + i as u64)) {
                tip.set(TxnId(base + i as u64), TxnState::Committed(CommitNumber(0)));
            }
        }
        if let Some(kv) = ks.commitlog.last_key_value() {
            let (k, v) = kv.into_inner()?;
            let cn = u64_key(&k)?;
            last_cn = last_cn.max(cn);
            // Commit timestamps never go backwards, even when the inventory no
            // longer holds any commit record.
            last_ts = last_ts.max(decode_commit_record(CommitNumber(cn), &v)?.1);
        }
        if !interrupted.is_empty() {
            let mut b = db.batch();
            for &txn in &interrupted {
                let rec = TipRecord {
                    state: TxnState::RolledBack,
                    commit_ts: 0,
                };
                b.insert(&ks.tip, tip_key(txn), encode_record(txn, rec));
            }
            b.commit()?;
            tracing::info!(
                count = interrupted.len(),
                "rolled back transactions interrupted by the last shutdown"
            );
        }
        let log_floor = match ks.commitlog.first_key_value() {
            Some(kv) => u64_key(&kv.key()?)?.saturating_sub(1),
            None => last_cn,
        };

        let inner = Arc::new(Self {
            db,
            ks,
            tip,
            locks: LockManager::default(),
            tables: Arc::new(RwLock::new(HashMap::new())),
            commit: Mutex::new(CommitState {
                next_cn: last_cn + 1,
                written: last_cn,
                durable: last_cn,
                last_ts,
                ..CommitState::default()
            }),
            commit_cv: Condvar::new(),
            visible_cn: AtomicU64::new(last_cn),
            next_txn: AtomicU64::new(max_txn + 1),
            next_seq: AtomicU64::new(1),
            active: Mutex::new(Active::default()),
            gc_floor: AtomicU64::new(gc_floor),
            prune_floor: AtomicU64::new(gc_floor),
            log_floor: AtomicU64::new(log_floor),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            catalog_cache: RwLock::new(None),
            last_ddl_cn: AtomicU64::new(0),
            delta_bytes: AtomicUsize::new(0),
            sweep_lock: Mutex::new(()),
            #[cfg(feature = "two-phase")]
            limbo_lock: Mutex::new(()),
            sweeper_wake: (Mutex::new(SweeperSignal::default()), Condvar::new()),
            page_cache: crate::page::PageCache::new(config.page_cache_bytes),
            placement: AtomicU64::new(0),
            stats: Arc::new(RwLock::new(HashMap::new())),
            identity: Mutex::new(crate::identity::Counters::default()),
            config,
        });
        inner.load_tables()?;
        inner.load_stats()?;
        inner.restore_limbo_locks()?;
        // A DDL commit before the restart is not known: every catalog is built fresh.
        inner.last_ddl_cn.store(last_cn, Ordering::SeqCst);
        inner.db.persist(PersistMode::SyncAll)?;
        Ok(inner)
    }

    /// Loads page directories and version chains, and the table and index
    /// definitions found in any retained version of the catalog.
    fn load_tables(self: &Arc<Self>) -> Result<()> {
        let mut dirs: HashMap<TableId, BTreeMap<Vec<u8>, PageMeta>> = HashMap::new();
        for kv in self.ks.pagedir.iter() {
            let (k, v) = kv.into_inner()?;
            let (table, first) = split_page_key(&k)?;
            let meta = decode_page_meta(&k, &v)?;
            dirs.entry(table).or_default().insert(first.to_vec(), meta);
        }
        let mut chains: HashMap<TableId, BTreeMap<Vec<u8>, Vec<Version>>> = HashMap::new();
        let mut max_seq = 0u64;
        for kv in self.ks.delta.iter() {
            let (k, v) = kv.into_inner()?;
            let (table, key, seq) = split_delta_key(&k)?;
            let (txn, row) = decode_version(&k, &v)?;
            max_seq = max_seq.max(seq);
            chains
                .entry(table)
                .or_default()
                .entry(key.to_vec())
                .or_default()
                .push(Version {
                    seq,
                    txn,
                    row: row.map(Arc::from),
                });
        }
        self.next_seq.store(max_seq + 1, Ordering::SeqCst);

        // The system table first: every other definition is stored in it.
        let sys = Arc::new(TableStore::new(Arc::new(system_table_def()))?);
        *sys.indexes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            vec![Arc::new(system_index_def())];
        self.install(&sys, dirs.remove(&sys.def.id), chains.remove(&sys.def.id));
        let mut table_defs: HashMap<TableId, TableDef> = HashMap::new();
        let mut index_defs: HashMap<IndexId, IndexDef> = HashMap::new();
        let mut domains: HashMap<scratchbird_types::DomainId, crate::catalog::DomainDef> =
            HashMap::new();
        {
            let st = sys.read();
            let mut add = |values: Vec<scratchbird_types::Value>| -> Result<()> {
                match ObjectDef::from_row(&values)? {
                    ObjectDef::Table(t) => {
                        table_defs.insert(t.id, t);
                    }
                    ObjectDef::Index(i) => {
                        index_defs.insert(i.id, i);
                    }
                    ObjectDef::Domain(d) => {
                        domains.insert(d.id, d);
                    }
                    // a view has no store: it is read from the catalog
                    ObjectDef::View(_) => {}
                }
                Ok(())
            };
            for (first, meta) in &st.pages {
                let view = sys.fetch_page(&self.pages(), first, meta.generation)?;
                for i in 0..view.rows() {
                    add(view.values(i)?)?;
                }
            }
            for chain in st.delta.values() {
                for v in chain {
                    if let Some(row) = &v.row {
                        add(sys.row_values(&RowSource::Delta(row.clone()))?)?;
                    }
                }
            }
        }
        let mut tables = self
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.insert(sys.def.id, sys);
        // a table created before columns carried their domain's CHECK takes
        // it from the domain
        let domains: Vec<crate::catalog::DomainDef> = domains.into_values().collect();
        for (id, mut def) in table_defs {
            crate::catalog::carry_domain_checks(std::slice::from_mut(&mut def), &domains);
            let store = Arc::new(TableStore::new(Arc::new(def))?);
            let mut idx: Vec<Arc<IndexDef>> = index_defs
                .values()
                .filter(|i| i.table == id)
                .cloned()
                .map(Arc::new)
                .collect();
            idx.sort_by_key(|i| i.id);
            *store
                .indexes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = idx;
            self.install(&store, dirs.remove(&id), chains.remove(&id));
            tables.insert(id, store);
        }
        drop(tables);
        // Records of tables no definition names: left by a crash between removing a
        // table's catalog row and its data cannot happen (data goes first), so these
        // are unexpected. They are removed, and reported.
        if !dirs.is_empty() || !chains.is_empty() {
            let mut b = self.db.batch();
            for (table, pages) in dirs {
                tracing::warn!(%table, pages = pages.len(), "removing pages of an unknown table");
                for first in pages.keys() {
                    let k = crate::keys::page_key(table, first);
                    b.remove(&self.ks.pages, k.clone());
                    b.remove(&self.ks.pagedir, k);
                }
            }
            for (table, recs) in chains {
                tracing::warn!(%table, records = recs.len(), "removing versions of an unknown table");
                for (key, versions) in recs {
                    for v in versions {
                        b.remove(&self.ks.delta, crate::keys::delta_key(table, &key, v.seq));
                    }
                }
            }
            b.commit()?;
        }
        Ok(())
    }

    /// Transactions in limbo keep their table locks across restarts: shared on
    /// every table they wrote, exclusive on tables they bulk loaded and on tables
    /// whose catalog rows (the table's or one of its indexes') they changed.
    fn restore_limbo_locks(&self) -> Result<()> {
        use crate::locks::{LockWait, TableLockMode};
        let mut wanted: Vec<(TxnId, TableId, TableLockMode)> = Vec::new();
        let is_limbo = |t: TxnId| self.tip.state(t) == TxnState::Limbo;
        let sys_id = system_table_id();
        let stores = self.stores();
        for store in &stores {
            let st = store.read();
            for meta in st.pages.values().filter(|m| is_limbo(m.creator)) {
                wanted.push((meta.creator, store.def.id, TableLockMode::Exclusive));
            }
            for (key, chain) in &st.delta {
                for v in chain.iter().filter(|v| is_limbo(v.txn)) {
                    if store.def.id != sys_id {
                        wanted.push((v.txn, store.def.id, TableLockMode::Shared));
                        continue;
                    }
                    let Ok(vals) = scratchbird_types::key::decode_key(&store.key_types, key) else {
                        continue;
                    };
                    let Some(scratchbird_types::Value::Blob(id)) = vals.first() else {
                        continue;
                    };
                    let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                        continue;
                    };
                    let table = TableId::from_bytes(id);
                    let owner = if stores.iter().any(|s| s.def.id == table) {
                        Some(table)
                    } else {
                        stores
                            .iter()
                            .find(|s| s.index_defs().iter().any(|i| *i.id.as_bytes() == id))
                            .map(|s| s.def.id)
                    };
                    if let Some(t) = owner {
                        wanted.push((v.txn, t, TableLockMode::Exclusive));
                    }
                }
            }
        }
        for (txn, table, mode) in wanted {
            let name = self
                .table(table)
                .map(|s| s.def.name.clone())
                .unwrap_or_default();
            if let Err(e) = self
                .locks
                .lock_table(txn, table, &name, mode, LockWait::NoWait)
            {
                tracing::warn!(%txn, table = %name, error = %e, "could not restore a limbo transaction's table lock");
            }
        }
        Ok(())
    }

    fn install(
        &self,
        store: &Arc<TableStore>,
        pages: Option<BTreeMap<Vec<u8>, PageMeta>>,
        delta: Option<BTreeMap<Vec<u8>, Vec<Version>>>,
    ) {
        let mut st = store.write();
        st.pages = PageDir::from_map(pages.unwrap_or_default());
        st.delta = delta.unwrap_or_default();
        st.delta_bytes = st.delta.values().flatten().map(Version::mem_bytes).sum();
        self.delta_bytes.fetch_add(st.delta_bytes, Ordering::SeqCst);
        if store.def.is_keyless() {
            let from_pages = st.pages.values().next_back().map(|m| m.last_key.clone());
            let from_delta = st.delta.keys().next_back().cloned();
            let max = from_pages
                .into_iter()
                .chain(from_delta)
                .max()
                .unwrap_or_default();
            let last = <[u8; 8]>::try_from(max.as_slice()).map_or(0, u64::from_be_bytes);
            store.next_rowid.store(last + 1, Ordering::SeqCst);
        }
    }

    /// Pages, through the buffer pool.
    pub(crate) fn pages(&self) -> crate::table::PageReader<'_> {
        crate::table::PageReader {
            ks: &self.ks.pages,
            cache: Some(&self.page_cache),
        }
    }

    /// Puts each table's store under the table's latest committed
    /// definition. ALTER TABLE leaves several versions of a table's catalog
    /// row until sweep folds them, and opening installs the one it read last.
    pub(crate) fn settle_table_defs(&self) -> Result<()> {
        let view = crate::table::ReadView {
            me: scratchbird_types::TxnId(u64::MAX),
            snapshot: self.visible(),
        };
        let cat = self.catalog_for(view, false)?;
        let mut tables = self
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for def in cat.tables() {
            if let Some(store) = tables.get(&def.id)
                && *store.def != **def
            {
                let next = Arc::new(store.redefined(def.clone())?);
                tables.insert(def.id, next);
            }
        }
        Ok(())
    }

    pub(crate) fn table(&self, id: TableId) -> Option<Arc<TableStore>> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Every table store, in id order.
    pub(crate) fn stores(&self) -> Vec<Arc<TableStore>> {
        let mut v: Vec<Arc<TableStore>> = self
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.def.id);
        v
    }

    pub(crate) fn system_table(&self) -> Result<Arc<TableStore>> {
        self.table(system_table_id())
            .ok_or(StorageError::Internal("the system table is not loaded"))
    }

    pub(crate) fn visible(&self) -> CommitNumber {
        CommitNumber(self.visible_cn.load(Ordering::SeqCst))
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            let cause = lock(&self.poison_cause).clone().unwrap_or_default();
            return Err(StorageError::Poisoned { cause });
        }
        Ok(())
    }

    /// Marks the store as refusing writes (a write or fsync failed). Never undone.
    pub(crate) fn poison(&self, cause: String) -> StorageError {
        tracing::error!(%cause, "storage write failed; the store now refuses writes");
        let mut c = lock(&self.poison_cause);
        if c.is_none() {
            *c = Some(cause.clone());
        }
        self.poisoned.store(true, Ordering::SeqCst);
        drop(c);
        // Transactions waiting for one whose commit failed would wait for good.
        self.locks.notify();
        StorageError::Poisoned { cause }
    }

    /// Commits a write batch to the journal; a failure poisons the store.
    pub(crate) fn write_batch(&self, batch: fjall::OwnedWriteBatch) -> Result<()> {
        self.check_writable()?;
        batch
            .commit()
            .map_err(|e| self.poison(format!("journal write failed: {e}")))
    }

    pub(crate) fn sync(&self) -> Result<()> {
        if let Some(f) = &self.config.faults
            && f.take_fsync_failure()
        {
            return Err(self.poison("fsync failed (injected fault)".into()));
        }
        let mode = match self.config.durability {
            Durability::Fsync => PersistMode::SyncAll,
            Durability::NoFsync => PersistMode::Buffer,
        };
        self.db
            .persist(mode)
            .map_err(|e| self.poison(format!("fsync of the journal failed: {e}")))
    }

    /// Writes the commit record of `txn` and returns once it is durable (sharing the
    /// fsync with every commit written meanwhile) and visible.
    pub(crate) fn commit_txn(&self, txn: TxnId, ddl: bool, entries: u64) -> Result<CommitNumber> {
        self.check_writable()?;
        let cn = {
            let mut cs = lock(&self.commit);
            let cn = CommitNumber(cs.next_cn);
            let ts = self.config.env.now_micros().max(cs.last_ts);
            let mut b = self.db.batch();
            let rec = TipRecord {
                state: TxnState::Committed(cn),
                commit_ts: ts,
            };
            b.insert(&self.ks.tip, tip_key(txn), encode_record(txn, rec));
            b.insert(
                &self.ks.commitlog,
                commitlog_key(cn),
                encode_commit_record(cn, txn, ts, entries),
            );
            self.write_batch(b)?;
            cs.next_cn += 1;
            cs.last_ts = ts;
            cs.written = cn.0;
            cs.pending.push((txn, cn, ddl));
            cn
        };
        self.wait_durable(cn)?;
        Ok(cn)
    }

    fn wait_durable(&self, cn: CommitNumber) -> Result<()> {
        let mut cs = lock(&self.commit);
        loop {
            if cs.durable >= cn.0 {
                return Ok(());
            }
            self.check_writable()?;
            if cs.syncing {
                cs = self
                    .commit_cv
                    .wait(cs)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            cs.syncing = true;
            let target = cs.written;
            drop(cs);
            let synced = self.sync();
            cs = lock(&self.commit);
            cs.syncing = false;
            if let Err(e) = synced {
                self.commit_cv.notify_all();
                return Err(e);
            }
            // Publish in commit order: states first, then the visible commit number.
            let pending = std::mem::take(&mut cs.pending);
            let mut keep = Vec::new();
            for (t, c, ddl) in pending {
                if c.0 <= target {
                    self.tip.set(t, TxnState::Committed(c));
                    if ddl {
                        self.last_ddl_cn.fetch_max(c.0, Ordering::SeqCst);
                    }
                } else {
                    keep.push((t, c, ddl));
                }
            }
            cs.pending = keep;
            self.visible_cn.fetch_max(target, Ordering::SeqCst);
            cs.durable = cs.durable.max(target);
            self.commit_cv.notify_all();
            drop(cs);
            self.locks.notify();
            cs = lock(&self.commit);
        }
    }

    /// Writes a transaction state without waiting for durability (rollback, start).
    pub(crate) fn write_tip(&self, txn: TxnId, state: TxnState, sync: bool) -> Result<()> {
        let mut b = self.db.batch();
        b.insert(
            &self.ks.tip,
            tip_key(txn),
            encode_record(
                txn,
                TipRecord {
                    state,
                    commit_ts: 0,
                },
            ),
        );
        self.write_batch(b)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Registers a new transaction: with no snapshot (READ COMMITTED), with the
    /// newest visible commit read under the registry lock (so that a concurrent
    /// horizon computation either counts it or is already at or below it), or at a
    /// given commit (time travel, refused below the garbage-collection floor).
    pub(crate) fn register_txn(&self, txn: TxnId, want: SnapshotWanted) -> Result<CommitNumber> {
        let mut a = lock(&self.active);
        if a.txns.len() >= self.config.active_transactions_max {
            return Err(StorageError::LimitExceeded {
                limit: "active_transactions_max",
                max: self.config.active_transactions_max as u64,
                needed: a.txns.len() as u64 + 1,
            });
        }
        let (snapshot, cn) = match want {
            SnapshotWanted::None => (None, self.visible()),
            SnapshotWanted::Current => {
                let v = self.visible();
                (Some(v), v)
            }
            SnapshotWanted::At(s) => {
                let floor = self.gc_floor.load(Ordering::SeqCst);
                if s.0 < floor {
                    return Err(StorageError::OutsideRetention {
                        requested: format!("commit {s}"),
                        oldest: CommitNumber(floor),
                        newest: self.visible(),
                    });
                }
                (Some(s), s)
            }
        };
        a.txns.insert(txn, snapshot);
        Ok(cn)
    }

    pub(crate) fn unregister_txn(&self, txn: TxnId) {
        lock(&self.active).txns.remove(&txn);
    }

    /// The newest visible commit, held against garbage collection.
    pub(crate) fn current_snapshot(self: &Arc<Self>) -> (CommitNumber, SnapshotGuard) {
        let mut a = lock(&self.active);
        let cn = self.visible();
        *a.stmt.entry(cn).or_default() += 1;
        drop(a);
        (
            cn,
            SnapshotGuard {
                inner: self.clone(),
                cn,
            },
        )
    }

    /// The commit timestamp of `cn`, if the commit log still has it.
    pub(crate) fn commit_ts(&self, cn: CommitNumber) -> Result<Option<i64>> {
        match self.ks.commitlog.get(commitlog_key(cn))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_commit_record(cn, &v)?.1)),
        }
    }

    /// The newest commit whose timestamp is at or before `ts`, among the retained
    /// ones; `None` if every retained commit is younger.
    pub(crate) fn commit_at_or_before(&self, ts: i64) -> Result<Option<CommitNumber>> {
        let (mut lo, mut hi) = (self.log_floor.load(Ordering::SeqCst) + 1, self.visible().0);
        let mut found = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            match self.commit_ts(CommitNumber(mid))? {
                Some(t) if t <= ts => {
                    found = Some(CommitNumber(mid));
                    lo = mid + 1;
                }
                _ => {
                    if mid == 0 {
                        break;
                    }
                    hi = mid - 1;
                }
            }
        }
        Ok(found)
    }

    /// The garbage-collection horizon: every snapshot that exists or may still be
    /// taken (including time travel inside the retention window) is at or above it.
    /// Record versions superseded by a version committed at or below it are garbage.
    /// Raises the GC floor to it (under the registry lock, so that no time-travel
    /// snapshot can register below it afterwards).
    pub(crate) fn advance_horizon(&self) -> Result<CommitNumber> {
        let visible = self.visible();
        let retention = self.config.retention_micros;
        let by_time = if retention <= 0 {
            visible
        } else {
            let cutoff = self.config.env.now_micros().saturating_sub(retention);
            // Commits after the log floor are all inside the window if none is older
            // than the cutoff; commits at or below the floor are older.
            self.commit_at_or_before(cutoff)?
                .unwrap_or(CommitNumber(self.log_floor.load(Ordering::SeqCst)))
        };
        let a = lock(&self.active);
        let mut h = visible.min(by_time);
        if let Some(o) = a.oldest() {
            h = h.min(o);
        }
        let floor = self.gc_floor.load(Ordering::SeqCst);
        let h = CommitNumber(h.0.max(floor));
        self.gc_floor.store(h.0, Ordering::SeqCst);
        drop(a);
        Ok(h)
    }

    /// The catalog as `view` sees it. `own_ddl`: the viewer changed the catalog itself,
    /// so the shared cache does not apply.
    pub(crate) fn catalog_for(&self, view: ReadView, own_ddl: bool) -> Result<Arc<Catalog>> {
        let last = self.last_ddl_cn.load(Ordering::SeqCst);
        let shareable = !own_ddl && view.snapshot.0 >= last;
        if shareable {
            let cache = self
                .catalog_cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((epoch, cat)) = cache.as_ref()
                && *epoch == last
            {
                return Ok(cat.clone());
            }
        }
        let cat = Arc::new(self.build_catalog(view)?);
        if shareable && self.last_ddl_cn.load(Ordering::SeqCst) == last {
            *self
                .catalog_cache
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((last, cat.clone()));
        }
        Ok(cat)
    }

    fn build_catalog(&self, view: ReadView) -> Result<Catalog> {
        let sys = self.system_table()?;
        let st = sys.read();
        let (mut tables, mut indexes, mut domains) = (Vec::new(), Vec::new(), Vec::new());
        let mut views = Vec::new();
        self.for_each_visible(&sys, &st, view, |_, row| {
            match ObjectDef::from_row(&sys.row_values(row)?)? {
                ObjectDef::Table(t) => tables.push(t),
                ObjectDef::Index(i) => indexes.push(i),
                ObjectDef::Domain(d) => domains.push(d),
                ObjectDef::View(v) => views.push(v),
            }
            Ok(())
        })?;
        crate::catalog::carry_domain_checks(&mut tables, &domains);
        Ok(Catalog::new(tables, indexes, domains).with_views(views))
    }

    /// Reads the stored statistics (a record that is not one is left for the
    /// sweep to compute again).
    fn load_stats(&self) -> Result<()> {
        let mut map = StatsMap::new();
        for kv in self.ks.meta.prefix(crate::stats::STATS_PREFIX) {
            let (k, v) = kv.into_inner()?;
            if let (Some(id), Some(s)) = (crate::stats::table_of(&k), crate::stats::decode(&v)) {
                map.insert(id, Arc::new(s));
            }
        }
        *self
            .stats
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
        Ok(())
    }

    /// `table`'s statistics, if it has any.
    pub(crate) fn table_stats(&self, table: TableId) -> Option<Arc<TableStats>> {
        self.stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&table)
            .cloned()
    }

    /// Keeps `stats` as `table`'s, in memory and in the `meta` keyspace
    /// (no fsync: a lost record is computed again).
    pub(crate) fn put_stats(&self, table: TableId, stats: TableStats) -> Result<()> {
        let bytes = crate::stats::encode(&stats)?;
        self.check_writable()?;
        self.ks
            .meta
            .insert(crate::stats::stats_key(table), bytes)
            .map_err(|e| self.poison(format!("journal write failed: {e}")))?;
        self.stats
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(table, Arc::new(stats));
        Ok(())
    }

    /// Adds what a committed bulk load counted to `def`'s statistics.
    pub(crate) fn merge_stats(&self, def: &TableDef, added: &TableStats) -> Result<()> {
        let mut s = self
            .table_stats(def.id)
            .map_or_else(|| TableStats::empty(def), |s| s.as_ref().clone());
        s.merge(added);
        self.put_stats(def.id, s)
    }

    /// Counts `store`'s pages again, when its statistics are missing or its
    /// rows have changed by more than [`crate::stats::STALE_SHARE`] since.
    pub(crate) fn refresh_stats(&self, store: &TableStore) -> Result<bool> {
        let rows = store.read().pages.rows();
        let fresh = self
            .table_stats(store.def.id)
            .is_some_and(|s| !s.stale(rows));
        if fresh || rows == 0 {
            return Ok(false);
        }
        let pages: Vec<(Vec<u8>, u64)> = store
            .read()
            .pages
            .iter()
            .map(|(k, m)| (k.clone(), m.generation))
            .collect();
        let mut s = TableStats::empty(&store.def);
        let reader = self.pages();
        for (first, generation) in &pages {
            match store.fetch_page(&reader, first, *generation) {
                Ok(p) => s.add_page(&store.def, &p),
                // folded or removed since: its rows are counted in the next one
                Err(StorageError::Corruption { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.put_stats(store.def.id, s)?;
        Ok(true)
    }

    /// Forgets the statistics of tables that are gone (dropped, or written
    /// anew under another id by ALTER TABLE).
    pub(crate) fn forget_stats(&self, live: &HashSet<TableId>) -> Result<()> {
        let gone: Vec<TableId> = self
            .stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .filter(|t| !live.contains(t))
            .copied()
            .collect();
        for t in gone {
            self.check_writable()?;
            self.ks
                .meta
                .remove(crate::stats::stats_key(t))
                .map_err(|e| self.poison(format!("journal write failed: {e}")))?;
            self.stats
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&t);
        }
        Ok(())
    }

    /// Live estimates of every table's rows, for the planner.
    pub(crate) fn row_estimates(&self) -> Arc<dyn scratchbird_types::schema::RowEstimates> {
        Arc::new(TableRows {
            tables: Arc::downgrade(&self.tables),
            stats: Arc::downgrade(&self.stats),
        })
    }

    /// Calls `f` with every row `view` sees, in key order.
    pub(crate) fn for_each_visible(
        &self,
        store: &TableStore,
        st: &TableState,
        view: ReadView,
        mut f: impl FnMut(&[u8], &RowSource) -> Result<()>,
    ) -> Result<()> {
        let resolve_chain = |chain: &Vec<Version>| {
            chain
                .iter()
                .rev()
                .find(|v| view.sees(&self.tip, v.txn))
                .map(|v| v.row.clone())
        };
        let mut delta = st.delta.iter().peekable();
        for (first, meta) in &st.pages {
            let page_visible = view.sees(&self.tip, meta.creator);
            let pv = store.fetch_page(&self.pages(), first, meta.generation)?;
            for i in 0..pv.rows() {
                let key = pv.key(i);
                while let Some((dk, chain)) = delta.next_if(|(dk, _)| dk.as_slice() < key) {
                    if let Some(Some(row)) = resolve_chain(chain) {
                        f(dk, &RowSource::Delta(row))?;
                    }
                }
                match delta.next_if(|(dk, _)| dk.as_slice() == key) {
                    Some((_, chain)) => match resolve_chain(chain) {
                        Some(Some(row)) => f(key, &RowSource::Delta(row))?,
                        Some(None) => {}
                        None if page_visible => f(key, &RowSource::Page(pv.clone(), i))?,
                        None => {}
                    },
                    None if page_visible => f(key, &RowSource::Page(pv.clone(), i))?,
                    None => {}
                }
            }
        }
        for (dk, chain) in delta {
            if let Some(Some(row)) = resolve_chain(chain) {
                f(dk, &RowSource::Delta(row))?;
            }
        }
        Ok(())
    }

    /// Wakes the background sweeper.
    pub(crate) fn request_sweep(&self) {
        let (m, cv) = &self.sweeper_wake;
        lock(m).requested = true;
        cv.notify_all();
    }
}
