//! Window functions: `f(...) OVER (PARTITION BY ... ORDER BY ... frame)` in a
//! select list or ORDER BY. Each call becomes a column; after the FROM,
//! WHERE, grouping and HAVING, the calls with the same partition and order
//! share one [`Rel::Window`], and the select list reads their columns.
//!
//! An aggregate over a window is bound as the same aggregate over a group
//! (so `avg`, `stddev`, `bool_and` and FILTER mean the same thing), its
//! parts computed over the frame.

use super::*;
use crate::logical::{BWin, RangeTests};
use scratchbird_guest_ops::plan::{AggFunc, Frame, FrameBound, FrameUnits, WinFunc};

/// A window function found while binding a SELECT, over the rows the window
/// sees (the groups, when the query groups).
#[derive(Debug, Clone)]
pub(super) struct PendingWin {
    /// Its column.
    pub(super) col: ColId,
    /// PARTITION BY expressions.
    pub(super) partition: Vec<BExpr>,
    /// ORDER BY expressions: (expression, DESC, NULLS FIRST).
    pub(super) order: Vec<(BExpr, bool, bool)>,
    /// The function.
    pub(super) win: BWin,
    /// The call, for errors.
    pub(super) at: Expr,
}

/// A window function's parts: the function, its argument and default, its
/// type and nullability.
type WinParts = (WinFunc, Option<BExpr>, Option<BExpr>, SqlType, bool);

fn windowing(msg: impl Into<String>) -> CompileError {
    CompileError::new(codes::WINDOWING, msg)
}

/// The physical form of an aggregate over a window.
pub(super) fn agg_func(kind: AggKind, ty: &SqlType) -> AggFunc {
    match kind {
        AggKind::CountStar => AggFunc::CountStar,
        AggKind::Count => AggFunc::Count,
        AggKind::Sum if crate::typing::is_wide(ty) => AggFunc::SumWide,
        AggKind::Sum => AggFunc::Sum,
        AggKind::Min => AggFunc::Min,
        AggKind::Max => AggFunc::Max,
    }
}

