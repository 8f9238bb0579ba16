//! The security bundle inside the host functions. A scan applies, in this order and
//! before a byte reaches guest memory: MVCC visibility (storage), the table grant,
//! column security (a referenced column the principal may not read fails the
//! subplan), the row predicate, and masks. A write applies the grant, re-checks that
//! a row an update or delete names is one the principal can see, and the write
//! predicate on every new row version.
//!
//! What the guest can observe depends only on visible rows: a scan hands it batches
//! filled with visible rows up to the batch's capacity (never a short batch because
//! hidden rows took the space), counts only visible rows, and a key naming a hidden
//! row behaves as a key naming no row.

use crate::error::HostError;
use scratchbird_policy::derive::{
    Deriver, Enforcement, RowFilter, SchemaAction, SchemaObject, SecurityContext,
    may_change_schema, may_inspect,
};
use scratchbird_policy::ir::Rows;
use scratchbird_policy::mask::{MaskFn, MaskKey};
use scratchbird_storage::catalog::{Catalog, TableDef};
use scratchbird_storage::scan::{RowSelect, ScanCursor};
use scratchbird_storage::{RecordKey, StorageError, Transaction};
use scratchbird_types::batch::{BatchLayout, BatchView};
use scratchbird_types::row::{RawValue, value_bytes_for};
use scratchbird_types::{BundleHash, SqlType, Value};
use std::sync::Arc;

/// Who an execution runs for.
#[derive(Debug, Clone)]
pub enum Access {
    /// The owner of the data directory on this machine (`sb sql --local` without a
    /// bundle, tests of the engine itself): nothing is enforced. A node serving
    /// the network never runs a query this way.
    Owner,
    /// A principal under a security bundle: every scan and write goes through it.
    Principal(Arc<Principal>),
}

/// A principal bound to a bundle, as one transaction's immutable security context.
#[derive(Debug)]
pub struct Principal {
    deriver: Arc<Deriver>,
    ctx: SecurityContext,
    mask_key: MaskKey,
}

impl Principal {
    /// `ctx` under the bundle of `deriver`; `cluster_secret` keys tokenising masks.
    #[must_use]
    pub fn new(deriver: Arc<Deriver>, ctx: SecurityContext, cluster_secret: &[u8; 32]) -> Self {
        let mask_key = MaskKey::for_bundle(cluster_secret, &deriver.bundle().hash());
        Self {
            deriver,
            ctx,
            mask_key,
        }
    }

