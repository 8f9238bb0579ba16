//! Writes: INSERT (with ON CONFLICT DO NOTHING / DO UPDATE), UPDATE (with
//! FROM), DELETE (with USING), each with RETURNING, and the write stage they
//! all compile to.
//!
//! What a write may touch is the host's to decide, never this module's: the
//! write target's grant and write rule, the record keys it may name (rows the
//! principal sees), and what RETURNING shows. RETURNING reads back the rows
//! the host wrote through the principal's read rules (a scan of the table
//! with [`ScanRangeDecl::Written`]), so it shows only what a SELECT would,
//! masked as a SELECT masks.

use crate::bind::{Binder, Changed, norm, object_name, pos_of};
use crate::catalog::{self, Catalog, TableDef};
use crate::error::{CompileError, Pos, codes};
use crate::logical::{BExpr, BK, BSortKey, Rel};
use crate::lower::{Builder, program};
use crate::{Compiled, QueryKind, emit, explain, hash, optimize, route};
use scratchbird_guest_ops::abi::{Arbiter, OnConflict, WriteKind};
use scratchbird_guest_ops::plan::Sink;
use scratchbird_types::schema::DefaultFn;
use scratchbird_types::{SqlType, Value};
use sqlparser::ast;
use std::sync::Arc;

/// A write compiled so far: the rows it writes, how, and what it returns.
pub(crate) struct WriteStage<'t> {
    rel: Rel,
    kind: QueryKind,
    table: &'t TableDef,
    wk: WriteKind,
    positions: Vec<usize>,
    on_conflict: OnConflict,
    /// An upsert's replaced columns (indices into `positions`).
    sets: Vec<u32>,
    /// The rows that route the statement (its reads and the placing values
    /// it writes), when not `rel` itself: an upsert's proposed rows (the
    /// stored rows they collide with are on the shard they are written to),
    /// with the table position of each of their columns.
    route_by: Option<(Rel, Vec<usize>)>,
    /// RETURNING: its relation over the rows written, and its names.
    returning: Option<(Rel, Vec<String>)>,
}

impl<'t> WriteStage<'t> {
    /// Rows `rel` written into `table` as `wk` (columns at `positions`).
    pub(crate) fn new(
        rel: Rel,
        kind: QueryKind,
        table: &'t TableDef,
        wk: WriteKind,
        positions: Vec<usize>,
    ) -> Self {
        Self {
            rel,
            kind,
            table,
            wk,
            positions,
            on_conflict: OnConflict::Fail,
            sets: Vec::new(),
            route_by: None,
            returning: None,
        }
    }
}

/// The one write target of a write statement (RETURNING names it).
const TARGET: u32 = 0;

