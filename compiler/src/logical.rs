//! The bound logical plan: relations over typed expressions. Columns are named by
//! [`ColId`]s unique within a statement, so rewriting the tree never renumbers
//! anything; lowering maps them to slots.

use crate::catalog::TableDef;
use scratchbird_guest_ops::abi::ScanRangeDecl;
use scratchbird_guest_ops::plan::{ArithOp, CmpOp, Frame, Func, WinFunc};
use scratchbird_types::{SqlType, Value};
use std::sync::Arc;

/// A column of some relation in the statement.
pub type ColId = u32;

/// What is known of a column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColMeta {
    /// Name (for output headers and errors).
    pub name: String,
    /// Type.
    pub ty: SqlType,
    /// Whether it can be NULL.
    pub nullable: bool,
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct BExpr {
    /// What it computes.
    pub kind: BK,
    /// Its type.
    pub ty: SqlType,
    /// Whether it can be NULL.
    pub nullable: bool,
}

/// Expression forms. Operands already have the types the operator needs (the
/// binder inserted the casts); DECIMAL multiplication and division keep their
/// operands' scales and lowering aligns them.
#[derive(Debug, Clone, PartialEq)]
pub enum BK {
    /// A column.
    Col(ColId),
    /// A constant (`Value::Null` for NULL of `ty`).
    Lit(Value),
    /// Arithmetic.
    Arith(ArithOp, Box<BExpr>, Box<BExpr>),
    /// Negation.
    Neg(Box<BExpr>),
    /// Comparison of operands of one type.
    Cmp(CmpOp, Box<BExpr>, Box<BExpr>),
    /// AND.
    And(Box<BExpr>, Box<BExpr>),
    /// OR.
    Or(Box<BExpr>, Box<BExpr>),
    /// NOT.
    Not(Box<BExpr>),
    /// IS NULL.
    IsNull(Box<BExpr>),
    /// CASE WHEN ... THEN ... ELSE ... END.
    Case(Vec<(BExpr, BExpr)>, Box<BExpr>),
    /// Conversion to `ty`.
    Cast(Box<BExpr>),
    /// A scalar function.
    Func(Func, Vec<BExpr>),
    /// The value of init plan `i` (a scalar subquery, or EXISTS).
    Init(usize),
    /// `e IN (the set of init plan i)`.
    InSet(Box<BExpr>, usize),
}

/// What an uncorrelated subquery computes before the statement's pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// A scalar subquery (one column, at most one row).
    Scalar,
    /// EXISTS.
    Exists,
    /// The set of an IN (subquery) (one column).
    Set,
}

impl BExpr {
    /// A literal.
    #[must_use]
    pub fn lit(v: Value, ty: SqlType) -> Self {
        let nullable = v.is_null();
        Self {
            kind: BK::Lit(v),
            ty,
            nullable,
        }
    }

    /// A column reference.
    #[must_use]
    pub fn col(id: ColId, meta: &ColMeta) -> Self {
        Self {
            kind: BK::Col(id),
            ty: meta.ty,
            nullable: meta.nullable,
        }
    }

    /// Every column this expression reads.
    pub fn columns(&self, out: &mut Vec<ColId>) {
        match &self.kind {
            BK::Col(c) => out.push(*c),
            BK::Lit(_) => {}
            BK::Arith(_, a, b) | BK::Cmp(_, a, b) | BK::And(a, b) | BK::Or(a, b) => {
                a.columns(out);
                b.columns(out);
            }
            BK::Neg(a) | BK::Not(a) | BK::IsNull(a) | BK::Cast(a) | BK::InSet(a, _) => {
                a.columns(out);
            }
            BK::Init(_) => {}
            BK::Case(w, e) => {
                for (c, v) in w {
                    c.columns(out);
                    v.columns(out);
                }
                e.columns(out);
            }
            BK::Func(_, args) => {
                for a in args {
                    a.columns(out);
                }
            }
        }
    }

