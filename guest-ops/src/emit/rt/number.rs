//! Number helpers: DECIMAL to text and text to DECIMAL.

use super::*;

impl Gen {
    pub(super) fn h_fmtdec(&mut self) -> Fb {
        // (v i64, scale i32) -> (p l): digits written right to left into 48 bytes.
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(2);
        let buf = f.local(ValType::I32);
        let pos = f.local(ValType::I32);
        let neg = f.local(ValType::I32);
        let u = f.local(ValType::I64);
        let k = f.local(ValType::I32);
        f.i32c(48);
        f.i(I::Call(talloc));
        f.set(buf);
        f.get(buf);
        f.i32c(48);
        f.i(I::I32Add);
        f.set(pos);
        f.get(0);
        f.i64c(0);
        f.i(I::I64LtS);
        f.set(neg);
        // u = |v| as unsigned (i64::MIN stays 2^63 as unsigned)
        f.i64c(0);
        f.get(0);
        f.i(I::I64Sub);
        f.get(0);
        f.get(neg);
        f.i(I::Select);
        f.set(u);
        let _whole = f.block();
        let lp = f.loop_();
        // emit a digit
        f.get(pos);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(pos);
        f.get(pos);
        f.get(u);
        f.i64c(10);
        f.i(I::I64RemU);
        f.i(I::I32WrapI64);
        f.i32c(48);
        f.i(I::I32Add);
        f.i(I::I32Store8(mem(0, 0)));
        f.get(u);
        f.i64c(10);
        f.i(I::I64DivU);
        f.set(u);
        f.inc(k);
        // the point after `scale` digits
        f.get(k);
        f.get(1);
        f.i(I::I32Eq);
        f.get(1);
        f.i32c(0);
        f.i(I::I32GtS);
        f.i(I::I32And);
        f.if_();
        f.get(pos);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(pos);
        f.get(pos);
        f.i32c(46);
        f.i(I::I32Store8(mem(0, 0)));
        f.end();
        // continue while u > 0 or k <= scale
        f.get(u);
        f.i64c(0);
        f.i(I::I64Ne);
        f.get(k);
        f.get(1);
        f.i(I::I32LeS);
        f.i(I::I32Or);
        f.br_if(lp);
        f.end();
        f.end();
        sign_and_span(&mut f, neg, pos, buf);
        f
    }
}

/// Ends a number written right to left into the 48 bytes at `buf` down to
/// `pos`: a '-' before it when `neg`, then pushes its pointer and length.
pub(super) fn sign_and_span(f: &mut Fb, neg: u32, pos: u32, buf: u32) {
    f.get(neg);
    f.if_();
    f.get(pos);
    f.i32c(1);
    f.i(I::I32Sub);
    f.set(pos);
    f.get(pos);
    f.i32c(45);
    f.i(I::I32Store8(mem(0, 0)));
    f.end();
    f.get(pos);
    f.get(buf);
    f.i32c(48);
    f.i(I::I32Add);
    f.get(pos);
    f.i(I::I32Sub);
}