pub(crate) fn finish_write(
    b: &Binder<'_>,
    w: WriteStage<'_>,
    cat: &Catalog,
) -> Result<Compiled, CompileError> {
    let rel = optimize::optimize(w.rel, cat, &b.meta);
    let ret = w
        .returning
        .map(|(r, names)| (optimize::optimize(r, cat, &b.meta), names));
    let inits: Vec<_> = b
        .inits
        .iter()
        .map(|(k, r)| (*k, optimize::optimize(r.clone(), cat, &b.meta)))
        .collect();
    let mut init_rels: Vec<&Rel> = inits.iter().map(|(_, r)| r).collect();
    // what RETURNING's subqueries read is read too
    if let Some((r, _)) = &ret {
        init_rels.push(r);
    }
    let route_by = w
        .route_by
        .map(|(r, p)| (optimize::optimize(r, cat, &b.meta), p));
    let (by, by_positions) = route_by
        .as_ref()
        .map_or((&rel, &w.positions), |(r, p)| (r, p));
    let mut route = route::of(by, &init_rels);
    route.write = Some(match w.wk {
        WriteKind::Insert | WriteKind::Upsert => route::insert(by, w.table, by_positions),
        WriteKind::Update | WriteKind::Delete => route::change(&route, w.table),
    });
    let mut roots = vec![&rel];
    if let Some((r, _)) = &ret {
        roots.push(r);
    }
    let mut builder = Builder::new(&b.meta, &roots, &inits).with_estimates(cat);
    let init_plans = builder.inits(&inits)?;
    let (op, _) = builder.rel(&rel)?;
    let target = builder.write_target(w.table, w.wk, &w.positions, w.on_conflict, w.sets)?;
    if u32::try_from(target).ok() != Some(TARGET) {
        return Err(CompileError::new(
            "XX000",
            "internal compiler error: the write target",
        ));
    }
    let mut pipelines = vec![(op, Sink::Write(target))];
    let mut plan = format!(
        "Write {:?} into {}\n{}",
        w.wk,
        w.table.name,
        explain::tree(
            std::slice::from_ref(&rel),
            &b.meta,
            Some(&crate::cost::Estimator::new(cat))
        )
    );
    let mut columns = Vec::new();
    if let Some((r, names)) = &ret {
        let (op, schema) = builder.rel(r)?;
        let o = builder.output(&schema, names.clone())?;
        pipelines.push((op, Sink::Output(o)));
        columns = names
            .iter()
            .cloned()
            .zip(
                schema
                    .iter()
                    .map(|c| b.meta.get(c).map_or(SqlType::Text, |m| m.ty)),
            )
            .collect();
        plan.push_str("Returning\n");
        plan.push_str(&explain::tree(
            std::slice::from_ref(r),
            &b.meta,
            Some(&crate::cost::Estimator::new(cat)),
        ));
    }
    let manifest = builder.manifest;
    let module = emit(&program(init_plans, pipelines), &manifest)?;
    Ok(Compiled {
        kind: w.kind,
        hash: hash(&module),
        planned_with: crate::planned_with(cat, &manifest),
        plan,
        module,
        manifest,
        merge: None,
        // a write runs where its rows live, on one shard
        single_shard: true,
        correlated: b.correlated.clone(),
        columns,
        schema: cat.version(),
        route,
        spread: false,
        as_of: None,
        load: None,
        volatile: b.used_now,
    })
}

pub(crate) fn target_table(
    b: &Binder<'_>,
    name: &ast::ObjectName,
) -> Result<Arc<TableDef>, CompileError> {
    if let Ok(n) = object_name(name)
        && catalog::user_table(b.catalog(), &n).is_none()
        && b.catalog().view_by_name(&n).is_some()
    {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            format!("\"{n}\" is a view: a view cannot be written to"),
        )
        .at(pos_of(name))
        .hint("write to the tables its query reads"));
    }
    b.table(name)
}

/// The RETURNING list of a write, if it has one.
fn returning(
    b: &mut Binder<'_>,
    items: Option<&[ast::SelectItem]>,
    table: &Arc<TableDef>,
    qualifier: &str,
) -> Result<Option<(Rel, Vec<String>)>, CompileError> {
    items
        .map(|items| b.returning(items, table, qualifier, TARGET))
        .transpose()
}

