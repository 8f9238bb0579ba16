//! One table's records: pages (folded, columnar) plus version chains (recent writes).
//!
//! A record is identified by its key (the encoded primary key, or a hidden row number).
//! Its versions, newest last, live in the delta (in memory, backed by the `delta`
//! keyspace); below them may sit a base row in a page. A reader walks the chain from
//! the newest version and takes the first its snapshot sees; if none, the base row,
//! if its page is visible. Pages cover contiguous key ranges: page i covers
//! `[first_i, first_{i+1})`, and the first page also covers every key below it.

use crate::catalog::{IndexDef, TableDef};
use crate::codec::{Reader, corrupt, seal, unseal};
use crate::error::{Result, StorageError};
use crate::keys::page_key;
use crate::page::{Page, PageBuf};
use crate::pagedir::PageDir;
use crate::tip::{Tip, TxnState};
use scratchbird_types::key::encode_key;
use scratchbird_types::row::RowLayout;
use scratchbird_types::{CommitNumber, SqlType, TxnId, Value};
use std::collections::BTreeMap;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One record version in a chain.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    /// Creation order (unique per store).
    pub seq: u64,
    /// The transaction that wrote it.
    pub txn: TxnId,
    /// The row, or `None` for a deletion.
    pub row: Option<Arc<[u8]>>,
}

impl Version {
    pub(crate) fn mem_bytes(&self) -> usize {
        64 + self.row.as_ref().map_or(0, |r| r.len())
    }
}

/// What the directory knows of a page.
#[derive(Debug, Clone)]
pub(crate) struct PageMeta {
    /// 0 for a folded page; else the bulk-loading transaction.
    pub creator: TxnId,
    pub rows: u32,
    pub bytes: u32,
    pub last_key: Vec<u8>,
    /// In memory only: a number no other page write has, so a scan can tell that the
    /// page it holds is still the one the directory names.
    pub generation: u64,
}

static PAGE_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A fresh page generation number.
pub(crate) fn next_generation() -> u64 {
    PAGE_GENERATION.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn encode_page_meta(key: &[u8], m: &PageMeta) -> Vec<u8> {
    let mut p = Vec::with_capacity(20 + m.last_key.len());
    p.extend_from_slice(&m.creator.0.to_le_bytes());
    p.extend_from_slice(&m.rows.to_le_bytes());
    p.extend_from_slice(&m.bytes.to_le_bytes());
    p.extend_from_slice(&m.last_key);
    seal(key, p)
}

pub(crate) fn decode_page_meta(key: &[u8], value: &[u8]) -> Result<PageMeta> {
    let p = unseal("page directory entry", key, value)?;
    let mut r = Reader::new("page directory entry", p);
    let creator = TxnId(r.u64()?);
    let rows = r.u32()?;
    let bytes = r.u32()?;
    let last_key = p.get(16..).unwrap_or(&[]).to_vec();
    Ok(PageMeta {
        creator,
        rows,
        bytes,
        last_key,
        generation: next_generation(),
    })
}

/// A stored version: `[txn u64][flag u8: 1 row, 0 deletion][row bytes]`, sealed.
pub(crate) fn encode_version(key: &[u8], txn: TxnId, row: Option<&[u8]>) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + row.map_or(0, <[u8]>::len));
    p.extend_from_slice(&txn.0.to_le_bytes());
    p.push(u8::from(row.is_some()));
    if let Some(r) = row {
        p.extend_from_slice(r);
    }
    seal(key, p)
}

pub(crate) fn decode_version(key: &[u8], value: &[u8]) -> Result<(TxnId, Option<Vec<u8>>)> {
    let p = unseal("record version", key, value)?;
    let mut r = Reader::new("record version", p);
    let txn = TxnId(r.u64()?);
    let flag = r.u8()?;
    let row = p.get(9..).unwrap_or(&[]);
    match flag {
        0 if row.is_empty() => Ok((txn, None)),
        1 => Ok((txn, Some(row.to_vec()))),
        _ => Err(corrupt("record version", key, "bad row flag")),
    }
}

