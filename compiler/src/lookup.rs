//! Lookup joins: a hash join whose probe side reads a large table hands that
//! table's scan the keys of its build rows, so the scan reads only the
//! records with those keys, through the primary key or an index
//! ([`ScanRangeDecl::Lookup`]), instead of every record. TPC-H Q19 builds
//! the few hundred parts of three brands and containers and then reads the
//! lineitems of those parts by `(l_partkey, l_suppkey)`, not all six
//! million.
//!
//! A lookup scan gives at least the records with its keys and may give more
//! (the host reads the whole table where it must: too many keys, or key
//! columns the principal reads masked). So a lookup is allowed only where
//! extra records cannot change a result: the scan lies on the probe side of
//! an inner join (or of a LEFT join holding its left side, which drops probe
//! rows without a match), reached through filters, plain column renames,
//! inner joins, the kept side of left and mark joins, and groupings by the
//! key columns. Along that path an extra record can only make rows whose key
//! no build row has, which the lookup join then drops.
//!
//! The work of a lookup is estimated like the join order: a seek per key,
//! then the records each key finds (one through a unique key; the table's
//! rows over the values of the build's unique key the join columns cover,
//! for a foreign key; else a tenth of the table). From it comes `keys_max`,
//! the distinct keys up to which looking them up costs less than reading
//! the table; it goes into the module, and the host decides by the keys that
//! really come. The plan tries a lookup when the build side's estimated
//! distinct keys are within [`OPTIMISM`] times `keys_max`. Estimates change
//! plans, never results.

use crate::catalog::Catalog;
use crate::cost::Estimator;
use crate::logical::{BExpr, BK, ColId, JoinType, Rel};
use scratchbird_guest_ops::abi::ScanRangeDecl;
use scratchbird_types::SqlType;
use scratchbird_types::schema::{IndexDef, TableDef};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Work to find one key's first record, in scanned rows: a seek into the
/// key-value store (an index) or the page directory (the primary key).
/// Measured at SF 1: about 4 us a key, where a scan reads a row in 20 ns.
const SEEK: f64 = 200.0;
/// Work per record found through a secondary index, in scanned rows: the
/// record fetched by its key (its page found and searched; checked against
/// the entry only when versions lie above its page row). Measured: about
/// 2.5 us a record (TPC-H Q19 and Q8 at SF 1: with 150, Q8 read its 40,000
/// lineitems by scanning all 6 M, 222 ms; with 125 it looks them up, 175 ms).
const FETCH_INDEX: f64 = 125.0;
/// Work per record found through the primary key, in scanned rows: a row of
/// the page the seek found.
const FETCH_KEY: f64 = 5.0;
/// How far below the keys a lookup is worth (`keys_max`) the estimated keys
/// must lie for the plan to try one: estimates of filtered rows are often
/// off by this much, and a lookup given too many keys reads the table whole
/// at the cost of collecting them.
const OPTIMISM: f64 = 16.0;
/// What one key finds of a table when nothing says more.
const UNKNOWN_SHARE: f64 = 0.1;

/// A lookup a join's probe side can make.
#[derive(Debug, Clone)]
pub(crate) struct Choice<'r> {
    /// The table looked up.
    pub table: &'r Arc<TableDef>,
    /// The columns of the scan looked up (a column of it names the scan).
    pub scan_cols: &'r [ColId],
    /// The index, or `None` for the primary key.
    pub index: Option<Arc<IndexDef>>,
    /// For each key column in key order, which equality of the join
    /// condition (in [`crate::lower::equi_keys`] order) gives it.
    pub pairs: Vec<usize>,
    /// The probe side's column of each key column, in key order.
    pub probe_cols: Vec<ColId>,
    /// The key columns' types.
    pub key_types: Vec<SqlType>,
    /// Most distinct keys worth looking up (more: the host reads the table).
    pub keys_max: u32,
}

impl Choice<'_> {
    /// The declaration of the scan looked up.
    pub(crate) fn range(&self) -> ScanRangeDecl {
        ScanRangeDecl::Lookup {
            index: self.index.as_ref().map(|i| i.id),
            key_types: self.key_types.clone(),
            keys_max: self.keys_max,
        }
    }

    /// How EXPLAIN says it.
    pub(crate) fn describe(&self) -> String {
        let by = match &self.index {
            None => "its primary key".to_owned(),
            Some(i) => format!("index {}", i.name),
        };
        format!(
            "looks up {} by {by}, up to {} keys",
            self.table.name, self.keys_max
        )
    }
}