pub(crate) fn insert(
    ins: &ast::Insert,
    cat: &Catalog,
    now: Option<i64>,
) -> Result<Compiled, CompileError> {
    let mut b = Binder::at(cat, now);
    let ast::TableObject::TableName(tname) = &ins.table else {
        return Err(CompileError::new(
            codes::NOT_SUPPORTED,
            "INSERT into a table function",
        ));
    };
    let table = target_table(&b, tname)?;
    let qualifier = ins
        .table_alias
        .as_ref()
        .map_or_else(|| table.name.clone(), |a| norm(&a.alias));
    let named = ins
        .columns
        .iter()
        .map(|c| Ok((object_name(c)?, pos_of(c))))
        .collect::<Result<Vec<_>, CompileError>>()?;
    let mut positions = column_positions(&table, &named)?;
    // DEFAULT VALUES: one row of DEFAULT in every column
    let every_default;
    let source = match ins.source.as_ref() {
        Some(q) => q,
        None => {
            let row = vec![ast::Expr::Identifier(ast::Ident::new("DEFAULT")); positions.len()];
            every_default = ast::Query {
                with: None,
                body: Box::new(ast::SetExpr::Values(ast::Values {
                    explicit_row: false,
                    value_keyword: false,
                    rows: vec![ast::Parens::with_empty_span(row)],
                })),
                order_by: None,
                limit_clause: None,
                fetch: None,
                locks: Vec::new(),
                for_clause: None,
                settings: None,
                format_clause: None,
                pipe_operators: Vec::new(),
            };
            &every_default
        }
    };
    // without a column list, fewer values fill the first columns
    let fewer = |positions: &mut Vec<usize>, have: usize| {
        if named.is_empty() && have < positions.len() {
            positions.truncate(have);
        }
    };
    let types_of = |positions: &[usize]| -> Vec<SqlType> {
        positions
            .iter()
            .filter_map(|p| table.columns.get(*p).map(|c| c.ty))
            .collect()
    };
    let rel = match source.body.as_ref() {
        ast::SetExpr::Values(v)
            if source.order_by.is_none()
                && source.limit_clause.is_none()
                && source.with.is_none() =>
        {
            fewer(&mut positions, v.rows.first().map_or(0, |r| r.len()));
            let owned = without_defaults(v, &mut positions, &table)?;
            let v = owned.as_ref().unwrap_or(v);
            let types = types_of(&positions);
            let bq = b.values(v, Some(&types))?;
            check_width(bq.rel.output().len(), types.len())?;
            bq.rel
        }
        _ => {
            let bq = b.query(source)?;
            let out = bq.rel.output();
            fewer(&mut positions, out.len());
            let types = types_of(&positions);
            check_width(out.len(), types.len())?;
            let mut exprs = Vec::with_capacity(out.len());
            for (c, t) in out.iter().zip(&types) {
                let e = b.assign(b.col_expr(*c)?, *t)?;
                let nullable = e.nullable;
                exprs.push((b.new_col("$v", *t, nullable), e));
            }
            Rel::Project {
                input: Box::new(bq.rel),
                exprs,
            }
        }
    };
    let (rel, positions) = if matches!(ins.overriding, Some(ast::InsertOverriding::User)) {
        without_identity(&mut b, &table, rel, positions)?
    } else {
        (rel, positions)
    };
    generated_always(&table, &positions, ins.overriding.as_ref())?;
    let (rel, positions) = with_time_defaults(&mut b, &table, rel, positions)?;
    let on_conflict = match &ins.on {
        None => OnConflict::Fail,
        Some(ast::OnInsert::OnConflict(oc)) => match &oc.action {
            ast::OnConflictAction::DoNothing => {
                OnConflict::Skip(arbiter(&table, oc.conflict_target.as_ref(), cat)?.map(|a| a.0))
            }
            ast::OnConflictAction::DoUpdate(du) => {
                let (_, on) =
                    arbiter(&table, oc.conflict_target.as_ref(), cat)?.ok_or_else(|| {
                        CompileError::new(
                        codes::SYNTAX,
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    )
                    .hint("name the unique columns: ON CONFLICT (id) DO UPDATE SET ...")
                    })?;
                return upsert(b, &table, &qualifier, (rel, &positions), &on, du, ins, cat);
            }
        },
        Some(ast::OnInsert::DuplicateKeyUpdate(_)) => {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "ON DUPLICATE KEY UPDATE is not supported",
            )
            .hint("write PostgreSQL's ON CONFLICT (key) DO UPDATE SET ..."));
        }
        Some(_) => {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "this INSERT ... ON form",
            ));
        }
    };
    let ret = returning(&mut b, ins.returning.as_deref(), &table, &qualifier)?;
    let mut w = WriteStage::new(rel, QueryKind::Insert, &table, WriteKind::Insert, positions);
    w.on_conflict = on_conflict;
    w.returning = ret;
    finish_write(&b, w, cat)
}

