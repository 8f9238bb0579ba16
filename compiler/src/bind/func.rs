//! Binding function calls, CASE, date arithmetic and aggregates.

use super::*;

impl<'c> Binder<'c> {
    pub(super) fn text_arg(
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

    pub(super) fn int_arg(
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

    pub(super) fn date_interval(
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
        let (n, unit) = interval_of(iv)?;
        let d = self.expr(left, scope, None)?;
        let n = n
            .checked_mul(sign)
            .ok_or_else(|| CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range"))?;
        add_interval(d, n, &unit)
    }

    pub(super) fn case(
        &self,
        whens: Vec<BExpr>,
        mut results: Vec<BExpr>,
    ) -> Result<BExpr, CompileError> {
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
    pub(super) fn function(
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
                let string_agg_order = name == "string_agg"
                    && matches!(
                        l.clauses.as_slice(),
                        [ast::FunctionArgumentClause::OrderBy(_)]
                    );
                if !l.clauses.is_empty() && !string_agg_order {
                    return Err(unsupported(format!("clauses inside {name}(...)")));
                }
                (
                    l.args.clone(),
                    matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
                )
            }
        };
        if f.over.is_some() {
            return self.window_call(f, &name, &args, distinct, scope, agg);
        }
        if let Some(e) = self.statement_time(&name, &args)? {
            return Ok(e);
        }
        if matches!(name.as_str(), "rollup" | "cube") && f.over.is_none() {
            // the parser reads them as calls inside GROUPING SETS (...)
            return Err(unsupported("ROLLUP or CUBE inside GROUPING SETS").at(pos_of(f)));
        }
        if ordered::is_ordered_name(&name) && f.over.is_none() {
            return self
                .ordered_agg(f, &name, &args, distinct, scope, agg)
                .map_err(|e| e.at(pos_of(f)));
        }
        if !f.within_group.is_empty() {
            return Err(CompileError::new(
                codes::GROUPING,
                format!("{name} is not an ordered-set aggregate, so it cannot have WITHIN GROUP"),
            )
            .at(pos_of(f)));
        }
        if name == "grouping" {
            return self
                .grouping_call(&args, scope, agg)
                .map_err(|e| e.at(pos_of(f)));
        }
        if let Some(kind) = is_agg_name(&name) {
            let Some(ctx) = agg else {
                return Err(CompileError::new(
                    codes::GROUPING,
                    format!("aggregate function {name} is not allowed here"),
                )
                .at(pos_of(f)));
            };
            return self
                .aggregate(
                    &name,
                    kind,
                    &args,
                    distinct,
                    f.filter.as_deref(),
                    scope,
                    ctx,
                    None,
                )
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
            "to_char" => {
                want(2)?;
                let fmt = bound.pop().ok_or_else(|| mismatch("to_char"))?;
                let x = bound.pop().ok_or_else(|| mismatch("to_char"))?;
                let Some(fmt) = is_text_lit(&fmt).map(str::to_owned) else {
                    return Err(
                        unsupported("to_char with a format that is not a literal").at(pos_of(f))
                    );
                };
                self.bind_to_char(x, &fmt).map_err(|e| e.at(pos_of(f)))?
            }
            "regexp_like" | "regexp_replace" | "regexp_count" | "regexp_instr"
            | "regexp_substr" => self.bind_regex(&name, bound).map_err(|e| e.at(pos_of(f)))?,
            "repeat" | "reverse" | "replace" | "split_part" | "initcap" | "lpad" | "rpad" => {
                let mut args = Vec::with_capacity(bound.len());
                let (lo, hi, ints): (usize, usize, &[usize]) = match name.as_str() {
                    "reverse" | "initcap" => (1, 1, &[]),
                    "repeat" => (2, 2, &[1]),
                    "replace" => (3, 3, &[]),
                    "split_part" => (3, 3, &[2]),
                    _ => (2, 3, &[1]),
                };
                if !(lo..=hi).contains(&bound.len()) {
                    return Err(mismatch(format!(
                        "{name} takes {} argument(s), {} given",
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo} to {hi}")
                        },
                        bound.len()
                    ))
                    .at(pos_of(f)));
                }
                for (i, b) in bound.into_iter().enumerate() {
                    if ints.contains(&i) {
                        if !matches!(b.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
                            && !is_null_lit(&b)
                        {
                            return Err(mismatch(format!(
                                "{name} takes an integer here, not {}",
                                b.ty
                            ))
                            .at(pos_of(f)));
                        }
                        args.push(coerce(b, SqlType::BigInt));
                    } else {
                        args.push(text(b)?);
                    }
                }
                self.text_fn(&name, args)?
            }
            "date_part" | "date_trunc" => {
                want(2)?;
                let x = bound.pop().ok_or_else(|| mismatch(name.clone()))?;
                let field = bound.pop().ok_or_else(|| mismatch(name.clone()))?;
                let Some(unit) = is_text_lit(&field).map(str::to_ascii_lowercase) else {
                    return Err(
                        unsupported(format!("{name} with a unit that is not a literal"))
                            .at(pos_of(f)),
                    );
                };
                if name == "date_part" {
                    date_part(&unit, x)
                } else {
                    date_trunc(&unit, x)
                }
                .map_err(|e| e.at(pos_of(f)))?
            }
            "left" | "right" | "starts_with" => {
                want(2)?;
                let n = bound.pop().ok_or_else(|| mismatch("left/right"))?;
                let s = text(bound.pop().ok_or_else(|| mismatch("left/right"))?)?;
                self.ends(&name, s, n).map_err(|e| e.at(pos_of(f)))?
            }
            "round" | "trunc" | "ceil" | "ceiling" | "floor" | "sign" | "mod" | "sqrt" | "cbrt"
            | "exp" | "ln" | "log" | "log10" | "power" | "pow" | "pi" | "greatest" | "least"
            | "strpos" => self.math(&name, bound).map_err(|e| e.at(pos_of(f)))?,
            other => {
                return Err(CompileError::new(codes::UNDEFINED_FUNCTION, format!("function {other}() does not exist"))
                    .at(pos_of(f))
                    .hint("supported: length, lower, upper, substring, position, strpos, trim, replace, split_part, left, right, lpad, rpad, repeat, reverse, initcap, starts_with, regexp_like, regexp_replace, regexp_count, regexp_instr, regexp_substr, to_char, abs, round, trunc, ceil, floor, sign, mod, sqrt, cbrt, exp, ln, log, log10, power, pi, greatest, least, coalesce, nullif, concat, and the aggregates count, sum, avg, min, max"));
            }
        })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one aggregate call and the context it binds in"
    )]
    pub(super) fn aggregate(
        &mut self,
        name: &str,
        kind: AggKind,
        args: &[FunctionArg],
        distinct: bool,
        filter: Option<&Expr>,
        scope: &Scope,
        ctx: &mut AggCtx,
        outer: Option<&mut AggCtx>,
    ) -> Result<BExpr, CompileError> {
        // a window aggregate's argument may hold the query's aggregates
        // (`sum(count(*)) OVER ()`); no argument may hold a window function
        let windows = self.windows.take();
        let arg = self.aggregate_arg(name, args, distinct, scope, outer);
        self.windows = windows;
        let arg = arg?;
        let kind = if arg.is_none() {
            AggKind::CountStar
        } else {
            kind
        };
        self.aggregate_of(name, kind, arg, distinct, filter, scope, ctx)
    }

    /// An aggregate's argument (`None` for `count(*)`).
    fn aggregate_arg(
        &mut self,
        name: &str,
        args: &[FunctionArg],
        distinct: bool,
        scope: &Scope,
        outer: Option<&mut AggCtx>,
    ) -> Result<Option<BExpr>, CompileError> {
        Ok(match args {
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if name == "count" && !distinct => {
                None
            }
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => {
                if outer.is_none() && contains_agg(x) {
                    return Err(CompileError::new(
                        codes::GROUPING,
                        "aggregate calls cannot be nested",
                    )
                    .at(pos_of(x)));
                }
                Some(crate::fold::fold(self.expr(x, scope, outer)?))
            }
            _ => return Err(mismatch(format!("{name} takes one argument"))),
        })
    }

    /// The aggregate `name` of a bound argument, registered in `ctx`; the
    /// expression that reads it.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one aggregate call and the context it binds in"
    )]
    fn aggregate_of(
        &mut self,
        name: &str,
        kind: AggKind,
        arg: Option<BExpr>,
        distinct: bool,
        filter: Option<&Expr>,
        scope: &Scope,
        ctx: &mut AggCtx,
    ) -> Result<BExpr, CompileError> {
        let (arg, kind) = self.filtered(arg, kind, filter, scope)?;
        let boolean = matches!(name, "bool_and" | "every" | "bool_or");
        if let Some(a) = &arg {
            let ok = match kind {
                _ if boolean => a.ty == SqlType::Boolean || is_null_lit(a),
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
        let sum_type = wide_sum_type;
        let col = |this: &Self, c: ColId| this.col_expr(c);
        Ok(match (name, kind) {
            (_, AggKind::CountStar) | (_, AggKind::Count) => {
                let c = get(self, kind, arg, SqlType::BigInt, false);
                col(self, c)?
            }
            ("variance" | "var_samp" | "var_pop" | "stddev" | "stddev_samp" | "stddev_pop", _) => {
                let a = arg.ok_or_else(|| mismatch(format!("{name}(*)")))?;
                self.variance(name, a, &mut get)?
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
                    let wide = crate::typing::is_wide(&st);
                    let out = crate::typing::computed_decimal(wide, sc);
                    let se = coerce(
                        se,
                        crate::typing::computed_decimal(wide, crate::lower::scale_of(&st)),
                    );
                    let ne = coerce(ne, crate::typing::computed_decimal(wide, 0));
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
                // a DECIMAL argument is summed as it is (same scale): a
                // 64-bit one into the 128-bit sum without widening each row
                let c = get(self, AggKind::Sum, Some(a), st, true);
                col(self, c)?
            }
            (_, k) if boolean => {
                // the MIN (AND) or MAX (OR) of 1 for TRUE and 0 for FALSE,
                // NULLs left out
                let a = arg.ok_or_else(|| mismatch(format!("{name}(*)")))?;
                let a = coerce(a, SqlType::Boolean);
                let one = BExpr::lit(Value::Integer(1), SqlType::Integer);
                let zero = BExpr::lit(Value::Integer(0), SqlType::Integer);
                let a2 = self.dup(&a)?;
                let bits = mk(
                    BK::Case(
                        vec![(a, one.clone()), (not(a2), zero)],
                        Box::new(BExpr::lit(Value::Null, SqlType::Integer)),
                    ),
                    SqlType::Integer,
                    true,
                );
                let c = get(self, k, Some(bits), SqlType::Integer, true);
                let m = col(self, c)?;
                self.compare(CmpOp::Eq, m, one)?
            }
            (_, k) => {
                let a = arg.ok_or_else(|| mismatch("min/max(*)"))?;
                let t = a.ty;
                let c = get(self, k, Some(a), t, true);
                col(self, c)?
            }
        })
    }

    /// The math functions (and `strpos`), with PostgreSQL's types: DECIMAL
    /// rounding is exact (round half away from zero, as a cast to a smaller
    /// scale does), DOUBLE PRECISION rounding is C's (`rint`: ties to even),
    /// and the transcendental functions compute in DOUBLE PRECISION through
    /// the C library, so their results are PostgreSQL's to the last bit (for
    /// DECIMAL arguments PostgreSQL computes in NUMERIC instead: the digits
    /// shown can differ).
    fn math(&mut self, name: &str, mut args: Vec<BExpr>) -> Result<BExpr, CompileError> {
        use scratchbird_guest_ops::abi::MathOp;
        use scratchbird_guest_ops::plan::MathFn;
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> Result<(), CompileError> {
            if (lo..=hi).contains(&n) {
                Ok(())
            } else if lo == hi {
                Err(mismatch(format!(
                    "{name} takes {lo} argument(s), {n} given"
                )))
            } else {
                Err(mismatch(format!(
                    "{name} takes {lo} to {hi} arguments, {n} given"
                )))
            }
        };
        let number = |b: &BExpr| -> Result<(), CompileError> {
            if is_numeric(&b.ty) || is_null_lit(b) {
                Ok(())
            } else {
                Err(mismatch(format!("{name} takes a number, not {}", b.ty)))
            }
        };
        let double = |b: BExpr| coerce(b, SqlType::Double);
        let host = |op: MathOp, args: Vec<BExpr>| {
            let nl = args.iter().any(|a| a.nullable);
            mk(
                BK::Func(Func::Math(MathFn::Host(op)), args),
                SqlType::Double,
                nl,
            )
        };
        Ok(match name {
            "pi" => {
                arity(0, 0)?;
                BExpr::lit(Value::Double(std::f64::consts::PI), SqlType::Double)
            }
            "sqrt" | "cbrt" | "exp" | "ln" | "log10" => {
                arity(1, 1)?;
                let x = args.remove(0);
                number(&x)?;
                let op = match name {
                    "sqrt" => MathOp::Sqrt,
                    "cbrt" => MathOp::Cbrt,
                    "exp" => MathOp::Exp,
                    "ln" => MathOp::Ln,
                    _ => MathOp::Log10,
                };
                host(op, vec![double(x)])
            }
            "log" => {
                arity(1, 2)?;
                for a in &args {
                    number(a)?;
                }
                if n == 1 {
                    host(MathOp::Log10, vec![double(args.remove(0))])
                } else {
                    // log(b, x) = ln(x) / ln(b)
                    let x = args.pop().ok_or_else(|| mismatch("log"))?;
                    let b = args.pop().ok_or_else(|| mismatch("log"))?;
                    let lx = host(MathOp::Ln, vec![double(x)]);
                    let lb = host(MathOp::Ln, vec![double(b)]);
                    self.arith(ArithOp::Div, lx, lb)?
                }
            }
            "power" | "pow" => {
                arity(2, 2)?;
                for a in &args {
                    number(a)?;
                }
                host(MathOp::Pow, args.into_iter().map(double).collect())
            }
            "mod" => {
                arity(2, 2)?;
                let b = args.pop().ok_or_else(|| mismatch("mod"))?;
                let a = args.pop().ok_or_else(|| mismatch("mod"))?;
                number(&a)?;
                number(&b)?;
                if a.ty == SqlType::Double || b.ty == SqlType::Double {
                    return Err(mismatch(
                        "mod takes integers or DECIMALs, not DOUBLE PRECISION",
                    ));
                }
                self.arith(ArithOp::Mod, a, b)?
            }
            "strpos" => {
                arity(2, 2)?;
                let sub = args.pop().ok_or_else(|| mismatch("strpos"))?;
                let s = args.pop().ok_or_else(|| mismatch("strpos"))?;
                let text = |b: BExpr| -> Result<BExpr, CompileError> {
                    if is_text(&b.ty) || is_null_lit(&b) {
                        Ok(coerce(b, SqlType::Text))
                    } else {
                        Err(mismatch(format!("strpos takes text, not {}", b.ty)))
                    }
                };
                let (s, sub) = (text(s)?, text(sub)?);
                let nl = s.nullable || sub.nullable;
                mk(BK::Func(Func::Position, vec![sub, s]), SqlType::Integer, nl)
            }
            "greatest" | "least" => self.extreme(name, args)?,
            "sign" => {
                arity(1, 1)?;
                let x = args.remove(0);
                number(&x)?;
                self.sign(x)?
            }
            _ => return self.rounding(name, args),
        })
    }

    /// variance, var_samp, var_pop, stddev, stddev_samp and stddev_pop of
    /// `a`, from the aggregates `get` adds.
    fn variance(
        &mut self,
        name: &str,
        a: BExpr,
        get: &mut impl FnMut(&mut Self, AggKind, Option<BExpr>, SqlType, bool) -> ColId,
    ) -> Result<BExpr, CompileError> {
        // (n * sum(x*x) - sum(x)^2) / (n * (n - 1)), or n * n for the
        // population: exact for integers and DECIMALs (38 digits),
        // NULL below two rows (one for the population); stddev is
        // its square root, through DOUBLE PRECISION
        let pop = name.ends_with("_pop");
        let double = a.ty == SqlType::Double;
        let wide = if double {
            SqlType::Double
        } else {
            crate::typing::computed_decimal(true, crate::lower::scale_of(&a.ty))
        };
        let x = coerce(a.clone(), wide);
        let sq = {
            let x2 = self.dup(&x)?;
            self.arith(ArithOp::Mul, x, x2)?
        };
        let sq_ty = sq.ty;
        let s1 = get(
            self,
            AggKind::Sum,
            Some(a.clone()),
            wide_sum_type(&a.ty),
            true,
        );
        let s2 = get(self, AggKind::Sum, Some(sq), wide_sum_type(&sq_ty), true);
        let n = get(self, AggKind::Count, Some(a), SqlType::BigInt, false);
        let (s1, s2, n) = (self.col_expr(s1)?, self.col_expr(s2)?, self.col_expr(n)?);
        let count = |e: BExpr| {
            coerce(
                e,
                if double {
                    SqlType::Double
                } else {
                    crate::typing::computed_decimal(true, 0)
                },
            )
        };
        let s1b = self.dup(&s1)?;
        let sq1 = self.arith(ArithOp::Mul, s1, s1b)?;
        let n1 = self.dup(&n)?;
        let ns2 = self.arith(ArithOp::Mul, count(n1), s2)?;
        let num = self.arith(ArithOp::Sub, ns2, sq1)?;
        let (n2, n3) = (self.dup(&n)?, self.dup(&n)?);
        let other = if pop {
            count(n3)
        } else {
            let one = BExpr::lit(Value::BigInt(1), SqlType::BigInt);
            count(self.arith(ArithOp::Sub, n3, one)?)
        };
        let den = self.arith(ArithOp::Mul, count(n2), other)?;
        let var = self.arith(ArithOp::Div, num, den)?;
        let enough = self.compare(
            CmpOp::Gt,
            n,
            BExpr::lit(Value::BigInt(i64::from(!pop)), SqlType::BigInt),
        )?;
        let ty = var.ty;
        let var = mk(
            BK::Case(vec![(enough, var)], Box::new(BExpr::lit(Value::Null, ty))),
            ty,
            true,
        );
        Ok(if name.starts_with("stddev") {
            let root = mk(
                BK::Func(
                    Func::Math(scratchbird_guest_ops::plan::MathFn::Host(
                        scratchbird_guest_ops::abi::MathOp::Sqrt,
                    )),
                    vec![coerce(var, SqlType::Double)],
                ),
                SqlType::Double,
                true,
            );
            if double { root } else { coerce(root, ty) }
        } else {
            var
        })
    }

    /// round, trunc, ceil and floor.
    pub(super) fn rounding(
        &mut self,
        name: &str,
        mut args: Vec<BExpr>,
    ) -> Result<BExpr, CompileError> {
        use scratchbird_guest_ops::plan::MathFn;
        let with_digits = matches!(name, "round" | "trunc");
        let n = args.len();
        if !(1..=if with_digits { 2 } else { 1 }).contains(&n) {
            return Err(mismatch(format!(
                "{name} takes {} argument(s), {n} given",
                if with_digits { "1 or 2" } else { "1" }
            )));
        }
        // the number of decimal digits kept: a constant from 0
        let digits = match args.get(1) {
            None => None,
            Some(d) => match &crate::fold::fold(d.clone()).kind {
                BK::Lit(v) if !v.is_null() => {
                    let k = match v {
                        Value::SmallInt(i) => i64::from(*i),
                        Value::Integer(i) => i64::from(*i),
                        Value::BigInt(i) => *i,
                        _ => {
                            return Err(mismatch(format!(
                                "{name}'s second argument is a whole number of digits"
                            )));
                        }
                    };
                    if !(0..=i64::from(DECIMAL_COMPUTE_DIGITS)).contains(&k) {
                        return Err(unsupported(format!(
                            "{name} to {k} decimal digits (from 0 to {DECIMAL_COMPUTE_DIGITS})"
                        )));
                    }
                    Some(u8::try_from(k).unwrap_or(0))
                }
                BK::Lit(_) => {
                    return Ok(BExpr::lit(
                        Value::Null,
                        SqlType::Decimal {
                            precision: DECIMAL_COMPUTE_DIGITS,
                            scale: 0,
                        },
                    ));
                }
                _ => {
                    return Err(unsupported(format!(
                        "{name} with a number of digits that is not a constant"
                    )));
                }
            },
        };
        let x = args.remove(0);
        let int_digits = |t: &SqlType| -> u8 {
            match t {
                SqlType::SmallInt => 5,
                SqlType::Integer => 10,
                _ => DECIMAL_COMPUTE_DIGITS,
            }
        };
        match x.ty {
            SqlType::Double => {
                if digits.is_some() {
                    return Err(mismatch(format!(
                        "{name}(double precision, integer) does not exist"
                    ))
                    .hint(format!(
                        "cast the first argument to DECIMAL: {name}(CAST(x AS DECIMAL(18, 6)), n)"
                    )));
                }
                let f = match name {
                    "round" => MathFn::Round,
                    "trunc" => MathFn::Trunc,
                    "ceil" | "ceiling" => MathFn::Ceil,
                    _ => MathFn::Floor,
                };
                let nl = x.nullable;
                Ok(mk(BK::Func(Func::Math(f), vec![x]), SqlType::Double, nl))
            }
            SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => match digits {
                // PostgreSQL resolves round(integer) and the like to the
                // DOUBLE PRECISION form (its numbers' preferred type)
                None => Ok(coerce(x, SqlType::Double)),
                Some(k) => {
                    let p = int_digits(&x.ty)
                        .saturating_add(k)
                        .min(DECIMAL_COMPUTE_DIGITS);
                    Ok(coerce(
                        x,
                        SqlType::Decimal {
                            precision: p,
                            scale: k,
                        },
                    ))
                }
            },
            SqlType::Decimal { precision, scale } => {
                self.round_decimal(name, x, digits, precision, scale)
            }
            _ if is_null_lit(&x) => Ok(BExpr::lit(Value::Null, SqlType::Double)),
            other => Err(mismatch(format!("{name} takes a number, not {other}"))),
        }
    }

    /// `e` converted to `ty` (a cast node even where `coerce` would keep it).
    fn cast_to(e: BExpr, ty: SqlType) -> BExpr {
        coerce(e, ty)
    }

    /// greatest and least: the common type of the arguments, NULLs left out.
    fn extreme(&mut self, name: &str, args: Vec<BExpr>) -> Result<BExpr, CompileError> {
        let n = args.len();
        if n == 0 {
            return Err(mismatch(format!("{name} needs arguments")));
        }
        let mut ty: Option<SqlType> = None;
        for a in &args {
            if is_null_lit(a) {
                continue;
            }
            ty = Some(match ty {
                None => a.ty,
                Some(t) => common_type(&t, &a.ty).ok_or_else(|| {
                    mismatch(format!("{name} types {t} and {} cannot be matched", a.ty))
                })?,
            });
        }
        let ty = ty.unwrap_or(SqlType::Text);
        let mut parts: Vec<BExpr> = args.into_iter().map(|a| coerce(a, ty)).collect();
        let op = if name == "greatest" {
            CmpOp::Gt
        } else {
            CmpOp::Lt
        };
        // a balanced tournament: each pairing reads both sides twice,
        // so the expression grows with n log n, not 2^n
        while parts.len() > 1 {
            let mut next = Vec::with_capacity(parts.len().div_ceil(2));
            let mut it = parts.into_iter();
            while let Some(a) = it.next() {
                let Some(b) = it.next() else {
                    next.push(a);
                    break;
                };
                // b wins where it compares so, or where a is NULL
                // (NULLs are left out; all NULL gives NULL)
                let (b1, a1, a2) = (self.dup(&b)?, self.dup(&a)?, self.dup(&a)?);
                let wins = or(self.compare(op, b1, a1)?, is_null(a2));
                let nl = a.nullable && b.nullable;
                next.push(mk(BK::Case(vec![(wins, b)], Box::new(a)), ty, nl));
            }
            parts = next;
        }
        parts.pop().ok_or_else(|| mismatch(name.to_owned()))
    }

    /// sign: -1, 0 or 1 of the argument's type (DECIMAL: scale 0).
    fn sign(&mut self, x: BExpr) -> Result<BExpr, CompileError> {
        let ty = match x.ty {
            SqlType::Decimal { .. } => SqlType::Decimal {
                precision: 1,
                scale: 0,
            },
            // PostgreSQL has sign(numeric) and sign(double precision): an
            // integer takes the second (its category's preferred type)
            SqlType::SmallInt | SqlType::Integer | SqlType::BigInt => SqlType::Double,
            t => t,
        };
        let unit = |v: i64| coerce(BExpr::lit(Value::BigInt(v), SqlType::BigInt), ty);
        let zero = BExpr::lit(Value::BigInt(0), SqlType::BigInt);
        let (x1, x2) = (self.dup(&x)?, self.dup(&x)?);
        let pos = self.compare(CmpOp::Gt, x1, zero.clone())?;
        let neg = self.compare(CmpOp::Lt, x2, zero.clone())?;
        let nl = x.nullable;
        let is_zero = self.compare(CmpOp::Eq, x, zero)?;
        Ok(crate::fold::fold(mk(
            BK::Case(
                vec![(pos, unit(1)), (neg, unit(-1)), (is_zero, unit(0))],
                Box::new(BExpr::lit(Value::Null, ty)),
            ),
            ty,
            nl,
        )))
    }

    /// round, trunc, ceil and floor of a DECIMAL(precision, scale), to
    /// `digits` decimal digits (none: 0).
    fn round_decimal(
        &mut self,
        name: &str,
        x: BExpr,
        digits: Option<u8>,
        precision: u8,
        scale: u8,
    ) -> Result<BExpr, CompileError> {
        let whole = precision.saturating_sub(scale);
        // a wide value stays wide (narrowing it could overflow)
        let cap = if precision > DECIMAL_COMPUTE_DIGITS {
            crate::typing::DECIMAL_WIDE_DIGITS
        } else {
            DECIMAL_COMPUTE_DIGITS
        };
        let to = |k: u8| SqlType::Decimal {
            precision: whole.saturating_add(k).saturating_add(1).min(cap),
            scale: k,
        };
        let k = digits.unwrap_or(0);
        if k >= scale {
            // nothing to drop: the same value at scale k
            let p = precision.saturating_add(k - scale).min(cap);
            return Ok(coerce(
                x,
                SqlType::Decimal {
                    precision: p,
                    scale: k,
                },
            ));
        }
        // a cast to a smaller scale rounds half away from zero
        let round = |e: BExpr| Self::cast_to(e, to(k));
        let t = match name {
            "round" => return Ok(round(x)),
            _ => {
                // toward zero: move half a unit of the last kept digit
                // toward zero first
                let half = Value::Decimal(scratchbird_types::Decimal::new(5, k + 1));
                let half_ty = SqlType::Decimal {
                    precision: 1,
                    scale: k + 1,
                };
                let h = BExpr::lit(half.clone(), half_ty);
                let (x1, x2, x3, x4, x5) = (
                    self.dup(&x)?,
                    self.dup(&x)?,
                    self.dup(&x)?,
                    self.dup(&x)?,
                    self.dup(&x)?,
                );
                let zero = BExpr::lit(Value::BigInt(0), SqlType::BigInt);
                let neg = self.compare(CmpOp::Lt, x1, zero.clone())?;
                let pos = self.compare(CmpOp::Gt, x4, zero)?;
                let minus = self.arith(ArithOp::Sub, x2, h.clone())?;
                let plus = self.arith(ArithOp::Add, x3, h)?;
                let (plus, minus) = self.unify(plus, minus)?;
                let ty = plus.ty;
                // zero stays zero
                let same = coerce(x5, ty);
                let moved = mk(
                    BK::Case(vec![(neg, plus), (pos, minus)], Box::new(same)),
                    ty,
                    x.nullable,
                );
                round(moved)
            }
        };
        if name == "trunc" {
            return Ok(t);
        }
        // floor and ceil: one unit further where the dropped digits were not zero
        let up = matches!(name, "ceil" | "ceiling");
        let (t1, t2) = (self.dup(&t)?, self.dup(&t)?);
        let beyond = self.compare(if up { CmpOp::Gt } else { CmpOp::Lt }, x, t1)?;
        let one = BExpr::lit(Value::BigInt(1), SqlType::BigInt);
        let step = self.arith(if up { ArithOp::Add } else { ArithOp::Sub }, t2, one)?;
        let (step, t) = self.unify(step, t)?;
        let ty = step.ty;
        let nl = t.nullable;
        Ok(mk(BK::Case(vec![(beyond, step)], Box::new(t)), ty, nl))
    }

    /// left(s, n) and right(s, n) (n < 0: all but the last or first |n|
    /// characters), and starts_with(s, prefix), from substring and length.
    fn ends(&mut self, name: &str, s: BExpr, n: BExpr) -> Result<BExpr, CompileError> {
        let big = |e: BExpr| coerce(e, SqlType::BigInt);
        let lit = |v: i64| BExpr::lit(Value::BigInt(v), SqlType::BigInt);
        let substr = |args: Vec<BExpr>| {
            let nl = args.iter().any(|a| a.nullable);
            mk(BK::Func(Func::Substr, args), SqlType::Text, nl)
        };
        if name == "starts_with" {
            if !(is_text(&n.ty) || is_null_lit(&n)) {
                return Err(mismatch(format!("starts_with takes text, not {}", n.ty)));
            }
            let p = coerce(n, SqlType::Text);
            let lp = self.char_len(&p)?;
            let head = substr(vec![s, lit(1), lp]);
            return self.compare(CmpOp::Eq, head, p);
        }
        if !matches!(n.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
            && !is_null_lit(&n)
        {
            return Err(mismatch(format!(
                "{name} takes an integer count, not {}",
                n.ty
            )));
        }
        let n = big(n);
        let zero = lit(0);
        let n1 = self.dup(&n)?;
        let negative = self.compare(CmpOp::Lt, n1, zero.clone())?;
        let nl = s.nullable || n.nullable;
        let e = if name == "left" {
            // n >= 0: the first n; else the first length + n (none below 0)
            let (ls, n2) = (self.char_len(&s)?, self.dup(&n)?);
            let keep = self.arith(ArithOp::Add, ls, n2)?;
            let k1 = self.dup(&keep)?;
            let pos = self.compare(CmpOp::Gt, k1, zero.clone())?;
            let keep = mk(
                BK::Case(vec![(pos, keep)], Box::new(zero)),
                SqlType::BigInt,
                nl,
            );
            let s1 = self.dup(&s)?;
            let first = substr(vec![s1, lit(1), keep]);
            let firstn = substr(vec![s, lit(1), n]);
            mk(
                BK::Case(vec![(negative, first)], Box::new(firstn)),
                SqlType::Text,
                nl,
            )
        } else {
            // n < 0: from character 1 - n; n >= length: all; else the last n
            let n2 = self.dup(&n)?;
            let from_neg = self.arith(ArithOp::Sub, lit(1), n2)?;
            let s1 = self.dup(&s)?;
            let drop_first = substr(vec![s1, from_neg]);
            let (n3, ls) = (self.dup(&n)?, self.char_len(&s)?);
            let all = self.compare(CmpOp::Ge, n3, ls)?;
            let ls2 = self.char_len(&s)?;
            let start = self.arith(ArithOp::Sub, ls2, n)?;
            let start = self.arith(ArithOp::Add, start, lit(1))?;
            let s2 = self.dup(&s)?;
            let last = substr(vec![s2, start]);
            mk(
                BK::Case(vec![(negative, drop_first), (all, s)], Box::new(last)),
                SqlType::Text,
                nl,
            )
        };
        Ok(e)
    }

    /// repeat, reverse, replace, split_part and initcap (guest helpers), and
    /// lpad and rpad built from repeat, substring and length.
    pub(super) fn text_fn(
        &mut self,
        name: &str,
        mut args: Vec<BExpr>,
    ) -> Result<BExpr, CompileError> {
        let nl = args.iter().any(|a| a.nullable);
        let call = |f: Func, args: Vec<BExpr>| {
            let nl = args.iter().any(|a| a.nullable);
            mk(BK::Func(f, args), SqlType::Text, nl)
        };
        Ok(match name {
            "repeat" => call(Func::Repeat, args),
            "reverse" => call(Func::Reverse, args),
            "replace" => call(Func::Replace, args),
            "split_part" => call(Func::SplitPart, args),
            "initcap" => call(Func::Initcap, args),
            _ => {
                // lpad / rpad (s, n [, fill]): the first n characters when the
                // string has that many, else the fill repeated to make n
                let fill = if args.len() == 3 {
                    args.pop().ok_or_else(|| mismatch("pad"))?
                } else {
                    BExpr::lit(Value::Text(" ".into()), SqlType::Text)
                };
                let n = args.pop().ok_or_else(|| mismatch("pad"))?;
                let s = args.pop().ok_or_else(|| mismatch("pad"))?;
                let lit = |v: i64| BExpr::lit(Value::BigInt(v), SqlType::BigInt);
                let (n1, l1) = (self.dup(&n)?, self.char_len(&s)?);
                let short = self.compare(CmpOp::Le, n1, l1)?;
                let (n2, n3) = (self.dup(&n)?, self.dup(&n)?);
                let positive = self.compare(CmpOp::Gt, n2, lit(0))?;
                let keep = mk(
                    BK::Case(vec![(positive, n3)], Box::new(lit(0))),
                    SqlType::BigInt,
                    nl,
                );
                let s1 = self.dup(&s)?;
                let cut = call(Func::Substr, vec![s1, lit(1), keep]);
                let n4 = self.dup(&n)?;
                let filled = call(Func::Repeat, vec![fill, n4]);
                let l2 = self.char_len(&s)?;
                let missing = self.arith(ArithOp::Sub, n, l2)?;
                let pad = call(Func::Substr, vec![filled, lit(1), missing]);
                let padded = if name == "lpad" {
                    call(Func::Concat, vec![pad, s])
                } else {
                    call(Func::Concat, vec![s, pad])
                };
                mk(
                    BK::Case(vec![(short, cut)], Box::new(padded)),
                    SqlType::Text,
                    nl,
                )
            }
        })
    }

    /// length(s) as a BIGINT (a copy of `s`, counted against the budget).
    fn char_len(&mut self, s: &BExpr) -> Result<BExpr, CompileError> {
        let s = self.dup(s)?;
        let nl = s.nullable;
        Ok(coerce(
            mk(BK::Func(Func::Length, vec![s]), SqlType::Integer, nl),
            SqlType::BigInt,
        ))
    }

    /// The value a column of type `ty` whose DEFAULT is `f` takes: the
    /// statement's time (or date), as `now()` and `current_date` give it.
    pub(crate) fn time_default(
        &mut self,
        f: scratchbird_types::schema::DefaultFn,
        ty: SqlType,
    ) -> Result<BExpr, CompileError> {
        let Some(now) = self.now else {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("a DEFAULT {} has no time here", f.sql()),
            )
            .hint("give the column's value"));
        };
        self.used_now = true;
        let day = now.div_euclid(86_400_000_000);
        let v = match (f, ty) {
            (scratchbird_types::schema::DefaultFn::Now, SqlType::Timestamp) => {
                Value::Timestamp(scratchbird_types::Timestamp(now))
            }
            (_, SqlType::Timestamp) => {
                Value::Timestamp(scratchbird_types::Timestamp(day * 86_400_000_000))
            }
            _ => Value::Date(scratchbird_types::Date(i32::try_from(day).map_err(
                |_| CompileError::new(codes::OUT_OF_RANGE, "the statement's date is out of range"),
            )?)),
        };
        Ok(BExpr::lit(v, ty))
    }

    /// `now()`, `current_timestamp`, `localtimestamp` and `current_date`: the
    /// statement's time, which the coordinator fixes when the statement is
    /// compiled (ScratchBird has no time zones: a TIMESTAMP in UTC, and
    /// UTC's date). `None` for any other function.
    fn statement_time(
        &mut self,
        name: &str,
        args: &[FunctionArg],
    ) -> Result<Option<BExpr>, CompileError> {
        let date = match name {
            "now"
            | "current_timestamp"
            | "localtimestamp"
            | "transaction_timestamp"
            | "statement_timestamp" => false,
            "current_date" => true,
            _ => return Ok(None),
        };
        if !args.is_empty() {
            return Err(unsupported(format!("{name} with a precision")));
        }
        let Some(now) = self.now else {
            return Err(CompileError::new(
                codes::NOT_SUPPORTED,
                format!("{name} has no time here"),
            )
            .hint(
                "the statement's time is fixed when a statement runs; a DEFAULT holds it only \
                 as now() or CURRENT_DATE alone, and a CHECK never: give the value in the INSERT",
            ));
        };
        self.used_now = true;
        Ok(Some(if date {
            let days = i32::try_from(now.div_euclid(86_400_000_000)).map_err(|_| {
                CompileError::new(codes::OUT_OF_RANGE, "the statement's date is out of range")
            })?;
            BExpr::lit(Value::Date(scratchbird_types::Date(days)), SqlType::Date)
        } else {
            BExpr::lit(
                Value::Timestamp(scratchbird_types::Timestamp(now)),
                SqlType::Timestamp,
            )
        }))
    }

    /// An aggregate's argument under FILTER (WHERE p): CASE WHEN p THEN arg
    /// END, which every aggregate skips where it is NULL (count(*) counts a
    /// constant, as a count of it).
    fn filtered(
        &mut self,
        mut arg: Option<BExpr>,
        mut kind: AggKind,
        filter: Option<&Expr>,
        scope: &Scope,
    ) -> Result<(Option<BExpr>, AggKind), CompileError> {
        if let Some(w) = filter {
            if contains_agg(w) {
                return Err(CompileError::new(
                    codes::GROUPING,
                    "aggregate functions are not allowed in FILTER",
                )
                .at(pos_of(w)));
            }
            let p = self.expr(w, scope, None)?;
            let p = crate::fold::fold(self.boolean(p, "FILTER").map_err(|e| e.at(pos_of(w)))?);
            let value = arg.unwrap_or_else(|| BExpr::lit(Value::BigInt(1), SqlType::BigInt));
            let t = value.ty;
            arg = Some(mk(
                BK::Case(vec![(p, value)], Box::new(BExpr::lit(Value::Null, t))),
                t,
                true,
            ));
            if kind == AggKind::CountStar {
                kind = AggKind::Count;
            }
        }
        Ok((arg, kind))
    }
}

