//! Lowering: the logical plan to the guest's physical plan and manifest. Columns
//! become slots, SQL types become register types with explicit conversions, joins
//! become hash or nested-loop joins, and each scan reads only the columns the
//! statement uses.

use crate::catalog::TableDef;
use crate::error::{CompileError, codes};
use crate::logical::{AggKind, BExpr, BK, ColId, ColMeta, InitKind, JoinType, Rel};
use scratchbird_guest_ops::abi::{
    ABI_VERSION, InputDecl, OnConflict, OutputDecl, PlanManifest, ScanColumn, ScanDecl,
    ScanRangeDecl, WriteDecl, WriteKind,
};
use scratchbird_guest_ops::plan::{
    AggCall, AggFunc, ArithOp, Cast, CmpOp, Expr, InitPlan, JoinKind, Lit, Op, Prim, Program,
    RangeTests, Sink, SortKey, WinCall, prim_of,
};
use scratchbird_types::{SqlType, Value};
use std::collections::{HashMap, HashSet};

/// Rows per batch everywhere.
pub const BATCH_ROWS: u32 = 4096;
/// Heap of a batch with variable-length columns.
pub const BATCH_HEAP_BYTES: u32 = 4 << 20;

/// A RANGE frame's tests over their two slots: the other row's key, the
/// current row's.
fn range_tests(t: &crate::logical::RangeTests) -> Result<RangeTests, CompileError> {
    let slots = HashMap::from([(t.other, 0), (t.cur, 1)]);
    let l = Lowerer { slots: &slots };
    Ok(RangeTests {
        start: t.start.as_ref().map(|e| l.expr(e)).transpose()?,
        end: t.end.as_ref().map(|e| l.expr(e)).transpose()?,
    })
}

fn unsupported(what: impl Into<String>) -> CompileError {
    CompileError::new(
        codes::NOT_SUPPORTED,
        format!("{} is not supported yet", what.into()),
    )
}

fn internal(msg: impl Into<String>) -> CompileError {
    CompileError::new("XX000", format!("internal compiler error: {}", msg.into()))
}

/// The scale of a numeric type (0 for integers).
#[must_use]
pub fn scale_of(ty: &SqlType) -> u8 {
    match ty {
        SqlType::Decimal { scale, .. } => *scale,
        _ => 0,
    }
}

fn pow10(k: i32) -> Result<i64, CompileError> {
    u32::try_from(k)
        .ok()
        .and_then(|k| 10i64.checked_pow(k))
        .ok_or_else(|| {
            CompileError::new(
                codes::OUT_OF_RANGE,
                "a DECIMAL scale difference above 18 digits",
            )
        })
}

pub(crate) fn prim(ty: &SqlType) -> Result<Prim, CompileError> {
    prim_of(ty).ok_or_else(|| unsupported(format!("computing with {ty}")))
}

/// 10^k as a 128-bit factor (k up to 38).
fn pow10_wide(k: i32) -> Result<u8, CompileError> {
    u8::try_from(k)
        .ok()
        .filter(|k| *k <= crate::typing::DECIMAL_WIDE_DIGITS)
        .ok_or_else(|| {
            CompileError::new(
                codes::OUT_OF_RANGE,
                "a DECIMAL scale difference above 38 digits",
            )
        })
}

fn heap_for(types: &[SqlType]) -> u32 {
    if types.iter().any(|t| prim_of(t) == Some(Prim::Str)) {
        BATCH_HEAP_BYTES
    } else {
        0
    }
}

/// A literal in register form.
pub(crate) fn lit(v: &Value, ty: &SqlType) -> Result<Lit, CompileError> {
    let p = prim(ty)?;
    Ok(match (v, p) {
        (Value::Null, p) => Lit::Null(p),
        (Value::Boolean(b), Prim::Bool) => Lit::Bool(*b),
        (Value::SmallInt(x), Prim::I32) => Lit::I32(i32::from(*x)),
        (Value::Integer(x), Prim::I32) => Lit::I32(*x),
        (Value::Date(d), Prim::I32) => Lit::I32(d.0),
        (Value::BigInt(x), Prim::I64) => Lit::I64(*x),
        (Value::Timestamp(t), Prim::I64) => Lit::I64(t.0),
        (Value::Decimal(d), Prim::I64) => {
            let want = i32::from(scale_of(ty));
            let have = i32::from(d.scale());
            let m = if want >= have {
                d.mantissa().checked_mul(i128::from(pow10(want - have)?))
            } else {
                None
            };
            let m = m.and_then(|m| i64::try_from(m).ok()).ok_or_else(|| {
                CompileError::new(
                    codes::OUT_OF_RANGE,
                    format!("the constant {d:?} does not fit {ty}"),
                )
            })?;
            Lit::I64(m)
        }
        (Value::Decimal(d), Prim::I128) => {
            let want = i32::from(scale_of(ty));
            let have = i32::from(d.scale());
            let m = if want >= have {
                10i128
                    .checked_pow(u32::try_from(want - have).unwrap_or(u32::MAX))
                    .and_then(|k| d.mantissa().checked_mul(k))
            } else {
                None
            };
            Lit::I128(m.ok_or_else(|| {
                CompileError::new(
                    codes::OUT_OF_RANGE,
                    format!("the constant {d:?} does not fit {ty}"),
                )
            })?)
        }
        (Value::SmallInt(_) | Value::Integer(_) | Value::BigInt(_), Prim::I128) => {
            let x = match v {
                Value::SmallInt(x) => i128::from(*x),
                Value::Integer(x) => i128::from(*x),
                Value::BigInt(x) => i128::from(*x),
                _ => 0,
            };
            return lit(&Value::Decimal(scratchbird_types::Decimal::new(x, 0)), ty);
        }
        (Value::Double(x), Prim::F64) => Lit::F64(*x),
        (Value::Text(s), Prim::Str) => Lit::Str(s.as_bytes().to_vec()),
        (Value::Blob(b), Prim::Str) => Lit::Str(b.clone()),
        (v, _) => return Err(internal(format!("literal {v:?} typed {ty}"))),
    })
}

