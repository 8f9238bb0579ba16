//! `to_char(DATE or TIMESTAMP, 'format')` with PostgreSQL's common
//! patterns, written out when the statement is compiled (`to_char` of a
//! number is checked here and written by the shard's host: `types::numfmt`):
//! each pattern
//! becomes the date part it names, zero-padded (or blank-padded, for names)
//! as PostgreSQL pads it unless `FM` precedes it, and the pieces are
//! concatenated. A format pattern this does not know is refused by name, not
//! copied as text.

use super::*;
use scratchbird_guest_ops::plan::TruncUnit;

/// How a name is written: `MONTH`, `Month`, `month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Title,
    Lower,
}

/// One pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    /// `YYYY`: the year, at least 4 digits.
    Year4,
    /// `YY`: its last two digits.
    Year2,
    /// `MM`, `DD`, `HH24`, `MI`, `SS`: two digits.
    Two(DatePart),
    /// `HH12`, `HH`: the hour 01 to 12.
    Hour12,
    /// `DDD`: the day of the year, three digits.
    DayOfYear,
    /// `D`: the day of the week, 1 (Sunday) to 7.
    DayOfWeek,
    /// `Q`: the quarter.
    Quarter,
    /// `Month`: the month's name, blank-padded to 9.
    Month(Case),
    /// `Mon`: its first three letters.
    Mon(Case),
    /// `Day`: the weekday's name, blank-padded to 9.
    Day(Case),
    /// `Dy`: its first three letters.
    Dy(Case),
    /// `AM`, `PM` (either names the meridiem), `am`, `pm`.
    Meridiem(Case),
}

/// A piece of the output: literal text, or a pattern (with `FM`: unpadded).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Pattern(Pat, bool),
}

