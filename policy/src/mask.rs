//! Masking functions: what a principal who may not unmask a domain sees instead of
//! the value. Each keeps the column's type where the type allows.
//!
//! | function | spelling | types | result |
//! |---|---|---|---|
//! | full redaction | `redact` | text, integers, decimal, boolean, date, timestamp | `****` (cut to the VARCHAR length); 0; false; 0001-01-01 |
//! | keep last N | `keep_last(N)` | text, integers | text: every character but the last N becomes `*`; integers: the last N decimal digits |
//! | tokenisation | `tokenize` | text, integers | a keyed hash: the same input gives the same token under one key; text `tok_` + hex, integers a number of the same width |
//! | null-out | `null` | every type | NULL |
//! | date truncation | `truncate(year\|month\|day\|hour)` | date, timestamp | the start of the period |
//! | numeric bucketing | `bucket(W)` | integers, decimal | rounded down to a multiple of W |

use scratchbird_types::{Date, Decimal, SqlType, Timestamp, Value};

/// A period for date truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// January 1st.
    Year,
    /// The 1st of the month.
    Month,
    /// Midnight.
    Day,
    /// The full hour.
    Hour,
}

/// A masking function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskFn {
    /// Full redaction.
    Redact,
    /// Keep the last N characters or digits.
    KeepLast(u32),
    /// Keyed deterministic tokenisation.
    Tokenize,
    /// NULL.
    Null,
    /// Date truncation.
    Truncate(Period),
    /// Numeric bucketing by a positive width (in whole units).
    Bucket(i64),
}

impl std::str::FromStr for MaskFn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let arg = |name: &str| -> Option<&str> {
            s.strip_prefix(name)?
                .trim()
                .strip_prefix('(')?
                .strip_suffix(')')
                .map(str::trim)
        };
        Ok(match s {
            "redact" => Self::Redact,
            "tokenize" => Self::Tokenize,
            "null" => Self::Null,
            _ if s.starts_with("keep_last") => {
                let n = arg("keep_last")
                    .and_then(|a| a.parse::<u32>().ok())
                    .filter(|n| (1..=64).contains(n));
                Self::KeepLast(n.ok_or("write keep_last(N) with N from 1 to 64")?)
            }
            _ if s.starts_with("truncate") => {
                Self::Truncate(match arg("truncate") {
                    Some("year") => Period::Year,
                    Some("month") => Period::Month,
                    Some("day") => Period::Day,
                    Some("hour") => Period::Hour,
                    _ => return Err(
                        "write truncate(year), truncate(month), truncate(day) or truncate(hour)"
                            .into(),
                    ),
                })
            }
            _ if s.starts_with("bucket") => {
                let w = arg("bucket")
                    .and_then(|a| a.parse::<i64>().ok())
                    .filter(|w| *w > 0);
                Self::Bucket(w.ok_or("write bucket(W) with a positive whole width W")?)
            }
            _ => {
                return Err(format!(
                    "unknown mask function {s:?}: use redact, keep_last(N), tokenize, null, truncate(year|month|day|hour) or bucket(W)"
                ));
            }
        })
    }
}

impl std::fmt::Display for MaskFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redact => f.write_str("redact"),
            Self::KeepLast(n) => write!(f, "keep_last({n})"),
            Self::Tokenize => f.write_str("tokenize"),
            Self::Null => f.write_str("null"),
            Self::Truncate(p) => write!(
                f,
                "truncate({})",
                match p {
                    Period::Year => "year",
                    Period::Month => "month",
                    Period::Day => "day",
                    Period::Hour => "hour",
                }
            ),
            Self::Bucket(w) => write!(f, "bucket({w})"),
        }
    }
}

/// The secret of keyed tokenisation. A cluster keeps it with its nodes' secrets;
/// `MaskKey::for_bundle` binds it to one bundle, so tokens differ across bundles.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskKey([u8; 32]);

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

impl MaskKey {
    /// The tokenisation key of a bundle under a cluster secret.
    #[must_use]
    pub fn for_bundle(secret: &[u8; 32], bundle: &scratchbird_types::BundleHash) -> Self {
        let mut material = Vec::with_capacity(64);
        material.extend_from_slice(secret);
        material.extend_from_slice(&bundle.0);
        Self(blake3::derive_key("scratchbird tokenize v1", &material))
    }
}

fn is_integer(ty: &SqlType) -> bool {
    matches!(ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt)
}

