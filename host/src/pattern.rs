//! PostgreSQL's regular expression functions for the `regex` import:
//! `regexp_like` (and `~`, `~*`) and `regexp_replace`, over the `regex`
//! crate's engine, whose matching time is linear in the text (no
//! backtracking: a pattern cannot make a query run away), with the pattern's
//! size and its compiled program bounded. Its syntax is Perl's, as
//! PostgreSQL's advanced regular expressions mostly are; backreferences in a
//! pattern and lookaround are refused as invalid (README, "SQL").

use crate::error::HostError;
use scratchbird_guest_ops::abi::{
    ErrorCode, REGEX_PATTERN_BYTES_MAX, REGEX_PROGRAM_BYTES_MAX, RegexOp,
};
use std::collections::HashMap;

/// Longest result `regexp_replace` makes (every string function's bound).
const RESULT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Compiled patterns an execution keeps, at most.
const CACHED_MAX: usize = 64;

/// The flags of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Flags {
    global: bool,
    insensitive: bool,
    newline: bool,
}

fn invalid(detail: String) -> HostError {
    HostError::Sql {
        code: ErrorCode::InvalidArgument,
        detail,
    }
}

impl Flags {
    fn parse(s: &str, op: RegexOp) -> Result<Self, HostError> {
        let mut f = Self::default();
        for c in s.chars() {
            match c {
                'g' if op == RegexOp::Replace => f.global = true,
                'g' if op != RegexOp::Like => {
                    return Err(invalid(format!(
                        "{}() does not support the \"global\" option",
                        op.name()
                    )));
                }
                'i' => f.insensitive = true,
                'c' => f.insensitive = false,
                'n' => f.newline = true,
                other => {
                    return Err(invalid(format!(
                        "invalid regular expression option: \"{other}\""
                    )));
                }
            }
        }
        Ok(f)
    }
}

/// The patterns an execution compiled, by text and flags.
#[derive(Default)]
pub(crate) struct Patterns {
    compiled: HashMap<(String, bool, bool), regex::Regex>,
}

impl Patterns {
    fn get(&mut self, pattern: &str, f: Flags) -> Result<&regex::Regex, HostError> {
        if pattern.len() > REGEX_PATTERN_BYTES_MAX {
            return Err(invalid(format!(
                "invalid regular expression: the pattern is {} bytes, at most {REGEX_PATTERN_BYTES_MAX}",
                pattern.len()
            )));
        }
        let key = (pattern.to_owned(), f.insensitive, f.newline);
        if !self.compiled.contains_key(&key) {
            if self.compiled.len() >= CACHED_MAX {
                self.compiled.clear();
            }
            let re = regex::RegexBuilder::new(pattern)
                .case_insensitive(f.insensitive)
                // PostgreSQL: a newline is an ordinary character unless
                // the n flag makes the pattern newline sensitive
                .dot_matches_new_line(!f.newline)
                .multi_line(f.newline)
                .size_limit(REGEX_PROGRAM_BYTES_MAX)
                .dfa_size_limit(REGEX_PROGRAM_BYTES_MAX)
                .build()
                .map_err(|e| {
                    let why = match e {
                        regex::Error::CompiledTooBig(n) => {
                            format!("the pattern compiles to more than {n} bytes; simplify it")
                        }
                        other => other
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    invalid(format!("invalid regular expression: {why}"))
                })?;
            self.compiled.insert(key.clone(), re);
        }
        self.compiled
            .get(&key)
            .ok_or_else(|| HostError::internal("a compiled pattern"))
    }
}

/// PostgreSQL's replacement text in the `regex` crate's terms: `\1` to
/// `\9` a group, `\&` the match, `\\` a backslash; `$` is literal.
fn replacement(r: &str) -> String {
    let mut out = String::with_capacity(r.len() + 8);
    let mut it = r.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match it.peek().copied() {
                Some(d @ '1'..='9') => {
                    it.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('&') => {
                    it.next();
                    out.push_str("${0}");
                }
                Some('\\') => {
                    it.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

/// The matches of `re` in `text` from byte `from`, in order, as PostgreSQL
/// (and Perl) finds them: after a match the search goes on at its end, and
/// after an empty match one character further (so `a*` in `aaa` matches
/// twice: `aaa`, then the empty string at the end).
fn matches<'t>(
    re: &'t regex::Regex,
    text: &'t str,
    from: usize,
) -> impl Iterator<Item = regex::Captures<'t>> + 't {
    let mut at = Some(from);
    std::iter::from_fn(move || {
        let here = at.filter(|a| *a <= text.len())?;
        let caps = re.captures_at(text, here)?;
        let m = caps.get(0)?;
        at = if m.is_empty() {
            text.get(m.end()..)
                .and_then(|t| t.chars().next())
                .map(|c| m.end() + c.len_utf8())
        } else {
            Some(m.end())
        };
        Some(caps)
    })
}

/// The byte offset of character `start` (from 1) of `text`: its length when
/// `text` is shorter.
fn byte_at(text: &str, start: i32) -> usize {
    let skip = usize::try_from(start.saturating_sub(1)).unwrap_or(0);
    text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i)
}

/// The character position (from 1) of byte offset `at` of `text`.
fn char_pos(text: &str, at: usize) -> i32 {
    let n = text.get(..at).map_or(0, |t| t.chars().count());
    i32::try_from(n).map_or(i32::MAX, |n| n.saturating_add(1))
}

/// `text` with matches of `re` from byte `from` replaced by `r` (in the
/// crate's syntax): the `which`-th (from 1), or every one when `which` is 0.
fn replace(
    re: &regex::Regex,
    text: &str,
    r: &str,
    from: usize,
    which: usize,
) -> Result<String, HostError> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, caps) in matches(re, text, from).enumerate() {
        if which != 0 && i + 1 < which {
            continue;
        }
        let Some(m) = caps.get(0) else {
            break;
        };
        out.push_str(text.get(last..m.start()).unwrap_or_default());
        caps.expand(r, &mut out);
        if out.len() > RESULT_BYTES_MAX {
            return Err(HostError::Sql {
                code: ErrorCode::StringTooLong,
                detail: format!(
                    "regexp_replace would make a string of more than {RESULT_BYTES_MAX} bytes"
                ),
            });
        }
        last = m.end();
        if which != 0 {
            break;
        }
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Ok(out)
}

/// The integer arguments of a call: `start` (from 1), `n` (which match),
/// `endoption` (regexp_instr: 1 for the position after the match;
/// regexp_replace: 1 when `n` was given) and `subexpr` (a capture group, 0
/// for the whole match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Args {
    pub start: i32,
    pub n: i32,
    pub endoption: i32,
    pub subexpr: i32,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            start: 1,
            n: 1,
            endoption: 0,
            subexpr: 0,
        }
    }
}

