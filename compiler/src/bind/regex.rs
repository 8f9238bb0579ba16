//! PostgreSQL's regular expression functions: `regexp_like`,
//! `regexp_replace` (with its start and n), `regexp_count`, `regexp_instr`
//! and `regexp_substr`, each one call of the host's pure `regex` import. Their
//! integer arguments may come from rows, so the host checks them, with
//! PostgreSQL's messages.

use super::*;

/// The arguments each function takes, in order: `T` text, `I` an integer.
fn shape(name: &str, n: usize, fourth_int: bool) -> Option<&'static [u8]> {
    Some(match (name, n) {
        ("regexp_like", 2) => b"TT",
        ("regexp_like", 3) => b"TTT",
        ("regexp_replace", 3) => b"TTT",
        // the fourth is flags or a start, as its type says
        ("regexp_replace", 4) if fourth_int => b"TTTI",
        ("regexp_replace", 4) => b"TTTT",
        ("regexp_replace", 5) => b"TTTII",
        ("regexp_replace", 6) => b"TTTIIT",
        ("regexp_count", 2) => b"TT",
        ("regexp_count", 3) => b"TTI",
        ("regexp_count", 4) => b"TTIT",
        ("regexp_instr", 2) => b"TT",
        ("regexp_instr", 3) => b"TTI",
        ("regexp_instr", 4) => b"TTII",
        ("regexp_instr", 5) => b"TTIII",
        ("regexp_instr", 6) => b"TTIIIT",
        ("regexp_instr", 7) => b"TTIIITI",
        ("regexp_substr", 2) => b"TT",
        ("regexp_substr", 3) => b"TTI",
        ("regexp_substr", 4) => b"TTII",
        ("regexp_substr", 5) => b"TTIIT",
        ("regexp_substr", 6) => b"TTIITI",
        _ => return None,
    })
}

fn signature(name: &str) -> &'static str {
    match name {
        "regexp_like" => "regexp_like(string, pattern [, flags])",
        "regexp_replace" => {
            "regexp_replace(source, pattern, replacement [, start [, n]] [, flags])"
        }
        "regexp_count" => "regexp_count(string, pattern [, start [, flags]])",
        "regexp_instr" => {
            "regexp_instr(string, pattern [, start [, n [, endoption [, flags [, subexpr]]]]])"
        }
        _ => "regexp_substr(string, pattern [, start [, n [, flags [, subexpr]]]])",
    }
}

fn lit_int(n: i32) -> BExpr {
    BExpr::lit(Value::Integer(n), SqlType::Integer)
}

fn lit_text(s: &str) -> BExpr {
    BExpr::lit(Value::Text(s.to_owned()), SqlType::Text)
}

impl Binder<'_> {
    /// `name(bound...)`, one of the regular expression functions.
    pub(super) fn bind_regex(
        &mut self,
        name: &str,
        bound: Vec<BExpr>,
    ) -> Result<BExpr, CompileError> {
        let is_int =
            |b: &BExpr| matches!(b.ty, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt);
        let fourth_int = bound.get(3).is_some_and(is_int);
        let Some(shape) = shape(name, bound.len(), fourth_int) else {
            return Err(
                mismatch(format!("{name} does not take {} arguments", bound.len()))
                    .hint(signature(name)),
            );
        };
        let given = bound.len();
        let mut args = Vec::with_capacity(given);
        for (b, want) in bound.into_iter().zip(shape) {
            if is_null_lit(&b) {
                args.push(coerce(
                    b,
                    if *want == b'I' {
                        SqlType::Integer
                    } else {
                        SqlType::Text
                    },
                ));
            } else if *want == b'I' {
                if !is_int(&b) {
                    return Err(
                        mismatch(format!("{name} takes an integer here, not {}", b.ty))
                            .hint(signature(name)),
                    );
                }
                args.push(coerce(b, SqlType::Integer));
            } else {
                if !is_text(&b.ty) {
                    return Err(mismatch(format!("{name} takes text here, not {}", b.ty))
                        .hint(signature(name)));
                }
                args.push(coerce(b, SqlType::Text));
            }
        }
        let nl = args.iter().any(|a| a.nullable);
        // the plan's argument order: texts (string, pattern[, replacement],
        // flags), then integers, each missing one given its default; `rest`
        // holds the arguments after the pattern as the call gives them
        let mut rest: Vec<Option<BExpr>> = args
            .split_off(2.min(args.len()))
            .into_iter()
            .map(Some)
            .collect();
        let mut out = args;
        let pick = |v: &mut Vec<Option<BExpr>>, i: usize| v.get_mut(i).and_then(Option::take);
        let text_or = |e: Option<BExpr>| e.unwrap_or_else(|| lit_text(""));
        let int_or = |e: Option<BExpr>, d: i32| e.unwrap_or_else(|| lit_int(d));
        Ok(match name {
            "regexp_like" => {
                out.push(text_or(pick(&mut rest, 0)));
                mk(BK::Func(Func::RegexLike, out), SqlType::Boolean, nl)
            }
            "regexp_replace" => {
                out.push(text_or(pick(&mut rest, 0)));
                let (start, n, flags) = match shape.get(3..) {
                    Some(b"T") => (None, None, pick(&mut rest, 1)),
                    Some(b"I") => (pick(&mut rest, 1), None, None),
                    Some(b"II") => (pick(&mut rest, 1), pick(&mut rest, 2), None),
                    Some(b"IIT") => (pick(&mut rest, 1), pick(&mut rest, 2), pick(&mut rest, 3)),
                    _ => (None, None, None),
                };
                let n_given = i32::from(n.is_some());
                out.push(text_or(flags));
                out.push(int_or(start, 1));
                out.push(int_or(n, 1));
                out.push(lit_int(n_given));
                mk(BK::Func(Func::RegexReplace, out), SqlType::Text, nl)
            }
            "regexp_count" => {
                out.push(text_or(pick(&mut rest, 1)));
                out.push(int_or(pick(&mut rest, 0), 1));
                mk(BK::Func(Func::RegexCount, out), SqlType::Integer, nl)
            }
            "regexp_instr" => {
                out.push(text_or(pick(&mut rest, 3)));
                out.push(int_or(pick(&mut rest, 0), 1));
                out.push(int_or(pick(&mut rest, 1), 1));
                out.push(int_or(pick(&mut rest, 2), 0));
                out.push(int_or(pick(&mut rest, 4), 0));
                mk(BK::Func(Func::RegexInstr, out), SqlType::Integer, nl)
            }
            _ => {
                out.push(text_or(pick(&mut rest, 2)));
                out.push(int_or(pick(&mut rest, 0), 1));
                out.push(int_or(pick(&mut rest, 1), 1));
                out.push(int_or(pick(&mut rest, 3), 0));
                mk(BK::Func(Func::RegexSubstr, out), SqlType::Text, true)
            }
        })
    }
}