fn is_text(ty: &SqlType) -> bool {
    matches!(ty, SqlType::Varchar { .. } | SqlType::Text)
}

impl MaskFn {
    /// Whether this function applies to values of `ty` (`Err` says why not).
    ///
    /// # Errors
    /// The type cannot keep its type under this function.
    pub fn check_type(&self, ty: &SqlType) -> Result<(), String> {
        let ok = match self {
            Self::Null => true,
            Self::Redact => !matches!(ty, SqlType::Blob | SqlType::Double),
            Self::KeepLast(_) | Self::Tokenize => is_text(ty) || is_integer(ty),
            Self::Truncate(Period::Hour) => matches!(ty, SqlType::Timestamp),
            Self::Truncate(_) => matches!(ty, SqlType::Date | SqlType::Timestamp),
            Self::Bucket(_) => is_integer(ty) || matches!(ty, SqlType::Decimal { .. }),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("mask {self} does not apply to {ty}"))
        }
    }

    /// The masked form of `v` (a value of type `ty`; NULL stays NULL).
    #[must_use]
    pub fn apply(&self, ty: &SqlType, v: &Value, key: &MaskKey, domain: &str) -> Value {
        if v.is_null() || *self == Self::Null {
            return Value::Null;
        }
        match (self, v) {
            (Self::Redact, Value::Text(_)) => {
                let n = match ty {
                    SqlType::Varchar { max_chars } => (*max_chars as usize).min(4),
                    _ => 4,
                };
                Value::Text("*".repeat(n))
            }
            (Self::Redact, Value::SmallInt(_)) => Value::SmallInt(0),
            (Self::Redact, Value::Integer(_)) => Value::Integer(0),
            (Self::Redact, Value::BigInt(_)) => Value::BigInt(0),
            (Self::Redact, Value::Decimal(d)) => Value::Decimal(Decimal::new(0, d.scale())),
            (Self::Redact, Value::Boolean(_)) => Value::Boolean(false),
            (Self::Redact, Value::Date(_)) => {
                Value::Date(Date::from_ymd(1, 1, 1).unwrap_or(Date(0)))
            }
            (Self::Redact, Value::Timestamp(_)) => Value::Timestamp(Timestamp(
                i64::from(Date::from_ymd(1, 1, 1).unwrap_or(Date(0)).0) * 86_400_000_000,
            )),
            (Self::KeepLast(n), Value::Text(s)) => {
                let len = s.chars().count();
                let keep = (*n as usize).min(len);
                Value::Text(
                    s.chars()
                        .enumerate()
                        .map(|(i, c)| if i + keep < len { '*' } else { c })
                        .collect(),
                )
            }
            (Self::KeepLast(n), _) if is_integer(ty) => {
                let m = 10i128.checked_pow(*n).unwrap_or(i128::MAX);
                int_like(ty, int_of(v).map(|x| x % m))
            }
            (Self::Tokenize, Value::Text(s)) => {
                let h = keyed(key, domain, s.as_bytes());
                let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                let full = format!("tok_{hex}");
                let cut = match ty {
                    SqlType::Varchar { max_chars } => (*max_chars as usize).min(20),
                    _ => 20,
                };
                Value::Text(full.chars().take(cut).collect())
            }
            (Self::Tokenize, _) if is_integer(ty) => {
                let h = keyed(key, domain, &int_of(v).unwrap_or(0).to_le_bytes());
                // A token of the column's own width, from the first bytes of the hash.
                let x = match ty {
                    SqlType::SmallInt => i128::from(i16::from_le_bytes([h[0], h[1]])),
                    SqlType::Integer => i128::from(i32::from_le_bytes([h[0], h[1], h[2], h[3]])),
                    _ => i128::from(i64::from_le_bytes([
                        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
                    ])),
                };
                int_like(ty, Some(x))
            }
            (Self::Truncate(p), Value::Date(d)) => {
                let (y, m, _) = d.to_ymd();
                let y = i32::try_from(y).unwrap_or(1);
                let t = match p {
                    Period::Year => Date::from_ymd(y, 1, 1),
                    _ => Date::from_ymd(y, if *p == Period::Month { m } else { d.to_ymd().1 }, 1),
                };
                match p {
                    Period::Day | Period::Hour => Value::Date(*d),
                    _ => Value::Date(t.unwrap_or(*d)),
                }
            }
            (Self::Truncate(p), Value::Timestamp(t)) => {
                const DAY: i64 = 86_400_000_000;
                const HOUR: i64 = 3_600_000_000;
                let days = t.0.div_euclid(DAY);
                // At the ends of the range the start of the period may not exist:
                // then the value itself is the earliest shown.
                Value::Timestamp(Timestamp(match p {
                    Period::Hour => t.0.div_euclid(HOUR).checked_mul(HOUR).unwrap_or(t.0),
                    Period::Day => days.checked_mul(DAY).unwrap_or(t.0),
                    Period::Month | Period::Year => {
                        let d = Date(i32::try_from(days).unwrap_or(0));
                        let (y, m, _) = d.to_ymd();
                        let y = i32::try_from(y).unwrap_or(1970);
                        let start = Date::from_ymd(y, if *p == Period::Month { m } else { 1 }, 1)
                            .unwrap_or(d);
                        i64::from(start.0).checked_mul(DAY).unwrap_or(t.0)
                    }
                }))
            }
            (Self::Bucket(w), Value::Decimal(d)) => {
                let bucketed = 10i128
                    .checked_pow(u32::from(d.scale()))
                    .and_then(|s| i128::from(*w).checked_mul(s))
                    .and_then(|unit| d.mantissa().div_euclid(unit).checked_mul(unit));
                match (bucketed, ty) {
                    // A width beyond the type's range puts every value in bucket 0.
                    (None, _) => Value::Decimal(Decimal::new(0, d.scale())),
                    // Rounding down can leave the column's precision (DECIMAL(5,2):
                    // -999.99 in buckets of 1000 is -1000.00): then nothing is shown.
                    (Some(m), SqlType::Decimal { precision, .. })
                        if m.unsigned_abs() >= 10u128.pow(u32::from(*precision).min(38)) =>
                    {
                        Value::Null
                    }
                    (Some(m), _) => Value::Decimal(Decimal::new(m, d.scale())),
                }
            }
            (Self::Bucket(w), _) if is_integer(ty) => {
                let w = i128::from(*w);
                int_like(ty, int_of(v).map(|x| x.div_euclid(w) * w))
            }
            // A value of another type than the column's: nothing of it is shown.
            _ => Value::Null,
        }
    }
}

