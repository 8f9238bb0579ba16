//! What a coordinator needs to send a statement to the shards that hold its
//! rows: the tables it reads, each with the placing values its predicates keep
//! (a point or an OR of points on the placing column), and the table it writes
//! with the placing values of the rows it writes, when the plan says them.
//!
//! A predicate prunes a scan only where it holds for every row the scan feeds
//! to the result: the filters directly above the scan, and above the
//! projections and joins between (a filter above a join removes the rows its
//! columns fail, whatever the join kind). Anything that picks rows by position
//! or count (a LIMIT, a sort, an aggregate) stops a predicate from reaching
//! further down.

use crate::logical::{BExpr, BK, ColId, Rel};
use scratchbird_guest_ops::abi::ScanRangeDecl;
use scratchbird_guest_ops::plan::CmpOp;
use scratchbird_types::infoschema::View;
use scratchbird_types::placement;
use scratchbird_types::schema::{Distribution, TableDef};
use scratchbird_types::{SqlType, TableId, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Most placing values a route keeps for one table; beyond, the table is read
/// on every shard.
const KEYS_MAX: usize = 1_024;

/// Where a statement's rows are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    /// The tables it reads (one entry per scan).
    pub reads: Vec<TableRoute>,
    /// The table it writes, if any.
    pub write: Option<TableRoute>,
}

/// One table of a statement.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRoute {
    /// The table.
    pub table: TableId,
    /// Its name, for messages.
    pub name: String,
    /// How its rows are placed.
    pub placement: Distribution,
    /// The placing column's name and type.
    pub column: (String, SqlType),
    /// The placing values the statement keeps, when it keeps only those;
    /// `None`: any.
    pub keys: Option<Vec<Value>>,
    /// Rows written that place themselves: their placing column is SERIAL
    /// or identity and the INSERT leaves it out, so whichever shard takes
    /// the rows draws values that place on it. The statement runs on one
    /// shard, any.
    pub anywhere: bool,
}

impl TableRoute {
    fn of(def: &TableDef, keys: Option<Vec<Value>>) -> Self {
        let placement = def.placement().into_owned();
        let column = def
            .columns
            .get(placement.column())
            .map_or((String::new(), SqlType::Text), |c| (c.name.clone(), c.ty));
        Self {
            table: def.id,
            name: def.name.clone(),
            placement,
            column,
            keys,
            anywhere: false,
        }
    }

    /// The positions, among `shards` shards, that hold the rows this table
    /// route names; `None`: all.
    #[must_use]
    pub fn shards(&self, shards: usize) -> Option<BTreeSet<usize>> {
        let keys = self.keys.as_ref()?;
        let mut out = BTreeSet::new();
        for v in keys {
            // a value the rule cannot place could be anywhere
            out.insert(placement::shard_of(&self.placement, &self.column.1, v, shards).ok()?);
        }
        Some(out)
    }
}

impl Route {
    /// The positions, among `shards` shards, that the statement's reads need;
    /// `None`: all of them. A statement that reads no table needs one shard
    /// (an empty set: any).
    #[must_use]
    pub fn read_shards(&self, shards: usize) -> Option<BTreeSet<usize>> {
        let mut out = BTreeSet::new();
        for r in &self.reads {
            out.extend(r.shards(shards)?);
        }
        Some(out)
    }
}

/// The route of a plan `rel` (and its init plans), reading `write` when the
/// statement writes a table.
pub(crate) fn of(rel: &Rel, inits: &[&Rel]) -> Route {
    let mut reads = Vec::new();
    walk(rel, &mut Vec::new(), &mut reads);
    for i in inits {
        walk(i, &mut Vec::new(), &mut reads);
    }
    Route { reads, write: None }
}

/// The write route of an INSERT of `rel` (optimised) into `table`, its
/// columns filled at `positions`: the placing values when the rows are
/// constants.
pub(crate) fn insert(rel: &Rel, table: &TableDef, positions: &[usize]) -> TableRoute {
    let p = table.placement().column();
    if !positions.contains(&p)
        && table
            .columns
            .get(p)
            .and_then(|c| c.default_fn)
            .is_some_and(scratchbird_types::schema::DefaultFn::is_identity)
    {
        let mut r = TableRoute::of(table, None);
        r.anywhere = true;
        return r;
    }
    let keys = match (positions.iter().position(|&x| x == p), rel) {
        // not given: every row takes the column's default
        (None, _) => Some(vec![
            table
                .columns
                .get(p)
                .and_then(|c| c.default.clone())
                .unwrap_or(Value::Null),
        ]),
        (Some(i), Rel::Values { rows, .. }) if rows.len() <= KEYS_MAX => {
            rows.iter().map(|r| r.get(i).cloned()).collect()
        }
        _ => None,
    };
    TableRoute::of(table, keys)
}