    /// How many nodes the expression has.
    #[must_use]
    pub fn size(&self) -> usize {
        1 + match &self.kind {
            BK::Col(_) | BK::Lit(_) | BK::Init(_) => 0,
            BK::Arith(_, a, b) | BK::Cmp(_, a, b) | BK::And(a, b) | BK::Or(a, b) => {
                a.size() + b.size()
            }
            BK::Neg(a) | BK::Not(a) | BK::IsNull(a) | BK::Cast(a) | BK::InSet(a, _) => a.size(),
            BK::Case(w, e) => w.iter().map(|(c, v)| c.size() + v.size()).sum::<usize>() + e.size(),
            BK::Func(_, args) => args.iter().map(BExpr::size).sum(),
        }
    }

    /// The top-level conjuncts of an AND tree.
    #[must_use]
    pub fn conjuncts(self) -> Vec<BExpr> {
        match self.kind {
            BK::And(a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            _ => vec![self],
        }
    }

    /// AND of `parts` (`None` when empty), as a balanced tree: a long list of
    /// conjuncts nests only logarithmically deep.
    #[must_use]
    pub fn and_all(parts: Vec<BExpr>) -> Option<BExpr> {
        Self::balanced(parts, |a, b| BK::And(Box::new(a), Box::new(b)))
    }

    /// OR of `parts` (`None` when empty), as a balanced tree.
    #[must_use]
    pub fn or_all(parts: Vec<BExpr>) -> Option<BExpr> {
        Self::balanced(parts, |a, b| BK::Or(Box::new(a), Box::new(b)))
    }

    /// `parts` joined pairwise by the boolean operator `join`, in their order, as
    /// a balanced tree.
    fn balanced(mut parts: Vec<BExpr>, join: impl Fn(BExpr, BExpr) -> BK) -> Option<BExpr> {
        while parts.len() > 1 {
            let mut next = Vec::with_capacity(parts.len().div_ceil(2));
            let mut it = parts.into_iter();
            while let Some(a) = it.next() {
                next.push(match it.next() {
                    Some(b) => {
                        let nullable = a.nullable || b.nullable;
                        BExpr {
                            kind: join(a, b),
                            ty: SqlType::Boolean,
                            nullable,
                        }
                    }
                    None => a,
                });
            }
            parts = next;
        }
        parts.pop()
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// COUNT(*)
    CountStar,
    /// COUNT(e)
    Count,
    /// SUM(e)
    Sum,
    /// MIN(e)
    Min,
    /// MAX(e)
    Max,
}

/// One aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct BAgg {
    /// Function.
    pub kind: AggKind,
    /// Argument.
    pub arg: Option<BExpr>,
    /// Result type.
    pub ty: SqlType,
}

/// One window function of a [`Rel::Window`].
#[derive(Debug, Clone, PartialEq)]
pub struct BWin {
    /// Function (an aggregate already resolved to its physical form).
    pub func: WinFunc,
    /// Argument, over the input's columns.
    pub arg: Option<BExpr>,
    /// `lag` and `lead`'s default, over the current row's columns.
    pub default: Option<BExpr>,
    /// Frame.
    pub frame: Frame,
    /// A RANGE frame's offset bounds, as tests of another row's ORDER BY
    /// key against the current row's.
    pub range: Option<RangeTests>,
}

/// The tests a RANGE frame with an offset makes: whether another row (its
/// ORDER BY key in column `other`) is on the frame's side of the start bound
/// and of the end bound of the current row (its key in `cur`); the keys are
/// not NULL when tested. `None` for a bound that is not an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeTests {
    /// The other row's key.
    pub other: ColId,
    /// The current row's key.
    pub cur: ColId,
    /// At or after the frame's start.
    pub start: Option<BExpr>,
    /// At or before the frame's end.
    pub end: Option<BExpr>,
}

/// How two relations are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    /// INNER JOIN.
    Inner,
    /// LEFT [OUTER] JOIN (a RIGHT JOIN is one with its sides swapped).
    Left,
    /// FULL [OUTER] JOIN: an equi-join; both sides' unmatched rows are kept.
    Full,
    /// CROSS JOIN (or a comma).
    Cross,
}

