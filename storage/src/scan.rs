//! Scans: a table (or a key range, or an index range) as columnar batches of the
//! requested columns, visibility already applied, written into a buffer the caller
//! provides (laid out by `scratchbird_types::batch::BatchLayout`).
//!
//! The fast path: where a page is visible and no version chain touches its key range,
//! each requested fixed-width column is copied as one run (values and validity bits)
//! straight from the page into the batch. Records with chains go one by one.

use crate::catalog::IndexDef;
use crate::engine::SnapshotGuard;
use crate::error::{Result, StorageError};
use crate::keys::split_index_key;
use crate::limits::{COOPERATIVE_GC_KEYS_MAX, PAGE_ROWS_MAX};
use crate::page::Page;
use crate::table::{ReadView, RowSource, TableStore, Version};
use crate::tip::TxnState;
use crate::txn::{Isolation, ReadCommittedMode, RecordKey, Transaction};
use scratchbird_types::IndexId;
use scratchbird_types::batch::{BatchLayout, BatchView, BatchWriter};
use scratchbird_types::key::{encode_key, prefix_successor};
use scratchbird_types::{SqlType, TableId, TxnId, Value};
use std::ops::Bound;
use std::sync::Arc;

/// Which records a scan reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanRange {
    /// Every record, in key order.
    All,
    /// Records whose primary key lies between the bounds. A bound may give a prefix
    /// of the key columns.
    Key {
        /// Lower bound.
        lower: Bound<Vec<Value>>,
        /// Upper bound.
        upper: Bound<Vec<Value>>,
    },
    /// Records whose index key lies between the bounds, in index order. A bound may
    /// give a prefix of the index columns.
    Index {
        /// The index.
        index: IndexId,
        /// Lower bound.
        lower: Bound<Vec<Value>>,
        /// Upper bound.
        upper: Bound<Vec<Value>>,
    },
    /// Records whose key (`index`: `None` the primary key, else that index's)
    /// begins with one of `points` (each a prefix of the key columns, all of
    /// one length), point after point in key order; a point given twice is
    /// read once. At most [`POINTS_MAX`] points.
    Points {
        /// The index, or `None` for the primary key.
        index: Option<IndexId>,
        /// The key prefixes.
        points: Vec<Vec<Value>>,
    },
}

/// Most points one [`ScanRange::Points`] scan may read.
pub const POINTS_MAX: usize = 1 << 20;

/// Decides which rows a selecting scan returns, before their columns are copied
/// (see [`Transaction::next_batch_where`]): a row filter over a few columns. A row
/// it rejects never reaches the output batch, which is filled with accepted rows up
/// to its capacity (rows, or heap), so batch boundaries depend only on the rows
/// returned.
pub trait RowSelect {
    /// Positions of the table columns [`RowSelect::select`] reads, in the column
    /// order of the batches it is given.
    fn columns(&self) -> &[usize];

    /// Decides every row of `candidates` (a batch of [`RowSelect::columns`]),
    /// pushing the verdicts onto `keep` (given empty) as a bitset: bit `r % 64`
    /// of word `r / 64` set keeps row `r`; `ceil(rows / 64)` words.
    ///
    /// # Errors
    /// The rows cannot be decided: the scan fails with [`StorageError::Selection`]
    /// carrying this message (the selector may keep a richer error of its own).
    fn select(
        &mut self,
        candidates: &BatchView<'_>,
        keep: &mut Vec<u64>,
    ) -> std::result::Result<(), String>;
}

/// Candidate rows of a selecting scan, as its selector reads them.
#[derive(Debug)]
struct Scratch {
    columns: Vec<usize>,
    types: Vec<SqlType>,
    layout: BatchLayout,
    buf: Vec<u8>,
    keep: Vec<u64>,
    /// The page run last decided (page, first row, rows), its kept rows (from the
    /// run's first row).
    run: Option<(Arc<Page>, usize, usize)>,
    picks: Vec<u32>,
}

/// What to scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSpec {
    /// The table.
    pub table: TableId,
    /// Positions of the columns to return, in output order.
    pub columns: Vec<usize>,
    /// Which records.
    pub range: ScanRange,
}

impl ScanSpec {
    /// Every record, these columns.
    #[must_use]
    pub fn full(table: TableId, columns: Vec<usize>) -> Self {
        Self {
            table,
            columns,
            range: ScanRange::All,
        }
    }
}

#[derive(Debug, Clone)]
enum Cursor {
    /// At the lower bound.
    Start,
    /// Just after this key (record key, or whole index entry key).
    After(Vec<u8>),
    /// At this key, inclusive.
    At(Vec<u8>),
}

/// A scan in progress. It keeps its snapshot until dropped.
#[derive(Debug)]
pub struct Scan<'t> {
    txn: &'t Transaction,
    cur: ScanCursor,
}