/// The write route of an UPDATE or DELETE of `table`: the keys its reads of
/// that table keep.
pub(crate) fn change(route: &Route, table: &TableDef) -> TableRoute {
    let keys = route
        .reads
        .iter()
        .find(|r| r.table == table.id)
        .and_then(|r| r.keys.clone());
    TableRoute::of(table, keys)
}

fn walk<'a>(rel: &'a Rel, conds: &mut Vec<&'a BExpr>, out: &mut Vec<TableRoute>) {
    match rel {
        // rows the statement wrote, read back for RETURNING, and catalog
        // views (every shard's catalog is the same): no read of a table
        Rel::Scan {
            range: ScanRangeDecl::Written { .. },
            ..
        } => {}
        Rel::Scan { table, .. } if View::by_id(table.id).is_some() => {}
        Rel::Scan { table, cols, .. } => out.push(scan(table, cols, conds)),
        Rel::Filter { input, pred } => {
            let n = conds.len();
            conjuncts(pred, conds);
            walk(input, conds, out);
            conds.truncate(n);
        }
        Rel::Project { input, .. } => walk(input, conds, out),
        Rel::Join { left, right, .. } => {
            walk(left, conds, out);
            walk(right, conds, out);
        }
        // what holds above a mark join holds for its outer rows only
        Rel::Mark { left, right, .. } => {
            walk(left, conds, out);
            walk(right, &mut Vec::new(), out);
        }
        Rel::Aggregate { input, .. }
        | Rel::Sort { input, .. }
        | Rel::Limit { input, .. }
        | Rel::Repeat { input, .. }
        | Rel::Window { input, .. }
        | Rel::Distinct { input } => walk(input, &mut Vec::new(), out),
        Rel::UnionAll { inputs, .. } => {
            for i in inputs {
                walk(i, &mut Vec::new(), out);
            }
        }
        Rel::Values { .. } | Rel::Exchange { .. } | Rel::WorkTable { .. } => {}
        Rel::Recursive { base, step, .. } => {
            walk(base, &mut Vec::new(), out);
            walk(step, &mut Vec::new(), out);
        }
    }
}

fn conjuncts<'a>(e: &'a BExpr, out: &mut Vec<&'a BExpr>) {
    if let BK::And(a, b) = &e.kind {
        conjuncts(a, out);
        conjuncts(b, out);
    } else {
        out.push(e);
    }
}

fn scan(table: &Arc<TableDef>, cols: &[ColId], conds: &[&BExpr]) -> TableRoute {
    let d = table.placement();
    let keys = cols.get(d.column()).and_then(|&c| {
        let ty = table.columns.get(d.column())?.ty;
        conds.iter().find_map(|e| {
            let mut v = Vec::new();
            points(e, c, &ty, &mut v).then_some(v)
        })
    });
    TableRoute::of(table, keys)
}

/// Whether `e` holds only where column `c` (of type `ty`) is one of some
/// constants, which are added to `out`.
fn points(e: &BExpr, c: ColId, ty: &SqlType, out: &mut Vec<Value>) -> bool {
    match &e.kind {
        BK::Cmp(CmpOp::Eq, a, b) => {
            let v = match (&a.kind, &b.kind) {
                (BK::Col(x), BK::Lit(v)) | (BK::Lit(v), BK::Col(x)) if *x == c => v,
                _ => return false,
            };
            // a comparison in another type (a cast on the column) proves nothing
            if a.ty != *ty || b.ty != *ty || v.is_null() || out.len() >= KEYS_MAX {
                return false;
            }
            out.push(v.clone());
            true
        }
        BK::Or(a, b) => points(a, c, ty, out) && points(b, c, ty, out),
        BK::And(a, b) => {
            // either side's points bound the conjunction
            let n = out.len();
            if points(a, c, ty, out) {
                return true;
            }
            out.truncate(n);
            points(b, c, ty, out)
        }
        _ => false,
    }
}