/// What a reader sees: its own writes, and the transactions committed at or below
/// its snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadView {
    pub me: TxnId,
    pub snapshot: CommitNumber,
}

impl ReadView {
    pub(crate) fn sees(&self, tip: &Tip, txn: TxnId) -> bool {
        txn == self.me || matches!(tip.state(txn), TxnState::Committed(cn) if cn <= self.snapshot)
    }
}

/// A key range `[start, end)`; `None` is unbounded.
pub(crate) type KeyRange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The mutable part of a table, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    pub pages: PageDir,
    pub delta: BTreeMap<Vec<u8>, Vec<Version>>,
    pub delta_bytes: usize,
}

impl TableState {
    /// The first key of the page whose range holds `key`, if there are pages.
    pub(crate) fn page_for(&self, key: &[u8]) -> Option<(&Vec<u8>, &PageMeta)> {
        self.pages.at_or_before(key).or_else(|| self.pages.first())
    }

    /// The first key of the page that may hold `key` as a row (not only cover it).
    pub(crate) fn page_holding(&self, key: &[u8]) -> Option<(&Vec<u8>, &PageMeta)> {
        self.pages
            .at_or_before(key)
            .filter(|(_, m)| m.last_key.as_slice() >= key)
    }

    /// The key range `[start, end)` covered by the page starting at `first` (`None`:
    /// unbounded), where the first page covers everything below it.
    pub(crate) fn page_range(&self, first: &[u8]) -> KeyRange {
        let is_first = self
            .pages
            .first()
            .is_some_and(|(k, _)| k.as_slice() == first);
        let start = if is_first { None } else { Some(first.to_vec()) };
        (start, self.pages.next_first(first).cloned())
    }
}

/// A table's store.
#[derive(Debug)]
pub(crate) struct TableStore {
    pub def: Arc<TableDef>,
    pub types: Vec<SqlType>,
    pub types_shared: Arc<[SqlType]>,
    pub key_types: Vec<SqlType>,
    pub layout: RowLayout,
    /// Pages and chains. Shared with the store of the same table under an
    /// ALTER TABLE's new definition ([`TableStore::redefined`]).
    pub state: Arc<RwLock<TableState>>,
    /// Every index that physically exists for this table: created (even if not yet
    /// committed) and not yet removed by sweep. Writers maintain all of them.
    pub indexes: Arc<RwLock<Vec<Arc<IndexDef>>>>,
    pub next_rowid: Arc<AtomicU64>,
    /// Per column: its domain's CHECK (name and parsed expression), if any. A
    /// stored CHECK this build cannot parse (written before CHECKs were
    /// validated) keeps the reason: writes to the column are refused with it,
    /// reads go on, and the directory still opens.
    pub checks: Vec<Option<(String, std::result::Result<crate::check::Check, String>)>>,
    /// The table's own CHECK constraints: name and parsed expression (or why
    /// a stored one does not parse: writes are then refused with it).
    pub table_checks: Vec<(String, std::result::Result<crate::check::Check, String>)>,
}

/// Where pages are read from: the store, through the buffer pool (`cache: None`
/// bypasses it, for integrity checks that must read the disk).
#[derive(Clone, Copy)]
pub(crate) struct PageReader<'a> {
    pub ks: &'a fjall::Keyspace,
    pub cache: Option<&'a crate::page::PageCache>,
}

/// A row read from a table: from a chain (owned bytes) or a page.
#[derive(Debug, Clone)]
pub(crate) enum RowSource {
    Delta(Arc<[u8]>),
    Page(Arc<Page>, usize),
}

