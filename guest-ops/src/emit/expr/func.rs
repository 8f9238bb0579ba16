//! Function calls: string functions through the runtime helpers, math,
//! date parts and calendar arithmetic.

use super::super::rt::Helper;
use super::super::{EmitError, Gen, Val};
use super::super::{F64_MATH_FN, REGEX_FN, TO_CHAR_NUMBER_FN};
use crate::abi::{MathOp, NumberKind, RegexOp};
use crate::plan::{DatePart, Expr, Func, MathFn, Prim, TruncUnit};
use wasm_encoder::{Instruction as I, ValType};

use super::MICROS_PER_DAY;

impl Gen {
    pub(super) fn call(&mut self, func: Func, args: &[Val]) -> Result<Val, EmitError> {
        let arity = match func {
            Func::Length | Func::Lower | Func::Upper | Func::Abs => 1,
            Func::Reverse | Func::Initcap => 1,
            Func::Repeat | Func::ToCharNumber(_) => 2,
            Func::Replace | Func::SplitPart | Func::RegexLike => 3,
            Func::RegexCount => 4,
            Func::RegexSubstr => 6,
            Func::RegexReplace | Func::RegexInstr => 7,
            Func::Math(MathFn::Host(MathOp::Pow)) => 2,
            Func::Math(_) => 1,
            Func::ExtractDate(_) | Func::ExtractTs(_) | Func::DateTrunc(_) => 1,
            Func::Position
            | Func::Concat
            | Func::TrimBoth
            | Func::TrimLeading
            | Func::TrimTrailing
            | Func::AddMonths => 2,
            Func::Like => 3,
            Func::Substr => args.len().clamp(2, 3),
        };
        if args.len() != arity {
            return Err(EmitError::Plan(format!(
                "{func:?} takes {arity} arguments, the plan gives {}",
                args.len()
            )));
        }
        let out_prim = match func {
            Func::Length | Func::Position | Func::ExtractDate(_) | Func::AddMonths => Prim::I32,
            Func::ExtractTs(_) => Prim::I32,
            Func::DateTrunc(_) => Prim::I64,
            Func::Like | Func::RegexLike => Prim::Bool,
            Func::RegexCount | Func::RegexInstr => Prim::I32,
            Func::Math(_) => Prim::F64,
            Func::Abs => args.first().map_or(Prim::I64, |a| a.prim),
            _ => Prim::Str,
        };
        let null = self.any_null(args);
        // regexp_substr is NULL without a match, whatever its arguments
        let out = self.fresh(out_prim, null.is_some() || func == Func::RegexSubstr);
        if let Some(o) = out.null {
            match null {
                Some(n) => self.f.get(n),
                None => self.f.i32c(0),
            }
            self.f.set(o);
        }
        let args = args.to_vec();
        self.unless_null(null, |g| g.call_body(func, &args, &out))?;
        Ok(out)
    }

    /// Pushes a `regex` call's arguments but the output room: `op`, the four
    /// texts (text, pattern, replacement, flags; a missing one empty) and the
    /// four integers (start, n, endoption, subexpr; missing ones 1, 1, 0, 0).
    fn regex_args(&mut self, op: RegexOp, texts: [Option<&Val>; 4], ints: [Option<&Val>; 4]) {
        self.f.i32c(op as i32);
        for t in texts {
            match t {
                Some(v) => self.push_val(v),
                None => {
                    self.f.i32c(0);
                    self.f.i32c(0);
                }
            }
        }
        for (i, v) in ints.into_iter().enumerate() {
            match v {
                Some(v) => self.push_val(v),
                None => self.f.i32c(if i < 2 { 1 } else { 0 }),
            }
        }
    }

