//! The SQL types ScratchBird stores.

use crate::error::TypeError;
use crate::limits::{
    DECIMAL_NARROW_PRECISION_MAX_DIGITS, DECIMAL_PRECISION_MAX_DIGITS, VARCHAR_LENGTH_MAX_CHARS,
};
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// A declared column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SqlType {
    /// `BOOLEAN`
    Boolean,
    /// `SMALLINT`: 16-bit signed.
    SmallInt,
    /// `INTEGER`: 32-bit signed.
    Integer,
    /// `BIGINT`: 64-bit signed.
    BigInt,
    /// `DOUBLE PRECISION`: IEEE 754 binary64.
    Double,
    /// `DECIMAL(precision, scale)`: exact, `precision` digits of which `scale` are
    /// after the point. Stored as a scaled integer.
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: u8,
    },
    /// `VARCHAR(n)`: UTF-8 text of at most `n` characters.
    Varchar {
        /// Declared length in characters.
        max_chars: u32,
    },
    /// `TEXT`: UTF-8 text bounded only by the row size limit.
    Text,
    /// `DATE`: days since 1970-01-01 (proleptic Gregorian).
    Date,
    /// `TIMESTAMP` (without time zone): microseconds since 1970-01-01 00:00:00.
    Timestamp,
    /// `BLOB`: bytes bounded only by the row size limit.
    Blob,
}

/// How a type is laid out in rows, pages and batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhysicalType {
    /// One byte, 0 or 1.
    Bool,
    /// 2-byte little-endian signed.
    I16,
    /// 4-byte little-endian signed (INTEGER, DATE).
    I32,
    /// 8-byte little-endian signed (BIGINT, TIMESTAMP, DECIMAL up to 18 digits).
    I64,
    /// 8-byte little-endian IEEE 754.
    F64,
    /// 16-byte little-endian signed (DECIMAL above 18 digits).
    I128,
    /// Variable-length bytes (VARCHAR, TEXT as UTF-8; BLOB).
    Bytes,
}

impl PhysicalType {
    /// Width in bytes of a fixed-width value, `None` for variable-length bytes.
    #[must_use]
    pub const fn fixed_width(self) -> Option<usize> {
        match self {
            Self::Bool => Some(1),
            Self::I16 => Some(2),
            Self::I32 => Some(4),
            Self::I64 | Self::F64 => Some(8),
            Self::I128 => Some(16),
            Self::Bytes => None,
        }
    }
}

impl SqlType {
    /// The physical layout of this type.
    #[must_use]
    pub const fn physical(&self) -> PhysicalType {
        match self {
            Self::Boolean => PhysicalType::Bool,
            Self::SmallInt => PhysicalType::I16,
            Self::Integer | Self::Date => PhysicalType::I32,
            Self::BigInt | Self::Timestamp => PhysicalType::I64,
            Self::Double => PhysicalType::F64,
            Self::Decimal { precision, .. } => {
                if *precision <= DECIMAL_NARROW_PRECISION_MAX_DIGITS {
                    PhysicalType::I64
                } else {
                    PhysicalType::I128
                }
            }
            Self::Varchar { .. } | Self::Text | Self::Blob => PhysicalType::Bytes,
        }
    }