/// `date_part('unit', x)`: EXTRACT of that unit.
fn date_part(unit: &str, x: BExpr) -> Result<BExpr, CompileError> {
    let part = match unit {
        "year" | "years" => DatePart::Year,
        "month" | "months" => DatePart::Month,
        "day" | "days" => DatePart::Day,
        "hour" | "hours" => DatePart::Hour,
        "minute" | "minutes" => DatePart::Minute,
        "second" | "seconds" => DatePart::Second,
        other => return Err(unsupported(format!("date_part('{other}', ...)"))),
    };
    super::expr::extract(part, x)
}

/// `date_trunc('unit', x)`: a TIMESTAMP (of a DATE, its midnight first).
fn date_trunc(unit: &str, x: BExpr) -> Result<BExpr, CompileError> {
    use scratchbird_guest_ops::plan::TruncUnit;
    let u = match unit {
        "year" => TruncUnit::Year,
        "quarter" => TruncUnit::Quarter,
        "month" => TruncUnit::Month,
        "week" => TruncUnit::Week,
        "day" => TruncUnit::Day,
        "hour" => TruncUnit::Hour,
        "minute" => TruncUnit::Minute,
        "second" => TruncUnit::Second,
        "microseconds" | "milliseconds" | "decade" | "century" | "millennium" => {
            return Err(unsupported(format!("date_trunc('{unit}', ...)")));
        }
        other => {
            return Err(CompileError::new(
                codes::INVALID_LITERAL,
                format!("date_trunc unit \"{other}\" not recognized"),
            )
            .hint("year, quarter, month, week, day, hour, minute or second"));
        }
    };
    let x = match x.ty {
        _ if is_null_lit(&x) => BExpr::lit(Value::Null, SqlType::Timestamp),
        SqlType::Date | SqlType::Timestamp => coerce(x, SqlType::Timestamp),
        t => {
            return Err(mismatch(format!(
                "date_trunc takes a DATE or TIMESTAMP, not {t}"
            )));
        }
    };
    let n = x.nullable;
    Ok(mk(
        BK::Func(Func::DateTrunc(u), vec![x]),
        SqlType::Timestamp,
        n,
    ))
}