/// The conversion of a register value of type `from` to type `to`.
pub(crate) fn cast(e: Expr, from: &SqlType, to: &SqlType) -> Result<Expr, CompileError> {
    use SqlType as T;
    let c = |k: Cast, e: Expr| Expr::Cast(k, Box::new(e));
    let (pf, pt) = (prim(from)?, prim(to)?);
    let (sf, st) = (i32::from(scale_of(from)), i32::from(scale_of(to)));
    let numeric = |t: &T| matches!(t, T::SmallInt | T::Integer | T::BigInt | T::Decimal { .. });
    Ok(match (from, to) {
        _ if from == to => e,
        (T::Varchar { .. } | T::Text, T::Varchar { .. } | T::Text) => e,
        (T::Blob, T::Blob) => e,
        (f, t) if numeric(f) && numeric(t) && (pf == Prim::I128 || pt == Prim::I128) => {
            // through 128 bits: widen, rescale, then check or narrow
            let mut w = match pf {
                Prim::I32 => c(Cast::Widen, c(Cast::I32ToI64, e)),
                Prim::I64 => c(Cast::Widen, e),
                _ => e,
            };
            if st > sf {
                w = c(Cast::Rescale128(pow10_wide(st - sf)?), w);
            } else if st < sf {
                w = c(Cast::Unscale128(pow10_wide(sf - st)?), w);
            }
            match (pt, t) {
                (Prim::I128, T::Decimal { precision, .. }) if *precision < 38 => {
                    c(Cast::CheckDigits128(*precision), w)
                }
                (Prim::I128, _) => w,
                (Prim::I64, T::Decimal { precision, .. }) if *precision < 18 => {
                    c(Cast::CheckDigits(*precision), c(Cast::Narrow, w))
                }
                (Prim::I64, _) => c(Cast::Narrow, w),
                _ => c(Cast::I64ToI32, c(Cast::Narrow, w)),
            }
        }
        (f, T::Double) if numeric(f) && pf == Prim::I128 => c(Cast::I128ToF64(scale_of(f)), e),
        (T::Double, t) if numeric(t) && pt == Prim::I128 => {
            // through 64 bits: a double beyond 18 digits is out of range
            let w = c(Cast::Widen, c(Cast::F64ToI64(pow10(st)?), e));
            match t {
                T::Decimal { precision, .. } if *precision < 38 => {
                    c(Cast::CheckDigits128(*precision), w)
                }
                _ => w,
            }
        }
        (f, T::Varchar { .. } | T::Text) if numeric(f) && pf == Prim::I128 => {
            c(Cast::Dec128ToStr(scale_of(f)), e)
        }
        (T::Varchar { .. } | T::Text, t) if numeric(t) && pt == Prim::I128 => {
            let w = c(Cast::StrToDec128(scale_of(t)), e);
            match t {
                T::Decimal { precision, .. } if *precision < 38 => {
                    c(Cast::CheckDigits128(*precision), w)
                }
                _ => w,
            }
        }
        (f, t) if numeric(f) && numeric(t) => {
            // to i64 at the target scale, then narrow
            let wide = match pf {
                Prim::I32 => {
                    if st > 0 {
                        c(Cast::I32ToDec(pow10(st)?), e)
                    } else {
                        c(Cast::I32ToI64, e)
                    }
                }
                _ => {
                    if st > sf {
                        c(Cast::Rescale(pow10(st - sf)?), e)
                    } else if st < sf {
                        c(Cast::Unscale(pow10(sf - st)?), e)
                    } else {
                        e
                    }
                }
            };
            let wide = match to {
                T::Decimal { precision, .. } if *precision < 18 => {
                    c(Cast::CheckDigits(*precision), wide)
                }
                _ => wide,
            };
            match pt {
                Prim::I32 => {
                    if pf == Prim::I32 && sf == 0 && st == 0 {
                        // SMALLINT <-> INTEGER: same register; the sink checks the range
                        match wide {
                            Expr::Cast(Cast::I32ToI64, inner) => *inner,
                            other => c(Cast::I64ToI32, other),
                        }
                    } else {
                        c(Cast::I64ToI32, wide)
                    }
                }
                _ => wide,
            }
        }
        (f, T::Double) if numeric(f) => match pf {
            Prim::I32 => c(Cast::I32ToF64, e),
            _ => c(Cast::I64ToF64(pow10(sf)?), e),
        },
        (T::Double, t) if numeric(t) => {
            let wide = if matches!(t, T::Decimal { .. }) {
                c(Cast::F64ToI64(pow10(st)?), e)
            } else {
                c(Cast::F64ToInt, e)
            };
            let wide = match t {
                T::Decimal { precision, .. } if *precision < 18 => {
                    c(Cast::CheckDigits(*precision), wide)
                }
                _ => wide,
            };
            if pt == Prim::I32 {
                c(Cast::I64ToI32, wide)
            } else {
                wide
            }
        }
        (T::Boolean, T::SmallInt | T::Integer) => c(Cast::BoolToI32, e),
        (T::Boolean, T::Varchar { .. } | T::Text) => c(Cast::BoolToStr, e),
        (T::Double, T::Varchar { .. } | T::Text) => c(Cast::F64ToStr, e),
        (T::Varchar { .. } | T::Text, T::Double) => c(Cast::StrToF64, e),
        (f, T::Varchar { .. } | T::Text) if numeric(f) => match pf {
            Prim::I32 => c(Cast::I32ToStr, e),
            _ => c(Cast::DecToStr(scale_of(f)), e),
        },
        (T::Varchar { .. } | T::Text, t) if numeric(t) => {
            let v = c(Cast::StrToDec(scale_of(t)), e);
            let v = match t {
                T::Decimal { precision, .. } if *precision < 18 => {
                    c(Cast::CheckDigits(*precision), v)
                }
                _ => v,
            };
            if pt == Prim::I32 {
                c(Cast::I64ToI32, v)
            } else {
                v
            }
        }
        (T::Date, T::Varchar { .. } | T::Text) => c(Cast::DateToStr, e),
        (T::Timestamp, T::Varchar { .. } | T::Text) => c(Cast::TsToStr, e),
        (T::Varchar { .. } | T::Text, T::Date) => c(Cast::StrToDate, e),
        (T::Varchar { .. } | T::Text, T::Timestamp) => c(Cast::StrToTs, e),
        (T::Varchar { .. } | T::Text, T::Boolean) => c(Cast::StrToBool, e),
        (T::Date, T::Timestamp) => c(Cast::DateToTs, e),
        (T::Timestamp, T::Date) => c(Cast::TsToDate, e),
        (f, t) => {
            let _ = (pf, pt);
            return Err(unsupported(format!("converting {f} to {t} at run time"))
                .hint("write the value as a literal of the target type, e.g. DATE '2024-01-31'"));
        }
    })
}