/// OVERRIDING USER VALUE: the values given for `table`'s identity columns
/// (GENERATED BY DEFAULT or ALWAYS, not SERIAL) are dropped, so each row
/// takes its column's next value, as if the column had been left out.
fn without_identity(
    b: &mut Binder<'_>,
    table: &TableDef,
    rel: Rel,
    positions: Vec<usize>,
) -> Result<(Rel, Vec<usize>), CompileError> {
    let identity = |p: &usize| {
        table.columns.get(*p).is_some_and(|c| {
            matches!(
                c.default_fn,
                Some(DefaultFn::Identity | DefaultFn::IdentityAlways)
            )
        })
    };
    if !positions.iter().any(identity) {
        return Ok((rel, positions));
    }
    let out = rel.output();
    let mut exprs = Vec::with_capacity(out.len());
    let mut kept = Vec::with_capacity(positions.len());
    for (c, p) in out.iter().zip(&positions) {
        if identity(p) {
            continue;
        }
        let e = b.col_expr(*c)?;
        let (ty, nullable) = (e.ty, e.nullable);
        exprs.push((b.new_col("$v", ty, nullable), e));
        kept.push(*p);
    }
    Ok((
        Rel::Project {
            input: Box::new(rel),
            exprs,
        },
        kept,
    ))
}

/// Refuses values for a GENERATED ALWAYS identity column of `table` among
/// the columns at `positions`, unless the INSERT says OVERRIDING SYSTEM VALUE.
fn generated_always(
    table: &TableDef,
    positions: &[usize],
    overriding: Option<&ast::InsertOverriding>,
) -> Result<(), CompileError> {
    // (OVERRIDING USER VALUE dropped their values before)
    if overriding.is_some() {
        return Ok(());
    }
    for p in positions {
        if let Some(c) = table.columns.get(*p)
            && c.default_fn == Some(DefaultFn::IdentityAlways)
        {
            return Err(CompileError::new(
                codes::GENERATED_ALWAYS,
                format!("cannot insert a non-DEFAULT value into column \"{}\"", c.name),
            )
            .hint(format!(
                "column \"{}\" is an identity column defined as GENERATED ALWAYS: leave it out, or write INSERT ... OVERRIDING SYSTEM VALUE",
                c.name
            )));
        }
    }
    Ok(())
}

/// Whether `e` is the keyword DEFAULT in a VALUES row.
fn is_default(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `v` without the columns that are DEFAULT in every row (those columns
/// then take their defaults, as when the INSERT leaves them out), their
/// positions taken out of `positions`; `None` when no row says DEFAULT.
fn without_defaults(
    v: &ast::Values,
    positions: &mut Vec<usize>,
    table: &TableDef,
) -> Result<Option<ast::Values>, CompileError> {
    if !v.rows.iter().any(|r| r.content.iter().any(is_default)) {
        return Ok(None);
    }
    let width = v.rows.first().map_or(0, |r| r.content.len());
    // a row wider than the columns is refused before a DEFAULT is taken out
    check_width(width, positions.len())?;
    let mut keep = Vec::with_capacity(width);
    for j in 0..width {
        let defaults = v
            .rows
            .iter()
            .filter(|r| r.get(j).is_some_and(is_default))
            .count();
        if defaults != 0 && defaults != v.rows.len() {
            let name = positions
                .get(j)
                .and_then(|p| table.columns.get(*p))
                .map_or("?", |c| c.name.as_str());
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("DEFAULT in some rows of column \"{name}\" but not in others"),
            )
            .hint("insert the rows that take the default in an INSERT of their own"));
        }
        keep.push(defaults == 0);
    }
    let mut out = v.clone();
    for r in &mut out.rows {
        let mut k = keep.iter();
        r.content.retain(|_| k.next().copied().unwrap_or(true));
    }
    let mut k = keep.iter();
    positions.retain(|_| k.next().copied().unwrap_or(true));
    Ok(Some(out))
}