/// The state of a scan without a borrow of its transaction: it can live where a
/// borrow cannot (a sandbox's store). Advance it with [`Transaction::next_batch`]
/// on the transaction that opened it; it keeps its snapshot until dropped.
#[derive(Debug)]
pub struct ScanCursor {
    store: Arc<TableStore>,
    columns: Vec<usize>,
    out_types: Vec<SqlType>,
    view: ReadView,
    guard: Option<SnapshotGuard>,
    lo: Option<Vec<u8>>,
    hi: Option<Vec<u8>>,
    index: Option<Arc<IndexDef>>,
    cursor: Cursor,
    done: bool,
    /// The ranges `[lo, hi)` of the points still to read after the current
    /// one (a [`ScanRange::Points`] scan), next first.
    points: PointRanges,
    blocked: Option<TxnId>,
    gc: Vec<Vec<u8>>,
    /// Rows a selector decided and the scan went past, and how many of them it
    /// rejected.
    examined: u64,
    rejected: u64,
    scratch: Option<Box<Scratch>>,
    /// The output's variable-length columns (table positions).
    var_columns: Vec<usize>,
    /// The page the last batch ended in (its generation, and the row after
    /// the last one read when that row is where the cursor stands), so the
    /// next batch starts there without asking the buffer pool or searching
    /// the page for the cursor's key again.
    held: Option<(u64, Arc<Page>, Option<usize>)>,
}

/// Encodes scan bounds as the byte range `[lo, hi)`; the flag is set when the
/// bounds admit no key at all.
#[expect(
    clippy::type_complexity,
    reason = "a private helper's (lo, hi, empty) triple"
)]
fn bounds(
    types: &[SqlType],
    lower: &Bound<Vec<Value>>,
    upper: &Bound<Vec<Value>>,
) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>, bool)> {
    let enc = |v: &Vec<Value>| -> Result<Vec<u8>> {
        if v.len() > types.len() {
            return Err(StorageError::InvalidDefinition {
                object: "scan bound".into(),
                reason: "a bound has more values than the key has columns",
            });
        }
        let mut k = Vec::new();
        encode_key(types, v, &mut k)?;
        // a bound longer than any key could be is refused, not held
        crate::table::check_key_len(&k)?;
        Ok(k)
    };
    let mut empty = false;
    let lo = match lower {
        Bound::Unbounded => None,
        Bound::Included(v) => Some(enc(v)?),
        Bound::Excluded(v) => match prefix_successor(&enc(v)?) {
            Some(s) => Some(s),
            None => {
                empty = true;
                None
            }
        },
    };
    let hi = match upper {
        Bound::Unbounded => None,
        Bound::Included(v) => prefix_successor(&enc(v)?),
        Bound::Excluded(v) => Some(enc(v)?),
    };
    Ok((lo, hi, empty))
}

/// Byte ranges `[lo, hi)` (`None`: unbounded above) of a points scan.
type PointRanges = std::collections::VecDeque<(Vec<u8>, Option<Vec<u8>>)>;

/// The byte ranges `[lo, hi)` of `points` (key prefixes over `types`), in
/// key order, each once.
fn point_ranges(types: &[SqlType], points: &[Vec<Value>]) -> Result<PointRanges> {
    if points.len() > POINTS_MAX {
        return Err(StorageError::InvalidDefinition {
            object: "scan by points".into(),
            reason: "more points than a scan may read",
        });
    }
    let mut enc = Vec::with_capacity(points.len());
    for p in points {
        if p.is_empty() || p.len() > types.len() {
            return Err(StorageError::InvalidDefinition {
                object: "scan point".into(),
                reason: "a point needs between one value and as many as the key has columns",
            });
        }
        let mut k = Vec::new();
        encode_key(types, p, &mut k)?;
        crate::table::check_key_len(&k)?;
        enc.push(k);
    }
    enc.sort_unstable();
    enc.dedup();
    Ok(enc
        .into_iter()
        .map(|k| {
            let hi = prefix_successor(&k);
            (k, hi)
        })
        .collect())
}

impl<'t> Scan<'t> {
    pub(crate) fn new(txn: &'t Transaction, cur: ScanCursor) -> Self {
        Self { txn, cur }
    }

    /// Types of the returned columns, in output order.
    #[must_use]
    pub fn output_types(&self) -> &[SqlType] {
        &self.cur.out_types
    }

    /// A batch layout for this scan's columns.
    ///
    /// # Errors
    /// Out-of-range batch bounds.
    pub fn layout(&self, rows_max: u32, heap_bytes: u32) -> Result<BatchLayout> {
        self.cur.layout(rows_max, heap_bytes)
    }

    /// Fills `buf` with the next batch; returns its row count (0: the scan is over).
    ///
    /// # Errors
    /// A stored value failed its checks, a row is larger than the batch heap, the
    /// layout does not match the scan's columns, or (NO RECORD_VERSION) a conflict.
    pub fn next_batch(&mut self, layout: &BatchLayout, buf: &mut [u8]) -> Result<usize> {
        self.cur.fill(self.txn, layout, buf, None, None)
    }

    /// As [`Scan::next_batch`], also returning each row's record key (for updates and
    /// deletes of the rows found).
    ///
    /// # Errors
    /// As [`Scan::next_batch`].
    pub fn next_batch_with_keys(
        &mut self,
        layout: &BatchLayout,
        buf: &mut [u8],
        keys: &mut Vec<RecordKey>,
    ) -> Result<usize> {
        keys.clear();
        self.cur.fill(self.txn, layout, buf, Some(keys), None)
    }
}