/// A sort key: a column of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BSortKey {
    /// The column.
    pub col: ColId,
    /// DESC.
    pub desc: bool,
    /// NULLS FIRST.
    pub nulls_first: bool,
}

/// A relation.
#[derive(Debug, Clone, PartialEq)]
pub enum Rel {
    /// A table; `cols[i]` names table column i.
    Scan {
        /// The table.
        table: Arc<TableDef>,
        /// One id per table column.
        cols: Vec<ColId>,
        /// The record key column, for updates and deletes.
        key: Option<ColId>,
        /// Which records (set by the optimiser when an index serves a filter).
        range: ScanRangeDecl,
    },
    /// Constant rows.
    Values {
        /// Output columns.
        cols: Vec<ColId>,
        /// Rows of constants (already of the columns' types).
        rows: Vec<Vec<Value>>,
    },
    /// Rows where `pred` is TRUE.
    Filter {
        /// Input.
        input: Box<Rel>,
        /// Predicate.
        pred: BExpr,
    },
    /// Computed columns.
    Project {
        /// Input.
        input: Box<Rel>,
        /// Output columns and their expressions.
        exprs: Vec<(ColId, BExpr)>,
    },
    /// Grouping: output is the keys then the aggregates.
    Aggregate {
        /// Input.
        input: Box<Rel>,
        /// Group keys.
        keys: Vec<(ColId, BExpr)>,
        /// Aggregates.
        aggs: Vec<(ColId, BAgg)>,
    },
    /// Ordering, optionally keeping only the first rows.
    Sort {
        /// Input.
        input: Box<Rel>,
        /// Keys.
        keys: Vec<BSortKey>,
        /// Top-k.
        limit: Option<u64>,
    },
    /// Each row of `input` `count` times (a BIGINT over the row; NULL or
    /// below one: not at all): INTERSECT ALL and EXCEPT ALL.
    Repeat {
        /// Input.
        input: Box<Rel>,
        /// How many times.
        count: BExpr,
    },
    /// OFFSET / LIMIT.
    Limit {
        /// Input.
        input: Box<Rel>,
        /// LIMIT.
        limit: Option<u64>,
        /// OFFSET.
        offset: u64,
    },
    /// A join; output is the left's columns then the right's.
    Join {
        /// Left (probe).
        left: Box<Rel>,
        /// Right (build).
        right: Box<Rel>,
        /// Kind.
        kind: JoinType,
        /// Condition.
        on: Option<BExpr>,
    },
    /// Each row of `left` once, with a BOOLEAN column `mark` saying whether some
    /// row of `right` matches it: a right row is a candidate where `on` is TRUE
    /// (NULL counts as FALSE); the mark is TRUE if some candidate makes `test`
    /// TRUE (no test: if there is a candidate), else NULL if some candidate makes
    /// it NULL, else FALSE. A correlated EXISTS or IN subquery, decorrelated.
    Mark {
        /// The outer rows.
        left: Box<Rel>,
        /// The subquery's rows.
        right: Box<Rel>,
        /// The correlation: a two-valued condition over both sides.
        on: Option<BExpr>,
        /// The three-valued test (the comparison of an IN).
        test: Option<BExpr>,
        /// The mark column.
        mark: ColId,
    },
    /// Window functions over partitions of the input: output is the
    /// input's columns then one per function.
    Window {
        /// Input.
        input: Box<Rel>,
        /// Columns whose equal values make a partition.
        partition: Vec<ColId>,
        /// The order within a partition (equal rows are peers).
        order: Vec<BSortKey>,
        /// The functions and their columns.
        funcs: Vec<(ColId, BWin)>,
    },
    /// WITH RECURSIVE ... UNION [ALL]: `base`'s rows, then what `step` makes
    /// from the last rows (reading them as `Rel::WorkTable` `work`), until
    /// it makes none. Columns positionally, of `base`'s types.
    Recursive {
        /// The non-recursive term.
        base: Box<Rel>,
        /// The recursive term.
        step: Box<Rel>,
        /// The work table `step` reads.
        work: usize,
        /// UNION (not ALL): a row equal to one made before is dropped.
        distinct: bool,
        /// Output columns.
        cols: Vec<ColId>,
    },
    /// The last rows of recursion `work`, inside its step.
    WorkTable {
        /// Which recursion's.
        work: usize,
        /// Its columns.
        cols: Vec<ColId>,
    },
    /// UNION ALL: inputs of the same column types, positionally.
    UnionAll {
        /// Inputs.
        inputs: Vec<Rel>,
        /// Output columns.
        cols: Vec<ColId>,
    },
    /// Duplicate removal.
    Distinct {
        /// Input.
        input: Box<Rel>,
    },
    /// In a merge stage: what the shard stages emitted to their output `input`.
    Exchange {
        /// The shard output (and merge input) index.
        input: usize,
        /// Its columns.
        cols: Vec<ColId>,
    },
}

