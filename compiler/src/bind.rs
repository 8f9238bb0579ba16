//! Binding: sqlparser's AST against the catalog into the typed logical plan. Names
//! become column ids, literals get types, operands get the conversions their
//! operators need, and every error says where it is and what to do.

use crate::catalog::{Catalog, TableDef, user_table, user_table_names};
use crate::error::{CompileError, Pos, codes};
use crate::logical::{AggKind, BAgg, BExpr, BK, BSortKey, ColId, ColMeta, InitKind, JoinType, Rel};
use crate::typing::{
    DECIMAL_COMPUTE_DIGITS, arith_type, coerce, common_numeric, common_type, is_numeric, is_text,
    parse_date, parse_number, parse_timestamp,
};
use scratchbird_guest_ops::abi::ScanRangeDecl;
use scratchbird_guest_ops::plan::{ArithOp, CmpOp, DatePart, Func};
use scratchbird_types::{SqlType, Value};
use sqlparser::ast::{
    self, BinaryOperator, DataType, DateTimeField, Distinct, DuplicateTreatment, ExactNumberInfo,
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint,
    JoinOperator, LimitClause, ObjectName, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SetExpr, SetOperator, SetQuantifier, Spanned, TableFactor, TableWithJoins, UnaryOperator,
};
use std::collections::HashMap;
use std::sync::Arc;

use crate::limits::{COLUMNS_MAX, EXPRS_MAX, FROM_ITEMS_MAX};

/// IN lists of at least this many constants become a hash set.
const IN_SET_MIN: usize = 16;

pub(crate) fn pos_of(s: &impl Spanned) -> Option<Pos> {
    let sp = s.span();
    (sp.start.line > 0).then_some(Pos {
        line: sp.start.line,
        column: sp.start.column,
    })
}

fn ident_pos(i: &Ident) -> Option<Pos> {
    (i.span.start.line > 0).then_some(Pos {
        line: i.span.start.line,
        column: i.span.start.column,
    })
}

/// An identifier as the catalog spells it: unquoted names fold to lower case.
pub(crate) fn norm(i: &Ident) -> String {
    if i.quote_style.is_none() {
        i.value.to_lowercase()
    } else {
        i.value.clone()
    }
}

/// The last part of an object name, normalised.
pub(crate) fn object_name(n: &ObjectName) -> Result<String, CompileError> {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(norm)
        .ok_or_else(|| CompileError::new(codes::SYNTAX, format!("\"{n}\" is not a plain name")))
}

fn unsupported(what: impl Into<String>) -> CompileError {
    CompileError::new(
        codes::NOT_SUPPORTED,
        format!("{} is not supported yet", what.into()),
    )
}

fn mismatch(msg: impl Into<String>) -> CompileError {
    CompileError::new(codes::DATATYPE_MISMATCH, msg)
}

/// The SQL type of a declared type; domains resolve to their base type.
pub(crate) fn sql_type(dt: &DataType, cat: &Catalog) -> Result<SqlType, CompileError> {
    let len = |l: &Option<ast::CharacterLength>| -> Result<SqlType, CompileError> {
        Ok(match l {
            Some(ast::CharacterLength::IntegerLength { length, .. }) => SqlType::Varchar {
                max_chars: u32::try_from(*length).map_err(|_| {
                    CompileError::new(codes::INVALID_DEFINITION, "VARCHAR length is too large")
                })?,
            },
            _ => SqlType::Text,
        })
    };
    let ty = match dt {
        DataType::Boolean | DataType::Bool => SqlType::Boolean,
        DataType::SmallInt(_) | DataType::Int2(_) => SqlType::SmallInt,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => SqlType::Integer,
        DataType::BigInt(_) | DataType::Int8(_) => SqlType::BigInt,
        DataType::DoublePrecision
        | DataType::Float8
        | DataType::Double(_)
        | DataType::Float(_)
        | DataType::Real
        | DataType::Float4 => SqlType::Double,
        DataType::Numeric(info) | DataType::Decimal(info) | DataType::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (DECIMAL_COMPUTE_DIGITS, 0),
                ExactNumberInfo::Precision(p) => (u8::try_from(*p).unwrap_or(u8::MAX), 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (
                    u8::try_from(*p).unwrap_or(u8::MAX),
                    u8::try_from(*s).unwrap_or(u8::MAX),
                ),
            };
            SqlType::Decimal {
                precision: p,
                scale: s,
            }
        }
        DataType::Varchar(l) | DataType::CharacterVarying(l) | DataType::CharVarying(l) => len(l)?,
        DataType::Text | DataType::String(_) => SqlType::Text,
        DataType::Character(l) | DataType::Char(l) => len(l)?,
        DataType::Date => SqlType::Date,
        DataType::Timestamp(_, tz) => {
            if matches!(tz, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) {
                return Err(unsupported("TIMESTAMP WITH TIME ZONE")
                    .hint("use TIMESTAMP (without time zone) and store UTC"));
            }
            SqlType::Timestamp
        }
        DataType::Bytea | DataType::Blob(_) => SqlType::Blob,
        DataType::Custom(name, mods) if mods.is_empty() => {
            let n = object_name(name)?;
            match cat.domain_by_name(&n) {
                Some(d) => d.base,
                None => {
                    return Err(CompileError::new(
                        codes::DATATYPE_MISMATCH,
                        format!("type \"{n}\" does not exist"),
                    )
                    .hint("use a SQL type such as INTEGER, DECIMAL(p, s), VARCHAR(n), DATE, or a domain created with CREATE DOMAIN"));
                }
            }
        }
        other => return Err(unsupported(format!("the type {other}"))),
    };
    ty.validate()
        .map_err(|e| CompileError::new(codes::INVALID_DEFINITION, e.to_string()))?;
    Ok(ty)
}

/// A column visible by name.
#[derive(Debug, Clone)]
struct ScopeCol {
    qualifier: Option<String>,
    name: String,
    id: ColId,
}

#[derive(Debug, Clone, Default)]
struct Scope {
    cols: Vec<ScopeCol>,
}

/// Aggregates found while binding one SELECT.
#[derive(Default)]
struct AggCtx {
    aggs: Vec<(ColId, BAgg, bool)>,
    /// Bound argument and function of each aggregate, to reuse duplicates.
    seen: Vec<(AggKind, Option<BExpr>, bool, ColId)>,
}

/// The statement's binder.
pub(crate) struct Binder<'c> {
    pub(crate) cat: &'c Catalog,
    pub(crate) meta: HashMap<ColId, ColMeta>,
    /// Uncorrelated subqueries, computed before the statement's pipelines.
    pub(crate) inits: Vec<(InitKind, Rel)>,
    /// The scopes of the queries enclosing the one being bound.
    outer: Vec<Scope>,
    /// Init plans by subquery text (and kind and type), so that the same subquery
    /// bound twice (a GROUP BY key and its select item) is one plan.
    init_keys: HashMap<String, usize>,
    next: ColId,
    exprs: usize,
}

/// A bound SELECT: relation, output names, ORDER BY keys.
type SelectParts = (Rel, Vec<String>, Vec<BSortKey>);

/// The result of binding a query.
pub(crate) struct BoundQuery {
    pub(crate) rel: Rel,
    pub(crate) names: Vec<String>,
}

fn is_agg_name(n: &str) -> Option<AggKind> {
    Some(match n {
        "count" => AggKind::Count,
        "sum" | "avg" => AggKind::Sum,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        _ => return None,
    })
}

fn func_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(norm)
        .unwrap_or_default()
}

/// Finds aggregate calls of this query level (not inside a subquery).
struct AggFinder {
    depth: usize,
    found: bool,
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::In {
                target: ast::InTarget::Subquery(_),
                ..
            }
    )
}

