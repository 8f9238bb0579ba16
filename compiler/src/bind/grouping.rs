//! GROUP BY ROLLUP, CUBE and GROUPING SETS. Each grouping set is aggregated
//! on its own over the same rows (so DISTINCT aggregates, FILTER, string_agg,
//! the percentiles and mode work as in a plain GROUP BY), the keys a set
//! leaves out are NULL, and the results are appended, with a column that
//! says which keys each row's set leaves out: what GROUPING(...) reads.

use super::*;
use crate::limits::GROUPING_SETS_MAX;

/// The grouping sets of a GROUP BY list: the product of its items' sets (a
/// plain expression is the one set of itself; `GROUP BY a, ROLLUP (b)` is
/// `(a, b), (a)`).
///
/// # Errors
/// More than [`GROUPING_SETS_MAX`] sets, or a nesting not implemented.
pub(super) fn sets(items: &[Expr]) -> Result<Vec<Vec<Expr>>, CompileError> {
    let mut out: Vec<Vec<Expr>> = vec![Vec::new()];
    for it in items {
        let mine: Vec<Vec<Expr>> =
            match it {
                Expr::Rollup(lists) => (0..=lists.len())
                    .rev()
                    .map(|i| lists.get(..i).unwrap_or_default().concat())
                    .collect(),
                Expr::Cube(lists) => {
                    let n = lists.len();
                    if n > 12 {
                        return Err(too_many(1usize << n.min(63)));
                    }
                    (0..1u32 << n)
                        .rev()
                        .map(|m| {
                            lists
                                .iter()
                                .enumerate()
                                .filter(|(j, _)| m & (1 << (n - 1 - j)) != 0)
                                .flat_map(|(_, l)| l.iter().cloned())
                                .collect()
                        })
                        .collect()
                }
                Expr::GroupingSets(lists) => {
                    if lists.iter().flatten().any(|e| {
                        matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_))
                    }) {
                        return Err(unsupported(
                            "ROLLUP, CUBE or GROUPING SETS inside GROUPING SETS",
                        ));
                    }
                    lists.clone()
                }
                e => vec![vec![e.clone()]],
            };
        let product = out.len().saturating_mul(mine.len());
        if product > GROUPING_SETS_MAX {
            return Err(too_many(product));
        }
        out = out
            .iter()
            .flat_map(|a| {
                mine.iter().map(move |b| {
                    let mut s = a.clone();
                    s.extend(b.iter().cloned());
                    s
                })
            })
            .collect();
    }
    Ok(out)
}

fn too_many(n: usize) -> CompileError {
    CompileError::new(
        codes::LIMIT,
        format!("GROUP BY makes {n} grouping sets; a query has at most {GROUPING_SETS_MAX}"),
    )
    .hint("each grouping set aggregates the rows once: group by fewer sets, or split the query")
}

/// Each grouping set as the indices of its keys (`key_of` maps each GROUP
/// BY expression to its key, among `keys` keys).
///
/// # Errors
/// Grouping sets over more than 31 keys.
pub(super) fn key_sets(
    sets: &[Vec<Expr>],
    key_of: &[(Expr, usize)],
    keys: usize,
) -> Result<Vec<Vec<usize>>, CompileError> {
    if sets.len() > 1 && keys > 31 {
        return Err(CompileError::new(
            codes::LIMIT,
            format!("grouping sets over {keys} keys; at most 31"),
        ));
    }
    sets.iter()
        .map(|s| {
            let mut ks: Vec<usize> = Vec::new();
            for e in s {
                let k = key_of
                    .iter()
                    .find(|(x, _)| x == e)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| mismatch("a grouping expression without its key"))?;
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
            Ok(ks)
        })
        .collect()
}

