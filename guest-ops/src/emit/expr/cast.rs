//! Conversions between types (`CAST`, and the implicit ones the binder
//! inserts): numbers, DECIMAL scales, text, dates and timestamps.

use super::super::rt::{Helper, fail_text, neg128, outside};
use super::super::{EmitError, Gen, Val};
use crate::abi::ErrorCode;
use crate::plan::Cast;
use wasm_encoder::{Instruction as I, ValType};

use super::MICROS_PER_DAY;

use super::cast_types;

impl Gen {
    pub(super) fn cast(&mut self, c: Cast, a: &Val) -> Result<Val, EmitError> {
        let (from, to) = cast_types(c);
        self.want(a, from)?;
        let out = self.fresh(to, a.null.is_some());
        if let (Some(n), Some(o)) = (a.null, out.null) {
            self.f.get(n);
            self.f.set(o);
        }
        let a = *a;
        self.unless_null(a.null, |g| g.cast_body(c, &a, &out))?;
        Ok(out)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub(super) fn cast_body(&mut self, c: Cast, a: &Val, out: &Val) -> Result<(), EmitError> {
        match c {
            Cast::I32ToI64 => {
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.set(out.v);
            }
            Cast::I64ToI32 => {
                self.f.get(a.v);
                self.f.get(a.v);
                self.f.i(I::I32WrapI64);
                self.f.i(I::I64ExtendI32S);
                self.f.i(I::I64Ne);
                self.overflow_if();
                self.f.get(a.v);
                self.f.i(I::I32WrapI64);
                self.f.set(out.v);
            }
            Cast::I32ToDec(k) => {
                let w = self.f.scratch(ValType::I64);
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.set(w);
                self.mul_const_checked(w, k, out.v);
            }
            Cast::Rescale(k) => self.mul_const_checked(a.v, k, out.v),
            Cast::CheckDigits(p) => {
                let bound = 10i64.checked_pow(u32::from(p)).unwrap_or(i64::MAX);
                if bound != i64::MAX {
                    self.f.get(a.v);
                    self.f.i64c(bound - 1);
                    self.f.i(I::I64GtS);
                    self.f.get(a.v);
                    self.f.i64c(1 - bound);
                    self.f.i(I::I64LtS);
                    self.f.i(I::I32Or);
                    self.overflow_if();
                }
                self.f.get(a.v);
                self.f.set(out.v);
            }
            Cast::I64ToF64(k) => {
                self.f.get(a.v);
                self.f.i(I::F64ConvertI64S);
                if k != 1 {
                    self.f.i(I::F64Const((k as f64).into()));
                    self.f.i(I::F64Div);
                }
                self.f.set(out.v);
            }
            Cast::I32ToF64 => {
                self.f.get(a.v);
                self.f.i(I::F64ConvertI32S);
                self.f.set(out.v);
            }
            Cast::F64ToI64(_) | Cast::F64ToInt => {
                let x = self.f.scratch(ValType::F64);
                self.f.get(a.v);
                if let Cast::F64ToI64(k) = c {
                    if k != 1 {
                        self.f.i(I::F64Const((k as f64).into()));
                        self.f.i(I::F64Mul);
                    }
                    // round half away from zero
                    self.f.i(I::F64Const(0.5.into()));
                    self.f.get(a.v);
                    self.f.i(I::F64Copysign);
                    self.f.i(I::F64Add);
                    self.f.i(I::F64Trunc);
                } else {
                    // to the nearest, ties to even
                    self.f.i(I::F64Nearest);
                }
                self.f.set(x);
                // NaN or out of range
                self.f.get(x);
                self.f.get(x);
                self.f.i(I::F64Ne);
                self.f.get(x);
                self.f.i(I::F64Abs);
                self.f.i(I::F64Const(9.223_372_036_854_775e18.into()));
                self.f.i(I::F64Ge);
                self.f.i(I::I32Or);
                self.overflow_if();
                self.f.get(x);
                self.f.i(I::I64TruncF64S);
                self.f.set(out.v);
            }
            Cast::Unscale(k) => {
                let kl = self.f.scratch(ValType::I64);
                self.f.i64c(k);
                self.f.set(kl);
                self.f.get(a.v);
                self.f.get(kl);
                self.f.i(I::I64DivS);
                self.f.set(out.v);
                self.round_adjust(a.v, kl, out.v);
            }
            Cast::FloorDiv(k) => {
                self.f.get(a.v);
                self.f.i64c(k);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(k);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.set(out.v);
            }
            Cast::BoolToI32 => {
                self.f.get(a.v);
                self.f.set(out.v);
            }
            Cast::DecToStr(k) => {
                let h = self.helper(Helper::FmtDec);
                self.f.get(a.v);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::I32ToStr => {
                let h = self.helper(Helper::FmtDec);
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.i32c(0);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::BoolToStr => {
                let t = self.string(b"true");
                let fl = self.string(b"false");
                self.f.i32c(t as i32);
                self.f.i32c(fl as i32);
                self.f.get(a.v);
                self.f.i(I::Select);
                self.f.set(out.v);
                self.f.i32c(4);
                self.f.i32c(5);
                self.f.get(a.v);
                self.f.i(I::Select);
                self.f.set(out.len);
            }
            Cast::StrToDec(k) => {
                let h = self.helper(Helper::ParseDec);
                self.push_val(a);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.v);
            }
            Cast::StrTruncate(n) => {
                let h = self.helper(Helper::Substr);
                self.push_val(a);
                self.f.i64c(1);
                self.f.i64c(i64::from(n));
                self.f.i32c(1);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::DateToTs => {
                self.f.get(a.v);
                self.f.i(I::I64ExtendI32S);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64Mul);
                self.f.set(out.v);
            }
            Cast::TsToDate => {
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.i(I::I32WrapI64);
                self.f.set(out.v);
            }
            Cast::DateToStr => {
                let h = self.helper(Helper::FmtDateTime);
                self.f.get(a.v);
                self.f.i64c(0);
                self.f.i32c(0);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::TsToStr => {
                // floor division into days and microseconds of the day
                let h = self.helper(Helper::FmtDateTime);
                let days = self.f.scratch(ValType::I64);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64DivS);
                self.f.get(a.v);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64RemS);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.i(I::I64ExtendI32U);
                self.f.i(I::I64Sub);
                self.f.set(days);
                self.f.get(days);
                self.f.i(I::I32WrapI64);
                self.f.get(a.v);
                self.f.get(days);
                self.f.i64c(MICROS_PER_DAY);
                self.f.i(I::I64Mul);
                self.f.i(I::I64Sub);
                self.f.i32c(1);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::StrToDate | Cast::StrToTs => {
                let h = self.helper(Helper::ParseDateTime);
                self.push_val(a);
                self.f.i32c(i32::from(c == Cast::StrToTs));
                self.f.i(I::Call(h));
                if c == Cast::StrToDate {
                    self.f.i(I::I32WrapI64);
                }
                self.f.set(out.v);
            }
            Cast::StrToBool => {
                // PostgreSQL's spellings, trimmed, in any case
                let trim = self.helper(Helper::Trim);
                let lower = self.helper(Helper::Lower);
                let eq = self.helper(Helper::StrEq);
                let (p, l, known) = (
                    self.f.scratch(ValType::I32),
                    self.f.scratch(ValType::I32),
                    self.f.scratch(ValType::I32),
                );
                let space = self.string(b" ");
                self.push_val(a);
                self.f.i32c(space as i32);
                self.f.i32c(1);
                self.f.i32c(3);
                self.f.i(I::Call(trim));
                self.f.set(l);
                self.f.set(p);
                self.f.get(p);
                self.f.get(l);
                self.f.i(I::Call(lower));
                self.f.set(p);
                self.f.set_i32(out.v, 0);
                self.f.set_i32(known, 0);
                for (word, value) in [
                    (&b"true"[..], true),
                    (b"t", true),
                    (b"yes", true),
                    (b"y", true),
                    (b"on", true),
                    (b"1", true),
                    (b"false", false),
                    (b"f", false),
                    (b"no", false),
                    (b"n", false),
                    (b"off", false),
                    (b"0", false),
                ] {
                    let w = self.string(word);
                    self.f.get(p);
                    self.f.get(l);
                    self.f.i32c(w as i32);
                    self.f.i32c(word.len() as i32);
                    self.f.i(I::Call(eq));
                    self.f.if_();
                    self.f.set_i32(known, 1);
                    self.f.set_i32(out.v, i32::from(value));
                    self.f.end();
                }
                self.f.get(known);
                self.f.i(I::I32Eqz);
                self.f.if_();
                fail_text(&mut self.f, ErrorCode::InvalidCast, a.v, a.len);
                self.f.end();
            }
            Cast::F64ToStr => {
                // the host formats (shortest exact digits need Ryu-class code)
                let talloc = self.helper(Helper::TAlloc);
                self.f.i32c(crate::abi::F64_TEXT_BYTES as i32);
                self.f.i(I::Call(talloc));
                self.f.set(out.v);
                self.f.get(a.v);
                self.f.get(out.v);
                self.f.i(I::Call(crate::emit::F64_TEXT_FN));
                self.f.set(out.len);
            }
            Cast::StrToF64 => {
                self.push_val(a);
                self.f.i(I::Call(crate::emit::TEXT_F64_FN));
                self.f.set(out.v);
            }
            Cast::Widen
            | Cast::Narrow
            | Cast::Rescale128(_)
            | Cast::Unscale128(_)
            | Cast::CheckDigits128(_)
            | Cast::I128ToF64(_)
            | Cast::Dec128ToStr(_)
            | Cast::StrToDec128(_) => self.cast_wide(c, a, out)?,
        }
        Ok(())
    }

    /// The conversions to, from and between 128-bit values.
    fn cast_wide(&mut self, c: Cast, a: &Val, out: &Val) -> Result<(), EmitError> {
        if let Cast::Dec128ToStr(k) | Cast::StrToDec128(k) = c
            && k > 38
        {
            // the text helpers' buffers hold 38 digits and a point
            return Err(EmitError::Plan(format!("a DECIMAL text of scale {k}")));
        }
        let pow10 = |k: u8| -> Result<i128, EmitError> {
            10i128
                .checked_pow(u32::from(k))
                .ok_or_else(|| EmitError::Plan(format!("a DECIMAL scale step of {k} digits")))
        };
        match c {
            Cast::Widen => {
                self.f.get(a.v);
                self.f.set(out.v);
                self.f.get(a.v);
                self.f.i64c(63);
                self.f.i(I::I64ShrS);
                self.f.set(out.len);
            }
            Cast::Narrow => {
                // fits when the high half is the low half's sign
                self.f.get(a.len);
                self.f.get(a.v);
                self.f.i64c(63);
                self.f.i(I::I64ShrS);
                self.f.i(I::I64Ne);
                self.overflow_if();
                self.f.get(a.v);
                self.f.set(out.v);
            }
            Cast::Rescale128(k) => {
                let m = pow10(k)?;
                let h = self.helper(Helper::Mul128);
                self.push_val(a);
                self.f.i64c(m as i64);
                self.f.i64c((m >> 64) as i64);
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::Unscale128(k) => self.unscale128(k, a, out),
            Cast::CheckDigits128(p) => {
                if p < 38 {
                    outside(&mut self.f, a.v, a.len, pow10(p)? - 1);
                    self.overflow_if();
                }
                self.f.get(a.v);
                self.f.set(out.v);
                self.f.get(a.len);
                self.f.set(out.len);
            }
            Cast::I128ToF64(k) => {
                // the magnitude's high * 2^64 + low, signed, then / 10^k (the
                // magnitude, so that a small negative value stays exact)
                let (lo, hi) = (self.f.scratch(ValType::I64), self.f.scratch(ValType::I64));
                let neg = self.f.scratch(ValType::I32);
                self.f.get(a.v);
                self.f.set(lo);
                self.f.get(a.len);
                self.f.set(hi);
                self.f.get(hi);
                self.f.i64c(0);
                self.f.i(I::I64LtS);
                self.f.set(neg);
                self.f.get(neg);
                self.f.if_();
                neg128(&mut self.f, lo, hi);
                self.f.end();
                self.f.get(hi);
                self.f.i(I::F64ConvertI64U);
                self.f.i(I::F64Const(18_446_744_073_709_551_616.0.into()));
                self.f.i(I::F64Mul);
                self.f.get(lo);
                self.f.i(I::F64ConvertI64U);
                self.f.i(I::F64Add);
                self.f.set(out.v);
                self.f.get(out.v);
                self.f.i(I::F64Neg);
                self.f.get(out.v);
                self.f.get(neg);
                self.f.i(I::Select);
                if k > 0 {
                    self.f.i(I::F64Const((pow10(k)? as f64).into()));
                    self.f.i(I::F64Div);
                }
                self.f.set(out.v);
            }
            Cast::Dec128ToStr(k) => {
                let h = self.helper(Helper::FmtDec128);
                self.push_val(a);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            Cast::StrToDec128(k) => {
                let h = self.helper(Helper::ParseDec128);
                self.push_val(a);
                self.f.i32c(i32::from(k));
                self.f.i(I::Call(h));
                self.f.set(out.len);
                self.f.set(out.v);
            }
            _ => return Err(EmitError::Plan(format!("{c:?} is not a wide conversion"))),
        }
        Ok(())
    }
    /// `out = a / 10^k`, rounded half away from zero: the magnitude divided
    /// by 10^(k-1) in steps of at most 10^9, then by 10, the last digit
    /// dropped deciding the rounding.
    fn unscale128(&mut self, k: u8, a: &Val, out: &Val) {
        // the magnitude divided by 10^(k-1) in steps of at most 10^9,
        // then by 10: the last digit dropped decides the rounding
        let h = self.helper(Helper::DivSmall);
        let neg = self.f.scratch(ValType::I32);
        let digit = self.f.scratch(ValType::I64);
        self.f.get(a.v);
        self.f.set(out.v);
        self.f.get(a.len);
        self.f.set(out.len);
        if k > 0 {
            self.f.get(out.len);
            self.f.i64c(0);
            self.f.i(I::I64LtS);
            self.f.set(neg);
            self.f.get(neg);
            self.f.if_();
            neg128(&mut self.f, out.v, out.len);
            self.f.end();
            let mut left = k - 1;
            while left > 0 {
                let step = left.min(9);
                left -= step;
                self.f.get(out.v);
                self.f.get(out.len);
                self.f.i64c(10i64.pow(u32::from(step)));
                self.f.i(I::Call(h));
                self.f.i(I::Drop);
                self.f.set(out.len);
                self.f.set(out.v);
            }
            self.f.get(out.v);
            self.f.get(out.len);
            self.f.i64c(10);
            self.f.i(I::Call(h));
            self.f.set(digit);
            self.f.set(out.len);
            self.f.set(out.v);
            self.f.get(digit);
            self.f.i64c(5);
            self.f.i(I::I64GeU);
            self.f.if_();
            // + 1 (the quotient is far below 2^127)
            self.f.get(out.v);
            self.f.i64c(1);
            self.f.i(I::I64Add);
            self.f.set(out.v);
            self.f.get(out.len);
            self.f.get(out.v);
            self.f.i(I::I64Eqz);
            self.f.i(I::I64ExtendI32U);
            self.f.i(I::I64Add);
            self.f.set(out.len);
            self.f.end();
            self.f.get(neg);
            self.f.if_();
            neg128(&mut self.f, out.v, out.len);
            self.f.end();
        }
    }
}
