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
use scratchbird_types::batch::{BatchLayout, BatchView, BatchWriter};
use scratchbird_types::row::{RawValue, value_bytes_for};
use scratchbird_types::{BundleHash, SqlType, Value};
use std::collections::BTreeSet;
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

    pub(crate) fn enforcement(
        &self,
        def: &TableDef,
        cat: &Catalog,
    ) -> Result<Arc<Enforcement>, HostError> {
        let desc = table_desc(def, cat);
        self.deriver
            .derive(&self.ctx, &desc)
            .map_err(|e| HostError::Policy(format!("table {}: {e}", def.name)))
    }
}

fn table_desc(def: &TableDef, cat: &Catalog) -> TableDesc {
    TableDesc {
        name: def.name.clone(),
        columns: def
            .columns
            .iter()
            .map(|c| ColumnDesc {
                name: c.name.clone(),
                ty: c.ty,
                nullable: c.nullable,
                domain: c
                    .domain
                    .and_then(|d| cat.domains().find(|x| x.id == d).map(|x| x.name.clone())),
            })
            .collect(),
    }
}

fn denied(msg: String) -> HostError {
    HostError::Permission(msg)
}

/// The attributes a row filter reads.
fn filter_attributes(f: &RowFilter) -> BTreeSet<String> {
    f.attributes()
}

/// What a scan enforces, and the host-side batch it filters and masks.
pub(crate) struct ReadGuard {
    enforcement: Arc<Enforcement>,
    principal: Arc<Principal>,
    /// The host batch: the guest's columns, then the columns only the filter reads.
    layout: BatchLayout,
    names: Vec<String>,
    types: Vec<SqlType>,
    /// How many leading host columns the guest receives.
    declared: usize,
    /// Per guest column: its domain and mask, when the principal sees it masked.
    masks: Vec<Option<(String, MaskFn)>>,
    buf: Vec<u8>,
    keys: Vec<RecordKey>,
    keep: Vec<bool>,
    rows: usize,
    next: usize,
    done: bool,
}

/// What an enforced scan did, for the audit record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadCounts {
    pub(crate) scanned: u64,
    pub(crate) hidden: u64,
    pub(crate) masked: u64,
}

