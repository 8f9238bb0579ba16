//! `to_char` of a number: PostgreSQL's numeric format patterns.
//!
//! A format is parsed once ([`NumFormat::parse`]: the compiler checks it when
//! the statement is compiled, and the shard's host applies it to each value).
//! The patterns: `9` (a digit, blank when it is a leading zero), `0` (a
//! digit, shown even when a leading zero; from the first `0` on, every
//! position is shown), `.` and `D` (the decimal point), `,` and `G` (a group
//! separator, blank until a digit is shown), `S` (the sign, `+` or `-`,
//! anchored to the number or at the end), `MI`, `PL`, `SG` (minus, plus, or
//! either, at that place), `PR` (a negative number in angle brackets), `TH` /
//! `th` (the ordinal suffix of an integer), and `FM` (fill mode: no padding
//! blanks, no trailing zeros past the last `0`). Any other character, and text
//! in double quotes, is copied. A value with more integer digits than the
//! format has places is written as `#`s. Rounding is as PostgreSQL's: half
//! away from zero for an exact number, half to even on the binary value for a
//! DOUBLE PRECISION, which keeps at most 15 significant digits.
//!
//! PostgreSQL's `B`, `C`, `EEEE`, `L`, `RN`, `SP` and `V` are refused by name,
//! rather than taken for text.

use std::fmt;

/// Why a format was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumFormatError {
    /// PostgreSQL refuses the format too (SQLSTATE 42601); its message.
    Syntax(String),
    /// A pattern PostgreSQL knows and this does not yet.
    Unsupported(String),
}

impl fmt::Display for NumFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(m) => f.write_str(m),
            Self::Unsupported(p) => write!(
                f,
                "to_char pattern \"{p}\" is not supported yet for numbers"
            ),
        }
    }
}

/// One pattern or piece of text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// `9`.
    Nine,
    /// `0`.
    Zero,
    /// `.` or `D`.
    Point,
    /// `,` or `G`.
    Group,
    /// `MI`.
    Minus,
    /// `PL`.
    Plus,
    /// `SG`.
    PlusMinus,
    /// `TH` (true) or `th`.
    Ordinal(bool),
    /// Copied as it is.
    Text(String),
}

/// Where `S` puts the sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// Just before the first digit shown.
    Before,
    /// Just after the last digit.
    After,
}

/// A parsed numeric format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumFormat {
    toks: Vec<Tok>,
    /// Digit places before the decimal point, and after it.
    pre: usize,
    post: usize,
    point: bool,
    fill: bool,
    /// The place (0-based, before the point) of the first `0`.
    zero_from: Option<usize>,
    /// Places up to and including the last `0` (0: none).
    zero_end: usize,
    /// `S`, and how many places came before it.
    anchor: Option<(Anchor, usize)>,
    minus: bool,
    plus: bool,
    bracket: bool,
}

/// Patterns, longest first where one begins another. `None`: refused.
const WORDS: &[(&str, Option<Word>)] = &[
    ("EEEE", None),
    ("eeee", None),
    ("FM", Some(Word::Fill)),
    ("fm", Some(Word::Fill)),
    ("MI", Some(Word::Tok(Tok::Minus))),
    ("mi", Some(Word::Tok(Tok::Minus))),
    ("PL", Some(Word::Tok(Tok::Plus))),
    ("pl", Some(Word::Tok(Tok::Plus))),
    ("SG", Some(Word::Tok(Tok::PlusMinus))),
    ("sg", Some(Word::Tok(Tok::PlusMinus))),
    ("PR", Some(Word::Bracket)),
    ("pr", Some(Word::Bracket)),
    ("TH", Some(Word::Tok(Tok::Ordinal(true)))),
    ("th", Some(Word::Tok(Tok::Ordinal(false)))),
    ("RN", None),
    ("rn", None),
    ("SP", None),
    ("sp", None),
    ("9", Some(Word::Tok(Tok::Nine))),
    ("0", Some(Word::Tok(Tok::Zero))),
    (".", Some(Word::Tok(Tok::Point))),
    ("D", Some(Word::Tok(Tok::Point))),
    ("d", Some(Word::Tok(Tok::Point))),
    (",", Some(Word::Tok(Tok::Group))),
    ("G", Some(Word::Tok(Tok::Group))),
    ("g", Some(Word::Tok(Tok::Group))),
    ("S", Some(Word::Sign)),
    ("s", Some(Word::Sign)),
    ("B", None),
    ("b", None),
    ("C", None),
    ("c", None),
    ("E", None),
    ("e", None),
    ("L", None),
    ("l", None),
    ("V", None),
    ("v", None),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Tok(Tok),
    Fill,
    Sign,
    Bracket,
}