/// The patterns, longest first (a pattern that begins a longer one is
/// tried after it). Numeric patterns are matched in any case; a name's
/// case says how it is written. `None`: one of PostgreSQL's that is not
/// supported yet, refused rather than taken for text. Other letters are
/// text, as PostgreSQL takes them.
const PATTERNS: &[(&str, Option<Pat>, bool)] = &[
    ("Y,YYY", None, false),
    ("SSSSS", None, false),
    ("MONTH", Some(Pat::Month(Case::Upper)), true),
    ("Month", Some(Pat::Month(Case::Title)), true),
    ("month", Some(Pat::Month(Case::Lower)), true),
    ("HH24", Some(Pat::Two(DatePart::Hour)), false),
    ("HH12", Some(Pat::Hour12), false),
    ("YYYY", Some(Pat::Year4), false),
    ("IYYY", None, false),
    ("IDDD", None, false),
    ("SSSS", None, false),
    ("A.M.", None, false),
    ("P.M.", None, false),
    ("B.C.", None, false),
    ("A.D.", None, false),
    ("DAY", Some(Pat::Day(Case::Upper)), true),
    ("Day", Some(Pat::Day(Case::Title)), true),
    ("day", Some(Pat::Day(Case::Lower)), true),
    ("DDD", Some(Pat::DayOfYear), false),
    ("MON", Some(Pat::Mon(Case::Upper)), true),
    ("Mon", Some(Pat::Mon(Case::Title)), true),
    ("mon", Some(Pat::Mon(Case::Lower)), true),
    ("YYY", None, false),
    ("IYY", None, false),
    ("TZH", None, false),
    ("TZM", None, false),
    ("DY", Some(Pat::Dy(Case::Upper)), true),
    ("Dy", Some(Pat::Dy(Case::Title)), true),
    ("dy", Some(Pat::Dy(Case::Lower)), true),
    ("AM", Some(Pat::Meridiem(Case::Upper)), true),
    ("PM", Some(Pat::Meridiem(Case::Upper)), true),
    ("am", Some(Pat::Meridiem(Case::Lower)), true),
    ("pm", Some(Pat::Meridiem(Case::Lower)), true),
    ("HH", Some(Pat::Hour12), false),
    ("YY", Some(Pat::Year2), false),
    ("MM", Some(Pat::Two(DatePart::Month)), false),
    ("MI", Some(Pat::Two(DatePart::Minute)), false),
    ("SS", Some(Pat::Two(DatePart::Second)), false),
    ("DD", Some(Pat::Two(DatePart::Day)), false),
    ("IY", None, false),
    ("ID", None, false),
    ("IW", None, false),
    ("WW", None, false),
    ("CC", None, false),
    ("US", None, false),
    ("MS", None, false),
    ("TZ", None, false),
    ("OF", None, false),
    ("RM", None, false),
    ("TH", None, false),
    ("SP", None, false),
    ("FX", None, false),
    ("TM", None, false),
    ("BC", None, false),
    ("AD", None, false),
    ("D", Some(Pat::DayOfWeek), false),
    ("Q", Some(Pat::Quarter), false),
    ("Y", None, false),
    ("I", None, false),
    ("W", None, false),
    ("J", None, false),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Sunday first, as `D` counts.
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn refused(what: String) -> CompileError {
    CompileError::new(codes::NOT_SUPPORTED, what).hint(
        "to_char knows YYYY, YY, MM, DD, DDD, D, Q, HH24, HH12, HH, MI, SS, AM/PM, Month, Mon, Day, Dy (in upper, title or lower case) and FM; put other text in double quotes",
    )
}

/// The pieces of format `f`.
fn parse(f: &str) -> Result<Vec<Piece>, CompileError> {
    let mut out: Vec<Piece> = Vec::new();
    let text = |out: &mut Vec<Piece>, c: char| match out.last_mut() {
        Some(Piece::Text(t)) => t.push(c),
        _ => out.push(Piece::Text(c.to_string())),
    };
    let mut rest = f;
    let mut fm = false;
    while let Some(c) = rest.chars().next() {
        if rest.len() >= 2 && rest.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("FM")) {
            fm = true;
            rest = rest.get(2..).unwrap_or_default();
            continue;
        }
        if let Some((t, after)) = scratchbird_types::numfmt::format_literal(rest) {
            for ch in t.chars() {
                text(&mut out, ch);
            }
            rest = after;
            continue;
        }
        let hit = PATTERNS.iter().find(|(name, _, exact)| {
            rest.get(..name.len()).is_some_and(|p| {
                if *exact {
                    p == *name
                } else {
                    p.eq_ignore_ascii_case(name)
                }
            })
        });
        match hit {
            Some((name, Some(pat), _)) => {
                out.push(Piece::Pattern(*pat, fm));
                fm = false;
                rest = rest.get(name.len()..).unwrap_or_default();
                continue;
            }
            Some((name, None, _)) => {
                return Err(refused(format!(
                    "to_char pattern \"{}\" is not supported yet",
                    rest.get(..name.len()).unwrap_or(name)
                )));
            }
            None => {}
        }
        text(&mut out, c);
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    Ok(out)
}

/// `to_char(x, format)` of a number `x`: the format checked now, applied by
/// the shard's host to the number's text (`to_char_number`).
fn to_char_number(x: BExpr, format: &str) -> Result<BExpr, CompileError> {
    use scratchbird_guest_ops::abi::{NumberKind, TO_CHAR_FORMAT_BYTES_MAX};
    use scratchbird_types::numfmt::{NumFormat, NumFormatError};
    if format.len() > TO_CHAR_FORMAT_BYTES_MAX {
        return Err(CompileError::new(
            codes::LIMIT,
            format!(
                "a to_char format of {} bytes: at most {TO_CHAR_FORMAT_BYTES_MAX}",
                format.len()
            ),
        ));
    }
    NumFormat::parse(format).map_err(|e| match e {
        NumFormatError::Syntax(m) => CompileError::new(codes::SYNTAX, m),
        NumFormatError::Unsupported(_) => CompileError::new(codes::NOT_SUPPORTED, e.to_string())
            .hint("to_char of a number knows 9, 0, . and D, , and G, S, MI, PL, SG, PR, TH and FM; put other text in double quotes"),
    })?;
    let kind = if x.ty == SqlType::Double {
        NumberKind::Double
    } else {
        NumberKind::Exact
    };
    let nl = x.nullable;
    Ok(mk(
        BK::Func(
            Func::ToCharNumber(kind),
            vec![coerce(x, SqlType::Text), lit_text(format)],
        ),
        SqlType::Text,
        nl,
    ))
}

fn cased(s: &str, c: Case) -> String {
    match c {
        Case::Upper => s.to_uppercase(),
        Case::Title => s.to_owned(),
        Case::Lower => s.to_lowercase(),
    }
}

fn lit_text(s: &str) -> BExpr {
    BExpr::lit(Value::Text(s.to_owned()), SqlType::Text)
}

fn lit_int(n: i32) -> BExpr {
    BExpr::lit(Value::Integer(n), SqlType::Integer)
}

impl Binder<'_> {
    /// `to_char(x, format)`: `x` a DATE or TIMESTAMP, `format` the literal
    /// text.
    pub(super) fn bind_to_char(&mut self, x: BExpr, format: &str) -> Result<BExpr, CompileError> {
        let ts = match x.ty {
            _ if is_null_lit(&x) => BExpr::lit(Value::Null, SqlType::Timestamp),
            SqlType::Date | SqlType::Timestamp => coerce(x, SqlType::Timestamp),
            SqlType::SmallInt
            | SqlType::Integer
            | SqlType::BigInt
            | SqlType::Decimal { .. }
            | SqlType::Double => return to_char_number(x, format),
            t => {
                return Err(refused(format!(
                    "to_char of {t} is not supported yet (of a number, a DATE or a TIMESTAMP it is)"
                )));
            }
        };
        let mut acc: Option<BExpr> = None;
        for p in parse(format)? {
            let piece = match p {
                Piece::Text(t) => lit_text(&t),
                Piece::Pattern(pat, fm) => self.pattern(&ts, pat, fm)?,
            };
            acc = Some(match acc {
                None => coerce(piece, SqlType::Text),
                Some(a) => {
                    let n = a.nullable || piece.nullable;
                    mk(
                        BK::Func(Func::Concat, vec![a, coerce(piece, SqlType::Text)]),
                        SqlType::Text,
                        n,
                    )
                }
            });
        }
        let out = acc.unwrap_or_else(|| lit_text(""));
        if !ts.nullable {
            return Ok(out);
        }
        // of NULL, NULL (also for a format of no pattern)
        let t = self.dup(&ts)?;
        Ok(mk(
            BK::Case(
                vec![(
                    mk(BK::IsNull(Box::new(t)), SqlType::Boolean, false),
                    BExpr::lit(Value::Null, SqlType::Text),
                )],
                Box::new(out),
            ),
            SqlType::Text,
            true,
        ))
    }

    fn part(&mut self, ts: &BExpr, part: DatePart) -> Result<BExpr, CompileError> {
        super::expr::extract(part, self.dup(ts)?)
    }

    /// `n` as text, zero-padded to `width` digits unless `fm`.
    fn padded(&mut self, n: BExpr, width: i64, fm: bool) -> Result<BExpr, CompileError> {
        let t = coerce(n, SqlType::Text);
        if fm {
            return Ok(t);
        }
        self.text_fn(
            "lpad",
            vec![
                t,
                BExpr::lit(Value::BigInt(width), SqlType::BigInt),
                lit_text("0"),
            ],
        )
    }

    /// The name in `names` that number `n` (from `first`) picks, cased, cut
    /// to `len` characters or blank-padded to `pad` unless `fm`.
    fn name_of(
        &mut self,
        n: BExpr,
        first: i32,
        names: &[&str],
        case: Case,
        short: bool,
        fm: bool,
    ) -> Result<BExpr, CompileError> {
        let mut arms = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let k = first + i32::try_from(i).unwrap_or(0);
            let text: String = if short {
                name.chars().take(3).collect()
            } else if fm {
                (*name).to_owned()
            } else {
                format!("{name:<9}")
            };
            let d = self.dup(&n)?;
            let cond = self.compare(CmpOp::Eq, d, lit_int(k))?;
            arms.push((cond, lit_text(&cased(&text, case))));
        }
        let nl = n.nullable;
        Ok(mk(
            BK::Case(arms, Box::new(BExpr::lit(Value::Null, SqlType::Text))),
            SqlType::Text,
            nl,
        ))
    }

    /// Days since 1970-01-01 of `ts`'s date.
    fn epoch_days(&mut self, ts: &BExpr) -> Result<BExpr, CompileError> {
        let d = coerce(self.dup(ts)?, SqlType::Date);
        self.arith(
            ArithOp::Sub,
            d,
            BExpr::lit(Value::Date(scratchbird_types::Date(0)), SqlType::Date),
        )
    }

    /// The day of the week, 0 (Sunday) to 6.
    fn weekday(&mut self, ts: &BExpr) -> Result<BExpr, CompileError> {
        // 1970-01-01 was a Thursday (4); % keeps the dividend's sign
        let days = self.epoch_days(ts)?;
        let m = self.arith(ArithOp::Mod, days, lit_int(7))?;
        let m = self.arith(ArithOp::Add, m, lit_int(11))?;
        self.arith(ArithOp::Mod, m, lit_int(7))
    }

    fn pattern(&mut self, ts: &BExpr, pat: Pat, fm: bool) -> Result<BExpr, CompileError> {
        match pat {
            Pat::Year4 => {
                let y = self.part(ts, DatePart::Year)?;
                self.padded(y, 4, fm)
            }
            Pat::Year2 => {
                let y = self.part(ts, DatePart::Year)?;
                let y = self.arith(ArithOp::Mod, y, lit_int(100))?;
                self.padded(y, 2, fm)
            }
            Pat::Two(p) => {
                let v = self.part(ts, p)?;
                self.padded(v, 2, fm)
            }
            Pat::Hour12 => {
                // (h + 11) % 12 + 1: 0 is 12, 13 is 1
                let h = self.part(ts, DatePart::Hour)?;
                let h = self.arith(ArithOp::Add, h, lit_int(11))?;
                let h = self.arith(ArithOp::Mod, h, lit_int(12))?;
                let h = self.arith(ArithOp::Add, h, lit_int(1))?;
                self.padded(h, 2, fm)
            }
            Pat::DayOfYear => {
                let t = self.dup(ts)?;
                let jan1 = mk(
                    BK::Func(Func::DateTrunc(TruncUnit::Year), vec![t]),
                    SqlType::Timestamp,
                    ts.nullable,
                );
                let a = self.epoch_days(ts)?;
                let b = self.epoch_days(&jan1)?;
                let d = self.arith(ArithOp::Sub, a, b)?;
                let d = self.arith(ArithOp::Add, d, lit_int(1))?;
                self.padded(d, 3, fm)
            }
            Pat::DayOfWeek => {
                let d = self.weekday(ts)?;
                let d = self.arith(ArithOp::Add, d, lit_int(1))?;
                Ok(coerce(d, SqlType::Text))
            }
            Pat::Quarter => {
                let m = self.part(ts, DatePart::Month)?;
                let m = self.arith(ArithOp::Add, m, lit_int(2))?;
                let q = self.arith(ArithOp::Div, m, lit_int(3))?;
                Ok(coerce(q, SqlType::Text))
            }
            Pat::Month(c) | Pat::Mon(c) => {
                let m = self.part(ts, DatePart::Month)?;
                self.name_of(m, 1, &MONTHS, c, matches!(pat, Pat::Mon(_)), fm)
            }
            Pat::Day(c) | Pat::Dy(c) => {
                let d = self.weekday(ts)?;
                self.name_of(d, 0, &DAYS, c, matches!(pat, Pat::Dy(_)), fm)
            }
            Pat::Meridiem(c) => {
                let h = self.part(ts, DatePart::Hour)?;
                let am = self.compare(CmpOp::Lt, h, lit_int(12))?;
                let nl = am.nullable;
                Ok(mk(
                    BK::Case(
                        vec![(am, lit_text(&cased("AM", c)))],
                        Box::new(lit_text(&cased("PM", c))),
                    ),
                    SqlType::Text,
                    nl,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_split_into_patterns_text_and_fm() {
        let p = parse("FMDay, DD \"of\" Month YYYY HH24:MI").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Pattern(Pat::Day(Case::Title), true),
                Piece::Text(", ".into()),
                Piece::Pattern(Pat::Two(DatePart::Day), false),
                Piece::Text(" of ".into()),
                Piece::Pattern(Pat::Month(Case::Title), false),
                Piece::Text(" ".into()),
                Piece::Pattern(Pat::Year4, false),
                Piece::Text(" ".into()),
                Piece::Pattern(Pat::Two(DatePart::Hour), false),
                Piece::Text(":".into()),
                Piece::Pattern(Pat::Two(DatePart::Minute), false),
            ]
        );
        assert_eq!(
            parse("yyyy-mm-dd").unwrap()[0],
            Piece::Pattern(Pat::Year4, false)
        );
        let e = parse("YYYY-WW").unwrap_err();
        assert!(e.message.contains("\"WW\""), "{}", e.message);
        // letters that begin no pattern are text, as in PostgreSQL
        assert_eq!(
            parse("HH24hMIm").unwrap(),
            vec![
                Piece::Pattern(Pat::Two(DatePart::Hour), false),
                Piece::Text("h".into()),
                Piece::Pattern(Pat::Two(DatePart::Minute), false),
                Piece::Text("m".into()),
            ]
        );
        // outside quotes a backslash is text and escapes only a quote, as
        // PostgreSQL reads it
        assert_eq!(
            parse("\\x \"a\\\"b\"").unwrap(),
            vec![Piece::Text("\\x a\"b".into())]
        );
        assert_eq!(
            parse("\\YYYY\\\"").unwrap(),
            vec![
                Piece::Text("\\".into()),
                Piece::Pattern(Pat::Year4, false),
                Piece::Text("\"".into()),
            ]
        );
    }
}
