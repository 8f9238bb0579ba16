//! Constant folding: subexpressions over constants are computed at compile time.
//! A computation that would fail (overflow, division by zero) is left for run time,
//! so a query raises it only if the value is actually needed, as SQL requires.

use crate::logical::{BExpr, BK};
use scratchbird_guest_ops::plan::{ArithOp, CmpOp, Func};
use scratchbird_types::{Date, Decimal, SqlType, Value};
use std::cmp::Ordering;

fn scale_of(t: &SqlType) -> u8 {
    crate::lower::scale_of(t)
}

/// A literal's value as an exact scaled integer, with its scale.
fn as_scaled(v: &Value) -> Option<(i128, u8)> {
    Some(match v {
        Value::SmallInt(x) => (i128::from(*x), 0),
        Value::Integer(x) => (i128::from(*x), 0),
        Value::BigInt(x) => (i128::from(*x), 0),
        Value::Decimal(d) => (d.mantissa(), d.scale()),
        _ => return None,
    })
}

/// A scaled integer as a value of `ty`, if it fits.
fn from_scaled(m: i128, s: u8, ty: &SqlType) -> Option<Value> {
    let want = scale_of(ty);
    let m = if want >= s {
        m.checked_mul(10i128.checked_pow(u32::from(want - s))?)?
    } else {
        return None;
    };
    Some(match ty {
        SqlType::SmallInt => Value::SmallInt(i16::try_from(m).ok()?),
        SqlType::Integer => Value::Integer(i32::try_from(m).ok()?),
        SqlType::BigInt => Value::BigInt(i64::try_from(m).ok()?),
        SqlType::Decimal { .. } => {
            i64::try_from(m).ok()?;
            Value::Decimal(Decimal::new(m, want))
        }
        _ => return None,
    })
}