/// `rel`'s rows (the columns at `positions`) with the columns they leave
/// out whose DEFAULT is the statement's time added, at that time: the
/// coordinator fixes it, as it fixes `now()`.
fn with_time_defaults(
    b: &mut Binder<'_>,
    table: &TableDef,
    rel: Rel,
    mut positions: Vec<usize>,
) -> Result<(Rel, Vec<usize>), CompileError> {
    let timed: Vec<(usize, scratchbird_types::schema::DefaultFn, SqlType)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !positions.contains(i))
        .filter_map(|(i, c)| c.default_fn.filter(|f| f.is_time()).map(|f| (i, f, c.ty)))
        .collect();
    if timed.is_empty() {
        return Ok((rel, positions));
    }
    let mut exprs = Vec::new();
    for c in rel.output() {
        let e = b.col_expr(c)?;
        let (name, ty) = (format!("$v{}", exprs.len()), e.ty);
        exprs.push((b.new_col(&name, ty, e.nullable), e));
    }
    for (i, f, ty) in timed {
        let e = b.time_default(f, ty)?;
        exprs.push((b.new_col("$now", ty, false), e));
        positions.push(i);
    }
    Ok((
        Rel::Project {
            input: Box::new(rel),
            exprs,
        },
        positions,
    ))
}

/// The unique key an ON CONFLICT target names, and its columns (table
/// positions); `None` without a target.
fn arbiter(
    table: &TableDef,
    target: Option<&ast::ConflictTarget>,
    cat: &Catalog,
) -> Result<Option<(Arbiter, Vec<usize>)>, CompileError> {
    let none_matches = || {
        CompileError::new(
            codes::INVALID_COLUMN_REFERENCE,
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        )
        .hint("name the columns of the primary key or of a unique index, in any order")
    };
    match target {
        None => Ok(None),
        Some(ast::ConflictTarget::Columns { columns, .. }) => {
            let mut want = Vec::with_capacity(columns.len());
            for c in columns {
                let n = norm(c);
                let p = table
                    .columns
                    .iter()
                    .position(|x| x.name == n)
                    .ok_or_else(|| {
                        CompileError::new(
                            codes::UNDEFINED_COLUMN,
                            format!("column \"{n}\" does not exist"),
                        )
                        .at((c.span.start.line > 0).then_some(Pos {
                            line: c.span.start.line,
                            column: c.span.start.column,
                        }))
                    })?;
                want.push(p);
            }
            want.sort_unstable();
            want.dedup();
            let same = |cols: &[usize]| {
                let mut v = cols.to_vec();
                v.sort_unstable();
                v == want
            };
            if !table.primary_key.is_empty() && same(&table.primary_key) {
                return Ok(Some((Arbiter::PrimaryKey, table.primary_key.clone())));
            }
            cat.indexes_of(table.id)
                .find(|i| i.unique && same(&i.columns))
                .map(|i| Some((Arbiter::Index(i.id), i.columns.clone())))
                .ok_or_else(none_matches)
        }
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let n = object_name(name)?;
            if !table.primary_key.is_empty() && n == format!("{}_pkey", table.name) {
                return Ok(Some((Arbiter::PrimaryKey, table.primary_key.clone())));
            }
            cat.indexes_of(table.id)
                .find(|i| i.unique && !i.plain && i.name == n)
                .map(|i| Some((Arbiter::Index(i.id), i.columns.clone())))
                .ok_or_else(|| {
                    CompileError::new(
                        codes::UNDEFINED_OBJECT,
                        format!("constraint \"{n}\" for table \"{}\" does not exist", table.name),
                    )
                    .at(pos_of(name))
                    .hint(format!(
                        "the primary key's constraint is {}_pkey; a unique constraint is named by its index",
                        table.name
                    ))
                })
        }
    }
}