/// The input column that output `c` of `exprs` passes through (renamed or
/// not), if it is one.
fn passed(exprs: &[(ColId, BExpr)], c: ColId) -> Option<ColId> {
    let (_, e) = exprs.iter().find(|(o, _)| *o == c)?;
    match &e.kind {
        BK::Col(i) => Some(*i),
        _ => None,
    }
}

/// The table scan that column `c` of `rel` comes from, and the column's
/// position in it, if the path from `rel` down to the scan lets extra
/// records of the scan make only rows that keep their value of `c` (see the
/// module's text).
fn source(rel: &Rel, c: ColId) -> Option<(&Rel, usize)> {
    match rel {
        Rel::Scan {
            cols,
            key: None,
            range: ScanRangeDecl::All,
            ..
        } => cols.iter().position(|x| *x == c).map(|p| (rel, p)),
        Rel::Filter { input, .. } | Rel::Distinct { input } => source(input, c),
        Rel::Project { input, exprs }
        | Rel::Aggregate {
            input, keys: exprs, ..
        } => source(input, passed(exprs, c)?),
        Rel::Join {
            left, right, kind, ..
        } => match kind {
            JoinType::Inner | JoinType::Cross => source(left, c).or_else(|| source(right, c)),
            JoinType::Left => source(left, c),
            JoinType::Full => None,
        },
        Rel::Mark { left, .. } => source(left, c),
        _ => None,
    }
}

/// The lookup the probe side `probe` of a join with `build` on equalities
/// `pk[i] = bk[i]` (probe's, build's) should make, if any.
pub(crate) fn choose<'r>(
    est: &Estimator<'_>,
    cat: &Catalog,
    probe: &'r Rel,
    build: &Rel,
    pk: &[BExpr],
    bk: &[BExpr],
) -> Option<Choice<'r>> {
    // the probe keys that are columns of one table scan, by position there
    let mut scan: Option<(&'r Rel, HashMap<usize, usize>)> = None;
    for (i, k) in pk.iter().enumerate() {
        let BK::Col(c) = &k.kind else { continue };
        let Some((s, pos)) = source(probe, *c) else {
            continue;
        };
        match &mut scan {
            None => scan = Some((s, HashMap::from([(pos, i)]))),
            Some((t, m)) if std::ptr::eq(*t, s) => {
                m.entry(pos).or_insert(i);
            }
            Some(_) => {}
        }
    }
    let (scan_rel, by_pos) = scan?;
    let Rel::Scan { table, cols, .. } = scan_rel else {
        return None;
    };
    // the key (primary first, then each index) with most leading columns given
    let mut keys: Vec<(Option<Arc<IndexDef>>, Vec<usize>, bool)> =
        vec![(None, table.primary_key.clone(), true)];
    keys.extend(
        cat.indexes_of(table.id)
            .map(|i| (Some(i.clone()), i.columns.clone(), i.unique)),
    );
    let (index, key_cols, unique, width) = keys
        .into_iter()
        .map(|(i, cols, unique)| {
            let w = cols.iter().take_while(|p| by_pos.contains_key(p)).count();
            (i, cols, unique, w)
        })
        .filter(|(_, _, _, w)| *w > 0)
        .max_by_key(|(i, _, _, w)| (*w, i.is_none()))?;
    let mut pairs = Vec::with_capacity(width);
    let mut key_types = Vec::with_capacity(width);
    let mut probe_cols = Vec::with_capacity(width);
    for p in key_cols.iter().take(width) {
        let i = *by_pos.get(p)?;
        let ty = table.columns.get(*p)?.ty;
        let k = pk.get(i)?;
        if bk.get(i)?.ty != ty || k.ty != ty {
            return None;
        }
        let BK::Col(c) = &k.kind else { return None };
        pairs.push(i);
        key_types.push(ty);
        probe_cols.push(*c);
    }
    // the work of each way
    let records = est.info(scan_rel).rows;
    let given: Vec<ColId> = pairs
        .iter()
        .filter_map(|i| match &bk.get(*i)?.kind {
            BK::Col(c) => Some(*c),
            _ => None,
        })
        .collect();
    // distinct keys: no more than the build's rows, nor than the rows of
    // the relation each key column comes from
    let build_info = est.info(build);
    let mut keys = build_info.rows;
    for c in &given {
        keys = keys.min(distinct(est, build, *c));
        if let Some(d) = build_info.distinct.get(c) {
            keys = keys.min(*d);
        }
    }
    // the table's values of the key's columns, where statistics know them
    let probe_info = est.info(scan_rel);
    let values = key_cols.iter().take(width).try_fold(1.0f64, |p, pos| {
        cols.get(*pos)
            .and_then(|c| probe_info.distinct.get(c))
            .map(|d| p * d)
    });
    let per_key = if unique && width == key_cols.len() {
        1.0
    } else if given.len() == pairs.len()
        && let Some(d) = domain(est, build, &given)
    {
        // a foreign key: the table's rows spread over the key's values
        (records / d.max(1.0)).max(1.0)
    } else if let Some(v) = values {
        (records / v.max(1.0)).max(1.0)
    } else {
        (records * UNKNOWN_SHARE).max(1.0)
    };
    let fetch = if index.is_some() {
        FETCH_INDEX
    } else {
        FETCH_KEY
    };
    // the keys up to which looking them up costs less than the scan
    let keys_max = (records / (SEEK + per_key * fetch))
        .floor()
        .min(f64::from(u32::MAX));
    (keys_max >= 1.0 && keys < keys_max * OPTIMISM).then(|| Choice {
        table,
        scan_cols: cols,
        index,
        pairs,
        probe_cols,
        key_types,
        keys_max: keys_max as u32,
    })
}

