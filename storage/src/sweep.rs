//! Garbage collection: cooperative pruning by readers, and the sweep.
//!
//! The horizon `h` (see `Inner::advance_horizon`) is at or below every snapshot that
//! exists or may still be taken. A version is garbage when its transaction rolled
//! back, or when a newer version of the same record was committed at or below `h`.
//! The newest version committed at or below `h` is *settled*: every possible reader
//! sees it or something newer. A fold writes settled versions into their page (as
//! frozen rows, creator 0) and drops them from the chain; a page no row remains in is
//! removed. Catalog objects whose rows are gone for good lose their data first.

use crate::catalog::IndexDef;
use crate::codec::seal;
use crate::engine::{Inner, lock, meta_value};
use crate::error::{Result, StorageError};
use crate::keys::{
    META_GC_FLOOR, META_LAST_CN, META_LAST_TS, META_TIP_FLOOR, commitlog_key, delta_key, index_key,
    page_key, split_index_key, tip_key,
};
use crate::limits::PAGE_ROWS_MAX;
use crate::page::PageBuilder;
use crate::table::{PageMeta, RowSource, TableState, TableStore, Version, encode_page_meta};
use crate::tip::TxnState;
use scratchbird_types::{CommitNumber, IndexId, TxnId, Value};
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The horizon used.
    pub horizon: CommitNumber,
    /// Record versions removed (garbage or folded into pages).
    pub versions_removed: u64,
    /// Pages written by folds.
    pub pages_written: u64,
    /// Pages removed (rewritten, emptied, or left by a rolled-back bulk load).
    pub pages_removed: u64,
    /// Tables whose data was removed (dropped, or created by a rolled-back transaction).
    pub tables_removed: u64,
    /// Indexes whose entries were removed.
    pub indexes_removed: u64,
    /// Commit log records trimmed.
    pub log_records_trimmed: u64,
    /// Tables whose column statistics were computed again.
    pub stats_computed: u64,
}

const CHUNK_KEYS: usize = 1_024;

impl Inner {
    /// The chain without its garbage; returns what was removed.
    fn prune_chain(&self, chain: &mut Vec<Version>, h: CommitNumber) -> Vec<Version> {
        let settled = chain
            .iter()
            .rposition(|v| matches!(self.tip.state(v.txn), TxnState::Committed(cn) if cn <= h));
        let mut removed = Vec::new();
        let old = std::mem::take(chain);
        for (i, v) in old.into_iter().enumerate() {
            let rolled_back = self.tip.state(v.txn) == TxnState::RolledBack;
            if rolled_back || settled.is_some_and(|p| i < p) {
                removed.push(v);
            } else {
                chain.push(v);
            }
        }
        removed
    }

    fn is_settled(&self, txn: TxnId, h: CommitNumber) -> bool {
        matches!(self.tip.state(txn), TxnState::Committed(cn) if cn <= h)
    }

    /// Deletes the entries of the rows in `removed` (values of removed versions) that
    /// no remaining version of `key` (chain or base row) carries.
    pub(crate) fn remove_uncarried_index_entries(
        &self,
        store: &TableStore,
        st: &TableState,
        key: &[u8],
        removed: &[Vec<Value>],
        b: &mut fjall::OwnedWriteBatch,
    ) -> Result<()> {
        if store.index_defs().is_empty() || removed.is_empty() {
            return Ok(());
        }
        let mut remaining: Vec<Vec<Value>> = Vec::new();
        if let Some(chain) = st.delta.get(key) {
            for v in chain {
                if let Some(row) = &v.row {
                    remaining.push(store.row_values(&RowSource::Delta(row.clone()))?);
                }
            }
        }
        if let Some((creator, row)) = store.base_row(st, &self.pages(), key)?
            && self.tip.state(creator) != TxnState::RolledBack
        {
            remaining.push(store.row_values(&row)?);
        }
        self.remove_uncarried(store, key, removed, &remaining, b)
    }

