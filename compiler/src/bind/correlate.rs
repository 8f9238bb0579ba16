//! Correlated subqueries, decorrelated. A subquery that reads columns of the
//! query around it (its outer query) is bound like any other, the outer
//! columns resolving to the outer query's column ids; the conjuncts of its
//! WHERE (and of its inner joins' ON) that read them are then pulled up out of
//! it, and it becomes a join of the outer query's FROM with the subquery's
//! rows on those conjuncts:
//!
//! * `EXISTS (q)` a mark join without a test; `x IN (q)` a mark join whose
//!   test is `x = q's column`, so that the mark is TRUE, FALSE or NULL exactly
//!   as SQL's IN over the rows the correlation selects; NOT of either is NOT
//!   of the mark.
//! * A scalar subquery that aggregates without GROUP BY, correlated by
//!   equalities: a LEFT JOIN with the aggregate grouped by the subquery's
//!   sides of those equalities; an outer row without a group gets what the
//!   aggregate gives over no rows (NULL, or 0 for a count).
//!
//! The join goes below the clause that holds the subquery (WHERE, or the
//! select list and ORDER BY of a query that does not aggregate), over the
//! FROM of the query whose columns it reads; everywhere else a correlated
//! subquery is refused by name, as is a correlation this cannot pull up (one
//! inside a grouping, a LIMIT, a set operation, the inner side of an outer
//! join, or a reference two queries out).

use super::*;
use std::collections::HashSet;

/// A decorrelated subquery, to be joined to the FROM of the query whose
/// clause holds it.
pub(super) enum Apply {
    /// EXISTS or IN.
    Mark {
        right: Rel,
        on: Option<BExpr>,
        test: Option<BExpr>,
        mark: ColId,
    },
    /// A scalar aggregate, grouped by its correlation.
    Left { right: Rel, on: BExpr },
}

/// The open clauses that can take a decorrelated subquery: one frame per
/// clause being bound, with the depth (enclosing queries) of its query.
#[derive(Default)]
pub(super) struct Frames {
    open: Vec<(usize, Vec<Apply>)>,
}

fn not_here(what: &str) -> CompileError {
    unsupported(format!("a correlated subquery {what}"))
        .hint("rewrite it as a join, or move it into the WHERE clause of the query it refers to")
}

fn cant_pull() -> CompileError {
    unsupported(
        "this correlated subquery (its reference to the outer query is inside a grouping, a LIMIT, a set operation, the inner side of an outer join, or its select list)",
    )
    .hint("refer to the outer query only in the subquery's WHERE clause, in conditions joined by AND")
}

fn reads_any(e: &BExpr, set: &HashSet<ColId>) -> bool {
    let mut v = Vec::new();
    e.columns(&mut v);
    v.iter().any(|c| set.contains(c))
}

/// Every column `rel` reads in its expressions.
fn rel_reads(rel: &Rel, out: &mut Vec<ColId>) {
    match rel {
        Rel::Scan { .. } | Rel::Values { .. } | Rel::Exchange { .. } | Rel::WorkTable { .. } => {}
        Rel::Recursive { base, step, .. } => {
            rel_reads(base, out);
            rel_reads(step, out);
        }
        Rel::Filter { input, pred } => {
            pred.columns(out);
            rel_reads(input, out);
        }
        Rel::Project { input, exprs } => {
            for (_, e) in exprs {
                e.columns(out);
            }
            rel_reads(input, out);
        }
        Rel::Aggregate { input, keys, aggs } => {
            for (_, e) in keys {
                e.columns(out);
            }
            for (_, a) in aggs {
                if let Some(e) = &a.arg {
                    e.columns(out);
                }
            }
            rel_reads(input, out);
        }
        Rel::Sort { input, keys, .. } => {
            out.extend(keys.iter().map(|k| k.col));
            rel_reads(input, out);
        }
        Rel::Limit { input, .. } | Rel::Distinct { input } => rel_reads(input, out),
        Rel::Repeat { input, count } => {
            count.columns(out);
            rel_reads(input, out);
        }
        Rel::Join {
            left, right, on, ..
        } => {
            if let Some(e) = on {
                e.columns(out);
            }
            rel_reads(left, out);
            rel_reads(right, out);
        }
        Rel::Mark {
            left,
            right,
            on,
            test,
            ..
        } => {
            for e in on.iter().chain(test) {
                e.columns(out);
            }
            rel_reads(left, out);
            rel_reads(right, out);
        }
        Rel::UnionAll { inputs, .. } => {
            for i in inputs {
                rel_reads(i, out);
            }
        }
        Rel::Window {
            input,
            partition,
            order,
            funcs,
        } => {
            out.extend(partition.iter().copied());
            out.extend(order.iter().map(|k| k.col));
            for (_, w) in funcs {
                for e in w.arg.iter().chain(&w.default) {
                    e.columns(out);
                }
            }
            rel_reads(input, out);
        }
    }
}