/// The input of `rel` that column `c` passes through unchanged (as `c`, or
/// renamed: the column it is there).
fn below(rel: &Rel, c: ColId) -> Option<(&Rel, ColId)> {
    match rel {
        Rel::Filter { input, .. }
        | Rel::Distinct { input }
        | Rel::Sort { input, .. }
        | Rel::Limit { input, .. } => Some((input, c)),
        Rel::Project { input, exprs }
        | Rel::Aggregate {
            input, keys: exprs, ..
        } => Some((input, passed(exprs, c)?)),
        Rel::Join { left, right, .. } => {
            if left.output().contains(&c) {
                Some((left, c))
            } else {
                Some((right, c))
            }
        }
        Rel::Mark { left, .. } => Some((left, c)),
        _ => None,
    }
}

/// At most how many values column `c` of `rel` takes: no more than the
/// rows of `rel`, nor than those of the input it comes from.
fn distinct(est: &Estimator<'_>, rel: &Rel, c: ColId) -> f64 {
    let here = est.info(rel).rows;
    match below(rel, c) {
        Some((input, i)) => here.min(distinct(est, input, i)),
        None => here,
    }
}

/// The rows of the table whose primary key or a unique index lies among
/// columns `cols` of `rel`: the number of values a foreign key to them
/// takes.
fn domain(est: &Estimator<'_>, rel: &Rel, cols: &[ColId]) -> Option<f64> {
    if let Rel::Scan {
        table, cols: all, ..
    } = rel
    {
        let mut pos: Vec<usize> = cols
            .iter()
            .map(|c| all.iter().position(|x| x == c))
            .collect::<Option<_>>()?;
        pos.sort_unstable();
        // the columns hold a unique key (then any more of them too)
        let is = |key: &[usize]| !key.is_empty() && key.iter().all(|p| pos.contains(p));
        let unique = (!table.primary_key.is_empty() && is(&table.primary_key))
            || est
                .catalog()
                .indexes_of(table.id)
                .any(|i| i.unique && is(&i.columns));
        return unique.then(|| est.info(rel).rows);
    }
    let mut down = Vec::with_capacity(cols.len());
    let mut input = None;
    for c in cols {
        let (r, i) = below(rel, *c)?;
        // every column through the same input
        match input {
            None => input = Some(r),
            Some(x) if std::ptr::eq(x, r) => {}
            Some(_) => return None,
        }
        down.push(i);
    }
    domain(est, input?, &down)
}

/// The lookup a join of `left` with `right` (`kind`, on `on`) makes, if any:
/// an inner join's left side is its probe side, a LEFT join holding its
/// left side probes with its right.
pub(crate) fn for_join<'r>(
    est: &Estimator<'_>,
    left: &'r Rel,
    right: &'r Rel,
    kind: JoinType,
    on: Option<&BExpr>,
) -> Option<Choice<'r>> {
    let (probe, build) = match kind {
        JoinType::Inner | JoinType::Cross => (left, right),
        JoinType::Left if crate::cost::holds_left(est, left, right, on) => (right, left),
        JoinType::Left | JoinType::Full => return None,
    };
    let pset: HashSet<ColId> = probe.output().into_iter().collect();
    let bset: HashSet<ColId> = build.output().into_iter().collect();
    let (pk, bk, _) = crate::lower::equi_keys(on, &pset, &bset);
    choose(est, est.catalog(), probe, build, &pk, &bk)
}