fn bad_param(name: &str, v: i32) -> HostError {
    invalid(format!("invalid value for parameter \"{name}\": {v}"))
}

/// What a call answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `regexp_like`: whether the text matches.
    Matches(bool),
    /// `regexp_replace`, `regexp_substr`: text, or NULL (no such match).
    Text(Option<String>),
    /// `regexp_count`, `regexp_instr`: a number.
    Number(i32),
}

/// Runs `regex` call `op` over `text`, with its integer arguments `a`
/// (checked here, as PostgreSQL checks them, since they may be any row's).
pub(crate) fn run(
    patterns: &mut Patterns,
    op: RegexOp,
    text: &str,
    pattern: &str,
    repl: &str,
    flags: &str,
    a: Args,
) -> Result<Answer, HostError> {
    let f = Flags::parse(flags, op)?;
    if a.start < 1 {
        return Err(bad_param("start", a.start));
    }
    let least_n = if op == RegexOp::Replace { 0 } else { 1 };
    if a.n < least_n {
        return Err(bad_param("n", a.n));
    }
    if !(0..=1).contains(&a.endoption) {
        return Err(bad_param("endoption", a.endoption));
    }
    if a.subexpr < 0 {
        return Err(bad_param("subexpr", a.subexpr));
    }
    let re = patterns.get(pattern, f)?;
    let from = byte_at(text, a.start);
    let which = usize::try_from(a.n).unwrap_or(0);
    let sub = usize::try_from(a.subexpr).unwrap_or(0);
    let nth = || matches(re, text, from).nth(which.saturating_sub(1));
    Ok(match op {
        RegexOp::Like => Answer::Matches(re.is_match(text)),
        RegexOp::Replace => {
            // n given (endoption 1): that match, or every one for 0, flag
            // g or not; without n: the first, or every one with flag g
            let which = if a.endoption == 1 {
                which
            } else if f.global {
                0
            } else {
                1
            };
            Answer::Text(Some(replace(re, text, &replacement(repl), from, which)?))
        }
        RegexOp::Count => {
            Answer::Number(i32::try_from(matches(re, text, from).count()).unwrap_or(i32::MAX))
        }
        RegexOp::Instr => Answer::Number(nth().and_then(|c| c.get(sub)).map_or(0, |m| {
            char_pos(text, if a.endoption == 1 { m.end() } else { m.start() })
        })),
        RegexOp::Substr => Answer::Text(
            nth()
                .and_then(|c| c.get(sub))
                .map(|m| m.as_str().to_owned()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(t: &str, p: &str, r: &str, f: &str) -> String {
        match run(
            &mut Patterns::default(),
            RegexOp::Replace,
            t,
            p,
            r,
            f,
            Args {
                n: 1,
                ..Args::default()
            },
        ) {
            Ok(Answer::Text(Some(s))) => s,
            _ => panic!("{t} {p} {r} {f}"),
        }
    }

    fn call(op: RegexOp, t: &str, p: &str, r: &str, f: &str, a: [i32; 4]) -> Answer {
        let a = Args {
            start: a[0],
            n: a[1],
            endoption: a[2],
            subexpr: a[3],
        };
        run(&mut Patterns::default(), op, t, p, r, f, a).unwrap()
    }

    /// PostgreSQL 15's answers to the same calls.
    #[test]
    fn positions_counts_and_substrings_speak_postgresql() {
        use Answer::{Number, Text};
        let txt = |s: &str| Text(Some(s.to_owned()));
        assert_eq!(
            call(RegexOp::Replace, "abcabcabc", "b", "X", "", [1, 2, 1, 0]),
            txt("abcaXcabc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abcabcabc", "b", "X", "", [3, 1, 0, 0]),
            txt("abcaXcabc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abcabcabc", "b", "X", "", [3, 0, 1, 0]),
            txt("abcaXcaXc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abcabcabc", "B", "X", "i", [1, 3, 1, 0]),
            txt("abcabcaXc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abcabc", "b", "X", "", [7, 1, 0, 0]),
            txt("abcabc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abc", "b", "X", "", [10, 1, 1, 0]),
            txt("abc")
        );
        assert_eq!(
            call(RegexOp::Replace, "héllo", "l", "L", "", [4, 1, 0, 0]),
            txt("hélLo")
        );
        assert_eq!(
            call(RegexOp::Count, "abcabcabc", "b", "", "", [1, 1, 0, 0]),
            Number(3)
        );
        assert_eq!(
            call(RegexOp::Count, "abcabcabc", "b", "", "", [3, 1, 0, 0]),
            Number(2)
        );
        assert_eq!(
            call(RegexOp::Count, "ABCabc", "b", "", "i", [1, 1, 0, 0]),
            Number(2)
        );
        assert_eq!(
            call(RegexOp::Count, "aaaa", "aa", "", "", [1, 1, 0, 0]),
            Number(2)
        );
        assert_eq!(
            call(RegexOp::Count, "", "x*", "", "", [1, 1, 0, 0]),
            Number(1)
        );
        assert_eq!(
            call(RegexOp::Count, "héllo", "l", "", "", [3, 1, 0, 0]),
            Number(2)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b", "", "", [1, 1, 0, 0]),
            Number(2)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b", "", "", [3, 1, 0, 0]),
            Number(5)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b", "", "", [1, 2, 0, 0]),
            Number(5)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b", "", "", [1, 1, 1, 0]),
            Number(3)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b(c)", "", "i", [1, 1, 0, 1]),
            Number(3)
        );
        assert_eq!(
            call(RegexOp::Instr, "abc", "z", "", "", [1, 1, 0, 0]),
            Number(0)
        );
        assert_eq!(
            call(RegexOp::Instr, "héllo", "l", "", "", [1, 1, 0, 0]),
            Number(3)
        );
        assert_eq!(
            call(RegexOp::Instr, "abc", "a(x)?", "", "", [1, 1, 0, 1]),
            Number(0)
        );
        assert_eq!(
            call(RegexOp::Instr, "abcabc", "b(c)", "", "", [1, 1, 1, 1]),
            Number(4)
        );
        assert_eq!(
            call(RegexOp::Instr, "abc", "b(c)", "", "", [1, 1, 0, 2]),
            Number(0)
        );
        assert_eq!(
            call(RegexOp::Substr, "abcabc", "b.", "", "", [1, 1, 0, 0]),
            txt("bc")
        );
        assert_eq!(
            call(RegexOp::Substr, "abcabc", "b.", "", "", [3, 1, 0, 0]),
            txt("bc")
        );
        assert_eq!(
            call(RegexOp::Substr, "abcabc", "b(.)", "", "i", [1, 2, 0, 1]),
            txt("c")
        );
        assert_eq!(
            call(RegexOp::Substr, "abc", "z", "", "", [1, 1, 0, 0]),
            Text(None)
        );
        assert_eq!(
            call(RegexOp::Substr, "héllo wörld", "w.r", "", "", [1, 1, 0, 0]),
            txt("wör")
        );
        // with n, flag g is ignored, as on PostgreSQL: n wins
        assert_eq!(
            call(RegexOp::Replace, "abcabc", "b", "X", "g", [1, 1, 1, 0]),
            txt("aXcabc")
        );
        assert_eq!(
            call(RegexOp::Replace, "abcabc", "b", "X", "g", [1, 1, 0, 0]),
            txt("aXcaXc")
        );
    }

    /// PostgreSQL's errors for the same arguments.
    #[test]
    fn bad_integer_arguments_and_flags_are_postgresqls_errors() {
        let err = |op, f: &str, a: [i32; 4]| {
            let a = Args {
                start: a[0],
                n: a[1],
                endoption: a[2],
                subexpr: a[3],
            };
            match run(&mut Patterns::default(), op, "abc", "b", "X", f, a) {
                Err(HostError::Sql { detail, .. }) => detail,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            err(RegexOp::Replace, "", [0, 1, 0, 0]),
            "invalid value for parameter \"start\": 0"
        );
        assert_eq!(
            err(RegexOp::Replace, "", [1, -1, 1, 0]),
            "invalid value for parameter \"n\": -1"
        );
        assert_eq!(
            err(RegexOp::Instr, "", [1, 0, 0, 0]),
            "invalid value for parameter \"n\": 0"
        );
        assert_eq!(
            err(RegexOp::Instr, "", [1, 1, 2, 0]),
            "invalid value for parameter \"endoption\": 2"
        );
        assert_eq!(
            err(RegexOp::Instr, "", [1, 1, 0, -1]),
            "invalid value for parameter \"subexpr\": -1"
        );
        assert_eq!(
            err(RegexOp::Count, "g", [1, 1, 0, 0]),
            "regexp_count() does not support the \"global\" option"
        );
    }

    #[test]
    fn replacements_speak_postgresql() {
        assert_eq!(replace("abcabc", "b", "X", ""), "aXcabc");
        assert_eq!(replace("abcabc", "b", "X", "g"), "aXcaXc");
        assert_eq!(replace("ABC", "b", "x", "gi"), "AxC");
        assert_eq!(
            replace("john smith", "(\\w+) (\\w+)", "\\2, \\1", ""),
            "smith, john"
        );
        assert_eq!(replace("cost", "o", "[\\&]$1", ""), "c[o]$1st");
        assert_eq!(replace("a\nb", "a.b", "x", ""), "x");
        assert_eq!(replace("a\nb", "a.b", "x", "n"), "a\nb");
        // empty matches, as PostgreSQL counts them
        assert_eq!(replace("aaa", "a*", "X", "g"), "XX");
        assert_eq!(replace("baaa", "a*", "X", "g"), "XbXX");
        assert_eq!(replace("abc", "", "X", "g"), "XaXbXcX");
        assert_eq!(replace("abc", "", "X", ""), "Xabc");
        assert_eq!(replace("ñaña", "", "-", "g"), "-ñ-a-ñ-a-");
    }

    #[test]
    fn bad_patterns_flags_and_sizes_are_errors_that_say_so() {
        let mut p = Patterns::default();
        let e = |r: Result<Answer, HostError>| match r {
            Err(HostError::Sql { code, detail }) => (code, detail),
            _ => panic!("not an error"),
        };
        let (c, d) = e(run(
            &mut p,
            RegexOp::Like,
            "a",
            "(",
            "",
            "",
            Args::default(),
        ));
        assert!(
            c == ErrorCode::InvalidArgument && d.starts_with("invalid regular expression"),
            "{d}"
        );
        let (_, d) = e(run(
            &mut p,
            RegexOp::Like,
            "a",
            "a",
            "",
            "z",
            Args::default(),
        ));
        assert_eq!(d, "invalid regular expression option: \"z\"");
        let (_, d) = e(run(
            &mut p,
            RegexOp::Like,
            "a",
            "a",
            "",
            "g",
            Args::default(),
        ));
        assert!(d.contains("\"g\""), "g is for replacing: {d}");
        let (_, d) = e(run(
            &mut p,
            RegexOp::Like,
            "a",
            &"a".repeat(5000),
            "",
            "",
            Args::default(),
        ));
        assert!(d.contains("at most 4096"), "{d}");
        let (_, d) = e(run(
            &mut p,
            RegexOp::Like,
            "a",
            "(\\w{1000}){1000}",
            "",
            "",
            Args::default(),
        ));
        assert!(d.contains("simplify"), "{d}");
        let big = "a".repeat(1 << 20);
        let (c, _) = e(run(
            &mut p,
            RegexOp::Replace,
            &big,
            "a",
            "aaaaa",
            "g",
            Args::default(),
        ));
        assert_eq!(c, ErrorCode::StringTooLong);
    }
}