/// INSERT ... ON CONFLICT (`on`) DO UPDATE: each proposed row (`proposed`:
/// the rows and the table positions of their columns) joined with the
/// stored row it collides with; rows that collide with none are inserted,
/// the others updated by the SET list where the DO UPDATE's WHERE holds.
/// The host inserts or replaces each (an upsert write target), and refuses
/// a record replaced twice.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of the INSERT being bound"
)]
fn upsert(
    mut b: Binder<'_>,
    table: &Arc<TableDef>,
    qualifier: &str,
    proposed: (Rel, &[usize]),
    on: &[usize],
    du: &ast::DoUpdate,
    ins: &ast::Insert,
    cat: &Catalog,
) -> Result<Compiled, CompileError> {
    let (rel, positions) = proposed;
    let out = rel.output();
    // every column of the table, those not given at their defaults
    let mut exprs = Vec::with_capacity(table.columns.len());
    let mut excluded = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let e = match positions.iter().position(|p| *p == i) {
            Some(j) => b.col_expr(
                *out.get(j)
                    .ok_or_else(|| CompileError::new("XX000", "internal: a proposed column"))?,
            )?,
            // the store draws it when the row is inserted: EXCLUDED shows
            // NULL, and no stored row's key equals it
            None if c.default_fn.is_some_and(DefaultFn::is_identity) => {
                BExpr::lit(Value::Null, c.ty)
            }
            None => match c.default_fn {
                Some(f) => b.time_default(f, c.ty)?,
                None => BExpr::lit(c.default.clone().unwrap_or(Value::Null), c.ty),
            },
        };
        let id = b.new_col(&c.name, c.ty, e.nullable);
        excluded.push(id);
        exprs.push((id, e));
    }
    // the proposed rows, in the INSERT's column order, place the upsert
    let route_by = (rel.clone(), positions.to_vec());
    let full = Rel::Project {
        input: Box::new(rel),
        exprs,
    };
    let mut ch = b.colliding(table, qualifier, (full, excluded.clone()), on)?;
    let values = assignments(
        &mut b,
        &du.assignments,
        &mut ch,
        "ON CONFLICT DO UPDATE SET",
    )?;
    let key = b.col_expr(ch.key)?;
    let fresh = BExpr {
        kind: BK::IsNull(Box::new(key.clone())),
        ty: SqlType::Boolean,
        nullable: false,
    };
    if let Some(w) = &du.selection {
        let p = b.changed_expr(w, &mut ch, "WHERE")?;
        let p = b.boolean(p, "WHERE").map_err(|e| e.at(pos_of(w)))?;
        // a proposed row that collides is kept only where the WHERE holds
        ch.rel = Rel::Filter {
            input: Box::new(ch.rel),
            pred: BExpr {
                kind: BK::Or(Box::new(fresh.clone()), Box::new(p)),
                ty: SqlType::Boolean,
                nullable: true,
            },
        };
    }
    // a row that collides carries the columns SET assigns (the host keeps
    // the others as stored); one that does not, every column to insert
    let mut exprs = vec![(b.new_col("$key", SqlType::Blob, true), key)];
    let mut sets = Vec::new();
    let mut carried = Vec::with_capacity(table.columns.len());
    for (i, v) in values.into_iter().enumerate() {
        let (Some(x), Some(c)) = (excluded.get(i), table.columns.get(i)) else {
            return Err(CompileError::new("XX000", "internal: a column"));
        };
        let drawn = !positions.contains(&i) && c.default_fn.is_some_and(DefaultFn::is_identity);
        if drawn && v.is_none() {
            // left out of the batch: the store draws an inserted row's
            // value, and a replacement keeps the stored one
            continue;
        }
        if drawn {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!(
                    "ON CONFLICT DO UPDATE SET {} when the INSERT leaves that SERIAL or identity column out",
                    c.name
                ),
            )
            .hint("give the column in the INSERT, or leave it out of the SET list"));
        }
        let inserted = b.col_expr(*x)?;
        let at = carried.len();
        carried.push(i);
        let e = match v {
            Some(updated) => {
                sets.push(u32::try_from(at).map_err(|_| CompileError::new("XX000", "a column"))?);
                let nullable = updated.nullable || inserted.nullable;
                BExpr {
                    kind: BK::Case(vec![(fresh.clone(), inserted)], Box::new(updated)),
                    ty: c.ty,
                    nullable,
                }
            }
            None => inserted,
        };
        exprs.push((b.new_col("$v", c.ty, e.nullable), e));
    }
    let rel = buffer(Rel::Project {
        input: Box::new(ch.rel),
        exprs,
    });
    let ret = returning(&mut b, ins.returning.as_deref(), table, qualifier)?;
    let mut w = WriteStage::new(rel, QueryKind::Insert, table, WriteKind::Upsert, carried);
    w.route_by = Some(route_by);
    w.sets = sets;
    w.returning = ret;
    finish_write(&b, w, cat)
}