/// Lowers expressions over a slot map.
pub(crate) struct Lowerer<'a> {
    pub(crate) slots: &'a HashMap<ColId, usize>,
}

impl Lowerer<'_> {
    pub(crate) fn expr(&self, e: &BExpr) -> Result<Expr, CompileError> {
        let b = |x: &BExpr| -> Result<Box<Expr>, CompileError> { Ok(Box::new(self.expr(x)?)) };
        Ok(match &e.kind {
            BK::Col(c) => Expr::Col(
                *self
                    .slots
                    .get(c)
                    .ok_or_else(|| internal(format!("column #{c} is not in scope")))?,
            ),
            BK::Lit(v) => Expr::Lit(lit(v, &e.ty)?),
            BK::Arith(op, l, r) => {
                let p = prim(&e.ty)?;
                if let SqlType::Decimal { scale, .. } = e.ty
                    && *op == ArithOp::Div
                {
                    // a / b at result scale rs: (a * 10^(rs - sa + sb)) / b, rounded
                    let (sa, sb) = (i32::from(scale_of(&l.ty)), i32::from(scale_of(&r.ty)));
                    let k = i32::from(scale) - sa + sb;
                    let mut left = self.expr(l)?;
                    let wide = p == Prim::I128;
                    if k > 0 {
                        let c = if wide {
                            Cast::Rescale128(pow10_wide(k)?)
                        } else {
                            Cast::Rescale(pow10(k)?)
                        };
                        left = Expr::Cast(c, Box::new(left));
                    } else if k < 0 {
                        let c = if wide {
                            Cast::Unscale128(pow10_wide(-k)?)
                        } else {
                            Cast::Unscale(pow10(-k)?)
                        };
                        left = Expr::Cast(c, Box::new(left));
                    }
                    Expr::Arith {
                        op: ArithOp::DivRound,
                        prim: p,
                        l: Box::new(left),
                        r: b(r)?,
                    }
                } else {
                    Expr::Arith {
                        op: *op,
                        prim: p,
                        l: b(l)?,
                        r: b(r)?,
                    }
                }
            }
            BK::Neg(a) => Expr::Neg(prim(&e.ty)?, b(a)?),
            BK::Cmp(op, l, r) => Expr::Cmp {
                op: *op,
                prim: prim(&l.ty)?,
                l: b(l)?,
                r: b(r)?,
            },
            BK::And(l, r) => Expr::And(b(l)?, b(r)?),
            BK::Or(l, r) => Expr::Or(b(l)?, b(r)?),
            BK::Not(a) => Expr::Not(b(a)?),
            BK::IsNull(a) => Expr::IsNull(b(a)?),
            BK::Case(whens, els) => Expr::Case {
                whens: whens
                    .iter()
                    .map(|(c, v)| Ok((self.expr(c)?, self.expr(v)?)))
                    .collect::<Result<_, CompileError>>()?,
                els: b(els)?,
                prim: prim(&e.ty)?,
            },
            BK::Cast(a) => cast(self.expr(a)?, &a.ty, &e.ty)?,
            BK::Func(f, args) => Expr::Call {
                func: *f,
                args: args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<_, _>>()?,
            },
            BK::Init(i) => Expr::Init(*i),
            BK::InSet(a, i) => Expr::InSet(b(a)?, *i),
        })
    }
}

