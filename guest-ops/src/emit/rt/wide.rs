//! 128-bit integer helpers: the arithmetic of DECIMAL values of 19 to 38
//! digits, held as two `i64` (low, high). WebAssembly has no 128-bit
//! integers (the wide-arithmetic proposal is not a stable Wasmtime feature),
//! so products go through 32-bit halves and quotients through long division.
//! Every result is checked to stay within 38 digits, as PostgreSQL's
//! NUMERIC(38) would be.

use super::*;

const M32: i64 = 0xFFFF_FFFF;

/// The largest magnitude of a wide DECIMAL: 10^38 - 1.
pub(super) const WIDE_MAX: i128 = 10i128.pow(38) - 1;

/// Negates the 128-bit value in locals `lo`, `hi` in place.
pub(crate) fn neg128(f: &mut Fb, lo: u32, hi: u32) {
    // hi' = -hi - (lo != 0); lo' = -lo
    f.i64c(0);
    f.get(hi);
    f.i(I::I64Sub);
    f.get(lo);
    f.i64c(0);
    f.i(I::I64Ne);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Sub);
    f.set(hi);
    f.i64c(0);
    f.get(lo);
    f.i(I::I64Sub);
    f.set(lo);
}

/// Pushes 1 if the signed 128-bit value in `lo`, `hi` lies outside
/// `-bound..=bound`.
pub(crate) fn outside(f: &mut Fb, lo: u32, hi: u32, bound: i128) {
    let (blo, bhi) = (bound as i64, (bound >> 64) as i64);
    let n = -bound;
    let (nlo, nhi) = (n as i64, (n >> 64) as i64);
    // above: hi > bhi, or hi == bhi and lo > blo (unsigned)
    f.get(hi);
    f.i64c(bhi);
    f.i(I::I64GtS);
    f.get(hi);
    f.i64c(bhi);
    f.i(I::I64Eq);
    f.get(lo);
    f.i64c(blo);
    f.i(I::I64GtU);
    f.i(I::I32And);
    f.i(I::I32Or);
    // below: hi < nhi, or hi == nhi and lo < nlo (unsigned)
    f.get(hi);
    f.i64c(nhi);
    f.i(I::I64LtS);
    f.get(hi);
    f.i64c(nhi);
    f.i(I::I64Eq);
    f.get(lo);
    f.i64c(nlo);
    f.i(I::I64LtU);
    f.i(I::I32And);
    f.i(I::I32Or);
    f.i(I::I32Or);
}

/// Fails with Overflow if the value in `lo`, `hi` has more than 38 digits.
fn check38(f: &mut Fb, lo: u32, hi: u32) {
    outside(f, lo, hi, WIDE_MAX);
    fail_if(f, ErrorCode::Overflow);
}

/// Pushes the magnitude in `lo`, `hi`, checked against 38 digits, negated
/// when the i32 local `neg` is set.
fn signed_result(f: &mut Fb, lo: u32, hi: u32, neg: u32) {
    check38(f, lo, hi);
    f.get(neg);
    f.if_();
    neg128(f, lo, hi);
    f.end();
    f.get(lo);
    f.get(hi);
}

/// Makes `lo`, `hi` its magnitude; pushes nothing. `neg` (an i32 local) is
/// set to whether it was negative.
fn abs128(f: &mut Fb, lo: u32, hi: u32, neg: u32) {
    f.get(hi);
    f.i64c(0);
    f.i(I::I64LtS);
    f.set(neg);
    f.get(neg);
    f.if_();
    neg128(f, lo, hi);
    f.end();
}