/// The positions in `table` of the columns `named` (with where each is
/// named), in order; all of them when none is named.
pub(crate) fn column_positions(
    table: &TableDef,
    named: &[(String, Option<Pos>)],
) -> Result<Vec<usize>, CompileError> {
    if named.is_empty() {
        return Ok((0..table.columns.len()).collect());
    }
    let mut v = Vec::with_capacity(named.len());
    for (n, at) in named {
        let p = table
            .columns
            .iter()
            .position(|x| x.name == *n)
            .ok_or_else(|| {
                CompileError::new(
                    codes::UNDEFINED_COLUMN,
                    format!("column \"{n}\" of table \"{}\" does not exist", table.name),
                )
                .at(*at)
            })?;
        if v.contains(&p) {
            return Err(
                CompileError::new(codes::SYNTAX, format!("column \"{n}\" is given twice")).at(*at),
            );
        }
        v.push(p);
    }
    Ok(v)
}

fn check_width(have: usize, want: usize) -> Result<(), CompileError> {
    if have == want {
        Ok(())
    } else {
        Err(CompileError::new(
            codes::SYNTAX,
            if have > want {
                format!("INSERT has more expressions than target columns ({have} for {want})")
            } else {
                format!("INSERT has more target columns than expressions ({want} for {have})")
            },
        )
        .hint("list the columns: INSERT INTO t (a, b) VALUES (...)"))
    }
}

/// The new value of each column of `ch`'s table a SET list assigns (`None`:
/// unchanged), bound over `ch`'s rows.
fn assignments(
    b: &mut Binder<'_>,
    list: &[ast::Assignment],
    ch: &mut Changed,
    clause: &str,
) -> Result<Vec<Option<BExpr>>, CompileError> {
    let table = ch.table.clone();
    let mut values: Vec<Option<BExpr>> = vec![None; table.columns.len()];
    for a in list {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                "a tuple assignment (SET (a, b) = ...)",
            )
            .hint("assign each column: SET a = ..., b = ..."));
        };
        // SET t.a = ... names the table written (PostgreSQL takes only a)
        let name =
            n.0.last()
                .and_then(|p| p.as_ident())
                .map(norm)
                .ok_or_else(|| CompileError::new(codes::SYNTAX, "a column to SET"))?;
        let p = table
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                CompileError::new(
                    codes::UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        table.name
                    ),
                )
                .at(pos_of(n))
            })?;
        let ty = table
            .columns
            .get(p)
            .map(|c| c.ty)
            .ok_or_else(|| CompileError::new("XX000", "column"))?;
        if table.columns.get(p).and_then(|c| c.default_fn) == Some(DefaultFn::IdentityAlways) {
            return Err(CompileError::new(
                codes::GENERATED_ALWAYS,
                format!("column \"{name}\" can only be updated to DEFAULT"),
            )
            .hint(format!(
                "column \"{name}\" is an identity column defined as GENERATED ALWAYS: leave it out of the SET list"
            ))
            .at(pos_of(n)));
        }
        let e = b.changed_expr(&a.value, ch, clause)?;
        let e = b.assign(e, ty).map_err(|x| x.at(pos_of(&a.value)))?;
        let slot = values
            .get_mut(p)
            .ok_or_else(|| CompileError::new("XX000", "column"))?;
        if slot.is_some() {
            return Err(CompileError::new(
                codes::SYNTAX,
                format!("multiple assignments to same column \"{name}\""),
            )
            .at(pos_of(n)));
        }
        *slot = Some(e);
    }
    Ok(values)
}

