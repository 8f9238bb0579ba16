//! Typing rules: numeric promotion, the result types of operators, and the parsing
//! of typed literals.

use crate::error::{CompileError, codes};
use crate::logical::{BExpr, BK};
use scratchbird_guest_ops::plan::ArithOp;
use scratchbird_types::{Date, Decimal, SqlType, Timestamp, Value};

/// Digits of the narrow DECIMAL arithmetic in generated code (64-bit).
pub const DECIMAL_COMPUTE_DIGITS: u8 = 18;
/// Digits of the wide DECIMAL arithmetic (128-bit): sums of DECIMALs, and
/// whatever computes with a DECIMAL of more than 18 digits.
pub const DECIMAL_WIDE_DIGITS: u8 = 38;
/// A DECIMAL product of a larger scale is computed wide: with a scale above
/// 6, 64 bits would leave fewer than 12 digits before the point.
pub const PRODUCT_NARROW_SCALE_MAX: u8 = 6;

/// Whether `t` is a DECIMAL computed in 128 bits (more than 18 digits).
#[must_use]
pub fn is_wide(t: &SqlType) -> bool {
    matches!(t, SqlType::Decimal { precision, .. } if *precision > DECIMAL_COMPUTE_DIGITS)
}

/// The DECIMAL a computation of scale `scale` yields: wide when `wide`.
#[must_use]
pub fn computed_decimal(wide: bool, scale: u8) -> SqlType {
    SqlType::Decimal {
        precision: if wide {
            DECIMAL_WIDE_DIGITS
        } else {
            DECIMAL_COMPUTE_DIGITS
        },
        scale,
    }
}
/// Scale of a DECIMAL quotient at least.
pub const DIVISION_SCALE_MIN: u8 = 6;

/// Numeric rank: SMALLINT < INTEGER < BIGINT < DECIMAL < DOUBLE.
fn rank(t: &SqlType) -> Option<u8> {
    Some(match t {
        SqlType::SmallInt => 1,
        SqlType::Integer => 2,
        SqlType::BigInt => 3,
        SqlType::Decimal { .. } => 4,
        SqlType::Double => 5,
        _ => return None,
    })
}

/// Whether `t` is a number type.
#[must_use]
pub fn is_numeric(t: &SqlType) -> bool {
    rank(t).is_some()
}

/// Whether `t` is a text type.
#[must_use]
pub fn is_text(t: &SqlType) -> bool {
    matches!(t, SqlType::Text | SqlType::Varchar { .. })
}

fn scale(t: &SqlType) -> u8 {
    match t {
        SqlType::Decimal { scale, .. } => *scale,
        _ => 0,
    }
}

/// The type both numbers are converted to for an operation.
#[must_use]
pub fn common_numeric(a: &SqlType, b: &SqlType) -> Option<SqlType> {
    let (ra, rb) = (rank(a)?, rank(b)?);
    Some(match ra.max(rb) {
        5 => SqlType::Double,
        4 => computed_decimal(is_wide(a) || is_wide(b), scale(a).max(scale(b))),
        3 => SqlType::BigInt,
        _ => SqlType::Integer,
    })
}

/// The common type of two values compared or unified (CASE branches, UNION
/// columns, COALESCE arguments); `None` if they have none.
#[must_use]
pub fn common_type(a: &SqlType, b: &SqlType) -> Option<SqlType> {
    if a == b {
        return Some(*a);
    }
    if let Some(t) = common_numeric(a, b) {
        return Some(t);
    }
    if is_text(a) && is_text(b) {
        return Some(SqlType::Text);
    }
    match (a, b) {
        (SqlType::Date, SqlType::Timestamp) | (SqlType::Timestamp, SqlType::Date) => {
            Some(SqlType::Timestamp)
        }
        _ => None,
    }
}

/// Converts `e` to `to` (no node when it already is).
#[must_use]
pub fn coerce(e: BExpr, to: SqlType) -> BExpr {
    if e.ty == to {
        return e;
    }
    if let BK::Lit(v) = &e.kind
        && let Some(v2) = convert_literal(v, &to)
    {
        return BExpr::lit(v2, to);
    }
    let nullable = e.nullable;
    BExpr {
        kind: BK::Cast(Box::new(e)),
        ty: to,
        nullable,
    }
}

/// A literal converted at compile time, when that is exact and cannot fail.
fn convert_literal(v: &Value, to: &SqlType) -> Option<Value> {
    let out = convert_literal_unchecked(v, to)?;
    // a DECIMAL that does not fit its precision is left for run time (an error if
    // the value is needed)
    if let (Value::Decimal(d), SqlType::Decimal { precision, .. }) = (&out, to)
        && !d.fits_precision(*precision)
    {
        return None;
    }
    Some(out)
}

fn convert_literal_unchecked(v: &Value, to: &SqlType) -> Option<Value> {
    Some(match (v, to) {
        (Value::Null, _) => Value::Null,
        (Value::Integer(x), SqlType::BigInt) => Value::BigInt(i64::from(*x)),
        (Value::SmallInt(x), SqlType::Integer) => Value::Integer(i32::from(*x)),
        (Value::Integer(x), SqlType::Decimal { scale, .. }) => Value::Decimal(Decimal::new(
            i128::from(*x).checked_mul(10i128.checked_pow(u32::from(*scale))?)?,
            *scale,
        )),
        (Value::BigInt(x), SqlType::Decimal { scale, .. }) => Value::Decimal(Decimal::new(
            i128::from(*x).checked_mul(10i128.checked_pow(u32::from(*scale))?)?,
            *scale,
        )),
        (Value::Decimal(d), SqlType::Decimal { scale, .. }) if *scale >= d.scale() => {
            let k = 10i128.checked_pow(u32::from(*scale - d.scale()))?;
            Value::Decimal(Decimal::new(d.mantissa().checked_mul(k)?, *scale))
        }
        (Value::Integer(x), SqlType::Double) => Value::Double(f64::from(*x)),
        (Value::Text(s), SqlType::Text | SqlType::Varchar { .. }) => Value::Text(s.clone()),
        (Value::Text(s), SqlType::Date) => Value::Date(parse_date(s)?),
        (Value::Text(s), SqlType::Timestamp) => Value::Timestamp(parse_timestamp(s)?),
        (Value::Date(d), SqlType::Timestamp) => {
            Value::Timestamp(Timestamp(i64::from(d.0).checked_mul(86_400_000_000)?))
        }
        _ => return None,
    })
}