impl ReadGuard {
    /// Checks the grant and the columns of a scan of `def` reading table columns
    /// `positions`. Returns `None` when nothing needs filtering or masking (the
    /// scan then fills guest memory directly), else the guard and the table
    /// columns the storage cursor must read (the guest's, then the filter's).
    pub(crate) fn open(
        principal: &Arc<Principal>,
        def: &TableDef,
        cat: &Catalog,
        positions: &[usize],
        ranged: &[usize],
        guest: &BatchLayout,
    ) -> Result<Option<(Self, Vec<usize>)>, HostError> {
        let enf = principal.enforcement(def, cat)?;
        if !enf.grants.select {
            return Err(denied(format!("permission denied for table {}", def.name)));
        }
        // a range over an index selects by raw values: a masked or unreadable
        // column there would let the bounds probe what the principal cannot see
        for p in ranged {
            let (col, rule) = def
                .columns
                .get(*p)
                .zip(enf.columns.get(*p))
                .ok_or_else(|| HostError::Internal("index column out of range".into()))?;
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
        for p in positions {
            let (col, rule) = def
                .columns
                .get(*p)
                .zip(enf.columns.get(*p))
                .ok_or_else(|| HostError::Internal("column rule out of range".into()))?;
            if rule.column != col.name {
                return Err(HostError::Internal(format!(
                    "column rules out of order at {}",
                    col.name
                )));
            }
            if !rule.readable {
                return Err(denied(format!(
                    "permission denied for column {}.{}",
                    def.name, col.name
                )));
            }
            masks.push(rule.mask.clone());
        }
        let filtering = !matches!(enf.read, RowFilter::All);
        if !filtering && masks.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut host_positions = positions.to_vec();
        for a in filter_attributes(&enf.read) {
            let p = def
                .columns
                .iter()
                .position(|c| c.name == a)
                .ok_or_else(|| {
                    HostError::Policy(format!(
                        "the row policy of {} reads {a}, which is not a column of the table",
                        def.name
                    ))
                })?;
            if !host_positions.contains(&p) {
                host_positions.push(p);
            }
        }
        let mut names = Vec::with_capacity(host_positions.len());
        let mut types = Vec::with_capacity(host_positions.len());
        for p in &host_positions {
            let c = def
                .columns
                .get(*p)
                .ok_or_else(|| HostError::Internal("column position".into()))?;
            names.push(c.name.clone());
            types.push(c.ty);
        }
        let extra_var = types[positions.len()..]
            .iter()
            .any(|t| t.physical().fixed_width().is_none());
        let heap = if extra_var {
            guest.heap_bytes().saturating_add(1 << 20)
        } else {
            guest.heap_bytes()
        };
        let layout = BatchLayout::new(&types, guest.rows_max(), heap)
            .map_err(|e| HostError::Internal(e.to_string()))?;
        let buf = vec![0u8; layout.total_bytes()];
        // a principal who may read no row of the table: storage is not even read
        let done = matches!(enf.read, RowFilter::None);
        Ok(Some((
            Self {
                enforcement: enf,
                principal: principal.clone(),
                layout,
                names,
                types,
                declared: positions.len(),
                masks,
                buf,
                keys: Vec::new(),
                keep: Vec::new(),
                rows: 0,
                next: 0,
                done,
            },
            host_positions,
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
        let mut w = BatchWriter::new(guest, out).map_err(|e| HostError::Internal(e.to_string()))?;
        let cap = guest.rows_max() as usize;
        let mut given = 0usize;
        'fill: while given < cap {
            if self.next >= self.rows {
                if self.done {
                    break;
                }
                self.refill(txn, cursor, keys.is_some(), counts)?;
                continue;
            }
            let view = BatchView::new(&self.layout, &self.buf)
                .map_err(|e| HostError::Internal(e.to_string()))?;
            while self.next < self.rows && given < cap {
                let r = self.next;
                if !self.keep.get(r).copied().unwrap_or(false) {
                    self.next += 1;
                    continue;
                }
                if !self.put_row(&view, &mut w, r, given, counts)? {
                    if given == 0 {
                        return Err(HostError::Internal(
                            "one masked row does not fit a whole batch".into(),
                        ));
                    }
                    break 'fill;
                }
                if let Some(k) = keys.as_deref_mut() {
                    k.push(
                        self.keys
                            .get(r)
                            .cloned()
                            .ok_or_else(|| HostError::Internal("record key of a row".into()))?,
                    );
                }
                self.next += 1;
                given += 1;
            }
        }
        w.finish(given)
            .map_err(|e| HostError::Internal(e.to_string()))?;
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
        let view = BatchView::new(&self.layout, &self.buf)
            .map_err(|e| HostError::Internal(e.to_string()))?;
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let rows = Rows::from_batch(&view, &names, &self.types)
            .map_err(|e| HostError::Internal(e.to_string()))?;
        self.keep = self
            .enforcement
            .read
            .eval(&rows)
            .map_err(|e| HostError::Policy(format!("table {}: {e}", self.enforcement.table)))?;
        if self.keep.len() != n {
            return Err(HostError::Internal("row filter verdicts".into()));
        }
        counts.hidden += self.keep.iter().filter(|k| !**k).count() as u64;
        Ok(())
    }

    /// Writes host row `r` as guest row `at`, masked. `false` when its strings do
    /// not fit what is left of the guest batch's heap (nothing is written then).
    fn put_row(
        &self,
        view: &BatchView<'_>,
        w: &mut BatchWriter<'_>,
        r: usize,
        at: usize,
        counts: &mut ReadCounts,
    ) -> Result<bool, HostError> {
        let bad = |e: scratchbird_types::TypeError| HostError::Internal(e.to_string());
        // the row's values as the guest gets them
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(self.declared);
        let mut heap = 0usize;
        for c in 0..self.declared {
            let ty = self.types.get(c).copied().unwrap_or(SqlType::Blob);
            let cell = match self.masks.get(c).and_then(Option::as_ref) {
                None => match view.raw(c, r).map_err(bad)? {
                    None => Cell::Null,
                    Some(b) => Cell::Raw(b),
                },
                Some((domain, f)) => {
                    let v = view.value(c, r).map_err(bad)?;
                    if v.is_null() {
                        Cell::Null
                    } else {
                        let m = f.apply(&ty, &v, &self.principal.mask_key, domain);
                        ty.check_value(&m).map_err(|e| {
                            HostError::Policy(format!(
                                "the mask of domain {domain} gives a value that is not a {ty}: {e}"
                            ))
                        })?;
                        counts.masked += 1;
                        Cell::Masked(m)
                    }
                }
            };
            if ty.physical().fixed_width().is_none() {
                heap += match &cell {
                    Cell::Raw(b) => b.len(),
                    Cell::Masked(Value::Text(s)) => s.len(),
                    Cell::Masked(Value::Blob(b)) => b.len(),
                    _ => 0,
                };
            }
            cells.push(cell);
        }
        if heap > w.heap_remaining() {
            return Ok(false);
        }
        for (c, cell) in cells.iter().enumerate() {
            let ty = self.types.get(c).copied().unwrap_or(SqlType::Blob);
            let var = ty.physical().fixed_width().is_none();
            match cell {
                Cell::Null => w.set_null(c, at).map_err(bad)?,
                Cell::Raw(b) if var => w.set_bytes(c, at, b).map_err(bad)?,
                Cell::Raw(b) => w.set_fixed(c, at, b).map_err(bad)?,
                Cell::Masked(v) => match value_bytes_for(&ty, v).map_err(bad)? {
                    RawValue::Var(b) => w.set_bytes(c, at, b).map_err(bad)?,
                    RawValue::Fixed(buf, n) => w
                        .set_fixed(c, at, buf.get(..n).unwrap_or_default())
                        .map_err(bad)?,
                },
            }
        }
        Ok(true)
    }
}

enum Cell<'a> {
    Null,
    Raw(&'a [u8]),
    Masked(Value),
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
        def: &TableDef,
        cat: &Catalog,
        kind: scratchbird_guest_ops::abi::WriteKind,
    ) -> Result<Self, HostError> {
        use scratchbird_guest_ops::abi::WriteKind as K;
        let enf = principal.enforcement(def, cat)?;
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