/// A mask as arithmetic on the stored integer of a value (SMALLINT, INTEGER,
/// BIGINT, or a DECIMAL of at most 18 digits, whose mantissa is stored), so that a
/// column of a batch is masked without building a value per row. Gives exactly
/// what [`MaskFn::apply`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKernel {
    /// Every value shows as NULL.
    Null,
    /// Every value shows as this stored integer.
    Constant(i64),
    /// Rounded down to a multiple of `unit`; a result outside `lo..=hi` (the
    /// type's range) shows as NULL.
    Bucket {
        /// The bucket width in stored units (> 0).
        unit: i128,
        /// The smallest stored integer of the type.
        lo: i128,
        /// The largest.
        hi: i128,
    },
}

impl IntKernel {
    /// The masked form of stored integer `x`; `None` for NULL.
    #[must_use]
    pub fn apply(self, x: i64) -> Option<i64> {
        match self {
            Self::Null => None,
            Self::Constant(c) => Some(c),
            Self::Bucket { unit, lo, hi } => {
                // i64 arithmetic where it suffices (the common case), else i128
                let m = match i64::try_from(unit) {
                    Ok(u) => x
                        .div_euclid(u)
                        .checked_mul(u)
                        .map_or_else(|| i128::from(x.div_euclid(u)) * unit, i128::from),
                    Err(_) => i128::from(x).div_euclid(unit) * unit,
                };
                if m < lo || m > hi {
                    None
                } else {
                    i64::try_from(m).ok()
                }
            }
        }
    }
}