/// The type of SUM over `t`: a DECIMAL sums in 38 digits, whatever its own
/// precision (a sum of many 18-digit values would otherwise overflow long
/// before PostgreSQL's would); integers sum to BIGINT.
fn wide_sum_type(t: &SqlType) -> SqlType {
    match t {
        SqlType::Double => SqlType::Double,
        SqlType::Decimal { scale, .. } => crate::typing::computed_decimal(true, *scale),
        _ => SqlType::BigInt,
    }
}

/// A constant INTERVAL's count and unit (singular, lower case): `INTERVAL
/// '3 days'`, `INTERVAL '3' DAY`, a bare count meaning seconds.
pub(super) fn interval_of(iv: &ast::Interval) -> Result<(i64, String), CompileError> {
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
        // a bare number is seconds, as PostgreSQL reads INTERVAL '3'
        (None, None) => "second".to_owned(),
        _ => {
            return Err(CompileError::new(
                codes::INVALID_LITERAL,
                format!("invalid INTERVAL '{text}'"),
            ));
        }
    };
    Ok((n, unit.trim_end_matches('s').to_owned()))
}

/// `d + n unit`s, `d` a DATE or TIMESTAMP.
pub(super) fn add_interval(d: BExpr, n: i64, unit: &str) -> Result<BExpr, CompileError> {
    let months = match unit {
        "year" => Some(n.checked_mul(12)),
        "month" => Some(Some(n)),
        _ => None,
    };
    let nl = d.nullable;
    match (d.ty, months) {
        (SqlType::Date, Some(m)) => {
            let m = m
                .and_then(|m| i32::try_from(m).ok())
                .ok_or_else(|| CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range"))?;
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
            let days = match unit {
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
            let micros = match unit {
                "day" => 86_400_000_000i64,
                "hour" => 3_600_000_000,
                "minute" => 60_000_000,
                "second" => 1_000_000,
                "week" => 7 * 86_400_000_000,
                _ => return Err(unsupported(format!("TIMESTAMP + INTERVAL in {unit}s"))),
            };
            let v = n
                .checked_mul(micros)
                .ok_or_else(|| CompileError::new(codes::OUT_OF_RANGE, "INTERVAL out of range"))?;
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
