//! Binding expressions: typing and conversions, comparisons and arithmetic,
//! AND/OR runs and IN lists, subqueries as init plans.

use super::*;

/// The DECIMAL type a numeric literal's text has (its digits and its
/// scale, an exponent counted in), for a cast to NUMERIC without a
/// precision; past 38 digits, the scale that keeps 38 (the most a DECIMAL
/// holds). `None` for text that is not a number, which the cast refuses.
fn literal_decimal(s: &str) -> Option<SqlType> {
    let t = s.trim();
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = i32::try_from(int.trim_start_matches('0').len()).ok()?;
    let frac = i32::try_from(frac.len()).ok()?;
    // the value's digits left and right of the point once the exponent moves it
    let left = (int + exp).max(0);
    let scale = (frac - exp).max(0);
    let digits = left + scale;
    let (precision, scale) = if digits <= i32::from(crate::typing::DECIMAL_COMPUTE_DIGITS) {
        (crate::typing::DECIMAL_COMPUTE_DIGITS, scale)
    } else if left <= 38 {
        (38, scale.min(38 - left))
    } else {
        return None;
    };
    Some(SqlType::Decimal {
        precision,
        scale: u8::try_from(scale).ok()?,
    })
}

impl<'c> Binder<'c> {
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

    pub(super) fn text_literal_as(&self, s: &str, to: SqlType) -> Result<BExpr, CompileError> {
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

    /// `a ~ b`, `~*`, `!~`, `!~*`: PostgreSQL's regular expression match
    /// (case-insensitive with `*`, negated with `!`), as `regexp_like`.
    fn regex_match(&self, op: &BinaryOperator, a: BExpr, b: BExpr) -> Result<BExpr, CompileError> {
        for x in [&a, &b] {
            if !is_text(&x.ty) && !is_null_lit(x) {
                return Err(mismatch(format!("operator {op} takes text, not {}", x.ty)));
            }
        }
        let insensitive = matches!(
            op,
            BinaryOperator::PGRegexIMatch | BinaryOperator::PGRegexNotIMatch
        );
        let nl = a.nullable || b.nullable;
        let m = mk(
            BK::Func(
                Func::RegexLike,
                vec![
                    coerce(a, SqlType::Text),
                    coerce(b, SqlType::Text),
                    BExpr::lit(
                        Value::Text(if insensitive { "i" } else { "" }.into()),
                        SqlType::Text,
                    ),
                ],
            ),
            SqlType::Boolean,
            nl,
        );
        Ok(
            if matches!(
                op,
                BinaryOperator::PGRegexNotMatch | BinaryOperator::PGRegexNotIMatch
            ) {
                mk(BK::Not(Box::new(m)), SqlType::Boolean, nl)
            } else {
                m
            },
        )
    }

    pub(crate) fn boolean(&self, e: BExpr, clause: &str) -> Result<BExpr, CompileError> {
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
    pub(super) fn unify(&self, a: BExpr, b: BExpr) -> Result<(BExpr, BExpr), CompileError> {
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

    /// `a & b`, `a | b`, `a # b` on integers: of SMALLINT with SMALLINT a
    /// SMALLINT (a bitwise result of two stays in its range), else of the
    /// wider one.
    pub(super) fn bits(
        &self,
        op: ArithOp,
        word: &str,
        a: BExpr,
        b: BExpr,
    ) -> Result<BExpr, CompileError> {
        let (a, b) = if is_null_lit(&a) || is_null_lit(&b) {
            self.unify(a, b)?
        } else {
            (a, b)
        };
        let t = match (integer_rank(&a.ty), integer_rank(&b.ty)) {
            (Some(1), Some(1)) => SqlType::SmallInt,
            (Some(x), Some(y)) if x.max(y) == 3 => SqlType::BigInt,
            (Some(_), Some(_)) => SqlType::Integer,
            _ => {
                return Err(mismatch(format!(
                    "operator {word} does not apply to {} and {}",
                    a.ty, b.ty
                ))
                .hint("the bit operators take SMALLINT, INTEGER or BIGINT"));
            }
        };
        let n = a.nullable || b.nullable;
        let (a, b) = (coerce(a, t), coerce(b, t));
        Ok(mk(BK::Arith(op, Box::new(a), Box::new(b)), t, n))
    }

    /// `a << n` and `a >> n`: `a` an integer (the result has its type), `n`
    /// a SMALLINT or INTEGER count (PostgreSQL has no shift by a BIGINT).
    pub(super) fn shift(&self, left: bool, a: BExpr, n: BExpr) -> Result<BExpr, CompileError> {
        let word = if left { "<<" } else { ">>" };
        let a = if is_null_lit(&a) {
            BExpr::lit(Value::Null, SqlType::Integer)
        } else {
            a
        };
        let n = if is_null_lit(&n) {
            BExpr::lit(Value::Null, SqlType::Integer)
        } else {
            n
        };
        let (Some(ra), Some(rn)) = (integer_rank(&a.ty), integer_rank(&n.ty)) else {
            return Err(mismatch(format!(
                "operator {word} does not apply to {} and {}",
                a.ty, n.ty
            ))
            .hint("shift a SMALLINT, INTEGER or BIGINT by an INTEGER count"));
        };
        if rn == 3 {
            return Err(mismatch(format!(
                "operator {word} does not apply to {} and {}: the count is an INTEGER",
                a.ty, n.ty
            ))
            .hint("CAST the count AS INTEGER"));
        }
        let t = a.ty;
        let nullable = a.nullable || n.nullable;
        // a SMALLINT shifts as an INTEGER; a left shift then keeps 16 bits
        let (op, compute) = match (ra, left) {
            (1, true) => (ArithOp::Shl16, SqlType::Integer),
            (1, false) => (ArithOp::Shr, SqlType::Integer),
            (3, l) => (if l { ArithOp::Shl } else { ArithOp::Shr }, SqlType::BigInt),
            (_, l) => (
                if l { ArithOp::Shl } else { ArithOp::Shr },
                SqlType::Integer,
            ),
        };
        let (a, n) = (coerce(a, compute), coerce(n, compute));
        Ok(mk(BK::Arith(op, Box::new(a), Box::new(n)), t, nullable))
    }

    pub(super) fn compare(&self, op: CmpOp, a: BExpr, b: BExpr) -> Result<BExpr, CompileError> {
        let (a, b) = self.unify(a, b)?;
        if matches!(a.ty, SqlType::Blob) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(mismatch("BLOB values can only be compared for equality"));
        }
        Ok(cmp(op, a, b))
    }

    pub(super) fn arith(&self, op: ArithOp, a: BExpr, b: BExpr) -> Result<BExpr, CompileError> {
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
            (ArithOp::Mul | ArithOp::Div | ArithOp::DivRound, T::Decimal { precision, .. }) => {
                // keep each operand's scale; lowering aligns them. The
                // operands are computed as wide as the result.
                let to_dec = |e: BExpr| {
                    let sc = crate::lower::scale_of(&e.ty);
                    coerce(
                        e,
                        T::Decimal {
                            precision,
                            scale: sc,
                        },
                    )
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
    pub(super) fn dup(&mut self, e: &BExpr) -> Result<BExpr, CompileError> {
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

    pub(super) fn count_expr(&mut self) -> Result<(), CompileError> {
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
    pub(super) fn expr(
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
                    let c = match find(scope, None, &norm(i), ident_pos(i)) {
                        Ok(c) => c,
                        Err(e) => self.outer_col(None, &norm(i), e)?,
                    };
                    self.col_expr(c)?
                }
                Expr::CompoundIdentifier(parts) => {
                    let [q, c] = parts.as_slice() else {
                        return Err(unsupported("names with more than two parts"));
                    };
                    let id = match find(scope, Some(&norm(q)), &norm(c), ident_pos(q)) {
                        Ok(id) => id,
                        Err(e) => self.outer_col(Some(&norm(q)), &norm(c), e)?,
                    };
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
                    ast::Value::Placeholder(p) => {
                        return Err(CompileError::new(
                            codes::UNDEFINED_PARAMETER,
                            format!("there is no parameter {p}"),
                        )
                        .hint(
                            "send the values with the statement (sb sql's \\bind, \
                             Client::query_with), or PREPARE it and EXECUTE it with them",
                        ));
                    }
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
                    UnaryOperator::BitwiseNot => {
                        // ~x is x # -1
                        let b = self.expr(expr, scope, agg)?;
                        let ones = BExpr::lit(Value::Integer(-1), SqlType::Integer);
                        self.bits(ArithOp::BitXor, "~", b, ones)?
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
                        BinaryOperator::BitwiseAnd => self.bits(ArithOp::BitAnd, "&", a, b)?,
                        BinaryOperator::BitwiseOr => self.bits(ArithOp::BitOr, "|", a, b)?,
                        BinaryOperator::PGBitwiseXor => self.bits(ArithOp::BitXor, "#", a, b)?,
                        BinaryOperator::PGBitwiseShiftLeft => self.shift(true, a, b)?,
                        BinaryOperator::PGBitwiseShiftRight => self.shift(false, a, b)?,
                        op @ (BinaryOperator::PGRegexMatch
                        | BinaryOperator::PGRegexIMatch
                        | BinaryOperator::PGRegexNotMatch
                        | BinaryOperator::PGRegexNotIMatch) => self.regex_match(op, a, b)?,
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
                            let (rel, ty, refs) = self.subquery_one_column(q, scope)?;
                            if !refs.is_empty() {
                                let v = self.correlated_in(q, x, rel, &refs)?;
                                return Ok(if *negated { not(v) } else { v });
                            }
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
                    let mut t = sql_type(data_type, self.cat)?;
                    let b = self.expr(expr, scope, agg)?;
                    // NUMERIC without a precision keeps the value's own
                    // scale, as PostgreSQL's unconstrained numeric does
                    if matches!(
                        data_type,
                        DataType::Numeric(ast::ExactNumberInfo::None)
                            | DataType::Decimal(ast::ExactNumberInfo::None)
                            | DataType::Dec(ast::ExactNumberInfo::None)
                    ) {
                        if matches!(b.ty, SqlType::Decimal { .. }) {
                            return Ok(b);
                        }
                        if let Some(s) = is_text_lit(&b)
                            && let Some(own) = literal_decimal(s)
                        {
                            t = own;
                        }
                    }
                    // an explicit cast to VARCHAR(n) cuts the text to n
                    // characters, as PostgreSQL's does (storing a longer
                    // value is refused instead)
                    if let SqlType::Varchar { max_chars } = t
                        && !is_null_lit(&b)
                    {
                        let text = match is_text_lit(&b) {
                            Some(s) => self.text_literal_as(s, SqlType::Text)?,
                            None => coerce(b, SqlType::Text),
                        };
                        let nullable = text.nullable;
                        let lit = |v: i64| BExpr::lit(Value::BigInt(v), SqlType::BigInt);
                        let cut = mk(
                            BK::Func(Func::Substr, vec![text, lit(1), lit(i64::from(max_chars))]),
                            SqlType::Text,
                            nullable,
                        );
                        return Ok(coerce(cut, t));
                    }
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
                    extract(part, b)?
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
                    let (rel, ty, refs) = self.subquery_one_column(q, scope)?;
                    if !refs.is_empty() {
                        return self.correlated_scalar(q, rel, &refs);
                    }
                    let i = self.add_init(InitKind::Scalar, rel, format!("scalar {q}"));
                    mk(BK::Init(i), ty, true)
                }
                Expr::Exists { subquery, negated } => {
                    let (bq, refs) = self.subquery(subquery, scope)?;
                    if !refs.is_empty() {
                        let v = self.correlated_exists(subquery, bq.rel, &refs)?;
                        return Ok(if *negated { not(v) } else { v });
                    }
                    let i = self.add_init(InitKind::Exists, bq.rel, format!("exists {subquery}"));
                    let v = mk(BK::Init(i), SqlType::Boolean, false);
                    if *negated { not(v) } else { v }
                }
                Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                    let name = if matches!(e, Expr::Ceil { .. }) {
                        "ceil"
                    } else {
                        "floor"
                    };
                    if !matches!(
                        field,
                        ast::CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                    ) {
                        return Err(unsupported(format!(
                            "{} with a scale or unit",
                            name.to_uppercase()
                        )));
                    }
                    let x = self.expr(expr, scope, agg)?;
                    self.rounding(name, vec![x])?
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
    pub(super) fn bool_run(&mut self, terms: Vec<BExpr>, or: bool) -> Result<BExpr, CompileError> {
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
    pub(super) fn in_constants(
        &mut self,
        x: &BExpr,
        items: &[BExpr],
    ) -> Result<Option<BExpr>, CompileError> {
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

    /// Binds a subquery seeing `scope` as its enclosing query; also returns
    /// the columns of `scope` it reads (none: it is uncorrelated).
    pub(super) fn subquery(
        &mut self,
        q: &Query,
        scope: &Scope,
    ) -> Result<(BoundQuery, Vec<ColId>), CompileError> {
        self.outer.push(scope.clone());
        self.corr.push(Vec::new());
        let r = self.query(q);
        self.outer.pop();
        let refs = self.corr.pop().unwrap_or_default();
        Ok((r?, refs))
    }

    /// Registers an init plan, or returns the one already made for the same
    /// text read in the same WITH queries (the same text can name another
    /// WITH query, or a table, elsewhere).
    pub(super) fn add_init(&mut self, kind: InitKind, rel: Rel, key: String) -> usize {
        let key = if self.ctes.is_empty() {
            key
        } else {
            let scope: Vec<String> = self.ctes.iter().map(|c| c.id.to_string()).collect();
            format!("{key}\u{1}{}", scope.join(","))
        };
        if let Some(i) = self.init_keys.get(&key) {
            return *i;
        }
        self.inits.push((kind, rel));
        let i = self.inits.len() - 1;
        self.init_keys.insert(key, i);
        i
    }

    /// A subquery that must return exactly one column: its relation and type.
    pub(super) fn subquery_one_column(
        &mut self,
        q: &Query,
        scope: &Scope,
    ) -> Result<(Rel, SqlType, Vec<ColId>), CompileError> {
        let (bq, refs) = self.subquery(q, scope)?;
        let out = bq.rel.output();
        let [c] = out.as_slice() else {
            return Err(mismatch(format!(
                "the subquery returns {} columns; it must return one",
                out.len()
            ))
            .at(pos_of(q)));
        };
        let ty = self.meta(*c)?.ty;
        Ok((bq.rel, ty, refs))
    }
}

/// 1 SMALLINT, 2 INTEGER, 3 BIGINT; `None` for any other type.
fn integer_rank(t: &SqlType) -> Option<u8> {
    match t {
        SqlType::SmallInt => Some(1),
        SqlType::Integer => Some(2),
        SqlType::BigInt => Some(3),
        _ => None,
    }
}

/// EXTRACT(`part` FROM `b`) (and `date_part`): an INTEGER. A time part of a
/// DATE is of its midnight.
pub(super) fn extract(part: DatePart, b: BExpr) -> Result<BExpr, CompileError> {
    let b = if is_null_lit(&b) {
        BExpr::lit(Value::Null, SqlType::Timestamp)
    } else {
        b
    };
    let (f, b) = match (b.ty, part) {
        (SqlType::Date, DatePart::Year | DatePart::Month | DatePart::Day) => {
            (Func::ExtractDate(part), b)
        }
        (SqlType::Date, _) => (Func::ExtractTs(part), coerce(b, SqlType::Timestamp)),
        (SqlType::Timestamp, _) => (Func::ExtractTs(part), b),
        (t, _) => return Err(mismatch(format!("EXTRACT({part:?}) from {t}"))),
    };
    let n = b.nullable;
    Ok(mk(BK::Func(f, vec![b]), SqlType::Integer, n))
}
