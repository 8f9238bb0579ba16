//! The order-preserving key encoding ("memcomparable").
//!
//! Byte-wise comparison of two encoded keys gives the SQL order of the values, column
//! by column, NULL first. Each value is self-delimiting, so a key can be extended
//! (an index key followed by the primary key) without changing the order.
//!
//! ```text
//! NULL                   0x00
//! non-NULL               0x01, then:
//!   BOOLEAN              0x00 | 0x01
//!   SMALLINT/INT/BIGINT  big-endian two's complement with the sign bit flipped
//!   DATE, TIMESTAMP      as INTEGER, BIGINT
//!   DECIMAL              the scaled 128-bit integer, as BIGINT but 16 bytes
//!   DOUBLE               IEEE bits; negative: all bits inverted, else sign bit set;
//!                        -0.0 is encoded as 0.0, every NaN as one NaN above +inf
//!   VARCHAR, TEXT, BLOB  bytes with 0x00 written as 0x00 0xFF, then 0x00 0x00
//! ```
#![deny(clippy::indexing_slicing)]

use crate::error::TypeError;
use crate::sqltype::{PhysicalType, SqlType};
use crate::value::{Date, Decimal, Timestamp, Value};

fn malformed(reason: &'static str) -> TypeError {
    TypeError::Malformed {
        what: "key",
        reason,
    }
}