fn used_in_expr(e: &BExpr, used: &mut HashSet<ColId>) {
    let mut v = Vec::new();
    e.columns(&mut v);
    used.extend(v);
}

pub(crate) fn used_cols(rel: &Rel, used: &mut HashSet<ColId>) {
    match rel {
        Rel::Scan { .. } | Rel::Values { .. } | Rel::Exchange { .. } | Rel::WorkTable { .. } => {}
        Rel::Recursive { base, step, .. } => {
            // columns are positional: every one of both terms
            used.extend(base.output());
            used.extend(step.output());
            used_cols(base, used);
            used_cols(step, used);
        }
        Rel::Filter { input, pred } => {
            used_in_expr(pred, used);
            used_cols(input, used);
        }
        Rel::Project { input, exprs } => {
            for (_, e) in exprs {
                used_in_expr(e, used);
            }
            used_cols(input, used);
        }
        Rel::Aggregate { input, keys, aggs } => {
            for (_, e) in keys {
                used_in_expr(e, used);
            }
            for (_, a) in aggs {
                if let Some(e) = &a.arg {
                    used_in_expr(e, used);
                }
            }
            used_cols(input, used);
        }
        Rel::Sort { input, keys, .. } => {
            used.extend(keys.iter().map(|k| k.col));
            used_cols(input, used);
        }
        Rel::Limit { input, .. } => used_cols(input, used),
        Rel::Repeat { input, count } => {
            used_in_expr(count, used);
            used_cols(input, used);
        }
        Rel::Distinct { input } => {
            used.extend(input.output());
            used_cols(input, used);
        }
        Rel::Join {
            left, right, on, ..
        } => {
            if let Some(e) = on {
                used_in_expr(e, used);
            }
            used_cols(left, used);
            used_cols(right, used);
        }
        Rel::Mark {
            left,
            right,
            on,
            test,
            ..
        } => {
            for e in on.iter().chain(test) {
                used_in_expr(e, used);
            }
            used_cols(left, used);
            used_cols(right, used);
        }
        Rel::UnionAll { inputs, .. } => {
            for i in inputs {
                used.extend(i.output());
                used_cols(i, used);
            }
        }
        Rel::Window {
            input,
            partition,
            order,
            funcs,
        } => {
            used.extend(partition.iter().copied());
            used.extend(order.iter().map(|k| k.col));
            for (_, w) in funcs {
                for e in w.arg.iter().chain(&w.default) {
                    used_in_expr(e, used);
                }
            }
            used_cols(input, used);
        }
    }
}

/// The conjuncts of a join condition that equate an expression of the left
/// side with one of the right (hash keys, left's then right's), and the rest.
pub(crate) fn equi_keys(
    on: Option<&BExpr>,
    lset: &HashSet<ColId>,
    rset: &HashSet<ColId>,
) -> (Vec<BExpr>, Vec<BExpr>, Vec<BExpr>) {
    let mut pk = Vec::new();
    let mut bk = Vec::new();
    let mut rest = Vec::new();
    let side = |e: &BExpr, set: &HashSet<ColId>| {
        let mut v = Vec::new();
        e.columns(&mut v);
        !v.is_empty() && v.iter().all(|x| set.contains(x))
    };
    for c in on.cloned().map(BExpr::conjuncts).unwrap_or_default() {
        if let BK::Cmp(CmpOp::Eq, a, b) = &c.kind {
            if side(a, lset) && side(b, rset) {
                pk.push((**a).clone());
                bk.push((**b).clone());
                continue;
            }
            if side(b, lset) && side(a, rset) {
                pk.push((**b).clone());
                bk.push((**a).clone());
                continue;
            }
        }
        rest.push(c);
    }
    (pk, bk, rest)
}

/// A join's two sides, lowered (see `Builder::join_sides`).
struct JoinSides {
    lop: Op,
    rop: Op,
    lschema: Vec<ColId>,
    /// The left's columns then the right's.
    joined: Vec<ColId>,
    probe_keys: Vec<Expr>,
    build_keys: Vec<Expr>,
    residual: Option<Expr>,
}