/// A division's operands (locals `alo, ahi, blo, bhi`): fails on a zero
/// divisor, sets `qneg` to whether the quotient is negative and `aneg`,
/// `bneg` to each operand's sign, and makes both operands their magnitudes.
fn operands(
    f: &mut Fb,
    (alo, ahi, blo, bhi): (u32, u32, u32, u32),
    qneg: u32,
    aneg: u32,
    bneg: u32,
) {
    f.get(blo);
    f.get(bhi);
    f.i(I::I64Or);
    f.i(I::I64Eqz);
    fail_if(f, ErrorCode::DivisionByZero);
    f.get(ahi);
    f.get(bhi);
    f.i(I::I64Xor);
    f.i64c(0);
    f.i(I::I64LtS);
    f.set(qneg);
    abs128(f, alo, ahi, aneg);
    abs128(f, blo, bhi, bneg);
}

/// Pushes 1 if unsigned (alo, ahi) >= (blo, bhi).
fn uge128(f: &mut Fb, alo: u32, ahi: u32, blo: u32, bhi: u32) {
    f.get(ahi);
    f.get(bhi);
    f.i(I::I64GtU);
    f.get(ahi);
    f.get(bhi);
    f.i(I::I64Eq);
    f.get(alo);
    f.get(blo);
    f.i(I::I64GeU);
    f.i(I::I32And);
    f.i(I::I32Or);
}

/// (alo, ahi) -= (blo, bhi), unsigned, no borrow out expected.
fn sub128(f: &mut Fb, alo: u32, ahi: u32, blo: u32, bhi: u32) {
    f.get(ahi);
    f.get(bhi);
    f.i(I::I64Sub);
    f.get(alo);
    f.get(blo);
    f.i(I::I64LtU);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Sub);
    f.set(ahi);
    f.get(alo);
    f.get(blo);
    f.i(I::I64Sub);
    f.set(alo);
}

/// (lo, hi) <<= 1, pushing nothing; the bit shifted out is lost.
fn shl1(f: &mut Fb, lo: u32, hi: u32) {
    f.get(hi);
    f.i64c(1);
    f.i(I::I64Shl);
    f.get(lo);
    f.i64c(63);
    f.i(I::I64ShrU);
    f.i(I::I64Or);
    f.set(hi);
    f.get(lo);
    f.i64c(1);
    f.i(I::I64Shl);
    f.set(lo);
}

/// (lo, hi) = (lo, hi) * 10, unsigned, using `tlo`, `thi` as scratch; the
/// caller makes sure it cannot overflow.
pub(super) fn mul10(f: &mut Fb, lo: u32, hi: u32, tlo: u32, thi: u32) {
    f.get(lo);
    f.set(tlo);
    f.get(hi);
    f.set(thi);
    shl1(f, tlo, thi);
    shl1(f, lo, hi);
    shl1(f, lo, hi);
    shl1(f, lo, hi);
    add_u128(f, lo, hi, tlo, thi);
}

/// (alo, ahi) += (blo, bhi), unsigned, wrapping.
pub(super) fn add_u128(f: &mut Fb, alo: u32, ahi: u32, blo: u32, bhi: u32) {
    f.get(alo);
    f.get(blo);
    f.i(I::I64Add);
    f.set(alo);
    f.get(ahi);
    f.get(bhi);
    f.i(I::I64Add);
    f.get(alo);
    f.get(blo);
    f.i(I::I64LtU);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Add);
    f.set(ahi);
}