/// The rows of `ch`, one per target record: with other FROM items joined,
/// a record that matches several of their rows is changed once, with the
/// first match (PostgreSQL: an unpredictable one).
fn once_per_record(b: &mut Binder<'_>, ch: &mut Changed) -> Result<(), CompileError> {
    if ch.joined {
        let rel = std::mem::replace(
            &mut ch.rel,
            Rel::Values {
                cols: vec![],
                rows: vec![],
            },
        );
        let order: Vec<BSortKey> = Vec::new();
        ch.rel = b.first_per(rel, vec![ch.key], order, "?record match?")?;
    }
    Ok(())
}

pub(crate) fn update(
    u: &ast::Update,
    cat: &Catalog,
    now: Option<i64>,
) -> Result<Compiled, CompileError> {
    if !u.table.joins.is_empty() {
        return Err(CompileError::new(codes::NOT_SUPPORTED, "UPDATE of a join")
            .hint("name the other tables in FROM: UPDATE t SET ... FROM u WHERE t.id = u.id"));
    }
    let from: &[ast::TableWithJoins] = match &u.from {
        Some(ast::UpdateTableFromKind::AfterSet(v)) => v,
        _ => &[],
    };
    let mut b = Binder::at(cat, now);
    let mut ch = b.changed(&u.table.relation, from, u.selection.as_ref())?;
    let values = assignments(&mut b, &u.assignments, &mut ch, "UPDATE SET")?;
    once_per_record(&mut b, &mut ch)?;
    // the columns SET assigns: the host keeps the others as stored (they
    // are not even read, so a column the principal may not read stays out
    // of the way of an update that does not assign it)
    let mut exprs = vec![(b.new_col("$key", SqlType::Blob, false), b.col_expr(ch.key)?)];
    let mut positions = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if let Some(e) = v {
            exprs.push((b.new_col("$v", e.ty, e.nullable), e));
            positions.push(i);
        }
    }
    let table = ch.table.clone();
    let rel = buffer(Rel::Project {
        input: Box::new(ch.rel),
        exprs,
    });
    let ret = returning(&mut b, u.returning.as_deref(), &table, &ch.qualifier)?;
    let mut w = WriteStage::new(rel, QueryKind::Update, &table, WriteKind::Update, positions);
    w.returning = ret;
    finish_write(&b, w, cat)
}

pub(crate) fn delete(
    d: &ast::Delete,
    cat: &Catalog,
    now: Option<i64>,
) -> Result<Compiled, CompileError> {
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    let [twj] = from.as_slice() else {
        return Err(
            CompileError::new(codes::NOT_SUPPORTED, "DELETE from more than one table")
                .hint("name the other tables in USING: DELETE FROM t USING u WHERE t.id = u.id"),
        );
    };
    if !twj.joins.is_empty() || !d.tables.is_empty() {
        return Err(CompileError::new(codes::NOT_SUPPORTED, "DELETE of a join")
            .hint("name the other tables in USING: DELETE FROM t USING u WHERE t.id = u.id"));
    }
    let using: &[ast::TableWithJoins] = d.using.as_deref().unwrap_or(&[]);
    let mut b = Binder::at(cat, now);
    let mut ch = b.changed(&twj.relation, using, d.selection.as_ref())?;
    once_per_record(&mut b, &mut ch)?;
    let table = ch.table.clone();
    let rel = buffer(Rel::Project {
        input: Box::new(ch.rel),
        exprs: vec![(b.new_col("$key", SqlType::Blob, false), b.col_expr(ch.key)?)],
    });
    let ret = returning(&mut b, d.returning.as_deref(), &table, &ch.qualifier)?;
    let mut w = WriteStage::new(rel, QueryKind::Delete, &table, WriteKind::Delete, vec![]);
    w.returning = ret;
    finish_write(&b, w, cat)
}

/// All rows are read before the first is written (a statement never sees its own
/// changes while it scans).
fn buffer(rel: Rel) -> Rel {
    let keys: Vec<BSortKey> = Vec::new();
    Rel::Sort {
        input: Box::new(rel),
        keys,
        limit: None,
    }
}