impl Binder<'_> {
    /// A call with OVER: its column (or an expression over the columns of
    /// its parts, for `avg` and the like).
    pub(super) fn window_call(
        &mut self,
        f: &ast::Function,
        name: &str,
        args: &[FunctionArg],
        distinct: bool,
        scope: &Scope,
        agg: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        let Some(mut pending) = self.windows.take() else {
            return Err(
                windowing(format!("window function {name} is not allowed here"))
                    .at(pos_of(f))
                    .hint(
                        "window functions may appear in the select list and ORDER BY, not inside \
                     WHERE, GROUP BY, HAVING, an aggregate or another window function; to filter \
                     on one, compute it in a subquery",
                    ),
            );
        };
        let r = self.window_inner(f, name, args, distinct, scope, agg, &mut pending);
        self.windows = Some(pending);
        r.map_err(|e| e.at(pos_of(f)))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one call and the context it binds in"
    )]
    fn window_inner(
        &mut self,
        f: &ast::Function,
        name: &str,
        args: &[FunctionArg],
        distinct: bool,
        scope: &Scope,
        mut agg: Option<&mut AggCtx>,
        pending: &mut Vec<PendingWin>,
    ) -> Result<BExpr, CompileError> {
        let spec = match &f.over {
            Some(ast::WindowType::WindowSpec(s)) if s.window_name.is_none() => s,
            Some(_) => return Err(unsupported("named windows (OVER w, the WINDOW clause)")),
            None => return Err(windowing("a window function without OVER")),
        };
        if distinct {
            return Err(unsupported(
                "DISTINCT in a window function (PostgreSQL does not implement it either)",
            ));
        }
        if matches!(&f.args, FunctionArguments::List(l) if !l.clauses.is_empty()) {
            return Err(unsupported(
                "ORDER BY inside an aggregate used as a window function (PostgreSQL refuses it too)",
            ));
        }
        if !f.within_group.is_empty()
            || super::ordered::is_ordered_name(name) && name != "string_agg"
        {
            return Err(if super::ordered::is_ordered_name(name) {
                unsupported(format!(
                    "OVER for the ordered-set aggregate {name} (PostgreSQL refuses it too)"
                ))
            } else {
                mismatch(format!(
                    "{name} is not an ordered-set aggregate, so it cannot have WITHIN GROUP"
                ))
            });
        }
        let mut partition = Vec::with_capacity(spec.partition_by.len());
        for e in &spec.partition_by {
            partition.push(crate::fold::fold(self.expr(
                e,
                scope,
                agg.as_deref_mut(),
            )?));
        }
        let mut order = Vec::with_capacity(spec.order_by.len());
        for o in &spec.order_by {
            crate::clauses::order_item(o)?;
            let b = crate::fold::fold(self.expr(&o.expr, scope, agg.as_deref_mut())?);
            let k = sort_key(0, o);
            order.push((b, k.desc, k.nulls_first));
        }
        let (frame, range) = self.frame(spec.window_frame.as_ref(), &order)?;
        let at = Expr::Function(f.clone());
        if let Some(kind) = is_agg_name(name) {
            let mut wctx = AggCtx::default();
            let e = self.aggregate(
                name,
                kind,
                args,
                false,
                f.filter.as_deref(),
                scope,
                &mut wctx,
                agg,
            )?;
            for (col, a, _) in wctx.aggs {
                pending.push(PendingWin {
                    col,
                    partition: partition.clone(),
                    order: order.clone(),
                    win: BWin {
                        func: WinFunc::Agg(agg_func(a.kind, &a.ty)),
                        arg: a.arg,
                        default: None,
                        frame,
                        range: range.clone(),
                    },
                    at: at.clone(),
                });
            }
            return Ok(e);
        }
        if f.filter.is_some() {
            return Err(unsupported(format!(
                "FILTER on {name}: only aggregates take it"
            )));
        }
        let mut push = |this: &mut Self, func: WinFunc, arg, default, ty: SqlType, nullable| {
            let col = this.new_col(name, ty, nullable);
            pending.push(PendingWin {
                col,
                partition: partition.clone(),
                order: order.clone(),
                win: BWin {
                    func,
                    arg,
                    default,
                    frame,
                    range: range.clone(),
                },
                at: at.clone(),
            });
            this.col_expr(col)
        };
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                    bound.push(crate::fold::fold(self.expr(
                        x,
                        scope,
                        agg.as_deref_mut(),
                    )?));
                }
                _ => return Err(unsupported(format!("this argument form in {name}(...)"))),
            }
        }
        let (func, arg, default, ty, nullable) = self.window_func(name, bound)?;
        push(self, func, arg, default, ty, nullable)
    }

    /// A window function that is not an aggregate, of its bound arguments:
    /// the function, its argument and default, its type and nullability.
    fn window_func(&mut self, name: &str, bound: Vec<BExpr>) -> Result<WinParts, CompileError> {
        let arity = |lo: usize, hi: usize| -> Result<(), CompileError> {
            if (lo..=hi).contains(&bound.len()) {
                Ok(())
            } else if lo == hi {
                Err(mismatch(format!(
                    "{name} takes {lo} argument(s), {} given",
                    bound.len()
                )))
            } else {
                Err(mismatch(format!(
                    "{name} takes {lo} to {hi} arguments, {} given",
                    bound.len()
                )))
            }
        };
        // a constant integer argument (a count of rows or buckets)
        let constant = |b: &BExpr, what: &str| -> Result<i64, CompileError> {
            match &b.kind {
                BK::Lit(Value::SmallInt(n)) => Ok(i64::from(*n)),
                BK::Lit(Value::Integer(n)) => Ok(i64::from(*n)),
                BK::Lit(Value::BigInt(n)) => Ok(*n),
                _ => Err(unsupported(format!(
                    "{what} that is not an integer constant"
                ))),
            }
        };
        let positive = |n: i64, code: &'static str| -> Result<i64, CompileError> {
            if n > 0 {
                Ok(n)
            } else {
                Err(CompileError::new(
                    code,
                    format!("argument of {name} must be greater than zero"),
                ))
            }
        };
        match name {
            "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" => {
                arity(0, 0)?;
                let (func, ty) = match name {
                    "row_number" => (WinFunc::RowNumber, SqlType::BigInt),
                    "rank" => (WinFunc::Rank, SqlType::BigInt),
                    "dense_rank" => (WinFunc::DenseRank, SqlType::BigInt),
                    "percent_rank" => (WinFunc::PercentRank, SqlType::Double),
                    _ => (WinFunc::CumeDist, SqlType::Double),
                };
                Ok((func, None, None, ty, false))
            }
            "ntile" => {
                arity(1, 1)?;
                let n = constant(&bound[0], "an ntile bucket count")?;
                let n = positive(n, "22014")?;
                if n > i64::from(i32::MAX) {
                    return Err(CompileError::new(
                        codes::OUT_OF_RANGE,
                        "the ntile bucket count is out of range for an INTEGER",
                    ));
                }
                Ok((WinFunc::Ntile(n), None, None, SqlType::Integer, false))
            }
            "lag" | "lead" => {
                arity(1, 3)?;
                let mut it = bound.into_iter();
                let x = it.next().ok_or_else(|| mismatch("lag/lead"))?;
                let k = match it.next() {
                    Some(b) => constant(&b, "a lag / lead offset")?,
                    None => 1,
                };
                let (x, default) = match it.next() {
                    Some(d) => {
                        let (x, d) = self.unify(x, d)?;
                        (x, Some(d))
                    }
                    None => (x, None),
                };
                let back = if name == "lag" { k } else { k.saturating_neg() };
                let ty = x.ty;
                Ok((WinFunc::Shift(back), Some(x), default, ty, true))
            }
            "string_agg" => {
                let (x, sep) = super::ordered::string_agg_args(bound)?;
                Ok((WinFunc::StringAgg, Some(x), Some(sep), SqlType::Text, true))
            }
            "first_value" | "last_value" => {
                arity(1, 1)?;
                let x = bound.into_iter().next().ok_or_else(|| mismatch(name))?;
                let ty = x.ty;
                let func = if name == "first_value" {
                    WinFunc::FirstValue
                } else {
                    WinFunc::LastValue
                };
                Ok((func, Some(x), None, ty, true))
            }
            "nth_value" => {
                arity(2, 2)?;
                let mut it = bound.into_iter();
                let x = it.next().ok_or_else(|| mismatch(name))?;
                let nb = it.next().ok_or_else(|| mismatch(name))?;
                let n = positive(constant(&nb, "an nth_value position")?, "22016")?;
                let ty = x.ty;
                Ok((WinFunc::NthValue(n), Some(x), None, ty, true))
            }
            _ => Err(CompileError::new(
                codes::UNDEFINED_FUNCTION,
                format!("{name} is not a window function or an aggregate"),
            )
            .hint(
                "window functions: row_number, rank, dense_rank, percent_rank, cume_dist, ntile, \
                 lag, lead, first_value, last_value, nth_value, and every aggregate",
            )),
        }
    }

    /// The frame of a window (SQL's default when none is given), checked as
    /// PostgreSQL checks it, and a RANGE frame's offset bounds as tests.
    fn frame(
        &mut self,
        wf: Option<&ast::WindowFrame>,
        order: &[(BExpr, bool, bool)],
    ) -> Result<(Frame, Option<RangeTests>), CompileError> {
        let Some(wf) = wf else {
            return Ok((Frame::DEFAULT, None));
        };
        let units = match wf.units {
            ast::WindowFrameUnits::Rows => FrameUnits::Rows,
            ast::WindowFrameUnits::Range => FrameUnits::Range,
            ast::WindowFrameUnits::Groups if order.is_empty() => {
                return Err(windowing("GROUPS mode requires an ORDER BY clause"));
            }
            ast::WindowFrameUnits::Groups => FrameUnits::Groups,
        };
        let is_offset = |b: &ast::WindowFrameBound| {
            matches!(
                b,
                ast::WindowFrameBound::Preceding(Some(_))
                    | ast::WindowFrameBound::Following(Some(_))
            )
        };
        let mut range = None;
        if units == FrameUnits::Range
            && (is_offset(&wf.start_bound) || wf.end_bound.as_ref().is_some_and(is_offset))
        {
            let [(key, desc, _)] = order else {
                return Err(windowing(
                    "RANGE with offset PRECEDING/FOLLOWING requires exactly one ORDER BY column",
                ));
            };
            let other = self.new_col("?range other?", key.ty, false);
            let cur = self.new_col("?range current?", key.ty, false);
            let mut tests = RangeTests {
                other,
                cur,
                start: None,
                end: None,
            };
            let test = |this: &mut Self, b: &ast::WindowFrameBound, start: bool| match b {
                ast::WindowFrameBound::Preceding(Some(e)) => this
                    .range_test(e, (key.ty, *desc), start, true, (other, cur))
                    .map(Some),
                ast::WindowFrameBound::Following(Some(e)) => this
                    .range_test(e, (key.ty, *desc), start, false, (other, cur))
                    .map(Some),
                _ => Ok(None),
            };
            tests.start = test(self, &wf.start_bound, true)?;
            if let Some(b) = &wf.end_bound {
                tests.end = test(self, b, false)?;
            }
            range = Some(tests);
        }
        let mut bound =
            |b: &ast::WindowFrameBound, start: bool| -> Result<FrameBound, CompileError> {
                let which = if start { "starting" } else { "ending" };
                let offset = |this: &mut Self, e: &Expr| -> Result<u64, CompileError> {
                    if units == FrameUnits::Range {
                        // the offset is in the range tests
                        return Ok(0);
                    }
                    let what = if units == FrameUnits::Rows {
                        "ROWS"
                    } else {
                        "GROUPS"
                    };
                    this.count_offset(e, what, which)
                };
                Ok(match b {
                    ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
                    ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
                    ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
                    ast::WindowFrameBound::Preceding(Some(e)) => {
                        FrameBound::Preceding(offset(self, e)?)
                    }
                    ast::WindowFrameBound::Following(Some(e)) => {
                        FrameBound::Following(offset(self, e)?)
                    }
                })
            };
        let start = bound(&wf.start_bound, true)?;
        let end = match &wf.end_bound {
            Some(b) => bound(b, false)?,
            None => FrameBound::CurrentRow,
        };
        let bad = match (start, end) {
            (FrameBound::UnboundedFollowing, _) => {
                Some("frame start cannot be UNBOUNDED FOLLOWING")
            }
            (_, FrameBound::UnboundedPreceding) => Some("frame end cannot be UNBOUNDED PRECEDING"),
            (FrameBound::CurrentRow, FrameBound::Preceding(_)) => {
                Some("frame starting from current row cannot have preceding rows")
            }
            (FrameBound::Following(_), FrameBound::Preceding(_) | FrameBound::CurrentRow) => {
                Some("frame starting from following row cannot have preceding rows")
            }
            _ => None,
        };
        if let Some(m) = bad {
            return Err(windowing(m));
        }
        Ok((Frame { units, start, end }, range))
    }

    /// A frame offset bound and folded; a column in it is refused as
    /// PostgreSQL refuses it (`what`: ROWS, GROUPS or RANGE).
    fn offset_expr(&mut self, e: &Expr, what: &str) -> Result<BExpr, CompileError> {
        let b = self.expr(e, &Scope::default(), None).map_err(|x| {
            if x.code == codes::UNDEFINED_COLUMN {
                CompileError::new(
                    codes::INVALID_COLUMN_REFERENCE,
                    format!("argument of {what} must not contain variables"),
                )
                .hint("write the offset as a constant")
            } else {
                x
            }
        })?;
        Ok(crate::fold::fold(b))
    }

    /// A ROWS or GROUPS frame's offset (`what`) for its `which` (starting or
    /// ending) bound: a constant BIGINT as PostgreSQL takes it (a NUMERIC
    /// rounded, a quoted number read), neither NULL nor negative.
    fn count_offset(&mut self, e: &Expr, what: &str, which: &str) -> Result<u64, CompileError> {
        let mut b = self.offset_expr(quoted(e).unwrap_or(e), what)?;
        if let BK::Lit(Value::Text(s)) = &b.kind {
            b = crate::fold::fold(self.text_literal_as(&s.clone(), SqlType::BigInt)?);
        }
        let n: i128 = match &b.kind {
            BK::Lit(Value::Null) => {
                return Err(CompileError::new(
                    "22004",
                    format!("frame {which} offset must not be null"),
                ));
            }
            BK::Lit(Value::SmallInt(n)) => i128::from(*n),
            BK::Lit(Value::Integer(n)) => i128::from(*n),
            BK::Lit(Value::BigInt(n)) => i128::from(*n),
            BK::Lit(Value::Decimal(d)) => {
                // rounded half away from zero, as NUMERIC to BIGINT is
                let p = 10i128.pow(u32::from(d.scale()));
                let (q, r) = (d.mantissa() / p, d.mantissa() % p);
                q + if r.abs() * 2 >= p { r.signum() } else { 0 }
            }
            _ if !is_numeric(&b.ty) || matches!(b.ty, SqlType::Double) => {
                return Err(mismatch(format!(
                    "argument of {what} must be type bigint, not type {}",
                    b.ty
                )));
            }
            _ => {
                return Err(CompileError::new(
                    codes::INVALID_COLUMN_REFERENCE,
                    format!("argument of {what} must be a constant here"),
                ));
            }
        };
        if n < 0 {
            return Err(CompileError::new(
                "22013",
                format!("frame {which} offset must not be negative"),
            ));
        }
        u64::try_from(n).map_err(|_| CompileError::new(codes::OUT_OF_RANGE, "bigint out of range"))
    }

    /// The test a RANGE frame's offset bound `e` makes of another row's
    /// ORDER BY key (column `other`, of type `key`, descending when `desc`)
    /// against the current row's (`cur`): whether the other row lies on the
    /// frame's side of the bound, as PostgreSQL's `in_range` functions decide
    /// it. Integer keys are compared as NUMERIC, so no offset overflows.
    fn range_test(
        &mut self,
        e: &Expr,
        (key, desc): (SqlType, bool),
        start: bool,
        preceding: bool,
        (other, cur): (ColId, ColId),
    ) -> Result<BExpr, CompileError> {
        use SqlType as T;
        let which = if start { "starting" } else { "ending" };
        let bad_size = || {
            CompileError::new(
                "22013",
                "invalid preceding or following size in window function",
            )
        };
        let bad_type = |off: &str| {
            CompileError::new(
                codes::NOT_SUPPORTED,
                format!(
                    "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {key} \
                     and offset type {off}"
                ),
            )
            .hint("Cast the offset value to an appropriate type.")
        };
        // PostgreSQL's in_range(val, base, offset, sub, less): is val <= (less)
        // or >= base - offset (sub) or base + offset; a descending key turns
        // both around
        let sub = preceding != desc;
        let less = start == desc;
        let (ov, cv) = (self.col_expr(other)?, self.col_expr(cur)?);
        let mut wide = None;
        // the parser reads a quoted offset as an INTERVAL: for a number key
        // it is a literal of the key's type
        let e = match quoted(e) {
            Some(q) if is_numeric(&key) => q,
            _ => e,
        };
        let sum = if let Expr::Interval(iv) = e {
            if !matches!(key, T::Date | T::Timestamp) {
                return Err(bad_type("interval"));
            }
            let (n, unit) = super::func::interval_of(iv)?;
            if n < 0 {
                return Err(bad_size());
            }
            super::func::add_interval(cv, if sub { -n } else { n }, &unit)?
        } else {
            let mut off = self.offset_expr(e, "RANGE")?;
            if let BK::Lit(Value::Text(s)) = &off.kind
                && is_numeric(&key)
            {
                let (v, vt) = parse_number(s.trim()).map_err(|_| {
                    CompileError::new(
                        codes::INVALID_LITERAL,
                        format!("'{s}' is not a valid {key}"),
                    )
                })?;
                off = BExpr::lit(v, vt);
            }
            if matches!(off.kind, BK::Lit(Value::Null)) {
                return Err(CompileError::new(
                    "22004",
                    format!("frame {which} offset must not be null"),
                ));
            }
            let fits = match (&key, &off.ty) {
                (T::SmallInt | T::Integer | T::BigInt, T::SmallInt | T::Integer | T::BigInt) => {
                    true
                }
                (T::Decimal { .. }, T::SmallInt | T::Integer | T::BigInt | T::Decimal { .. }) => {
                    true
                }
                (T::Double, t) if is_numeric(t) => true,
                (T::SmallInt | T::Integer | T::BigInt | T::Decimal { .. } | T::Double, t) => {
                    return Err(bad_type(&t.to_string()));
                }
                (T::Date | T::Timestamp, t) => return Err(bad_type(&t.to_string())),
                _ => false,
            };
            if !fits {
                return Err(CompileError::new(
                    codes::NOT_SUPPORTED,
                    format!(
                        "RANGE with offset PRECEDING/FOLLOWING is not supported for column type {key}"
                    ),
                ));
            }
            let negative = match &off.kind {
                BK::Lit(Value::SmallInt(n)) => *n < 0,
                BK::Lit(Value::Integer(n)) => *n < 0,
                BK::Lit(Value::BigInt(n)) => *n < 0,
                BK::Lit(Value::Double(f)) => f.is_nan() || *f < 0.0,
                BK::Lit(Value::Decimal(d)) => d.mantissa() < 0,
                _ => {
                    return Err(CompileError::new(
                        codes::INVALID_COLUMN_REFERENCE,
                        "argument of RANGE must be a constant here",
                    )
                    .hint(
                        "write the offset as a number (or an INTERVAL for a DATE or TIMESTAMP key)",
                    ));
                }
            };
            if negative {
                return Err(bad_size());
            }
            // numbers compared exactly, wide enough that no offset overflows
            // or is rounded: integers as NUMERIC(20), a DECIMAL key at the
            // larger of its and the offset's scales
            let scale_of = |t: &SqlType| match t {
                T::Decimal { scale, .. } => *scale,
                _ => 0,
            };
            wide = match key {
                T::SmallInt | T::Integer | T::BigInt => Some(T::Decimal {
                    precision: 20,
                    scale: 0,
                }),
                T::Decimal { scale, .. } => Some(T::Decimal {
                    precision: 38,
                    scale: scale.max(scale_of(&off.ty)),
                }),
                _ => None,
            };
            let (base, off) = match wide {
                Some(w) => (coerce(cv, w), coerce(off, w)),
                None => (cv, coerce(off, key)),
            };
            // (no DOUBLE PRECISION value here is infinite or NaN, so
            // PostgreSQL's rules for those do not arise)
            self.arith(if sub { ArithOp::Sub } else { ArithOp::Add }, base, off)?
        };
        let ov = match wide {
            Some(w) => coerce(ov, w),
            None => ov,
        };
        self.compare(if less { CmpOp::Le } else { CmpOp::Ge }, ov, sum)
    }

    /// The window relations over `rel` for the calls found: one per
    /// distinct partition and order, the keys that are not plain columns
    /// computed in a projection below it.
    pub(super) fn window_rel(
        &mut self,
        mut rel: Rel,
        wins: Vec<PendingWin>,
    ) -> Result<Rel, CompileError> {
        type Group = (Vec<BExpr>, Vec<(BExpr, bool, bool)>, Vec<(ColId, BWin)>);
        let mut groups: Vec<Group> = Vec::new();
        for w in wins {
            match groups
                .iter_mut()
                .find(|(p, o, _)| *p == w.partition && *o == w.order)
            {
                Some(g) => g.2.push((w.col, w.win)),
                None => groups.push((w.partition, w.order, vec![(w.col, w.win)])),
            }
        }
        for (partition, order, funcs) in groups {
            let out = rel.output();
            let mut exprs = out
                .iter()
                .map(|c| Ok((*c, self.col_expr(*c)?)))
                .collect::<Result<Vec<_>, CompileError>>()?;
            let mut key = |this: &mut Self, e: BExpr| -> ColId {
                if let BK::Col(c) = e.kind
                    && out.contains(&c)
                {
                    return c;
                }
                let c = this.new_col("?window key?", e.ty, e.nullable);
                exprs.push((c, e));
                c
            };
            let pcols: Vec<ColId> = partition.into_iter().map(|e| key(self, e)).collect();
            let okeys: Vec<BSortKey> = order
                .into_iter()
                .map(|(e, desc, nulls_first)| BSortKey {
                    col: key(self, e),
                    desc,
                    nulls_first,
                })
                .collect();
            if exprs.len() > out.len() {
                rel = Rel::Project {
                    input: Box::new(rel),
                    exprs,
                };
            }
            rel = Rel::Window {
                input: Box::new(rel),
                partition: pcols,
                order: okeys,
                funcs,
            };
        }
        Ok(rel)
    }
}

/// The text of a quoted frame offset without a unit (`'2' PRECEDING`), which
/// the parser reads as an INTERVAL whatever the frame counts.
fn quoted(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Interval(iv)
            if iv.leading_field.is_none()
                && matches!(iv.value.as_ref(), Expr::Value(v)
                    if matches!(v.value, ast::Value::SingleQuotedString(_))) =>
        {
            Some(iv.value.as_ref())
        }
        _ => None,
    }
}