    /// Deletes the entries of `removed` rows that none of the `remaining` rows of
    /// record `key` carries.
    fn remove_uncarried(
        &self,
        store: &TableStore,
        key: &[u8],
        removed: &[Vec<Value>],
        remaining: &[Vec<Value>],
        b: &mut fjall::OwnedWriteBatch,
    ) -> Result<()> {
        for idx in &store.index_defs() {
            let carried: HashSet<Vec<u8>> = remaining
                .iter()
                .map(|vals| store.index_key_of(idx, vals))
                .collect::<Result<_>>()?;
            for vals in removed {
                let ik = store.index_key_of(idx, vals)?;
                if !carried.contains(&ik) {
                    b.remove(&self.ks.index, index_key(idx.id, &ik, key)?);
                }
            }
        }
        Ok(())
    }

    /// Deletes every entry of an index.
    pub(crate) fn remove_index_entries(&self, index: IndexId) -> Result<()> {
        let mut b = self.db.batch();
        let mut n = 0usize;
        for kv in self.ks.index.prefix(index.as_bytes()) {
            b.remove(&self.ks.index, kv.key()?);
            n += 1;
            if n.is_multiple_of(4096) {
                self.write_batch(std::mem::replace(&mut b, self.db.batch()))?;
            }
        }
        self.write_batch(b)
    }

    /// Deletes a page, its directory entry and the index entries of its rows.
    pub(crate) fn remove_page(
        &self,
        store: &TableStore,
        first: &[u8],
        generation: u64,
        b: &mut fjall::OwnedWriteBatch,
    ) -> Result<()> {
        let pk = page_key(store.def.id, first);
        let indexes = store.index_defs();
        if !indexes.is_empty() {
            let pv = store.fetch_page(&self.pages(), first, generation)?;
            for i in 0..pv.rows() {
                let values = pv.values(i)?;
                for idx in &indexes {
                    let ik = store.index_key_of(idx, &values)?;
                    b.remove(&self.ks.index, index_key(idx.id, &ik, pv.key(i))?);
                }
            }
        }
        b.remove(&self.ks.pages, pk.clone());
        b.remove(&self.ks.pagedir, pk);
        Ok(())
    }

    /// Prunes the chains of `keys` if the table is not busy (readers call this after a
    /// batch; a sweep does the same work later if this is skipped).
    pub(crate) fn prune_cooperatively(&self, store: &Arc<TableStore>, keys: Vec<Vec<u8>>) {
        if self.check_writable().is_err() {
            return;
        }
        let h = CommitNumber(self.prune_floor.load(Ordering::SeqCst));
        let Ok(mut st) = store.state.try_write() else {
            return;
        };
        if let Err(e) = self.prune_keys(store, &mut st, &keys, h) {
            tracing::warn!(table = %store.def.name, error = %e, "cooperative garbage collection failed");
        }
    }

