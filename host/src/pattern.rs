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

/// `text` with the first match of `re` (every match when `global`)
/// replaced by `r` (in the crate's syntax). As PostgreSQL (and Perl), an
/// empty match right after a match counts: `a*` in `aaa` matches twice.
fn replace(re: &regex::Regex, text: &str, r: &str, global: bool) -> Result<String, HostError> {
    let mut out = String::with_capacity(text.len());
    let (mut last, mut at) = (0, 0);
    while at <= text.len() {
        let Some(caps) = re.captures_at(text, at) else {
            break;
        };
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
        if !global {
            break;
        }
        at = m.end();
        if m.is_empty() {
            // past the character after an empty match, kept as it is
            let Some(c) = text.get(at..).and_then(|t| t.chars().next()) else {
                break;
            };
            out.push(c);
            at += c.len_utf8();
            last = at;
        }
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Ok(out)
}

/// What a call answers.
pub(crate) enum Answer {
    /// `regexp_like`: whether the text matches.
    Matches(bool),
    /// `regexp_replace`: the new text.
    Replaced(String),
}

/// Runs `regex` call `op` over `text`.
pub(crate) fn run(
    patterns: &mut Patterns,
    op: RegexOp,
    text: &str,
    pattern: &str,
    repl: &str,
    flags: &str,
) -> Result<Answer, HostError> {
    let f = Flags::parse(flags, op)?;
    let re = patterns.get(pattern, f)?;
    Ok(match op {
        RegexOp::Like => Answer::Matches(re.is_match(text)),
        RegexOp::Replace => Answer::Replaced(replace(re, text, &replacement(repl), f.global)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(t: &str, p: &str, r: &str, f: &str) -> String {
        match run(&mut Patterns::default(), RegexOp::Replace, t, p, r, f) {
            Ok(Answer::Replaced(s)) => s,
            _ => panic!("{t} {p} {r} {f}"),
        }
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
        let (c, d) = e(run(&mut p, RegexOp::Like, "a", "(", "", ""));
        assert!(
            c == ErrorCode::InvalidArgument && d.starts_with("invalid regular expression"),
            "{d}"
        );
        let (_, d) = e(run(&mut p, RegexOp::Like, "a", "a", "", "z"));
        assert_eq!(d, "invalid regular expression option: \"z\"");
        let (_, d) = e(run(&mut p, RegexOp::Like, "a", "a", "", "g"));
        assert!(d.contains("\"g\""), "g is for replacing: {d}");
        let (_, d) = e(run(&mut p, RegexOp::Like, "a", &"a".repeat(5000), "", ""));
        assert!(d.contains("at most 4096"), "{d}");
        let (_, d) = e(run(&mut p, RegexOp::Like, "a", "(\\w{1000}){1000}", "", ""));
        assert!(d.contains("simplify"), "{d}");
        let big = "a".repeat(1 << 20);
        let (c, _) = e(run(&mut p, RegexOp::Replace, &big, "a", "aaaaa", "g"));
        assert_eq!(c, ErrorCode::StringTooLong);
    }
}