    /// Calls host import `import`, which writes text into room the guest
    /// gives: `room` pushes the first room's size, `args` the import's
    /// arguments before the room's address and size. A returned length
    /// larger than the room calls again with room for exactly that (a
    /// negative one, NULL, is not). Returns the local holding the length.
    fn host_text(
        &mut self,
        import: u32,
        room: impl Fn(&mut Self),
        args: impl Fn(&mut Self),
        out: &Val,
    ) -> u32 {
        let talloc = self.helper(Helper::TAlloc);
        let cap = self.f.local(ValType::I32);
        let n = self.f.local(ValType::I32);
        room(self);
        self.f.set(cap);
        self.f.get(cap);
        self.f.i(I::Call(talloc));
        self.f.set(out.v);
        let call = |g: &mut Self| {
            args(g);
            g.f.get(out.v);
            g.f.get(cap);
            g.f.i(I::Call(import));
            g.f.set(n);
        };
        call(self);
        self.f.get(n);
        self.f.get(cap);
        self.f.i(I::I32GtS);
        self.f.if_();
        self.f.get(n);
        self.f.set(cap);
        self.f.get(cap);
        self.f.i(I::Call(talloc));
        self.f.set(out.v);
        call(self);
        self.f.end();
        n
    }

    /// A `regex` call that answers text (`regexp_replace`, `regexp_substr`):
    /// into room for the text, the replacement and a little more; a length
    /// of -1 is NULL.
    fn regex_text(
        &mut self,
        op: RegexOp,
        texts: [Option<&Val>; 4],
        ints: [Option<&Val>; 4],
        out: &Val,
    ) {
        let lens: Vec<u32> = [texts[0], texts[2]]
            .into_iter()
            .flatten()
            .map(|v| v.len)
            .collect();
        let room = |g: &mut Self| {
            g.f.i32c(64);
            for l in &lens {
                g.f.get(*l);
                g.f.i(I::I32Add);
            }
        };
        let n = self.host_text(REGEX_FN, room, |g| g.regex_args(op, texts, ints), out);
        if let Some(o) = out.null {
            self.f.get(n);
            self.f.i32c(0);
            self.f.i(I::I32LtS);
            self.f.set(o);
            self.f.get(n);
            self.f.i32c(0);
            self.f.get(n);
            self.f.i32c(0);
            self.f.i(I::I32GeS);
            self.f.i(I::Select);
            self.f.set(out.len);
        } else {
            self.f.get(n);
            self.f.set(out.len);
        }
    }