/// Appends the encoding of one value of type `ty`.
///
/// # Errors
/// The value does not belong to the type.
pub fn encode_key_value(ty: &SqlType, value: &Value, out: &mut Vec<u8>) -> Result<(), TypeError> {
    ty.check_value(value)?;
    if value.is_null() {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match value {
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::SmallInt(v) => out.extend_from_slice(&(v.cast_unsigned() ^ 0x8000).to_be_bytes()),
        Value::Integer(v) => out.extend_from_slice(&(v.cast_unsigned() ^ (1 << 31)).to_be_bytes()),
        Value::Date(Date(v)) => {
            out.extend_from_slice(&(v.cast_unsigned() ^ (1 << 31)).to_be_bytes())
        }
        Value::BigInt(v) => out.extend_from_slice(&(v.cast_unsigned() ^ (1 << 63)).to_be_bytes()),
        Value::Timestamp(Timestamp(v)) => {
            out.extend_from_slice(&(v.cast_unsigned() ^ (1 << 63)).to_be_bytes());
        }
        Value::Decimal(d) => {
            out.extend_from_slice(&(d.mantissa().cast_unsigned() ^ (1 << 127)).to_be_bytes());
        }
        Value::Double(v) => out.extend_from_slice(&double_key(*v).to_be_bytes()),
        Value::Text(s) => escape_bytes(s.as_bytes(), out),
        Value::Blob(b) => escape_bytes(b, out),
        Value::Null => {}
    }
    Ok(())
}

fn double_key(v: f64) -> u64 {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = if v.is_nan() {
        f64::NAN.to_bits() & !(1 << 63)
    } else {
        v.to_bits()
    };
    if bits & (1 << 63) != 0 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn escape_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Appends the encoding of a tuple of values (one per type).
///
/// # Errors
/// Wrong arity or a value that does not belong to its type.
pub fn encode_key(types: &[SqlType], values: &[Value], out: &mut Vec<u8>) -> Result<(), TypeError> {
    if types.len() < values.len() {
        return Err(TypeError::Arity {
            expected: types.len(),
            got: values.len(),
        });
    }
    for (ty, v) in types.iter().zip(values) {
        encode_key_value(ty, v, out)?;
    }
    Ok(())
}

/// Decodes a key of exactly `types.len()` values.
///
/// # Errors
/// [`TypeError::Malformed`] if the bytes are not such a key.
pub fn decode_key(types: &[SqlType], bytes: &[u8]) -> Result<Vec<Value>, TypeError> {
    let mut at = 0usize;
    let mut values = Vec::with_capacity(types.len());
    for ty in types {
        let (v, used) = decode_one(ty, bytes.get(at..).ok_or(malformed("truncated"))?)?;
        values.push(v);
        at += used;
    }
    if at != bytes.len() {
        return Err(malformed("trailing bytes"));
    }
    Ok(values)
}

fn take<const N: usize>(b: &[u8]) -> Result<[u8; N], TypeError> {
    b.get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or(malformed("truncated value"))
}

fn decode_one(ty: &SqlType, b: &[u8]) -> Result<(Value, usize), TypeError> {
    match b.first() {
        Some(0) => return Ok((Value::Null, 1)),
        Some(1) => {}
        _ => return Err(malformed("bad NULL marker")),
    }
    let rest = b.get(1..).ok_or(malformed("truncated"))?;
    let (v, used) = match ty {
        SqlType::Boolean => (Value::Boolean(take::<1>(rest)?[0] != 0), 1),
        SqlType::SmallInt => (
            Value::SmallInt((u16::from_be_bytes(take(rest)?) ^ 0x8000).cast_signed()),
            2,
        ),
        SqlType::Integer => (
            Value::Integer((u32::from_be_bytes(take(rest)?) ^ (1 << 31)).cast_signed()),
            4,
        ),
        SqlType::Date => (
            Value::Date(Date(
                (u32::from_be_bytes(take(rest)?) ^ (1 << 31)).cast_signed(),
            )),
            4,
        ),
        SqlType::BigInt => (
            Value::BigInt((u64::from_be_bytes(take(rest)?) ^ (1 << 63)).cast_signed()),
            8,
        ),
        SqlType::Timestamp => (
            Value::Timestamp(Timestamp(
                (u64::from_be_bytes(take(rest)?) ^ (1 << 63)).cast_signed(),
            )),
            8,
        ),
        SqlType::Decimal { scale, .. } => (
            Value::Decimal(Decimal::new(
                (u128::from_be_bytes(take(rest)?) ^ (1 << 127)).cast_signed(),
                *scale,
            )),
            16,
        ),
        SqlType::Double => {
            let k = u64::from_be_bytes(take(rest)?);
            let bits = if k & (1 << 63) != 0 {
                k & !(1 << 63)
            } else {
                !k
            };
            (Value::Double(f64::from_bits(bits)), 8)
        }
        SqlType::Varchar { .. } | SqlType::Text | SqlType::Blob => {
            let mut raw = Vec::new();
            let mut i = 0usize;
            loop {
                match (rest.get(i), rest.get(i + 1)) {
                    (Some(0), Some(0)) => break,
                    (Some(0), Some(0xFF)) => {
                        raw.push(0);
                        i += 2;
                    }
                    (Some(0), _) | (None, _) => return Err(malformed("unterminated bytes")),
                    (Some(&c), _) => {
                        raw.push(c);
                        i += 1;
                    }
                }
            }
            let v = if ty.physical() == PhysicalType::Bytes && matches!(ty, SqlType::Blob) {
                Value::Blob(raw)
            } else {
                Value::Text(String::from_utf8(raw).map_err(|_| malformed("text is not UTF-8"))?)
            };
            (v, i + 2)
        }
    };
    Ok((v, used + 1))
}

/// The smallest byte string greater than every string that starts with `prefix`,
/// `None` if there is none (the prefix is empty or all 0xFF).
#[must_use]
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(ty: SqlType, v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_value(&ty, v, &mut out).unwrap();
        out
    }

    proptest! {
        #[test]
        fn bigint_order_is_preserved(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), enc(SqlType::BigInt, &Value::BigInt(a)).cmp(&enc(SqlType::BigInt, &Value::BigInt(b))));
        }

        #[test]
        fn double_order_is_preserved(a in any::<f64>().prop_filter("nan", |f| !f.is_nan()), b in any::<f64>().prop_filter("nan", |f| !f.is_nan())) {
            let ka = enc(SqlType::Double, &Value::Double(a));
            let kb = enc(SqlType::Double, &Value::Double(b));
            prop_assert_eq!(a.partial_cmp(&b).unwrap(), ka.cmp(&kb));
        }

        #[test]
        fn text_order_is_preserved_and_round_trips(a in "[\\x00-\\x7f]{0,12}", b in "[\\x00-\\x7f]{0,12}") {
            let ka = enc(SqlType::Text, &Value::Text(a.clone()));
            let kb = enc(SqlType::Text, &Value::Text(b.clone()));
            prop_assert_eq!(a.as_bytes().cmp(b.as_bytes()), ka.cmp(&kb));
            prop_assert_eq!(decode_key(&[SqlType::Text], &ka).unwrap(), vec![Value::Text(a)]);
        }

        #[test]
        fn composite_keys_order_column_by_column(a: (i32, String), b: (i32, String)) {
            let types = [SqlType::Integer, SqlType::Text];
            let mut ka = Vec::new();
            encode_key(&types, &[Value::Integer(a.0), Value::Text(a.1.clone())], &mut ka).unwrap();
            let mut kb = Vec::new();
            encode_key(&types, &[Value::Integer(b.0), Value::Text(b.1.clone())], &mut kb).unwrap();
            prop_assert_eq!((a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())), ka.cmp(&kb));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&[SqlType::Integer, SqlType::Text, SqlType::Double], &bytes);
        }
    }

    #[test]
    fn null_sorts_first_and_negative_zero_equals_zero() {
        assert!(
            enc(SqlType::Integer, &Value::Null) < enc(SqlType::Integer, &Value::Integer(i32::MIN))
        );
        assert_eq!(
            enc(SqlType::Double, &Value::Double(-0.0)),
            enc(SqlType::Double, &Value::Double(0.0))
        );
    }

    #[test]
    fn successor_bounds_every_extension() {
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF]), None);
    }
}