impl Binder<'_> {
    /// The aggregation of every grouping set in `sets` (indices into
    /// `keys`), appended: the keys' and aggregates' own columns, then `gid`,
    /// the set's left-out keys as bits (key 0 lowest).
    pub(super) fn grouping_sets(
        &mut self,
        input: Rel,
        keys: &[(ColId, BExpr)],
        sets: &[Vec<usize>],
        ctx: AggCtx,
        gid: ColId,
    ) -> Result<Rel, CompileError> {
        let mut inputs = Vec::with_capacity(sets.len());
        for set in sets {
            let mut set_keys = Vec::with_capacity(set.len());
            let mut key_cols: Vec<Option<ColId>> = vec![None; keys.len()];
            for &k in set {
                let (orig, e) = keys.get(k).ok_or_else(|| mismatch("grouping key"))?;
                let name = self.meta(*orig)?.name.clone();
                let c = self.new_col(&name, e.ty, e.nullable);
                set_keys.push((c, e.clone()));
                if let Some(slot) = key_cols.get_mut(k) {
                    *slot = Some(c);
                }
            }
            let mut aggs = Vec::with_capacity(ctx.aggs.len());
            for (c, a, d) in &ctx.aggs {
                let m = self.meta(*c)?.clone();
                aggs.push((self.new_col(&m.name, m.ty, m.nullable), a.clone(), *d));
            }
            let mut ordered = Vec::with_capacity(ctx.ordered.len());
            for (c, o) in &ctx.ordered {
                let m = self.meta(*c)?.clone();
                ordered.push((self.new_col(&m.name, m.ty, m.nullable), o.clone()));
            }
            let agg_cols: Vec<ColId> = aggs
                .iter()
                .map(|(c, _, _)| *c)
                .chain(ordered.iter().map(|(c, _)| *c))
                .collect();
            let part = self.aggregate_rel(
                input.clone(),
                set_keys,
                AggCtx {
                    aggs,
                    seen: Vec::new(),
                    grouping: None,
                    ordered,
                },
            )?;
            let mut exprs = Vec::with_capacity(keys.len() + agg_cols.len() + 1);
            for ((_, e), c) in keys.iter().zip(&key_cols) {
                let x = match c {
                    Some(c) => self.col_expr(*c)?,
                    None => BExpr::lit(Value::Null, e.ty),
                };
                exprs.push((self.new_col("?key?", x.ty, true), x));
            }
            for c in agg_cols {
                let x = self.col_expr(c)?;
                exprs.push((self.new_col("?agg?", x.ty, x.nullable), x));
            }
            let mask: i32 = (0..keys.len())
                .filter(|k| !set.contains(k))
                .map(|k| 1i32 << k)
                .sum();
            exprs.push((
                self.new_col("?grouping?", SqlType::Integer, false),
                BExpr::lit(Value::Integer(mask), SqlType::Integer),
            ));
            inputs.push(Rel::Project {
                input: Box::new(part),
                exprs,
            });
        }
        // a key some set leaves out can be NULL
        for (k, (c, _)) in keys.iter().enumerate() {
            if sets.iter().any(|s| !s.contains(&k))
                && let Some(m) = self.meta.get_mut(c)
            {
                m.nullable = true;
            }
        }
        // the union's columns are the keys' and aggregates' own: what the
        // select list, HAVING and ORDER BY were bound over
        let mut cols: Vec<ColId> = keys.iter().map(|(c, _)| *c).collect();
        cols.extend(ctx.aggs.iter().map(|(c, _, _)| *c));
        cols.extend(ctx.ordered.iter().map(|(c, _)| *c));
        cols.push(gid);
        Ok(Rel::UnionAll { inputs, cols })
    }

    /// `GROUPING(a, b, ...)`: a bit per argument, the first the most
    /// significant, set where the row's grouping set leaves that key out.
    pub(super) fn grouping_call(
        &mut self,
        args: &[FunctionArg],
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let bad = || {
            CompileError::new(
                codes::GROUPING,
                "arguments to GROUPING must be grouping expressions of the associated query level",
            )
        };
        let Some((keys, gid)) = agg.and_then(|c| c.grouping.clone()) else {
            return Err(bad());
        };
        if args.is_empty() || args.len() > 31 {
            return Err(mismatch("GROUPING takes 1 to 31 arguments"));
        }
        let mut idx = Vec::with_capacity(args.len());
        for a in args {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a else {
                return Err(unsupported("this argument form in GROUPING(...)"));
            };
            let b = crate::fold::fold(self.expr(x, scope, None)?);
            idx.push(keys.iter().position(|k| *k == b).ok_or_else(bad)?);
        }
        let Some(gid) = gid else {
            return Ok(BExpr::lit(Value::Integer(0), SqlType::Integer));
        };
        let g = self.col_expr(gid)?;
        let int = |v: usize| {
            BExpr::lit(
                Value::Integer(i32::try_from(v).unwrap_or(0)),
                SqlType::Integer,
            )
        };
        let op = |o: ArithOp, a: BExpr, b: BExpr| {
            mk(
                BK::Arith(o, Box::new(a), Box::new(b)),
                SqlType::Integer,
                false,
            )
        };
        let n = idx.len();
        let mut out: Option<BExpr> = None;
        for (j, k) in idx.into_iter().enumerate() {
            let bit = op(ArithOp::BitAnd, op(ArithOp::Shr, g.clone(), int(k)), int(1));
            let bit = op(ArithOp::Shl, bit, int(n - 1 - j));
            out = Some(match out {
                None => bit,
                Some(o) => op(ArithOp::BitOr, o, bit),
            });
        }
        out.ok_or_else(bad)
    }
}