    fn prune_keys(
        &self,
        store: &TableStore,
        st: &mut TableState,
        keys: &[Vec<u8>],
        h: CommitNumber,
    ) -> Result<u64> {
        // Decide on copies, write, and only then change memory.
        let mut b = self.db.batch();
        let mut pruned: Vec<(&Vec<u8>, Vec<Version>, Vec<Version>)> = Vec::new();
        for key in keys {
            let Some(chain) = st.delta.get(key) else {
                continue;
            };
            let mut kept = chain.clone();
            let removed = self.prune_chain(&mut kept, h);
            if removed.is_empty() {
                continue;
            }
            let mut removed_rows = Vec::new();
            for v in &removed {
                b.remove(&self.ks.delta, delta_key(store.def.id, key, v.seq));
                if let Some(row) = &v.row {
                    removed_rows.push(store.row_values(&RowSource::Delta(row.clone()))?);
                }
            }
            if !store.index_defs().is_empty() && !removed_rows.is_empty() {
                let mut remaining = Vec::new();
                for v in &kept {
                    if let Some(row) = &v.row {
                        remaining.push(store.row_values(&RowSource::Delta(row.clone()))?);
                    }
                }
                if let Some((creator, row)) = store.base_row(st, &self.pages(), key)?
                    && self.tip.state(creator) != TxnState::RolledBack
                {
                    remaining.push(store.row_values(&row)?);
                }
                self.remove_uncarried(store, key, &removed_rows, &remaining, &mut b)?;
            }
            pruned.push((key, kept, removed));
        }
        if pruned.is_empty() {
            return Ok(0);
        }
        self.write_batch(b)?;
        let mut removed_total = 0u64;
        let mut freed = 0usize;
        for (key, kept, removed) in pruned {
            removed_total += removed.len() as u64;
            freed += removed.iter().map(Version::mem_bytes).sum::<usize>();
            if kept.is_empty() {
                st.delta.remove(key);
            } else if let Some(chain) = st.delta.get_mut(key) {
                *chain = kept;
            }
        }
        st.delta_bytes = st.delta_bytes.saturating_sub(freed);
        self.delta_bytes.fetch_sub(
            freed.min(self.delta_bytes.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        Ok(removed_total)
    }

    /// One full pass of garbage collection. Serialised: one sweep at a time.
    pub(crate) fn sweep(&self) -> Result<SweepReport> {
        let _one = lock(&self.sweep_lock);
        self.check_writable()?;
        let h = self.advance_horizon()?;
        // The floor is durable before anything it permits is removed: after a restart
        // no time travel below it is accepted.
        let mut b = self.db.batch();
        b.insert(&self.ks.meta, META_GC_FLOOR, meta_value(META_GC_FLOOR, h.0));
        self.write_batch(b)?;
        self.prune_floor.fetch_max(h.0, Ordering::SeqCst);
        let (tip_base, tip_states) = self.tip.snapshot();
        let mut report = SweepReport {
            horizon: h,
            ..SweepReport::default()
        };
        // The log goes first: a bulk page may be folded only once no retained log
        // record refers to it.
        self.trim_commit_log(h, &mut report)?;
        let sys_id = crate::catalog::system_table_id();
        let stores = self.stores();
        for store in stores.iter().filter(|s| s.def.id != sys_id) {
            self.sweep_table(store, h, &mut report)?;
            if self.refresh_stats(store)? {
                report.stats_computed += 1;
            }
        }
        self.forget_stats(&stores.iter().map(|s| s.def.id).collect())?;
        self.remove_dead_objects(h, &mut report)?;
        let sys = self.system_table()?;
        self.sweep_table(&sys, h, &mut report)?;
        self.advance_tip_floor(h, tip_base, &tip_states)?;
        Ok(report)
    }

    fn sweep_table(
        &self,
        store: &Arc<TableStore>,
        h: CommitNumber,
        report: &mut SweepReport,
    ) -> Result<()> {
        // Pages of rolled-back bulk loads.
        {
            let mut st = store.write();
            let dead: Vec<(Vec<u8>, u64)> = st
                .pages
                .iter()
                .filter(|(_, m)| self.tip.state(m.creator) == TxnState::RolledBack)
                .map(|(k, m)| (k.clone(), m.generation))
                .collect();
            if !dead.is_empty() {
                let mut b = self.db.batch();
                for (first, generation) in &dead {
                    self.remove_page(store, first, *generation, &mut b)?;
                }
                self.write_batch(b)?;
                for (first, _) in &dead {
                    st.pages.remove(first);
                }
                report.pages_removed += dead.len() as u64;
            }
        }
        // Garbage in chains, a chunk of keys at a time.
        let keys: Vec<Vec<u8>> = store.read().delta.keys().cloned().collect();
        for chunk in keys.chunks(CHUNK_KEYS) {
            let mut st = store.write();
            report.versions_removed += self.prune_keys(store, &mut st, chunk, h)?;
        }
        // Fold settled versions into pages, one page range at a time.
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut st = store.write();
            let Some((start, end)) = self.next_fold_range(&st, cursor.as_deref(), h) else {
                break;
            };
            cursor = end.clone();
            self.fold_range(store, &mut st, start.as_deref(), end.as_deref(), h, report)?;
            if end.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// The next page range at or after `from` that has a chain whose oldest version
    /// is settled, and whose page (if any) is settled too.
    fn next_fold_range(
        &self,
        st: &TableState,
        from: Option<&[u8]>,
        h: CommitNumber,
    ) -> Option<crate::table::KeyRange> {
        let lower = from.map_or(Bound::Unbounded, Bound::Included);
        for (key, chain) in st.delta.range::<[u8], _>((lower, Bound::Unbounded)) {
            let foldable = chain.first().is_some_and(|v| self.is_settled(v.txn, h));
            if !foldable {
                continue;
            }
            let (start, end) = match st.page_for(key) {
                Some((first, meta)) => {
                    if !(meta.creator == TxnId(0) || self.is_settled(meta.creator, h)) {
                        continue;
                    }
                    st.page_range(first)
                }
                None => (None, None),
            };
            return Some((start, end));
        }
        None
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn fold_range(
        &self,
        store: &Arc<TableStore>,
        st: &mut TableState,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        h: CommitNumber,
        report: &mut SweepReport,
    ) -> Result<()> {
        let lower = start.map_or(Bound::Unbounded, Bound::Included);
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        // Settled heads of chains in the range.
        let folded: Vec<(Vec<u8>, Version)> = st
            .delta
            .range::<[u8], _>((lower, upper))
            .filter_map(|(k, c)| {
                c.first()
                    .filter(|v| self.is_settled(v.txn, h))
                    .map(|v| (k.clone(), v.clone()))
            })
            .collect();
        if folded.is_empty() {
            return Ok(());
        }
        let old_first: Option<Vec<u8>> = match start {
            Some(s) => Some(s.to_vec()),
            None => st
                .pages
                .keys()
                .next()
                .filter(|k| end.is_none_or(|e| k.as_slice() < e))
                .cloned(),
        };
        let pv = match &old_first {
            Some(f) => {
                let generation = st
                    .pages
                    .get(f)
                    .map(|m| m.generation)
                    .ok_or(StorageError::Internal("fold of a page the directory lost"))?;
                Some(store.fetch_page(&self.pages(), f, generation)?)
            }
            None => None,
        };
        let target = self.config.page_target_bytes;
        let mut pages_out: Vec<(Vec<u8>, Vec<u8>, PageMeta)> = Vec::new();
        let mut builder = PageBuilder::new(&store.types);
        let mut first_of_builder: Option<Vec<u8>> = None;
        let mut flush = |builder: &mut PageBuilder, first: &mut Option<Vec<u8>>| -> Result<()> {
            if builder.rows() == 0 {
                return Ok(());
            }
            let full = std::mem::replace(builder, PageBuilder::new(&store.types));
            let last_key = full.last_key().map(<[u8]>::to_vec).unwrap_or_default();
            let rows =
                u32::try_from(full.rows()).map_err(|_| StorageError::Internal("page rows"))?;
            let bytes = full.finish(TxnId(0))?;
            let f = first
                .take()
                .ok_or(StorageError::Internal("page without first key"))?;
            let meta = PageMeta {
                creator: TxnId(0),
                generation: crate::table::next_generation(),
                rows,
                bytes: u32::try_from(bytes.len())
                    .map_err(|_| StorageError::Internal("page size"))?,
                last_key,
            };
            pages_out.push((f, bytes, meta));
            Ok(())
        };
        let mut push = |builder: &mut PageBuilder,
                        first: &mut Option<Vec<u8>>,
                        key: &[u8],
                        src: Src<'_>|
         -> Result<()> {
            if first.is_none() {
                *first = Some(key.to_vec());
            }
            match src {
                Src::Page(p, i) => builder.push_page_row(p, i)?,
                Src::Row(row) => builder.push_row(key, &store.layout.decode(row)?)?,
            }
            if builder.rows() >= PAGE_ROWS_MAX || builder.bytes() >= target {
                flush(builder, first)?;
            }
            Ok(())
        };
        let mut replaced_base: Vec<(Vec<u8>, Vec<Value>)> = Vec::new();
        let mut fi = folded.iter().peekable();
        let rows = pv.as_ref().map_or(0, |p| p.rows());
        for i in 0..rows {
            let Some(p) = pv.as_ref() else { break };
            let key = p.key(i);
            while let Some((fk, v)) = fi.next_if(|(fk, _)| fk.as_slice() < key) {
                if let Some(row) = &v.row {
                    push(&mut builder, &mut first_of_builder, fk, Src::Row(row))?;
                }
            }
            match fi.next_if(|(fk, _)| fk.as_slice() == key) {
                Some((fk, v)) => {
                    replaced_base.push((fk.clone(), p.values(i)?));
                    if let Some(row) = &v.row {
                        push(&mut builder, &mut first_of_builder, fk, Src::Row(row))?;
                    }
                }
                None => push(&mut builder, &mut first_of_builder, key, Src::Page(p, i))?,
            }
        }
        for (fk, v) in fi {
            if let Some(row) = &v.row {
                push(&mut builder, &mut first_of_builder, fk, Src::Row(row))?;
            }
        }
        flush(&mut builder, &mut first_of_builder)?;

        let mut b = self.db.batch();
        // One batch must not both remove and write a key (its items share one
        // sequence number): a rewritten page that keeps its first key is only written.
        if let Some(f) = old_first
            .as_ref()
            .filter(|f| !pages_out.iter().any(|(n, _, _)| n == *f))
        {
            let k = page_key(store.def.id, f);
            b.remove(&self.ks.pages, k.clone());
            b.remove(&self.ks.pagedir, k);
        }
        for (first, bytes, meta) in &pages_out {
            let k = page_key(store.def.id, first);
            b.insert(&self.ks.pagedir, k.clone(), encode_page_meta(&k, meta));
            b.insert(&self.ks.pages, k.clone(), seal(&k, bytes.clone()));
        }
        let mut freed = 0usize;
        for (fk, v) in &folded {
            b.remove(&self.ks.delta, delta_key(store.def.id, fk, v.seq));
            freed += v.mem_bytes();
        }
        // Index entries of replaced base rows that nothing carries after the fold:
        // what remains of the record is its folded version (the new base row) and the
        // chain above it.
        if !store.index_defs().is_empty() {
            let folded_by_key: HashMap<&[u8], &Version> =
                folded.iter().map(|(k, v)| (k.as_slice(), v)).collect();
            for (key, values) in &replaced_base {
                let mut remaining = Vec::new();
                if let Some(row) = folded_by_key
                    .get(key.as_slice())
                    .and_then(|v| v.row.clone())
                {
                    remaining.push(store.row_values(&RowSource::Delta(row))?);
                }
                for v in st.delta.get(key).into_iter().flatten().skip(1) {
                    if let Some(row) = &v.row {
                        remaining.push(store.row_values(&RowSource::Delta(row.clone()))?);
                    }
                }
                self.remove_uncarried(
                    store,
                    key,
                    std::slice::from_ref(values),
                    &remaining,
                    &mut b,
                )?;
            }
        }
        // The journal first; memory follows only what was written.
        self.write_batch(b)?;
        if let Some(f) = &old_first {
            st.pages.remove(f);
        }
        for (first, _, meta) in &pages_out {
            st.pages.insert(first.clone(), meta.clone());
        }
        for (fk, v) in &folded {
            if let Some(chain) = st.delta.get_mut(fk) {
                if chain.first().is_some_and(|c| c.seq == v.seq) {
                    chain.remove(0);
                }
                if chain.is_empty() {
                    st.delta.remove(fk);
                }
            }
        }
        st.delta_bytes = st.delta_bytes.saturating_sub(freed);
        self.delta_bytes.fetch_sub(
            freed.min(self.delta_bytes.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        report.versions_removed += folded.len() as u64;
        report.pages_written += pages_out.len() as u64;
        report.pages_removed += u64::from(old_first.is_some());
        Ok(())
    }

    /// Removes the data of catalog objects whose rows will be gone after this sweep
    /// (a drop at or below the horizon, or a creation that was rolled back). Runs
    /// before the system table is swept, so data never outlives its definition.
    fn remove_dead_objects(&self, h: CommitNumber, report: &mut SweepReport) -> Result<()> {
        let sys = self.system_table()?;
        let mut alive: HashSet<[u8; 16]> = HashSet::new();
        let mut dead: HashSet<[u8; 16]> = HashSet::new();
        {
            let st = sys.read();
            let id_of = |values: &[Value]| -> Option<[u8; 16]> {
                match values.first() {
                    Some(Value::Blob(b)) => b.as_slice().try_into().ok(),
                    _ => None,
                }
            };
            for (first, meta) in &st.pages {
                let pv = sys.fetch_page(&self.pages(), first, meta.generation)?;
                for i in 0..pv.rows() {
                    if let Some(id) = id_of(&pv.values(i)?) {
                        alive.insert(id);
                    }
                }
            }
            for (key, chain) in &st.delta {
                let live: Vec<&Version> = chain
                    .iter()
                    .filter(|v| self.tip.state(v.txn) != TxnState::RolledBack)
                    .collect();
                let id: Option<[u8; 16]> =
                    match scratchbird_types::key::decode_key(&sys.key_types, key) {
                        Ok(vals) => id_of(&vals),
                        Err(_) => None,
                    };
                let Some(id) = id else { continue };
                // A row really in a page (not just a key inside a page's span),
                // from a creator that did not roll back.
                let has_base = sys
                    .base_row(&st, &self.pages(), key)?
                    .is_some_and(|(creator, _)| self.tip.state(creator) != TxnState::RolledBack);
                let gone = match live.last() {
                    None => !has_base,
                    Some(newest) => newest.row.is_none() && self.is_settled(newest.txn, h),
                };
                if gone {
                    dead.insert(id);
                } else {
                    alive.insert(id);
                }
            }
        }
        let stores = self.stores();
        for store in stores {
            if store.def.id == sys.def.id {
                continue;
            }
            let dead_indexes: Vec<Arc<IndexDef>> = store
                .index_defs()
                .into_iter()
                .filter(|i| dead.contains(i.id.as_bytes()))
                .collect();
            for idx in &dead_indexes {
                self.remove_index_entries(idx.id)?;
                store
                    .indexes
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|i| i.id != idx.id);
                report.indexes_removed += 1;
            }
            if dead.contains(store.def.id.as_bytes()) {
                self.remove_table_data(&store)?;
                self.tables
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&store.def.id);
                report.tables_removed += 1;
            }
        }
        Ok(())
    }

    fn remove_table_data(&self, store: &TableStore) -> Result<()> {
        for idx in store.index_defs() {
            self.remove_index_entries(idx.id)?;
        }
        let mut st = store.write();
        let mut b = self.db.batch();
        for first in st.pages.keys() {
            let k = page_key(store.def.id, first);
            b.remove(&self.ks.pages, k.clone());
            b.remove(&self.ks.pagedir, k);
        }
        for (key, chain) in &st.delta {
            for v in chain {
                b.remove(&self.ks.delta, delta_key(store.def.id, key, v.seq));
            }
        }
        self.write_batch(b)?;
        self.delta_bytes.fetch_sub(
            st.delta_bytes.min(self.delta_bytes.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        *st = TableState::default();
        Ok(())
    }

    fn trim_commit_log(&self, h: CommitNumber, report: &mut SweepReport) -> Result<()> {
        let floor = self.log_floor.load(Ordering::SeqCst);
        if h.0 <= floor {
            return Ok(());
        }
        let mut b = self.db.batch();
        for kv in self
            .ks
            .commitlog
            .range(commitlog_key(CommitNumber(floor + 1))..=commitlog_key(h))
        {
            let (k, v) = kv.into_inner()?;
            let cn = CommitNumber(crate::keys::u64_key(&k)?);
            let (txn, _, _) = crate::engine::decode_commit_record(cn, &v)?;
            for kv in self.ks.txlog.prefix(txn.0.to_be_bytes()) {
                b.remove(&self.ks.txlog, kv.key()?);
            }
            b.remove(&self.ks.commitlog, k);
            report.log_records_trimmed += 1;
        }
        self.write_batch(b)?;
        self.log_floor.store(h.0, Ordering::SeqCst);
        Ok(())
    }

    /// Moves the inventory floor past transactions nothing needs any more: committed
    /// at or below the horizon, or rolled back before this sweep began (whose garbage
    /// this sweep removed).
    fn advance_tip_floor(&self, h: CommitNumber, base: u64, states: &[TxnState]) -> Result<()> {
        let mut floor = base;
        let mut rolled_back = Vec::new();
        for s in states {
            match s {
                TxnState::Committed(cn) if *cn <= h => {}
                TxnState::RolledBack => rolled_back.push(TxnId(floor)),
                _ => break,
            }
            floor += 1;
        }
        if floor == base {
            return Ok(());
        }
        let mut b = self.db.batch();
        for txn in rolled_back {
            for kv in self.ks.txlog.prefix(txn.0.to_be_bytes()) {
                b.remove(&self.ks.txlog, kv.key()?);
            }
        }
        for t in base..floor {
            b.remove(&self.ks.tip, tip_key(TxnId(t)));
        }
        b.insert(
            &self.ks.meta,
            META_TIP_FLOOR,
            meta_value(META_TIP_FLOOR, floor),
        );
        b.insert(
            &self.ks.meta,
            META_LAST_CN,
            meta_value(META_LAST_CN, self.visible().0),
        );
        // The inventory and the log may both be trimmed now: keep the newest commit
        // timestamp, so timestamps stay non-decreasing across restarts.
        let last_ts = lock(&self.commit).last_ts;
        b.insert(
            &self.ks.meta,
            META_LAST_TS,
            meta_value(META_LAST_TS, last_ts.cast_unsigned()),
        );
        self.write_batch(b)?;
        self.tip.advance_floor(floor);
        Ok(())
    }
}

enum Src<'a> {
    Page(&'a crate::page::Page, usize),
    Row(&'a [u8]),
}

/// An index entry: (index key, record key).
type IndexEntry = (Vec<u8>, Vec<u8>);

/// What `Storage::check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Pages read and checked.
    pub pages: u64,
    /// Rows in pages.
    pub page_rows: u64,
    /// Record versions in chains.
    pub versions: u64,
    /// Index entries checked.
    pub index_entries: u64,
    /// Problems found (empty: consistent).
    pub problems: Vec<String>,
}

impl Inner {
    /// Reads every page and stored version (checking checksums and structure) and
    /// checks that index entries and retained versions match one to one.
    pub(crate) fn check(&self) -> Result<IntegrityReport> {
        let mut report = IntegrityReport::default();
        for kv in self.ks.delta.iter() {
            let (k, v) = kv.into_inner()?;
            crate::table::decode_version(&k, &v)?;
            report.versions += 1;
        }
        let stores = self.stores();
        for store in stores {
            let st = store.read();
            let indexes = store.index_defs();
            let mut expected: HashMap<IndexId, HashSet<IndexEntry>> = HashMap::new();
            let mut add = |values: &[Value], rk: &[u8]| -> Result<()> {
                for idx in &indexes {
                    let ik = store.index_key_of(idx, values)?;
                    expected
                        .entry(idx.id)
                        .or_default()
                        .insert((ik, rk.to_vec()));
                }
                Ok(())
            };
            for (first, meta) in &st.pages {
                // Straight from the store, past the buffer pool: this reads the disk.
                let disk = crate::table::PageReader {
                    ks: &self.ks.pages,
                    cache: None,
                };
                let pv = store.fetch_page(&disk, first, meta.generation)?;
                report.pages += 1;
                report.page_rows += pv.rows() as u64;
                if pv.rows() as u32 != meta.rows || pv.creator() != meta.creator {
                    report.problems.push(format!(
                        "{}: page directory disagrees with page",
                        store.def.name
                    ));
                }
                if self.tip.state(meta.creator) == TxnState::RolledBack {
                    continue;
                }
                for i in 0..pv.rows() {
                    add(&pv.values(i)?, pv.key(i))?;
                }
            }
            for (key, chain) in &st.delta {
                for v in chain {
                    if self.tip.state(v.txn) == TxnState::RolledBack {
                        continue;
                    }
                    if let Some(row) = &v.row {
                        add(&store.row_values(&RowSource::Delta(row.clone()))?, key)?;
                    }
                }
            }
            for idx in &indexes {
                let want = expected.remove(&idx.id).unwrap_or_default();
                let mut have = HashSet::new();
                for kv in self.ks.index.prefix(idx.id.as_bytes()) {
                    let k = kv.key()?;
                    let (ik, rk) = split_index_key(&k)?;
                    have.insert((ik.to_vec(), rk.to_vec()));
                    report.index_entries += 1;
                }
                let missing = want.difference(&have).count();
                if missing > 0 {
                    report.problems.push(format!(
                        "index {} of {}: {missing} retained versions have no entry",
                        idx.name, store.def.name
                    ));
                }
                // Extra entries may belong to versions of rolled-back transactions not
                // yet swept; after a sweep there are none.
                let extra = have.difference(&want).count();
                if extra > 0 {
                    report.problems.push(format!(
                        "index {} of {}: {extra} entries match no retained version",
                        idx.name, store.def.name
                    ));
                }
            }
        }
        Ok(report)
    }
}