/// `YYYY-MM-DD`.
#[must_use]
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let mut it = s.splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    Date::from_ymd(y, m, d)
}

/// `YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]` (a `T` may separate date and time).
#[must_use]
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let d = parse_date(date)?;
    let mut micros: i64 = 0;
    if !time.is_empty() {
        let mut parts = time.splitn(3, ':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let (sec, frac) = match parts.next() {
            Some(sp) => match sp.split_once('.') {
                Some((a, b)) => {
                    if b.is_empty() || b.len() > 6 || !b.bytes().all(|c| c.is_ascii_digit()) {
                        return None;
                    }
                    let f: i64 = format!("{b:0<6}").parse().ok()?;
                    (a.parse::<i64>().ok()?, f)
                }
                None => (sp.parse::<i64>().ok()?, 0),
            },
            None => (0, 0),
        };
        if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
            return None;
        }
        micros = ((h * 60 + m) * 60 + sec) * 1_000_000 + frac;
    }
    i64::from(d.0)
        .checked_mul(86_400_000_000)?
        .checked_add(micros)
        .map(Timestamp)
}

/// A numeric literal: INTEGER if it fits, else BIGINT, DECIMAL for a point, DOUBLE
/// for an exponent.
///
/// # Errors
/// Text that is not a number, or one out of range.
pub fn parse_number(s: &str) -> Result<(Value, SqlType), CompileError> {
    let bad = || {
        CompileError::new(
            codes::INVALID_LITERAL,
            format!("\"{s}\" is not a valid number"),
        )
    };
    if s.contains(['e', 'E']) {
        let x: f64 = s.parse().map_err(|_| bad())?;
        if !x.is_finite() {
            return Err(CompileError::new(
                codes::OUT_OF_RANGE,
                format!("{s} is out of range for DOUBLE PRECISION"),
            ));
        }
        return Ok((Value::Double(x), SqlType::Double));
    }
    if let Some((int, frac)) = s.split_once('.') {
        let (neg, int) = match int.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, int),
        };
        if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let scale = u8::try_from(frac.len()).map_err(|_| bad())?;
        let precision = u8::try_from(digits.len().max(1))
            .map_err(|_| bad())?
            .max(scale)
            .max(1);
        if precision > DECIMAL_WIDE_DIGITS {
            return Err(CompileError::new(
                codes::OUT_OF_RANGE,
                format!("{s} has more than {DECIMAL_WIDE_DIGITS} digits"),
            ));
        }
        let m: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let m = if neg { -m } else { m };
        return Ok((
            Value::Decimal(Decimal::new(m, scale)),
            SqlType::Decimal { precision, scale },
        ));
    }
    let Ok(n) = s.parse::<i64>() else {
        // beyond BIGINT: a DECIMAL of up to 38 digits, as PostgreSQL's NUMERIC
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let digits = digits.trim_start_matches('0');
        if digits.len() > usize::from(DECIMAL_WIDE_DIGITS) {
            return Err(CompileError::new(
                codes::OUT_OF_RANGE,
                format!("{s} has more than {DECIMAL_WIDE_DIGITS} digits"),
            ));
        }
        let m: i128 = digits.parse().map_err(|_| bad())?;
        return Ok((
            Value::Decimal(Decimal::new(if neg { -m } else { m }, 0)),
            SqlType::Decimal {
                precision: u8::try_from(digits.len()).unwrap_or(DECIMAL_WIDE_DIGITS),
                scale: 0,
            },
        ));
    };
    Ok(match i32::try_from(n) {
        Ok(i) => (Value::Integer(i), SqlType::Integer),
        Err(_) => (Value::BigInt(n), SqlType::BigInt),
    })
}

/// The result type of arithmetic on two numbers (already of sensible types).
///
/// # Errors
/// Operands that are not numbers, or a DECIMAL scale beyond what is computed.
pub fn arith_type(op: ArithOp, a: &SqlType, b: &SqlType) -> Result<SqlType, CompileError> {
    let common = common_numeric(a, b).ok_or_else(|| {
        CompileError::new(
            codes::DATATYPE_MISMATCH,
            format!("operator {op:?} does not apply to {a} and {b}"),
        )
    })?;
    Ok(match (op, common) {
        (ArithOp::Mul, SqlType::Decimal { .. }) => {
            let s = scale(a) + scale(b);
            if s > DECIMAL_WIDE_DIGITS {
                return Err(CompileError::new(
                    codes::OUT_OF_RANGE,
                    format!("the product of {a} and {b} would have {s} digits after the point"),
                )
                .hint("CAST an operand to a smaller scale first"));
            }
            computed_decimal(is_wide(a) || is_wide(b) || s > PRODUCT_NARROW_SCALE_MAX, s)
        }
        (ArithOp::Div | ArithOp::DivRound, SqlType::Decimal { .. }) => computed_decimal(
            is_wide(a) || is_wide(b),
            scale(a).max(scale(b)).max(DIVISION_SCALE_MIN),
        ),
        (_, t) => t,
    })
}
