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
    ColumnDesc, Deriver, Enforcement, RowFilter, SecurityContext, TableDesc,
};
use scratchbird_policy::ir::Rows;
use scratchbird_policy::mask::{MaskFn, MaskKey};
use scratchbird_storage::catalog::{Catalog, TableDef};
use scratchbird_storage::scan::ScanCursor;
use scratchbird_storage::{RecordKey, Transaction};
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

    /// The security context.
    #[must_use]
    pub fn context(&self) -> &SecurityContext {
        &self.ctx
    }

    /// What the bundle enforces for this principal on `def` (derived once per
    /// context and table, then cached by the deriver).
    pub(crate) fn enforcement(
        &self,
        def: &TableDef,
        cat: &Catalog,
    ) -> Result<Arc<Enforcement>, HostError> {
        let desc = table_desc(def, cat)?;
        self.deriver
            .derive(&self.ctx, &desc)
            .map_err(|e| HostError::Policy(format!("table {}: {e}", def.name)))
    }
}

/// The table as the bundle sees it. A column whose domain the catalog cannot name
/// is an error: without its domain the column's mask would be lost.
fn table_desc(def: &TableDef, cat: &Catalog) -> Result<TableDesc, HostError> {
    let mut columns = Vec::with_capacity(def.columns.len());
    for c in &def.columns {
        let domain = match c.domain {
            None => None,
            Some(d) => Some(
                cat.domains()
                    .find(|x| x.id == d)
                    .map(|x| x.name.clone())
                    .ok_or_else(|| {
                        HostError::Policy(format!(
                            "column {}.{} is declared in domain {d}, which the catalog does not know",
                            def.name, c.name
                        ))
                    })?,
            ),
        };
        columns.push(ColumnDesc {
            name: c.name.clone(),
            ty: c.ty,
            nullable: c.nullable,
            domain,
        });
    }
    Ok(TableDesc {
        name: def.name.clone(),
        columns,
    })
}

fn denied(msg: String) -> HostError {
    HostError::Permission(msg)
}

/// What a scan enforces, and the host-side batch it filters and masks.
pub(crate) struct ReadGuard {
    enforcement: Arc<Enforcement>,
    principal: Arc<Principal>,
    /// The host batch: the columns the row filter reads first, then the rest of
    /// the guest's columns.
    layout: BatchLayout,
    /// Attribute names and types of the filter's columns (the first host columns).
    filter_names: Vec<String>,
    filter_types: Vec<SqlType>,
    /// Host column of each guest column.
    to_host: Vec<usize>,
    /// Type of each guest column.
    guest_types: Vec<SqlType>,
    /// Per guest column: its domain and mask, when the principal sees it masked.
    masks: Vec<Option<(String, MaskFn)>>,
    buf: Vec<u8>,
    keys: Vec<RecordKey>,
    keep: Vec<bool>,
    rows: usize,
    next: usize,
    done: bool,
    /// Scratch: host rows chosen for the guest batch being filled, and the masked
    /// values of those rows per guest column.
    chosen: Vec<usize>,
    masked: Vec<Vec<Value>>,
}

/// What an enforced scan did, for the audit record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadCounts {
    pub(crate) scanned: u64,
    pub(crate) hidden: u64,
    pub(crate) masked: u64,
}