impl ScanCursor {
    pub(crate) fn new(
        store: Arc<TableStore>,
        spec: ScanSpec,
        index: Option<Arc<IndexDef>>,
        view: ReadView,
        guard: Option<SnapshotGuard>,
    ) -> Result<Self> {
        let mut out_types = Vec::with_capacity(spec.columns.len());
        for &c in &spec.columns {
            out_types.push(*store.types.get(c).ok_or_else(|| StorageError::NotFound {
                kind: "column",
                name: format!("{}.#{c}", store.def.name),
            })?);
        }
        let mut ranges = std::collections::VecDeque::new();
        let (lo, hi, empty) = match (&spec.range, &index) {
            (ScanRange::All, _) => (None, None, false),
            (ScanRange::Key { lower, upper }, _) => bounds(&store.key_types, lower, upper)?,
            (ScanRange::Index { lower, upper, .. }, Some(idx)) => {
                bounds(&store.index_types(idx), lower, upper)?
            }
            (ScanRange::Index { .. }, None) => {
                return Err(StorageError::Internal("index scan without index"));
            }
            (ScanRange::Points { index: by, points }, idx) => {
                let types = match (by, idx) {
                    (None, _) => store.key_types.clone(),
                    (Some(_), Some(idx)) => store.index_types(idx),
                    (Some(_), None) => {
                        return Err(StorageError::Internal("index points without index"));
                    }
                };
                // the first point is taken from the queue like the rest
                ranges = point_ranges(&types, points)?;
                (None, None, true)
            }
        };
        let done = empty || matches!((&lo, &hi), (Some(l), Some(h)) if l >= h);
        let var_columns = spec
            .columns
            .iter()
            .zip(&out_types)
            .filter(|(_, t)| t.physical().fixed_width().is_none())
            .map(|(c, _)| *c)
            .collect();
        Ok(Self {
            store,
            columns: spec.columns,
            out_types,
            view,
            guard,
            lo,
            hi,
            index,
            cursor: Cursor::Start,
            done,
            points: ranges,
            blocked: None,
            gc: Vec::new(),
            examined: 0,
            rejected: 0,
            scratch: None,
            var_columns,
            held: None,
        })
    }

    /// Types of the returned columns, in output order.
    #[must_use]
    pub fn output_types(&self) -> &[SqlType] {
        &self.out_types
    }

    /// A batch layout for this scan's columns.
    ///
    /// # Errors
    /// Out-of-range batch bounds.
    pub fn layout(&self, rows_max: u32, heap_bytes: u32) -> Result<BatchLayout> {
        Ok(BatchLayout::new(&self.out_types, rows_max, heap_bytes)?)
    }

    /// The transaction this cursor belongs to.
    #[must_use]
    pub fn transaction(&self) -> TxnId {
        self.view.me
    }

    /// Of the rows selecting fills ([`Transaction::next_batch_where`]) have gone
    /// past so far: how many were decided, and how many of those were rejected.
    /// A row decided but left for the next batch (the batch was full) is counted
    /// once, when the scan goes past it.
    #[must_use]
    pub fn selected(&self) -> (u64, u64) {
        (self.examined, self.rejected)
    }

    /// Whether the last fill stopped early to wait for a transaction that is
    /// writing the next record (READ COMMITTED NO RECORD_VERSION): the batch may
    /// be short; the next fill waits, then goes on.
    #[must_use]
    pub fn waiting(&self) -> bool {
        self.blocked.is_some()
    }

    fn tally(&mut self, kept: bool) {
        self.examined += 1;
        if !kept {
            self.rejected += 1;
        }
    }

    /// The scratch batch for `sel`'s columns, holding at least `rows` rows and
    /// `heap` bytes of variable-length values (taken out of the cursor while used).
    fn take_scratch(
        &mut self,
        sel: &dyn RowSelect,
        rows: usize,
        heap: usize,
    ) -> Result<Box<Scratch>> {
        let rows = u32::try_from(rows.max(8).next_multiple_of(8))
            .map_err(|_| StorageError::Internal("selection run too long"))?;
        if let Some(sc) = self.scratch.take()
            && sc.columns == sel.columns()
            && sc.layout.rows_max() >= rows
            && sc.layout.heap_bytes() as usize >= heap
        {
            return Ok(sc);
        }
        let columns = sel.columns().to_vec();
        let mut types = Vec::with_capacity(columns.len());
        for &c in &columns {
            types.push(
                *self
                    .store
                    .types
                    .get(c)
                    .ok_or_else(|| StorageError::NotFound {
                        kind: "column",
                        name: format!("{}.#{c}", self.store.def.name),
                    })?,
            );
        }
        let rows = rows.max(u32::try_from(PAGE_ROWS_MAX).unwrap_or(u32::MAX));
        let heap = u32::try_from(heap.max(64 * 1024).next_power_of_two())
            .map_err(|_| StorageError::Internal("selection heap too large"))?;
        let layout = BatchLayout::new(&types, rows, heap)?;
        let buf = vec![0u8; layout.total_bytes()];
        Ok(Box::new(Scratch {
            columns,
            types,
            layout,
            buf,
            keep: Vec::new(),
            run: None,
            picks: Vec::new(),
        }))
    }