impl Rel {
    /// Whether it reads a table anywhere (an init plan that reads none, such as
    /// the set of an IN list of constants, can run in any stage).
    #[must_use]
    pub fn reads_tables(&self) -> bool {
        self.scans_any(&|_| true)
    }

    /// Whether it reads a catalog view (`information_schema.tables`, ...).
    #[must_use]
    pub fn reads_catalog_views(&self) -> bool {
        self.scans_any(&|t| scratchbird_types::infoschema::View::by_id(t.id).is_some())
    }

    /// Whether it scans a table for which `f` holds.
    fn scans_any(&self, f: &dyn Fn(&TableDef) -> bool) -> bool {
        match self {
            Rel::Scan { table, .. } => f(table),
            Rel::Values { .. } | Rel::Exchange { .. } | Rel::WorkTable { .. } => false,
            Rel::Recursive { base, step, .. } => base.scans_any(f) || step.scans_any(f),
            Rel::Filter { input, .. }
            | Rel::Project { input, .. }
            | Rel::Aggregate { input, .. }
            | Rel::Sort { input, .. }
            | Rel::Limit { input, .. }
            | Rel::Repeat { input, .. }
            | Rel::Window { input, .. }
            | Rel::Distinct { input } => input.scans_any(f),
            Rel::Join { left, right, .. } | Rel::Mark { left, right, .. } => {
                left.scans_any(f) || right.scans_any(f)
            }
            Rel::UnionAll { inputs, .. } => inputs.iter().any(|i| i.scans_any(f)),
        }
    }

    /// The output columns, in order.
    #[must_use]
    pub fn output(&self) -> Vec<ColId> {
        match self {
            Rel::Scan { cols, key, .. } => {
                let mut v = cols.clone();
                v.extend(key.iter().copied());
                v
            }
            Rel::Values { cols, .. }
            | Rel::UnionAll { cols, .. }
            | Rel::Exchange { cols, .. }
            | Rel::Recursive { cols, .. }
            | Rel::WorkTable { cols, .. } => cols.clone(),
            Rel::Filter { input, .. }
            | Rel::Sort { input, .. }
            | Rel::Limit { input, .. }
            | Rel::Repeat { input, .. }
            | Rel::Distinct { input } => input.output(),
            Rel::Project { exprs, .. } => exprs.iter().map(|(c, _)| *c).collect(),
            Rel::Aggregate { keys, aggs, .. } => keys
                .iter()
                .map(|(c, _)| *c)
                .chain(aggs.iter().map(|(c, _)| *c))
                .collect(),
            Rel::Join { left, right, .. } => {
                let mut v = left.output();
                v.extend(right.output());
                v
            }
            Rel::Mark { left, mark, .. } => {
                let mut v = left.output();
                v.push(*mark);
                v
            }
            Rel::Window { input, funcs, .. } => {
                let mut v = input.output();
                v.extend(funcs.iter().map(|(c, _)| *c));
                v
            }
        }
    }
}