    /// Checks that the declaration is in range.
    ///
    /// # Errors
    /// [`TypeError::InvalidType`] naming the bound that is exceeded.
    pub fn validate(&self) -> Result<(), TypeError> {
        let bad = |reason| {
            Err(TypeError::InvalidType {
                ty: self.to_string(),
                reason,
            })
        };
        match *self {
            Self::Decimal { precision, scale } => {
                if precision == 0 || precision > DECIMAL_PRECISION_MAX_DIGITS {
                    return bad("DECIMAL precision must be between 1 and 38");
                }
                if scale > precision {
                    return bad("DECIMAL scale must not exceed its precision");
                }
                Ok(())
            }
            Self::Varchar { max_chars } => {
                if max_chars == 0 || max_chars > VARCHAR_LENGTH_MAX_CHARS {
                    return bad("VARCHAR length must be between 1 and 32765 characters");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Checks that `value` is a value of this type (NULL is accepted here; NOT NULL is
    /// a column property checked by the caller).
    ///
    /// # Errors
    /// [`TypeError::ValueMismatch`] saying why the value does not fit.
    pub fn check_value(&self, value: &Value) -> Result<(), TypeError> {
        let mismatch = |reason| {
            Err(TypeError::ValueMismatch {
                ty: self.to_string(),
                value: value.to_display_truncated(48),
                reason,
            })
        };
        match (self, value) {
            (_, Value::Null)
            | (Self::Boolean, Value::Boolean(_))
            | (Self::SmallInt, Value::SmallInt(_))
            | (Self::Integer, Value::Integer(_))
            | (Self::BigInt, Value::BigInt(_))
            | (Self::Double, Value::Double(_))
            | (Self::Text, Value::Text(_))
            | (Self::Date, Value::Date(_))
            | (Self::Timestamp, Value::Timestamp(_))
            | (Self::Blob, Value::Blob(_)) => Ok(()),
            (Self::Varchar { max_chars }, Value::Text(s)) => {
                // Byte length bounds the character count from above: skip the count
                // when the bytes alone already fit.
                let fits =
                    s.len() <= *max_chars as usize || s.chars().count() <= *max_chars as usize;
                if fits {
                    Ok(())
                } else {
                    mismatch("text is longer than the declared VARCHAR length")
                }
            }
            (Self::Decimal { precision, scale }, Value::Decimal(d)) => {
                if d.scale() != *scale {
                    return mismatch("DECIMAL value has a different scale than the column");
                }
                if !d.fits_precision(*precision) {
                    return mismatch("DECIMAL value has more digits than the declared precision");
                }
                Ok(())
            }
            _ => mismatch("value is of another type"),
        }
    }
}

impl std::str::FromStr for SqlType {
    type Err = TypeError;

    /// Parses the SQL spelling (`BIGINT`, `DECIMAL(15,2)`, `VARCHAR(40)`, `DOUBLE
    /// PRECISION`, ...; case and spaces are not significant) and validates it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let bad = |reason| TypeError::InvalidType {
            ty: s.to_owned(),
            reason,
        };
        let args = |name: &str| -> Option<Vec<u32>> {
            let rest = norm.strip_prefix(name)?.trim_start();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            inner
                .split(',')
                .map(|a| a.trim().parse::<u32>().ok())
                .collect()
        };
        let ty = match norm.as_str() {
            "BOOLEAN" | "BOOL" => Self::Boolean,
            "SMALLINT" => Self::SmallInt,
            "INTEGER" | "INT" => Self::Integer,
            "BIGINT" => Self::BigInt,
            "DOUBLE PRECISION" | "DOUBLE" => Self::Double,
            "TEXT" => Self::Text,
            "DATE" => Self::Date,
            "TIMESTAMP" => Self::Timestamp,
            "BLOB" => Self::Blob,
            other if other.starts_with("VARCHAR") => match args("VARCHAR").as_deref() {
                Some([n]) => Self::Varchar { max_chars: *n },
                _ => return Err(bad("write VARCHAR(n)")),
            },
            other if other.starts_with("DECIMAL") || other.starts_with("NUMERIC") => {
                let name = if other.starts_with("DECIMAL") {
                    "DECIMAL"
                } else {
                    "NUMERIC"
                };
                match args(name).as_deref() {
                    Some([p]) => Self::Decimal {
                        precision: u8::try_from(*p).map_err(|_| bad("precision too large"))?,
                        scale: 0,
                    },
                    Some([p, s]) => Self::Decimal {
                        precision: u8::try_from(*p).map_err(|_| bad("precision too large"))?,
                        scale: u8::try_from(*s).map_err(|_| bad("scale too large"))?,
                    },
                    _ => return Err(bad("write DECIMAL(p,s)")),
                }
            }
            _ => return Err(bad("unknown type name")),
        };
        ty.validate()?;
        Ok(ty)
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Boolean => f.write_str("BOOLEAN"),
            Self::SmallInt => f.write_str("SMALLINT"),
            Self::Integer => f.write_str("INTEGER"),
            Self::BigInt => f.write_str("BIGINT"),
            Self::Double => f.write_str("DOUBLE PRECISION"),
            Self::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            Self::Varchar { max_chars } => write!(f, "VARCHAR({max_chars})"),
            Self::Text => f.write_str("TEXT"),
            Self::Date => f.write_str("DATE"),
            Self::Timestamp => f.write_str("TIMESTAMP"),
            Self::Blob => f.write_str("BLOB"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Decimal;

    #[test]
    fn decimal_precision_out_of_range_is_rejected() {
        assert!(
            SqlType::Decimal {
                precision: 39,
                scale: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            SqlType::Decimal {
                precision: 5,
                scale: 6
            }
            .validate()
            .is_err()
        );
        assert!(
            SqlType::Decimal {
                precision: 38,
                scale: 38
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn varchar_length_counts_characters_not_bytes() {
        let ty = SqlType::Varchar { max_chars: 3 };
        assert!(ty.check_value(&Value::Text("äöü".into())).is_ok());
        assert!(ty.check_value(&Value::Text("äöüx".into())).is_err());
    }

    #[test]
    fn decimal_value_must_match_scale_and_precision() {
        let ty = SqlType::Decimal {
            precision: 5,
            scale: 2,
        };
        assert!(
            ty.check_value(&Value::Decimal(Decimal::new(99_999, 2)))
                .is_ok()
        );
        assert!(
            ty.check_value(&Value::Decimal(Decimal::new(100_000, 2)))
                .is_err()
        );
        assert!(ty.check_value(&Value::Decimal(Decimal::new(1, 3))).is_err());
        assert!(ty.check_value(&Value::Integer(1)).is_err());
    }

    #[test]
    fn types_parse_from_their_sql_spelling_and_back() {
        for t in [
            SqlType::Boolean,
            SqlType::SmallInt,
            SqlType::Integer,
            SqlType::BigInt,
            SqlType::Double,
            SqlType::Decimal {
                precision: 15,
                scale: 2,
            },
            SqlType::Varchar { max_chars: 40 },
            SqlType::Text,
            SqlType::Date,
            SqlType::Timestamp,
            SqlType::Blob,
        ] {
            assert_eq!(t.to_string().parse::<SqlType>().unwrap(), t);
        }
        assert_eq!(
            "numeric( 10 )".parse::<SqlType>().unwrap(),
            SqlType::Decimal {
                precision: 10,
                scale: 0
            }
        );
        assert!("VARCHAR".parse::<SqlType>().is_err());
        assert!("DECIMAL(50,2)".parse::<SqlType>().is_err());
        assert!("JSONB".parse::<SqlType>().is_err());
    }

    #[test]
    fn narrow_decimals_take_eight_bytes() {
        let narrow = SqlType::Decimal {
            precision: 18,
            scale: 2,
        };
        let wide = SqlType::Decimal {
            precision: 19,
            scale: 2,
        };
        assert_eq!(narrow.physical(), PhysicalType::I64);
        assert_eq!(wide.physical(), PhysicalType::I128);
    }
}