    /// Has `sel` decide the `rows` rows written into `sc`.
    fn decide(sc: &mut Scratch, sel: &mut dyn RowSelect, rows: usize) -> Result<()> {
        sc.keep.clear();
        let view = BatchView::new(&sc.layout, &sc.buf)?;
        sel.select(&view, &mut sc.keep)
            .map_err(StorageError::Selection)?;
        if sc.keep.len() != rows.div_ceil(64) {
            return Err(StorageError::Selection(format!(
                "the selector gave {} words of verdicts for {rows} rows",
                sc.keep.len()
            )));
        }
        // bits past the last row decide nothing
        if !rows.is_multiple_of(64)
            && let Some(last) = sc.keep.last_mut()
        {
            *last &= (1u64 << (rows % 64)) - 1;
        }
        Ok(())
    }

    /// Whether `sel` accepts the row `src` (not yet counted: see [`Self::tally`]).
    fn select_row(&mut self, src: &RowSource, sel: &mut dyn RowSelect) -> Result<bool> {
        let store = self.store.clone();
        let decoded = match src {
            RowSource::Delta(bytes) => Some(store.layout.decode(bytes)?),
            RowSource::Page(..) => None,
        };
        let mut heap = 0usize;
        for &c in sel.columns() {
            heap += row_raw(decoded.as_ref(), src, c)?.map_or(0, <[u8]>::len);
        }
        let mut sc = self.take_scratch(sel, 1, heap)?;
        sc.run = None;
        let r = (|| {
            let mut w = BatchWriter::new(&sc.layout, &mut sc.buf)?;
            if !put_row(&mut w, 0, decoded.as_ref(), src, &sc.columns, &sc.types)? {
                return Err(StorageError::Internal("selection scratch heap too small"));
            }
            w.finish(1)?;
            Self::decide(&mut sc, sel, 1)?;
            Ok(sc.keep.first().is_some_and(|w| w & 1 == 1))
        })();
        self.scratch = Some(sc);
        r
    }