impl ast::Visitor for AggFinder {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
        if is_subquery(e) {
            self.depth += 1;
        }
        if self.depth == 0
            && let Expr::Function(f) = e
            && is_agg_name(&func_name(f)).is_some()
            && f.over.is_none()
        {
            self.found = true;
        }
        std::ops::ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
        if is_subquery(e) {
            self.depth -= 1;
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn contains_agg(e: &Expr) -> bool {
    use ast::Visit;
    let mut v = AggFinder {
        depth: 0,
        found: false,
    };
    let _ = e.visit(&mut v);
    v.found
}

fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => norm(i),
        Expr::CompoundIdentifier(v) => v.last().map(norm).unwrap_or_default(),
        Expr::Function(f) => func_name(f),
        Expr::Nested(x) => output_name(x),
        Expr::Cast { expr, .. } => output_name(expr),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

fn bool_lit(b: bool) -> BExpr {
    BExpr::lit(Value::Boolean(b), SqlType::Boolean)
}

fn mk(kind: BK, ty: SqlType, nullable: bool) -> BExpr {
    BExpr { kind, ty, nullable }
}

fn cmp(op: CmpOp, a: BExpr, b: BExpr) -> BExpr {
    let n = a.nullable || b.nullable;
    mk(BK::Cmp(op, Box::new(a), Box::new(b)), SqlType::Boolean, n)
}

fn and(a: BExpr, b: BExpr) -> BExpr {
    let n = a.nullable || b.nullable;
    mk(BK::And(Box::new(a), Box::new(b)), SqlType::Boolean, n)
}

fn or(a: BExpr, b: BExpr) -> BExpr {
    let n = a.nullable || b.nullable;
    mk(BK::Or(Box::new(a), Box::new(b)), SqlType::Boolean, n)
}

fn not(a: BExpr) -> BExpr {
    let n = a.nullable;
    mk(BK::Not(Box::new(a)), SqlType::Boolean, n)
}

fn is_null(a: BExpr) -> BExpr {
    mk(BK::IsNull(Box::new(a)), SqlType::Boolean, false)
}

/// The NULL of the literal `NULL`, whose type the context decides (a typed NULL,
/// `CAST(NULL AS INTEGER)`, is not one).
fn is_null_lit(e: &BExpr) -> bool {
    matches!(e.kind, BK::Lit(Value::Null)) && e.ty == SqlType::Text
}

fn is_text_lit(e: &BExpr) -> Option<&str> {
    match &e.kind {
        BK::Lit(Value::Text(s)) => Some(s),
        _ => None,
    }
}

impl<'c> Binder<'c> {
    pub(crate) fn new(cat: &'c Catalog) -> Self {
        Self {
            cat,
            meta: HashMap::new(),
            inits: Vec::new(),
            outer: Vec::new(),
            init_keys: HashMap::new(),
            next: 0,
            exprs: 0,
        }
    }

    pub(crate) fn new_col(&mut self, name: &str, ty: SqlType, nullable: bool) -> ColId {
        let id = self.next;
        self.next += 1;
        self.meta.insert(
            id,
            ColMeta {
                name: name.to_owned(),
                ty,
                nullable,
            },
        );
        id
    }

    fn meta(&self, c: ColId) -> Result<&ColMeta, CompileError> {
        self.meta
            .get(&c)
            .ok_or_else(|| CompileError::new("XX000", format!("internal: unknown column #{c}")))
    }

    pub(crate) fn col_expr(&self, c: ColId) -> Result<BExpr, CompileError> {
        Ok(BExpr::col(c, self.meta(c)?))
    }

    /// A scan of `table` and the scope of its columns.
    pub(crate) fn scan(
        &mut self,
        table: &Arc<TableDef>,
        alias: &str,
        key: bool,
    ) -> (Rel, Vec<(String, ColId)>) {
        let cols: Vec<ColId> = table
            .columns
            .iter()
            .map(|c| self.new_col(&c.name, c.ty, c.nullable))
            .collect();
        let key = key.then(|| self.new_col("$key", SqlType::Blob, false));
        let named = table
            .columns
            .iter()
            .zip(&cols)
            .map(|(c, id)| (c.name.clone(), *id))
            .collect();
        let _ = alias;
        (
            Rel::Scan {
                table: table.clone(),
                cols,
                key,
                range: ScanRangeDecl::All,
            },
            named,
        )
    }

    pub(crate) fn table(&self, name: &ObjectName) -> Result<Arc<TableDef>, CompileError> {
        let n = object_name(name)?;
        user_table(self.cat, &n).cloned().ok_or_else(|| {
            let known = user_table_names(self.cat);
            CompileError::new(
                codes::UNDEFINED_TABLE,
                format!("table \"{n}\" does not exist"),
            )
            .at(pos_of(name))
            .hint(if known.is_empty() {
                "there are no tables yet: CREATE TABLE first".to_owned()
            } else {
                format!("tables: {}", known.join(", "))
            })
        })
    }

    // ------------------------------------------------------------------ queries

    pub(crate) fn query(&mut self, q: &Query) -> Result<BoundQuery, CompileError> {
        crate::clauses::query(q)?;
        let order: Vec<ast::OrderByExpr> = match &q.order_by {
            Some(ob) => match &ob.kind {
                OrderByKind::Expressions(v) => v.clone(),
                OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
            },
            None => Vec::new(),
        };
        for o in &order {
            crate::clauses::order_item(o)?;
        }
        let (mut rel, names, keys) = match q.body.as_ref() {
            SetExpr::Select(s) => self.select(s, &order)?,
            other => {
                let b = self.set_expr(other)?;
                let keys = self.order_by_outputs(&b.rel.output(), &b.names, &order)?;
                (b.rel, b.names, keys)
            }
        };
        let outputs = rel.output();
        let visible = names.len();
        if !keys.is_empty() {
            rel = Rel::Sort {
                input: Box::new(rel),
                keys,
                limit: None,
            };
        }
        let (limit, offset) = self.limit(q)?;
        if limit.is_some() || offset > 0 {
            rel = Rel::Limit {
                input: Box::new(rel),
                limit,
                offset,
            };
        }
        if outputs.len() > visible {
            // drop the hidden ORDER BY columns
            let exprs = outputs
                .iter()
                .take(visible)
                .map(|c| Ok((*c, self.col_expr(*c)?)))
                .collect::<Result<Vec<_>, CompileError>>()?;
            let exprs = exprs
                .into_iter()
                .map(|(c, e)| {
                    let m = self.meta(c).cloned();
                    m.map(|m| (self.new_col(&m.name, m.ty, m.nullable), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rel = Rel::Project {
                input: Box::new(rel),
                exprs,
            };
        }
        Ok(BoundQuery { rel, names })
    }

    fn const_u64(&mut self, e: &Expr, what: &str) -> Result<u64, CompileError> {
        let b = self.expr(e, &Scope::default(), None)?;
        let b = crate::fold::fold(b);
        match b.kind {
            BK::Lit(Value::Integer(n)) if n >= 0 => Ok(u64::try_from(n).unwrap_or(0)),
            BK::Lit(Value::BigInt(n)) if n >= 0 => Ok(u64::try_from(n).unwrap_or(0)),
            BK::Lit(Value::Null) => Ok(u64::MAX),
            _ => Err(CompileError::new(
                codes::DATATYPE_MISMATCH,
                format!("{what} must be a non-negative integer constant"),
            )
            .at(pos_of(e))),
        }
    }

    fn limit(&mut self, q: &Query) -> Result<(Option<u64>, u64), CompileError> {
        let mut limit = None;
        let mut offset = 0;
        match &q.limit_clause {
            Some(LimitClause::LimitOffset {
                limit: l,
                offset: o,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT BY"));
                }
                if let Some(l) = l {
                    let n = self.const_u64(l, "LIMIT")?;
                    limit = (n != u64::MAX).then_some(n);
                }
                if let Some(o) = o {
                    offset = self.const_u64(&o.value, "OFFSET")?;
                    if offset == u64::MAX {
                        offset = 0;
                    }
                }
            }
            Some(LimitClause::OffsetCommaLimit {
                offset: o,
                limit: l,
            }) => {
                limit = Some(self.const_u64(l, "LIMIT")?);
                offset = self.const_u64(o, "OFFSET")?;
            }
            None => {}
        }
        if let Some(f) = &q.fetch {
            if f.percent || f.with_ties {
                return Err(unsupported("FETCH ... PERCENT / WITH TIES"));
            }
            let n = match &f.quantity {
                Some(e) => self.const_u64(e, "FETCH FIRST")?,
                None => 1,
            };
            limit = Some(limit.map_or(n, |l: u64| l.min(n)));
        }
        Ok((limit, offset))
    }

    /// ORDER BY over a set operation's outputs: positions and output names only.
    fn order_by_outputs(
        &mut self,
        outputs: &[ColId],
        names: &[String],
        order: &[ast::OrderByExpr],
    ) -> Result<Vec<BSortKey>, CompileError> {
        let mut keys = Vec::new();
        for o in order {
            let col = match &o.expr {
                Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|i| *i >= 1 && *i <= names.len())
                        .and_then(|i| outputs.get(i - 1).copied()),
                    _ => None,
                },
                Expr::Identifier(i) => {
                    let n = norm(i);
                    names
                        .iter()
                        .position(|x| *x == n)
                        .and_then(|p| outputs.get(p).copied())
                }
                _ => None,
            };
            let col = col.ok_or_else(|| {
                CompileError::new(
                    codes::UNDEFINED_COLUMN,
                    "ORDER BY of a UNION must name an output column or give its position",
                )
                .at(pos_of(&o.expr))
            })?;
            keys.push(sort_key(col, o));
        }
        Ok(keys)
    }

    fn set_expr(&mut self, s: &SetExpr) -> Result<BoundQuery, CompileError> {
        match s {
            SetExpr::Select(sel) => {
                let (rel, names, _) = self.select(sel, &[])?;
                Ok(BoundQuery { rel, names })
            }
            SetExpr::Query(q) => self.query(q),
            SetExpr::Values(v) => self.values(v, None),
            SetExpr::SetOperation { .. } => self.set_operations(s),
            _ => Err(unsupported("this kind of query body")),
        }
    }

    /// A chain of set operations. sqlparser builds `a UNION b UNION c ...` as a
    /// left-deep tree as deep as the chain is long; it is walked here in a loop
    /// and bound flat: one UNION ALL over every branch (under one DISTINCT when
    /// any link is a plain UNION, which removes duplicates from everything before
    /// it too), so a 4,000-branch UNION ALL is one node, not 4,000 nested ones.
    fn set_operations(&mut self, s: &SetExpr) -> Result<BoundQuery, CompileError> {
        let mut links: Vec<(bool, &SetExpr)> = Vec::new();
        let mut cur = s;
        while let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = cur
        {
            if *op != SetOperator::Union {
                return Err(unsupported(format!("{op}")));
            }
            let all = match set_quantifier {
                SetQuantifier::All => true,
                SetQuantifier::None | SetQuantifier::Distinct => false,
                other => return Err(unsupported(format!("UNION {other}"))),
            };
            links.push((all, right.as_ref()));
            cur = left.as_ref();
        }
        links.reverse();
        let first = self.set_expr(cur)?;
        let width = first.rel.output().len();
        let mut branches = vec![first.rel];
        let mut alls = Vec::with_capacity(links.len());
        for (all, right) in links {
            let r = self.set_expr(right)?;
            let w = r.rel.output().len();
            if w != width {
                return Err(mismatch(format!(
                    "each side of UNION must have the same number of columns ({width} and {w})"
                )));
            }
            branches.push(r.rel);
            alls.push(all);
        }
        // one type per column, common to every branch
        let mut types: Vec<(SqlType, bool)> = Vec::with_capacity(width);
        for i in 0..width {
            let mut t: Option<(SqlType, bool)> = None;
            for b in &branches {
                let c = b
                    .output()
                    .get(i)
                    .copied()
                    .ok_or_else(|| mismatch("UNION column"))?;
                let m = self.meta(c)?;
                t = Some(match t {
                    None => (m.ty, m.nullable),
                    Some((p, n)) => (
                        common_type(&p, &m.ty).ok_or_else(|| {
                            mismatch(format!("UNION column types {p} and {} do not match", m.ty))
                        })?,
                        n || m.nullable,
                    ),
                });
            }
            types.push(t.ok_or_else(|| mismatch("UNION column"))?);
        }
        let mut conformed = Vec::with_capacity(branches.len());
        for b in branches {
            conformed.push(self.conform(b, &types)?);
        }
        let names = first.names;
        let mut it = conformed.into_iter();
        let mut inputs: Vec<Rel> = it.next().into_iter().collect();
        let mut distinct = false;
        for (b, all) in it.zip(alls) {
            if all && distinct {
                // UNION ALL after a UNION: the rows so far lose their duplicates,
                // the new branch keeps its own
                let so_far = self.union_of(std::mem::take(&mut inputs), &names, &types);
                inputs.push(Rel::Distinct {
                    input: Box::new(so_far),
                });
                distinct = false;
            } else if !all {
                // a UNION removes duplicates from everything before it as well:
                // an earlier DISTINCT branch group is absorbed
                if matches!(inputs.first(), Some(Rel::Distinct { input })
                    if matches!(input.as_ref(), Rel::UnionAll { .. }))
                    && let Rel::Distinct { input } = inputs.remove(0)
                    && let Rel::UnionAll { inputs: inner, .. } = *input
                {
                    inputs.splice(0..0, inner);
                }
                distinct = true;
            }
            inputs.push(b);
        }
        let mut rel = self.union_of(inputs, &names, &types);
        if distinct {
            rel = Rel::Distinct {
                input: Box::new(rel),
            };
        }
        Ok(BoundQuery { rel, names })
    }

    /// UNION ALL of `inputs` (already of `types`), with new output columns.
    fn union_of(&mut self, inputs: Vec<Rel>, names: &[String], types: &[(SqlType, bool)]) -> Rel {
        let cols: Vec<ColId> = names
            .iter()
            .zip(types)
            .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
            .collect();
        Rel::UnionAll { inputs, cols }
    }

    /// Projects `rel` so its columns have `types`.
    fn conform(&mut self, rel: Rel, types: &[(SqlType, bool)]) -> Result<Rel, CompileError> {
        let out = rel.output();
        if out
            .iter()
            .zip(types)
            .all(|(c, (t, _))| self.meta.get(c).is_some_and(|m| m.ty == *t))
        {
            return Ok(rel);
        }
        let mut exprs = Vec::with_capacity(out.len());
        for (c, (t, n)) in out.iter().zip(types) {
            let e = coerce(self.col_expr(*c)?, *t);
            let name = self.meta(*c)?.name.clone();
            exprs.push((self.new_col(&name, *t, *n), e));
        }
        Ok(Rel::Project {
            input: Box::new(rel),
            exprs,
        })
    }

    /// VALUES rows; with `target`, each value is converted to the target types.
    pub(crate) fn values(
        &mut self,
        v: &ast::Values,
        target: Option<&[SqlType]>,
    ) -> Result<BoundQuery, CompileError> {
        let width = v.rows.first().map_or(0, |r| r.len());
        let mut rows: Vec<Vec<BExpr>> = Vec::with_capacity(v.rows.len());
        for r in &v.rows {
            if r.len() != width {
                return Err(
                    mismatch("VALUES rows must all have the same number of values").at(pos_of(r)),
                );
            }
            let mut row = Vec::with_capacity(width);
            for (i, e) in r.iter().enumerate() {
                let mut b = crate::fold::fold(self.expr(e, &Scope::default(), None)?);
                if let Some(t) = target.and_then(|t| t.get(i)) {
                    b = self.assign(b, *t).map_err(|err| err.at(pos_of(e)))?;
                }
                row.push(b);
            }
            rows.push(row);
        }
        // column types: the target's, or the common type of each column
        let mut types: Vec<(SqlType, bool)> = Vec::with_capacity(width);
        for i in 0..width {
            let mut t: Option<SqlType> = None;
            let mut nullable = false;
            for r in &rows {
                let e = r.get(i).ok_or_else(|| mismatch("VALUES row width"))?;
                nullable |= e.nullable;
                if is_null_lit(e) {
                    continue;
                }
                t = Some(match t {
                    None => e.ty,
                    Some(prev) => common_type(&prev, &e.ty).ok_or_else(|| {
                        mismatch(format!("VALUES column {} mixes {prev} and {}", i + 1, e.ty))
                    })?,
                });
            }
            let t = target
                .and_then(|t| t.get(i).copied())
                .or(t)
                .unwrap_or(SqlType::Text);
            types.push((t, nullable));
        }
        let names: Vec<String> = (1..=width).map(|i| format!("column{i}")).collect();
        let all_lit = rows.iter().flatten().all(|e| matches!(e.kind, BK::Lit(_)));
        if all_lit {
            let cols = names
                .iter()
                .zip(&types)
                .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
                .collect();
            let rows = rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .zip(&types)
                        .map(|(e, (t, _))| match coerce(e, *t).kind {
                            BK::Lit(v) => Ok(v),
                            _ => Err(mismatch(format!(
                                "a VALUES constant that does not convert to {t}"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(BoundQuery {
                rel: Rel::Values { cols, rows },
                names,
            });
        }
        let mut inputs = Vec::with_capacity(rows.len());
        for r in rows {
            let exprs = r
                .into_iter()
                .zip(&types)
                .zip(&names)
                .map(|((e, (t, nl)), n)| (self.new_col(n, *t, *nl), coerce(e, *t)))
                .collect();
            inputs.push(Rel::Project {
                input: Box::new(Rel::Values {
                    cols: vec![],
                    rows: vec![vec![]],
                }),
                exprs,
            });
        }
        let cols: Vec<ColId> = names
            .iter()
            .zip(&types)
            .map(|(n, (t, nl))| self.new_col(n, *t, *nl))
            .collect();
        let rel = if inputs.len() == 1 {
            inputs.pop().ok_or_else(|| mismatch("empty VALUES"))?
        } else {
            Rel::UnionAll { inputs, cols }
        };
        Ok(BoundQuery { rel, names })
    }

    /// Converts a value for storing into a column of type `to`.
    pub(crate) fn assign(&self, e: BExpr, to: SqlType) -> Result<BExpr, CompileError> {
        if e.ty == to || is_null_lit(&e) {
            return Ok(coerce(e, to));
        }
        if let Some(s) = is_text_lit(&e) {
            return self.text_literal_as(s, to);
        }
        let ok = (is_numeric(&e.ty) && is_numeric(&to))
            || (is_text(&e.ty) && is_text(&to))
            || (e.ty == SqlType::Date && to == SqlType::Timestamp)
            || (e.ty == SqlType::Timestamp && to == SqlType::Date);
        if !ok {
            return Err(mismatch(format!(
                "a value of type {} cannot be stored in a column of type {to}",
                e.ty
            ))
            .hint(format!("CAST it: CAST(... AS {to})")));
        }
        Ok(coerce(e, to))
    }

    fn text_literal_as(&self, s: &str, to: SqlType) -> Result<BExpr, CompileError> {
        let bad =
            || CompileError::new(codes::INVALID_LITERAL, format!("'{s}' is not a valid {to}"));
        let v = match to {
            SqlType::Date => Value::Date(parse_date(s).ok_or_else(bad)?),
            SqlType::Timestamp => Value::Timestamp(parse_timestamp(s).ok_or_else(bad)?),
            SqlType::Text | SqlType::Varchar { .. } => Value::Text(s.to_owned()),
            SqlType::Boolean => match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "on" | "1" => Value::Boolean(true),
                "f" | "false" | "no" | "off" | "0" => Value::Boolean(false),
                _ => return Err(bad()),
            },
            SqlType::Blob => Value::Blob(s.as_bytes().to_vec()),
            t if is_numeric(&t) => {
                let (v, vt) = parse_number(s.trim()).map_err(|_| bad())?;
                return Ok(coerce(BExpr::lit(v, vt), t));
            }
            _ => return Err(bad()),
        };
        Ok(BExpr::lit(v, to))
    }

    /// A constant expression converted to `ty` (DEFAULT values).
    pub(crate) fn const_expr(&mut self, e: &Expr, ty: SqlType) -> Result<Value, CompileError> {
        let b = crate::fold::fold(self.expr(e, &Scope::default(), None)?);
        let b = crate::fold::fold(self.assign(b, ty).map_err(|x| x.at(pos_of(e)))?);
        match b.kind {
            BK::Lit(v) => Ok(v),
            _ => Err(
                CompileError::new(codes::DATATYPE_MISMATCH, "DEFAULT must be a constant")
                    .at(pos_of(e)),
            ),
        }
    }

    /// An expression over the columns of one table (UPDATE and DELETE).
    pub(crate) fn bind_table_expr(
        &mut self,
        e: &Expr,
        table: &TableDef,
        cols: &[ColId],
        qualifier: &str,
    ) -> Result<BExpr, CompileError> {
        let scope = Scope {
            cols: table
                .columns
                .iter()
                .zip(cols)
                .map(|(c, id)| ScopeCol {
                    qualifier: Some(qualifier.to_owned()),
                    name: c.name.clone(),
                    id: *id,
                })
                .collect(),
        };
        if contains_agg(e) {
            return Err(CompileError::new(
                codes::GROUPING,
                "aggregate functions are not allowed here",
            )
            .at(pos_of(e)));
        }
        Ok(crate::fold::fold(self.expr(e, &scope, None)?))
    }

    // ------------------------------------------------------------------- SELECT

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn select(
        &mut self,
        s: &Select,
        order: &[ast::OrderByExpr],
    ) -> Result<SelectParts, CompileError> {
        crate::clauses::select(s).map_err(|e| e.at(pos_of(s)))?;
        let (mut rel, scope) = self.from(&s.from)?;
        if let Some(w) = &s.selection {
            if contains_agg(w) {
                return Err(CompileError::new(
                    codes::GROUPING,
                    "aggregate functions are not allowed in WHERE",
                )
                .at(pos_of(w))
                .hint("filter groups with HAVING"));
            }
            let p = self.expr(w, &scope, None)?;
            let p = self.boolean(p, "WHERE").map_err(|e| e.at(pos_of(w)))?;
            rel = Rel::Filter {
                input: Box::new(rel),
                pred: crate::fold::fold(p),
            };
        }
        let group: Vec<Expr> = match &s.group_by {
            GroupByExpr::Expressions(v, m) => {
                if !m.is_empty() {
                    return Err(unsupported("ROLLUP / CUBE / GROUPING SETS"));
                }
                v.clone()
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        // the select list, with wildcards expanded
        let mut items: Vec<(Expr, String)> = Vec::new();
        let mut star: Vec<(ColId, String)> = Vec::new();
        for it in &s.projection {
            match it {
                SelectItem::UnnamedExpr(e) => items.push((e.clone(), output_name(e))),
                SelectItem::ExprWithAlias { expr, alias } => {
                    items.push((expr.clone(), norm(alias)))
                }
                SelectItem::Wildcard(_) => {
                    for c in &scope.cols {
                        let e = Expr::Identifier(Ident::new(format!("\u{1}{}", c.id)));
                        items.push((e, c.name.clone()));
                        star.push((c.id, c.name.clone()));
                    }
                    if scope.cols.is_empty() {
                        return Err(CompileError::new(codes::SYNTAX, "SELECT * with no tables"));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?,
                        ast::SelectItemQualifiedWildcardKind::Expr(_) => {
                            return Err(unsupported("this wildcard"));
                        }
                    };
                    let before = items.len();
                    for c in scope
                        .cols
                        .iter()
                        .filter(|c| c.qualifier.as_deref() == Some(q.as_str()))
                    {
                        let e = Expr::Identifier(Ident::new(format!("\u{1}{}", c.id)));
                        items.push((e, c.name.clone()));
                    }
                    if items.len() == before {
                        return Err(CompileError::new(
                            codes::UNDEFINED_TABLE,
                            format!("no table named \"{q}\" in FROM"),
                        ));
                    }
                }
                SelectItem::ExprWithAliases { .. } => return Err(unsupported("multiple aliases")),
            }
        }
        let _ = star;
        if items.len() > COLUMNS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the select list has {} columns; a query returns at most {COLUMNS_MAX}",
                    items.len()
                ),
            )
            .at(pos_of(s))
            .hint("select fewer columns, or split the query"));
        }
        let aggregating = !group.is_empty()
            || items.iter().any(|(e, _)| contains_agg(e))
            || s.having.as_ref().is_some_and(contains_agg)
            || order.iter().any(|o| contains_agg(&o.expr));
        let distinct = match &s.distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            Some(Distinct::On(_)) => return Err(unsupported("DISTINCT ON")),
        };
        let mut outputs: Vec<(ColId, BExpr)> = Vec::new();
        let names: Vec<String> = items.iter().map(|(_, n)| n.clone()).collect();
        let mut sort_keys = Vec::new();
        if aggregating {
            let mut keys: Vec<(ColId, BExpr)> = Vec::new();
            for g in &group {
                // GROUP BY position or output alias
                let ge = self.group_item(g, &items, &scope)?;
                let b = crate::fold::fold(self.expr(&ge, &scope, None)?);
                if keys.iter().any(|(_, k)| *k == b) {
                    continue;
                }
                let id = self.new_col(&output_name(&ge), b.ty, b.nullable);
                keys.push((id, b));
            }
            let mut ctx = AggCtx::default();
            let mut bound_items = Vec::with_capacity(items.len());
            for (e, _) in &items {
                let b = self.expr(e, &scope, Some(&mut ctx))?;
                bound_items.push((b, e));
            }
            let having = match &s.having {
                Some(h) => {
                    let b = self.expr(h, &scope, Some(&mut ctx))?;
                    Some((self.boolean(b, "HAVING").map_err(|e| e.at(pos_of(h)))?, h))
                }
                None => None,
            };
            let mut bound_order = Vec::with_capacity(order.len());
            for o in order {
                match self.order_target(&o.expr, &names)? {
                    Some(i) => bound_order.push((None, Some(i), o)),
                    None => {
                        let b = self.expr(&o.expr, &scope, Some(&mut ctx))?;
                        bound_order.push((Some(b), None, o));
                    }
                }
            }
            let agg_rel = self.aggregate_rel(rel, keys.clone(), ctx)?;
            rel = agg_rel;
            let key_map: Vec<(BExpr, ColId)> = keys.iter().map(|(c, e)| (e.clone(), *c)).collect();
            let agg_out: std::collections::HashSet<ColId> = rel.output().into_iter().collect();
            let finish = |this: &Self, b: BExpr, at: &Expr| -> Result<BExpr, CompileError> {
                let b = replace_keys(crate::fold::fold(b), &key_map, this);
                let mut cols = Vec::new();
                b.columns(&mut cols);
                if let Some(bad) = cols.iter().find(|c| !agg_out.contains(c)) {
                    let name = this
                        .meta
                        .get(bad)
                        .map(|m| m.name.clone())
                        .unwrap_or_default();
                    return Err(CompileError::new(
                        codes::GROUPING,
                        format!("column \"{name}\" must appear in GROUP BY or be used in an aggregate function"),
                    )
                    .at(pos_of(at)));
                }
                Ok(crate::fold::fold(b))
            };
            if let Some((h, at)) = having {
                let h = finish(self, h, at)?;
                rel = Rel::Filter {
                    input: Box::new(rel),
                    pred: h,
                };
            }
            for ((b, e), n) in bound_items.into_iter().zip(&names) {
                let b = finish(self, b, e)?;
                outputs.push((self.new_col(n, b.ty, b.nullable), b));
            }
            let mut hidden = Vec::new();
            for (b, i, o) in bound_order {
                let col = match (b, i) {
                    (_, Some(i)) => outputs
                        .get(i)
                        .map(|x| x.0)
                        .ok_or_else(|| mismatch("ORDER BY position"))?,
                    (Some(b), None) => {
                        let b = finish(self, b, &o.expr)?;
                        if let Some((c, _)) = outputs.iter().find(|(_, e)| *e == b) {
                            *c
                        } else {
                            let c = self.new_col("?order?", b.ty, b.nullable);
                            hidden.push((c, b));
                            c
                        }
                    }
                    _ => return Err(mismatch("ORDER BY")),
                };
                sort_keys.push(sort_key(col, o));
            }
            if distinct && !hidden.is_empty() {
                return Err(CompileError::new(
                    codes::GROUPING,
                    "for SELECT DISTINCT, ORDER BY expressions must appear in the select list",
                ));
            }
            outputs.extend(hidden);
        } else {
            for ((e, _), n) in items.iter().zip(&names) {
                let b = crate::fold::fold(self.expr(e, &scope, None)?);
                outputs.push((self.new_col(n, b.ty, b.nullable), b));
            }
            let mut hidden = Vec::new();
            for o in order {
                let col = match self.order_target(&o.expr, &names)? {
                    Some(i) => outputs
                        .get(i)
                        .map(|x| x.0)
                        .ok_or_else(|| mismatch("ORDER BY position"))?,
                    None => {
                        let b = crate::fold::fold(self.expr(&o.expr, &scope, None)?);
                        if let Some((c, _)) = outputs.iter().find(|(_, e)| *e == b) {
                            *c
                        } else {
                            if distinct {
                                return Err(CompileError::new(
                                    codes::GROUPING,
                                    "for SELECT DISTINCT, ORDER BY expressions must appear in the select list",
                                )
                                .at(pos_of(&o.expr)));
                            }
                            let c = self.new_col("?order?", b.ty, b.nullable);
                            hidden.push((c, b));
                            c
                        }
                    }
                };
                sort_keys.push(sort_key(col, o));
            }
            outputs.extend(hidden);
        }
        rel = Rel::Project {
            input: Box::new(rel),
            exprs: outputs,
        };
        if distinct {
            rel = Rel::Distinct {
                input: Box::new(rel),
            };
        }
        Ok((rel, names, sort_keys))
    }

    /// The select-list position an ORDER BY item names (a number or an alias).
    fn order_target(&self, e: &Expr, names: &[String]) -> Result<Option<usize>, CompileError> {
        match e {
            Expr::Value(v) => {
                if let ast::Value::Number(n, _) = &v.value {
                    let i: usize = n.parse().unwrap_or(0);
                    if i == 0 || i > names.len() {
                        return Err(CompileError::new(
                            codes::UNDEFINED_COLUMN,
                            format!("ORDER BY position {n} is not in the select list"),
                        )
                        .at(pos_of(e)));
                    }
                    return Ok(Some(i - 1));
                }
                Ok(None)
            }
            Expr::Identifier(i) => {
                let n = norm(i);
                let hits: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x == n)
                    .map(|(k, _)| k)
                    .collect();
                Ok(if hits.len() == 1 {
                    hits.first().copied()
                } else {
                    None
                })
            }
            _ => Ok(None),
        }
    }

    fn group_item(
        &self,
        g: &Expr,
        items: &[(Expr, String)],
        scope: &Scope,
    ) -> Result<Expr, CompileError> {
        // an output alias that is not an input column
        if let Expr::Identifier(i) = g {
            let n = norm(i);
            if !scope.cols.iter().any(|c| c.name == n) {
                let hits: Vec<&(Expr, String)> = items.iter().filter(|(_, a)| *a == n).collect();
                if let [(e, _)] = hits.as_slice() {
                    return Ok(e.clone());
                }
            }
        }
        if let Expr::Value(v) = g
            && let ast::Value::Number(n, _) = &v.value
        {
            let i: usize = n.parse().unwrap_or(0);
            return items
                .get(i.wrapping_sub(1))
                .map(|(e, _)| e.clone())
                .ok_or_else(|| {
                    CompileError::new(
                        codes::UNDEFINED_COLUMN,
                        format!("GROUP BY position {n} is not in the select list"),
                    )
                    .at(pos_of(g))
                });
        }
        Ok(g.clone())
    }

    fn aggregate_rel(
        &mut self,
        input: Rel,
        keys: Vec<(ColId, BExpr)>,
        ctx: AggCtx,
    ) -> Result<Rel, CompileError> {
        let any_distinct = ctx.aggs.iter().any(|(_, _, d)| *d);
        if !any_distinct {
            return Ok(Rel::Aggregate {
                input: Box::new(input),
                keys,
                aggs: ctx.aggs.into_iter().map(|(c, a, _)| (c, a)).collect(),
            });
        }
        // DISTINCT aggregates over one argument: group by keys + argument first
        let arg = ctx
            .aggs
            .iter()
            .find(|(_, _, d)| *d)
            .and_then(|(_, a, _)| a.arg.clone())
            .ok_or_else(|| mismatch("DISTINCT aggregate without argument"))?;
        if ctx
            .aggs
            .iter()
            .any(|(_, a, d)| !*d || a.arg.as_ref() != Some(&arg))
        {
            return Err(unsupported(
                "mixing DISTINCT aggregates with other aggregates or DISTINCT over different arguments",
            ));
        }
        let mut inner_keys: Vec<(ColId, BExpr)> = Vec::new();
        let mut outer_keys: Vec<(ColId, BExpr)> = Vec::new();
        for (c, e) in &keys {
            let ic = self.new_col("$k", e.ty, e.nullable);
            inner_keys.push((ic, e.clone()));
            outer_keys.push((*c, self.col_expr(ic)?));
        }
        let ac = self.new_col("$d", arg.ty, arg.nullable);
        inner_keys.push((ac, arg.clone()));
        let inner = Rel::Aggregate {
            input: Box::new(input),
            keys: inner_keys,
            aggs: vec![],
        };
        let argc = self.col_expr(ac)?;
        let aggs = ctx
            .aggs
            .into_iter()
            .map(|(c, mut a, _)| {
                a.arg = Some(argc.clone());
                (c, a)
            })
            .collect();
        Ok(Rel::Aggregate {
            input: Box::new(inner),
            keys: outer_keys,
            aggs,
        })
    }

    // --------------------------------------------------------------------- FROM

    fn from(&mut self, from: &[TableWithJoins]) -> Result<(Rel, Scope), CompileError> {
        // joins nest the plan one level each
        let items: usize = from.iter().map(|t| 1 + t.joins.len()).sum();
        if items > FROM_ITEMS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!("FROM names {items} tables and derived tables; at most {FROM_ITEMS_MAX}"),
            )
            .at(from.first().and_then(|t| pos_of(&t.relation)))
            .hint("split the query"));
        }
        let mut acc: Option<(Rel, Scope)> = None;
        for twj in from {
            let (mut rel, mut scope) = self.factor(&twj.relation)?;
            for j in &twj.joins {
                crate::clauses::join(j)?;
                let (r, rs) = self.factor(&j.relation)?;
                let (kind, cons) = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinType::Inner, Some(c)),
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinType::Left, Some(c)),
                    JoinOperator::CrossJoin(_) => (JoinType::Cross, None),
                    JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                        return Err(unsupported("RIGHT JOIN")
                            .at(pos_of(&j.relation))
                            .hint("swap the tables and use LEFT JOIN"));
                    }
                    JoinOperator::FullOuter(_) => {
                        return Err(unsupported("FULL JOIN").at(pos_of(&j.relation)));
                    }
                    _ => return Err(unsupported("this kind of join").at(pos_of(&j.relation))),
                };
                let mut both = scope.clone();
                both.cols.extend(rs.cols.iter().cloned());
                let on = match cons {
                    Some(JoinConstraint::On(e)) => {
                        let b = self.expr(e, &both, None)?;
                        Some(crate::fold::fold(
                            self.boolean(b, "ON").map_err(|x| x.at(pos_of(e)))?,
                        ))
                    }
                    Some(JoinConstraint::Using(cols)) => {
                        let mut parts = Vec::new();
                        for c in cols {
                            let n = object_name(c)?;
                            let l = find(&scope, None, &n, pos_of(c))?;
                            let r = find(&rs, None, &n, pos_of(c))?;
                            let (le, re) = (self.col_expr(l)?, self.col_expr(r)?);
                            parts.push(self.compare(CmpOp::Eq, le, re)?);
                            // the joined column is named once, by its left side
                            both.cols.retain(|x| x.id != r);
                        }
                        BExpr::and_all(parts)
                    }
                    Some(JoinConstraint::None) | None => None,
                    Some(_) => return Err(unsupported("NATURAL JOIN")),
                };
                if kind != JoinType::Cross && on.is_none() {
                    return Err(CompileError::new(codes::SYNTAX, "JOIN needs ON or USING")
                        .at(pos_of(&j.relation)));
                }
                if kind == JoinType::Left {
                    // the right side's columns become nullable
                    for c in &rs.cols {
                        if let Some(m) = self.meta.get_mut(&c.id) {
                            m.nullable = true;
                        }
                    }
                }
                rel = Rel::Join {
                    left: Box::new(rel),
                    right: Box::new(r),
                    kind,
                    on,
                };
                scope = both;
            }
            acc = Some(match acc {
                None => (rel, scope),
                Some((l, mut ls)) => {
                    ls.cols.extend(scope.cols);
                    (
                        Rel::Join {
                            left: Box::new(l),
                            right: Box::new(rel),
                            kind: JoinType::Cross,
                            on: None,
                        },
                        ls,
                    )
                }
            });
        }
        Ok(acc.unwrap_or_else(|| {
            (
                Rel::Values {
                    cols: vec![],
                    rows: vec![vec![]],
                },
                Scope::default(),
            )
        }))
    }

    fn factor(&mut self, f: &TableFactor) -> Result<(Rel, Scope), CompileError> {
        crate::clauses::table_factor(f)?;
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    return Err(unsupported("table functions").at(pos_of(name)));
                }
                let t = self.table(name)?;
                let q = alias
                    .as_ref()
                    .map_or_else(|| t.name.clone(), |a| norm(&a.name));
                let (rel, named) = self.scan(&t, &q, false);
                let scope = Scope {
                    cols: named
                        .into_iter()
                        .map(|(n, id)| ScopeCol {
                            qualifier: Some(q.clone()),
                            name: n,
                            id,
                        })
                        .collect(),
                };
                Ok((rel, scope))
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return Err(unsupported("LATERAL"));
                }
                let b = self.query(subquery)?;
                let q = alias.as_ref().map(|a| norm(&a.name));
                let renames: Vec<String> = alias
                    .as_ref()
                    .map(|a| a.columns.iter().map(|c| norm(&c.name)).collect())
                    .unwrap_or_default();
                let scope = Scope {
                    cols: b
                        .rel
                        .output()
                        .into_iter()
                        .zip(b.names)
                        .enumerate()
                        .map(|(i, (id, n))| ScopeCol {
                            qualifier: q.clone(),
                            name: renames.get(i).cloned().unwrap_or(n),
                            id,
                        })
                        .collect(),
                };
                Ok((b.rel, scope))
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(std::slice::from_ref(table_with_joins)),
            _ => Err(unsupported("this FROM item")),
        }
    }

    // -------------------------------------------------------------- expressions

    fn boolean(&self, e: BExpr, clause: &str) -> Result<BExpr, CompileError> {
        if e.ty == SqlType::Boolean {
            return Ok(e);
        }
        if is_null_lit(&e) {
            return Ok(BExpr::lit(Value::Null, SqlType::Boolean));
        }
        Err(mismatch(format!(
            "the {clause} condition must be BOOLEAN, not {}",
            e.ty
        )))
    }

    /// Both operands converted to a common type (literals adapt to the other side).
    fn unify(&self, a: BExpr, b: BExpr) -> Result<(BExpr, BExpr), CompileError> {
        if a.ty == b.ty {
            return Ok((a, b));
        }
        if is_null_lit(&a) {
            let t = b.ty;
            return Ok((BExpr::lit(Value::Null, t), b));
        }
        if is_null_lit(&b) {
            let t = a.ty;
            return Ok((a, BExpr::lit(Value::Null, t)));
        }
        if let Some(s) = is_text_lit(&a)
            && !is_text(&b.ty)
        {
            let t = b.ty;
            return Ok((self.text_literal_as(s, t)?, b));
        }
        if let Some(s) = is_text_lit(&b)
            && !is_text(&a.ty)
        {
            let t = a.ty;
            return Ok((a, self.text_literal_as(s, t)?));
        }
        let t = common_type(&a.ty, &b.ty).ok_or_else(|| {
            mismatch(format!(
                "{} and {} cannot be compared or combined",
                a.ty, b.ty
            ))
        })?;
        Ok((coerce(a, t), coerce(b, t)))
    }

    fn compare(&self, op: CmpOp, a: BExpr, b: BExpr) -> Result<BExpr, CompileError> {
        let (a, b) = self.unify(a, b)?;
        if matches!(a.ty, SqlType::Blob) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(mismatch("BLOB values can only be compared for equality"));
        }
        Ok(cmp(op, a, b))
    }

    fn arith(&self, op: ArithOp, a: BExpr, b: BExpr) -> Result<BExpr, CompileError> {
        use SqlType as T;
        // date arithmetic
        match (&a.ty, &b.ty, op) {
            (T::Date, T::SmallInt | T::Integer | T::BigInt, ArithOp::Add | ArithOp::Sub) => {
                let n = a.nullable || b.nullable;
                let b = coerce(b, T::Integer);
                return Ok(mk(BK::Arith(op, Box::new(a), Box::new(b)), T::Date, n));
            }
            (T::SmallInt | T::Integer | T::BigInt, T::Date, ArithOp::Add) => {
                let n = a.nullable || b.nullable;
                let a = coerce(a, T::Integer);
                return Ok(mk(BK::Arith(op, Box::new(b), Box::new(a)), T::Date, n));
            }
            (T::Date, T::Date, ArithOp::Sub) => {
                let n = a.nullable || b.nullable;
                let mut e = mk(BK::Arith(op, Box::new(a), Box::new(b)), T::Date, n);
                e.ty = T::Integer;
                return Ok(e);
            }
            _ => {}
        }
        let (a, b) = if is_null_lit(&a) || is_null_lit(&b) {
            self.unify(a, b)?
        } else {
            (a, b)
        };
        let a = match is_text_lit(&a) {
            Some(s) if is_numeric(&b.ty) => self.text_literal_as(s, b.ty)?,
            _ => a,
        };
        let b = match is_text_lit(&b) {
            Some(s) if is_numeric(&a.ty) => self.text_literal_as(s, a.ty)?,
            _ => b,
        };
        if !is_numeric(&a.ty) || !is_numeric(&b.ty) {
            return Err(mismatch(format!("arithmetic on {} and {}", a.ty, b.ty))
                .hint("both operands must be numbers (or a DATE and an integer number of days)"));
        }
        let rt = arith_type(op, &a.ty, &b.ty)?;
        let n = a.nullable || b.nullable;
        let (a, b) = match (op, rt) {
            (ArithOp::Mul | ArithOp::Div | ArithOp::DivRound, T::Decimal { .. }) => {
                // keep each operand's scale; lowering aligns them
                let to_dec = |e: BExpr| {
                    if matches!(e.ty, T::Decimal { .. }) {
                        let sc = crate::lower::scale_of(&e.ty);
                        coerce(
                            e,
                            T::Decimal {
                                precision: DECIMAL_COMPUTE_DIGITS,
                                scale: sc,
                            },
                        )
                    } else {
                        coerce(
                            e,
                            T::Decimal {
                                precision: DECIMAL_COMPUTE_DIGITS,
                                scale: 0,
                            },
                        )
                    }
                };
                (to_dec(a), to_dec(b))
            }
            _ => {
                let ct = if matches!(rt, T::Decimal { .. }) {
                    rt
                } else {
                    common_numeric(&a.ty, &b.ty).unwrap_or(rt)
                };
                (coerce(a, ct), coerce(b, ct))
            }
        };
        Ok(mk(BK::Arith(op, Box::new(a), Box::new(b)), rt, n))
    }

    /// A copy of `e` for a form that uses its operand more than once (BETWEEN, IN,
    /// IS DISTINCT FROM, COALESCE ...). Copies count against the statement's
    /// expression budget: nested, such forms would otherwise grow the bound tree
    /// exponentially from a short statement.
    fn dup(&mut self, e: &BExpr) -> Result<BExpr, CompileError> {
        self.exprs += e.size();
        if self.exprs > EXPRS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!(
                    "the statement has more than {EXPRS_MAX} expressions once forms that repeat their operand (BETWEEN, IN, IS DISTINCT FROM, COALESCE, NULLIF, CASE x WHEN) are written out"
                ),
            )
            .hint("nest these forms less deeply, or compute the repeated operand in a subquery"));
        }
        Ok(e.clone())
    }

    fn count_expr(&mut self) -> Result<(), CompileError> {
        self.exprs += 1;
        if self.exprs > EXPRS_MAX {
            return Err(CompileError::new(
                codes::LIMIT,
                format!("the statement has more than {EXPRS_MAX} expressions"),
            ));
        }
        Ok(())
    }

    #[expect(clippy::too_many_lines, reason = "one arm per expression form")]
    fn expr(
        &mut self,
        e: &Expr,
        scope: &Scope,
        mut agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        self.count_expr()?;
        let here = pos_of(e);
        let r = (|| -> Result<BExpr, CompileError> {
            Ok(match e {
                Expr::Identifier(i) => {
                    if let Some(id) = i.value.strip_prefix('\u{1}') {
                        let c: ColId = id.parse().map_err(|_| mismatch("internal wildcard"))?;
                        return self.col_expr(c);
                    }
                    let c = find(scope, None, &norm(i), ident_pos(i))
                        .map_err(|e| self.correlated(None, &norm(i), e))?;
                    self.col_expr(c)?
                }
                Expr::CompoundIdentifier(parts) => {
                    let [q, c] = parts.as_slice() else {
                        return Err(unsupported("names with more than two parts"));
                    };
                    let id = find(scope, Some(&norm(q)), &norm(c), ident_pos(q))
                        .map_err(|e| self.correlated(Some(&norm(q)), &norm(c), e))?;
                    self.col_expr(id)?
                }
                Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        let (v, t) = parse_number(n)?;
                        BExpr::lit(v, t)
                    }
                    ast::Value::SingleQuotedString(s)
                    | ast::Value::EscapedStringLiteral(s)
                    | ast::Value::DoubleQuotedString(s) => {
                        BExpr::lit(Value::Text(s.clone()), SqlType::Text)
                    }
                    ast::Value::DollarQuotedString(d) => {
                        BExpr::lit(Value::Text(d.value.clone()), SqlType::Text)
                    }
                    ast::Value::Boolean(b) => bool_lit(*b),
                    ast::Value::Null => BExpr::lit(Value::Null, SqlType::Text),
                    other => return Err(unsupported(format!("the literal {other}"))),
                },
                Expr::TypedString(ts) => {
                    let s = match &ts.value.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let t = sql_type(&ts.data_type, self.cat)?;
                    self.text_literal_as(&s, t)?
                }
                Expr::Nested(x) => self.expr(x, scope, agg)?,
                Expr::UnaryOp { op, expr } => match op {
                    UnaryOperator::Not => {
                        let b = self.expr(expr, scope, agg)?;
                        not(self.boolean(b, "NOT")?)
                    }
                    UnaryOperator::Plus => self.expr(expr, scope, agg)?,
                    UnaryOperator::Minus => {
                        if let Expr::Value(v) = expr.as_ref()
                            && let ast::Value::Number(n, _) = &v.value
                        {
                            let (v, t) =
                                parse_number(&format!("-{n}")).or_else(|_| parse_number(n))?;
                            return Ok(BExpr::lit(v, t));
                        }
                        let b = self.expr(expr, scope, agg)?;
                        if !is_numeric(&b.ty) {
                            return Err(mismatch(format!("unary minus on {}", b.ty)));
                        }
                        let (t, n) = (b.ty, b.nullable);
                        mk(BK::Neg(Box::new(b)), t, n)
                    }
                    other => return Err(unsupported(format!("the operator {other}"))),
                },
                Expr::BinaryOp {
                    op: op @ (BinaryOperator::And | BinaryOperator::Or),
                    ..
                } => {
                    // a run of one of them, taken whole: its terms in order
                    let mut terms = Vec::new();
                    let mut stack = vec![e];
                    while let Some(x) = stack.pop() {
                        match x {
                            Expr::BinaryOp { left, op: o, right } if o == op => {
                                stack.push(right);
                                stack.push(left);
                            }
                            other => terms.push(other),
                        }
                    }
                    let word = if *op == BinaryOperator::And {
                        "AND"
                    } else {
                        "OR"
                    };
                    let mut bound = Vec::with_capacity(terms.len());
                    for t in terms {
                        let b = self.expr(t, scope, agg.as_deref_mut())?;
                        bound.push(self.boolean(b, word).map_err(|x| x.at(pos_of(t)))?);
                    }
                    self.bool_run(bound, *op == BinaryOperator::Or)?
                }
                Expr::BinaryOp { left, op, right } => {
                    let a = self.expr(left, scope, agg.as_deref_mut())?;
                    let b = self.expr(right, scope, agg)?;
                    match op {
                        BinaryOperator::Plus => self.arith(ArithOp::Add, a, b)?,
                        BinaryOperator::Minus => self.arith(ArithOp::Sub, a, b)?,
                        BinaryOperator::Multiply => self.arith(ArithOp::Mul, a, b)?,
                        BinaryOperator::Divide => self.arith(ArithOp::Div, a, b)?,
                        BinaryOperator::Modulo => {
                            if a.ty == SqlType::Double || b.ty == SqlType::Double {
                                return Err(mismatch("% takes integers or decimals"));
                            }
                            self.arith(ArithOp::Mod, a, b)?
                        }
                        BinaryOperator::StringConcat => {
                            let (a, b) = (coerce(a, SqlType::Text), coerce(b, SqlType::Text));
                            let n = a.nullable || b.nullable;
                            mk(BK::Func(Func::Concat, vec![a, b]), SqlType::Text, n)
                        }
                        BinaryOperator::Eq => self.compare(CmpOp::Eq, a, b)?,
                        BinaryOperator::NotEq => self.compare(CmpOp::Ne, a, b)?,
                        BinaryOperator::Lt => self.compare(CmpOp::Lt, a, b)?,
                        BinaryOperator::LtEq => self.compare(CmpOp::Le, a, b)?,
                        BinaryOperator::Gt => self.compare(CmpOp::Gt, a, b)?,
                        BinaryOperator::GtEq => self.compare(CmpOp::Ge, a, b)?,
                        BinaryOperator::And => {
                            and(self.boolean(a, "AND")?, self.boolean(b, "AND")?)
                        }
                        BinaryOperator::Or => or(self.boolean(a, "OR")?, self.boolean(b, "OR")?),
                        other => return Err(unsupported(format!("the operator {other}"))),
                    }
                }
                Expr::IsNull(x) => is_null(self.expr(x, scope, agg)?),
                Expr::IsNotNull(x) => not(is_null(self.expr(x, scope, agg)?)),
                Expr::IsTrue(x) | Expr::IsNotTrue(x) | Expr::IsFalse(x) | Expr::IsNotFalse(x) => {
                    let b = self.expr(x, scope, agg)?;
                    let b = self.boolean(b, "IS TRUE")?;
                    let want = matches!(e, Expr::IsTrue(_) | Expr::IsNotTrue(_));
                    let negate = matches!(e, Expr::IsNotTrue(_) | Expr::IsNotFalse(_));
                    // (x = want) with NULL as FALSE
                    let b2 = self.dup(&b)?;
                    let test = if want { b2 } else { not(b2) };
                    let v = mk(
                        BK::Case(vec![(is_null(b), bool_lit(false))], Box::new(test)),
                        SqlType::Boolean,
                        false,
                    );
                    if negate { not(v) } else { v }
                }
                Expr::IsDistinctFrom(l, r) | Expr::IsNotDistinctFrom(l, r) => {
                    let a = self.expr(l, scope, agg.as_deref_mut())?;
                    let b = self.expr(r, scope, agg)?;
                    let (a, b) = self.unify(a, b)?;
                    let (a1, b1, a2, b2) =
                        (self.dup(&a)?, self.dup(&b)?, self.dup(&a)?, self.dup(&b)?);
                    let same = mk(
                        BK::Case(
                            vec![
                                (and(is_null(a1), is_null(b1)), bool_lit(true)),
                                (or(is_null(a2), is_null(b2)), bool_lit(false)),
                            ],
                            Box::new(cmp(CmpOp::Eq, a, b)),
                        ),
                        SqlType::Boolean,
                        false,
                    );
                    if matches!(e, Expr::IsDistinctFrom(..)) {
                        not(same)
                    } else {
                        same
                    }
                }
                Expr::Between {
                    expr,
                    negated,
                    low,
                    high,
                } => {
                    let x = self.expr(expr, scope, agg.as_deref_mut())?;
                    let lo = self.expr(low, scope, agg.as_deref_mut())?;
                    let hi = self.expr(high, scope, agg)?;
                    let x2 = self.dup(&x)?;
                    let v = and(
                        self.compare(CmpOp::Ge, x2, lo)?,
                        self.compare(CmpOp::Le, x, hi)?,
                    );
                    if *negated { not(v) } else { v }
                }
                Expr::In {
                    expr,
                    target,
                    negated,
                    global,
                } => {
                    if *global {
                        return Err(unsupported("GLOBAL IN"));
                    }
                    let list = match target {
                        ast::InTarget::List(list) => list,
                        ast::InTarget::Subquery(q) => {
                            let x = self.expr(expr, scope, agg.as_deref_mut())?;
                            let (rel, ty) = self.subquery_one_column(q, scope)?;
                            let t = if is_null_lit(&x) {
                                ty
                            } else {
                                common_type(&x.ty, &ty).ok_or_else(|| {
                                    mismatch(format!(
                                        "IN compares {} with a subquery of {ty}",
                                        x.ty
                                    ))
                                })?
                            };
                            let rel = self.conform(rel, &[(t, true)])?;
                            let i = self.add_init(InitKind::Set, rel, format!("set {t} {q}"));
                            let x = coerce(x, t);
                            let v = mk(BK::InSet(Box::new(x), i), SqlType::Boolean, true);
                            return Ok(if *negated { not(v) } else { v });
                        }
                        _ => return Err(unsupported("this IN target")),
                    };
                    let x = self.expr(expr, scope, agg.as_deref_mut())?;
                    let mut items = Vec::with_capacity(list.len());
                    for item in list {
                        items.push(crate::fold::fold(self.expr(
                            item,
                            scope,
                            agg.as_deref_mut(),
                        )?));
                    }
                    if let Some(v) = self.in_constants(&x, &items)? {
                        return Ok(if *negated { not(v) } else { v });
                    }
                    let mut terms = Vec::with_capacity(items.len());
                    for v in items {
                        let x2 = self.dup(&x)?;
                        terms.push(self.compare(CmpOp::Eq, x2, v)?);
                    }
                    // a balanced OR: a 10,000-item list nests 14 levels deep
                    let v = BExpr::or_all(terms).ok_or_else(|| {
                        CompileError::new(codes::SYNTAX, "IN () needs at least one value")
                    })?;
                    if *negated { not(v) } else { v }
                }
                Expr::Like {
                    negated,
                    any,
                    expr,
                    pattern,
                    escape_char,
                }
                | Expr::ILike {
                    negated,
                    any,
                    expr,
                    pattern,
                    escape_char,
                } => {
                    if *any {
                        return Err(unsupported("LIKE ANY"));
                    }
                    let mut s = self.expr(expr, scope, agg.as_deref_mut())?;
                    let mut p = self.expr(pattern, scope, agg)?;
                    if !(is_text(&s.ty) || is_null_lit(&s)) || !(is_text(&p.ty) || is_null_lit(&p))
                    {
                        return Err(mismatch(format!(
                            "LIKE takes text, not {} and {}",
                            s.ty, p.ty
                        )));
                    }
                    if matches!(e, Expr::ILike { .. }) {
                        let lower = |x: BExpr| {
                            let n = x.nullable;
                            mk(
                                BK::Func(Func::Lower, vec![coerce(x, SqlType::Text)]),
                                SqlType::Text,
                                n,
                            )
                        };
                        s = lower(s);
                        p = lower(p);
                    }
                    let esc = match escape_char {
                        None => '\\' as i32,
                        Some(x) => match x.as_ref() {
                            Expr::Value(v) => match &v.value {
                                ast::Value::SingleQuotedString(c)
                                    if c.chars().count() == 1 && c.is_ascii() =>
                                {
                                    c.bytes().next().map_or(-1, i32::from)
                                }
                                ast::Value::SingleQuotedString(c) if c.is_empty() => -1,
                                _ => return Err(mismatch("ESCAPE must be one ASCII character")),
                            },
                            _ => return Err(mismatch("ESCAPE must be a constant")),
                        },
                    };
                    let n = s.nullable || p.nullable;
                    let v = mk(
                        BK::Func(
                            Func::Like,
                            vec![
                                coerce(s, SqlType::Text),
                                coerce(p, SqlType::Text),
                                BExpr::lit(Value::Integer(esc), SqlType::Integer),
                            ],
                        ),
                        SqlType::Boolean,
                        n,
                    );
                    if *negated { not(v) } else { v }
                }
                Expr::Case {
                    operand,
                    conditions,
                    else_result,
                    ..
                } => {
                    let op = match operand {
                        Some(o) => Some(self.expr(o, scope, agg.as_deref_mut())?),
                        None => None,
                    };
                    let mut whens = Vec::with_capacity(conditions.len());
                    let mut results = Vec::with_capacity(conditions.len() + 1);
                    for cw in conditions {
                        let c = self.expr(&cw.condition, scope, agg.as_deref_mut())?;
                        let c = match &op {
                            Some(o) => {
                                let o2 = self.dup(o)?;
                                self.compare(CmpOp::Eq, o2, c)?
                            }
                            None => self
                                .boolean(c, "WHEN")
                                .map_err(|x| x.at(pos_of(&cw.condition)))?,
                        };
                        whens.push(c);
                        results.push(self.expr(&cw.result, scope, agg.as_deref_mut())?);
                    }
                    let els = match else_result {
                        Some(x) => self.expr(x, scope, agg)?,
                        None => BExpr::lit(Value::Null, SqlType::Text),
                    };
                    results.push(els);
                    self.case(whens, results)?
                }
                Expr::Cast {
                    expr,
                    data_type,
                    kind,
                    ..
                } => {
                    if matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                        return Err(unsupported("TRY_CAST"));
                    }
                    crate::clauses::cast(e)?;
                    let t = sql_type(data_type, self.cat)?;
                    let b = self.expr(expr, scope, agg)?;
                    if let Some(s) = is_text_lit(&b) {
                        self.text_literal_as(s, t)?
                    } else if is_null_lit(&b) && t == SqlType::Text {
                        // a NULL typed TEXT, kept apart from the untyped literal
                        // (which is TEXT until its context gives it a type)
                        mk(BK::Cast(Box::new(b)), t, true)
                    } else {
                        coerce(b, t)
                    }
                }
                Expr::Function(f) => self.function(f, scope, agg)?,
                Expr::Extract { field, expr, .. } => {
                    let b = self.expr(expr, scope, agg)?;
                    let part = match field {
                        DateTimeField::Year | DateTimeField::Years => DatePart::Year,
                        DateTimeField::Month | DateTimeField::Months => DatePart::Month,
                        DateTimeField::Day | DateTimeField::Days => DatePart::Day,
                        DateTimeField::Hour | DateTimeField::Hours => DatePart::Hour,
                        DateTimeField::Minute | DateTimeField::Minutes => DatePart::Minute,
                        DateTimeField::Second | DateTimeField::Seconds => DatePart::Second,
                        other => return Err(unsupported(format!("EXTRACT({other})"))),
                    };
                    let f = match (b.ty, part) {
                        (SqlType::Date, DatePart::Year | DatePart::Month | DatePart::Day) => {
                            Func::ExtractDate(part)
                        }
                        (SqlType::Timestamp, _) => Func::ExtractTs(part),
                        (t, _) => return Err(mismatch(format!("EXTRACT({part:?}) from {t}"))),
                    };
                    let n = b.nullable;
                    mk(BK::Func(f, vec![b]), SqlType::Integer, n)
                }
                Expr::Substring {
                    expr,
                    substring_from,
                    substring_for,
                    ..
                } => {
                    let s = self.text_arg(expr, scope, agg.as_deref_mut())?;
                    let from = match substring_from {
                        Some(x) => self.int_arg(x, scope, agg.as_deref_mut())?,
                        None => BExpr::lit(Value::BigInt(1), SqlType::BigInt),
                    };
                    let mut args = vec![s, from];
                    if let Some(x) = substring_for {
                        args.push(self.int_arg(x, scope, agg)?);
                    }
                    let n = args.iter().any(|a| a.nullable);
                    mk(BK::Func(Func::Substr, args), SqlType::Text, n)
                }
                Expr::Position { expr, r#in } => {
                    let needle = self.text_arg(expr, scope, agg.as_deref_mut())?;
                    let hay = self.text_arg(r#in, scope, agg)?;
                    let n = needle.nullable || hay.nullable;
                    mk(
                        BK::Func(Func::Position, vec![needle, hay]),
                        SqlType::Integer,
                        n,
                    )
                }
                Expr::Trim {
                    trim_where,
                    trim_what,
                    expr,
                    trim_characters,
                } => {
                    if trim_characters.is_some() {
                        return Err(
                            unsupported("TRIM(s, chars)").hint("write TRIM(BOTH chars FROM s)")
                        );
                    }
                    let s = self.text_arg(expr, scope, agg.as_deref_mut())?;
                    let chars = match trim_what {
                        Some(w) => self.text_arg(w, scope, agg)?,
                        None => BExpr::lit(Value::Text(" ".into()), SqlType::Text),
                    };
                    let f = match trim_where {
                        Some(ast::TrimWhereField::Leading) => Func::TrimLeading,
                        Some(ast::TrimWhereField::Trailing) => Func::TrimTrailing,
                        _ => Func::TrimBoth,
                    };
                    let n = s.nullable || chars.nullable;
                    mk(BK::Func(f, vec![s, chars]), SqlType::Text, n)
                }
                Expr::Subquery(q) => {
                    let (rel, ty) = self.subquery_one_column(q, scope)?;
                    let i = self.add_init(InitKind::Scalar, rel, format!("scalar {q}"));
                    mk(BK::Init(i), ty, true)
                }
                Expr::Exists { subquery, negated } => {
                    let bq = self.subquery(subquery, scope)?;
                    let i = self.add_init(InitKind::Exists, bq.rel, format!("exists {subquery}"));
                    let v = mk(BK::Init(i), SqlType::Boolean, false);
                    if *negated { not(v) } else { v }
                }
                Expr::Interval(_) => {
                    return Err(unsupported("an INTERVAL here")
                        .hint("add an interval to a DATE: d + INTERVAL '3' DAY"));
                }
                other => return Err(unsupported(format!("the expression {other}"))),
            })
        })();
        // date + INTERVAL arrives as a BinaryOp whose right side is an Interval:
        // handled before the generic path
        match r {
            Err(err) if matches!(e, Expr::BinaryOp { right, .. } if matches!(right.as_ref(), Expr::Interval(_))) =>
            {
                if let Expr::BinaryOp { left, op, right } = e
                    && let Expr::Interval(iv) = right.as_ref()
                {
                    return self
                        .date_interval(left, op, iv, scope)
                        .map_err(|x| x.at(here));
                }
                Err(err.at(here))
            }
            other => other.map_err(|x| x.at(here)),
        }
    }

    /// The AND (or OR) of `terms`, as a balanced tree. Among the terms of an OR,
    /// comparisons of one expression with many constants (`x = 1 OR x = 2 OR
    /// ...`, as generated SQL writes an IN list) become one `x IN (...)` set
    /// test, and among those of an AND, `x <> 1 AND x <> 2 ...` one `NOT x IN
    /// (...)`: the same answer under SQL's three-valued logic, with code that
    /// does not grow with the list.
    fn bool_run(&mut self, terms: Vec<BExpr>, or: bool) -> Result<BExpr, CompileError> {
        let want = if or { CmpOp::Eq } else { CmpOp::Ne };
        // terms comparing one expression with a constant, grouped by that
        // expression (in order of first appearance)
        let mut groups: Vec<(BExpr, Vec<usize>)> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (i, t) in terms.iter().enumerate() {
            let BK::Cmp(op, a, b) = &t.kind else { continue };
            if *op != want {
                continue;
            }
            let x = match (&a.kind, &b.kind) {
                (_, BK::Lit(_)) if !matches!(a.kind, BK::Lit(_)) => a,
                (BK::Lit(_), _) if !matches!(b.kind, BK::Lit(_)) => b,
                _ => continue,
            };
            let key = format!("{:?}", x.as_ref());
            let g = *by_key.entry(key).or_insert_with(|| {
                groups.push((x.as_ref().clone(), Vec::new()));
                groups.len() - 1
            });
            if let Some((_, members)) = groups.get_mut(g) {
                members.push(i);
            }
        }
        let mut replaced: HashMap<usize, Option<BExpr>> = HashMap::new();
        for (x, members) in groups {
            if members.len() < IN_SET_MIN {
                continue;
            }
            let consts: Vec<BExpr> = members
                .iter()
                .filter_map(|i| terms.get(*i))
                .filter_map(|t| match &t.kind {
                    BK::Cmp(_, a, b) => Some(if matches!(a.kind, BK::Lit(_)) { a } else { b }),
                    _ => None,
                })
                .map(|c| c.as_ref().clone())
                .collect();
            let Some(set) = self.in_constants(&x, &consts)? else {
                continue;
            };
            let set = if or { set } else { not(set) };
            let mut it = members.into_iter();
            if let Some(first) = it.next() {
                replaced.insert(first, Some(set));
            }
            for m in it {
                replaced.insert(m, None);
            }
        }
        let terms: Vec<BExpr> = terms
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| match replaced.remove(&i) {
                None => Some(t),
                Some(r) => r,
            })
            .collect();
        let joined = if or {
            BExpr::or_all(terms)
        } else {
            BExpr::and_all(terms)
        };
        joined.ok_or_else(|| mismatch("an empty AND / OR"))
    }

    /// `x IN (c1, c2, ...)` over a long list of constants, as a membership test
    /// of a hash set the statement builds once (an init plan over the constants,
    /// reading no table), instead of a comparison per item: the code stays small
    /// and the test constant-time whatever the list's length. NULL in the list
    /// and a NULL `x` follow SQL's rules as for IN (subquery). `None` when the
    /// list is short or not all constants of one type.
    fn in_constants(&mut self, x: &BExpr, items: &[BExpr]) -> Result<Option<BExpr>, CompileError> {
        if items.len() < IN_SET_MIN || !items.iter().all(|i| matches!(i.kind, BK::Lit(_))) {
            return Ok(None);
        }
        let mut t = if is_null_lit(x) { None } else { Some(x.ty) };
        for i in items {
            if is_null_lit(i) {
                continue;
            }
            t = match t {
                None => Some(i.ty),
                Some(p) => match common_type(&p, &i.ty) {
                    Some(c) => Some(c),
                    None => return Ok(None),
                },
            };
        }
        let Some(t) = t else { return Ok(None) };
        let mut rows = Vec::with_capacity(items.len());
        let mut nullable = false;
        for i in items {
            match coerce(i.clone(), t).kind {
                BK::Lit(v) => {
                    nullable |= v.is_null();
                    rows.push(vec![v]);
                }
                // a conversion left for run time: compare item by item
                _ => return Ok(None),
            }
        }
        // the same list bound twice (a GROUP BY key and its select item) is one set
        let key = format!("in list {t} {rows:?}");
        let c = self.new_col("in", t, nullable);
        let rel = Rel::Values {
            cols: vec![c],
            rows,
        };
        let i = self.add_init(InitKind::Set, rel, key);
        let x = coerce(self.dup(x)?, t);
        Ok(Some(mk(BK::InSet(Box::new(x), i), SqlType::Boolean, true)))
    }

    /// An unknown column that names a column of an enclosing query is a correlated
    /// reference: say so rather than "does not exist".
    fn correlated(&self, qualifier: Option<&str>, name: &str, e: CompileError) -> CompileError {
        let outer = self.outer.iter().any(|s| {
            s.cols.iter().any(|c| {
                c.name == name && (qualifier.is_none() || c.qualifier.as_deref() == qualifier)
            })
        });
        if outer && e.code == codes::UNDEFINED_COLUMN {
            let pos = e.pos;
            unsupported(
                "correlated subqueries (a subquery that refers to a column of the outer query)",
            )
            .at(pos)
            .hint("rewrite it as a join")
        } else {
            e
        }
    }

    /// Binds a subquery seeing `scope` as its enclosing query (for error messages:
    /// only uncorrelated subqueries are compiled).
    fn subquery(&mut self, q: &Query, scope: &Scope) -> Result<BoundQuery, CompileError> {
        self.outer.push(scope.clone());
        let r = self.query(q);
        self.outer.pop();
        r
    }

    /// Registers an init plan, or returns the one already made for the same text.
    fn add_init(&mut self, kind: InitKind, rel: Rel, key: String) -> usize {
        if let Some(i) = self.init_keys.get(&key) {
            return *i;
        }
        self.inits.push((kind, rel));
        let i = self.inits.len() - 1;
        self.init_keys.insert(key, i);
        i
    }

    /// A subquery that must return exactly one column: its relation and type.
    fn subquery_one_column(
        &mut self,
        q: &Query,
        scope: &Scope,
    ) -> Result<(Rel, SqlType), CompileError> {
        let bq = self.subquery(q, scope)?;
        let out = bq.rel.output();
        let [c] = out.as_slice() else {
            return Err(mismatch(format!(
                "the subquery returns {} columns; it must return one",
                out.len()
            ))
            .at(pos_of(q)));
        };
        let ty = self.meta(*c)?.ty;
        Ok((bq.rel, ty))
    }

    fn text_arg(
        &mut self,
        e: &Expr,
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let b = self.expr(e, scope, agg)?;
        if is_text(&b.ty) || is_null_lit(&b) {
            Ok(coerce(b, SqlType::Text))
        } else {
            Err(mismatch(format!("expected text, found {}", b.ty)).at(pos_of(e)))
        }
    }

    fn int_arg(
        &mut self,
        e: &Expr,
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let b = self.expr(e, scope, agg)?;
        if matches!(b.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt) || is_null_lit(&b)
        {
            Ok(coerce(b, SqlType::BigInt))
        } else {
            Err(mismatch(format!("expected an integer, found {}", b.ty)).at(pos_of(e)))
        }
    }

    fn date_interval(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        iv: &ast::Interval,
        scope: &Scope,
    ) -> Result<BExpr, CompileError> {
        let sign = match op {
            BinaryOperator::Plus => 1i64,
            BinaryOperator::Minus => -1,
            _ => return Err(unsupported("this operator with an INTERVAL")),
        };
        let text = match iv.value.as_ref() {
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                ast::Value::Number(n, _) => n.clone(),
                _ => return Err(unsupported("a non-constant INTERVAL")),
            },
            _ => return Err(unsupported("a non-constant INTERVAL")),
        };
        let mut words = text.split_whitespace();
        let n: i64 = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| {
            CompileError::new(codes::INVALID_LITERAL, format!("invalid INTERVAL '{text}'"))
        })?;
        let unit = match (&iv.leading_field, words.next()) {
            (Some(f), None) => f.to_string().to_lowercase(),
            (None, Some(u)) => u.to_lowercase(),
            (None, None) => "day".to_owned(),
            _ => {
                return Err(CompileError::new(
                    codes::INVALID_LITERAL,
                    format!("invalid INTERVAL '{text}'"),
                ));
            }
        };
        let unit = unit.trim_end_matches('s').to_owned();
        let d = self.expr(left, scope, None)?;
        let n = n
            .checked_mul(sign)
            .ok_or_else(|| CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range"))?;
        let months = match unit.as_str() {
            "year" => Some(n.checked_mul(12)),
            "month" => Some(Some(n)),
            _ => None,
        };
        let nl = d.nullable;
        match (d.ty, months) {
            (SqlType::Date, Some(m)) => {
                let m = m.and_then(|m| i32::try_from(m).ok()).ok_or_else(|| {
                    CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range")
                })?;
                Ok(crate::fold::fold(mk(
                    BK::Func(
                        Func::AddMonths,
                        vec![d, BExpr::lit(Value::Integer(m), SqlType::Integer)],
                    ),
                    SqlType::Date,
                    nl,
                )))
            }
            (SqlType::Date, None) => {
                let days = match unit.as_str() {
                    "day" => n,
                    "week" => n.checked_mul(7).unwrap_or(i64::MAX),
                    _ => {
                        return Err(unsupported(format!("DATE + INTERVAL in {unit}s"))
                            .hint("use DAY, WEEK, MONTH or YEAR"));
                    }
                };
                let days = i32::try_from(days)
                    .map_err(|_| CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range"))?;
                Ok(crate::fold::fold(mk(
                    BK::Arith(
                        ArithOp::Add,
                        Box::new(d),
                        Box::new(BExpr::lit(Value::Integer(days), SqlType::Integer)),
                    ),
                    SqlType::Date,
                    nl,
                )))
            }
            (SqlType::Timestamp, None) => {
                let micros = match unit.as_str() {
                    "day" => 86_400_000_000i64,
                    "hour" => 3_600_000_000,
                    "minute" => 60_000_000,
                    "second" => 1_000_000,
                    "week" => 7 * 86_400_000_000,
                    _ => return Err(unsupported(format!("TIMESTAMP + INTERVAL in {unit}s"))),
                };
                let v = n.checked_mul(micros).ok_or_else(|| {
                    CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range")
                })?;
                let mut e = mk(
                    BK::Arith(
                        ArithOp::Add,
                        Box::new(d),
                        Box::new(BExpr::lit(Value::BigInt(v), SqlType::BigInt)),
                    ),
                    SqlType::BigInt,
                    nl,
                );
                // computed on the microsecond count
                e.ty = SqlType::Timestamp;
                if let BK::Arith(_, a, _) = &mut e.kind {
                    a.ty = SqlType::Timestamp;
                }
                Ok(e)
            }
            (SqlType::Timestamp, Some(_)) => {
                Err(unsupported("TIMESTAMP + INTERVAL in months or years"))
            }
            (t, _) => Err(mismatch(format!("{t} + INTERVAL"))),
        }
    }

    fn case(&self, whens: Vec<BExpr>, mut results: Vec<BExpr>) -> Result<BExpr, CompileError> {
        let mut t: Option<SqlType> = None;
        for r in &results {
            if is_null_lit(r) {
                continue;
            }
            t = Some(match t {
                None => r.ty,
                Some(p) => {
                    if let (Some(_), true) = (is_text_lit(r), !is_text(&p)) {
                        p
                    } else {
                        common_type(&p, &r.ty).ok_or_else(|| {
                            mismatch(format!("CASE results of types {p} and {}", r.ty))
                        })?
                    }
                }
            });
        }
        let t = t.unwrap_or(SqlType::Text);
        let mut conv = Vec::with_capacity(results.len());
        for r in results.drain(..) {
            conv.push(match is_text_lit(&r) {
                Some(s) if !is_text(&t) => self.text_literal_as(s, t)?,
                _ => coerce(r, t),
            });
        }
        let els = conv.pop().ok_or_else(|| mismatch("CASE"))?;
        let nullable = els.nullable || conv.iter().any(|r| r.nullable);
        let pairs: Vec<(BExpr, BExpr)> = whens.into_iter().zip(conv).collect();
        Ok(mk(BK::Case(pairs, Box::new(els)), t, nullable))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn function(
        &mut self,
        f: &ast::Function,
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let name = func_name(f);
        crate::clauses::function(f)?;
        let (args, distinct) = match &f.args {
            FunctionArguments::None => (Vec::new(), false),
            FunctionArguments::Subquery(_) => {
                return Err(unsupported("a subquery as function argument"));
            }
            FunctionArguments::List(l) => {
                if !l.clauses.is_empty() {
                    return Err(unsupported(format!("clauses inside {name}(...)")));
                }
                (
                    l.args.clone(),
                    matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
                )
            }
        };
        if let Some(kind) = is_agg_name(&name) {
            let Some(ctx) = agg else {
                return Err(CompileError::new(
                    codes::GROUPING,
                    format!("aggregate function {name} is not allowed here"),
                )
                .at(pos_of(f)));
            };
            return self
                .aggregate(&name, kind, &args, distinct, scope, ctx)
                .map_err(|e| e.at(pos_of(f)));
        }
        if distinct {
            return Err(mismatch(format!(
                "DISTINCT is only allowed in aggregates, not {name}"
            )));
        }
        let mut bound = Vec::with_capacity(args.len());
        let mut agg = agg;
        for a in &args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                    bound.push(self.expr(x, scope, agg.as_deref_mut())?)
                }
                _ => return Err(unsupported(format!("this argument form in {name}(...)"))),
            }
        }
        let want = |n: usize| -> Result<(), CompileError> {
            if bound.len() == n {
                Ok(())
            } else {
                Err(mismatch(format!(
                    "{name} takes {n} argument(s), {} given",
                    bound.len()
                ))
                .at(pos_of(f)))
            }
        };
        let text = |b: BExpr| -> Result<BExpr, CompileError> {
            if is_text(&b.ty) || is_null_lit(&b) {
                Ok(coerce(b, SqlType::Text))
            } else {
                Err(mismatch(format!("{name} takes text, not {}", b.ty)))
            }
        };
        Ok(match name.as_str() {
            "length" | "char_length" | "character_length" => {
                want(1)?;
                let s = text(bound.remove(0))?;
                let n = s.nullable;
                mk(BK::Func(Func::Length, vec![s]), SqlType::Integer, n)
            }
            "lower" | "upper" => {
                want(1)?;
                let s = text(bound.remove(0))?;
                let n = s.nullable;
                let fun = if name == "lower" {
                    Func::Lower
                } else {
                    Func::Upper
                };
                mk(BK::Func(fun, vec![s]), SqlType::Text, n)
            }
            "substr" | "substring" => {
                if !(2..=3).contains(&bound.len()) {
                    return Err(mismatch(format!("{name} takes 2 or 3 arguments")));
                }
                let s = text(bound.remove(0))?;
                let mut args = vec![s];
                for b in bound {
                    if !matches!(b.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
                        && !is_null_lit(&b)
                    {
                        return Err(mismatch(format!(
                            "{name} positions must be integers, not {}",
                            b.ty
                        )));
                    }
                    args.push(coerce(b, SqlType::BigInt));
                }
                let n = args.iter().any(|a| a.nullable);
                mk(BK::Func(Func::Substr, args), SqlType::Text, n)
            }
            "abs" => {
                want(1)?;
                let x = bound.remove(0);
                if !is_numeric(&x.ty) {
                    return Err(mismatch(format!("abs of {}", x.ty)));
                }
                let (t, n) = (
                    if x.ty == SqlType::SmallInt {
                        SqlType::Integer
                    } else {
                        x.ty
                    },
                    x.nullable,
                );
                let x = coerce(x, t);
                mk(BK::Func(Func::Abs, vec![x]), t, n)
            }
            "coalesce" => {
                if bound.is_empty() {
                    return Err(mismatch("COALESCE needs arguments"));
                }
                let last = bound.pop().ok_or_else(|| mismatch("COALESCE"))?;
                let mut whens: Vec<BExpr> = Vec::with_capacity(bound.len());
                for b in &bound {
                    whens.push(not(is_null(self.dup(b)?)));
                }
                let mut results = bound;
                results.push(last);
                let mut e = self.case(whens, results)?;
                e.nullable = match &e.kind {
                    BK::Case(_, els) => els.nullable,
                    _ => e.nullable,
                };
                e
            }
            "nullif" => {
                want(2)?;
                let b = bound.pop().ok_or_else(|| mismatch("NULLIF"))?;
                let a = bound.pop().ok_or_else(|| mismatch("NULLIF"))?;
                let a1 = self.dup(&a)?;
                let (a2, b2) = self.unify(a1, b)?;
                let t = a2.ty;
                let c = cmp(CmpOp::Eq, self.dup(&a2)?, b2);
                mk(
                    BK::Case(vec![(c, BExpr::lit(Value::Null, t))], Box::new(a2)),
                    t,
                    true,
                )
            }
            "concat" => {
                // concat ignores NULLs
                let mut parts = Vec::with_capacity(bound.len());
                for b in bound {
                    let b = coerce(b, SqlType::Text);
                    let nn = mk(
                        BK::Case(
                            vec![(
                                is_null(self.dup(&b)?),
                                BExpr::lit(Value::Text(String::new()), SqlType::Text),
                            )],
                            Box::new(b),
                        ),
                        SqlType::Text,
                        false,
                    );
                    parts.push(nn);
                }
                // concatenation is associative: a balanced tree, so that many
                // arguments do not nest deeply
                while parts.len() > 1 {
                    let mut next = Vec::with_capacity(parts.len().div_ceil(2));
                    let mut it = parts.into_iter();
                    while let Some(a) = it.next() {
                        next.push(match it.next() {
                            Some(b) => mk(BK::Func(Func::Concat, vec![a, b]), SqlType::Text, false),
                            None => a,
                        });
                    }
                    parts = next;
                }
                let acc = parts.pop();
                acc.unwrap_or_else(|| BExpr::lit(Value::Text(String::new()), SqlType::Text))
            }
            other => {
                return Err(CompileError::new(codes::UNDEFINED_FUNCTION, format!("function {other}() does not exist"))
                    .at(pos_of(f))
                    .hint("supported: length, lower, upper, substring, position, trim, abs, coalesce, nullif, concat, and the aggregates count, sum, avg, min, max"));
            }
        })
    }

    fn aggregate(
        &mut self,
        name: &str,
        kind: AggKind,
        args: &[FunctionArg],
        distinct: bool,
        scope: &Scope,
        ctx: &mut AggCtx,
    ) -> Result<BExpr, CompileError> {
        let arg = match args {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if name == "count" && !distinct => {
                None
            }
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => {
                if contains_agg(x) {
                    return Err(CompileError::new(
                        codes::GROUPING,
                        "aggregate calls cannot be nested",
                    )
                    .at(pos_of(x)));
                }
                Some(crate::fold::fold(self.expr(x, scope, None)?))
            }
            _ => return Err(mismatch(format!("{name} takes one argument"))),
        };
        let kind = if arg.is_none() {
            AggKind::CountStar
        } else {
            kind
        };
        if let Some(a) = &arg {
            let ok = match kind {
                AggKind::Sum => is_numeric(&a.ty),
                AggKind::Min | AggKind::Max => a.ty != SqlType::Blob && a.ty != SqlType::Boolean,
                _ => true,
            };
            if !ok {
                return Err(mismatch(format!("{name} does not take {}", a.ty)));
            }
        }
        let mut get = |this: &mut Self,
                       kind: AggKind,
                       arg: Option<BExpr>,
                       ty: SqlType,
                       nullable: bool|
         -> ColId {
            if let Some((_, _, _, c)) = ctx
                .seen
                .iter()
                .find(|(k, a, d, _)| *k == kind && *a == arg && *d == distinct)
            {
                return *c;
            }
            let c = this.new_col(name, ty, nullable);
            ctx.seen.push((kind, arg.clone(), distinct, c));
            ctx.aggs.push((c, BAgg { kind, arg, ty }, distinct));
            c
        };
        let sum_type = |t: &SqlType| match t {
            SqlType::Double => SqlType::Double,
            SqlType::Decimal { scale, .. } => SqlType::Decimal {
                precision: DECIMAL_COMPUTE_DIGITS,
                scale: *scale,
            },
            _ => SqlType::BigInt,
        };
        let col = |this: &Self, c: ColId| this.col_expr(c);
        Ok(match (name, kind) {
            (_, AggKind::CountStar) | (_, AggKind::Count) => {
                let c = get(self, kind, arg, SqlType::BigInt, false);
                col(self, c)?
            }
            ("avg", _) => {
                let a = arg.ok_or_else(|| mismatch("avg(*)"))?;
                let st = sum_type(&a.ty);
                let s = get(self, AggKind::Sum, Some(a.clone()), st, true);
                let n = get(
                    self,
                    AggKind::Count,
                    Some(a.clone()),
                    SqlType::BigInt,
                    false,
                );
                let (se, ne) = (col(self, s)?, col(self, n)?);
                if st == SqlType::Double {
                    self.arith(ArithOp::Div, se, coerce(ne, SqlType::Double))?
                } else {
                    let sc = crate::lower::scale_of(&st).max(crate::typing::DIVISION_SCALE_MIN);
                    let out = SqlType::Decimal {
                        precision: DECIMAL_COMPUTE_DIGITS,
                        scale: sc,
                    };
                    let se = coerce(
                        se,
                        SqlType::Decimal {
                            precision: DECIMAL_COMPUTE_DIGITS,
                            scale: crate::lower::scale_of(&st),
                        },
                    );
                    let ne = coerce(
                        ne,
                        SqlType::Decimal {
                            precision: DECIMAL_COMPUTE_DIGITS,
                            scale: 0,
                        },
                    );
                    mk(
                        BK::Arith(ArithOp::Div, Box::new(se), Box::new(ne)),
                        out,
                        true,
                    )
                }
            }
            (_, AggKind::Sum) => {
                let a = arg.ok_or_else(|| mismatch("sum(*)"))?;
                let st = sum_type(&a.ty);
                let a = if matches!(st, SqlType::Decimal { .. }) {
                    coerce(a, st)
                } else {
                    a
                };
                let c = get(self, AggKind::Sum, Some(a), st, true);
                col(self, c)?
            }
            (_, k) => {
                let a = arg.ok_or_else(|| mismatch("min/max(*)"))?;
                let t = a.ty;
                let c = get(self, k, Some(a), t, true);
                col(self, c)?
            }
        })
    }
}

