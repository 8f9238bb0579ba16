//! The row encoding: one record version as bytes.
//!
//! ```text
//! [u16 column count, LE]
//! [null bitmap: ceil(n/8) bytes, bit i set = column i is NULL]
//! [fixed area: for each column in order, its fixed width in bytes;
//!              a variable-length column holds a u32 LE end offset into the var area]
//! [var area: the bytes of variable-length values, in column order]
//! ```
//!
//! Fixed-width values are little-endian (see [`PhysicalType`]); a NULL keeps its fixed
//! bytes zeroed so every column sits at a fixed offset and can be read in O(1).
//! [`RowLayout::decode`] validates a buffer once (lengths, offsets); the accessors of
//! [`RowRef`] then never read out of bounds.
#![deny(clippy::indexing_slicing)]

use crate::error::TypeError;
use crate::limits::{COLUMNS_MAX, ROW_MAX_BYTES};
use crate::sqltype::{PhysicalType, SqlType};
use crate::value::{Date, Decimal, Timestamp, Value};

const HEADER_BYTES: usize = 2;

fn malformed(reason: &'static str) -> TypeError {
    TypeError::Malformed {
        what: "row",
        reason,
    }
}

/// Where each column of a row type lives in the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLayout {
    types: Vec<SqlType>,
    /// Offset of each column's slot inside the fixed area.
    slots: Vec<usize>,
    bitmap_bytes: usize,
    fixed_bytes: usize,
}

impl RowLayout {
    /// The layout for a row of `types`.
    ///
    /// # Errors
    /// A type is invalid, or there are no or too many columns.
    pub fn new(types: &[SqlType]) -> Result<Self, TypeError> {
        if types.is_empty() || types.len() > COLUMNS_MAX {
            return Err(TypeError::Malformed {
                what: "row type",
                reason: "a row has between 1 and 1024 columns",
            });
        }
        let mut slots = Vec::with_capacity(types.len());
        let mut fixed = 0usize;
        for ty in types {
            ty.validate()?;
            slots.push(fixed);
            fixed += ty.physical().fixed_width().unwrap_or(4);
        }
        Ok(Self {
            types: types.to_vec(),
            slots,
            bitmap_bytes: types.len().div_ceil(8),
            fixed_bytes: fixed,
        })
    }

    /// The column types.
    #[must_use]
    pub fn types(&self) -> &[SqlType] {
        &self.types
    }

    /// Number of columns.
    #[must_use]
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Always false: a layout has at least one column.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    fn var_start(&self) -> usize {
        HEADER_BYTES + self.bitmap_bytes + self.fixed_bytes
    }

    /// Appends the encoding of `values` to `out`.
    ///
    /// # Errors
    /// Wrong arity, a value that does not fit its type, or a row above `ROW_MAX_BYTES`.
    /// Nothing is appended on error.
    pub fn encode(&self, values: &[Value], out: &mut Vec<u8>) -> Result<(), TypeError> {
        if values.len() != self.types.len() {
            return Err(TypeError::Arity {
                expected: self.types.len(),
                got: values.len(),
            });
        }
        let start = out.len();
        let result = self.encode_inner(values, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_inner(
        &self,
        values: &[Value],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), TypeError> {
        let ncols = u16::try_from(self.types.len()).map_err(|_| malformed("too many columns"))?;
        out.extend_from_slice(&ncols.to_le_bytes());
        out.resize(start + self.var_start(), 0);
        let mut var_len = 0usize;
        for (i, (ty, value)) in self.types.iter().zip(values).enumerate() {
            ty.check_value(value)?;
            let slot =
                start + HEADER_BYTES + self.bitmap_bytes + self.slots.get(i).copied().unwrap_or(0);
            if value.is_null() {
                let byte = start + HEADER_BYTES + i / 8;
                if let Some(b) = out.get_mut(byte) {
                    *b |= 1 << (i % 8);
                }
                if ty.physical() == PhysicalType::Bytes {
                    write_u32(out, slot, var_len)?;
                }
                continue;
            }
            match value_bytes_for(ty, value)? {
                RawValue::Fixed(bytes, n) => {
                    let dst = out
                        .get_mut(slot..slot + n)
                        .ok_or(malformed("slot out of range"))?;
                    dst.copy_from_slice(bytes.get(..n).ok_or(malformed("width"))?);
                }
                RawValue::Var(bytes) => {
                    out.extend_from_slice(bytes);
                    var_len += bytes.len();
                    if out.len() - start > ROW_MAX_BYTES {
                        return Err(TypeError::RowTooLarge {
                            bytes: out.len() - start,
                            limit: ROW_MAX_BYTES,
                        });
                    }
                    write_u32(out, slot, var_len)?;
                }
            }
        }
        Ok(())
    }

    /// Validates `bytes` as a row of this layout.
    ///
    /// # Errors
    /// [`TypeError::Malformed`] on any inconsistency.
    pub fn decode<'a>(&'a self, bytes: &'a [u8]) -> Result<RowRef<'a>, TypeError> {
        let ncols = bytes
            .get(..HEADER_BYTES)
            .map(|b| {
                u16::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                ])
            })
            .ok_or(malformed("shorter than its header"))?;
        if usize::from(ncols) != self.types.len() {
            return Err(malformed("column count differs from the table's"));
        }
        let var_start = self.var_start();
        if bytes.len() < var_start {
            return Err(malformed("shorter than its fixed area"));
        }
        let var_len = bytes.len() - var_start;
        let row = RowRef {
            layout: self,
            bytes,
        };
        // Variable-length end offsets must be non-decreasing and end inside the row.
        let mut prev = 0usize;
        for (i, ty) in self.types.iter().enumerate() {
            if ty.physical() == PhysicalType::Bytes {
                let end = row.var_end(i)?;
                if end < prev || end > var_len {
                    return Err(malformed("variable-length offsets out of order or range"));
                }
                prev = end;
            }
        }
        if prev != var_len {
            return Err(malformed("trailing bytes after the last value"));
        }
        Ok(row)
    }
}