fn internal(e: impl std::fmt::Display) -> HostError {
    HostError::Internal(e.to_string())
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
    /// `positions`, through an index over table columns `ranged` (if any). Returns
    /// `None` when nothing needs filtering or masking (the scan then fills guest
    /// memory directly), else the guard and the table columns the storage cursor
    /// must read.
    pub(crate) fn open(
        principal: &Arc<Principal>,
        enf: Arc<Enforcement>,
        def: &TableDef,
        positions: &[usize],
        ranged: &[usize],
        guest: &BatchLayout,
    ) -> Result<Option<(Self, Vec<usize>)>, HostError> {
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
        // a range over an index selects by raw values: a masked or unreadable
        // column there would let the bounds probe what the principal cannot see
        for p in ranged {
            let (col, rule) = rule_of(*p)?;
            if !rule.readable || rule.mask.is_some() {
                return Err(denied(format!(
                    "permission denied: the scan selects rows of {} by column {} through an index, and that column is {} for this principal",
                    def.name,
                    col.name,
                    if rule.readable {
                        "masked"
                    } else {
                        "not readable"
                    }
                )));
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
        let filtering = !matches!(enf.read, RowFilter::All);
        if !filtering && masks.iter().all(Option::is_none) {
            return Ok(None);
        }
        // the filter's columns first, so that its rows are built from a prefix
        let mut host = Vec::with_capacity(positions.len() + 2);
        let mut filter_names = Vec::new();
        let mut filter_types = Vec::new();
        for a in enf.read.attributes() {
            let (p, c) = def
                .columns
                .iter()
                .enumerate()
                .find(|(_, c)| c.name == a)
                .ok_or_else(|| {
                    HostError::Policy(format!(
                        "the row policy of {} reads {a}, which is not a column of the table",
                        def.name
                    ))
                })?;
            host.push(p);
            filter_names.push(c.name.clone());
            filter_types.push(c.ty);
        }
        let mut to_host = Vec::with_capacity(positions.len());
        for p in positions {
            match host.iter().position(|h| h == p) {
                Some(i) => to_host.push(i),
                None => {
                    to_host.push(host.len());
                    host.push(*p);
                }
            }
        }
        let types: Vec<SqlType> = host
            .iter()
            .map(|p| def.columns.get(*p).map(|c| c.ty))
            .collect::<Option<_>>()
            .ok_or_else(|| internal("column position"))?;
        // variable-length values only the filter reads need heap of their own
        let extra_var = host
            .iter()
            .zip(&types)
            .any(|(p, t)| !positions.contains(p) && t.physical().fixed_width().is_none());
        let heap = if extra_var {
            guest.heap_bytes().saturating_add(1 << 20)
        } else {
            guest.heap_bytes()
        };
        let layout = BatchLayout::new(&types, guest.rows_max(), heap).map_err(internal)?;
        let buf = vec![0u8; layout.total_bytes()];
        // a principal who may read no row of the table: storage is not even read
        let done = matches!(enf.read, RowFilter::None);
        let n = positions.len();
        Ok(Some((
            Self {
                enforcement: enf,
                principal: principal.clone(),
                layout,
                filter_names,
                filter_types,
                to_host,
                guest_types,
                masks,
                buf,
                keys: Vec::new(),
                keep: Vec::new(),
                rows: 0,
                next: 0,
                done,
                chosen: Vec::new(),
                masked: vec![Vec::new(); n],
            },
            host,
        )))
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
        let header = [
            u32::try_from(given).map_err(internal)?,
            u32::try_from(self.guest_types.len()).map_err(internal)?,
            u32::try_from(heap).map_err(internal)?,
            scratchbird_types::batch::LAYOUT_VERSION,
        ];
        for (i, w) in header.into_iter().enumerate() {
            out.get_mut(i * 4..i * 4 + 4)
                .ok_or_else(|| internal("header"))?
                .copy_from_slice(&w.to_le_bytes());
        }
        Ok(given)
    }

    /// Reads the next storage batch into the host buffer and decides its rows.
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
        let n = txn.next_batch(cursor, &self.layout, &mut self.buf, keys)?;
        self.rows = n;
        self.next = 0;
        if n == 0 {
            self.done = true;
            self.keep.clear();
            return Ok(());
        }
        counts.scanned += n as u64;
        self.keep = if matches!(self.enforcement.read, RowFilter::All) {
            vec![true; n]
        } else {
            let view = BatchView::new(&self.layout, &self.buf).map_err(internal)?;
            let names: Vec<&str> = self.filter_names.iter().map(String::as_str).collect();
            let rows = Rows::from_batch(&view, &names, &self.filter_types).map_err(internal)?;
            self.enforcement
                .read
                .eval(&rows)
                .map_err(|e| HostError::Policy(format!("table {}: {e}", self.enforcement.table)))?
        };
        if self.keep.len() != n {
            return Err(internal("row filter verdicts"));
        }
        counts.hidden += self.keep.iter().filter(|k| !**k).count() as u64;
        Ok(())
    }

    /// Chooses the next visible rows of the host batch, at most `rows`, whose
    /// strings fit `heap` bytes, masking what must be masked. Returns whether the
    /// guest batch is full (rows or heap) rather than the host batch used up.
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
            if !self.keep.get(r).copied().unwrap_or(false) {
                self.next += 1;
                continue;
            }
            let mut need = 0usize;
            for (c, ty) in self.guest_types.iter().enumerate() {
                let h = self.to_host.get(c).copied().unwrap_or(usize::MAX);
                let var = ty.physical().fixed_width().is_none();
                match self.masks.get(c).and_then(Option::as_ref) {
                    None => {
                        if var {
                            need += view.raw(h, r).map_err(internal)?.map_or(0, <[u8]>::len);
                        }
                    }
                    Some((domain, f)) => {
                        let v = view.value(h, r).map_err(internal)?;
                        let m = if v.is_null() {
                            Value::Null
                        } else {
                            let m = f.apply(ty, &v, &self.principal.mask_key, domain);
                            ty.check_value(&m).map_err(|e| {
                                HostError::Policy(format!(
                                    "the mask of domain {domain} gives a value that is not a {ty}: {e}"
                                ))
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
            let h = self.to_host.get(c).copied().unwrap_or(usize::MAX);
            let (Some(gv), Some(gvals), Some(hv), Some(hvals)) = (
                guest.validity_range(c),
                guest.values_range(c),
                self.layout.validity_range(h),
                self.layout.values_range(h),
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
            .map_err(|e| HostError::Policy(format!("table {}: {e}", self.enforcement.table)))
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