fn syntax(m: &str) -> NumFormatError {
    NumFormatError::Syntax(m.to_owned())
}

/// Literal text at the start of a `to_char` format, date or number, as
/// PostgreSQL reads it: a double-quoted run (inside it `\` takes the next
/// character as it is; an unclosed run goes to the end), or a backslash
/// outside quotes, which is text itself and escapes only a following quote.
/// The text and the rest of the format; `None` when `rest` begins with
/// neither.
#[must_use]
pub fn format_literal(rest: &str) -> Option<(String, &str)> {
    if let Some(after) = rest.strip_prefix('"') {
        let mut text = String::new();
        let mut it = after.char_indices();
        while let Some((i, ch)) = it.next() {
            match ch {
                '\\' => text.push(it.next().map_or('\\', |(_, q)| q)),
                '"' => return Some((text, after.get(i + 1..).unwrap_or_default())),
                other => text.push(other),
            }
        }
        return Some((text, ""));
    }
    let after = rest.strip_prefix('\\')?;
    Some(match after.strip_prefix('"') {
        Some(more) => ("\"".to_owned(), more),
        None => ("\\".to_owned(), after),
    })
}

/// The pieces of `f`: words and text ([`format_literal`]).
fn lex(f: &str) -> Result<Vec<(Option<Word>, String)>, NumFormatError> {
    let mut out: Vec<(Option<Word>, String)> = Vec::new();
    let text = |out: &mut Vec<(Option<Word>, String)>, t: &str| match out.last_mut() {
        Some((None, s)) => s.push_str(t),
        _ if t.is_empty() => {}
        _ => out.push((None, t.to_owned())),
    };
    let mut rest = f;
    while let Some(c) = rest.chars().next() {
        if let Some((t, after)) = format_literal(rest) {
            text(&mut out, &t);
            rest = after;
            continue;
        }
        if let Some((name, word)) = WORDS.iter().find(|(name, _)| rest.starts_with(name)) {
            match word {
                Some(w) => out.push((Some(w.clone()), (*name).to_owned())),
                None => return Err(NumFormatError::Unsupported((*name).to_owned())),
            }
            rest = rest.get(name.len()..).unwrap_or_default();
            continue;
        }
        let (here, after) = rest.split_at(c.len_utf8());
        text(&mut out, here);
        rest = after;
    }
    Ok(out)
}