fn write_u32(out: &mut [u8], at: usize, v: usize) -> Result<(), TypeError> {
    let v = u32::try_from(v).map_err(|_| malformed("offset above 4 GiB"))?;
    out.get_mut(at..at + 4)
        .ok_or(malformed("slot out of range"))?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// The stored bytes of a non-NULL value.
#[derive(Debug)]
pub enum RawValue<'a> {
    /// Fixed width: the first `n` bytes of the array.
    Fixed([u8; 16], usize),
    /// Variable length.
    Var(&'a [u8]),
}

impl RawValue<'_> {
    /// The bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Fixed(buf, n) => buf.get(..*n).unwrap_or(&[]),
            Self::Var(b) => b,
        }
    }
}

fn fixed(bytes: &[u8]) -> RawValue<'static> {
    let mut buf = [0u8; 16];
    let n = bytes.len().min(16);
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
    RawValue::Fixed(buf, n)
}

/// The stored bytes of a non-NULL value in a column of type `ty`: little-endian for
/// fixed widths (a DECIMAL takes 8 or 16 bytes depending on the declared precision),
/// UTF-8 for text, the bytes themselves for BLOB.
///
/// # Errors
/// The value does not belong to the type (call [`SqlType::check_value`] first to get
/// the precise reason), or is NULL.
pub fn value_bytes_for<'a>(ty: &SqlType, value: &'a Value) -> Result<RawValue<'a>, TypeError> {
    let mismatch = || TypeError::ValueMismatch {
        ty: ty.to_string(),
        value: value.to_display_truncated(48),
        reason: "value is NULL or of another type",
    };
    Ok(match (ty.physical(), value) {
        (PhysicalType::Bool, Value::Boolean(b)) => fixed(&[u8::from(*b)]),
        (PhysicalType::I16, Value::SmallInt(v)) => fixed(&v.to_le_bytes()),
        (PhysicalType::I32, Value::Integer(v)) => fixed(&v.to_le_bytes()),
        (PhysicalType::I32, Value::Date(d)) => fixed(&d.0.to_le_bytes()),
        (PhysicalType::I64, Value::BigInt(v)) => fixed(&v.to_le_bytes()),
        (PhysicalType::I64, Value::Timestamp(t)) => fixed(&t.0.to_le_bytes()),
        (PhysicalType::I64, Value::Decimal(d)) => {
            let narrow = i64::try_from(d.mantissa()).map_err(|_| mismatch())?;
            fixed(&narrow.to_le_bytes())
        }
        (PhysicalType::I128, Value::Decimal(d)) => fixed(&d.mantissa().to_le_bytes()),
        (PhysicalType::F64, Value::Double(v)) => fixed(&v.to_le_bytes()),
        (PhysicalType::Bytes, Value::Text(s)) => RawValue::Var(s.as_bytes()),
        (PhysicalType::Bytes, Value::Blob(b)) => RawValue::Var(b),
        _ => return Err(mismatch()),
    })
}

