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

mod correlate;
mod expr;
mod func;
mod grouping;
mod ordered;
mod query;
mod recursive;
mod regex;
mod select;
mod tochar;
mod window;
mod write;

pub(crate) use write::Changed;

/// INTERSECT and EXCEPT operations in one statement, at most: each nests the
/// plan a few levels (a run of UNIONs is bound flat, these are not).
pub(crate) const SET_COMBINES_MAX: usize = 32;

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

/// The catalog view (`information_schema.tables`, `pg_catalog.pg_tables`,
/// ...) a two-part name names.
pub(crate) fn catalog_view(n: &ObjectName) -> Option<scratchbird_types::infoschema::View> {
    let [schema, name] = n.0.as_slice() else {
        return None;
    };
    let (schema, name) = (norm(schema.as_ident()?), norm(name.as_ident()?));
    scratchbird_types::infoschema::View::named(&schema, &name)
}

/// The catalog view a name names: a two-part name, or (as PostgreSQL's
/// search path finds `pg_catalog` first) the name of a `pg_catalog` view
/// alone, when no table of `cat` has it.
pub(crate) fn catalog_view_in(
    n: &ObjectName,
    cat: &Catalog,
) -> Option<scratchbird_types::infoschema::View> {
    if let Some(v) = catalog_view(n) {
        return Some(v);
    }
    let [name] = n.0.as_slice() else {
        return None;
    };
    let name = norm(name.as_ident()?);
    if user_table(cat, &name).is_some() {
        return None;
    }
    scratchbird_types::infoschema::View::named("pg_catalog", &name)
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
    /// Named only with its qualifier, and not part of `SELECT *`: a column
    /// of a join's USING list on one side (the joined column, unqualified,
    /// answers to the bare name).
    hidden: bool,
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
    /// The group keys, for GROUPING(...), and the column that says which
    /// keys a row's grouping set leaves out (one bit per key, key 0 lowest;
    /// `None` without grouping sets: every key is in).
    grouping: Option<(Vec<BExpr>, Option<ColId>)>,
    /// string_agg, the percentiles and mode: computed over the sorted rows
    /// of each group (see `ordered`).
    ordered: Vec<(ColId, ordered::OrderedAgg)>,
}

/// The statement's binder.
pub(crate) struct Binder<'c> {
    pub(crate) cat: &'c Catalog,
    pub(crate) meta: HashMap<ColId, ColMeta>,
    /// Uncorrelated subqueries, computed before the statement's pipelines.
    pub(crate) inits: Vec<(InitKind, Rel)>,
    /// The scopes of the queries enclosing the one being bound.
    outer: Vec<Scope>,
    /// For each of those, the columns of it the subquery inside it read
    /// (correlated references).
    corr: Vec<Vec<ColId>>,
    /// The clauses open to take decorrelated subqueries.
    frames: correlate::Frames,
    /// INTERSECT and EXCEPT operations bound so far.
    combines: usize,
    /// The text of each subquery decorrelated into a join (a coordinator of
    /// several shards cannot run these first, on their own).
    pub(crate) correlated: Vec<String>,
    /// Init plans by subquery text (and kind and type), so that the same subquery
    /// bound twice (a GROUP BY key and its select item) is one plan.
    init_keys: HashMap<String, usize>,
    next: ColId,
    exprs: usize,
    /// The WITH queries in scope, innermost last.
    ctes: Vec<Cte>,
    /// WITH queries out of scope where one is being read: itself and those
    /// after it (for the error that names them).
    hidden: Vec<String>,
    /// The tables and views FROM items name (what a view depends on).
    named: Vec<String>,
    /// Views being expanded, outermost first.
    views: Vec<String>,
    /// How deep the views being expanded nest, added up (see `view`).
    view_depth: usize,
    /// The bytes of view text read so far.
    view_bytes: usize,
    /// WITH queries defined so far (their ids).
    cte_seq: usize,
    /// The window functions of the SELECT being bound, where one may appear
    /// (its select list and ORDER BY); `None` elsewhere.
    windows: Option<Vec<window::PendingWin>>,
    /// The work tables of the recursive WITH queries being bound, innermost
    /// last.
    works: Vec<recursive::WorkRef>,
    /// Recursive WITH queries bound so far (their work table ids).
    work_seq: usize,
    /// The statement's time (microseconds since 1970-01-01 UTC), which
    /// `now()`, `current_timestamp` and `current_date` read; `None` where
    /// there is none (a DEFAULT, a CHECK).
    pub(crate) now: Option<i64>,
    /// Whether the statement read it: its module then holds this statement's
    /// time and is never reused.
    pub(crate) used_now: bool,
}

/// A WITH query in scope: a table named as it reads its query, bound where
/// it is named.
#[derive(Clone)]
struct Cte {
    /// Unique in the statement: init plans read in its scope are keyed by it.
    id: usize,
    name: String,
    query: Arc<Query>,
    /// The names given with it (`WITH t(a, b) AS ...`).
    columns: Vec<String>,
    /// How many enclosing queries' scopes it sees (those of the query whose
    /// WITH defines it).
    outer: usize,
    /// Defined in a WITH RECURSIVE (it may read itself).
    recursive: bool,
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
        "sum" | "avg" | "variance" | "var_samp" | "var_pop" | "stddev" | "stddev_samp"
        | "stddev_pop" => AggKind::Sum,
        "min" | "bool_and" | "every" => AggKind::Min,
        "max" | "bool_or" => AggKind::Max,
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
            && (is_agg_name(&func_name(f)).is_some() || ordered::is_ordered_name(&func_name(f)))
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
            corr: Vec::new(),
            frames: correlate::Frames::default(),
            correlated: Vec::new(),
            combines: 0,
            init_keys: HashMap::new(),
            next: 0,
            exprs: 0,
            ctes: Vec::new(),
            hidden: Vec::new(),
            named: Vec::new(),
            views: Vec::new(),
            view_depth: 0,
            view_bytes: 0,
            cte_seq: 0,
            windows: None,
            works: Vec::new(),
            work_seq: 0,
            now: None,
            used_now: false,
        }
    }

    /// The binder of a statement that runs at `now` (see [`Binder::now`]).
    pub(crate) fn at(cat: &'c Catalog, now: Option<i64>) -> Self {
        let mut b = Self::new(cat);
        b.now = now;
        b
    }

    /// The catalog it binds against.
    pub(crate) fn catalog(&self) -> &'c Catalog {
        self.cat
    }

    /// The tables and views the FROM items bound so far name directly (not
    /// those a view names in its own query).
    pub(crate) fn named(&self) -> Vec<String> {
        self.named.clone()
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
        if let Some(v) = catalog_view(name) {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!(
                    "{}.{} is a catalog view: it can only be read",
                    v.schema(),
                    v.name()
                ),
            )
            .at(pos_of(name)));
        }
        let n = object_name(name)?;
        user_table(self.cat, &n).cloned().ok_or_else(|| {
            let mut known = user_table_names(self.cat);
            known.extend(self.cat.views().map(|v| v.name.as_str()));
            known.sort_unstable();
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
        .filter(|c| {
            c.name == name
                && match qualifier {
                    None => !c.hidden,
                    Some(q) => c.qualifier.as_deref() == Some(q),
                }
        })
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
    correlate::substitute(e, &|x: &BExpr| {
        keys.iter()
            .find(|(k, _)| k == x)
            .and_then(|(_, c)| b.col_expr(*c).ok())
    })
}
