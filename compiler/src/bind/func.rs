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

    pub(super) fn aggregate(
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
