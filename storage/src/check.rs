//! CHECK constraints: a small expression language, over `VALUE` for a
//! domain's CHECK and over the table's columns by name for a table's, parsed
//! when the domain or constraint is created (an expression outside it is
//! refused there, with what to write instead) and evaluated on every value or
//! row written, whoever writes it. SQL's rule: a row violates the CHECK only
//! when the expression is false; NULL (unknown) passes.
//!
//! The language: `VALUE` (a domain's) or column names (a table's), integer /
//! decimal / string literals, `TRUE`, `FALSE`, `NULL`, `DATE 'YYYY-MM-DD'`;
//! `+`, `-`, `*` of numbers; comparisons `= <> != < <= > >=`; `[NOT] LIKE`
//! (`%`, `_`), `[NOT] BETWEEN .. AND ..`, `[NOT] IN (..)`, `IS [NOT] NULL`;
//! `AND`, `OR`, `NOT`, parentheses; `length` / `char_length` /
//! `character_length`, `upper`, `lower`, `trim` of a string.

use scratchbird_types::{Date, SqlType, Value};

/// Most tokens in one CHECK expression.
const CHECK_TOKENS_MAX: usize = 4_096;
/// Deepest nesting (parentheses, NOT, functions, AND / OR chains) of one CHECK
/// expression.
const CHECK_DEPTH_MAX: usize = 64;
/// Longest LIKE pattern, in characters (matching costs up to the value's length
/// times the pattern's).
const LIKE_PATTERN_MAX_CHARS: usize = 256;

/// A parsed CHECK expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    text: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Value,
    /// A table CHECK's column, by position.
    Column(usize),
    Arith(Box<Expr>, ArOp, Box<Expr>),
    Lit(Lit),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Op, Box<Expr>),
    Like(Box<Expr>, String, bool),
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    IsNull(Box<Expr>, bool),
    Func(Func, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ArOp {
    Add,
    Sub,
    Mul,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Length,
    Upper,
    Lower,
    Trim,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    /// A number as mantissa and scale.
    Num(i128, u32),
    Float(f64),
    Str(String),
    Date(i32),
    Other,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if out.len() > CHECK_TOKENS_MAX {
            return Err(format!("more than {CHECK_TOKENS_MAX} tokens"));
        }
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut t = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("a string literal is not closed".into()),
                    Some('\'') if b.get(i + 1) == Some(&'\'') => {
                        t.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        t.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(t));
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while b.get(i).is_some_and(|x| x.is_ascii_digit() || *x == '.') {
                i += 1;
            }
            out.push(Tok::Num(
                b.get(start..i).unwrap_or_default().iter().collect(),
            ));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while b.get(i).is_some_and(|x| x.is_alphanumeric() || *x == '_') {
                i += 1;
            }
            let w: String = b.get(start..i).unwrap_or_default().iter().collect();
            out.push(Tok::Word(w.to_ascii_uppercase()));
        } else {
            let two: String = b.get(i..i + 2).unwrap_or_default().iter().collect();
            let sym = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "<>" => Some("<>"),
                "!=" => Some("<>"),
                _ => None,
            };
            if let Some(s) = sym {
                out.push(Tok::Sym(s));
                i += 2;
                continue;
            }
            let one = match c {
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '-' => "-",
                '+' => "+",
                '*' => "*",
                other => return Err(format!("unexpected character {other:?}")),
            };
            out.push(Tok::Sym(one));
            i += 1;
        }
    }
    Ok(out)
}