/// Rebuilds a value of type `ty` from its stored bytes.
///
/// # Errors
/// [`TypeError::Malformed`] if the bytes have the wrong width or are not UTF-8 text.
pub fn value_from_bytes(ty: &SqlType, raw: &[u8]) -> Result<Value, TypeError> {
    fn arr<const N: usize>(raw: &[u8]) -> Result<[u8; N], TypeError> {
        raw.try_into().map_err(|_| TypeError::Malformed {
            what: "value",
            reason: "stored width differs from the type's width",
        })
    }
    Ok(match ty {
        SqlType::Boolean => Value::Boolean(arr::<1>(raw)?[0] != 0),
        SqlType::SmallInt => Value::SmallInt(i16::from_le_bytes(arr(raw)?)),
        SqlType::Integer => Value::Integer(i32::from_le_bytes(arr(raw)?)),
        SqlType::BigInt => Value::BigInt(i64::from_le_bytes(arr(raw)?)),
        SqlType::Double => Value::Double(f64::from_le_bytes(arr(raw)?)),
        SqlType::Date => Value::Date(Date(i32::from_le_bytes(arr(raw)?))),
        SqlType::Timestamp => Value::Timestamp(Timestamp(i64::from_le_bytes(arr(raw)?))),
        SqlType::Decimal { scale, .. } => {
            let mantissa = if ty.physical() == PhysicalType::I64 {
                i128::from(i64::from_le_bytes(arr(raw)?))
            } else {
                i128::from_le_bytes(arr(raw)?)
            };
            Value::Decimal(Decimal::new(mantissa, *scale))
        }
        SqlType::Varchar { .. } | SqlType::Text => Value::Text(
            std::str::from_utf8(raw)
                .map_err(|_| TypeError::Malformed {
                    what: "value",
                    reason: "text is not valid UTF-8",
                })?
                .to_owned(),
        ),
        SqlType::Blob => Value::Blob(raw.to_vec()),
    })
}

/// A validated encoded row.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    layout: &'a RowLayout,
    bytes: &'a [u8],
}

impl<'a> RowRef<'a> {
    /// The encoded bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether column `col` is NULL (out-of-range columns read as NULL).
    #[must_use]
    pub fn is_null(&self, col: usize) -> bool {
        self.bytes
            .get(HEADER_BYTES + col / 8)
            .is_none_or(|b| b & (1 << (col % 8)) != 0)
    }

    fn slot(&self, col: usize) -> Result<usize, TypeError> {
        self.layout
            .slots
            .get(col)
            .map(|s| HEADER_BYTES + self.layout.bitmap_bytes + s)
            .ok_or(malformed("column index out of range"))
    }

    fn var_end(&self, col: usize) -> Result<usize, TypeError> {
        let at = self.slot(col)?;
        let b: [u8; 4] = self
            .bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(malformed("offset slot out of range"))?;
        Ok(u32::from_le_bytes(b) as usize)
    }

