//! SQL values.

use serde::{Deserialize, Serialize};

/// An exact decimal: `mantissa / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

impl Decimal {
    /// `mantissa / 10^scale`.
    #[must_use]
    pub const fn new(mantissa: i128, scale: u8) -> Self {
        Self { mantissa, scale }
    }

    /// The scaled integer.
    #[must_use]
    pub const fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// Digits after the point.
    #[must_use]
    pub const fn scale(&self) -> u8 {
        self.scale
    }

    /// Whether the value has at most `precision` digits.
    #[must_use]
    pub fn fits_precision(&self, precision: u8) -> bool {
        let Some(bound) = 10i128.checked_pow(u32::from(precision)) else {
            return true;
        };
        self.mantissa.unsigned_abs() < bound.unsigned_abs()
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// A date: days since 1970-01-01 in the proleptic Gregorian calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date(pub i32);

impl Date {
    /// The date of a calendar day, `None` if the day does not exist.
    #[must_use]
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        i32::try_from(days).ok().map(Self)
    }

    /// (year, month, day).
    #[must_use]
    pub fn to_ymd(self) -> (i64, u32, u32) {
        civil_from_days(i64::from(self.0))
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A timestamp without time zone: microseconds since 1970-01-01 00:00:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MICROS_PER_DAY: i64 = 86_400_000_000;
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = in_day / 1_000_000;
        let micros = in_day % 1_000_000;
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

const fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(year) {
                29
            } else {
                28
            }
        }
    }
}

// Calendar arithmetic after Howard Hinnant's "chrono-compatible low-level date
// algorithms" (days_from_civil / civil_from_days), written for i64.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d is in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// A SQL value. `Text` serves VARCHAR and TEXT; the column type decides the bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BOOLEAN
    Boolean(bool),
    /// SMALLINT
    SmallInt(i16),
    /// INTEGER
    Integer(i32),
    /// BIGINT
    BigInt(i64),
    /// DOUBLE PRECISION
    Double(f64),
    /// DECIMAL(p,s): the scale equals the column's scale.
    Decimal(Decimal),
    /// VARCHAR(n) or TEXT
    Text(String),
    /// DATE
    Date(Date),
    /// TIMESTAMP
    Timestamp(Timestamp),
    /// BLOB
    Blob(Vec<u8>),
}

impl Value {
    /// Whether this is SQL NULL.
    #[must_use]
    pub const fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// A rendering for messages, cut after `max_chars` characters.
    #[must_use]
    pub fn to_display_truncated(&self, max_chars: usize) -> String {
        let full = self.to_string();
        if full.chars().count() <= max_chars {
            return full;
        }
        let mut cut: String = full.chars().take(max_chars).collect();
        cut.push('…');
        cut
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Boolean(b) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Self::SmallInt(v) => write!(f, "{v}"),
            Self::Integer(v) => write!(f, "{v}"),
            Self::BigInt(v) => write!(f, "{v}"),
            Self::Double(v) => write!(f, "{v}"),
            Self::Decimal(d) => write!(f, "{d}"),
            Self::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Self::Date(d) => write!(f, "DATE '{d}'"),
            Self::Timestamp(t) => write!(f, "TIMESTAMP '{t}'"),
            Self::Blob(b) => {
                f.write_str("X'")?;
                for byte in b {
                    write!(f, "{byte:02X}")?;
                }
                f.write_str("'")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_renders_with_scale() {
        assert_eq!(Decimal::new(12_345, 2).to_string(), "123.45");
        assert_eq!(Decimal::new(-5, 2).to_string(), "-0.05");
        assert_eq!(Decimal::new(7, 0).to_string(), "7");
    }

    #[test]
    fn dates_render_in_iso_form() {
        assert_eq!(Date(0).to_string(), "1970-01-01");
        assert_eq!(
            Date::from_ymd(1998, 12, 1)
                .map(|d| d.to_string())
                .as_deref(),
            Some("1998-12-01")
        );
        assert_eq!(Date::from_ymd(2023, 2, 29), None);
        assert_eq!(
            Timestamp(86_400_000_001).to_string(),
            "1970-01-02 00:00:00.000001"
        );
    }

    proptest! {
        #[test]
        fn date_round_trips_through_civil(days in -1_000_000i32..1_000_000) {
            let (y, m, d) = Date(days).to_ymd();
            let back = Date::from_ymd(i32::try_from(y).unwrap(), m, d);
            prop_assert_eq!(back, Some(Date(days)));
        }
    }
}