fn rel_reads_any(rel: &Rel, set: &HashSet<ColId>) -> bool {
    let mut v = Vec::new();
    rel_reads(rel, &mut v);
    v.iter().any(|c| set.contains(c))
}

/// `e` with every subtree `f` answers for replaced by the answer.
pub(super) fn substitute(e: BExpr, f: &dyn Fn(&BExpr) -> Option<BExpr>) -> BExpr {
    if let Some(x) = f(&e) {
        return x;
    }
    let r = |x: Box<BExpr>| Box::new(substitute(*x, f));
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
                .map(|(c, v)| (substitute(c, f), substitute(v, f)))
                .collect(),
            r(els),
        ),
        BK::Func(g, args) => BK::Func(g, args.into_iter().map(|a| substitute(a, f)).collect()),
        BK::InSet(x, i) => BK::InSet(r(x), i),
        k @ (BK::Col(_) | BK::Lit(_) | BK::Init(_)) => k,
    };
    BExpr { kind, ..e }
}

impl Binder<'_> {
    /// Opens a clause of the query at the current depth that can take
    /// decorrelated subqueries.
    pub(super) fn open_clause(&mut self) {
        let depth = self.outer.len();
        self.frames.open.push((depth, Vec::new()));
    }

    /// Takes the open clauses away (while a WITH query is bound where it is
    /// read: its subqueries join to its own clauses, never to the reader's).
    pub(super) fn take_clauses(&mut self) -> Frames {
        std::mem::take(&mut self.frames)
    }

    /// Puts back what [`Binder::take_clauses`] took.
    pub(super) fn restore_clauses(&mut self, f: Frames) {
        self.frames = f;
    }

    /// Closes the innermost clause: its decorrelated subqueries.
    pub(super) fn close_clause(&mut self) -> Vec<Apply> {
        self.frames.open.pop().map(|(_, v)| v).unwrap_or_default()
    }

    /// `rel` (the FROM of a query) joined with decorrelated subqueries of one
    /// of its clauses, in the order they were written.
    pub(super) fn joined(mut rel: Rel, applies: Vec<Apply>) -> Rel {
        for a in applies {
            rel = match a {
                Apply::Mark {
                    right,
                    on,
                    test,
                    mark,
                } => Rel::Mark {
                    left: Box::new(rel),
                    right: Box::new(right),
                    on,
                    test,
                    mark,
                },
                Apply::Left { right, on } => Rel::Join {
                    left: Box::new(rel),
                    right: Box::new(right),
                    kind: JoinType::Left,
                    on: Some(on),
                },
            };
        }
        rel
    }

    fn add_apply(&mut self, a: Apply, q: &Query) -> Result<(), CompileError> {
        let depth = self.outer.len();
        match self.frames.open.last_mut() {
            Some((d, v)) if *d == depth => {
                v.push(a);
                self.correlated.push(q.to_string());
                Ok(())
            }
            _ => Err(not_here(
                "here (only in WHERE, or in the select list or ORDER BY of a query without GROUP BY or aggregates)",
            )
            .at(pos_of(q))),
        }
    }

    /// A column named in a subquery that its own query does not have: a
    /// column of the query immediately around it is a correlated reference,
    /// recorded for that subquery.
    pub(super) fn outer_col(
        &mut self,
        qualifier: Option<&str>,
        name: &str,
        e: CompileError,
    ) -> Result<ColId, CompileError> {
        if e.code != codes::UNDEFINED_COLUMN {
            return Err(e);
        }
        let pos = e.pos;
        let n = self.outer.len();
        for depth in (0..n).rev() {
            let Some(s) = self.outer.get(depth) else {
                continue;
            };
            match find(s, qualifier, name, pos) {
                Ok(c) => {
                    if depth + 1 != n {
                        return Err(unsupported(
                            "a subquery that refers to a column of a query two or more levels out",
                        )
                        .at(pos)
                        .hint("refer only to the query immediately around the subquery, or rewrite it as a join"));
                    }
                    if let Some(refs) = self.corr.last_mut() {
                        refs.push(c);
                    }
                    return Ok(c);
                }
                Err(x) if x.code == codes::UNDEFINED_COLUMN => {}
                Err(x) => return Err(x),
            }
        }
        Err(e)
    }

    /// `rel` with the conjuncts that read `outer` pulled out of it (they read
    /// `rel`'s output columns and `outer`).
    fn pull(
        &mut self,
        rel: Rel,
        outer: &HashSet<ColId>,
    ) -> Result<(Rel, Vec<BExpr>), CompileError> {
        Ok(match rel {
            Rel::Filter { input, pred } => {
                let (input, mut conds) = self.pull(*input, outer)?;
                let (up, keep): (Vec<BExpr>, Vec<BExpr>) = pred
                    .conjuncts()
                    .into_iter()
                    .partition(|c| reads_any(c, outer));
                conds.extend(up);
                let rel = match BExpr::and_all(keep) {
                    Some(pred) => Rel::Filter {
                        input: Box::new(input),
                        pred,
                    },
                    None => input,
                };
                (rel, conds)
            }
            Rel::Project { input, mut exprs } => {
                if exprs.iter().any(|(_, e)| reads_any(e, outer)) {
                    return Err(cant_pull());
                }
                let (input, conds) = self.pull(*input, outer)?;
                // the pulled conditions read columns the projection must keep
                let mut need = Vec::new();
                for c in &conds {
                    c.columns(&mut need);
                }
                for c in need {
                    if !outer.contains(&c) && !exprs.iter().any(|(o, _)| *o == c) {
                        let e = self.col_expr(c)?;
                        exprs.push((c, e));
                    }
                }
                (
                    Rel::Project {
                        input: Box::new(input),
                        exprs,
                    },
                    conds,
                )
            }
            Rel::Join {
                left,
                right,
                kind: kind @ (JoinType::Inner | JoinType::Cross),
                on,
            } => {
                let (left, mut conds) = self.pull(*left, outer)?;
                let (right, more) = self.pull(*right, outer)?;
                conds.extend(more);
                let (up, keep): (Vec<BExpr>, Vec<BExpr>) = on
                    .map(BExpr::conjuncts)
                    .unwrap_or_default()
                    .into_iter()
                    .partition(|c| reads_any(c, outer));
                conds.extend(up);
                let on = BExpr::and_all(keep);
                let kind = if on.is_none() { JoinType::Cross } else { kind };
                (
                    Rel::Join {
                        left: Box::new(left),
                        right: Box::new(right),
                        kind,
                        on,
                    },
                    conds,
                )
            }
            Rel::Join {
                left,
                right,
                kind,
                on,
            } => {
                // a LEFT JOIN keeps its left side's rows alone: conditions on
                // them can move above it; a FULL JOIN keeps both sides' rows
                if rel_reads_any(&right, outer)
                    || on.as_ref().is_some_and(|e| reads_any(e, outer))
                    || (kind == JoinType::Full && rel_reads_any(&left, outer))
                {
                    return Err(cant_pull());
                }
                let (left, conds) = self.pull(*left, outer)?;
                (
                    Rel::Join {
                        left: Box::new(left),
                        right,
                        kind,
                        on,
                    },
                    conds,
                )
            }
            Rel::Mark {
                left,
                right,
                on,
                test,
                mark,
            } => {
                if rel_reads_any(&right, outer)
                    || on.iter().chain(&test).any(|e| reads_any(e, outer))
                {
                    return Err(cant_pull());
                }
                let (left, conds) = self.pull(*left, outer)?;
                (
                    Rel::Mark {
                        left: Box::new(left),
                        right,
                        on,
                        test,
                        mark,
                    },
                    conds,
                )
            }
            other => {
                if rel_reads_any(&other, outer) {
                    return Err(cant_pull());
                }
                (other, Vec::new())
            }
        })
    }

    /// `rel` without what cannot change which values an IN sees: duplicate
    /// removal and ordering (not a LIMIT, which keeps some of them).
    fn strip_in(rel: Rel) -> Rel {
        match rel {
            Rel::Distinct { input }
            | Rel::Sort {
                input, limit: None, ..
            } => Self::strip_in(*input),
            other => other,
        }
    }

    /// `rel` without what cannot change whether a row exists: duplicate
    /// removal, ordering, and a LIMIT of at least one row from the start (a
    /// projection is left to the caller).
    fn strip(rel: Rel) -> Rel {
        match rel {
            Rel::Distinct { input } | Rel::Sort { input, .. } => Self::strip(*input),
            Rel::Limit {
                input,
                limit,
                offset: 0,
            } if limit != Some(0) => Self::strip(*input),
            other => other,
        }
    }

    /// `rel` stripped, and without its projections.
    fn unproject(rel: Rel) -> Rel {
        match Self::strip(rel) {
            Rel::Project { input, .. } => Self::unproject(*input),
            other => other,
        }
    }

    /// `[NOT] EXISTS (q)` whose bound query `rel` reads `refs` of the outer query.
    pub(super) fn correlated_exists(
        &mut self,
        q: &Query,
        rel: Rel,
        refs: &[ColId],
    ) -> Result<BExpr, CompileError> {
        let outer: HashSet<ColId> = refs.iter().copied().collect();
        // what EXISTS asks does not depend on the select list
        let rel = Self::unproject(rel);
        let (right, conds) = self.pull(rel, &outer).map_err(|e| e.at(pos_of(q)))?;
        let mark = self.new_col("exists", SqlType::Boolean, false);
        self.add_apply(
            Apply::Mark {
                right,
                on: BExpr::and_all(conds),
                test: None,
                mark,
            },
            q,
        )?;
        self.col_expr(mark)
    }

    /// `x IN (q)` whose bound query `rel` (one column) reads `refs` of the
    /// outer query.
    pub(super) fn correlated_in(
        &mut self,
        q: &Query,
        x: BExpr,
        rel: Rel,
        refs: &[ColId],
    ) -> Result<BExpr, CompileError> {
        let outer: HashSet<ColId> = refs.iter().copied().collect();
        let rel = Self::strip_in(rel);
        // the compared value: the select list's expression, read in the join
        let (rel, value) = match rel {
            Rel::Project { input, exprs } if exprs.len() == 1 => {
                let value = exprs
                    .into_iter()
                    .next()
                    .map(|(_, e)| e)
                    .ok_or_else(|| mismatch("IN subquery column"))?;
                (Self::strip_in(*input), value)
            }
            other => {
                let c = *other
                    .output()
                    .first()
                    .ok_or_else(|| mismatch("IN subquery column"))?;
                let v = self.col_expr(c)?;
                (other, v)
            }
        };
        let (right, conds) = self.pull(rel, &outer).map_err(|e| e.at(pos_of(q)))?;
        // the value may read columns that a projection under it dropped: it
        // is computed over the rows the pull gives, which keep every column
        // their own expressions read
        let mut need = Vec::new();
        value.columns(&mut need);
        let have: HashSet<ColId> = right.output().into_iter().collect();
        if need.iter().any(|c| !have.contains(c) && !outer.contains(c)) {
            return Err(cant_pull().at(pos_of(q)));
        }
        let test = self
            .compare(CmpOp::Eq, x, value)
            .map_err(|e| e.at(pos_of(q)))?;
        let mark = self.new_col("in", SqlType::Boolean, true);
        self.add_apply(
            Apply::Mark {
                right,
                on: BExpr::and_all(conds),
                test: Some(test),
                mark,
            },
            q,
        )?;
        self.col_expr(mark)
    }

    /// A scalar subquery whose bound query `rel` reads `refs` of the outer
    /// query: an aggregate without GROUP BY, correlated by equalities.
    pub(super) fn correlated_scalar(
        &mut self,
        q: &Query,
        rel: Rel,
        refs: &[ColId],
    ) -> Result<BExpr, CompileError> {
        let outer: HashSet<ColId> = refs.iter().copied().collect();
        let shape = || {
            unsupported(
                "a correlated scalar subquery that does not compute one aggregate without GROUP BY",
            )
            .at(pos_of(q))
            .hint("write it with an aggregate (for example max(col)), or as a join")
        };
        let Rel::Project { input, exprs } = rel else {
            return Err(shape());
        };
        let Rel::Aggregate {
            input: ain,
            keys,
            aggs,
        } = *input
        else {
            return Err(shape());
        };
        let [(_, value)] = <[(ColId, BExpr); 1]>::try_from(exprs).map_err(|_| shape())?;
        if !keys.is_empty() || reads_any(&value, &outer) {
            return Err(shape());
        }
        if aggs
            .iter()
            .any(|(_, a)| a.arg.as_ref().is_some_and(|e| reads_any(e, &outer)))
        {
            return Err(cant_pull().at(pos_of(q)));
        }
        let (inner, conds) = self.pull(*ain, &outer).map_err(|e| e.at(pos_of(q)))?;
        let inner_cols: HashSet<ColId> = inner.output().into_iter().collect();
        let mut keys = Vec::with_capacity(conds.len());
        let mut on = Vec::with_capacity(conds.len());
        for c in conds {
            let pair = match &c.kind {
                BK::Cmp(CmpOp::Eq, a, b) => {
                    let side = |e: &BExpr, set: &dyn Fn(ColId) -> bool| {
                        let mut v = Vec::new();
                        e.columns(&mut v);
                        !v.is_empty() && v.into_iter().all(set)
                    };
                    let is_in = |x: ColId| inner_cols.contains(&x);
                    let is_out = |x: ColId| outer.contains(&x);
                    if side(a, &is_in) && side(b, &is_out) {
                        Some(((**a).clone(), (**b).clone()))
                    } else if side(b, &is_in) && side(a, &is_out) {
                        Some(((**b).clone(), (**a).clone()))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            let Some((inside, outside)) = pair else {
                return Err(unsupported(
                    "a correlated scalar subquery whose condition on the outer query is not an equality (inner expression = outer expression)",
                )
                .at(pos_of(q))
                .hint("write it as a join"));
            };
            let k = self.new_col("corr", inside.ty, true);
            on.push(self.compare(CmpOp::Eq, self.col_expr(k)?, outside)?);
            keys.push((k, inside));
        }
        let on = BExpr::and_all(on).ok_or_else(shape)?;
        // an outer row without a group reads NULL in every column: what the
        // aggregate gives over no rows, except a count, which gives 0
        let counts: HashSet<ColId> = aggs
            .iter()
            .filter(|(_, a)| matches!(a.kind, AggKind::Count | AggKind::CountStar))
            .map(|(c, _)| *c)
            .collect();
        for (c, _) in &aggs {
            if let Some(m) = self.meta.get_mut(c) {
                m.nullable = true;
            }
        }
        let meta = &self.meta;
        let value = substitute(value, &|e: &BExpr| {
            let BK::Col(c) = e.kind else { return None };
            let m = meta.get(&c)?;
            let col = BExpr::col(c, m);
            if counts.contains(&c) {
                let zero = BExpr::lit(Value::BigInt(0), m.ty);
                Some(mk(
                    BK::Case(vec![(is_null(col.clone()), zero)], Box::new(col)),
                    m.ty,
                    false,
                ))
            } else {
                Some(col)
            }
        });
        let right = Rel::Aggregate {
            input: Box::new(inner),
            keys,
            aggs,
        };
        self.add_apply(Apply::Left { right, on }, q)?;
        Ok(value)
    }
}