    /// The stored bytes of column `col`, `None` if NULL.
    ///
    /// # Errors
    /// Column out of range (the buffer itself was validated by `decode`).
    pub fn raw(&self, col: usize) -> Result<Option<&'a [u8]>, TypeError> {
        if self.is_null(col) {
            return Ok(None);
        }
        let ty = self
            .layout
            .types
            .get(col)
            .ok_or(malformed("column index out of range"))?;
        let at = self.slot(col)?;
        match ty.physical().fixed_width() {
            Some(w) => self
                .bytes
                .get(at..at + w)
                .map(Some)
                .ok_or(malformed("fixed value out of range")),
            None => {
                let end = self.var_end(col)?;
                let mut start = 0usize;
                // The start is the end of the previous variable-length column.
                for prev in (0..col).rev() {
                    if self.layout.types.get(prev).map(SqlType::physical)
                        == Some(PhysicalType::Bytes)
                    {
                        start = self.var_end(prev)?;
                        break;
                    }
                }
                let base = self.layout.var_start();
                self.bytes
                    .get(base + start..base + end)
                    .map(Some)
                    .ok_or(malformed("variable value out of range"))
            }
        }
    }

    /// Column `col` as a value.
    ///
    /// # Errors
    /// Malformed stored bytes.
    pub fn value(&self, col: usize) -> Result<Value, TypeError> {
        let ty = self
            .layout
            .types
            .get(col)
            .ok_or(malformed("column index out of range"))?;
        match self.raw(col)? {
            None => Ok(Value::Null),
            Some(raw) => value_from_bytes(ty, raw),
        }
    }

    /// All columns as values.
    ///
    /// # Errors
    /// Malformed stored bytes.
    pub fn values(&self) -> Result<Vec<Value>, TypeError> {
        (0..self.layout.types.len())
            .map(|c| self.value(c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_types() -> Vec<SqlType> {
        vec![
            SqlType::Boolean,
            SqlType::SmallInt,
            SqlType::Integer,
            SqlType::BigInt,
            SqlType::Double,
            SqlType::Decimal {
                precision: 15,
                scale: 2,
            },
            SqlType::Decimal {
                precision: 30,
                scale: 4,
            },
            SqlType::Varchar { max_chars: 10 },
            SqlType::Text,
            SqlType::Date,
            SqlType::Timestamp,
            SqlType::Blob,
        ]
    }

    fn value_for(ty: SqlType) -> BoxedStrategy<Value> {
        let v = match ty {
            SqlType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            SqlType::SmallInt => any::<i16>().prop_map(Value::SmallInt).boxed(),
            SqlType::Integer => any::<i32>().prop_map(Value::Integer).boxed(),
            SqlType::BigInt => any::<i64>().prop_map(Value::BigInt).boxed(),
            SqlType::Double => any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Value::Double)
                .boxed(),
            SqlType::Decimal {
                precision: 15,
                scale,
            } => (-999_999_999_999_999i128..=999_999_999_999_999)
                .prop_map(move |m| Value::Decimal(Decimal::new(m, scale)))
                .boxed(),
            SqlType::Decimal { scale, .. } => (any::<i64>(), any::<i32>())
                .prop_map(move |(a, b)| {
                    Value::Decimal(Decimal::new(i128::from(a) * i128::from(b), scale))
                })
                .boxed(),
            SqlType::Varchar { .. } => "[a-zé]{0,10}".prop_map(Value::Text).boxed(),
            SqlType::Text => ".{0,40}".prop_map(Value::Text).boxed(),
            SqlType::Date => any::<i32>().prop_map(|d| Value::Date(Date(d))).boxed(),
            SqlType::Timestamp => any::<i64>()
                .prop_map(|t| Value::Timestamp(Timestamp(t)))
                .boxed(),
            SqlType::Blob => proptest::collection::vec(any::<u8>(), 0..50)
                .prop_map(Value::Blob)
                .boxed(),
        };
        prop_oneof![1 => Just(Value::Null), 4 => v].boxed()
    }

    fn row() -> impl Strategy<Value = Vec<Value>> {
        all_types().into_iter().map(value_for).collect::<Vec<_>>()
    }

    proptest! {
        #[test]
        fn rows_round_trip(values in row()) {
            let layout = RowLayout::new(&all_types()).unwrap();
            let mut buf = Vec::new();
            layout.encode(&values, &mut buf).unwrap();
            let decoded = layout.decode(&buf).unwrap().values().unwrap();
            prop_assert_eq!(decoded, values);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let layout = RowLayout::new(&all_types()).unwrap();
            if let Ok(row) = layout.decode(&bytes) {
                let _ = row.values();
            }
        }
    }

    #[test]
    fn wrong_type_is_refused_and_nothing_is_appended() {
        let layout = RowLayout::new(&[SqlType::Integer, SqlType::Text]).unwrap();
        let mut buf = vec![9u8];
        let err = layout.encode(&[Value::Text("x".into()), Value::Null], &mut buf);
        assert!(matches!(err, Err(TypeError::ValueMismatch { .. })));
        assert_eq!(buf, vec![9u8]);
    }

    #[test]
    fn truncated_row_is_malformed() {
        let layout = RowLayout::new(&[SqlType::Integer, SqlType::Text]).unwrap();
        let mut buf = Vec::new();
        layout
            .encode(&[Value::Integer(1), Value::Text("hello".into())], &mut buf)
            .unwrap();
        buf.pop();
        assert!(matches!(
            layout.decode(&buf),
            Err(TypeError::Malformed { .. })
        ));
    }
}
