//! Aggregates over each group's rows in an order: `string_agg(x, sep
//! [ORDER BY ...])`, `percentile_cont(f)` and `percentile_disc(f) WITHIN
//! GROUP (ORDER BY x)`, and `mode() WITHIN GROUP (ORDER BY x)`.
//!
//! A query that has one is aggregated with window functions: the group keys
//! are the partition, every aggregate (the plain ones too) is computed over
//! the whole partition, and one row of each partition is kept. Without GROUP
//! BY, a query over no rows still answers one row (NULLs, and 0 for counts).

use super::window::PendingWin;
use super::*;
use crate::logical::BWin;
use scratchbird_guest_ops::plan::{Frame, FrameBound, FrameUnits, WinFunc};

/// One of these aggregates, bound.
#[derive(Debug, Clone)]
pub(super) struct OrderedAgg {
    /// The window function that computes it.
    func: WinFunc,
    /// Its argument (the value joined, or the one ordered).
    arg: BExpr,
    /// string_agg's separator.
    sep: Option<BExpr>,
    /// The order of the group's rows: (expression, DESC, NULLS FIRST).
    order: Vec<(BExpr, bool, bool)>,
}

/// Whether `name` is one of these aggregates.
pub(super) fn is_ordered_name(name: &str) -> bool {
    matches!(
        name,
        "string_agg" | "percentile_cont" | "percentile_disc" | "mode"
    )
}

/// string_agg's value and separator, as TEXT.
///
/// # Errors
/// Not two arguments, or not text.
pub(super) fn string_agg_args(bound: Vec<BExpr>) -> Result<(BExpr, BExpr), CompileError> {
    let [x, sep]: [BExpr; 2] = bound
        .try_into()
        .map_err(|_| mismatch("string_agg takes 2 arguments: a value and a separator"))?;
    let text = |e: &BExpr| is_text(&e.ty) || is_null_lit(e);
    if !text(&x) || !text(&sep) {
        return Err(mismatch(format!(
            "string_agg takes text, not {} and {}",
            x.ty, sep.ty
        ))
        .hint("cast the value to TEXT"));
    }
    Ok((coerce(x, SqlType::Text), coerce(sep, SqlType::Text)))
}

/// The whole partition.
const WHOLE: Frame = Frame {
    units: FrameUnits::Range,
    start: FrameBound::UnboundedPreceding,
    end: FrameBound::UnboundedFollowing,
};

/// `row_number()` over `partition` (in no order) into `col`.
fn row_number(col: ColId, partition: Vec<BExpr>, at: Expr) -> PendingWin {
    PendingWin {
        col,
        partition,
        order: Vec::new(),
        win: BWin {
            func: WinFunc::RowNumber,
            arg: None,
            default: None,
            frame: WHOLE,
            range: None,
        },
        at,
    }
}