    /// `to_char` of a number through the host: into room for twice the
    /// format and the number.
    fn number_text(&mut self, kind: NumberKind, a: &[Val; 2], out: &Val) {
        let room = |g: &mut Self| {
            g.f.get(a[1].len);
            g.f.i32c(1);
            g.f.i(I::I32Shl);
            g.f.get(a[0].len);
            g.f.i(I::I32Add);
            g.f.i32c(16);
            g.f.i(I::I32Add);
        };
        let args = |g: &mut Self| {
            g.f.i32c(kind as i32);
            for x in a {
                g.push_val(x);
            }
        };
        let n = self.host_text(TO_CHAR_NUMBER_FN, room, args, out);
        self.f.get(n);
        self.f.set(out.len);
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub(super) fn call_body(&mut self, func: Func, a: &[Val], out: &Val) -> Result<(), EmitError> {
        let arg = |i: usize| -> Result<Val, EmitError> {
            a.get(i)
                .copied()
                .ok_or_else(|| EmitError::Plan("missing argument".into()))
        };
        match func {
            Func::RegexLike | Func::RegexCount | Func::RegexInstr => {
                let (s, p, f) = (arg(0)?, arg(1)?, arg(2)?);
                let (op, ints) = match func {
                    Func::RegexLike => (RegexOp::Like, [None, None, None, None]),
                    Func::RegexCount => (RegexOp::Count, [a.get(3), None, None, None]),
                    _ => (RegexOp::Instr, [a.get(3), a.get(4), a.get(5), a.get(6)]),
                };
                self.regex_args(op, [Some(&s), Some(&p), None, Some(&f)], ints);
                self.f.i32c(0);
                self.f.i32c(0);
                self.f.i(I::Call(REGEX_FN));
                self.f.set(out.v);
            }
            Func::RegexReplace => {
                let texts = [a.first(), a.get(1), a.get(2), a.get(3)];
                self.regex_text(
                    RegexOp::Replace,
                    texts,
                    [a.get(4), a.get(5), a.get(6), None],
                    out,
                );
            }
            Func::RegexSubstr => {
                let texts = [a.first(), a.get(1), None, a.get(2)];
                self.regex_text(
                    RegexOp::Substr,
                    texts,
                    [a.get(3), a.get(4), None, a.get(5)],
                    out,
                );
            }
            Func::ToCharNumber(kind) => self.number_text(kind, &[arg(0)?, arg(1)?], out),
            Func::Repeat | Func::Replace | Func::SplitPart => {
                let h = self.helper(match func {
                    Func::Repeat => Helper::Repeat,
                    Func::Replace => Helper::Replace,
                    _ => Helper::SplitPart,
                });
                for x in a {
                    if x.prim == Prim::Str {
                        self.push_val(x);
                    } else {
                        self.f.get(x.v);
                    }
                }
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Func::Reverse | Func::Initcap => {
                let h = self.helper(if func == Func::Reverse {
                    Helper::Reverse
                } else {
                    Helper::Initcap
                });
                let s = arg(0)?;
                self.push_val(&s);
                self.f.i(I::Call(h));
                self.f.set(out.v);
                self.f.get(s.len);
                self.f.set(out.len);
            }
            Func::Math(m) => {
                for x in a {
                    if x.prim != Prim::F64 {
                        return Err(EmitError::Plan(format!("{m:?} of a non-double")));
                    }
                }
                match m {
                    MathFn::Round | MathFn::Trunc | MathFn::Ceil | MathFn::Floor => {
                        self.f.get(arg(0)?.v);
                        self.f.i(match m {
                            MathFn::Round => I::F64Nearest,
                            MathFn::Trunc => I::F64Trunc,
                            MathFn::Ceil => I::F64Ceil,
                            _ => I::F64Floor,
                        });
                    }
                    MathFn::Host(op) => {
                        self.f.i32c(op as i32);
                        self.f.get(arg(0)?.v);
                        match a.get(1) {
                            Some(y) => self.f.get(y.v),
                            None => self.f.i(I::F64Const(0.0.into())),
                        }
                        self.f.i(I::Call(F64_MATH_FN));
                    }
                }
                self.f.set(out.v);
            }
            Func::Length => {
                let h = self.helper(Helper::CharLen);
                self.push_val(&arg(0)?);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::Lower | Func::Upper => {
                let h = self.helper(if func == Func::Lower {
                    Helper::Lower
                } else {
                    Helper::Upper
                });
                let s = arg(0)?;
                self.push_val(&s);
                self.f.i(I::Call(h));
                self.f.set(out.v);
                self.f.get(s.len);
                self.f.set(out.len);
            }
            Func::Substr => {
                let h = self.helper(Helper::Substr);
                self.push_val(&arg(0)?);
                self.f.get(arg(1)?.v);
                if a.len() == 3 {
                    self.f.get(arg(2)?.v);
                    self.f.i32c(1);
                } else {
                    self.f.i64c(0);
                    self.f.i32c(0);
                }
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Func::Position => {
                let h = self.helper(Helper::Position);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::Concat => {
                let h = self.helper(Helper::Concat);
                let (x, y) = (arg(0)?, arg(1)?);
                self.push_val(&x);
                self.push_val(&y);
                self.f.i(I::Call(h));
                self.f.set(out.v);
                self.f.get(x.len);
                self.f.get(y.len);
                self.f.i(I::I32Add);
                self.f.set(out.len);
            }
            Func::TrimBoth | Func::TrimLeading | Func::TrimTrailing => {
                let h = self.helper(Helper::Trim);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.i32c(match func {
                    Func::TrimBoth => 3,
                    Func::TrimLeading => 1,
                    _ => 2,
                });
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Func::Like => {
                let h = self.helper(Helper::Like);
                self.push_val(&arg(0)?);
                self.push_val(&arg(1)?);
                self.f.get(arg(2)?.v);
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Func::ExtractDate(part) => {
                let d = arg(0)?;
                self.f.get(d.v);
                self.extract_civil(part, out)?;
            }
            Func::ExtractTs(part) => {
                let ts = arg(0)?;
                match part {
                    DatePart::Year | DatePart::Month | DatePart::Day => {
                        let days = self.f.scratch(ValType::I64);
                        self.floor_div_local(ts.v, MICROS_PER_DAY, days);
                        self.f.get(days);
                        self.f.i(I::I32WrapI64);
                        self.extract_civil(part, out)?;
                    }
                    DatePart::Hour | DatePart::Minute | DatePart::Second => {
                        let (div, m) = match part {
                            DatePart::Hour => (3_600_000_000, 24),
                            DatePart::Minute => (60_000_000, 60),
                            _ => (1_000_000, 60),
                        };
                        // ((ts mod day) / div) mod m, with a non-negative mod
                        self.f.get(ts.v);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64RemS);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64Add);
                        self.f.i64c(MICROS_PER_DAY);
                        self.f.i(I::I64RemS);
                        self.f.i64c(div);
                        self.f.i(I::I64DivS);
                        self.f.i64c(m);
                        self.f.i(I::I64RemS);
                        self.f.i(I::I32WrapI64);
                        self.f.set(out.v);
                    }
                }
            }
            Func::AddMonths => self.add_months(&arg(0)?, &arg(1)?, out),
            Func::DateTrunc(unit) => self.date_trunc(unit, &arg(0)?, out),
            Func::Abs => {
                let x = arg(0)?;
                match x.prim {
                    Prim::I32 | Prim::I64 => {
                        let neg = Expr::Neg(x.prim, Box::new(Expr::Col(0)));
                        let is32 = x.prim == Prim::I32;
                        self.f.get(x.v);
                        if is32 {
                            self.f.i32c(0);
                            self.f.i(I::I32LtS);
                        } else {
                            self.f.i64c(0);
                            self.f.i(I::I64LtS);
                        }
                        self.f.if_();
                        let n = self.expr(&neg, &[x])?;
                        self.f.get(n.v);
                        self.f.set(out.v);
                        self.f.else_();
                        self.f.get(x.v);
                        self.f.set(out.v);
                        self.f.end();
                    }
                    Prim::F64 => {
                        self.f.get(x.v);
                        self.f.i(I::F64Abs);
                        self.f.set(out.v);
                    }
                    Prim::I128 => {
                        self.f.get(x.v);
                        self.f.set(out.v);
                        self.f.get(x.len);
                        self.f.set(out.len);
                        self.f.get(x.len);
                        self.f.i64c(0);
                        self.f.i(I::I64LtS);
                        self.f.if_();
                        self.neg128(x.v, x.len, out.v, out.len);
                        self.f.end();
                    }
                    _ => return Err(EmitError::Plan("abs of a non-number".into())),
                }
            }
        }
        Ok(())
    }

    /// Sets `out` to TIMESTAMP `ts` truncated to `unit`.
    fn date_trunc(&mut self, unit: TruncUnit, ts: &Val, out: &Val) {
        let step = match unit {
            TruncUnit::Second => Some(1_000_000),
            TruncUnit::Minute => Some(60_000_000),
            TruncUnit::Hour => Some(3_600_000_000),
            TruncUnit::Day => Some(MICROS_PER_DAY),
            _ => None,
        };
        let q = self.f.scratch(ValType::I64);
        if let Some(k) = step {
            // floor(ts / k) * k
            self.floor_div_local(ts.v, k, q);
            self.f.get(q);
            self.f.i64c(k);
            self.f.i(I::I64Mul);
            self.f.set(out.v);
            return;
        }
        self.floor_div_local(ts.v, MICROS_PER_DAY, q);
        if unit == TruncUnit::Week {
            // days back to Monday: 1970-01-01 was a Thursday
            let f = &mut self.f;
            f.get(q);
            f.get(q);
            f.i64c(3);
            f.i(I::I64Add);
            f.i64c(7);
            f.i(I::I64RemS);
            f.i64c(7);
            f.i(I::I64Add);
            f.i64c(7);
            f.i(I::I64RemS);
            f.i(I::I64Sub);
            f.i64c(MICROS_PER_DAY);
            f.i(I::I64Mul);
            f.set(out.v);
            return;
        }
        let civil = self.helper(Helper::Civil);
        let mk = self.helper(Helper::Days);
        let (y, m, d) = (
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
        );
        let f = &mut self.f;
        f.get(q);
        f.i(I::I32WrapI64);
        f.i(I::Call(civil));
        f.set(d);
        f.set(m);
        f.set(y);
        f.get(y);
        match unit {
            TruncUnit::Month => f.get(m),
            TruncUnit::Quarter => {
                // ((m - 1) / 3) * 3 + 1
                f.get(m);
                f.i32c(1);
                f.i(I::I32Sub);
                f.i32c(3);
                f.i(I::I32DivU);
                f.i32c(3);
                f.i(I::I32Mul);
                f.i32c(1);
                f.i(I::I32Add);
            }
            _ => f.i32c(1),
        }
        f.i32c(1);
        f.i(I::Call(mk));
        f.i(I::I64ExtendI32S);
        f.i64c(MICROS_PER_DAY);
        f.i(I::I64Mul);
        f.set(out.v);
    }

    pub(super) fn floor_div_local(&mut self, x: u32, k: i64, out: u32) {
        self.f.get(x);
        self.f.i64c(k);
        self.f.i(I::I64DivS);
        self.f.get(x);
        self.f.i64c(k);
        self.f.i(I::I64RemS);
        self.f.i64c(0);
        self.f.i(I::I64LtS);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64Sub);
        self.f.set(out);
    }

    /// With days (i32) on the stack, sets `out` to the date part.
    pub(super) fn extract_civil(&mut self, part: DatePart, out: &Val) -> Result<(), EmitError> {
        let h = self.helper(Helper::Civil);
        let (y, m, d) = (
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
        );
        self.f.i(I::Call(h));
        self.f.set(d);
        self.f.set(m);
        self.f.set(y);
        self.f.get(match part {
            DatePart::Year => y,
            DatePart::Month => m,
            DatePart::Day => d,
            _ => return Err(EmitError::Plan("a time part of a date".into())),
        });
        self.f.set(out.v);
        Ok(())
    }

    pub(super) fn add_months(&mut self, days: &Val, months: &Val, out: &Val) {
        let civil = self.helper(Helper::Civil);
        let mk = self.helper(Helper::Days);
        let (y, m, d, total, ny, nm, last) = (
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I64),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
            self.f.scratch(ValType::I32),
        );
        let f = &mut self.f;
        f.get(days.v);
        f.i(I::Call(civil));
        f.set(d);
        f.set(m);
        f.set(y);
        // total = y*12 + (m-1) + n
        f.get(y);
        f.i(I::I64ExtendI32S);
        f.i64c(12);
        f.i(I::I64Mul);
        f.get(m);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i(I::I64ExtendI32S);
        f.i(I::I64Add);
        f.get(months.v);
        f.i(I::I64ExtendI32S);
        f.i(I::I64Add);
        f.set(total);
        // ny = floor(total / 12); nm = total - ny*12 + 1
        f.get(total);
        f.i64c(12);
        f.i(I::I64DivS);
        f.get(total);
        f.i64c(12);
        f.i(I::I64RemS);
        f.i64c(0);
        f.i(I::I64LtS);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Sub);
        f.i(I::I32WrapI64);
        f.set(ny);
        f.get(total);
        f.get(ny);
        f.i(I::I64ExtendI32S);
        f.i64c(12);
        f.i(I::I64Mul);
        f.i(I::I64Sub);
        f.i(I::I32WrapI64);
        f.i32c(1);
        f.i(I::I32Add);
        f.set(nm);
        // last day of (ny, nm) = days(first of next month) - days(first of nm)
        f.get(ny);
        f.get(nm);
        f.i32c(12);
        f.i(I::I32Eq);
        f.i(I::I32Add);
        f.get(nm);
        f.i32c(12);
        f.i(I::I32RemU);
        f.i32c(1);
        f.i(I::I32Add);
        f.i32c(1);
        f.i(I::Call(mk));
        f.get(ny);
        f.get(nm);
        f.i32c(1);
        f.i(I::Call(mk));
        f.i(I::I32Sub);
        f.set(last);
        f.get(ny);
        f.get(nm);
        f.get(d);
        f.get(last);
        f.get(d);
        f.get(last);
        f.i(I::I32LtS);
        f.i(I::Select);
        f.i(I::Call(mk));
        f.set(out.v);
    }
}