impl NumFormat {
    /// Parses `f`, refusing what PostgreSQL refuses with its message.
    ///
    /// # Errors
    /// [`NumFormatError::Syntax`] for a format PostgreSQL refuses,
    /// [`NumFormatError::Unsupported`] for a pattern not supported here.
    pub fn parse(f: &str) -> Result<Self, NumFormatError> {
        let mut nf = Self {
            toks: Vec::new(),
            pre: 0,
            post: 0,
            point: false,
            fill: false,
            zero_from: None,
            zero_end: 0,
            anchor: None,
            minus: false,
            plus: false,
            bracket: false,
        };
        for (word, text) in lex(f)? {
            let Some(word) = word else {
                nf.toks.push(Tok::Text(text));
                continue;
            };
            match word {
                Word::Fill => nf.fill = true,
                Word::Sign => {
                    if nf.anchor.is_some() {
                        return Err(syntax("cannot use \"S\" twice"));
                    }
                    if nf.plus || nf.minus || nf.bracket {
                        return Err(syntax(
                            "cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together",
                        ));
                    }
                    let at = if nf.point {
                        Anchor::After
                    } else {
                        Anchor::Before
                    };
                    nf.anchor = Some((at, nf.pre));
                }
                Word::Bracket => {
                    if nf.anchor.is_some() || nf.plus || nf.minus {
                        return Err(syntax(
                            "cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together",
                        ));
                    }
                    nf.bracket = true;
                }
                Word::Tok(t) => {
                    match t {
                        Tok::Nine | Tok::Zero => {
                            if nf.bracket {
                                return Err(syntax(if t == Tok::Nine {
                                    "\"9\" must be ahead of \"PR\""
                                } else {
                                    "\"0\" must be ahead of \"PR\""
                                }));
                            }
                            if t == Tok::Zero && nf.zero_from.is_none() && !nf.point {
                                nf.zero_from = Some(nf.pre);
                            }
                            if nf.point {
                                nf.post += 1;
                            } else {
                                nf.pre += 1;
                            }
                            if t == Tok::Zero {
                                nf.zero_end = nf.pre + nf.post;
                            }
                        }
                        Tok::Point => {
                            if nf.point {
                                return Err(syntax("multiple decimal points"));
                            }
                            nf.point = true;
                        }
                        Tok::Minus | Tok::Plus | Tok::PlusMinus => {
                            if nf.anchor.is_some() {
                                return Err(syntax(match t {
                                    Tok::Minus => "cannot use \"S\" and \"MI\" together",
                                    Tok::Plus => "cannot use \"S\" and \"PL\" together",
                                    _ => "cannot use \"S\" and \"SG\" together",
                                }));
                            }
                            nf.minus |= t != Tok::Plus;
                            nf.plus |= t != Tok::Minus;
                        }
                        _ => {}
                    }
                    nf.toks.push(t);
                }
            }
        }
        Ok(nf)
    }

    /// `value` (an exact number as text: an optional `-`, digits, and an
    /// optional `.` and digits) written in this format; `None` when `value`
    /// is not such a number.
    #[must_use]
    pub fn format_exact(&self, value: &str) -> Option<String> {
        let (neg, digits) = match value.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, value.strip_prefix('+').unwrap_or(value)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // round half away from zero to `post` places
        let mut all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        let keep = int.len() + self.post;
        let up = frac.as_bytes().get(self.post).is_some_and(|d| *d >= b'5');
        all.truncate(keep);
        all.resize(keep, b'0');
        if up {
            let mut i = all.len();
            loop {
                if i == 0 {
                    all.insert(0, b'1');
                    break;
                }
                i -= 1;
                let d = all.get_mut(i)?;
                if *d == b'9' {
                    *d = b'0';
                } else {
                    *d += 1;
                    break;
                }
            }
        }
        let int_len = all.len() - self.post;
        let (i, f) = all.split_at(int_len);
        let lead = i
            .iter()
            .take_while(|d| **d == b'0')
            .count()
            .min(i.len().saturating_sub(1));
        let i = i.get(lead..).unwrap_or(b"0");
        let i = if i.is_empty() { b"0".as_slice() } else { i };
        let zero = i == b"0" && f.iter().all(|d| *d == b'0');
        let mut s = String::from_utf8_lossy(i).into_owned();
        if self.post > 0 {
            s.push('.');
            s.push_str(&String::from_utf8_lossy(f));
        }
        Some(self.render(self.post, neg && !zero, &s))
    }