impl MaskFn {
    /// This mask on values of `ty` as arithmetic on their stored integers, where
    /// it has that form (see [`IntKernel`]); `None` otherwise.
    #[must_use]
    pub fn int_kernel(&self, ty: &SqlType) -> Option<IntKernel> {
        let (lo, hi, scale) = match ty {
            SqlType::SmallInt => (i128::from(i16::MIN), i128::from(i16::MAX), None),
            SqlType::Integer => (i128::from(i32::MIN), i128::from(i32::MAX), None),
            SqlType::BigInt => (i128::from(i64::MIN), i128::from(i64::MAX), None),
            SqlType::Decimal { precision, scale }
                if *precision <= scratchbird_types::limits::DECIMAL_NARROW_PRECISION_MAX_DIGITS =>
            {
                let limit = 10i128.pow(u32::from(*precision)) - 1;
                (-limit, limit, Some(*scale))
            }
            _ => return None,
        };
        match self {
            Self::Null => Some(IntKernel::Null),
            Self::Redact => Some(IntKernel::Constant(0)),
            Self::Bucket(w) if *w > 0 => match scale {
                None => Some(IntKernel::Bucket {
                    unit: i128::from(*w),
                    lo,
                    hi,
                }),
                Some(s) => Some(
                    match 10i128
                        .checked_pow(u32::from(s))
                        .and_then(|p| i128::from(*w).checked_mul(p))
                    {
                        // a width beyond the type's range: every value in bucket 0
                        None => IntKernel::Constant(0),
                        Some(unit) => IntKernel::Bucket { unit, lo, hi },
                    },
                ),
            },
            _ => None,
        }
    }
}

fn keyed(key: &MaskKey, domain: &str, value: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(domain.as_bytes());
    h.update(&[0]);
    h.update(value);
    *h.finalize().as_bytes()
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::SmallInt(x) => Some(i128::from(*x)),
        Value::Integer(x) => Some(i128::from(*x)),
        Value::BigInt(x) => Some(i128::from(*x)),
        _ => None,
    }
}