fn sort_key(col: ColId, o: &ast::OrderByExpr) -> BSortKey {
    let desc = matches!(o.options.sort, Some(OrderBySort::Desc));
    // PostgreSQL: NULLs sort as larger than any value
    let nulls_first = o.options.nulls_first.unwrap_or(desc);
    BSortKey {
        col,
        desc,
        nulls_first,
    }
}

/// The column `name` (optionally qualified) in `scope`.
fn find(
    scope: &Scope,
    qualifier: Option<&str>,
    name: &str,
    at: Option<Pos>,
) -> Result<ColId, CompileError> {
    let hits: Vec<&ScopeCol> = scope
        .cols
        .iter()
        .filter(|c| c.name == name && (qualifier.is_none() || c.qualifier.as_deref() == qualifier))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.id),
        [] => {
            let full = qualifier.map_or_else(|| name.to_owned(), |q| format!("{q}.{name}"));
            let known: Vec<String> = scope
                .cols
                .iter()
                .filter(|c| qualifier.is_none() || c.qualifier.as_deref() == qualifier)
                .map(|c| {
                    c.qualifier
                        .as_ref()
                        .map_or_else(|| c.name.clone(), |q| format!("{q}.{}", c.name))
                })
                .collect();
            Err(CompileError::new(
                codes::UNDEFINED_COLUMN,
                format!("column \"{full}\" does not exist"),
            )
            .at(at)
            .hint(if known.is_empty() {
                "no columns are in scope here".to_owned()
            } else {
                format!("columns in scope: {}", known.join(", "))
            }))
        }
        _ => Err(CompileError::new(
            codes::AMBIGUOUS_COLUMN,
            format!("column reference \"{name}\" is ambiguous"),
        )
        .at(at)
        .hint("qualify it with its table name or alias")),
    }
}