/// Builds the program and manifest of one statement.
pub(crate) struct Builder<'a> {
    pub(crate) meta: &'a HashMap<ColId, ColMeta>,
    used: HashSet<ColId>,
    pub(crate) manifest: PlanManifest,
    /// Row estimates, which choose the side a LEFT or mark join holds.
    est: Option<crate::cost::Estimator<'a>>,
    /// The manifest scan that reads each column of a table scan lowered.
    scan_at: HashMap<ColId, usize>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(
        meta: &'a HashMap<ColId, ColMeta>,
        roots: &[&Rel],
        inits: &[(InitKind, Rel)],
    ) -> Self {
        let mut used = HashSet::new();
        for root in roots {
            used_cols(root, &mut used);
            used.extend(root.output());
        }
        for (_, r) in inits {
            used_cols(r, &mut used);
            used.extend(r.output());
        }
        Self {
            meta,
            used,
            manifest: PlanManifest {
                abi: ABI_VERSION,
                scans: Vec::new(),
                outputs: Vec::new(),
                writes: Vec::new(),
                inputs: Vec::new(),
            },
            est: None,
            scan_at: HashMap::new(),
        }
    }

    /// This builder choosing join sides by `cat`'s row estimates (without:
    /// a LEFT or mark join holds its right side).
    pub(crate) fn with_estimates(mut self, cat: &'a crate::catalog::Catalog) -> Self {
        self.est = Some(crate::cost::Estimator::new(cat));
        self
    }

    /// Whether a join of `left` with `right` on `on` should hold `left` (the
    /// side every row of which it keeps) rather than `right`: when `left`
    /// is estimated smaller and an equality gives hash keys.
    fn holds_left(&self, left: &Rel, right: &Rel, on: Option<&BExpr>) -> bool {
        self.est
            .as_ref()
            .is_some_and(|est| crate::cost::holds_left(est, left, right, on))
    }

    fn ty(&self, c: ColId) -> Result<SqlType, CompileError> {
        self.meta
            .get(&c)
            .map(|m| m.ty)
            .ok_or_else(|| internal(format!("no type for column #{c}")))
    }

    fn slot_map(schema: &[ColId]) -> HashMap<ColId, usize> {
        schema.iter().enumerate().map(|(i, c)| (*c, i)).collect()
    }

    /// Lowers a relation; returns the operator and its slot order.
    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub(crate) fn rel(&mut self, rel: &Rel) -> Result<(Op, Vec<ColId>), CompileError> {
        match rel {
            Rel::Scan {
                table,
                cols,
                key,
                range,
            } => self.scan(table, cols, *key, range),
            Rel::Values { cols, rows } => {
                let types: Vec<SqlType> =
                    cols.iter().map(|c| self.ty(*c)).collect::<Result<_, _>>()?;
                let prims = types.iter().map(prim).collect::<Result<Vec<_>, _>>()?;
                let rows = rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .zip(&types)
                            .map(|(v, t)| lit(v, t))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((Op::Values { prims, rows }, cols.clone()))
            }
            Rel::Repeat { input, count } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let count = Lowerer { slots: &map }.expr(count)?;
                Ok((
                    Op::Repeat {
                        input: Box::new(op),
                        count,
                    },
                    schema,
                ))
            }
            Rel::Filter { input, pred } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let pred = Lowerer { slots: &map }.expr(pred)?;
                Ok((
                    Op::Filter {
                        input: Box::new(op),
                        pred,
                    },
                    schema,
                ))
            }
            Rel::Project { input, exprs } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let l = Lowerer { slots: &map };
                let out = exprs
                    .iter()
                    .map(|(_, e)| l.expr(e))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((
                    Op::Project {
                        input: Box::new(op),
                        exprs: out,
                    },
                    exprs.iter().map(|(c, _)| *c).collect(),
                ))
            }
            Rel::Aggregate { input, keys, aggs } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let l = Lowerer { slots: &map };
                let k = keys
                    .iter()
                    .map(|(_, e)| l.expr(e))
                    .collect::<Result<Vec<_>, _>>()?;
                let a = aggs
                    .iter()
                    .map(|(_, a)| {
                        Ok(AggCall {
                            func: match a.kind {
                                AggKind::CountStar => AggFunc::CountStar,
                                AggKind::Count => AggFunc::Count,
                                AggKind::Sum if crate::typing::is_wide(&a.ty) => AggFunc::SumWide,
                                AggKind::Sum => AggFunc::Sum,
                                AggKind::Min => AggFunc::Min,
                                AggKind::Max => AggFunc::Max,
                            },
                            arg: a.arg.as_ref().map(|e| l.expr(e)).transpose()?,
                        })
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                Ok((
                    Op::Aggregate {
                        input: Box::new(op),
                        keys: k,
                        aggs: a,
                    },
                    rel.output(),
                ))
            }
            Rel::Sort { input, keys, limit } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let k = keys
                    .iter()
                    .map(|k| {
                        Ok(SortKey {
                            col: *map
                                .get(&k.col)
                                .ok_or_else(|| internal("sort key not in scope"))?,
                            desc: k.desc,
                            nulls_first: k.nulls_first,
                        })
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                Ok((
                    Op::Sort {
                        input: Box::new(op),
                        keys: k,
                        limit: *limit,
                    },
                    schema,
                ))
            }
            Rel::Recursive {
                base,
                step,
                work,
                distinct,
                cols,
            } => {
                let (b, _) = self.rel(base)?;
                let (s, _) = self.rel(step)?;
                Ok((
                    Op::Recursive {
                        base: Box::new(b),
                        step: Box::new(s),
                        work: *work,
                        distinct: *distinct,
                    },
                    cols.clone(),
                ))
            }
            Rel::WorkTable { work, cols } => {
                let prims = cols
                    .iter()
                    .map(|c| prim(&self.ty(*c)?))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((Op::WorkTable { work: *work, prims }, cols.clone()))
            }
            Rel::Window {
                input,
                partition,
                order,
                funcs,
            } => {
                let (op, schema) = self.rel(input)?;
                let map = Self::slot_map(&schema);
                let slot = |c: &ColId| {
                    map.get(c)
                        .copied()
                        .ok_or_else(|| internal("window key not in scope"))
                };
                let partition = partition.iter().map(slot).collect::<Result<_, _>>()?;
                let order = order
                    .iter()
                    .map(|k| {
                        Ok(SortKey {
                            col: slot(&k.col)?,
                            desc: k.desc,
                            nulls_first: k.nulls_first,
                        })
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                let l = Lowerer { slots: &map };
                let calls = funcs
                    .iter()
                    .map(|(_, w)| {
                        Ok(WinCall {
                            func: w.func,
                            arg: w.arg.as_ref().map(|e| l.expr(e)).transpose()?,
                            default: w.default.as_ref().map(|e| l.expr(e)).transpose()?,
                            frame: w.frame,
                            range: w.range.as_ref().map(range_tests).transpose()?,
                        })
                    })
                    .collect::<Result<Vec<_>, CompileError>>()?;
                // the input's slots as lowered (a scan reads only the columns
                // used), then one per function
                let mut out = schema;
                out.extend(funcs.iter().map(|(c, _)| *c));
                Ok((
                    Op::Window {
                        input: Box::new(op),
                        partition,
                        order,
                        calls,
                    },
                    out,
                ))
            }
            Rel::Limit {
                input,
                limit,
                offset,
            } => {
                let (op, schema) = self.rel(input)?;
                Ok((
                    Op::Limit {
                        input: Box::new(op),
                        limit: *limit,
                        offset: *offset,
                    },
                    schema,
                ))
            }
            Rel::Distinct { input } => {
                let (op, schema) = self.rel(input)?;
                let keys = (0..schema.len()).map(Expr::Col).collect();
                Ok((
                    Op::Aggregate {
                        input: Box::new(op),
                        keys,
                        aggs: vec![],
                    },
                    schema,
                ))
            }
            Rel::UnionAll { inputs, cols } => {
                let mut ops = Vec::with_capacity(inputs.len());
                for i in inputs {
                    ops.push(self.rel(i)?.0);
                }
                Ok((Op::UnionAll { inputs: ops }, cols.clone()))
            }
            Rel::Join {
                left,
                right,
                kind,
                on,
            } => self.join(left, right, *kind, on.as_ref()),
            Rel::Mark {
                left,
                right,
                on,
                test,
                mark,
            } => self.mark(left, right, on.as_ref(), test.as_ref(), *mark),
            Rel::Exchange { input, cols } => {
                let types: Vec<SqlType> =
                    cols.iter().map(|c| self.ty(*c)).collect::<Result<_, _>>()?;
                for t in &types {
                    prim(t)?;
                }
                let nullable = cols
                    .iter()
                    .map(|c| self.meta.get(c).is_none_or(|m| m.nullable))
                    .collect();
                if *input != self.manifest.inputs.len() {
                    return Err(internal("merge inputs out of order"));
                }
                self.manifest.inputs.push(InputDecl {
                    heap_bytes: heap_for(&types),
                    types,
                    rows_max: BATCH_ROWS,
                });
                Ok((
                    Op::Input {
                        input: *input,
                        nullable,
                    },
                    cols.clone(),
                ))
            }
        }
    }

    fn scan(
        &mut self,
        table: &TableDef,
        cols: &[ColId],
        key: Option<ColId>,
        range: &scratchbird_guest_ops::abi::ScanRangeDecl,
    ) -> Result<(Op, Vec<ColId>), CompileError> {
        let mut picked: Vec<usize> = (0..cols.len())
            .filter(|i| cols.get(*i).is_some_and(|c| self.used.contains(c)))
            .collect();
        if picked.is_empty() && !table.columns.is_empty() {
            // nothing read (COUNT(*)): read the narrowest column
            let narrow = (0..table.columns.len())
                .min_by_key(|i| {
                    table
                        .columns
                        .get(*i)
                        .map_or(usize::MAX, |c| c.ty.physical().fixed_width().unwrap_or(64))
                })
                .unwrap_or(0);
            picked.push(narrow);
        }
        let mut columns = Vec::with_capacity(picked.len());
        let mut nullable = Vec::with_capacity(picked.len());
        let mut schema = Vec::with_capacity(picked.len() + 1);
        for i in picked {
            let c = table
                .columns
                .get(i)
                .ok_or_else(|| internal("scan column out of range"))?;
            prim(&c.ty)?;
            columns.push(ScanColumn { id: c.id, ty: c.ty });
            nullable.push(c.nullable);
            schema.push(*cols.get(i).ok_or_else(|| internal("scan column id"))?);
        }
        let types: Vec<SqlType> = columns.iter().map(|c| c.ty).collect();
        self.manifest.scans.push(ScanDecl {
            table: table.id,
            columns,
            range: range.clone(),
            with_keys: key.is_some(),
            rows_max: BATCH_ROWS,
            heap_bytes: heap_for(&types),
        });
        schema.extend(key);
        let at = self.manifest.scans.len() - 1;
        self.scan_at.extend(cols.iter().map(|c| (*c, at)));
        Ok((
            Op::Scan {
                scan: self.manifest.scans.len() - 1,
                nullable,
            },
            schema,
        ))
    }

    /// Both sides of a join lowered, and its condition split into hash keys
    /// (the probe's, the build's) and the rest, lowered over the joined tuple.
    /// With `constant_key` and no equality to hash on, every build row goes
    /// under one constant key.
    fn join_sides(
        &mut self,
        left: &Rel,
        right: &Rel,
        on: Option<&BExpr>,
        constant_key: bool,
    ) -> Result<JoinSides, CompileError> {
        let (lop, lschema) = self.rel(left)?;
        let (rop, rschema) = self.rel(right)?;
        let lset: HashSet<ColId> = lschema.iter().copied().collect();
        let rset: HashSet<ColId> = rschema.iter().copied().collect();
        let mut joined = lschema.clone();
        joined.extend(rschema.iter().copied());
        let (mut pk, mut bk, rest) = equi_keys(on, &lset, &rset);
        if pk.is_empty() && constant_key {
            let one = BExpr {
                kind: BK::Lit(Value::Boolean(true)),
                ty: SqlType::Boolean,
                nullable: false,
            };
            pk.push(one.clone());
            bk.push(one);
        }
        let full = Self::slot_map(&joined);
        let lmap = Self::slot_map(&lschema);
        let rmap = Self::slot_map(&rschema);
        let residual = BExpr::and_all(rest)
            .map(|e| Lowerer { slots: &full }.expr(&e))
            .transpose()?;
        let probe_keys = pk
            .iter()
            .map(|e| Lowerer { slots: &lmap }.expr(e))
            .collect::<Result<Vec<_>, _>>()?;
        let build_keys = bk
            .iter()
            .map(|e| Lowerer { slots: &rmap }.expr(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JoinSides {
            lop,
            rop,
            lschema,
            joined,
            probe_keys,
            build_keys,
            residual,
        })
    }

    fn join(
        &mut self,
        left: &Rel,
        right: &Rel,
        kind: JoinType,
        on: Option<&BExpr>,
    ) -> Result<(Op, Vec<ColId>), CompileError> {
        let jkind = match kind {
            JoinType::Left => JoinKind::Left,
            JoinType::Full => JoinKind::Full,
            JoinType::Inner | JoinType::Cross => JoinKind::Inner,
        };
        let choice = self
            .est
            .as_ref()
            .and_then(|e| crate::lookup::for_join(e, left, right, kind, on));
        if kind == JoinType::Left && self.holds_left(left, right, on) {
            return self.left_join_held(left, right, on, choice);
        }
        // a FULL join without an equality still hashes (on a constant), so
        // that its matched flags find the build rows no probe row matched
        let j = self.join_sides(left, right, on, kind == JoinType::Full)?;
        if j.probe_keys.is_empty() {
            return Ok((
                Op::NestedLoop {
                    left: Box::new(j.lop),
                    right: Box::new(j.rop),
                    kind: jkind,
                    cond: j.residual,
                },
                j.joined,
            ));
        }
        let lookup = match choice {
            Some(c) if jkind == JoinKind::Inner => self.lookup(&c, &j),
            _ => None,
        };
        Ok((
            Op::HashJoin {
                probe: Box::new(j.lop),
                build: Box::new(j.rop),
                probe_keys: j.probe_keys,
                build_keys: j.build_keys,
                kind: jkind,
                residual: j.residual,
                lookup,
            },
            j.joined,
        ))
    }

    /// Makes the scan `c` chose, lowered on `j`'s probe side, a lookup by
    /// `j`'s build keys; `None` (and no change) where the lowered join does
    /// not match the choice.
    fn lookup(
        &mut self,
        c: &crate::lookup::Choice<'_>,
        j: &JoinSides,
    ) -> Option<scratchbird_guest_ops::plan::Lookup> {
        let at = *self.scan_at.get(c.scan_cols.first()?)?;
        for (i, col) in c.pairs.iter().zip(&c.probe_cols) {
            match j.probe_keys.get(*i)? {
                Expr::Col(slot) if j.lschema.get(*slot) == Some(col) => {}
                _ => return None,
            }
            j.build_keys.get(*i)?;
        }
        let decl = self.manifest.scans.get_mut(at)?;
        if decl.range != ScanRangeDecl::All || decl.with_keys || decl.table != c.table.id {
            return None;
        }
        decl.range = c.range();
        Some(scratchbird_guest_ops::plan::Lookup {
            scan: at,
            keys: c.pairs.clone(),
        })
    }

    /// A LEFT JOIN holding its left side: a RIGHT hash join probed by the
    /// right side, projected back to the left's slots then the right's.
    fn left_join_held(
        &mut self,
        left: &Rel,
        right: &Rel,
        on: Option<&BExpr>,
        choice: Option<crate::lookup::Choice<'_>>,
    ) -> Result<(Op, Vec<ColId>), CompileError> {
        let j = self.join_sides(right, left, on, false)?;
        let lookup = choice.and_then(|c| self.lookup(&c, &j));
        let k = j.lschema.len();
        let n = j.joined.len();
        let order: Vec<usize> = (k..n).chain(0..k).collect();
        let schema = order
            .iter()
            .map(|i| j.joined.get(*i).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| internal("join slots"))?;
        Ok((
            Op::Project {
                input: Box::new(Op::HashJoin {
                    probe: Box::new(j.lop),
                    build: Box::new(j.rop),
                    probe_keys: j.probe_keys,
                    build_keys: j.build_keys,
                    kind: JoinKind::Right,
                    residual: j.residual,
                    lookup,
                }),
                exprs: order.into_iter().map(Expr::Col).collect(),
            },
            schema,
        ))
    }

    fn mark(
        &mut self,
        left: &Rel,
        right: &Rel,
        on: Option<&BExpr>,
        test: Option<&BExpr>,
        mark: ColId,
    ) -> Result<(Op, Vec<ColId>), CompileError> {
        let build_outer = self.holds_left(left, right, on);
        let j = self.join_sides(left, right, on, false)?;
        let full = Self::slot_map(&j.joined);
        let test = test.map(|e| Lowerer { slots: &full }.expr(e)).transpose()?;
        let mut schema = j.lschema;
        schema.push(mark);
        Ok((
            Op::MarkJoin {
                probe: Box::new(j.lop),
                build: Box::new(j.rop),
                probe_keys: j.probe_keys,
                build_keys: j.build_keys,
                residual: j.residual,
                test,
                build_outer,
            },
            schema,
        ))
    }

    /// Lowers the statement's init plans (uncorrelated subqueries), in order.
    pub(crate) fn inits(
        &mut self,
        inits: &[(InitKind, Rel)],
    ) -> Result<Vec<InitPlan>, CompileError> {
        let mut out = Vec::with_capacity(inits.len());
        for (k, r) in inits {
            let (op, _) = self.rel(r)?;
            out.push(match k {
                InitKind::Scalar => InitPlan::Scalar(op),
                InitKind::Exists => InitPlan::Exists(op),
                InitKind::Set => InitPlan::Set(op),
            });
        }
        Ok(out)
    }

    /// Declares output 0 for `cols` named `names`.
    pub(crate) fn output(
        &mut self,
        cols: &[ColId],
        names: Vec<String>,
    ) -> Result<usize, CompileError> {
        let types: Vec<SqlType> = cols.iter().map(|c| self.ty(*c)).collect::<Result<_, _>>()?;
        for t in &types {
            prim(t)?;
        }
        self.manifest.outputs.push(OutputDecl {
            names,
            heap_bytes: heap_for(&types),
            types,
            rows_max: BATCH_ROWS,
        });
        Ok(self.manifest.outputs.len() - 1)
    }

    /// Declares a write target.
    pub(crate) fn write_target(
        &mut self,
        table: &TableDef,
        kind: WriteKind,
        positions: &[usize],
        on_conflict: OnConflict,
        sets: Vec<u32>,
    ) -> Result<usize, CompileError> {
        let columns = positions
            .iter()
            .map(|p| {
                let c = table
                    .columns
                    .get(*p)
                    .ok_or_else(|| internal("write column out of range"))?;
                prim(&c.ty)?;
                Ok(ScanColumn { id: c.id, ty: c.ty })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
        let mut types: Vec<SqlType> = columns.iter().map(|c| c.ty).collect();
        if kind != WriteKind::Insert {
            types.push(SqlType::Blob);
        }
        self.manifest.writes.push(WriteDecl {
            table: table.id,
            kind,
            columns,
            on_conflict,
            sets,
            rows_max: BATCH_ROWS,
            heap_bytes: heap_for(&types),
        });
        Ok(self.manifest.writes.len() - 1)
    }
}

/// Puts a statement's init plans and pipelines together.
pub(crate) fn program(inits: Vec<InitPlan>, pipelines: Vec<(Op, Sink)>) -> Program {
    Program { inits, pipelines }
}