impl Gen {
    /// `(alo ahi blo bhi k:i32) -> (lo hi)`: `a * 10^k / b` rounded half away
    /// from zero, without forming `a * 10^k` (which may pass 38 digits when
    /// the quotient does not): the integer quotient, then one decimal digit of
    /// the remainder at a time, then the rounding digit.
    pub(super) fn h_divscaled128(&mut self) -> Fb {
        let divmod = self.helper(Helper::DivMod128);
        let mut f = Fb::new(5);
        let (alo, ahi, blo, bhi, k) = (0, 1, 2, 3, 4);
        let neg = f.local(ValType::I32);
        let n = f.local(ValType::I32);
        let d = f.local(ValType::I64);
        let [qlo, qhi, rlo, rhi, tlo, thi] = [(); 6].map(|()| f.local(ValType::I64));
        operands(&mut f, (alo, ahi, blo, bhi), neg, n, n);
        // a remainder below b is multiplied by 10: b must stay below 2^128 / 10
        f.get(bhi);
        f.i64c(0x1999_9999_9999_9999);
        f.i(I::I64GeU);
        fail_if(&mut f, ErrorCode::Overflow);
        f.get(alo);
        f.get(ahi);
        f.get(blo);
        f.get(bhi);
        f.i(I::Call(divmod));
        f.set(rhi);
        f.set(rlo);
        f.set(qhi);
        f.set(qlo);
        // k digits, then one more that rounds
        f.get(k);
        f.i32c(1);
        f.i(I::I32Add);
        f.set(n);
        let done = f.block();
        let lp = f.loop_();
        f.get(n);
        f.i(I::I32Eqz);
        f.br_if(done);
        mul10(&mut f, rlo, rhi, tlo, thi);
        f.i64c(0);
        f.set(d);
        let sub_done = f.block();
        let sub = f.loop_();
        uge128(&mut f, rlo, rhi, blo, bhi);
        f.i(I::I32Eqz);
        f.br_if(sub_done);
        sub128(&mut f, rlo, rhi, blo, bhi);
        f.get(d);
        f.i64c(1);
        f.i(I::I64Add);
        f.set(d);
        f.br(sub);
        f.end();
        f.end();
        f.get(n);
        f.i32c(1);
        f.i(I::I32Eq);
        f.if_();
        // the rounding digit
        f.get(d);
        f.i64c(5);
        f.i(I::I64GeU);
        f.if_();
        f.i64c(1);
        f.set(tlo);
        f.i64c(0);
        f.set(thi);
        add_u128(&mut f, qlo, qhi, tlo, thi);
        f.end();
        f.else_();
        // q = q * 10 + d, within 38 digits
        outside(&mut f, qlo, qhi, WIDE_MAX / 10);
        fail_if(&mut f, ErrorCode::Overflow);
        mul10(&mut f, qlo, qhi, tlo, thi);
        f.get(d);
        f.set(tlo);
        f.i64c(0);
        f.set(thi);
        add_u128(&mut f, qlo, qhi, tlo, thi);
        f.end();
        f.get(n);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(n);
        f.br(lp);
        f.end();
        f.end();
        signed_result(&mut f, qlo, qhi, neg);
        f
    }

    /// `(a b) -> (lo hi)`: the unsigned 128-bit product of two u64.
    pub(super) fn h_mulwu() -> Fb {
        let mut f = Fb::new(2);
        let [a0, a1, b0, b1, ll, lh, hl, mid] = [(); 8].map(|()| f.local(ValType::I64));
        for (x, l, h) in [(0, a0, a1), (1, b0, b1)] {
            f.get(x);
            f.i64c(M32);
            f.i(I::I64And);
            f.set(l);
            f.get(x);
            f.i64c(32);
            f.i(I::I64ShrU);
            f.set(h);
        }
        for (x, y, out) in [(a0, b0, ll), (a0, b1, lh), (a1, b0, hl)] {
            f.get(x);
            f.get(y);
            f.i(I::I64Mul);
            f.set(out);
        }
        // mid = (ll >> 32) + (lh & M) + (hl & M)
        f.get(ll);
        f.i64c(32);
        f.i(I::I64ShrU);
        f.get(lh);
        f.i64c(M32);
        f.i(I::I64And);
        f.i(I::I64Add);
        f.get(hl);
        f.i64c(M32);
        f.i(I::I64And);
        f.i(I::I64Add);
        f.set(mid);
        // lo = (ll & M) | (mid << 32)
        f.get(ll);
        f.i64c(M32);
        f.i(I::I64And);
        f.get(mid);
        f.i64c(32);
        f.i(I::I64Shl);
        f.i(I::I64Or);
        // hi = a1*b1 + (lh >> 32) + (hl >> 32) + (mid >> 32)
        f.get(a1);
        f.get(b1);
        f.i(I::I64Mul);
        for x in [lh, hl, mid] {
            f.get(x);
            f.i64c(32);
            f.i(I::I64ShrU);
            f.i(I::I64Add);
        }
        f
    }

