//! Binding a SELECT: FROM items and joins, WHERE, GROUP BY, HAVING, the select
//! list and aggregation.

use super::*;

/// Aggregates of one kind: their DISTINCT argument (none: plain ones) and
/// each aggregate with its column and DISTINCT flag.
type AggKindGroup = (Option<BExpr>, Vec<(ColId, BAgg, bool)>);

/// The kind of a join as written.
#[derive(PartialEq, Clone, Copy)]
enum Side {
    Inner,
    Left,
    Right,
    Full,
    Cross,
}

impl<'c> Binder<'c> {
    // ------------------------------------------------------------------- SELECT

    pub(super) fn select(
        &mut self,
        s: &Select,
        order: &[ast::OrderByExpr],
    ) -> Result<SelectParts, CompileError> {
        // an enclosing SELECT's window functions are not this one's
        let outer = self.windows.take();
        let r = self.select_inner(s, order);
        self.windows = outer;
        r
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn select_inner(
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
            self.open_clause();
            let p = self.expr(w, &scope, None);
            let applies = self.close_clause();
            rel = Self::joined(rel, applies);
            let p = self.boolean(p?, "WHERE").map_err(|e| e.at(pos_of(w)))?;
            rel = Rel::Filter {
                input: Box::new(rel),
                pred: crate::fold::fold(p),
            };
        }
        let group_sets: Vec<Vec<Expr>> = match &s.group_by {
            GroupByExpr::Expressions(v, m) => {
                if !m.is_empty() {
                    return Err(unsupported(
                        "GROUP BY ... WITH ROLLUP / CUBE (use ROLLUP (...))",
                    ));
                }
                grouping::sets(v)?
            }
            GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        // every expression any grouping set names, in order
        let mut group: Vec<Expr> = Vec::new();
        for e in group_sets.iter().flatten() {
            if !group.contains(e) {
                group.push(e.clone());
            }
        }
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
                    for c in scope.cols.iter().filter(|c| !c.hidden) {
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
        // DISTINCT ON's expressions are bound as ORDER BY items are (an
        // output position or name, or an expression), ahead of the real ones
        let on: Vec<ast::OrderByExpr> = match &s.distinct {
            Some(Distinct::On(v)) => v
                .iter()
                .map(|e| ast::OrderByExpr {
                    expr: e.clone(),
                    options: ast::OrderByOptions {
                        sort: None,
                        nulls_first: None,
                    },
                    with_fill: None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let distinct_on = matches!(s.distinct, Some(Distinct::On(_)));
        let order_all: Vec<ast::OrderByExpr> = on.iter().chain(order).cloned().collect();
        let order = &order_all[..];
        let aggregating = !group.is_empty()
            || group_sets.len() > 1
            || matches!(&s.group_by, GroupByExpr::Expressions(v, _) if !v.is_empty())
            || items.iter().any(|(e, _)| contains_agg(e))
            || s.having.as_ref().is_some_and(contains_agg)
            || order.iter().any(|o| contains_agg(&o.expr));
        let distinct = matches!(s.distinct, Some(Distinct::Distinct));
        let mut outputs: Vec<(ColId, BExpr)> = Vec::new();
        let names: Vec<String> = items.iter().map(|(_, n)| n.clone()).collect();
        let mut sort_keys = Vec::new();
        if aggregating {
            let mut keys: Vec<(ColId, BExpr)> = Vec::new();
            // each GROUP BY expression's key
            let mut key_of: Vec<(Expr, usize)> = Vec::new();
            for g in &group {
                // GROUP BY position or output alias
                let ge = self.group_item(g, &items, &scope)?;
                let b = crate::fold::fold(self.expr(&ge, &scope, None)?);
                let k = match keys.iter().position(|(_, k)| *k == b) {
                    Some(k) => k,
                    None => {
                        let id = self.new_col(&output_name(&ge), b.ty, b.nullable);
                        keys.push((id, b));
                        keys.len() - 1
                    }
                };
                key_of.push((g.clone(), k));
            }
            let sets = grouping::key_sets(&group_sets, &key_of, keys.len())?;
            let mut ctx = AggCtx::default();
            let gid = (sets.len() > 1).then(|| self.new_col("?grouping?", SqlType::Integer, false));
            ctx.grouping = Some((keys.iter().map(|(_, e)| e.clone()).collect(), gid));
            let mut bound_items = Vec::with_capacity(items.len());
            self.windows = Some(Vec::new());
            for (e, _) in &items {
                let b = self.expr(e, &scope, Some(&mut ctx))?;
                bound_items.push((b, e));
            }
            let wins_so_far = self.windows.take();
            let having = match &s.having {
                Some(h) => {
                    let b = self.expr(h, &scope, Some(&mut ctx))?;
                    Some((self.boolean(b, "HAVING").map_err(|e| e.at(pos_of(h)))?, h))
                }
                None => None,
            };
            self.windows = wins_so_far;
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
            let wins = self.windows.take().unwrap_or_default();
            let agg_rel = match gid {
                Some(gid) => self.grouping_sets(rel, &keys, &sets, ctx, gid)?,
                None => self.aggregate_rel(rel, keys.clone(), ctx)?,
            };
            rel = agg_rel;
            let key_map: Vec<(BExpr, ColId)> = keys.iter().map(|(c, e)| (e.clone(), *c)).collect();
            let mut agg_out: std::collections::HashSet<ColId> = rel.output().into_iter().collect();
            // the window functions' columns are there when the select list
            // is computed
            agg_out.extend(wins.iter().map(|w| w.col));
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
            if !wins.is_empty() {
                let mut done = Vec::with_capacity(wins.len());
                for mut w in wins {
                    let at = w.at.clone();
                    let fin = |this: &Self, e: BExpr| finish(this, e, &at);
                    w.partition = w
                        .partition
                        .into_iter()
                        .map(|e| fin(self, e))
                        .collect::<Result<_, _>>()?;
                    w.order = w
                        .order
                        .into_iter()
                        .map(|(e, d, n)| Ok((fin(self, e)?, d, n)))
                        .collect::<Result<_, CompileError>>()?;
                    w.win.arg = w.win.arg.map(|e| fin(self, e)).transpose()?;
                    w.win.default = w.win.default.map(|e| fin(self, e)).transpose()?;
                    done.push(w);
                }
                rel = self.window_rel(rel, done)?;
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
                        if let Some((c, _)) = outputs.iter().chain(&hidden).find(|(_, e)| *e == b) {
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
            // correlated subqueries of the select list and ORDER BY join the
            // FROM below the projection
            self.open_clause();
            self.windows = Some(Vec::new());
            let r = self.plain_outputs(
                &items,
                &names,
                order,
                &scope,
                distinct,
                &mut outputs,
                &mut sort_keys,
            );
            let wins = self.windows.take().unwrap_or_default();
            let applies = self.close_clause();
            r?;
            rel = Self::joined(rel, applies);
            if !wins.is_empty() {
                rel = self.window_rel(rel, wins)?;
            }
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
        if distinct_on {
            let order_keys = sort_keys.split_off(on.len());
            rel = self.distinct_on(rel, &sort_keys, &order_keys)?;
            sort_keys = order_keys;
        }
        Ok((rel, names, sort_keys))
    }

    /// SELECT DISTINCT ON (`on`): the first row of each group of rows equal
    /// on `on`, in the order of `order` (whose leading keys must be `on`'s,
    /// in any order, as PostgreSQL requires).
    fn distinct_on(
        &mut self,
        rel: Rel,
        on: &[BSortKey],
        order: &[BSortKey],
    ) -> Result<Rel, CompileError> {
        let on_cols: Vec<ColId> = on.iter().map(|k| k.col).collect();
        let mut seen = std::collections::HashSet::new();
        for k in order {
            if on_cols.contains(&k.col) {
                seen.insert(k.col);
            } else if seen.len()
                < on_cols
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            {
                return Err(CompileError::new(
                    codes::INVALID_COLUMN_REFERENCE,
                    "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
                )
                .hint(
                    "order by the DISTINCT ON expressions first, then by what picks the row kept",
                ));
            } else {
                break;
            }
        }
        self.first_per(rel, on_cols, order.to_vec(), "?distinct on?")
    }

    /// The select list and ORDER BY keys of a query that does not aggregate.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of the select being bound"
    )]
    fn plain_outputs(
        &mut self,
        items: &[(Expr, String)],
        names: &[String],
        order: &[ast::OrderByExpr],
        scope: &Scope,
        distinct: bool,
        outputs: &mut Vec<(ColId, BExpr)>,
        sort_keys: &mut Vec<BSortKey>,
    ) -> Result<(), CompileError> {
        for ((e, _), n) in items.iter().zip(names) {
            let b = crate::fold::fold(self.expr(e, scope, None)?);
            outputs.push((self.new_col(n, b.ty, b.nullable), b));
        }
        let mut hidden = Vec::new();
        for o in order {
            let col = match self.order_target(&o.expr, names)? {
                Some(i) => outputs
                    .get(i)
                    .map(|x| x.0)
                    .ok_or_else(|| mismatch("ORDER BY position"))?,
                None => {
                    let b = crate::fold::fold(self.expr(&o.expr, scope, None)?);
                    if let Some((c, _)) = outputs.iter().chain(&hidden).find(|(_, e)| *e == b) {
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
        Ok(())
    }

    /// The select-list position an ORDER BY item names (a number or an alias).
    pub(super) fn order_target(
        &self,
        e: &Expr,
        names: &[String],
    ) -> Result<Option<usize>, CompileError> {
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

    pub(super) fn group_item(
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

    pub(super) fn aggregate_rel(
        &mut self,
        input: Rel,
        keys: Vec<(ColId, BExpr)>,
        ctx: AggCtx,
    ) -> Result<Rel, CompileError> {
        if !ctx.ordered.is_empty() {
            return self.ordered_aggregate(input, &keys, ctx);
        }
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
            return self.aggregate_parts(input, keys, ctx);
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

    /// Aggregates of several kinds (plain ones, and DISTINCT ones over
    /// different arguments): each kind grouped on its own over the same
    /// input, the parts joined on the group keys (NULL keys matching, as
    /// grouping has them; no keys: each part is one row), then the keys and
    /// aggregates in their order.
    fn aggregate_parts(
        &mut self,
        input: Rel,
        keys: Vec<(ColId, BExpr)>,
        ctx: AggCtx,
    ) -> Result<Rel, CompileError> {
        // the kinds, in the order their first aggregate appears
        // (the DISTINCT argument, or none for plain aggregates; its aggregates)
        let mut kinds: Vec<AggKindGroup> = Vec::new();
        let order: Vec<ColId> = ctx.aggs.iter().map(|(c, _, _)| *c).collect();
        for (c, a, d) in ctx.aggs {
            let kind = if d { a.arg.clone() } else { None };
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => v.push((c, a, d)),
                None => kinds.push((kind, vec![(c, a, d)])),
            }
        }
        let mut joined: Option<(Rel, Vec<ColId>)> = None;
        for (_, aggs) in kinds {
            let mut part_keys = Vec::with_capacity(keys.len());
            let mut ids = Vec::with_capacity(keys.len());
            for (_, e) in &keys {
                let c = self.new_col("$k", e.ty, e.nullable);
                part_keys.push((c, e.clone()));
                ids.push(c);
            }
            let part_ctx = AggCtx {
                aggs,
                ..AggCtx::default()
            };
            let part = self.aggregate_rel(input.clone(), part_keys, part_ctx)?;
            joined = Some(match joined {
                None => (part, ids),
                Some((left, left_ids)) => {
                    let mut on = Vec::with_capacity(2 * ids.len());
                    for (l, r) in left_ids.iter().zip(&ids) {
                        let (le, re) = (self.col_expr(*l)?, self.col_expr(*r)?);
                        on.extend(self.null_safe_eq(le, re)?);
                    }
                    let on = BExpr::and_all(on);
                    let kind = if on.is_some() {
                        JoinType::Inner
                    } else {
                        JoinType::Cross
                    };
                    (
                        Rel::Join {
                            left: Box::new(left),
                            right: Box::new(part),
                            kind,
                            on,
                        },
                        left_ids,
                    )
                }
            });
        }
        let (rel, ids) = joined.ok_or_else(|| mismatch("aggregates without a kind"))?;
        let mut exprs = Vec::with_capacity(keys.len() + order.len());
        for ((c, _), k) in keys.iter().zip(&ids) {
            exprs.push((*c, self.col_expr(*k)?));
        }
        for c in order {
            exprs.push((c, self.col_expr(c)?));
        }
        Ok(Rel::Project {
            input: Box::new(rel),
            exprs,
        })
    }

    /// `a` and `b` equal or both NULL, as two equalities a hash join can
    /// key on: whether each is NULL, and each with NULL read as a constant.
    fn null_safe_eq(&mut self, a: BExpr, b: BExpr) -> Result<Vec<BExpr>, CompileError> {
        let (a, b) = self.unify(a, b)?;
        if !a.nullable && !b.nullable {
            return Ok(vec![self.compare(CmpOp::Eq, a, b)?]);
        }
        let stand_in = match a.ty {
            SqlType::Boolean => Value::Boolean(false),
            SqlType::SmallInt => Value::SmallInt(0),
            SqlType::Integer => Value::Integer(0),
            SqlType::Date => Value::Date(scratchbird_types::Date(0)),
            SqlType::BigInt => Value::BigInt(0),
            SqlType::Timestamp => Value::Timestamp(scratchbird_types::Timestamp(0)),
            SqlType::Double => Value::Double(0.0),
            SqlType::Decimal { scale, .. } => {
                Value::Decimal(scratchbird_types::Decimal::new(0, scale))
            }
            SqlType::Varchar { .. } | SqlType::Text => Value::Text(String::new()),
            SqlType::Blob => Value::Blob(Vec::new()),
            other => {
                return Err(unsupported(format!(
                    "grouping by a {other} key beside aggregates of several kinds"
                )));
            }
        };
        let filled = |e: BExpr| {
            let ty = e.ty;
            mk(
                BK::Case(
                    vec![(is_null(e.clone()), BExpr::lit(stand_in.clone(), ty))],
                    Box::new(e),
                ),
                ty,
                false,
            )
        };
        let (an, bn) = (is_null(a.clone()), is_null(b.clone()));
        Ok(vec![
            self.compare(CmpOp::Eq, an, bn)?,
            self.compare(CmpOp::Eq, filled(a), filled(b))?,
        ])
    }

    // --------------------------------------------------------------------- FROM

    /// `left JOIN right` as `j` says: the relation and the scope of the join.
    /// A RIGHT JOIN is the LEFT JOIN of the sides swapped (the scope keeps
    /// their order); USING (and NATURAL, USING every name the sides share)
    /// joins on equal columns, which then answer to their bare name once, first
    /// in `SELECT *`: the left side's (the right's for RIGHT JOIN, COALESCE of
    /// both for FULL JOIN), while each side's stays reachable qualified.
    fn join(
        &mut self,
        rel: Rel,
        scope: Scope,
        r: Rel,
        rs: Scope,
        j: &ast::Join,
    ) -> Result<(Rel, Scope), CompileError> {
        let (side, cons) = match &j.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (Side::Inner, Some(c)),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (Side::Left, Some(c)),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (Side::Right, Some(c)),
            JoinOperator::FullOuter(c) => (Side::Full, Some(c)),
            JoinOperator::CrossJoin(_) => (Side::Cross, None),
            _ => return Err(unsupported("this kind of join").at(pos_of(&j.relation))),
        };
        let using: Option<Vec<(String, Option<Pos>)>> = match cons {
            Some(JoinConstraint::Using(cols)) => Some(
                cols.iter()
                    .map(|c| Ok((object_name(c)?, pos_of(c))))
                    .collect::<Result<_, CompileError>>()?,
            ),
            Some(JoinConstraint::Natural) => Some(
                scope
                    .cols
                    .iter()
                    .filter(|c| !c.hidden)
                    .filter(|c| rs.cols.iter().any(|x| !x.hidden && x.name == c.name))
                    .map(|c| (c.name.clone(), None))
                    .fold(Vec::new(), |mut v, n| {
                        if !v.iter().any(|(x, _)| *x == n.0) {
                            v.push(n);
                        }
                        v
                    }),
            ),
            _ => None,
        };
        let mut both = scope.clone();
        both.cols.extend(rs.cols.iter().cloned());
        // (left column, right column) of each USING name
        let mut pairs = Vec::new();
        let on = match (cons, &using) {
            (Some(JoinConstraint::On(e)), _) => {
                let b = self.expr(e, &both, None)?;
                Some(crate::fold::fold(
                    self.boolean(b, "ON").map_err(|x| x.at(pos_of(e)))?,
                ))
            }
            (_, Some(names)) => {
                let mut parts = Vec::new();
                for (n, at) in names {
                    let l = find(&scope, None, n, *at)?;
                    let r = find(&rs, None, n, *at)?;
                    let (le, re) = (self.col_expr(l)?, self.col_expr(r)?);
                    parts.push(self.compare(CmpOp::Eq, le, re)?);
                    pairs.push((n.clone(), l, r));
                }
                BExpr::and_all(parts)
            }
            (Some(JoinConstraint::None) | None, None) => None,
            (Some(_), None) => return Err(unsupported("this join condition")),
        };
        if side != Side::Cross && on.is_none() && using.as_ref().is_none_or(|u| !u.is_empty()) {
            return Err(
                CompileError::new(codes::SYNTAX, "JOIN needs ON or USING").at(pos_of(&j.relation))
            );
        }
        // the side that may be NULL-extended has nullable columns
        let mut nullable = |cols: &[ScopeCol]| {
            for c in cols {
                if let Some(m) = self.meta.get_mut(&c.id) {
                    m.nullable = true;
                }
            }
        };
        match side {
            Side::Left => nullable(&rs.cols),
            Side::Right => nullable(&scope.cols),
            Side::Full => {
                nullable(&rs.cols);
                nullable(&scope.cols);
            }
            Side::Inner | Side::Cross => {}
        }
        let kind = match side {
            Side::Inner => JoinType::Inner,
            Side::Left | Side::Right => JoinType::Left,
            Side::Full => JoinType::Full,
            // NATURAL with no shared names is a cross join
            Side::Cross => JoinType::Cross,
        };
        // NATURAL with no shared names: an outer join keeps its rows, ON TRUE
        let on = match (on, side) {
            (None, Side::Left | Side::Right | Side::Full) => Some(bool_lit(true)),
            (on, _) => on,
        };
        let kind = if on.is_none() { JoinType::Cross } else { kind };
        let rel = if side == Side::Right {
            Rel::Join {
                left: Box::new(r),
                right: Box::new(rel),
                kind,
                on,
            }
        } else {
            Rel::Join {
                left: Box::new(rel),
                right: Box::new(r),
                kind,
                on,
            }
        };
        if pairs.is_empty() {
            return Ok((rel, both));
        }
        self.merge_using(rel, both, &pairs, side)
    }

    /// The scope of a join on USING columns `pairs` (name, left column,
    /// right column): the joined columns first, by their bare names, each
    /// side's then reachable only qualified.
    fn merge_using(
        &mut self,
        mut rel: Rel,
        mut both: Scope,
        pairs: &[(String, ColId, ColId)],
        side: Side,
    ) -> Result<(Rel, Scope), CompileError> {
        let mut merged = Vec::with_capacity(pairs.len());
        let mut coalesced = Vec::new();
        for (n, l, r) in pairs {
            let id = match side {
                Side::Right => *r,
                Side::Full => {
                    let (le, re) = (self.col_expr(*l)?, self.col_expr(*r)?);
                    let (le, re) = self.unify(le, re)?;
                    let ty = le.ty;
                    let e = mk(
                        BK::Case(vec![(not(is_null(le.clone())), le)], Box::new(re)),
                        ty,
                        true,
                    );
                    let c = self.new_col(n, ty, true);
                    coalesced.push((c, e));
                    c
                }
                _ => *l,
            };
            merged.push(ScopeCol {
                qualifier: None,
                name: n.clone(),
                id,
                hidden: false,
            });
        }
        for c in &mut both.cols {
            if pairs.iter().any(|(_, l, r)| c.id == *l || c.id == *r) {
                c.hidden = true;
            }
        }
        merged.extend(both.cols);
        if !coalesced.is_empty() {
            let mut exprs = Vec::new();
            for c in rel.output() {
                exprs.push((c, self.col_expr(c)?));
            }
            exprs.extend(coalesced);
            rel = Rel::Project {
                input: Box::new(rel),
                exprs,
            };
        }
        Ok((rel, Scope { cols: merged }))
    }

    pub(super) fn from(&mut self, from: &[TableWithJoins]) -> Result<(Rel, Scope), CompileError> {
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
                (rel, scope) = self.join(rel, scope, r, rs, j)?;
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

    pub(super) fn factor(&mut self, f: &TableFactor) -> Result<(Rel, Scope), CompileError> {
        crate::clauses::table_factor(f)?;
        match f {
            TableFactor::Table {
                name,
                alias,
                args,
                version,
                ..
            } => {
                if let Some(a) = args {
                    if version.is_some() {
                        return Err(unsupported("FOR SYSTEM_TIME AS OF on a table function")
                            .at(pos_of(name)));
                    }
                    return self.series(name, a, alias.as_ref());
                }
                if let Some(w) = self.work_named(name) {
                    if version.is_some() {
                        return Err(
                            unsupported("FOR SYSTEM_TIME AS OF on a recursive reference")
                                .at(pos_of(name)),
                        );
                    }
                    return self
                        .work_table(w, alias.as_ref())
                        .map_err(|e| e.at(pos_of(name)));
                }
                if let Some(i) = self.cte_named(name) {
                    if version.is_some() {
                        return Err(CompileError::new(
                            codes::NOT_SUPPORTED,
                            format!("FOR SYSTEM_TIME AS OF on WITH query \"{name}\", which is not a table"),
                        )
                        .at(pos_of(name))
                        .hint("put FOR SYSTEM_TIME AS OF on the tables its query reads"));
                    }
                    return self.cte(i, alias.as_ref());
                }
                if let Ok(n) = object_name(name)
                    && user_table(self.cat, &n).is_none()
                    && let Some(v) = self.cat.view_by_name(&n).cloned()
                {
                    if version.is_some() {
                        return Err(CompileError::new(
                            codes::NOT_SUPPORTED,
                            format!("FOR SYSTEM_TIME AS OF on view \"{n}\""),
                        )
                        .at(pos_of(name))
                        .hint("put FOR SYSTEM_TIME AS OF on the tables its query reads"));
                    }
                    if self.views.is_empty() {
                        self.named.push(n);
                    }
                    return self
                        .view(&v, alias.as_ref())
                        .map_err(|e| e.at(pos_of(name)));
                }
                let t = match catalog_view_in(name, self.cat) {
                    Some(v) => Ok(v.def()),
                    None => self.table(name),
                };
                let t = match t {
                    Ok(t) => t,
                    Err(e) if self.cte_later(name) => {
                        return Err(e.hint(format!(
                            "there is a WITH query named \"{name}\", but a WITH query sees only those before it: put it first, or write WITH RECURSIVE for one that reads itself"
                        )));
                    }
                    Err(e) => return Err(e),
                };
                if self.views.is_empty() {
                    self.named.push(t.name.clone());
                }
                // a catalog view answers to its name without its schema
                let own = catalog_view_in(name, self.cat)
                    .map_or_else(|| t.name.clone(), |v| v.name().to_owned());
                let q = alias.as_ref().map_or(own, |a| norm(&a.name));
                let (rel, mut named) = self.scan(&t, &q, false);
                if let Some(a) = alias {
                    if a.columns.len() > named.len() {
                        return Err(CompileError::new(
                            codes::INVALID_COLUMN_REFERENCE,
                            format!(
                                "table \"{q}\" has {} columns available but {} columns specified",
                                named.len(),
                                a.columns.len()
                            ),
                        )
                        .at(pos_of(name)));
                    }
                    for ((n, _), c) in named.iter_mut().zip(&a.columns) {
                        *n = norm(&c.name);
                    }
                }
                let scope = Scope {
                    cols: named
                        .into_iter()
                        .map(|(n, id)| ScopeCol {
                            qualifier: Some(q.clone()),
                            name: n,
                            id,
                            hidden: false,
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
                Ok(derived(b, q, alias.as_ref()))
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(std::slice::from_ref(table_with_joins)),
            _ => Err(unsupported("this FROM item")),
        }
    }

    /// `generate_series(start, stop [, step])` in FROM, of integers or
    /// DECIMALs given as constants: its rows, computed here, as a VALUES
    /// list of one column (named after the alias, as PostgreSQL names it).
    fn series(
        &mut self,
        name: &ast::ObjectName,
        args: &ast::TableFunctionArgs,
        alias: Option<&ast::TableAlias>,
    ) -> Result<(Rel, Scope), CompileError> {
        let f = object_name(name)?;
        if f != "generate_series" {
            return Err(CompileError::new(
                codes::UNDEFINED_FUNCTION,
                format!("table function {f} does not exist"),
            )
            .at(pos_of(name))
            .hint("the table function there is: generate_series(start, stop [, step])"));
        }
        let mut vals = Vec::with_capacity(args.args.len());
        for a in &args.args {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                return Err(
                    mismatch("generate_series takes its arguments by position").at(pos_of(name))
                );
            };
            let b = self.expr(e, &Scope::default(), None).map_err(|err| {
                if err.code == codes::UNDEFINED_COLUMN {
                    err.hint("generate_series's bounds are constants: the columns of other FROM items are not in scope (LATERAL is not supported yet)")
                } else {
                    err
                }
            })?;
            vals.push((crate::fold::fold(b), e));
        }
        if !(2..=3).contains(&vals.len()) {
            return Err(mismatch(format!(
                "generate_series takes 2 or 3 arguments, {} given",
                vals.len()
            ))
            .at(pos_of(name)));
        }
        let mut ty: Option<SqlType> = None;
        for (b, e) in &vals {
            if is_null_lit(b) {
                continue;
            }
            let t = match b.ty {
                SqlType::SmallInt | SqlType::Integer => SqlType::Integer,
                t @ (SqlType::BigInt | SqlType::Decimal { .. }) => t,
                other => {
                    return Err(mismatch(format!(
                        "generate_series takes integers or DECIMALs, not {other}"
                    ))
                    .at(pos_of(*e)));
                }
            };
            ty = Some(match ty {
                None => t,
                Some(prev) => common_numeric(&prev, &t).unwrap_or(t),
            });
        }
        let ty = ty.unwrap_or(SqlType::Integer);
        let scale = crate::lower::scale_of(&ty);
        let mut ends = Vec::with_capacity(3);
        for (b, e) in vals {
            let c = crate::fold::fold(coerce(b, ty));
            let BK::Lit(v) = c.kind else {
                return Err(
                    unsupported("generate_series with an argument that is not a constant")
                        .at(pos_of(e))
                        .hint(
                            "compute the bounds first, or join a series wide enough and filter it",
                        ),
                );
            };
            ends.push(match v {
                Value::Null => None,
                Value::Integer(x) => Some(i128::from(x)),
                Value::BigInt(x) => Some(i128::from(x)),
                Value::Decimal(d) if d.scale() == scale => Some(d.mantissa()),
                other => {
                    return Err(CompileError::new(
                        "XX000",
                        format!("internal compiler error: a series bound {other:?} of {ty}"),
                    ));
                }
            });
        }
        let unit = 10i128.pow(u32::from(scale));
        let (start, stop) = (
            ends.first().copied().flatten(),
            ends.get(1).copied().flatten(),
        );
        let step = match ends.get(2) {
            None => Some(unit),
            Some(s) => *s,
        };
        let mut rows = Vec::new();
        if let (Some(start), Some(stop), Some(step)) = (start, stop, step) {
            if step == 0 {
                return Err(CompileError::new(
                    "22023",
                    "generate_series: step size cannot equal zero",
                ));
            }
            let n = if (step > 0 && start > stop) || (step < 0 && start < stop) {
                0
            } else {
                (stop - start) / step + 1
            };
            if n > crate::limits::SERIES_ROWS_MAX as i128 {
                return Err(CompileError::new(
                    codes::LIMIT,
                    format!(
                        "generate_series of {n} rows: at most {} rows",
                        crate::limits::SERIES_ROWS_MAX
                    ),
                )
                .at(pos_of(name))
                .hint("a series is computed by the compiler: join smaller series for more rows (one of 1,000 with one of 1,000 gives 1,000,000)"));
            }
            let mut x = start;
            for _ in 0..n {
                rows.push(vec![match ty {
                    SqlType::Integer => Value::Integer(i32::try_from(x).unwrap_or_default()),
                    SqlType::BigInt => Value::BigInt(i64::try_from(x).unwrap_or_default()),
                    _ => Value::Decimal(scratchbird_types::Decimal::new(x, scale)),
                }]);
                x += step;
            }
        }
        let q = alias.map_or_else(|| "generate_series".to_owned(), |a| norm(&a.name));
        let col_name = alias
            .and_then(|a| a.columns.first())
            .map_or_else(|| q.clone(), |c| norm(&c.name));
        if alias.is_some_and(|a| a.columns.len() > 1) {
            return Err(CompileError::new(
                codes::INVALID_COLUMN_REFERENCE,
                format!("table \"{q}\" has 1 column available but more were specified"),
            )
            .at(pos_of(name)));
        }
        let c = self.new_col(&col_name, ty, false);
        let scope = Scope {
            cols: vec![ScopeCol {
                qualifier: Some(q),
                name: col_name,
                id: c,
                hidden: false,
            }],
        };
        Ok((
            Rel::Values {
                cols: vec![c],
                rows,
            },
            scope,
        ))
    }

    // -------------------------------------------------------------- expressions
}

/// A derived table's relation and scope: its query's columns under
/// `qualifier`, renamed by the alias's column names where it gives them.
pub(super) fn derived(
    b: BoundQuery,
    qualifier: Option<String>,
    alias: Option<&ast::TableAlias>,
) -> (Rel, Scope) {
    let renames: Vec<String> = alias
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
                qualifier: qualifier.clone(),
                name: renames.get(i).cloned().unwrap_or(n),
                id,
                hidden: false,
            })
            .collect(),
    };
    (b.rel, scope)
}