/// `text` with every mention of the column `from` (a name outside string
/// literals, in any case) replaced by `to`; the rest as written.
#[must_use]
pub fn rename_column(text: &str, from: &str, to: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == '\'' {
            // a literal, copied whole ('' inside it included)
            out.push(c);
            i += 1;
            while let Some(&ch) = b.get(i) {
                out.push(ch);
                i += 1;
                if ch == '\'' {
                    if b.get(i) == Some(&'\'') {
                        out.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while b.get(i).is_some_and(|x| x.is_alphanumeric() || *x == '_') {
                i += 1;
            }
            let w: String = b.get(start..i).unwrap_or_default().iter().collect();
            if w.eq_ignore_ascii_case(from) {
                out.push_str(to);
            } else {
                out.push_str(&w);
            }
        } else if c.is_ascii_digit() {
            // a number: digits, a point and digits (never a name)
            while b.get(i).is_some_and(|x| x.is_ascii_digit() || *x == '.') {
                out.push(b.get(i).copied().unwrap_or('0'));
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

struct Parser<'c> {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
    /// A table CHECK's column names (lower case), by position; `None` for a
    /// domain's CHECK, which names `VALUE`.
    columns: Option<&'c [String]>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(x)) if x == w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), String> {
        if self.sym(s) {
            Ok(())
        } else {
            Err(format!("expected {s:?} at {}", self.here()))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => "the end".into(),
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Num(n)) => n.clone(),
            Some(Tok::Sym(s)) => (*s).to_owned(),
        }
    }

    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > CHECK_DEPTH_MAX {
            return Err(format!(
                "nested or chained deeper than {CHECK_DEPTH_MAX} (write IN (...) for long lists)"
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, String> {
        let base = self.depth;
        self.nest()?;
        let mut e = self.and()?;
        while self.word("OR") {
            // each link deepens the tree evaluation walks
            self.nest()?;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth = base;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let base = self.depth;
        let mut e = self.not()?;
        while self.word("AND") {
            self.nest()?;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        self.depth = base;
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.word("NOT") {
            self.nest()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.pred()
    }

    fn pred(&mut self) -> Result<Expr, String> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Some(Op::Eq),
            Some(Tok::Sym("<>")) => Some(Op::Ne),
            Some(Tok::Sym("<")) => Some(Op::Lt),
            Some(Tok::Sym("<=")) => Some(Op::Le),
            Some(Tok::Sym(">")) => Some(Op::Gt),
            Some(Tok::Sym(">=")) => Some(Op::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.at += 1;
            let right = self.sum()?;
            return Ok(Expr::Cmp(Box::new(left), op, Box::new(right)));
        }
        if self.word("IS") {
            let negated = self.word("NOT");
            if !self.word("NULL") {
                return Err(format!("expected NULL after IS at {}", self.here()));
            }
            return Ok(Expr::IsNull(Box::new(left), negated));
        }
        let negated = self.word("NOT");
        if self.word("LIKE") {
            let Some(Tok::Str(p)) = self.peek().cloned() else {
                return Err(format!(
                    "LIKE takes a string pattern, found {}",
                    self.here()
                ));
            };
            self.at += 1;
            if p.chars().count() > LIKE_PATTERN_MAX_CHARS {
                return Err(format!(
                    "a LIKE pattern is longer than {LIKE_PATTERN_MAX_CHARS} characters"
                ));
            }
            return Ok(Expr::Like(Box::new(left), p, negated));
        }
        if self.word("BETWEEN") {
            let lo = self.sum()?;
            if !self.word("AND") {
                return Err(format!("expected AND in BETWEEN at {}", self.here()));
            }
            let hi = self.sum()?;
            return Ok(Expr::Between(
                Box::new(left),
                Box::new(lo),
                Box::new(hi),
                negated,
            ));
        }
        if self.word("IN") {
            self.expect_sym("(")?;
            let mut list = vec![self.sum()?];
            while self.sym(",") {
                list.push(self.sum()?);
            }
            self.expect_sym(")")?;
            return Ok(Expr::In(Box::new(left), list, negated));
        }
        if negated {
            return Err(format!(
                "expected LIKE, BETWEEN or IN after NOT at {}",
                self.here()
            ));
        }
        Ok(left)
    }

    /// `a + b - c`: products joined by `+` and `-`.
    fn sum(&mut self) -> Result<Expr, String> {
        let base = self.depth;
        let mut e = self.product()?;
        loop {
            let op = if self.sym("+") {
                ArOp::Add
            } else if self.sym("-") {
                ArOp::Sub
            } else {
                break;
            };
            self.nest()?;
            e = Expr::Arith(Box::new(e), op, Box::new(self.product()?));
        }
        self.depth = base;
        Ok(e)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let base = self.depth;
        let mut e = self.operand()?;
        while self.sym("*") {
            self.nest()?;
            e = Expr::Arith(Box::new(e), ArOp::Mul, Box::new(self.operand()?));
        }
        self.depth = base;
        Ok(e)
    }

    fn operand(&mut self) -> Result<Expr, String> {
        let tok = self
            .peek()
            .cloned()
            .ok_or_else(|| "the expression ends too early".to_owned())?;
        self.at += 1;
        match tok {
            Tok::Sym("(") => {
                let e = self.or()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym(s @ ("-" | "+")) => match self.peek().cloned() {
                Some(Tok::Num(n)) => {
                    self.at += 1;
                    number(&n, s == "-").map(Expr::Lit)
                }
                _ => {
                    // -x is 0 - x; +x is x
                    self.nest()?;
                    let e = self.operand()?;
                    self.depth -= 1;
                    Ok(if s == "-" {
                        Expr::Arith(
                            Box::new(Expr::Lit(Lit::Num(0, 0))),
                            ArOp::Sub,
                            Box::new(e),
                        )
                    } else {
                        e
                    })
                }
            },
            Tok::Num(n) => number(&n, false).map(Expr::Lit),
            Tok::Str(s) => Ok(Expr::Lit(Lit::Str(s))),
            Tok::Word(w) => match w.as_str() {
                "VALUE" if self.columns.is_none() => Ok(Expr::Value),
                "NULL" => Ok(Expr::Lit(Lit::Null)),
                "TRUE" => Ok(Expr::Lit(Lit::Bool(true))),
                "FALSE" => Ok(Expr::Lit(Lit::Bool(false))),
                "DATE" => match self.peek().cloned() {
                    Some(Tok::Str(s)) => {
                        self.at += 1;
                        date(&s).map(|d| Expr::Lit(Lit::Date(d)))
                    }
                    _ => Err("DATE takes a string 'YYYY-MM-DD'".into()),
                },
                "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH" | "UPPER" | "LOWER" | "TRIM" => {
                    let f = match w.as_str() {
                        "UPPER" => Func::Upper,
                        "LOWER" => Func::Lower,
                        "TRIM" => Func::Trim,
                        _ => Func::Length,
                    };
                    self.expect_sym("(")?;
                    let arg = self.or()?;
                    self.expect_sym(")")?;
                    Ok(Expr::Func(f, Box::new(arg)))
                }
                other => match self.columns {
                    Some(cols)
                        if cols
                            .iter()
                            .filter(|c| c.eq_ignore_ascii_case(other))
                            .count()
                            > 1 =>
                    {
                        Err(format!(
                            "{} names two columns that differ only in case",
                            other.to_lowercase()
                        ))
                    }
                    Some(cols) => cols
                        .iter()
                        .position(|c| c.eq_ignore_ascii_case(other))
                        .map(Expr::Column)
                        .ok_or_else(|| {
                            format!(
                                "{} is not a column of the table, nor part of a CHECK (write conditions on the columns with + - *, comparisons, LIKE, BETWEEN, IN, IS NULL, AND/OR/NOT, length/upper/lower/trim)",
                                other.to_lowercase()
                            )
                        }),
                    None => Err(format!(
                        "{other} is not part of a domain CHECK (write conditions on VALUE with comparisons, LIKE, BETWEEN, IN, IS NULL, AND/OR/NOT, length/upper/lower/trim)"
                    )),
                },
            },
            Tok::Sym(s) => Err(format!("unexpected {s}")),
        }
    }
}

fn number(n: &str, negative: bool) -> Result<Lit, String> {
    let (int, frac) = n.split_once('.').unwrap_or((n, ""));
    if frac.contains('.') {
        return Err(format!("{n} is not a number"));
    }
    let digits = format!("{int}{frac}");
    let scale = u32::try_from(frac.len()).map_err(|_| "number too long".to_owned())?;
    match digits.parse::<i128>() {
        Ok(m) if scale <= 38 => Ok(Lit::Num(if negative { -m } else { m }, scale)),
        _ => n
            .parse::<f64>()
            .map(|f| Lit::Float(if negative { -f } else { f }))
            .map_err(|_| format!("{n} is not a number")),
    }
}

fn date(s: &str) -> Result<i32, String> {
    let bad = || format!("DATE '{s}' is not a date YYYY-MM-DD");
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next(), it.next(), it.next());
    let (Some(y), Some(m), Some(d)) = (y, m, d) else {
        return Err(bad());
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    Date::from_ymd(y, m, d).map(|x| x.0).ok_or_else(bad)
}

/// SQL LIKE: `%` any run, `_` one character; no escape character.
fn like(s: &[char], p: &[char]) -> bool {
    // iterative matcher with backtracking to the last '%'
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match p.get(j) {
            Some('%') => {
                star = Some((j, i));
                j += 1;
            }
            Some('_') => {
                i += 1;
                j += 1;
            }
            Some(c) if s.get(i) == Some(c) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    p.get(j..).unwrap_or_default().iter().all(|c| *c == '%')
}

fn lit_of(v: &Value) -> Lit {
    match v {
        Value::Null => Lit::Null,
        Value::Boolean(b) => Lit::Bool(*b),
        Value::SmallInt(x) => Lit::Num(i128::from(*x), 0),
        Value::Integer(x) => Lit::Num(i128::from(*x), 0),
        Value::BigInt(x) => Lit::Num(i128::from(*x), 0),
        Value::Decimal(d) => Lit::Num(d.mantissa(), u32::from(d.scale())),
        Value::Double(f) => Lit::Float(*f),
        Value::Text(s) => Lit::Str(s.clone()),
        Value::Date(d) => Lit::Date(d.0),
        _ => Lit::Other,
    }
}

/// Compares two literals of comparable kinds; `None` when either is NULL or the
/// kinds do not compare.
fn compare(a: &Lit, b: &Lit) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Lit::Num(x, sx), Lit::Num(y, sy)) => {
            let s = (*sx).max(*sy);
            let up =
                |m: i128, from: u32| 10i128.checked_pow(s - from).and_then(|p| m.checked_mul(p));
            match (up(*x, *sx), up(*y, *sy)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => as_f64(a)?.partial_cmp(&as_f64(b)?),
            }
        }
        (Lit::Num(..) | Lit::Float(_), Lit::Num(..) | Lit::Float(_)) => {
            let (x, y) = (as_f64(a)?, as_f64(b)?);
            // NaN equals NaN and is above every number (PostgreSQL's order), so
            // a range CHECK refuses it rather than not deciding it
            Some(match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) => x.partial_cmp(&y)?,
            })
        }
        (Lit::Str(x), Lit::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Lit::Date(x), Lit::Date(y)) => Some(x.cmp(y)),
        (Lit::Bool(x), Lit::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn as_f64(l: &Lit) -> Option<f64> {
    match l {
        #[expect(
            clippy::cast_precision_loss,
            reason = "comparison of a wide number with a float"
        )]
        Lit::Num(m, s) => Some(*m as f64 / 10f64.powi(i32::try_from(*s).ok()?)),
        Lit::Float(f) => Some(*f),
        _ => None,
    }
}

/// `a op b` of two numbers; NULL when either is NULL. Exact on decimals while
/// 38 digits hold the result, in floating point beyond.
fn arith(a: &Lit, op: ArOp, b: &Lit) -> Lit {
    let float = |x: f64, y: f64| {
        Lit::Float(match op {
            ArOp::Add => x + y,
            ArOp::Sub => x - y,
            ArOp::Mul => x * y,
        })
    };
    match (a, b) {
        (Lit::Null, _) | (_, Lit::Null) => Lit::Null,
        (Lit::Num(x, sx), Lit::Num(y, sy)) => {
            let exact = match op {
                ArOp::Mul => x.checked_mul(*y).map(|m| (m, sx + sy)),
                ArOp::Add | ArOp::Sub => {
                    let s = (*sx).max(*sy);
                    let up = |m: i128, from: u32| {
                        10i128.checked_pow(s - from).and_then(|p| m.checked_mul(p))
                    };
                    match (up(*x, *sx), up(*y, *sy)) {
                        (Some(x), Some(y)) if op == ArOp::Add => x.checked_add(y).map(|m| (m, s)),
                        (Some(x), Some(y)) => x.checked_sub(y).map(|m| (m, s)),
                        _ => None,
                    }
                }
            };
            match exact {
                Some((m, s)) if s <= 38 => Lit::Num(m, s),
                _ => match (as_f64(a), as_f64(b)) {
                    (Some(x), Some(y)) => float(x, y),
                    _ => Lit::Other,
                },
            }
        }
        (Lit::Num(..) | Lit::Float(_), Lit::Num(..) | Lit::Float(_)) => {
            match (as_f64(a), as_f64(b)) {
                (Some(x), Some(y)) => float(x, y),
                _ => Lit::Other,
            }
        }
        _ => Lit::Other,
    }
}

impl Expr {
    fn value(&self, v: &[Value]) -> Lit {
        match self {
            Self::Value => v.first().map_or(Lit::Null, lit_of),
            Self::Column(i) => v.get(*i).map_or(Lit::Null, lit_of),
            Self::Arith(a, op, b) => arith(&a.value(v), *op, &b.value(v)),
            Self::Lit(l) => l.clone(),
            Self::Func(f, arg) => match (f, arg.value(v)) {
                (_, Lit::Null) => Lit::Null,
                (Func::Length, Lit::Str(s)) => Lit::Num(s.chars().count() as i128, 0),
                (Func::Upper, Lit::Str(s)) => Lit::Str(s.to_uppercase()),
                (Func::Lower, Lit::Str(s)) => Lit::Str(s.to_lowercase()),
                (Func::Trim, Lit::Str(s)) => Lit::Str(s.trim_matches(' ').to_owned()),
                _ => Lit::Other,
            },
            other => match other.truth(v) {
                None => Lit::Null,
                Some(b) => Lit::Bool(b),
            },
        }
    }

    /// Three-valued truth: `None` is unknown.
    fn truth(&self, v: &[Value]) -> Option<bool> {
        match self {
            Self::Not(e) => e.truth(v).map(|b| !b),
            Self::And(a, b) => match (a.truth(v), b.truth(v)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Self::Or(a, b) => match (a.truth(v), b.truth(v)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Self::Cmp(a, op, b) => {
                let o = compare(&a.value(v), &b.value(v))?;
                Some(match op {
                    Op::Eq => o.is_eq(),
                    Op::Ne => o.is_ne(),
                    Op::Lt => o.is_lt(),
                    Op::Le => o.is_le(),
                    Op::Gt => o.is_gt(),
                    Op::Ge => o.is_ge(),
                })
            }
            Self::Like(a, p, negated) => match a.value(v) {
                Lit::Str(s) => {
                    let s: Vec<char> = s.chars().collect();
                    let p: Vec<char> = p.chars().collect();
                    Some(like(&s, &p) != *negated)
                }
                _ => None,
            },
            Self::Between(a, lo, hi, negated) => {
                let x = a.value(v);
                let ge = compare(&x, &lo.value(v)).map(std::cmp::Ordering::is_ge);
                let le = compare(&x, &hi.value(v)).map(std::cmp::Ordering::is_le);
                let inside = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                inside.map(|b| b != *negated)
            }
            Self::In(a, list, negated) => {
                let x = a.value(v);
                let mut unknown = false;
                for e in list {
                    match compare(&x, &e.value(v)) {
                        Some(std::cmp::Ordering::Equal) => return Some(!*negated),
                        Some(_) => {}
                        None => unknown = true,
                    }
                }
                if unknown { None } else { Some(*negated) }
            }
            Self::IsNull(a, negated) => Some((a.value(v) == Lit::Null) != *negated),
            Self::Value | Self::Column(_) | Self::Arith(..) | Self::Lit(_) | Self::Func(..) => {
                match self.value(v) {
                    Lit::Bool(b) => Some(b),
                    _ => None,
                }
            }
        }
    }
}

/// What an operand is, for the check of an expression against its domain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Str,
    Date,
    Bool,
    /// NULL: any kind.
    Any,
    /// TIMESTAMP, BLOB: only IS NULL applies.
    Opaque,
}

impl Kind {
    fn of(ty: &SqlType) -> Self {
        match ty {
            SqlType::SmallInt
            | SqlType::Integer
            | SqlType::BigInt
            | SqlType::Decimal { .. }
            | SqlType::Double => Self::Num,
            SqlType::Varchar { .. } | SqlType::Text => Self::Str,
            SqlType::Date => Self::Date,
            SqlType::Boolean => Self::Bool,
            // TIMESTAMP, BLOB, and any type added later until it is handled here
            _ => Self::Opaque,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Num => "a number",
            Self::Str => "a string",
            Self::Date => "a date",
            Self::Bool => "a truth value",
            Self::Any => "NULL",
            Self::Opaque => "a TIMESTAMP or BLOB",
        }
    }
}

/// Two operands that are compared must be of one kind.
fn comparable(a: Kind, b: Kind) -> Result<(), String> {
    match (a, b) {
        (Kind::Opaque, _) | (_, Kind::Opaque) => {
            Err("a TIMESTAMP or BLOB domain's CHECK can only test VALUE IS [NOT] NULL".into())
        }
        (Kind::Any, _) | (_, Kind::Any) => Ok(()),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!(
            "{} is compared with {}: write a literal of the domain's type",
            a.name(),
            b.name()
        )),
    }
}

impl Expr {
    /// The kind of the expression over a `VALUE` (or columns) of kinds `value`,
    /// or why it does not type.
    fn kind(&self, value: &[Kind]) -> Result<Kind, String> {
        let truth = |e: &Self| -> Result<(), String> {
            match e.kind(value)? {
                Kind::Bool | Kind::Any => Ok(()),
                k => Err(format!("{} where a condition belongs", k.name())),
            }
        };
        match self {
            Self::Value => Ok(value.first().copied().unwrap_or(Kind::Any)),
            Self::Column(i) => Ok(value.get(*i).copied().unwrap_or(Kind::Any)),
            Self::Arith(a, _, b) => match (a.kind(value)?, b.kind(value)?) {
                (Kind::Num | Kind::Any, Kind::Num | Kind::Any) => Ok(Kind::Num),
                (Kind::Num | Kind::Any, k) | (k, _) => Err(format!(
                    "arithmetic on {} (+, - and * take numbers)",
                    k.name()
                )),
            },
            Self::Lit(l) => Ok(match l {
                Lit::Null => Kind::Any,
                Lit::Bool(_) => Kind::Bool,
                Lit::Num(..) | Lit::Float(_) => Kind::Num,
                Lit::Str(_) => Kind::Str,
                Lit::Date(_) => Kind::Date,
                Lit::Other => Kind::Opaque,
            }),
            Self::Func(f, arg) => match arg.kind(value)? {
                Kind::Str | Kind::Any => Ok(if *f == Func::Length {
                    Kind::Num
                } else {
                    Kind::Str
                }),
                k => Err(format!("a string function applied to {}", k.name())),
            },
            Self::Not(e) => truth(e).map(|()| Kind::Bool),
            Self::And(a, b) | Self::Or(a, b) => {
                truth(a)?;
                truth(b)?;
                Ok(Kind::Bool)
            }
            Self::Cmp(a, _, b) => {
                comparable(a.kind(value)?, b.kind(value)?)?;
                Ok(Kind::Bool)
            }
            Self::Like(a, ..) => match a.kind(value)? {
                Kind::Str | Kind::Any => Ok(Kind::Bool),
                k => Err(format!("LIKE applied to {}", k.name())),
            },
            Self::Between(a, lo, hi, _) => {
                let k = a.kind(value)?;
                comparable(k, lo.kind(value)?)?;
                comparable(k, hi.kind(value)?)?;
                Ok(Kind::Bool)
            }
            Self::In(a, list, _) => {
                let k = a.kind(value)?;
                for e in list {
                    comparable(k, e.kind(value)?)?;
                }
                Ok(Kind::Bool)
            }
            Self::IsNull(a, _) => a.kind(value).map(|_| Kind::Bool),
        }
    }
}

impl Check {
    /// Parses the CHECK expression `text` of a domain of type `base`, and checks
    /// that it types: every comparison between operands of one kind, LIKE and the
    /// string functions on strings, conditions where conditions belong.
    ///
    /// # Errors
    /// As [`Check::parse`]; and an expression that does not type, saying where.
    pub fn parse_for(text: &str, base: &SqlType) -> Result<Self, String> {
        let c = Self::parse(text)?;
        match c.expr.kind(&[Kind::of(base)])? {
            Kind::Bool | Kind::Any => Ok(c),
            k => Err(format!(
                "the expression is {}, not a condition (compare VALUE with something)",
                k.name()
            )),
        }
    }

    /// Parses the CHECK expression `text`.
    ///
    /// # Errors
    /// The expression is not in the language this module describes; the message
    /// says where and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_over(text, None)
    }

    fn parse_over(text: &str, columns: Option<&[String]>) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(text)?,
            at: 0,
            depth: 0,
            columns,
        };
        let expr = p.or()?;
        if p.at != p.toks.len() {
            return Err(format!("unexpected {} after the expression", p.here()));
        }
        Ok(Self {
            text: text.to_owned(),
            expr,
        })
    }

    /// Parses the CHECK expression `text` of a table whose columns are
    /// `columns` (names and types, in order), and checks that it types as
    /// [`Check::parse_for`] does.
    ///
    /// # Errors
    /// As [`Check::parse_for`]; and a name that is not one of the columns.
    pub fn parse_table(text: &str, columns: &[(String, SqlType)]) -> Result<Self, String> {
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        let kinds: Vec<Kind> = columns.iter().map(|(_, t)| Kind::of(t)).collect();
        let c = Self::parse_over(text, Some(&names))?;
        match c.expr.kind(&kinds)? {
            Kind::Bool | Kind::Any => Ok(c),
            k => Err(format!(
                "the expression is {}, not a condition (compare columns with something)",
                k.name()
            )),
        }
    }

    /// [`Check::parse_table`] over the columns of table `def`.
    ///
    /// # Errors
    /// As [`Check::parse_table`].
    pub fn parse_in(text: &str, def: &scratchbird_types::schema::TableDef) -> Result<Self, String> {
        let columns: Vec<(String, SqlType)> =
            def.columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
        Self::parse_table(text, &columns)
    }

    /// The positions of the columns a table CHECK reads.
    #[must_use]
    pub fn columns(&self) -> Vec<usize> {
        fn walk(e: &Expr, out: &mut Vec<usize>) {
            match e {
                Expr::Column(i) => {
                    if !out.contains(i) {
                        out.push(*i);
                    }
                }
                Expr::Value | Expr::Lit(_) => {}
                Expr::Not(a) | Expr::Func(_, a) | Expr::IsNull(a, _) | Expr::Like(a, ..) => {
                    walk(a, out);
                }
                Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(a, _, b) | Expr::Arith(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Between(a, b, c, _) => {
                    walk(a, out);
                    walk(b, out);
                    walk(c, out);
                }
                Expr::In(a, list, _) => {
                    walk(a, out);
                    for x in list {
                        walk(x, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    /// The expression as written.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `v` satisfies the CHECK: true unless the expression is false.
    #[must_use]
    pub fn admits(&self, v: &Value) -> bool {
        self.expr.truth(std::slice::from_ref(v)) != Some(false)
    }

    /// Whether the row `row` (a table CHECK's: every column in order)
    /// satisfies the CHECK: true unless the expression is false.
    #[must_use]
    pub fn admits_row(&self, row: &[Value]) -> bool {
        self.expr.truth(row) != Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scratchbird_types::Decimal;

    fn admits(check: &str, v: Value) -> bool {
        Check::parse(check).unwrap().admits(&v)
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn checks_of_the_example_bundles() {
        assert!(admits("VALUE LIKE '%_@_%'", text("a@b")));
        assert!(!admits("VALUE LIKE '%_@_%'", text("@b")));
        assert!(!admits("VALUE LIKE '%_@_%'", text("ab@")));
        assert!(admits("VALUE LIKE '___-__-____'", text("123-45-6789")));
        assert!(!admits("VALUE LIKE '___-__-____'", text("123-45-678")));
        assert!(admits("VALUE LIKE 'MRN-%'", text("MRN-1")));
        assert!(!admits("VALUE LIKE 'MRN-%'", text("mrn-1")));
    }

    #[test]
    fn null_and_unknown_pass_false_fails() {
        assert!(admits("VALUE > 0", Value::Null));
        assert!(!admits("VALUE IS NOT NULL", Value::Null));
        assert!(admits("VALUE > 0 OR VALUE IS NULL", Value::Null));
        assert!(!admits("VALUE > 0", Value::Integer(0)));
        assert!(admits("NOT (VALUE > 0) OR VALUE < 10", Value::Integer(5)));
        assert!(!admits("NOT (VALUE > 0) OR VALUE < 10", Value::Integer(50)));
    }

    #[test]
    fn numbers_ranges_lists_and_functions() {
        let d = |m: i128| Value::Decimal(Decimal::new(m, 2));
        assert!(admits("VALUE BETWEEN 0 AND 100.5", d(10_050)));
        assert!(!admits("VALUE BETWEEN 0 AND 100.5", d(10_051)));
        assert!(admits("VALUE NOT BETWEEN -1 AND 1", Value::BigInt(-2)));
        assert!(admits("VALUE >= -0.01", d(-1)));
        assert!(admits("VALUE IN ('a', 'b')", text("b")));
        assert!(!admits("VALUE NOT IN ('a', 'b')", text("b")));
        assert!(admits(
            "length(VALUE) <= 3 AND upper(VALUE) = 'AB'",
            text("ab")
        ));
        assert!(!admits("char_length(VALUE) > 2", text("ab")));
        assert!(admits("trim(VALUE) <> ''", text(" x ")));
        assert!(admits(
            "VALUE >= DATE '2020-01-01'",
            Value::Date(Date::from_ymd(2020, 1, 1).unwrap())
        ));
        assert!(admits("VALUE = 'it''s'", text("it's")));
    }

    #[test]
    fn expressions_outside_the_language_are_refused_saying_what_is_allowed() {
        for bad in [
            "",
            "VALUE LIKE",
            "VALUE >",
            "foo(VALUE) > 1",
            "VALUE > (SELECT 1)",
            "VALUE ~ 'x'",
            "'unclosed",
            "VALUE = 1 1",
            "DATE '2020-13-01' < VALUE",
        ] {
            assert!(Check::parse(bad).is_err(), "{bad:?} parsed");
        }
        let e = Check::parse("regexp_like(VALUE, 'x')").unwrap_err();
        assert!(e.contains("not part of a domain CHECK"), "{e}");
        let deep = format!("{}VALUE > 0{}", "(".repeat(100), ")".repeat(100));
        assert!(
            Check::parse(&deep)
                .unwrap_err()
                .contains("nested or chained deeper")
        );
    }

    #[test]
    fn expressions_must_type_against_the_domain() {
        let int = SqlType::Integer;
        let text_ty = SqlType::Varchar { max_chars: 8 };
        assert!(Check::parse_for("VALUE BETWEEN 1 AND 9", &int).is_ok());
        assert!(Check::parse_for("VALUE IN ('1', '2')", &int).is_err());
        assert!(Check::parse_for("VALUE LIKE '1%'", &int).is_err());
        assert!(Check::parse_for("length(VALUE) > 1", &int).is_err());
        assert!(Check::parse_for("VALUE >= '2020-01-01'", &SqlType::Date).is_err());
        assert!(Check::parse_for("VALUE >= DATE '2020-01-01'", &SqlType::Date).is_ok());
        assert!(Check::parse_for("VALUE >= DATE '2020-01-01'", &SqlType::Timestamp).is_err());
        assert!(Check::parse_for("VALUE IS NOT NULL", &SqlType::Timestamp).is_ok());
        assert!(Check::parse_for("VALUE", &text_ty).is_err());
        assert!(Check::parse_for("VALUE", &SqlType::Boolean).is_ok());
        assert!(Check::parse_for("VALUE = 1 AND 'x'", &int).is_err());
        assert!(Check::parse_for("upper(VALUE) = 'A' OR VALUE IS NULL", &text_ty).is_ok());
    }

    #[test]
    fn table_checks_read_columns_by_name_and_do_arithmetic() {
        let cols = vec![
            ("qty".to_owned(), SqlType::Integer),
            (
                "price".to_owned(),
                SqlType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            ("name".to_owned(), SqlType::Text),
        ];
        let c = Check::parse_table("qty * price < 100 AND -qty < 0", &cols).unwrap();
        let row = |q: i32, p: i128| {
            vec![
                Value::Integer(q),
                Value::Decimal(Decimal::new(p, 2)),
                text("x"),
            ]
        };
        assert!(c.admits_row(&row(3, 3_333)));
        assert!(!c.admits_row(&row(3, 3_334)));
        assert!(!c.admits_row(&row(0, 1)));
        assert!(c.admits_row(&[Value::Null, Value::Null, Value::Null]));
        assert_eq!(c.columns(), vec![0, 1]);
        assert!(Check::parse_table("QTY - 1 + Price > 0", &cols).is_ok());
        assert!(Check::parse_table("VALUE > 0", &cols).is_err());
        assert!(Check::parse_table("name * 2 > 0", &cols).is_err());
        assert!(Check::parse_table("qty + 1", &cols).is_err());
        // i128 overflow falls back to floating point, not to unknown
        let big =
            Check::parse_table("qty * 99999999999999999999999999999999999 > 0", &cols).unwrap();
        assert!(big.admits_row(&row(1_000_000, 0)));
        assert!(Check::parse("VALUE - 1 > 0").is_ok());
    }

    #[test]
    fn renaming_a_column_rewrites_its_mentions_only() {
        assert_eq!(
            rename_column("qty > 0 AND qty2 < 'qty' AND Qty <> 1.5", "qty", "n"),
            "n > 0 AND qty2 < 'qty' AND n <> 1.5"
        );
        assert_eq!(rename_column("a = 'it''s a'", "a", "b"), "b = 'it''s a'");
    }

    #[test]
    fn nan_is_above_every_number() {
        assert!(!admits("VALUE BETWEEN 0 AND 1", Value::Double(f64::NAN)));
        assert!(!admits("VALUE <= 100", Value::Double(f64::NAN)));
        assert!(admits("VALUE > 100", Value::Double(f64::NAN)));
    }

    #[test]
    fn long_chains_and_long_patterns_are_refused() {
        let chain = vec!["VALUE = 1"; 100].join(" OR ");
        assert!(Check::parse(&chain).unwrap_err().contains("chained"));
        let pattern = format!("VALUE LIKE '{}'", "a".repeat(300));
        assert!(
            Check::parse(&pattern)
                .unwrap_err()
                .contains("longer than 256")
        );
        let ok = vec!["VALUE = 1"; 20].join(" OR ");
        assert!(Check::parse(&ok).is_ok());
    }

    #[test]
    fn like_matches_sql_semantics() {
        let m = |s: &str, p: &str| {
            like(
                &s.chars().collect::<Vec<_>>(),
                &p.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("", "%"));
        assert!(m("abc", "a%c"));
        assert!(m("abc", "%b%"));
        assert!(!m("abc", "%d%"));
        assert!(m("aXbXc", "a%b%c"));
        assert!(!m("ab", "a_b"));
        assert!(m("é", "_"));
        assert!(m("abcabd", "%abd"));
    }
}