#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
pub(super) fn h_parsedec(wide: bool) -> Fb {
    // (p l scale) -> i64 (wide: -> (lo hi)): [spaces][+-]digits[.digits][spaces],
    // rounded half away from zero to `scale` digits; anything else, or a
    // value beyond 18 (wide: 38) digits, fails with InvalidCast.
    let mut f = Fb::new(3);
    let i = f.local(ValType::I32);
    let c = f.local(ValType::I32);
    let neg = f.local(ValType::I32);
    let v = f.local(ValType::I64);
    // the high half of a wide value, and scratch for it
    let vhi = f.local(ValType::I64);
    let (tlo, thi) = (f.local(ValType::I64), f.local(ValType::I64));
    let frac = f.local(ValType::I32);
    let seen_point = f.local(ValType::I32);
    let digits = f.local(ValType::I32);
    let round = f.local(ValType::I32);
    let bad = |f: &mut Fb| fail_text(f, ErrorCode::InvalidCast, 0, 1);
    // v *= 10, checked: narrow, v stays <= 0x0CCC_CCCC_CCCC_CCCC before the
    // multiplication; wide, within 38 digits after it
    let times10 = |f: &mut Fb| {
        if wide {
            super::wide::outside(f, v, vhi, super::wide::WIDE_MAX / 10);
        } else {
            f.get(v);
            f.i(I::I64Const(922_337_203_685_477_580));
            f.i(I::I64GtU);
        }
        f.if_();
        bad(f);
        f.end();
        if wide {
            super::wide::mul10(f, v, vhi, tlo, thi);
        } else {
            f.get(v);
            f.i64c(10);
            f.i(I::I64Mul);
            f.set(v);
        }
    };
    // v += the i64 on the stack (0..=9), checked
    let plus = |f: &mut Fb| {
        if wide {
            f.set(tlo);
            f.i64c(0);
            f.set(thi);
            super::wide::add_u128(f, v, vhi, tlo, thi);
            super::wide::outside(f, v, vhi, super::wide::WIDE_MAX);
        } else {
            f.get(v);
            f.i(I::I64Add);
            f.set(v);
            f.get(v);
            f.i64c(0);
            f.i(I::I64LtS);
        }
        f.if_();
        bad(f);
        f.end();
    };
    let peek = |f: &mut Fb| {
        f.get(0);
        f.get(i);
        f.i(I::I32Add);
        load8(f);
        f.set(c);
    };
    let inc = |f: &mut Fb| {
        f.inc(i);
    };
    let skip_spaces = |f: &mut Fb| {
        let d = f.block();
        let l = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(d);
        peek(f);
        f.get(c);
        f.i32c(32);
        f.i(I::I32Ne);
        f.br_if(d);
        inc(f);
        f.br(l);
        f.end();
        f.end();
    };
    skip_spaces(&mut f);
    f.get(i);
    f.get(1);
    f.i(I::I32LtU);
    f.if_();
    peek(&mut f);
    f.get(c);
    f.i32c(45);
    f.i(I::I32Eq);
    f.get(c);
    f.i32c(43);
    f.i(I::I32Eq);
    f.i(I::I32Or);
    f.if_();
    f.get(c);
    f.i32c(45);
    f.i(I::I32Eq);
    f.set(neg);
    inc(&mut f);
    f.end();
    f.end();
    let d = f.block();
    let l = f.loop_();
    f.get(i);
    f.get(1);
    f.i(I::I32GeU);
    f.br_if(d);
    peek(&mut f);
    f.get(c);
    f.i32c(46);
    f.i(I::I32Eq);
    f.get(seen_point);
    f.i(I::I32Eqz);
    f.i(I::I32And);
    f.if_();
    f.set_i32(seen_point, 1);
    inc(&mut f);
    f.br(l);
    f.end();
    f.get(c);
    f.i32c(48);
    f.i(I::I32Sub);
    f.i32c(10);
    f.i(I::I32GeU);
    f.br_if(d);
    f.inc(digits);
    // a fractional digit beyond the scale only decides rounding
    f.get(seen_point);
    f.get(frac);
    f.get(2);
    f.i(I::I32GeS);
    f.i(I::I32And);
    f.if_();
    f.get(frac);
    f.get(2);
    f.i(I::I32Eq);
    f.if_();
    f.get(c);
    f.i32c(53);
    f.i(I::I32GeU);
    f.set(round);
    f.end();
    f.inc(frac);
    inc(&mut f);
    f.br(l);
    f.end();
    // v = v * 10 + digit, checked
    times10(&mut f);
    f.get(c);
    f.i32c(48);
    f.i(I::I32Sub);
    f.i(I::I64ExtendI32U);
    plus(&mut f);
    f.get(seen_point);
    f.if_();
    f.inc(frac);
    f.end();
    inc(&mut f);
    f.br(l);
    f.end();
    f.end();
    skip_spaces(&mut f);
    // the whole input consumed and at least one digit
    f.get(i);
    f.get(1);
    f.i(I::I32Ne);
    f.get(digits);
    f.i(I::I32Eqz);
    f.i(I::I32Or);
    f.if_();
    bad(&mut f);
    f.end();
    // scale up the missing fractional digits
    let d = f.block();
    let l = f.loop_();
    f.get(frac);
    f.get(2);
    f.i(I::I32GeS);
    f.br_if(d);
    times10(&mut f);
    f.inc(frac);
    f.br(l);
    f.end();
    f.end();
    f.get(round);
    f.i(I::I64ExtendI32U);
    plus(&mut f);
    if wide {
        f.get(neg);
        f.if_();
        super::wide::neg128(&mut f, v, vhi);
        f.end();
        f.get(v);
        f.get(vhi);
    } else {
        f.i64c(0);
        f.get(v);
        f.i(I::I64Sub);
        f.get(v);
        f.get(neg);
        f.i(I::Select);
    }
    f
}