    /// `value` written in this format, as PostgreSQL writes a DOUBLE
    /// PRECISION: at most 15 significant digits, the binary value rounded
    /// half to even.
    #[must_use]
    pub fn format_f64(&self, value: f64) -> String {
        if value.is_nan() {
            return self.render(self.post, false, "NaN");
        }
        if value.is_infinite() {
            // written as the eight-character number `Infinity`, as
            // PostgreSQL's printf writes it
            return self.render(self.post.min(15 - 8), value < 0.0, "Infinity");
        }
        let int_len = format!("{:.0}", value.abs()).len();
        let post = if int_len >= 15 {
            0
        } else {
            self.post.min(15 - int_len)
        };
        let s = format!("{value:.post$}");
        let (neg, digits) = match s.strip_prefix('-') {
            Some(d) => (true, d.to_owned()),
            None => (false, s),
        };
        self.render(post, neg, &digits)
    }

    /// Writes the unsigned number `digits`, rounded to `post` places after
    /// the point (this format's, or fewer for a DOUBLE PRECISION cut to 15
    /// digits), which it has exactly when `post` is not 0, with sign `neg`.
    #[expect(clippy::too_many_lines, reason = "one walk over the format")]
    fn render(&self, post: usize, neg: bool, digits: &str) -> String {
        let int_len = digits.find('.').unwrap_or(digits.len());
        let mut pad = 0;
        let num: Vec<u8> = if int_len < self.pre {
            pad = self.pre - int_len;
            digits.bytes().collect()
        } else if int_len > self.pre {
            let mut n = vec![b'#'; self.pre + post + 1];
            if let Some(p) = n.get_mut(self.pre) {
                *p = b'.';
            }
            n
        } else {
            digits.bytes().collect()
        };
        let mut out = Out::default();
        let mut bracket = self.bracket;
        let mut anchor = self.anchor.map(|(a, before)| {
            if a == Anchor::Before && before == self.pre {
                Anchor::After
            } else {
                a
            }
        });
        let mut signed = if self.minus || self.plus {
            // MI, PL, SG write the sign where they are; PL alone leaves
            // the number its own place for a minus
            !self.plus || self.minus
        } else {
            if !neg && self.fill {
                bracket = false;
            }
            !neg && self.fill && anchor.is_none()
        };
        if self.minus || self.plus {
            anchor = None;
        }
        let sign_ch = if neg { '-' } else { '+' };
        // in fill mode, the last digit after the point worth writing: the last
        // that is not 0, or the last a `0` asks for
        let mut last: Option<usize> = None;
        if self.fill
            && self.point
            && let Some(p) = num.iter().position(|c| *c == b'.')
        {
            let mut l = p;
            for (i, c) in num.iter().enumerate().skip(p + 1) {
                if *c != b'0' {
                    l = i;
                }
            }
            if self.zero_end > pad {
                // never past the number (a DOUBLE PRECISION cut to 15 digits)
                l = l.max((self.zero_end - pad).min(num.len().saturating_sub(1)));
            }
            last = Some(l);
        }
        let last_is_point = last.is_some_and(|l| num.get(l) == Some(&b'.'));
        let mut count = isize::try_from(self.pre + post).unwrap_or(isize::MAX) - 1;
        if !signed && pad == 0 {
            count += 1;
        }
        let mut at = 0usize; // next character of `num`
        let mut place = 0usize; // digit and point places seen
        let mut shown = false; // a digit written since the last group separator
        for tok in &self.toks {
            match tok {
                Tok::Nine | Tok::Zero | Tok::Point => {
                    shown = false;
                    // before `num` is its leading zero of a fraction
                    let lead_zero = self.zero_from.is_none()
                        && at == 0
                        && num.first() == Some(&b'0')
                        && post != 0;
                    if !signed
                        && (place >= pad || self.zero_from == Some(place))
                        && (!lead_zero || last_is_point)
                    {
                        if anchor.is_some() {
                            if anchor == Some(Anchor::Before) {
                                out.push(sign_ch);
                                signed = true;
                            }
                        } else if bracket {
                            out.push(if neg { '<' } else { ' ' });
                            signed = true;
                        } else if neg {
                            out.push('-');
                            signed = true;
                        } else {
                            if !self.fill {
                                out.push(' ');
                            }
                            signed = true;
                        }
                    }
                    let zeros = self.zero_from.is_some_and(|z| z <= place);
                    if place < pad && !zeros {
                        if !self.fill {
                            out.push(' ');
                        }
                    } else if place < pad {
                        out.push('0');
                        shown = true;
                    } else {
                        let c = num.get(at).copied();
                        if c == Some(b'.') {
                            out.push('.');
                        } else if last.is_some_and(|l| at > l) && *tok != Tok::Zero {
                            // a trailing zero fill mode drops
                        } else if lead_zero {
                            if !self.fill {
                                out.push(' ');
                            } else if last_is_point {
                                out.push('0');
                            }
                        } else {
                            match c {
                                Some(d) => out.push(char::from(d)),
                                // the number ran out (a DOUBLE PRECISION cut
                                // to 15 digits): PostgreSQL's output ends here
                                None => out.end(),
                            }
                            shown = true;
                        }
                        if at < num.len() {
                            at += 1;
                        }
                    }
                    let mut end = count + isize::from(pad > 0) + isize::from(self.point);
                    if last.is_some_and(|l| l == at) {
                        end = isize::try_from(place).unwrap_or(isize::MAX);
                    }
                    if isize::try_from(place + 1).ok() == Some(end) {
                        if signed && bracket {
                            out.push(if neg { '>' } else { ' ' });
                        } else if anchor == Some(Anchor::After) {
                            out.push(sign_ch);
                        }
                    }
                    place += 1;
                }
                Tok::Group => {
                    if shown {
                        out.push(',');
                    } else if !self.fill {
                        out.push(' ');
                    }
                }
                Tok::Minus => {
                    if neg {
                        out.push('-');
                    } else if !self.fill {
                        out.push(' ');
                    }
                }
                Tok::Plus => {
                    if !neg {
                        out.push('+');
                    } else if !self.fill {
                        out.push(' ');
                    }
                }
                Tok::PlusMinus => out.push(sign_ch),
                Tok::Ordinal(upper) => {
                    if neg || self.point || num.first() == Some(&b'#') {
                        continue;
                    }
                    out.push_str(&ordinal(&num, *upper));
                }
                Tok::Text(t) => out.push_str(t),
            }
        }
        out.s
    }
}