    /// Copies the rows of page rows `[i, j)` that `sel` accepts to the output from
    /// row `at`. Returns how many page rows the scan went past, how many rows it
    /// wrote, and whether the output is full (rows or heap) before the run ended.
    /// The verdicts on a page run are kept: a batch that ends inside the run
    /// resumes from them instead of deciding the rest of the run again.
    #[expect(
        clippy::too_many_arguments,
        reason = "copy_run's arguments plus the selector and the run's end"
    )]
    fn copy_run_where(
        &mut self,
        w: &mut BatchWriter<'_>,
        p: &Arc<Page>,
        i: usize,
        j: usize,
        at: usize,
        keys: Option<&mut Vec<RecordKey>>,
        sel: &mut dyn RowSelect,
    ) -> Result<(usize, usize, bool)> {
        let k = j - i;
        if k == 0 {
            return Ok((0, 0, false));
        }
        let cached = self.scratch.as_ref().is_some_and(|sc| {
            sc.columns == sel.columns()
                && sc.run.as_ref().is_some_and(|(rp, start, len)| {
                    Arc::ptr_eq(rp, p) && *start <= i && i < start + len && j == start + len
                })
        });
        let sc = if cached {
            self.scratch
                .take()
                .ok_or(StorageError::Internal("selection scratch"))?
        } else {
            let heap: usize = sel.columns().iter().map(|&c| p.var_bytes(c, i, k)).sum();
            let mut sc = self.take_scratch(sel, k, heap)?;
            sc.run = None;
            let decided = (|| {
                let mut sw = BatchWriter::new(&sc.layout, &mut sc.buf)?;
                copy_page_run(&mut sw, p, &sc.columns, &sc.types, i, 0, k)?;
                sw.finish(k)?;
                Self::decide(&mut sc, sel, k)
            })();
            if let Err(e) = decided {
                self.scratch = Some(sc);
                return Err(e);
            }
            sc.picks.clear();
            for (wi, word) in sc.keep.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    sc.picks
                        .push(u32::try_from(wi * 64 + b).unwrap_or(u32::MAX));
                    bits &= bits - 1;
                }
            }
            sc.run = Some((p.clone(), i, k));
            sc
        };
        let r = self.copy_picks(w, p, i, k, at, keys, &sc);
        self.scratch = Some(sc);
        let (consumed, take, full) = r?;
        self.examined += consumed as u64;
        self.rejected += (consumed - take) as u64;
        Ok((consumed, take, full))
    }

    /// Copies the kept rows of page rows `[i, i + k)` (decided in `sc`'s run) to
    /// the output from row `at`, as many as fit. Returns the page rows gone past,
    /// the rows written, and whether the output is full.
    #[expect(
        clippy::too_many_arguments,
        reason = "a private step of copy_run_where"
    )]
    fn copy_picks(
        &self,
        w: &mut BatchWriter<'_>,
        p: &Page,
        i: usize,
        k: usize,
        at: usize,
        keys: Option<&mut Vec<RecordKey>>,
        sc: &Scratch,
    ) -> Result<(usize, usize, bool)> {
        let Some((_, start, len)) = &sc.run else {
            return Err(StorageError::Internal("selection run"));
        };
        let (start, len) = (*start, *len);
        let offset = i - start;
        let first = sc.picks.partition_point(|&a| (a as usize) < offset);
        let avail = sc.picks.get(first..).unwrap_or_default();
        let mut take = avail.len().min(w.layout().rows_max() as usize - at);
        if !self.var_columns.is_empty() {
            let free = w.heap_remaining();
            let mut used = 0usize;
            for (t, &a) in avail.iter().take(take).enumerate() {
                let need: usize = self
                    .var_columns
                    .iter()
                    .map(|&c| p.var_bytes(c, start + a as usize, 1))
                    .sum();
                if used + need > free {
                    take = t;
                    break;
                }
                used += need;
            }
        }
        let chosen = avail.get(..take).unwrap_or_default();
        for (out, (&c, ty)) in self.columns.iter().zip(&self.out_types).enumerate() {
            if ty.physical().fixed_width().is_some() {
                let values = p
                    .fixed_run(c, start, len)
                    .ok_or(StorageError::Internal("page run out of range"))?;
                w.gather_fixed(out, at, values, p.nulls(c), start, chosen)?;
            } else {
                let (offsets, data) = p
                    .var_run(c, start, len)
                    .ok_or(StorageError::Internal("page run out of range"))?;
                w.gather_var(out, at, offsets, data, p.nulls(c), start, chosen)?;
            }
        }
        if let Some(ks) = keys {
            ks.extend(
                chosen
                    .iter()
                    .map(|&a| RecordKey(p.key(start + a as usize).to_vec())),
            );
        }
        Ok(match avail.get(take) {
            Some(&a) => (a as usize - offset, take, true),
            None => (k, take, false),
        })
    }

    pub(crate) fn fill(
        &mut self,
        txn: &Transaction,
        layout: &BatchLayout,
        buf: &mut [u8],
        mut keys: Option<&mut Vec<RecordKey>>,
        mut sel: Option<&mut (dyn RowSelect + '_)>,
    ) -> Result<usize> {
        if layout.types() != self.out_types {
            return Err(StorageError::InvalidDefinition {
                object: "scan batch layout".into(),
                reason: "the layout's column types differ from the scan's columns",
            });
        }
        loop {
            if let Some(t) = self.blocked.take() {
                txn.wait_for(t, &self.store.def.name)?;
            }
            self.refresh_view(txn);
            let mut w = BatchWriter::new(layout, buf)?;
            let rows_max = layout.rows_max() as usize;
            let mut n = 0;
            loop {
                if self.done {
                    // the next point, if any, while the batch has room
                    if n == rows_max || self.blocked.is_some() || !self.next_point() {
                        break;
                    }
                }
                n = if self.index.is_some() {
                    self.fill_index(txn, &mut w, n, keys.as_deref_mut(), sel.as_deref_mut())?
                } else {
                    self.fill_keys(txn, &mut w, n, keys.as_deref_mut(), sel.as_deref_mut())?
                };
                if !self.done {
                    break;
                }
            }
            w.finish(n)?;
            if !self.gc.is_empty() {
                let keys = std::mem::take(&mut self.gc);
                txn.inner.prune_cooperatively(&self.store, keys);
            }
            if n == 0 && self.blocked.is_some() {
                continue;
            }
            return Ok(n);
        }
    }

    /// Moves to the next point of a [`ScanRange::Points`] scan; false when
    /// there is none.
    fn next_point(&mut self) -> bool {
        let Some((lo, hi)) = self.points.pop_front() else {
            return false;
        };
        self.lo = Some(lo);
        self.hi = hi;
        self.cursor = Cursor::Start;
        self.done = false;
        true
    }

    /// READ COMMITTED RECORD_VERSION / NO RECORD_VERSION read the newest commits at
    /// each batch; SNAPSHOT and READ CONSISTENCY keep one snapshot.
    fn refresh_view(&mut self, txn: &Transaction) {
        let fresh = matches!(
            txn.opts.isolation,
            Isolation::ReadCommitted(
                ReadCommittedMode::RecordVersion | ReadCommittedMode::NoRecordVersion
            )
        ) && self.guard.is_some();
        if fresh {
            let (cn, g) = txn.inner.current_snapshot();
            self.view = ReadView {
                me: self.view.me,
                snapshot: cn,
            };
            self.guard = Some(g);
        }
    }

    fn note_garbage(&mut self, txn: &Transaction, key: &[u8], chain: &[Version]) {
        if self.gc.len() >= COOPERATIVE_GC_KEYS_MAX {
            return;
        }
        let tip = &txn.inner.tip;
        let prunable = chain.len() > 1
            || chain
                .iter()
                .any(|v| tip.state(v.txn) == TxnState::RolledBack);
        if prunable {
            self.gc.push(key.to_vec());
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn fill_keys(
        &mut self,
        txn: &Transaction,
        w: &mut BatchWriter<'_>,
        from: usize,
        mut keys: Option<&mut Vec<RecordKey>>,
        mut sel: Option<&mut (dyn RowSelect + '_)>,
    ) -> Result<usize> {
        let store = self.store.clone();
        let inner = txn.inner.clone();
        let st = store.read();
        let rows_max = w.layout().rows_max() as usize;
        let mut n = from;
        while n < rows_max && !self.done {
            let pos: Bound<Vec<u8>> = match &self.cursor {
                Cursor::Start => self.lo.clone().map_or(Bound::Unbounded, Bound::Included),
                Cursor::After(k) => Bound::Excluded(k.clone()),
                Cursor::At(k) => Bound::Included(k.clone()),
            };
            let pos_key: Option<&[u8]> = match &pos {
                Bound::Included(k) | Bound::Excluded(k) => Some(k.as_slice()),
                Bound::Unbounded => None,
            };
            // The page whose range holds the position, and where that range ends.
            let seg = match pos_key {
                Some(k) => st.page_for(k),
                None => st.pages.iter().next(),
            }
            .map(|(f, m)| (f.clone(), m.clone()));
            let seg_end = match &seg {
                Some((first, _)) => st.page_range(first).1,
                None => None,
            };
            let end = match (&seg_end, &self.hi) {
                (Some(a), Some(b)) => Some(a.min(b).clone()),
                (a, b) => a.clone().or_else(|| b.clone()),
            };
            let (page, resume) = match &seg {
                Some((first, meta)) => match self.held.take() {
                    Some((g, p, resume)) if g == meta.generation => (Some(p), resume),
                    _ => (
                        Some(store.fetch_page(&inner.pages(), first, meta.generation)?),
                        None,
                    ),
                },
                None => (None, None),
            };
            let page_visible = seg
                .as_ref()
                .is_some_and(|(_, m)| self.view.sees(&inner.tip, m.creator));
            let (mut i, j) = match &page {
                Some(p) => {
                    // a page's rows lie in its range [first key, next page's first
                    // key): at either end of it there is nothing to search
                    let first = seg.as_ref().map(|(f, _)| f.as_slice());
                    let i = match &pos {
                        Bound::Unbounded => 0,
                        Bound::Included(k) if Some(k.as_slice()) == first => 0,
                        Bound::Included(k) => p.find(k).unwrap_or_else(|e| e),
                        // the row after the cursor's, where the last batch stopped
                        Bound::Excluded(k)
                            if resume.is_some_and(|r| r > 0 && p.key(r - 1) == k.as_slice()) =>
                        {
                            resume.unwrap_or(0)
                        }
                        Bound::Excluded(k) => p.find(k).map_or_else(|e| e, |i| i + 1),
                    };
                    let j = match &end {
                        None => p.rows(),
                        Some(e) if seg_end.as_ref() == Some(e) => p.rows(),
                        Some(e) => p.find(e).unwrap_or_else(|x| x),
                    };
                    (i, j.max(i))
                }
                None => (0, 0),
            };
            let end_bound = end.clone().map_or(Bound::Unbounded, Bound::Excluded);
            let delta: Vec<(&Vec<u8>, &Vec<Version>)> = st
                .delta
                .range::<Vec<u8>, _>((pos.clone(), end_bound.clone()))
                .collect();
            let mut stopped = false;
            if delta.is_empty()
                && page_visible
                && let Some(s) = sel.as_deref_mut()
            {
                if let Some(p) = &page {
                    let (consumed, written, full) =
                        self.copy_run_where(w, p, i, j, n, keys.as_deref_mut(), s)?;
                    if full && written == 0 && n == 0 {
                        return Err(row_too_large(w));
                    }
                    n += written;
                    i += consumed;
                    if full {
                        if consumed > 0 {
                            self.cursor = Cursor::After(p.key(i - 1).to_vec());
                        }
                        stopped = true;
                    }
                }
            } else if delta.is_empty() && page_visible {
                if let Some(p) = &page {
                    let k = self.fit_run(w, p, i, (j - i).min(rows_max - n));
                    if k == 0 && i < j {
                        if n == 0 {
                            return Err(row_too_large(w));
                        }
                        stopped = true;
                    } else if k > 0 {
                        self.copy_run(w, p, i, n, k, keys.as_deref_mut())?;
                        n += k;
                        i += k;
                        if i < j {
                            self.cursor = Cursor::After(p.key(i - 1).to_vec());
                            stopped = true;
                        }
                    }
                }
            } else {
                // Merge page rows [i, j) with the chains in the same key range.
                let mut d = delta.into_iter().peekable();
                loop {
                    if n == rows_max {
                        stopped = true;
                        break;
                    }
                    let pk = page.as_ref().filter(|_| i < j).map(|p| p.key(i));
                    let dk = d.peek().map(|(k, _)| k.as_slice());
                    let (key, from_page, chain) = match (pk, dk) {
                        (None, None) => break,
                        (Some(a), Some(b)) if b < a => {
                            let (k, c) =
                                d.next().map_or((b, None), |(k, c)| (k.as_slice(), Some(c)));
                            (k, false, c)
                        }
                        (Some(a), Some(b)) if b == a => {
                            let c = d.next().map(|(_, c)| c);
                            (a, true, c)
                        }
                        (Some(a), _) => (a, true, None),
                        (None, Some(b)) => {
                            let (k, c) =
                                d.next().map_or((b, None), |(k, c)| (k.as_slice(), Some(c)));
                            (k, false, c)
                        }
                    };
                    if txn.read_blocker(&st, key).is_some() {
                        self.blocked = txn.read_blocker(&st, key);
                        stopped = true;
                        break;
                    }
                    let source = match chain
                        .and_then(|c| c.iter().rev().find(|v| self.view.sees(&inner.tip, v.txn)))
                    {
                        Some(v) => v.row.clone().map(RowSource::Delta),
                        None if from_page && page_visible => {
                            page.clone().map(|p| RowSource::Page(p, i))
                        }
                        None => None,
                    };
                    if let Some(c) = chain {
                        self.note_garbage(txn, key, c);
                    }
                    if let Some(src) = &source {
                        let take = match sel.as_deref_mut() {
                            None => true,
                            Some(s) => self.select_row(src, s)?,
                        };
                        if take {
                            if !self.emit(w, n, src)? {
                                if n == 0 {
                                    return Err(row_too_large(w));
                                }
                                stopped = true;
                                break;
                            }
                            if let Some(ks) = keys.as_deref_mut() {
                                ks.push(RecordKey(key.to_vec()));
                            }
                            n += 1;
                        }
                        if sel.is_some() {
                            self.tally(take);
                        }
                    }
                    self.cursor = Cursor::After(key.to_vec());
                    if from_page {
                        i += 1;
                    }
                }
            }
            if !stopped {
                // This page's range is exhausted: continue at the next one.
                match end {
                    Some(e) if self.hi.as_ref().is_none_or(|h| e < *h) => {
                        self.cursor = Cursor::At(e)
                    }
                    _ => self.done = true,
                }
            } else {
                // Stopped: the batch is full (rows or heap), or a read must wait.
                if let (Some((_, meta)), Some(p)) = (&seg, page) {
                    self.held = Some((meta.generation, p, Some(i)));
                }
                break;
            }
        }
        Ok(n)
    }

    /// How many rows from `i` (at most `want`) fit the heap.
    fn fit_run(&self, w: &BatchWriter<'_>, p: &Page, i: usize, want: usize) -> usize {
        let free = w.heap_remaining();
        let need = |k: usize| -> usize {
            self.columns
                .iter()
                .zip(&self.out_types)
                .filter(|(_, t)| t.physical().fixed_width().is_none())
                .map(|(&c, _)| p.var_bytes(c, i, k))
                .sum()
        };
        if need(want) <= free {
            return want;
        }
        let (mut lo, mut hi) = (0usize, want);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if need(mid) <= free {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    fn copy_run(
        &self,
        w: &mut BatchWriter<'_>,
        p: &Page,
        i: usize,
        at: usize,
        k: usize,
        keys: Option<&mut Vec<RecordKey>>,
    ) -> Result<()> {
        copy_page_run(w, p, &self.columns, &self.out_types, i, at, k)?;
        if let Some(ks) = keys {
            ks.extend((i..i + k).map(|r| RecordKey(p.key(r).to_vec())));
        }
        Ok(())
    }

    /// Writes one row at `at`; `false` if its variable-length values do not fit.
    fn emit(&self, w: &mut BatchWriter<'_>, at: usize, src: &RowSource) -> Result<bool> {
        let decoded = match src {
            RowSource::Delta(bytes) => Some(self.store.layout.decode(bytes)?),
            RowSource::Page(..) => None,
        };
        put_row(w, at, decoded.as_ref(), src, &self.columns, &self.out_types)
    }

    fn fill_index(
        &mut self,
        txn: &Transaction,
        w: &mut BatchWriter<'_>,
        from: usize,
        mut keys: Option<&mut Vec<RecordKey>>,
        mut sel: Option<&mut (dyn RowSelect + '_)>,
    ) -> Result<usize> {
        let Some(idx) = self.index.clone() else {
            return Ok(from);
        };
        let store = self.store.clone();
        let inner = txn.inner.clone();
        let prefix = idx.id.as_bytes().to_vec();
        let with = |k: &[u8]| [prefix.as_slice(), k].concat();
        let start: Bound<Vec<u8>> = match &self.cursor {
            Cursor::Start | Cursor::At(_) => {
                Bound::Included(self.lo.as_deref().map_or_else(|| prefix.clone(), with))
            }
            Cursor::After(k) => Bound::Excluded(k.clone()),
        };
        let end: Bound<Vec<u8>> = match &self.hi {
            Some(h) => Bound::Excluded(with(h)),
            None => prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let st = store.read();
        let rows_max = w.layout().rows_max() as usize;
        let mut n = from;
        let mut exhausted = true;
        for kv in inner.ks.index.range((start, end)) {
            if n == rows_max {
                exhausted = false;
                break;
            }
            let k = kv.key()?;
            let (ik, rk) = split_index_key(&k)?;
            if let Some(t) = txn.read_blocker(&st, rk) {
                self.blocked = Some(t);
                exhausted = false;
                break;
            }
            let chain = st.delta.get(rk);
            if let Some(c) = chain {
                self.note_garbage(txn, rk, c);
            }
            if let Some(src) = store.visible_row(&st, &inner.pages(), &inner.tip, self.view, rk)? {
                // Entries exist for every retained version: keep the one that matches
                // the version this snapshot sees, so the result equals a table scan.
                // A record without versions above its page row has the entries of
                // that row alone (folding, pruning and undo remove the entries no
                // remaining version carries, in the batch that removes the version).
                let only_row = chain.is_none() && matches!(src, RowSource::Page(..));
                if only_row || store.index_key_of_row(&idx, &src)? == ik {
                    let take = match sel.as_deref_mut() {
                        None => true,
                        Some(s) => self.select_row(&src, s)?,
                    };
                    if take {
                        if !self.emit(w, n, &src)? {
                            if n == 0 {
                                return Err(row_too_large(w));
                            }
                            exhausted = false;
                            break;
                        }
                        if let Some(ks) = keys.as_deref_mut() {
                            ks.push(RecordKey(rk.to_vec()));
                        }
                        n += 1;
                    }
                    if sel.is_some() {
                        self.tally(take);
                    }
                }
            }
            self.cursor = Cursor::After(k.to_vec());
        }
        if exhausted {
            self.done = true;
        }
        Ok(n)
    }
}

/// Copies page rows `[i, i + k)` of table columns `cols` (types `types`) to output
/// rows from `at`, a run per column.
fn copy_page_run(
    w: &mut BatchWriter<'_>,
    p: &Page,
    cols: &[usize],
    types: &[SqlType],
    i: usize,
    at: usize,
    k: usize,
) -> Result<()> {
    for (out, (&c, ty)) in cols.iter().zip(types).enumerate() {
        if ty.physical().fixed_width().is_some() {
            let values = p
                .fixed_run(c, i, k)
                .ok_or(StorageError::Internal("page run out of range"))?;
            w.copy_fixed_run(out, at, values, p.validity(c), i, k)?;
        } else {
            let (offsets, data) = p
                .var_run(c, i, k)
                .ok_or(StorageError::Internal("page run out of range"))?;
            w.copy_var_run(out, at, offsets, data, p.validity(c), i, k)?;
        }
    }
    Ok(())
}

/// The stored bytes of column `c` of row `src` (`decoded`: the row, when it is a
/// delta version); `None` for NULL.
fn row_raw<'a>(
    decoded: Option<&'a scratchbird_types::row::RowRef<'a>>,
    src: &'a RowSource,
    c: usize,
) -> Result<Option<&'a [u8]>> {
    match (decoded, src) {
        (Some(r), _) => Ok(r.raw(c)?),
        (None, RowSource::Page(p, i)) => Ok(p.raw(c, *i)),
        (None, RowSource::Delta(_)) => Ok(None),
    }
}

/// Writes table columns `cols` (types `types`) of row `src` at output row `at`;
/// `false` if its variable-length values do not fit the heap.
fn put_row(
    w: &mut BatchWriter<'_>,
    at: usize,
    decoded: Option<&scratchbird_types::row::RowRef<'_>>,
    src: &RowSource,
    cols: &[usize],
    types: &[SqlType],
) -> Result<bool> {
    let mut need = 0usize;
    for (&c, ty) in cols.iter().zip(types) {
        if ty.physical().fixed_width().is_none() {
            need += row_raw(decoded, src, c)?.map_or(0, <[u8]>::len);
        }
    }
    if need > w.heap_remaining() {
        return Ok(false);
    }
    for (out, (&c, ty)) in cols.iter().zip(types).enumerate() {
        match (row_raw(decoded, src, c)?, ty.physical().fixed_width()) {
            (None, _) => w.set_null(out, at)?,
            (Some(b), Some(_)) => w.set_fixed(out, at, b)?,
            (Some(b), None) => w.set_bytes(out, at, b)?,
        }
    }
    Ok(true)
}

fn row_too_large(w: &BatchWriter<'_>) -> StorageError {
    StorageError::LimitExceeded {
        limit: "batch heap_bytes (a row's variable-length values must fit one batch)",
        max: u64::from(w.layout().heap_bytes()),
        needed: u64::from(w.layout().heap_bytes()) + 1,
    }
}

/// Scans `table` fully and returns the rows as values (for tests and small tables).
///
/// # Errors
/// As [`Scan::next_batch`].
pub fn collect_rows(txn: &Transaction, table: TableId) -> Result<Vec<Vec<Value>>> {
    let (def, _) = txn.table_for(table)?;
    let cols: Vec<usize> = (0..def.columns.len()).collect();
    let mut scan = txn.scan(ScanSpec::full(table, cols))?;
    let layout = scan.layout(1024, 1 << 20)?;
    let mut buf = vec![0u8; layout.total_bytes()];
    let mut out = Vec::new();
    loop {
        let n = scan.next_batch(&layout, &mut buf)?;
        if n == 0 {
            break;
        }
        let view = scratchbird_types::batch::BatchView::new(&layout, &buf)?;
        for r in 0..n {
            out.push(view.row(r)?);
        }
    }
    Ok(out)
}