impl Binder<'_> {
    /// One of these aggregates in a select list, HAVING or ORDER BY: its
    /// column, registered in `agg`.
    pub(super) fn ordered_agg(
        &mut self,
        f: &ast::Function,
        name: &str,
        args: &[FunctionArg],
        distinct: bool,
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let Some(ctx) = agg else {
            return Err(CompileError::new(
                codes::GROUPING,
                format!("aggregate function {name} is not allowed here"),
            ));
        };
        if distinct {
            return Err(unsupported(format!("{name}(DISTINCT ...)")));
        }
        // no aggregate or window function inside
        let windows = self.windows.take();
        let r = self.ordered_parts(f, name, args, scope);
        self.windows = windows;
        let (func, arg, sep, order, ty) = r?;
        // FILTER (WHERE p): the argument where p holds, NULL (left out)
        // elsewhere
        let arg = match f.filter.as_deref() {
            Some(w) => {
                if contains_agg(w) {
                    return Err(CompileError::new(
                        codes::GROUPING,
                        "aggregate functions are not allowed in FILTER",
                    ));
                }
                let p = self.expr(w, scope, None)?;
                let p = crate::fold::fold(self.boolean(p, "FILTER")?);
                let t = arg.ty;
                mk(
                    BK::Case(vec![(p, arg)], Box::new(BExpr::lit(Value::Null, t))),
                    t,
                    true,
                )
            }
            None => arg,
        };
        let col = self.new_col(name, ty, true);
        ctx.ordered.push((
            col,
            OrderedAgg {
                func,
                arg,
                sep,
                order,
            },
        ));
        self.col_expr(col)
    }

    /// The function, argument, separator, order and type of one call.
    #[expect(clippy::type_complexity, reason = "the parts of one call, used once")]
    fn ordered_parts(
        &mut self,
        f: &ast::Function,
        name: &str,
        args: &[FunctionArg],
        scope: &Scope,
    ) -> Result<
        (
            WinFunc,
            BExpr,
            Option<BExpr>,
            Vec<(BExpr, bool, bool)>,
            SqlType,
        ),
        CompileError,
    > {
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a else {
                return Err(unsupported(format!("this argument form in {name}(...)")));
            };
            if contains_agg(x) {
                return Err(CompileError::new(
                    codes::GROUPING,
                    "aggregate calls cannot be nested",
                ));
            }
            bound.push(crate::fold::fold(self.expr(x, scope, None)?));
        }
        let mut order_items: Vec<ast::OrderByExpr> = f.within_group.clone();
        if let FunctionArguments::List(l) = &f.args {
            for c in &l.clauses {
                if let ast::FunctionArgumentClause::OrderBy(v) = c {
                    order_items.extend(v.iter().cloned());
                }
            }
        }
        let mut order = Vec::with_capacity(order_items.len());
        for o in &order_items {
            crate::clauses::order_item(o)?;
            let b = crate::fold::fold(self.expr(&o.expr, scope, None)?);
            let k = sort_key(0, o);
            order.push((b, k.desc, k.nulls_first));
        }
        if name == "string_agg" {
            if !f.within_group.is_empty() {
                return Err(mismatch(
                    "string_agg is not an ordered-set aggregate: ORDER BY goes inside its parentheses",
                ));
            }
            let (x, sep) = string_agg_args(bound)?;
            return Ok((WinFunc::StringAgg, x, Some(sep), order, SqlType::Text));
        }
        // the ordered-set aggregates: one ORDER BY item, the argument
        let [(x, desc, nulls_first)]: [(BExpr, bool, bool); 1] =
            order.try_into().map_err(|_| {
                mismatch(format!(
                    "{name} needs WITHIN GROUP (ORDER BY one expression)"
                ))
            })?;
        let (func, x, ty) = match name {
            "mode" => {
                if !bound.is_empty() {
                    return Err(mismatch("mode takes no arguments"));
                }
                let t = x.ty;
                (WinFunc::Mode, x, t)
            }
            _ => {
                let [fraction]: [BExpr; 1] = bound
                    .try_into()
                    .map_err(|_| mismatch(format!("{name} takes 1 argument: a fraction")))?;
                // the constant, as PostgreSQL reads it (a float8)
                let v = match &fraction.kind {
                    BK::Lit(Value::Double(v)) => *v,
                    BK::Lit(Value::SmallInt(v)) => f64::from(*v),
                    BK::Lit(Value::Integer(v)) => f64::from(*v),
                    BK::Lit(Value::Decimal(d)) => d.to_string().parse().unwrap_or(f64::NAN),
                    _ => {
                        return Err(unsupported(format!(
                            "{name} of a fraction that is not a constant"
                        )));
                    }
                };
                if !(0.0..=1.0).contains(&v) {
                    return Err(CompileError::new(
                        codes::OUT_OF_RANGE,
                        format!("percentile value {v} is not between 0 and 1"),
                    ));
                }
                if name == "percentile_cont" {
                    if !is_numeric(&x.ty) && !is_null_lit(&x) {
                        return Err(mismatch(format!(
                            "percentile_cont takes a number, not {}",
                            x.ty
                        )));
                    }
                    (
                        WinFunc::PercentileCont(v),
                        coerce(x, SqlType::Double),
                        SqlType::Double,
                    )
                } else {
                    let t = x.ty;
                    (WinFunc::PercentileDisc(v), x, t)
                }
            }
        };
        let order = vec![(x.clone(), desc, nulls_first)];
        Ok((func, x, None, order, ty))
    }

    /// The aggregates `aggs` with each DISTINCT one reading each distinct
    /// value of its argument once per group (`partition`): on the first row
    /// of the value's rows (numbered over the group and the value, by a
    /// window pushed on `wins` before the aggregates' windows), NULL on the
    /// others, which every aggregate skips.
    fn distinct_once(
        &mut self,
        aggs: Vec<(ColId, BAgg, bool)>,
        partition: &[BExpr],
        at: &Expr,
        wins: &mut Vec<PendingWin>,
    ) -> Result<Vec<(ColId, BAgg)>, CompileError> {
        let mut out = Vec::with_capacity(aggs.len());
        for (c, mut a, distinct) in aggs {
            if distinct && let Some(x) = a.arg.clone() {
                let rn = self.new_col("?distinct value row?", SqlType::BigInt, false);
                let mut by = partition.to_vec();
                by.push(x.clone());
                wins.push(row_number(rn, by, at.clone()));
                let first = BExpr {
                    kind: BK::Cmp(
                        scratchbird_guest_ops::plan::CmpOp::Eq,
                        Box::new(self.col_expr(rn)?),
                        Box::new(BExpr::lit(Value::BigInt(1), SqlType::BigInt)),
                    ),
                    ty: SqlType::Boolean,
                    nullable: false,
                };
                let ty = x.ty;
                a.arg = Some(BExpr {
                    kind: BK::Case(vec![(first, x)], Box::new(BExpr::lit(Value::Null, ty))),
                    ty,
                    nullable: true,
                });
            }
            out.push((c, a));
        }
        Ok(out)
    }

    /// The aggregation of a query with one of these aggregates, over
    /// `input` grouped by `keys`: the keys' and aggregates' own columns, as
    /// a plain aggregation has them.
    pub(super) fn ordered_aggregate(
        &mut self,
        input: Rel,
        keys: &[(ColId, BExpr)],
        ctx: AggCtx,
    ) -> Result<Rel, CompileError> {
        // the rows, with their group keys
        let out = input.output();
        let mut exprs = out
            .iter()
            .map(|c| Ok((*c, self.col_expr(*c)?)))
            .collect::<Result<Vec<_>, CompileError>>()?;
        exprs.extend(keys.iter().cloned());
        let rel = Rel::Project {
            input: Box::new(input),
            exprs,
        };
        let partition = keys
            .iter()
            .map(|(c, _)| self.col_expr(*c))
            .collect::<Result<Vec<_>, _>>()?;
        let at = Expr::Identifier(Ident::new("aggregate"));
        let mut wins = Vec::new();
        let aggs = self.distinct_once(ctx.aggs, &partition, &at, &mut wins)?;
        let mut counts = Vec::new();
        for (c, a) in &aggs {
            if matches!(a.kind, AggKind::Count | AggKind::CountStar) {
                counts.push(*c);
            }
            wins.push(PendingWin {
                col: *c,
                partition: partition.clone(),
                order: Vec::new(),
                win: BWin {
                    func: WinFunc::Agg(super::window::agg_func(a.kind, &a.ty)),
                    arg: a.arg.clone(),
                    default: None,
                    frame: WHOLE,
                    range: None,
                },
                at: at.clone(),
            });
        }
        for (c, o) in ctx.ordered {
            wins.push(PendingWin {
                col: c,
                partition: partition.clone(),
                order: o.order,
                win: BWin {
                    func: o.func,
                    arg: Some(o.arg),
                    default: o.sep,
                    frame: WHOLE,
                    range: None,
                },
                at: at.clone(),
            });
        }
        // one row of each group
        let rn = self.new_col("?group row?", SqlType::BigInt, false);
        wins.push(row_number(rn, partition, at));
        let outputs: Vec<ColId> = keys
            .iter()
            .map(|(c, _)| *c)
            .chain(aggs.iter().map(|(c, _)| *c))
            .chain(ordered_cols(&wins))
            .collect();
        let rel = self.window_rel(rel, wins)?;
        let rel = self.first_rows(rel, rn)?;
        if !keys.is_empty() {
            let exprs = outputs
                .iter()
                .map(|c| Ok((*c, self.col_expr(*c)?)))
                .collect::<Result<Vec<_>, CompileError>>()?;
            return Ok(Rel::Project {
                input: Box::new(rel),
                exprs,
            });
        }
        // no GROUP BY: one row even over no rows (a left join from one
        // row), its counts 0
        let mut inner = Vec::with_capacity(outputs.len());
        let mut fresh = Vec::with_capacity(outputs.len());
        for c in &outputs {
            let x = self.col_expr(*c)?;
            let f = self.new_col("?agg?", x.ty, true);
            fresh.push(f);
            inner.push((f, x));
        }
        let one = self.new_col("?one?", SqlType::Integer, false);
        let joined = Rel::Join {
            left: Box::new(Rel::Values {
                cols: vec![one],
                rows: vec![vec![Value::Integer(1)]],
            }),
            right: Box::new(Rel::Project {
                input: Box::new(rel),
                exprs: inner,
            }),
            kind: JoinType::Left,
            on: None,
        };
        let mut exprs = Vec::with_capacity(outputs.len());
        for (c, f) in outputs.iter().zip(fresh) {
            let x = self.col_expr(f)?;
            let x = if counts.contains(c) {
                mk(
                    BK::Case(
                        vec![(
                            mk(BK::IsNull(Box::new(x.clone())), SqlType::Boolean, false),
                            BExpr::lit(Value::BigInt(0), SqlType::BigInt),
                        )],
                        Box::new(x),
                    ),
                    SqlType::BigInt,
                    false,
                )
            } else {
                x
            };
            exprs.push((*c, x));
        }
        Ok(Rel::Project {
            input: Box::new(joined),
            exprs,
        })
    }
}

/// The columns of the ordered aggregates among `wins`.
fn ordered_cols(wins: &[PendingWin]) -> Vec<ColId> {
    wins.iter()
        .filter(|w| {
            matches!(
                w.win.func,
                WinFunc::StringAgg
                    | WinFunc::PercentileCont(_)
                    | WinFunc::PercentileDisc(_)
                    | WinFunc::Mode
            )
        })
        .map(|w| w.col)
        .collect()
}
