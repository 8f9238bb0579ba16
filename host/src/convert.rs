//! Pure conversions the guest asks the host for, where exact results need more code
//! than is worth emitting into every module: DOUBLE PRECISION to and from text,
//! and the DOUBLE PRECISION functions of the C library.

use crate::HostError;
use scratchbird_guest_ops::abi::{ErrorCode, MathOp};

/// `f64_math`: function `op` of `x` (and `y` for a power), with PostgreSQL's
/// checks: the same domain errors and the same overflow and underflow errors
/// (`exp(-1000)` is an error there, not 0).
///
/// # Errors
/// A SQL error for an argument outside the domain, a result out of range, or
/// an unknown `op`.
pub fn f64_math(op: i32, x: f64, y: f64) -> Result<f64, HostError> {
    let bad = |detail: &str| HostError::Sql {
        code: ErrorCode::InvalidArgument,
        detail: detail.to_owned(),
    };
    let range = |detail: &str| HostError::Sql {
        code: ErrorCode::Overflow,
        detail: detail.to_owned(),
    };
    let Some(op) = MathOp::from_i32(op) else {
        return Err(HostError::abi(format!("f64_math: unknown function {op}")));
    };
    let r = match op {
        MathOp::Sqrt => {
            if x < 0.0 {
                return Err(bad("cannot take square root of a negative number"));
            }
            x.sqrt()
        }
        MathOp::Cbrt => x.cbrt(),
        MathOp::Exp => x.exp(),
        MathOp::Ln | MathOp::Log10 => {
            if x == 0.0 {
                return Err(bad("cannot take logarithm of zero"));
            }
            if x < 0.0 {
                return Err(bad("cannot take logarithm of a negative number"));
            }
            if op == MathOp::Ln { x.ln() } else { x.log10() }
        }
        MathOp::Pow => {
            if x == 0.0 && y < 0.0 {
                return Err(bad("zero raised to a negative power is undefined"));
            }
            if x < 0.0 && y.floor() != y {
                return Err(bad(
                    "a negative number raised to a non-integer power yields a complex result",
                ));
            }
            x.powf(y)
        }
    };
    if r.is_infinite() && x.is_finite() && y.is_finite() {
        return Err(range("value out of range: overflow"));
    }
    let underflow = match op {
        MathOp::Exp => r == 0.0 && x.is_finite(),
        MathOp::Pow => r == 0.0 && x != 0.0 && x.is_finite() && y.is_finite(),
        _ => false,
    };
    if underflow {
        return Err(range("value out of range: underflow"));
    }
    Ok(r)
}

/// The text of `x` as PostgreSQL prints a DOUBLE PRECISION (12 and later): the
/// shortest digits that read back exactly, in plain notation when the decimal
/// exponent is from -4 to 14, else as `d.ddde+XX` (at least two exponent digits).
#[must_use]
pub fn f64_text(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's {:e} gives the shortest round-trip digits: "-1.2345e-7"
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.unsigned_abs());
    }
    let n = digits.len() as i32;
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        return format!("{sign}{digits}{zeros}");
    }
    let (int, frac) = digits.split_at((exp + 1) as usize);
    format!("{sign}{int}.{frac}")
}

/// A DOUBLE PRECISION from text: optional spaces, a sign, digits with an optional
/// point and exponent. `None` for anything else, and for values that are not finite.
#[must_use]
pub fn text_f64(s: &str) -> Option<f64> {
    let t = s.trim_matches(' ');
    // only the plain forms: Rust would also read "inf" and "nan"
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_postgresql_prints_them() {
        // each pair checked against PostgreSQL 15's float8out
        for (x, want) in [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000_123_4, "0.0001234"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e-300, "1e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(f64_text(x), want, "{x:e}");
        }
    }

    #[test]
    fn text_reads_back_exactly_and_refuses_the_rest() {
        for x in [
            1.5,
            0.1,
            -2.25,
            1e15,
            1e-5,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(text_f64(&f64_text(x)), Some(x));
        }
        assert_eq!(text_f64("  12.5e1 "), Some(125.0));
        assert_eq!(text_f64("-.5"), Some(-0.5));
        for bad in [
            "", " ", "abc", "1,5", "inf", "NaN", "infinity", "1e999", "--1", "1 2",
        ] {
            assert_eq!(text_f64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn math_has_postgresql_domains_and_ranges() {
        use scratchbird_guest_ops::abi::MathOp as M;
        let ok = |op: M, x: f64, y: f64| f64_math(op as i32, x, y).unwrap();
        let err = |op: M, x: f64, y: f64| f64_math(op as i32, x, y).unwrap_err().to_string();
        assert_eq!(ok(M::Sqrt, 2.0, 0.0), 2f64.sqrt());
        assert_eq!(ok(M::Cbrt, -27.0, 0.0), -3.0);
        assert_eq!(ok(M::Exp, 1.0, 0.0), std::f64::consts::E);
        assert_eq!(ok(M::Ln, 2.0, 0.0), std::f64::consts::LN_2);
        assert_eq!(ok(M::Log10, 1000.0, 0.0), 3.0);
        assert_eq!(ok(M::Pow, -2.0, 3.0), -8.0);
        assert_eq!(ok(M::Pow, 0.0, 0.0), 1.0);
        assert!(err(M::Sqrt, -1.0, 0.0).contains("square root of a negative"));
        assert!(err(M::Ln, 0.0, 0.0).contains("logarithm of zero"));
        assert!(err(M::Log10, -1.0, 0.0).contains("logarithm of a negative"));
        assert!(err(M::Pow, 0.0, -1.0).contains("zero raised to a negative power"));
        assert!(err(M::Pow, -8.0, 0.5).contains("complex result"));
        assert!(err(M::Exp, 1000.0, 0.0).contains("overflow"));
        assert!(err(M::Exp, -1000.0, 0.0).contains("underflow"));
        assert!(err(M::Pow, 10.0, 400.0).contains("overflow"));
        assert!(f64_math(99, 1.0, 1.0).is_err());
    }
}