/// An integer of the column's width; out of range (cannot happen for the
/// functions above, which shrink or wrap) becomes NULL.
fn int_like(ty: &SqlType, x: Option<i128>) -> Value {
    let Some(x) = x else { return Value::Null };
    match ty {
        SqlType::SmallInt => i16::try_from(x).map_or(Value::Null, Value::SmallInt),
        SqlType::Integer => i32::try_from(x).map_or(Value::Null, Value::Integer),
        SqlType::BigInt => i64::try_from(x).map_or(Value::Null, Value::BigInt),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MaskKey {
        MaskKey::for_bundle(&[7; 32], &scratchbird_types::BundleHash([1; 32]))
    }

    #[test]
    fn functions_parse_and_print() {
        for s in [
            "redact",
            "keep_last(4)",
            "tokenize",
            "null",
            "truncate(month)",
            "bucket(1000)",
        ] {
            assert_eq!(s.parse::<MaskFn>().unwrap().to_string(), s);
        }
        assert!("keep_last(0)".parse::<MaskFn>().is_err());
        assert!("bucket(-3)".parse::<MaskFn>().is_err());
        assert!("hash".parse::<MaskFn>().unwrap_err().contains("use redact"));
    }

    #[test]
    fn masks_never_panic_and_keep_the_type_at_the_extremes() {
        let k = key();
        let cases: Vec<(SqlType, Vec<Value>)> = vec![
            (
                SqlType::SmallInt,
                vec![
                    Value::SmallInt(i16::MIN),
                    Value::SmallInt(-1),
                    Value::SmallInt(i16::MAX),
                ],
            ),
            (
                SqlType::Integer,
                vec![
                    Value::Integer(i32::MIN),
                    Value::Integer(0),
                    Value::Integer(i32::MAX),
                ],
            ),
            (
                SqlType::BigInt,
                vec![
                    Value::BigInt(i64::MIN),
                    Value::BigInt(7),
                    Value::BigInt(i64::MAX),
                ],
            ),
            (
                SqlType::Decimal {
                    precision: 38,
                    scale: 30,
                },
                vec![
                    Value::Decimal(Decimal::new(-(10i128.pow(38) - 1), 30)),
                    Value::Decimal(Decimal::new(10i128.pow(38) - 1, 30)),
                ],
            ),
            (
                SqlType::Decimal {
                    precision: 5,
                    scale: 2,
                },
                vec![
                    Value::Decimal(Decimal::new(-99_999, 2)),
                    Value::Decimal(Decimal::new(99_999, 2)),
                ],
            ),
            (
                SqlType::Timestamp,
                vec![
                    Value::Timestamp(Timestamp(i64::MIN)),
                    Value::Timestamp(Timestamp(i64::MAX)),
                ],
            ),
            (
                SqlType::Date,
                vec![Value::Date(Date(i32::MIN)), Value::Date(Date(i32::MAX))],
            ),
            (
                SqlType::Varchar { max_chars: 3 },
                vec![Value::Text("abc".into())],
            ),
        ];
        let masks = [
            "redact",
            "keep_last(64)",
            "tokenize",
            "null",
            "truncate(year)",
            "truncate(hour)",
            "bucket(1)",
            "bucket(9223372036854775807)",
        ];
        for (ty, values) in &cases {
            for m in masks {
                let m: MaskFn = m.parse().unwrap();
                if m.check_type(ty).is_err() {
                    continue;
                }
                for v in values {
                    let out = m.apply(ty, v, &k, "d");
                    if out != Value::Null && ty.check_value(&out).is_err() {
                        // Dates outside the calendar range are the only tolerated case:
                        // truncation of an out-of-range date returns it unchanged.
                        assert!(
                            matches!(ty, SqlType::Date),
                            "{m} on {ty} {v:?} gave {out:?}"
                        );
                    }
                }
            }
        }
        // Tokens of narrow integers keep their width instead of becoming NULL.
        for x in [0i16, 1, 2, -5] {
            let t = MaskFn::Tokenize.apply(&SqlType::SmallInt, &Value::SmallInt(x), &k, "d");
            assert!(matches!(t, Value::SmallInt(_)), "{t:?}");
        }
        for x in [0i32, 1, 2, -5] {
            let t = MaskFn::Tokenize.apply(&SqlType::Integer, &Value::Integer(x), &k, "d");
            assert!(matches!(t, Value::Integer(_)), "{t:?}");
        }
        // A width beyond the type's range: everything in bucket 0.
        assert_eq!(
            MaskFn::Bucket(i64::MAX).apply(
                &SqlType::Decimal {
                    precision: 38,
                    scale: 30
                },
                &Value::Decimal(Decimal::new(5, 30)),
                &k,
                "d"
            ),
            Value::Decimal(Decimal::new(0, 30))
        );
    }

    #[test]
    fn masks_keep_the_type() {
        let k = key();
        let ssn = Value::Text("123-45-6789".into());
        assert_eq!(
            MaskFn::KeepLast(4).apply(&SqlType::Text, &ssn, &k, "ssn"),
            Value::Text("*******6789".into())
        );
        let t1 = MaskFn::Tokenize.apply(
            &SqlType::Varchar { max_chars: 100 },
            &Value::Text("a@x".into()),
            &k,
            "email",
        );
        let t2 = MaskFn::Tokenize.apply(
            &SqlType::Varchar { max_chars: 100 },
            &Value::Text("a@x".into()),
            &k,
            "email",
        );
        let t3 = MaskFn::Tokenize.apply(
            &SqlType::Varchar { max_chars: 100 },
            &Value::Text("b@x".into()),
            &k,
            "email",
        );
        assert_eq!(t1, t2, "deterministic");
        assert_ne!(t1, t3);
        let other = MaskKey::for_bundle(&[7; 32], &scratchbird_types::BundleHash([2; 32]));
        assert_ne!(
            MaskFn::Tokenize.apply(&SqlType::Text, &Value::Text("a@x".into()), &other, "email"),
            t1,
            "per bundle key"
        );
        assert_eq!(
            MaskFn::Bucket(1000).apply(&SqlType::BigInt, &Value::BigInt(123_456), &k, "d"),
            Value::BigInt(123_000)
        );
        assert_eq!(
            MaskFn::Bucket(10).apply(
                &SqlType::Decimal {
                    precision: 10,
                    scale: 2
                },
                &Value::Decimal(Decimal::new(12_345, 2)),
                &k,
                "d"
            ),
            Value::Decimal(Decimal::new(12_000, 2))
        );
        let d = Date::from_ymd(2024, 7, 19).unwrap();
        assert_eq!(
            MaskFn::Truncate(Period::Month).apply(&SqlType::Date, &Value::Date(d), &k, "d"),
            Value::Date(Date::from_ymd(2024, 7, 1).unwrap())
        );
        assert_eq!(
            MaskFn::Redact.apply(
                &SqlType::Varchar { max_chars: 2 },
                &Value::Text("secret".into()),
                &k,
                "d"
            ),
            Value::Text("**".into())
        );
        assert_eq!(
            MaskFn::Null.apply(&SqlType::Text, &ssn, &k, "d"),
            Value::Null
        );
        assert!(
            MaskFn::Truncate(Period::Month)
                .check_type(&SqlType::Text)
                .is_err()
        );
    }

    fn stored(v: &Value) -> Option<i64> {
        match v {
            Value::Null => None,
            Value::SmallInt(x) => Some(i64::from(*x)),
            Value::Integer(x) => Some(i64::from(*x)),
            Value::BigInt(x) => Some(*x),
            Value::Decimal(d) => i64::try_from(d.mantissa()).ok(),
            other => panic!("not an integer-like value: {other:?}"),
        }
    }

    use proptest::prelude::Strategy as _;

    /// The kernels at the ends of every integer-like type's range, where a
    /// bucket leaves the range or lands on its last value.
    #[test]
    fn int_kernels_at_the_ends_of_each_range() {
        let k = key();
        let mut types = vec![SqlType::SmallInt, SqlType::Integer, SqlType::BigInt];
        for precision in [1u8, 3, 18] {
            for scale in [0u8, 1, precision] {
                types.push(SqlType::Decimal { precision, scale });
            }
        }
        let masks = [
            MaskFn::Null,
            MaskFn::Redact,
            MaskFn::Bucket(1),
            MaskFn::Bucket(3),
            MaskFn::Bucket(10),
            MaskFn::Bucket(i64::MAX),
        ];
        for ty in &types {
            let (lo, hi): (i64, i64) = match ty {
                SqlType::SmallInt => (i16::MIN.into(), i16::MAX.into()),
                SqlType::Integer => (i32::MIN.into(), i32::MAX.into()),
                SqlType::BigInt => (i64::MIN, i64::MAX),
                SqlType::Decimal { precision, .. } => {
                    let l = 10i64.pow(u32::from(*precision)) - 1;
                    (-l, l)
                }
                _ => unreachable!(),
            };
            for x in [lo, lo + 1, -1, 0, 1, hi - 1, hi] {
                let v = match ty {
                    SqlType::SmallInt => Value::SmallInt(i16::try_from(x).unwrap()),
                    SqlType::Integer => Value::Integer(i32::try_from(x).unwrap()),
                    SqlType::BigInt => Value::BigInt(x),
                    SqlType::Decimal { scale, .. } => {
                        Value::Decimal(Decimal::new(i128::from(x), *scale))
                    }
                    _ => unreachable!(),
                };
                for m in &masks {
                    let kernel = m.int_kernel(ty).unwrap();
                    assert_eq!(
                        kernel.apply(x),
                        stored(&m.apply(ty, &v, &k, "d")),
                        "{m} on {ty} {x}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        /// The batch kernel of a mask gives what the mask gives, value by value.
        #[test]
        fn int_kernels_give_what_apply_gives(
            which in 0usize..6,
            precision in 1u8..=18,
            scale_cut in 0u8..=18,
            mask in proptest::prop_oneof![
                proptest::strategy::Just(MaskFn::Null),
                proptest::strategy::Just(MaskFn::Redact),
                proptest::strategy::Just(MaskFn::Bucket(1)),
                (1i64..2_000).prop_map(MaskFn::Bucket),
                proptest::prelude::any::<i64>().prop_filter("positive", |w| *w > 0).prop_map(MaskFn::Bucket),
            ],
            raw in proptest::prelude::any::<i64>(),
        ) {
            let scale = scale_cut.min(precision);
            let (ty, v) = match which {
                0 => (SqlType::SmallInt, Value::SmallInt(raw as i16)),
                1 => (SqlType::Integer, Value::Integer(raw as i32)),
                2 => (SqlType::BigInt, Value::BigInt(raw)),
                3 => (SqlType::BigInt, Value::BigInt(if raw < 0 { i64::MIN + (raw % 1000).abs() } else { i64::MAX - raw % 1000 })),
                _ => {
                    let limit = 10i64.pow(u32::from(precision)) - 1;
                    let m = if which == 4 { raw % (limit + 1) } else if raw < 0 { -limit + (raw % 7).abs() } else { limit - raw % 7 };
                    (SqlType::Decimal { precision, scale }, Value::Decimal(Decimal::new(i128::from(m), scale)))
                }
            };
            let k = key();
            let expected = mask.apply(&ty, &v, &k, "d");
            let kernel = mask.int_kernel(&ty).expect("a kernel for an integer-like type");
            let x = stored(&v).expect("a stored integer");
            proptest::prop_assert_eq!(kernel.apply(x), stored(&expected), "{} on {:?} {:?}", mask, ty, v);
        }
    }
}