/// The output, which a NUL would end (as PostgreSQL's C string does).
#[derive(Default)]
struct Out {
    s: String,
    ended: bool,
}

impl Out {
    fn push(&mut self, c: char) {
        if !self.ended {
            self.s.push(c);
        }
    }
    fn push_str(&mut self, t: &str) {
        if !self.ended {
            self.s.push_str(t);
        }
    }
    fn end(&mut self) {
        self.ended = true;
    }
}

/// `st`, `nd`, `rd` or `th` for the integer `num`.
fn ordinal(num: &[u8], upper: bool) -> String {
    let n = num.len();
    let last = num.get(n.wrapping_sub(1)).copied().unwrap_or(b'0');
    let tens = n > 1 && num.get(n - 2) == Some(&b'1');
    let s = match last {
        b'1' if !tens => "st",
        b'2' if !tens => "nd",
        b'3' if !tens => "rd",
        _ => "th",
    };
    if upper {
        s.to_uppercase()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(v: &str, f: &str) -> String {
        NumFormat::parse(f).unwrap().format_exact(v).unwrap()
    }

    fn dbl(v: f64, f: &str) -> String {
        NumFormat::parse(f).unwrap().format_f64(v)
    }

    /// Answers PostgreSQL 15 gave for the same calls.
    #[test]
    fn formats_as_postgresql_does() {
        let cases: &[(&str, &str, &str)] = &[
            ("0", "999", "   0"),
            ("0.5", "9.99", "  .50"),
            ("0.5", "0.99", " 0.50"),
            ("-0.5", "9.99", " -.50"),
            ("12", "9999", "   12"),
            ("-12", "9999", "  -12"),
            ("-12", "0999", "-0012"),
            ("-12", "FM9999", "-12"),
            ("1234567.891", "9,999,999.99", " 1,234,567.89"),
            ("1234.5", "9,999,999.99", "     1,234.50"),
            ("1234.5", "FM9,999,999.99", "1,234.5"),
            ("1234.5", "FM9,999,999.00", "1,234.50"),
            ("12345", "999", " ###"),
            ("12345.67", "999.9", " ###.#"),
            ("-12345", "S999", "-###"),
            ("-485", "S999", "-485"),
            ("485", "S999", "+485"),
            ("485", "999S", "485+"),
            ("-485", "999S", "485-"),
            ("-12", "S9999", "  -12"),
            ("-485", "999MI", "485-"),
            ("485", "999MI", "485 "),
            ("-485", "MI999", "-485"),
            ("-12", "MI9999", "-  12"),
            ("-485", "999PR", "<485>"),
            ("485", "999PR", " 485 "),
            ("485", "PL999", "+ 485"),
            ("-485", "SG999", "-485"),
            ("485", "SG999", "+485"),
            ("12", "9990999", "    0012"),
            ("0", "0", " 0"),
            ("0", "9", " 0"),
            ("0.0", "FM9.99", "0."),
            ("0", "FM999", "0"),
            ("2.675", "9.99", " 2.68"),
            ("5.5", "9", " 6"),
            ("-5.5", "9", "-6"),
            ("9.5", "9", " #"),
            ("12.45", "99D9", " 12.5"),
            ("1234", "9G999", " 1,234"),
            ("1234", "\"Total: \"9999\" units\"", "Total:  1234 units"),
            ("12", "99 99", "    12"),
            ("1234", "99x99", " 12x34"),
            ("123", "9.99", " #.##"),
            ("-0.001", "9.99", "  .00"),
            ("-0.001", "FM9.99", "0."),
            ("-0.001", "S9.99", " +.00"),
            ("0.05", "FM0.9", "0.1"),
            ("10", "FM99.99", "10."),
            ("10", "FM99.90", "10.00"),
            ("1.5", "FM9", "2"),
            ("485", "999th", " 485th"),
            ("1.5", "FM9.99S", "1.5+"),
            ("-1.5", "FM9.99S", "1.5-"),
            ("1.5", "9.99S", "1.50+"),
            ("1.5", "FM9.99PR", "1.5"),
            ("-1.5", "FM9.99PR", "<1.5>"),
            ("-1.5", "FM999.99PR", "<1.5>"),
            ("-1.5", "999.99PR", "  <1.50>"),
            ("-1.5", "S999.99", "  -1.50"),
            ("-1.5", "999.99S", "  1.50-"),
            ("1.5", "999.S99", "  1.50+"),
            ("-1.5", "9S99.99", "  -1.50"),
            ("1", "9th", " 1st"),
            ("2", "9TH", " 2ND"),
            ("13", "99th", " 13th"),
            ("112", "999th", " 112th"),
            ("-3", "9th", "-3"),
            ("23", "FM99th", "23rd"),
            ("3", "9.9th", " 3.0"),
            ("5", "9 \"ab\\\"c\" 9", "  ab\"c  5"),
            ("1234.5678", "FM0000.00", "1234.57"),
            ("1.5", "FM00.9990", "01.5000"),
            ("100", "FM999.999", "100."),
            ("0", "FM0.00", "0.00"),
            ("0", "9.99", "  .00"),
            ("1234", "MI9,999", " 1,234"),
            ("-1234", "FMMI9,999", "-1,234"),
            ("1234", "PL9,999", "+ 1,234"),
            ("1234", "FMPL9999", "+1234"),
            ("-1234", "FMSG9999", "-1234"),
            ("12", ",999", "   12"),
            ("12", "9,9,9", "   1,2"),
            ("12", "FM9,9,9", "1,2"),
            ("5", "9.9,9", " 5.0,0"),
            ("12", "", ""),
            ("12", ".99", " .##"),
            ("0.45", ".9", " .#"),
            ("-0.45", "FM.99", "-.##"),
            ("9.99", "9.9", " #.#"),
            ("-99.99", "S99.9", "-##.#"),
            ("-99.99", "99.9PR", "<##.#>"),
            ("12", "9PRMI", "# "),
        ];
        for (v, f, want) in cases {
            assert_eq!(&ex(v, f), want, "to_char({v}, '{f}')");
        }
        assert_eq!(
            dbl(123_456_789_012.5, "999999999999.9999"),
            " 123456789012.500"
        );
        assert_eq!(dbl(0.125, "9.99"), "  .12");
        assert_eq!(dbl(0.375, "9.99"), "  .38");
        assert_eq!(dbl(2.5, "9"), " 2");
        assert_eq!(dbl(-0.001, "9.99"), " -.00");
        assert_eq!(dbl(2.675, "9.99"), " 2.67");
        assert_eq!(dbl(1e20, "999"), " ###");
        assert_eq!(dbl(-0.0, "9.9"), " -.0");
        assert_eq!(dbl(f64::INFINITY, "999.9"), " ###.#");
        assert_eq!(dbl(f64::NEG_INFINITY, "999.9"), "-###.#");
        assert_eq!(dbl(f64::NAN, "999.9"), " NaN");
        assert_eq!(dbl(f64::NAN, "FM9"), "#");
        assert_eq!(dbl(f64::INFINITY, "S9"), "+#");
        assert_eq!(dbl(f64::INFINITY, "999999999"), "  Infinity");
        assert_eq!(dbl(f64::NEG_INFINITY, "999999999"), " -Infinity");
        assert_eq!(dbl(f64::INFINITY, "9.99999999"), " #.#######");
        assert_eq!(dbl(f64::NAN, "99999999999.999999999"), "         NaN");
        assert_eq!(
            dbl(-1_234_567_890_123.5, "FM9999999999999.000PR"),
            "<1234567890123.50>"
        );
        // a backslash outside quotes is text, escaping only a quote
        assert_eq!(ex("5", "\\9"), "\\ 5");
        assert_eq!(ex("5", "9\\"), " 5\\");
        assert_eq!(ex("5", "\\\"9"), "\" 5");
        assert_eq!(ex("5", "\"a\\\"b\"9"), "a\"b 5");
    }

    #[test]
    fn refuses_what_postgresql_refuses_and_what_is_not_supported() {
        let err = |f: &str| NumFormat::parse(f).unwrap_err().to_string();
        assert_eq!(err("9.9.9"), "multiple decimal points");
        assert_eq!(err("9.9D"), "multiple decimal points");
        assert_eq!(err("S9S"), "cannot use \"S\" twice");
        assert_eq!(err("S9MI"), "cannot use \"S\" and \"MI\" together");
        assert_eq!(err("S9PL"), "cannot use \"S\" and \"PL\" together");
        assert_eq!(err("S9SG"), "cannot use \"S\" and \"SG\" together");
        assert_eq!(
            err("MI9S"),
            "cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together"
        );
        assert_eq!(err("9PR9"), "\"9\" must be ahead of \"PR\"");
        assert_eq!(err("0PR0"), "\"0\" must be ahead of \"PR\"");
        assert_eq!(err("9PR.9"), "\"9\" must be ahead of \"PR\"");
        assert_eq!(
            err("MI9PR"),
            "cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together"
        );
        for p in ["9EEEE", "RN", "L999", "B999", "99V9", "9C99", "Total 9"] {
            assert!(
                matches!(NumFormat::parse(p), Err(NumFormatError::Unsupported(_))),
                "{p}"
            );
        }
        assert!(NumFormat::parse("9").unwrap().format_exact("1x").is_none());
    }
}