fn lit(e: &BExpr) -> Option<&Value> {
    match &e.kind {
        BK::Lit(v) => Some(v),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Boolean(x), Value::Boolean(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.0.cmp(&y.0)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Some(x.0.cmp(&y.0)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        _ => {
            let (ma, sa) = as_scaled(a)?;
            let (mb, sb) = as_scaled(b)?;
            let s = sa.max(sb);
            let ma = ma.checked_mul(10i128.checked_pow(u32::from(s - sa))?)?;
            let mb = mb.checked_mul(10i128.checked_pow(u32::from(s - sb))?)?;
            Some(ma.cmp(&mb))
        }
    }
}

/// A bit operator on two integers, into `ty` (the operator's result type).
fn bits(op: ArithOp, a: &Value, b: &Value, ty: &SqlType) -> Option<Value> {
    let int = |v: &Value| match v {
        Value::SmallInt(x) => Some(i64::from(*x)),
        Value::Integer(x) => Some(i64::from(*x)),
        Value::BigInt(x) => Some(*x),
        _ => None,
    };
    let (x, y) = (int(a)?, int(b)?);
    // a shift count is taken modulo the width, as wasm and x86 do
    let count = u32::try_from(y & 63).ok()?;
    let r: i64 = match (op, ty) {
        (ArithOp::BitAnd, _) => x & y,
        (ArithOp::BitOr, _) => x | y,
        (ArithOp::BitXor, _) => x ^ y,
        (ArithOp::Shl, SqlType::BigInt) => x.wrapping_shl(count),
        (ArithOp::Shr, SqlType::BigInt) => x.wrapping_shr(count),
        (ArithOp::Shl | ArithOp::Shl16, _) => {
            let r = i32::try_from(x).ok()?.wrapping_shl(count);
            if op == ArithOp::Shl16 {
                let bytes = r.to_le_bytes();
                i64::from(i16::from_le_bytes([bytes[0], bytes[1]]))
            } else {
                i64::from(r)
            }
        }
        (ArithOp::Shr, _) => i64::from(i32::try_from(x).ok()?.wrapping_shr(count)),
        _ => return None,
    };
    Some(match ty {
        SqlType::SmallInt => Value::SmallInt(i16::try_from(r).ok()?),
        SqlType::Integer => Value::Integer(i32::try_from(r).ok()?),
        SqlType::BigInt => Value::BigInt(r),
        _ => return None,
    })
}

fn arith(op: ArithOp, a: &Value, b: &Value, ty: &SqlType) -> Option<Value> {
    if op.is_bitwise() {
        return bits(op, a, b, ty);
    }
    if let (Value::Double(x), Value::Double(y)) = (a, b) {
        let r = match op {
            ArithOp::Add => x + y,
            ArithOp::Sub => x - y,
            ArithOp::Mul => x * y,
            ArithOp::Div | ArithOp::DivRound => {
                if *y == 0.0 {
                    return None;
                }
                x / y
            }
            _ => return None,
        };
        return r.is_finite().then_some(Value::Double(r));
    }
    if let (Value::Date(d), Value::Integer(n)) = (a, b)
        && *ty == SqlType::Date
    {
        let r = match op {
            ArithOp::Add => d.0.checked_add(*n)?,
            ArithOp::Sub => d.0.checked_sub(*n)?,
            _ => return None,
        };
        return Some(Value::Date(Date(r)));
    }
    let (ma, sa) = as_scaled(a)?;
    let (mb, sb) = as_scaled(b)?;
    let (m, s) = match op {
        ArithOp::Add | ArithOp::Sub | ArithOp::Mod => {
            let s = sa.max(sb);
            let x = ma.checked_mul(10i128.checked_pow(u32::from(s - sa))?)?;
            let y = mb.checked_mul(10i128.checked_pow(u32::from(s - sb))?)?;
            let r = match op {
                ArithOp::Add => x.checked_add(y)?,
                ArithOp::Sub => x.checked_sub(y)?,
                _ => {
                    if y == 0 {
                        return None;
                    }
                    x.checked_rem(y)?
                }
            };
            (r, s)
        }
        ArithOp::Mul => (ma.checked_mul(mb)?, sa + sb),
        // folded by `bits`, never here
        ArithOp::BitAnd
        | ArithOp::BitOr
        | ArithOp::BitXor
        | ArithOp::Shl
        | ArithOp::Shl16
        | ArithOp::Shr => return None,
        ArithOp::Div | ArithOp::DivRound => {
            if mb == 0 {
                return None;
            }
            let rs = scale_of(ty);
            if rs == 0 && sa == 0 && sb == 0 {
                (ma.checked_div(mb)?, 0)
            } else {
                // (a * 10^(rs - sa + sb)) / b rounded half away from zero
                let k = i32::from(rs) - i32::from(sa) + i32::from(sb);
                let x = if k >= 0 {
                    ma.checked_mul(10i128.checked_pow(u32::try_from(k).ok()?)?)?
                } else {
                    return None;
                };
                let q = x / mb;
                let r = x % mb;
                let q = if r.checked_abs()?.checked_mul(2)? >= mb.checked_abs()? {
                    q + if (x < 0) != (mb < 0) { -1 } else { 1 }
                } else {
                    q
                };
                (q, rs)
            }
        }
    };
    // the generated code computes in i64: only fold what it would also compute
    i64::try_from(m).ok()?;
    from_scaled(m, s, ty)
}

/// Folds constant subexpressions of `e`.
#[must_use]
pub fn fold(e: BExpr) -> BExpr {
    let BExpr { kind, ty, nullable } = e;
    let f = |x: Box<BExpr>| Box::new(fold(*x));
    let kind = match kind {
        BK::Arith(op, a, b) => BK::Arith(op, f(a), f(b)),
        BK::Cmp(op, a, b) => BK::Cmp(op, f(a), f(b)),
        BK::And(a, b) => BK::And(f(a), f(b)),
        BK::Or(a, b) => BK::Or(f(a), f(b)),
        BK::Neg(a) => BK::Neg(f(a)),
        BK::Not(a) => BK::Not(f(a)),
        BK::IsNull(a) => BK::IsNull(f(a)),
        BK::Cast(a) => BK::Cast(f(a)),
        BK::Case(w, els) => BK::Case(
            w.into_iter().map(|(c, v)| (fold(c), fold(v))).collect(),
            f(els),
        ),
        BK::Func(func, args) => BK::Func(func, args.into_iter().map(fold).collect()),
        k => k,
    };
    let folded: Option<Value> = match &kind {
        BK::Arith(op, a, b) => match (lit(a), lit(b)) {
            (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
            (Some(x), Some(y)) => {
                let (x, y) = (x.clone(), y.clone());
                if a.ty == SqlType::Date && b.ty == SqlType::Date {
                    match (op, &x, &y) {
                        (ArithOp::Sub, Value::Date(p), Value::Date(q)) => {
                            p.0.checked_sub(q.0).map(Value::Integer)
                        }
                        _ => None,
                    }
                } else {
                    arith(*op, &x, &y, &ty)
                }
            }
            _ => None,
        },
        BK::Neg(a) => match lit(a) {
            Some(Value::Null) => Some(Value::Null),
            Some(Value::Integer(x)) => x.checked_neg().map(Value::Integer),
            Some(Value::BigInt(x)) => x.checked_neg().map(Value::BigInt),
            Some(Value::SmallInt(x)) => x.checked_neg().map(Value::SmallInt),
            Some(Value::Double(x)) => Some(Value::Double(-x)),
            Some(Value::Decimal(d)) => Some(Value::Decimal(Decimal::new(-d.mantissa(), d.scale()))),
            _ => None,
        },
        BK::Cmp(op, a, b) => match (lit(a), lit(b)) {
            (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
            (Some(x), Some(y)) => compare(x, y).map(|o| {
                Value::Boolean(match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::Ne => o != Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Ge => o != Ordering::Less,
                })
            }),
            _ => None,
        },
        BK::Not(a) => match lit(a) {
            Some(Value::Boolean(b)) => Some(Value::Boolean(!b)),
            Some(Value::Null) => Some(Value::Null),
            _ => None,
        },
        BK::And(a, b) => match (lit(a), lit(b)) {
            (Some(Value::Boolean(false)), _) | (_, Some(Value::Boolean(false)))
                if lit(a).is_some() && lit(b).is_some() =>
            {
                Some(Value::Boolean(false))
            }
            (Some(Value::Boolean(true)), Some(Value::Boolean(true))) => Some(Value::Boolean(true)),
            (Some(_), Some(_)) => Some(Value::Null),
            _ => None,
        },
        BK::Or(a, b) => match (lit(a), lit(b)) {
            (Some(Value::Boolean(true)), Some(_)) | (Some(_), Some(Value::Boolean(true))) => {
                Some(Value::Boolean(true))
            }
            (Some(Value::Boolean(false)), Some(Value::Boolean(false))) => {
                Some(Value::Boolean(false))
            }
            (Some(_), Some(_)) => Some(Value::Null),
            _ => None,
        },
        BK::IsNull(a) => lit(a).map(|v| Value::Boolean(v.is_null())),
        BK::Func(Func::AddMonths, args) => match args.as_slice() {
            [d, n] => match (lit(d), lit(n)) {
                (Some(Value::Date(d)), Some(Value::Integer(n))) => {
                    add_months(*d, *n).map(Value::Date)
                }
                (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    match folded {
        Some(v) => {
            let nullable = v.is_null();
            BExpr {
                kind: BK::Lit(v),
                ty,
                nullable,
            }
        }
        None => BExpr { kind, ty, nullable },
    }
}

/// `d` plus `n` months, clamping the day to the month's length.
fn add_months(d: Date, n: i32) -> Option<Date> {
    let (y, m, day) = d.to_ymd();
    let total = y
        .checked_mul(12)?
        .checked_add(i64::from(m) - 1)?
        .checked_add(i64::from(n))?;
    let ny = i32::try_from(total.div_euclid(12)).ok()?;
    let nm = u32::try_from(total.rem_euclid(12) + 1).ok()?;
    let mut dd = day;
    loop {
        if let Some(x) = Date::from_ymd(ny, nm, dd) {
            return Some(x);
        }
        dd = dd.checked_sub(1)?;
        if dd < 28 {
            return None;
        }
    }
}