impl TableStore {
    pub(crate) fn new(def: Arc<TableDef>) -> Result<Self> {
        let checks = def
            .columns
            .iter()
            .map(|c| {
                c.check
                    .as_ref()
                    .map(|cc| (cc.domain.clone(), crate::check::Check::parse(&cc.expr)))
            })
            .collect();
        let table_checks = def
            .checks
            .iter()
            .map(|k| (k.name.clone(), crate::check::Check::parse_in(&k.expr, &def)))
            .collect();
        Ok(Self {
            checks,
            table_checks,
            types: def.types(),
            types_shared: Arc::from(def.types()),
            key_types: def.key_types(),
            layout: def.row_layout()?,
            def,
            state: Arc::new(RwLock::new(TableState::default())),
            indexes: Arc::new(RwLock::new(Vec::new())),
            next_rowid: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The same table's store under the definition `def`: another name,
    /// default, nullability or constraint, never another row layout. It
    /// shares this store's pages, chains, indexes and row numbers.
    pub(crate) fn redefined(&self, def: Arc<TableDef>) -> Result<Self> {
        let mut next = Self::new(def)?;
        if next.def.id != self.def.id || next.types != self.types {
            return Err(StorageError::Internal(
                "a redefinition that changes the table's id or row layout",
            ));
        }
        next.state = self.state.clone();
        next.indexes = self.indexes.clone();
        next.next_rowid = self.next_rowid.clone();
        Ok(next)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TableState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, TableState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn index_defs(&self) -> Vec<Arc<IndexDef>> {
        self.indexes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The record key of a row with these values (primary key tables only).
    pub(crate) fn key_of_values(&self, values: &[Value]) -> Result<Vec<u8>> {
        let pk: Vec<Value> = self
            .def
            .primary_key
            .iter()
            .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        self.encode_pk(&pk)
    }

    /// The record key for primary key values.
    pub(crate) fn encode_pk(&self, pk: &[Value]) -> Result<Vec<u8>> {
        if pk.len() != self.key_types.len() {
            return Err(StorageError::InvalidDefinition {
                object: format!("key of table {}", self.def.name),
                reason: "the number of key values differs from the number of primary key columns",
            });
        }
        let mut k = Vec::new();
        encode_key(&self.key_types, pk, &mut k)?;
        check_key_len(&k)?;
        Ok(k)
    }

    /// The page starting at `first` with directory generation `generation`: from the
    /// buffer pool, or read from the store (seal and structure checked) and pooled.
    pub(crate) fn fetch_page(
        &self,
        pages: &PageReader<'_>,
        first: &[u8],
        generation: u64,
    ) -> Result<Arc<Page>> {
        if let Some(cache) = pages.cache
            && let Some(p) = cache.get(generation)
        {
            return Ok(p);
        }
        let k = page_key(self.def.id, first);
        let raw = pages.ks.get(&k)?.ok_or_else(|| {
            corrupt(
                "page directory",
                &k,
                &format!("names a page of {} that is not stored", self.def.name),
            )
        })?;
        let payload_len = unseal("page", &k, &raw)?.len();
        let page = Arc::new(Page::parse(
            self.types_shared.clone(),
            PageBuf::new(raw, payload_len),
        )?);
        if let Some(cache) = pages.cache {
            cache.insert(generation, page.clone());
        }
        Ok(page)
    }

    /// The base row of `key`, if a page holds it (visibility not checked).
    pub(crate) fn base_row(
        &self,
        st: &TableState,
        pages: &PageReader<'_>,
        key: &[u8],
    ) -> Result<Option<(TxnId, RowSource)>> {
        let Some((first, meta)) = st.page_holding(key) else {
            return Ok(None);
        };
        let creator = meta.creator;
        let page = self.fetch_page(pages, first, meta.generation)?;
        match page.find(key) {
            Ok(i) => Ok(Some((creator, RowSource::Page(page, i)))),
            Err(_) => Ok(None),
        }
    }

    /// The row `view` sees for `key`, if any.
    pub(crate) fn visible_row(
        &self,
        st: &TableState,
        pages: &PageReader<'_>,
        tip: &Tip,
        view: ReadView,
        key: &[u8],
    ) -> Result<Option<RowSource>> {
        if let Some(chain) = st.delta.get(key)
            && let Some(v) = chain.iter().rev().find(|v| view.sees(tip, v.txn))
        {
            return Ok(v.row.clone().map(RowSource::Delta));
        }
        match self.base_row(st, pages, key)? {
            Some((creator, row)) if view.sees(tip, creator) => Ok(Some(row)),
            _ => Ok(None),
        }
    }

    /// The values of a row.
    pub(crate) fn row_values(&self, row: &RowSource) -> Result<Vec<Value>> {
        match row {
            RowSource::Delta(bytes) => Ok(self.layout.decode(bytes)?.values()?),
            RowSource::Page(page, i) => page.values(*i),
        }
    }

    /// The index key of row `row` for `index`, reading only the index's
    /// columns of a page row.
    pub(crate) fn index_key_of_row(&self, index: &IndexDef, row: &RowSource) -> Result<Vec<u8>> {
        match row {
            RowSource::Delta(_) => self.index_key_of(index, &self.row_values(row)?),
            RowSource::Page(page, i) => self.index_key_with(index, |c| page.value(c, *i)),
        }
    }

    /// The index key of a row for `index`, `None` if a key column is NULL and the
    /// index is unique (NULLs never collide).
    pub(crate) fn index_key_of(&self, index: &IndexDef, values: &[Value]) -> Result<Vec<u8>> {
        self.index_key_with(index, |c| Ok(values.get(c).cloned().unwrap_or(Value::Null)))
    }

    /// The types of `index`'s columns, in key order.
    pub(crate) fn index_types(&self, index: &IndexDef) -> Vec<SqlType> {
        index
            .columns
            .iter()
            .filter_map(|&c| self.types.get(c).copied())
            .collect()
    }

    /// The index key for `index` of the row whose column `c` is `value_of(c)`.
    fn index_key_with(
        &self,
        index: &IndexDef,
        value_of: impl Fn(usize) -> Result<Value>,
    ) -> Result<Vec<u8>> {
        let vals = index
            .columns
            .iter()
            .map(|&c| value_of(c))
            .collect::<Result<Vec<Value>>>()?;
        let mut k = Vec::new();
        encode_key(&self.index_types(index), &vals, &mut k)?;
        check_key_len(&k)?;
        Ok(k)
    }
}

/// Whether an index key has a NULL in it (it then takes part in no uniqueness check).
pub(crate) fn has_null(index: &IndexDef, values: &[Value]) -> bool {
    index
        .columns
        .iter()
        .any(|&c| values.get(c).is_none_or(Value::is_null))
}

pub(crate) fn check_key_len(k: &[u8]) -> Result<()> {
    if k.len() > crate::limits::KEY_MAX_BYTES {
        return Err(StorageError::LimitExceeded {
            limit: "KEY_MAX_BYTES",
            max: crate::limits::KEY_MAX_BYTES as u64,
            needed: k.len() as u64,
        });
    }
    Ok(())
}

/// Allocates the hidden row number of a new record of a keyless table.
pub(crate) fn next_rowid_key(store: &TableStore) -> Vec<u8> {
    store
        .next_rowid
        .fetch_add(1, Ordering::SeqCst)
        .to_be_bytes()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnCheck, system_table_def};

    /// A stored CHECK this build cannot parse does not keep the table from
    /// opening; it is kept as the reason its writes are refused.
    #[test]
    fn a_check_that_does_not_parse_is_kept_as_its_reason() {
        let mut def = system_table_def();
        if let Some(c) = def.columns.get_mut(2) {
            c.check = Some(ColumnCheck {
                domain: "legacy".into(),
                expr: "VALUE ~ 'x'".into(),
            });
        }
        let store = TableStore::new(Arc::new(def)).unwrap();
        match store.checks.get(2) {
            Some(Some((domain, Err(reason)))) => {
                assert_eq!(domain, "legacy");
                assert!(reason.contains("unexpected character"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