/// Replaces subtrees equal to a group key with the key's column.
fn replace_keys(e: BExpr, keys: &[(BExpr, ColId)], b: &Binder<'_>) -> BExpr {
    if let Some((_, c)) = keys.iter().find(|(k, _)| *k == e)
        && let Ok(x) = b.col_expr(*c)
    {
        return x;
    }
    let r = |x: Box<BExpr>| Box::new(replace_keys(*x, keys, b));
    let kind = match e.kind {
        BK::Arith(o, x, y) => BK::Arith(o, r(x), r(y)),
        BK::Cmp(o, x, y) => BK::Cmp(o, r(x), r(y)),
        BK::And(x, y) => BK::And(r(x), r(y)),
        BK::Or(x, y) => BK::Or(r(x), r(y)),
        BK::Neg(x) => BK::Neg(r(x)),
        BK::Not(x) => BK::Not(r(x)),
        BK::IsNull(x) => BK::IsNull(r(x)),
        BK::Cast(x) => BK::Cast(r(x)),
        BK::Case(w, els) => BK::Case(
            w.into_iter()
                .map(|(c, v)| (replace_keys(c, keys, b), replace_keys(v, keys, b)))
                .collect(),
            r(els),
        ),
        BK::Func(f, args) => BK::Func(
            f,
            args.into_iter().map(|a| replace_keys(a, keys, b)).collect(),
        ),
        BK::InSet(x, i) => BK::InSet(r(x), i),
        k @ (BK::Col(_) | BK::Lit(_) | BK::Init(_)) => k,
    };
    BExpr { kind, ..e }
}