    /// The principal, as Cedar names it (`User::"alice"`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.ctx.principal
    }

    /// The hash of the bundle enforced.
    #[must_use]
    pub fn bundle_hash(&self) -> BundleHash {
        self.deriver.bundle().hash()
    }

    /// Why the bundle singles out column `column` of `table` (see
    /// [`scratchbird_policy::Bundle::names_column`]), if it does.
    #[must_use]
    pub fn bundle_names_column(&self, table: &str, column: &str) -> Option<String> {
        self.deriver.bundle().names_column(table, column)
    }

    /// Why the bundle singles out table `table` (see
    /// [`scratchbird_policy::Bundle::names_table`]), if it does.
    #[must_use]
    pub fn bundle_names_table(&self, table: &str) -> Option<String> {
        self.deriver.bundle().names_table(table)
    }

    /// The security context.
    #[must_use]
    pub fn context(&self) -> &SecurityContext {
        &self.ctx
    }

    /// Whether the bundle lets this principal make the schema change `action`
    /// on `object`, and the `@record` reasons of the policies that permitted it.
    ///
    /// # Errors
    /// The bundle could not decide (an unknown principal, a context that does
    /// not fit).
    pub fn may_change_schema(
        &self,
        action: SchemaAction,
        object: SchemaObject<'_>,
    ) -> Result<(bool, Vec<String>), HostError> {
        may_change_schema(self.deriver.bundle(), &self.ctx, action, object)
            .map_err(|e| HostError::policy(format!("{} {object}", action.name()), e))
    }

    /// Whether the bundle lets this principal see how many rows of every
    /// table of `tables` its row policy hid and how many values masks
    /// changed (`Inspect` on each).
    ///
    /// # Errors
    /// As [`Principal::may_change_schema`].
    pub fn may_inspect<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a str>,
    ) -> Result<bool, HostError> {
        for t in tables {
            let ok = may_inspect(self.deriver.bundle(), &self.ctx, t)
                .map_err(|e| HostError::policy(format!("Inspect Table::{t:?}"), e))?;
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What the bundle enforces for this principal on `def` (derived once per
    /// context and table, then cached by the deriver).
    /// Whether this principal sees every row of table `def` and reads the
    /// columns at `columns` unmasked: what a schema change whose outcome
    /// depends on every row's values of those columns (a constraint added
    /// over the rows held) may tell only such a principal.
    ///
    /// # Errors
    /// The bundle could not decide.
    pub fn sees_whole(
        &self,
        def: &TableDef,
        cat: &Catalog,
        columns: &[usize],
    ) -> Result<bool, HostError> {
        let enf = self.enforcement(def, cat)?;
        Ok(
            matches!(enf.read, scratchbird_policy::derive::RowFilter::All)
                && columns.iter().all(|c| {
                    enf.columns
                        .get(*c)
                        .is_some_and(|r| r.readable && r.mask.is_none())
                }),
        )
    }

    /// Whether this principal may know how many rows table `def` holds: it
    /// may read the table and its row policy hides none of them. Undecidable
    /// is no.
    #[must_use]
    pub fn may_count(&self, def: &TableDef, cat: &Catalog) -> bool {
        self.enforcement(def, cat).is_ok_and(|e| {
            e.grants.select && matches!(e.read, scratchbird_policy::derive::RowFilter::All)
        })
    }

    pub(crate) fn enforcement(
        &self,
        def: &TableDef,
        cat: &Catalog,
    ) -> Result<Arc<Enforcement>, HostError> {
        self.deriver
            .derive(&self.ctx, cat, def.id)
            .map_err(|e| HostError::policy(format!("table {}", def.name), e))
    }
}

fn denied(msg: String) -> HostError {
    HostError::Permission(msg)
}

/// The row predicate of a scan, decided by storage on each candidate row's filter
/// columns before the row's other columns are copied anywhere.
struct Selector {
    enforcement: Arc<Enforcement>,
    /// Table positions, attribute names and types of the columns the filter reads.
    columns: Vec<usize>,
    names: Vec<String>,
    types: Vec<SqlType>,
    /// The policy error behind a failed selection (storage carries only text).
    error: Option<HostError>,
}

impl RowSelect for Selector {
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn select(&mut self, candidates: &BatchView<'_>, keep: &mut Vec<u64>) -> Result<(), String> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let verdicts = Rows::from_batch(candidates, &names, &self.types)
            .map_err(|e| HostError::internal_by("the rows the policy reads", e))
            .and_then(|rows| {
                self.enforcement
                    .read
                    .eval_words(&rows)
                    .map_err(|e| HostError::policy(format!("table {}", self.enforcement.table), e))
            });
        match verdicts {
            Ok(v) => {
                keep.extend(v);
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                Err(msg)
            }
        }
    }
}

/// What a scan enforces, and the host-side batch it masks.
pub(crate) struct ReadGuard {
    principal: Arc<Principal>,
    /// The row predicate, when the principal may not read every row.
    selector: Option<Selector>,
    /// The host batch: the guest's columns, visible rows only, unmasked.
    layout: BatchLayout,
    /// Type of each guest column.
    guest_types: Vec<SqlType>,
    /// Per guest column: its domain and mask, when the principal sees it masked.
    masks: Vec<Option<(String, MaskFn)>>,
    buf: Vec<u8>,
    keys: Vec<RecordKey>,
    rows: usize,
    next: usize,
    done: bool,
    /// The cursor's selection counts already added to the audit counts.
    seen: (u64, u64),
    /// No masked column is variable-length: a host batch is exactly what the
    /// guest's batch gets (same layout, same heap use), masks applied in place.
    whole: bool,
    /// Scratch: host rows chosen for the guest batch being filled, and the masked
    /// values of those rows per guest column.
    chosen: Vec<usize>,
    masked: Vec<Vec<Value>>,
    /// The most heap bytes any host batch of this scan used: the part of the
    /// heap zeroed again before `buf` goes back to [`SPARE`].
    heap_high: usize,
    /// A refill failed part-way: what storage wrote is not known, so `buf` is
    /// freed rather than kept.
    spoiled: bool,
}

/// Host batches of finished scans, every byte zero again, for the next scan to
/// take instead of a fresh one. A guard's batch is the guest's whole batch,
/// 4 MiB of heap when it has a string column, and zeroing a fresh one for each
/// scan cost a point query more than its lookup.
static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Batches [`SPARE`] keeps, and the bytes they may hold together.
const SPARE_MAX: usize = 8;
const SPARE_BYTES_MAX: usize = 64 << 20;

/// A zeroed buffer of `len` bytes: a spare one whose capacity holds it if
/// there is one, the shortest already that long, else the longest (what a
/// buffer grows by is zeroed again).
fn take_spare(len: usize) -> Vec<u8> {
    let spare = SPARE.lock().ok().and_then(|mut s| {
        let i = s
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| (b.len() < len, b.len().abs_diff(len)))
            .map(|(i, _)| i)?;
        Some(s.swap_remove(i))
    });
    match spare {
        Some(mut b) => {
            // zero throughout: truncating keeps zeros, growing writes them
            b.truncate(len);
            b.resize(len, 0);
            b
        }
        None => vec![0u8; len],
    }
}

/// Hands `buf` back to [`SPARE`], its first `dirty` bytes zeroed first.
fn give_spare(mut buf: Vec<u8>, dirty: usize) {
    if let Some(d) = buf.get_mut(..dirty) {
        d.fill(0);
    } else {
        buf.fill(0);
    }
    if let Ok(mut s) = SPARE.lock() {
        let held: usize = s.iter().map(Vec::capacity).sum();
        if s.len() < SPARE_MAX && held + buf.capacity() <= SPARE_BYTES_MAX {
            s.push(buf);
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        if self.spoiled {
            return;
        }
        // storage writes a batch's header, validity and values, and its heap
        // from the start up to what the header says it used
        let dirty = self.layout.heap_range().start + self.heap_high;
        give_spare(std::mem::take(&mut self.buf), dirty);
    }
}

/// What an enforced scan did, for the audit record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadCounts {
    pub(crate) scanned: u64,
    pub(crate) hidden: u64,
    pub(crate) masked: u64,
}

fn internal(e: impl std::fmt::Display) -> HostError {
    HostError::internal(e.to_string())
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn set_bit(bits: &mut [u8], i: usize) {
    if let Some(b) = bits.get_mut(i / 8) {
        *b |= 1 << (i % 8);
    }
}

/// The (offset, length) entry of a variable-length value at row `r` of a values
/// region.
fn entry(values: &[u8], r: usize) -> Option<(usize, usize)> {
    let e = values.get(r * 8..r * 8 + 8)?;
    let off = u32::from_le_bytes(e.get(..4)?.try_into().ok()?) as usize;
    let len = u32::from_le_bytes(e.get(4..)?.try_into().ok()?) as usize;
    Some((off, len))
}

impl ReadGuard {
    /// Checks the grant and the columns of a scan of `def` reading table columns
    /// `positions`, through an index over table columns `ranged` (if any), handing
    /// the guest record keys made of table columns `keyed` (if any). Returns
    /// `None` when nothing needs filtering or masking (the scan then fills guest
    /// memory directly), else the guard.
    pub(crate) fn open(
        principal: &Arc<Principal>,
        enf: Arc<Enforcement>,
        def: &TableDef,
        positions: &[usize],
        ranged: &[usize],
        keyed: &[usize],
        guest: &BatchLayout,
    ) -> Result<Option<Self>, HostError> {
        if !enf.grants.select {
            return Err(denied(format!("permission denied for table {}", def.name)));
        }
        // table column `p` and the bundle's rule for it
        let rule_of = |p: usize| {
            let (col, rule) = def
                .columns
                .get(p)
                .zip(enf.columns.get(p))
                .ok_or_else(|| internal("column rule out of range"))?;
            if rule.column != col.name {
                return Err(internal(format!(
                    "column rules out of order at {}",
                    col.name
                )));
            }
            Ok((col, rule))
        };
        // Columns whose raw values a scan exposes other than as masked values:
        // a range over an index selects by them (its bounds would probe what the
        // principal cannot see), and record keys encode the primary key's. Each
        // must be readable unmasked. (table, column, "masked" / "not readable")
        type Why = fn(&str, &str, &str) -> String;
        let by_index: Why = |t, c, s| {
            format!(
                "permission denied: the scan selects rows of {t} by column {c} through an index, and that column is {s} for this principal"
            )
        };
        let by_key: Why = |t, c, s| {
            format!(
                "permission denied: updating or deleting rows of {t} hands the query their primary key, and key column {c} is {s} for this principal"
            )
        };
        let raw = ranged.iter().map(|p| (p, by_index));
        for (p, why) in raw.chain(keyed.iter().map(|p| (p, by_key))) {
            let (col, rule) = rule_of(*p)?;
            if !rule.readable || rule.mask.is_some() {
                let state = if rule.readable {
                    "masked"
                } else {
                    "not readable"
                };
                return Err(denied(why(&def.name, &col.name, state)));
            }
        }
        let mut masks = Vec::with_capacity(positions.len());
        let mut guest_types = Vec::with_capacity(positions.len());
        for p in positions {
            let (col, rule) = rule_of(*p)?;
            if !rule.readable {
                return Err(denied(format!(
                    "permission denied for column {}.{}",
                    def.name, col.name
                )));
            }
            masks.push(rule.mask.clone());
            guest_types.push(col.ty);
        }
        let selector = match &enf.read {
            RowFilter::All | RowFilter::None => None,
            RowFilter::Predicate(_) | RowFilter::Cedar(_) => {
                let mut sel = Selector {
                    enforcement: enf.clone(),
                    columns: Vec::new(),
                    names: Vec::new(),
                    types: Vec::new(),
                    error: None,
                };
                for a in enf.read.attributes() {
                    let (p, c) = def
                        .columns
                        .iter()
                        .enumerate()
                        .find(|(_, c)| c.name == a)
                        .ok_or_else(|| {
                            HostError::policy_only(format!(
                                "the row policy of {} reads {a}, which is not a column of the table",
                                def.name
                            ))
                        })?;
                    sel.columns.push(p);
                    sel.names.push(c.name.clone());
                    sel.types.push(c.ty);
                }
                Some(sel)
            }
        };
        // a principal who may read no row of the table: storage is not even read
        let done = matches!(enf.read, RowFilter::None);
        if !done && selector.is_none() && masks.iter().all(Option::is_none) {
            return Ok(None);
        }
        let layout = BatchLayout::new(&guest_types, guest.rows_max(), guest.heap_bytes())
            .map_err(internal)?;
        let whole = masks
            .iter()
            .zip(&guest_types)
            .all(|(m, t)| m.is_none() || t.physical().fixed_width().is_some());
        let buf = take_spare(layout.total_bytes());
        let n = positions.len();
        Ok(Some(Self {
            principal: principal.clone(),
            selector,
            layout,
            guest_types,
            masks,
            buf,
            keys: Vec::new(),
            rows: 0,
            next: 0,
            done,
            seen: (0, 0),
            whole,
            chosen: Vec::new(),
            masked: vec![Vec::new(); n],
            heap_high: 0,
            spoiled: false,
        }))
    }

    /// Fills the guest's batch `out` (layout `guest`) with the next visible rows,
    /// masked, reading storage batches through `cursor` as needed; with `keys`,
    /// the record keys of the rows given. The batch is full (`rows_max` rows, or
    /// its heap) unless the scan ended. Returns the rows given.
    pub(crate) fn fill(
        &mut self,
        txn: &Transaction,
        cursor: &mut ScanCursor,
        guest: &BatchLayout,
        out: &mut [u8],
        mut keys: Option<&mut Vec<RecordKey>>,
        counts: &mut ReadCounts,
    ) -> Result<usize, HostError> {
        if let Some(k) = keys.as_deref_mut() {
            k.clear();
        }
        if out.len() < guest.total_bytes() {
            return Err(internal("guest batch smaller than its layout"));
        }
        for c in 0..self.guest_types.len() {
            if let Some(v) = guest.validity_range(c).and_then(|r| out.get_mut(r)) {
                v.fill(0);
            }
        }
        if self.whole && guest == &self.layout && self.next >= self.rows {
            // storage fills the host batch to the guest's capacity with visible rows
            if !self.done {
                self.refill(txn, cursor, keys.is_some(), counts)?;
            }
            // unless it stopped early to wait for a writer (where the batch ends
            // would say where that row is, hidden or not): then the general path
            // below fills the guest batch to capacity, waiting in between
            if !cursor.waiting() || self.done {
                self.next = self.rows;
                if let Some(k) = keys.as_deref_mut() {
                    k.append(&mut self.keys);
                }
                return self.copy_whole(out, counts);
            }
        }
        let cap = guest.rows_max() as usize;
        let heap_cap = guest.heap_bytes() as usize;
        let mut given = 0usize;
        let mut heap = 0usize;
        while given < cap {
            if self.next >= self.rows {
                if self.done {
                    break;
                }
                self.refill(txn, cursor, keys.is_some(), counts)?;
                continue;
            }
            let full = self.choose(cap - given, heap_cap - heap, counts)?;
            if self.chosen.is_empty() && given == 0 && full {
                return Err(internal("one masked row does not fit a whole batch"));
            }
            heap = self.copy_chosen(guest, out, given, heap)?;
            if let Some(k) = keys.as_deref_mut() {
                for r in &self.chosen {
                    k.push(
                        self.keys
                            .get(*r)
                            .cloned()
                            .ok_or_else(|| internal("record key of a row"))?,
                    );
                }
            }
            given += self.chosen.len();
            if full {
                break;
            }
        }
        write_header(out, given, self.guest_types.len(), heap)?;
        Ok(given)
    }

    /// Copies the whole host batch into the guest's (same layout): unmasked
    /// columns as they are, masked (fixed-width) columns value by value through
    /// their masks. Returns the rows given.
    fn copy_whole(&self, out: &mut [u8], counts: &mut ReadCounts) -> Result<usize, HostError> {
        let l = &self.layout;
        let rows = self.rows;
        if rows == 0 {
            // the scan is over: an empty batch, nothing of an earlier one copied
            for c in 0..self.guest_types.len() {
                if let Some(v) = l.validity_range(c).and_then(|r| out.get_mut(r)) {
                    v.fill(0);
                }
            }
            write_header(out, 0, self.guest_types.len(), 0)?;
            return Ok(0);
        }
        let view = BatchView::new(l, &self.buf).map_err(internal)?;
        let heap_used = view.heap_used();
        let copy = |out: &mut [u8], r: std::ops::Range<usize>| -> Result<(), HostError> {
            out.get_mut(r.clone())
                .zip(self.buf.get(r))
                .filter(|(d, s)| d.len() == s.len())
                .ok_or_else(|| internal("batch region"))
                .map(|(d, s)| d.copy_from_slice(s))
        };
        for (c, ty) in self.guest_types.iter().enumerate() {
            let (Some(vr), Some(vals)) = (l.validity_range(c), l.values_range(c)) else {
                return Err(internal("batch column ranges"));
            };
            copy(out, vr.clone())?;
            let Some((domain, f)) = self.masks.get(c).and_then(Option::as_ref) else {
                // the batch's rows only: a fixed value or a (offset, length) entry each
                let w = ty.physical().fixed_width().unwrap_or(8);
                copy(out, vals.start..vals.start + rows * w)?;
                continue;
            };
            let w = ty
                .physical()
                .fixed_width()
                .ok_or_else(|| internal("a variable-length mask on the whole-batch path"))?;
            let bits = self
                .buf
                .get(vr.clone())
                .ok_or_else(|| internal("validity"))?;
            if let Some(kernel) = f.int_kernel(ty).filter(|_| matches!(w, 2 | 4 | 8)) {
                // integer-like values: the mask as arithmetic on the stored integers
                let src = self
                    .buf
                    .get(vals.clone())
                    .ok_or_else(|| internal("values"))?;
                for r in 0..rows {
                    if !bit(bits, r) {
                        continue;
                    }
                    let raw = src.get(r * w..r * w + w).ok_or_else(|| internal("value"))?;
                    let x = match w {
                        2 => i64::from(i16::from_le_bytes(raw.try_into().map_err(internal)?)),
                        4 => i64::from(i32::from_le_bytes(raw.try_into().map_err(internal)?)),
                        _ => i64::from_le_bytes(raw.try_into().map_err(internal)?),
                    };
                    let dst = out
                        .get_mut(vals.start + r * w..vals.start + r * w + w)
                        .ok_or_else(|| internal("masked value slot"))?;
                    match kernel.apply(x) {
                        Some(m) => {
                            // the kernel keeps values in the type's range
                            dst.copy_from_slice(m.to_le_bytes().get(..w).unwrap_or_default());
                            counts.masked += 1;
                        }
                        None => {
                            dst.fill(0);
                            if let Some(b) = out.get_mut(vr.start + r / 8) {
                                *b &= !(1 << (r % 8));
                            }
                        }
                    }
                }
                continue;
            }
            for r in 0..rows {
                if !bit(bits, r) {
                    continue;
                }
                let v = view.value(c, r).map_err(internal)?;
                let m = f.apply(ty, &v, &self.principal.mask_key, domain);
                let dst = out
                    .get_mut(vals.start + r * w..vals.start + r * w + w)
                    .ok_or_else(|| internal("masked value slot"))?;
                if m.is_null() {
                    // a mask may show nothing: NULL, and no byte of the value
                    dst.fill(0);
                    if let Some(b) = out.get_mut(vr.start + r / 8) {
                        *b &= !(1 << (r % 8));
                    }
                    continue;
                }
                ty.check_value(&m).map_err(|e| {
                    HostError::policy(
                        format!("the mask of domain {domain} gives a value that is not a {ty}"),
                        e,
                    )
                })?;
                let RawValue::Fixed(b, n) = value_bytes_for(ty, &m).map_err(internal)? else {
                    return Err(internal("masked value width"));
                };
                b.get(..n)
                    .filter(|s| s.len() == dst.len())
                    .ok_or_else(|| internal("masked value width"))
                    .map(|s| dst.copy_from_slice(s))?;
                counts.masked += 1;
            }
        }
        let hr = l.heap_range();
        copy(out, hr.start..hr.start + heap_used)?;
        write_header(out, rows, self.guest_types.len(), heap_used)?;
        Ok(rows)
    }

    /// Reads the next batch of visible rows from storage into the host buffer:
    /// with a row predicate, storage decides each row on the predicate's columns
    /// and copies only the rows it keeps.
    fn refill(
        &mut self,
        txn: &Transaction,
        cursor: &mut ScanCursor,
        with_keys: bool,
        counts: &mut ReadCounts,
    ) -> Result<(), HostError> {
        let keys = if with_keys {
            Some(&mut self.keys)
        } else {
            None
        };
        // until storage has finished the batch, what it wrote where is unknown
        self.spoiled = true;
        let n = match &mut self.selector {
            None => {
                let n = txn.next_batch(cursor, &self.layout, &mut self.buf, keys)?;
                counts.scanned += n as u64;
                n
            }
            Some(sel) => {
                let n = txn
                    .next_batch_where(cursor, &self.layout, &mut self.buf, keys, sel)
                    .map_err(|e| match (e, sel.error.take()) {
                        (StorageError::Selection(_), Some(policy)) => policy,
                        (other, _) => HostError::from(other),
                    })?;
                let (examined, rejected) = cursor.selected();
                counts.scanned += examined - self.seen.0;
                counts.hidden += rejected - self.seen.1;
                self.seen = (examined, rejected);
                n
            }
        };
        let used = BatchView::new(&self.layout, &self.buf)
            .map_err(internal)?
            .heap_used();
        self.heap_high = self.heap_high.max(used);
        self.spoiled = false;
        self.rows = n;
        self.next = 0;
        if n == 0 {
            self.done = true;
        }
        Ok(())
    }

    /// Chooses the next rows of the host batch, at most `rows`, whose strings fit
    /// `heap` bytes, masking what must be masked. Returns whether the guest batch
    /// is full (rows or heap) rather than the host batch used up.
    fn choose(
        &mut self,
        rows: usize,
        heap: usize,
        counts: &mut ReadCounts,
    ) -> Result<bool, HostError> {
        self.chosen.clear();
        for m in &mut self.masked {
            m.clear();
        }
        let view = BatchView::new(&self.layout, &self.buf).map_err(internal)?;
        let mut used = 0usize;
        let mut row_masked: Vec<Option<Value>> = vec![None; self.guest_types.len()];
        while self.next < self.rows {
            if self.chosen.len() == rows {
                return Ok(true);
            }
            let r = self.next;
            let mut need = 0usize;
            for (c, ty) in self.guest_types.iter().enumerate() {
                let var = ty.physical().fixed_width().is_none();
                match self.masks.get(c).and_then(Option::as_ref) {
                    None => {
                        if var {
                            need += view.raw(c, r).map_err(internal)?.map_or(0, <[u8]>::len);
                        }
                    }
                    Some((domain, f)) => {
                        let v = view.value(c, r).map_err(internal)?;
                        let m = if v.is_null() {
                            Value::Null
                        } else {
                            let m = f.apply(ty, &v, &self.principal.mask_key, domain);
                            ty.check_value(&m).map_err(|e| {
                                HostError::policy(
                                    format!(
                                        "the mask of domain {domain} gives a value that is not a {ty}"
                                    ),
                                    e,
                                )
                            })?;
                            m
                        };
                        if var {
                            need += match &m {
                                Value::Text(s) => s.len(),
                                Value::Blob(b) => b.len(),
                                _ => 0,
                            };
                        }
                        if let Some(slot) = row_masked.get_mut(c) {
                            *slot = Some(m);
                        }
                    }
                }
            }
            if used + need > heap {
                return Ok(true);
            }
            used += need;
            for (c, m) in row_masked.iter_mut().enumerate() {
                if let (Some(v), Some(list)) = (m.take(), self.masked.get_mut(c)) {
                    if !v.is_null() {
                        counts.masked += 1;
                    }
                    list.push(v);
                }
            }
            self.chosen.push(r);
            self.next += 1;
        }
        Ok(self.chosen.len() == rows)
    }

    /// Copies the chosen rows into the guest batch from row `at`, one column at a
    /// time; `heap` bytes of the guest heap are in use. Returns the heap in use.
    fn copy_chosen(
        &self,
        guest: &BatchLayout,
        out: &mut [u8],
        at: usize,
        mut heap: usize,
    ) -> Result<usize, HostError> {
        let heap_start = guest.heap_range().start;
        let host_heap = self.layout.heap_range().start;
        for (c, ty) in self.guest_types.iter().enumerate() {
            let (Some(gv), Some(gvals), Some(hv), Some(hvals)) = (
                guest.validity_range(c),
                guest.values_range(c),
                self.layout.validity_range(c),
                self.layout.values_range(c),
            ) else {
                return Err(internal("batch column ranges"));
            };
            let width = ty.physical().fixed_width();
            if let Some(list) = self
                .masks
                .get(c)
                .and_then(Option::as_ref)
                .and(self.masked.get(c))
            {
                for (i, v) in list.iter().enumerate() {
                    let row = at + i;
                    if v.is_null() {
                        continue;
                    }
                    match value_bytes_for(ty, v).map_err(internal)? {
                        RawValue::Fixed(b, n) => {
                            let w = width.ok_or_else(|| internal("width"))?;
                            let dst = gvals.start + row * w;
                            out.get_mut(dst..dst + w)
                                .zip(b.get(..n))
                                .filter(|(d, s)| d.len() == s.len())
                                .ok_or_else(|| internal("masked value width"))
                                .map(|(d, s)| d.copy_from_slice(s))?;
                        }
                        RawValue::Var(b) => {
                            heap = put_var(out, heap_start, heap, gvals.start, row, b)?;
                        }
                    }
                    set_bit(out.get_mut(gv.clone()).unwrap_or_default(), row);
                }
                continue;
            }
            let src_bits = self.buf.get(hv).ok_or_else(|| internal("validity"))?;
            let src_vals = self.buf.get(hvals).ok_or_else(|| internal("values"))?;
            for (i, r) in self.chosen.iter().enumerate() {
                if !bit(src_bits, *r) {
                    continue;
                }
                let row = at + i;
                match width {
                    Some(w) => {
                        let s = src_vals
                            .get(r * w..r * w + w)
                            .ok_or_else(|| internal("value"))?;
                        let dst = gvals.start + row * w;
                        out.get_mut(dst..dst + w)
                            .ok_or_else(|| internal("value"))?
                            .copy_from_slice(s);
                    }
                    None => {
                        let (off, len) = entry(src_vals, *r).ok_or_else(|| internal("entry"))?;
                        let b = self
                            .buf
                            .get(host_heap + off..host_heap + off + len)
                            .ok_or_else(|| internal("heap"))?;
                        heap = put_var(out, heap_start, heap, gvals.start, row, b)?;
                    }
                }
                set_bit(out.get_mut(gv.clone()).unwrap_or_default(), row);
            }
        }
        Ok(heap)
    }
}

/// Writes a batch header: rows, columns, heap bytes in use, layout version.
fn write_header(out: &mut [u8], rows: usize, cols: usize, heap: usize) -> Result<(), HostError> {
    let header = [
        u32::try_from(rows).map_err(internal)?,
        u32::try_from(cols).map_err(internal)?,
        u32::try_from(heap).map_err(internal)?,
        scratchbird_types::batch::LAYOUT_VERSION,
    ];
    for (i, w) in header.into_iter().enumerate() {
        out.get_mut(i * 4..i * 4 + 4)
            .ok_or_else(|| internal("header"))?
            .copy_from_slice(&w.to_le_bytes());
    }
    Ok(())
}

/// Appends `b` to the guest heap (in use: `heap` bytes) and points row `row`'s
/// entry at it. Returns the heap in use.
fn put_var(
    out: &mut [u8],
    heap_start: usize,
    heap: usize,
    values: usize,
    row: usize,
    b: &[u8],
) -> Result<usize, HostError> {
    let at = heap_start + heap;
    out.get_mut(at..at + b.len())
        .ok_or_else(|| internal("guest heap"))?
        .copy_from_slice(b);
    let e = values + row * 8;
    let off = u32::try_from(heap).map_err(internal)?;
    let len = u32::try_from(b.len()).map_err(internal)?;
    let dst = out.get_mut(e..e + 8).ok_or_else(|| internal("entry"))?;
    dst.get_mut(..4)
        .ok_or_else(|| internal("entry"))?
        .copy_from_slice(&off.to_le_bytes());
    dst.get_mut(4..)
        .ok_or_else(|| internal("entry"))?
        .copy_from_slice(&len.to_le_bytes());
    Ok(heap + b.len())
}

/// What a write target enforces.
pub(crate) struct WriteGuard {
    enforcement: Arc<Enforcement>,
    principal: Arc<Principal>,
    names: Vec<String>,
    types: Vec<SqlType>,
}

impl WriteGuard {
    /// Checks the grant for `kind` on `def`.
    pub(crate) fn open(
        principal: &Arc<Principal>,
        enf: Arc<Enforcement>,
        def: &TableDef,
        kind: scratchbird_guest_ops::abi::WriteKind,
    ) -> Result<Self, HostError> {
        use scratchbird_guest_ops::abi::WriteKind as K;
        let (granted, verb) = match kind {
            K::Insert => (enf.grants.insert, "insert into"),
            K::Update => (enf.grants.update, "update"),
            K::Delete => (enf.grants.delete, "delete from"),
            // ON CONFLICT DO UPDATE inserts some rows and updates others
            K::Upsert if !enf.grants.insert => (false, "insert into"),
            K::Upsert => (enf.grants.update, "update (ON CONFLICT DO UPDATE)"),
        };
        if !granted {
            return Err(denied(format!(
                "permission denied to {verb} table {}",
                def.name
            )));
        }
        Ok(Self {
            enforcement: enf,
            principal: principal.clone(),
            names: def.columns.iter().map(|c| c.name.clone()).collect(),
            types: def.types(),
        })
    }

    fn verdict(&self, filter: &RowFilter, row: &[Value]) -> Result<bool, HostError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let rows = Rows::from_values(&names, row);
        filter
            .eval(&rows)
            .map(|v| v.first().copied().unwrap_or(false))
            .map_err(|e| HostError::policy(format!("table {}", self.enforcement.table), e))
    }

    /// Whether the principal can see `row` (the current version of a row an update
    /// or delete names).
    pub(crate) fn visible(&self, row: &[Value]) -> Result<bool, HostError> {
        self.verdict(&self.enforcement.read, row)
    }

    /// Refuses a new row version the write predicate does not allow.
    pub(crate) fn check_new(&self, row: &[Value]) -> Result<(), HostError> {
        if self.verdict(&self.enforcement.write, row)? {
            Ok(())
        } else {
            Err(denied(format!(
                "the new row violates the write policy of table {}",
                self.enforcement.table
            )))
        }
    }

    /// An update's new row, with every column the principal sees masked kept at
    /// its stored value when the module passed the masked value back (it carries
    /// every column, and would otherwise write the mask over the data).
    pub(crate) fn unmask_update(&self, old: &[Value], new: &mut [Value]) {
        for (c, rule) in self.enforcement.columns.iter().enumerate() {
            let Some((domain, f)) = &rule.mask else {
                continue;
            };
            let (Some(o), Some(n), Some(ty)) = (old.get(c), new.get_mut(c), self.types.get(c))
            else {
                continue;
            };
            if *n == f.apply(ty, o, &self.principal.mask_key, domain) {
                *n = o.clone();
            }
        }
    }
}

/// What reading back the rows a write wrote (a `RETURNING` clause) enforces:
/// exactly what a scan of the table would for the principal. The grant to
/// read the table, every returned column readable, masked columns masked,
/// and a row the row rule hides refused (PostgreSQL refuses such a row too:
/// the statement fails and nothing it wrote stays).
pub(crate) struct ReturnGuard {
    enforcement: Arc<Enforcement>,
    principal: Arc<Principal>,
    names: Vec<String>,
    columns: Vec<Returned>,
}

/// A column RETURNING reads: its table position, type and mask (with its
/// domain, when the principal sees it masked).
type Returned = (usize, SqlType, Option<(String, MaskFn)>);

impl ReturnGuard {
    /// Checks the grant and the columns of a read-back of `def`'s columns at
    /// `positions`.
    pub(crate) fn open(
        principal: &Arc<Principal>,
        enf: Arc<Enforcement>,
        def: &TableDef,
        positions: &[usize],
    ) -> Result<Self, HostError> {
        if !enf.grants.select {
            return Err(denied(format!(
                "permission denied for table {}: RETURNING reads the rows written, which needs the grant to read the table",
                def.name
            )));
        }
        let mut columns = Vec::with_capacity(positions.len());
        for p in positions {
            let (col, rule) = def
                .columns
                .get(*p)
                .zip(enf.columns.get(*p))
                .ok_or_else(|| internal("column rule out of range"))?;
            if rule.column != col.name {
                return Err(internal(format!(
                    "column rules out of order at {}",
                    col.name
                )));
            }
            if !rule.readable {
                return Err(denied(format!(
                    "permission denied for column {}.{}: RETURNING may name only columns this principal reads",
                    def.name, col.name
                )));
            }
            columns.push((*p, col.ty, rule.mask.clone()));
        }
        Ok(Self {
            enforcement: enf,
            principal: principal.clone(),
            names: def.columns.iter().map(|c| c.name.clone()).collect(),
            columns,
        })
    }

    /// The returned columns of `row` (a whole stored row), masked; an error
    /// for a row the principal may not read.
    pub(crate) fn row(
        &self,
        row: &[Value],
        counts: &mut ReadCounts,
    ) -> Result<Vec<Value>, HostError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let visible = self
            .enforcement
            .read
            .eval(&Rows::from_values(&names, row))
            .map(|v| v.first().copied().unwrap_or(false))
            .map_err(|e| HostError::policy(format!("table {}", self.enforcement.table), e))?;
        counts.scanned += 1;
        if !visible {
            return Err(denied(format!(
                "permission denied: a row this statement wrote into {} is one the bundle's row rule hides from this principal, so RETURNING may not show it; nothing was written",
                self.enforcement.table
            )));
        }
        let mut out = Vec::with_capacity(self.columns.len());
        for (p, ty, mask) in &self.columns {
            let v = row.get(*p).cloned().unwrap_or(Value::Null);
            out.push(match mask {
                Some((domain, f)) => {
                    if !v.is_null() {
                        counts.masked += 1;
                    }
                    f.apply(ty, &v, &self.principal.mask_key, domain)
                }
                None => v,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{give_spare, take_spare};

    #[test]
    fn a_spare_batch_comes_back_zeroed_whatever_the_scan_before_left_in_it() {
        // a scan's raw (unmasked) values, the heap included, then a buffer of
        // another size taken: nothing of the first scan may show in it
        let len = 64 * 1024;
        let mut dirty = take_spare(len);
        assert!(dirty.iter().all(|b| *b == 0));
        dirty.fill(0xAB);
        give_spare(dirty, len);
        for want in [len, len / 2, len * 2] {
            let b = take_spare(want);
            assert_eq!(b.len(), want);
            assert!(b.iter().all(|b| *b == 0), "{want} bytes");
            give_spare(b, 0);
        }
        // a dirty part beyond the buffer (a bad mark): the whole of it zeroed
        let mut short = take_spare(100);
        short.fill(1);
        give_spare(short, 1000);
        let again = take_spare(100);
        assert!(again.iter().all(|b| *b == 0));
    }
}