    /// `(alo ahi blo bhi) -> (lo hi)`: the sum, checked against 38 digits.
    pub(super) fn h_add128() -> Fb {
        let mut f = Fb::new(4);
        let (alo, ahi, blo, bhi) = (0, 1, 2, 3);
        let lo = f.local(ValType::I64);
        let hi = f.local(ValType::I64);
        f.get(alo);
        f.get(blo);
        f.i(I::I64Add);
        f.set(lo);
        f.get(ahi);
        f.get(bhi);
        f.i(I::I64Add);
        f.get(lo);
        f.get(alo);
        f.i(I::I64LtU);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Add);
        f.set(hi);
        // signed overflow of the high word
        f.get(ahi);
        f.get(hi);
        f.i(I::I64Xor);
        f.get(bhi);
        f.get(hi);
        f.i(I::I64Xor);
        f.i(I::I64And);
        f.i64c(0);
        f.i(I::I64LtS);
        fail_if(&mut f, ErrorCode::Overflow);
        check38(&mut f, lo, hi);
        f.get(lo);
        f.get(hi);
        f
    }

    /// `(alo ahi blo bhi) -> (lo hi)`: the product, checked against 38 digits.
    pub(super) fn h_mul128(&mut self) -> Fb {
        let mulwu = self.helper(Helper::MulWideU);
        let mut f = Fb::new(4);
        let (alo, ahi, blo, bhi) = (0, 1, 2, 3);
        let neg = f.local(ValType::I32);
        let na = f.local(ValType::I32);
        let t = f.local(ValType::I64);
        let [plo, phi, qlo, qhi] = [(); 4].map(|()| f.local(ValType::I64));
        f.get(ahi);
        f.get(bhi);
        f.i(I::I64Xor);
        f.i64c(0);
        f.i(I::I64LtS);
        f.set(neg);
        abs128(&mut f, alo, ahi, na);
        abs128(&mut f, blo, bhi, na);
        // both above 64 bits: at least 2^128
        f.get(ahi);
        f.i64c(0);
        f.i(I::I64Ne);
        f.get(bhi);
        f.i64c(0);
        f.i(I::I64Ne);
        f.i(I::I32And);
        fail_if(&mut f, ErrorCode::Overflow);
        // make a the one within 64 bits
        f.get(ahi);
        f.i64c(0);
        f.i(I::I64Ne);
        f.if_();
        for (x, y) in [(alo, blo), (ahi, bhi)] {
            f.get(x);
            f.set(t);
            f.get(y);
            f.set(x);
            f.get(t);
            f.set(y);
        }
        f.end();
        // a * b = alo*blo + (alo*bhi) << 64
        f.get(alo);
        f.get(blo);
        f.i(I::Call(mulwu));
        f.set(phi);
        f.set(plo);
        f.get(alo);
        f.get(bhi);
        f.i(I::Call(mulwu));
        f.set(qhi);
        f.set(qlo);
        f.get(qhi);
        f.i64c(0);
        f.i(I::I64Ne);
        fail_if(&mut f, ErrorCode::Overflow);
        f.get(phi);
        f.get(qlo);
        f.i(I::I64Add);
        f.set(t);
        f.get(t);
        f.get(phi);
        f.i(I::I64LtU);
        fail_if(&mut f, ErrorCode::Overflow);
        // the magnitude as a signed value: beyond 2^127 it reads negative
        f.get(t);
        f.i64c(0);
        f.i(I::I64LtS);
        fail_if(&mut f, ErrorCode::Overflow);
        signed_result(&mut f, plo, t, neg);
        f
    }

    /// `(alo ahi blo bhi) -> (qlo qhi rlo rhi)`: quotient truncated toward
    /// zero and remainder with the dividend's sign; fails on a zero divisor.
    pub(super) fn h_divmod128() -> Fb {
        let mut f = Fb::new(4);
        let (alo, ahi, blo, bhi) = (0, 1, 2, 3);
        let qneg = f.local(ValType::I32);
        let rneg = f.local(ValType::I32);
        let i = f.local(ValType::I32);
        let [qlo, qhi, rlo, rhi] = [(); 4].map(|()| f.local(ValType::I64));
        operands(&mut f, (alo, ahi, blo, bhi), qneg, rneg, i);
        f.get(ahi);
        f.get(bhi);
        f.i(I::I64Or);
        f.i(I::I64Eqz);
        f.if_();
        // both within 64 bits
        f.get(alo);
        f.get(blo);
        f.i(I::I64DivU);
        f.set(qlo);
        f.get(alo);
        f.get(blo);
        f.i(I::I64RemU);
        f.set(rlo);
        f.else_();
        // long division, one bit at a time
        f.set_i32(i, 128);
        let lp = f.loop_();
        shl1(&mut f, rlo, rhi);
        f.get(rlo);
        f.get(ahi);
        f.i64c(63);
        f.i(I::I64ShrU);
        f.i(I::I64Or);
        f.set(rlo);
        shl1(&mut f, alo, ahi);
        shl1(&mut f, qlo, qhi);
        uge128(&mut f, rlo, rhi, blo, bhi);
        f.if_();
        sub128(&mut f, rlo, rhi, blo, bhi);
        f.get(qlo);
        f.i64c(1);
        f.i(I::I64Or);
        f.set(qlo);
        f.end();
        f.get(i);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(i);
        f.get(i);
        f.br_if(lp);
        f.end();
        f.end();
        f.get(qneg);
        f.if_();
        neg128(&mut f, qlo, qhi);
        f.end();
        f.get(rneg);
        f.if_();
        neg128(&mut f, rlo, rhi);
        f.end();
        f.get(qlo);
        f.get(qhi);
        f.get(rlo);
        f.get(rhi);
        f
    }

    /// `(alo ahi blo bhi) -> (lo hi)`: the quotient rounded half away from
    /// zero (DECIMAL division), checked against 38 digits.
    pub(super) fn h_divround128(&mut self) -> Fb {
        let divmod = self.helper(Helper::DivMod128);
        let mut f = Fb::new(4);
        let (alo, ahi, blo, bhi) = (0, 1, 2, 3);
        let [qlo, qhi, rlo, rhi] = [(); 4].map(|()| f.local(ValType::I64));
        let n = f.local(ValType::I32);
        let qneg = f.local(ValType::I32);
        f.get(ahi);
        f.get(bhi);
        f.i(I::I64Xor);
        f.i64c(0);
        f.i(I::I64LtS);
        f.set(qneg);
        f.get(alo);
        f.get(ahi);
        f.get(blo);
        f.get(bhi);
        f.i(I::Call(divmod));
        f.set(rhi);
        f.set(rlo);
        f.set(qhi);
        f.set(qlo);
        // |r| >= |b| - |r|: one more unit away from zero
        abs128(&mut f, rlo, rhi, n);
        abs128(&mut f, blo, bhi, n);
        sub128(&mut f, blo, bhi, rlo, rhi);
        uge128(&mut f, rlo, rhi, blo, bhi);
        f.if_();
        f.get(qneg);
        f.if_();
        // q - 1
        f.get(qhi);
        f.get(qlo);
        f.i64c(0);
        f.i(I::I64Eq);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Sub);
        f.set(qhi);
        f.get(qlo);
        f.i64c(1);
        f.i(I::I64Sub);
        f.set(qlo);
        f.else_();
        // q + 1
        f.get(qlo);
        f.i64c(1);
        f.i(I::I64Add);
        f.set(qlo);
        f.get(qhi);
        f.get(qlo);
        f.i64c(0);
        f.i(I::I64Eq);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Add);
        f.set(qhi);
        f.end();
        f.end();
        check38(&mut f, qlo, qhi);
        f.get(qlo);
        f.get(qhi);
        f
    }

    /// `(lo hi d) -> (qlo qhi r)`: an unsigned 128-bit value divided by
    /// `0 < d < 2^32`, by 32-bit limbs.
    pub(super) fn h_divsmall() -> Fb {
        let mut f = Fb::new(3);
        let (lo, hi, d) = (0, 1, 2);
        let r = f.local(ValType::I64);
        let cur = f.local(ValType::I64);
        let [q3, q2, q1, q0] = [(); 4].map(|()| f.local(ValType::I64));
        let limbs: [(u32, bool, u32); 4] = [
            (hi, true, q3),
            (hi, false, q2),
            (lo, true, q1),
            (lo, false, q0),
        ];
        f.i64c(0);
        f.set(r);
        for (src, upper, q) in limbs {
            // cur = (r << 32) | limb
            f.get(r);
            f.i64c(32);
            f.i(I::I64Shl);
            f.get(src);
            if upper {
                f.i64c(32);
                f.i(I::I64ShrU);
            } else {
                f.i64c(M32);
                f.i(I::I64And);
            }
            f.i(I::I64Or);
            f.set(cur);
            f.get(cur);
            f.get(d);
            f.i(I::I64DivU);
            f.set(q);
            f.get(cur);
            f.get(d);
            f.i(I::I64RemU);
            f.set(r);
        }
        f.get(q1);
        f.i64c(32);
        f.i(I::I64Shl);
        f.get(q0);
        f.i(I::I64Or);
        f.get(q3);
        f.i64c(32);
        f.i(I::I64Shl);
        f.get(q2);
        f.i(I::I64Or);
        f.get(r);
        f
    }

    /// `(lo hi scale i32) -> (p l)`: decimal text of a wide DECIMAL, as
    /// [`Helper::FmtDec`] writes a narrow one.
    pub(super) fn h_fmtdec128(&mut self) -> Fb {
        let talloc = self.helper(Helper::TAlloc);
        let divsmall = self.helper(Helper::DivSmall);
        let mut f = Fb::new(3);
        let (lo, hi, scale) = (0, 1, 2);
        let buf = f.local(ValType::I32);
        let pos = f.local(ValType::I32);
        let neg = f.local(ValType::I32);
        let k = f.local(ValType::I32);
        let digit = f.local(ValType::I64);
        f.i32c(48);
        f.i(I::Call(talloc));
        f.set(buf);
        f.get(buf);
        f.i32c(48);
        f.i(I::I32Add);
        f.set(pos);
        abs128(&mut f, lo, hi, neg);
        let _whole = f.block();
        let lp = f.loop_();
        f.get(lo);
        f.get(hi);
        f.i64c(10);
        f.i(I::Call(divsmall));
        f.set(digit);
        f.set(hi);
        f.set(lo);
        f.get(pos);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(pos);
        f.get(pos);
        f.get(digit);
        f.i(I::I32WrapI64);
        f.i32c(48);
        f.i(I::I32Add);
        f.i(I::I32Store8(mem(0, 0)));
        f.inc(k);
        // the point after `scale` digits
        f.get(k);
        f.get(scale);
        f.i(I::I32Eq);
        f.get(scale);
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
        // continue while the rest is not zero or k <= scale
        f.get(lo);
        f.get(hi);
        f.i(I::I64Or);
        f.i64c(0);
        f.i(I::I64Ne);
        f.get(k);
        f.get(scale);
        f.i(I::I32LeS);
        f.i(I::I32Or);
        f.br_if(lp);
        f.end();
        f.end();
        super::number::sign_and_span(&mut f, neg, pos, buf);
        f
    }
}
