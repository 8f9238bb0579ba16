//! Calendar helpers: DATE and TIMESTAMP to text and back, and the civil-date
//! arithmetic under them.

use super::*;

impl Gen {
    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub(super) fn h_fmt_datetime(&mut self) -> Fb {
        // (days, micros of day, with_time) -> (p l), written left to right into 48
        // bytes: the year as Rust's {:04} does (sign counted in the width)
        let talloc = self.helper(Helper::TAlloc);
        let civil = self.helper(Helper::Civil);
        let mut f = Fb::new(3);
        let buf = f.local(ValType::I32);
        let pos = f.local(ValType::I32);
        let y = f.local(ValType::I32);
        let m = f.local(ValType::I32);
        let d = f.local(ValType::I32);
        let u = f.local(ValType::I32);
        let n = f.local(ValType::I32);
        let t = f.local(ValType::I32);
        let frac = f.local(ValType::I32);
        f.i32c(48);
        f.i(I::Call(talloc));
        f.set(buf);
        f.get(buf);
        f.set(pos);
        f.get(0);
        f.i(I::Call(civil));
        f.set(d);
        f.set(m);
        f.set(y);
        let put = |f: &mut Fb, byte: i32| {
            f.get(pos);
            f.i32c(byte);
            f.i(I::I32Store8(mem(0, 0)));
            f.inc(pos);
        };
        // two digits of local `v` (0..99)
        let two = |f: &mut Fb, v: u32| {
            f.get(pos);
            f.get(v);
            f.i32c(10);
            f.i(I::I32DivU);
            f.i32c(48);
            f.i(I::I32Add);
            f.i(I::I32Store8(mem(0, 0)));
            f.get(pos);
            f.get(v);
            f.i32c(10);
            f.i(I::I32RemU);
            f.i32c(48);
            f.i(I::I32Add);
            f.i(I::I32Store8(mem(1, 0)));
            f.get(pos);
            f.i32c(2);
            f.i(I::I32Add);
            f.set(pos);
        };
        // the decimal digits of local `v` (consumed), right to left, from address
        // `n` down to `pos` (the caller sets `n` to `pos` + the digit count)
        let digits_rtl = |f: &mut Fb, v: u32| {
            let done = f.block();
            let l = f.loop_();
            f.get(n);
            f.i32c(1);
            f.i(I::I32Sub);
            f.set(n);
            f.get(n);
            f.get(v);
            f.i32c(10);
            f.i(I::I32RemU);
            f.i32c(48);
            f.i(I::I32Add);
            f.i(I::I32Store8(mem(0, 0)));
            f.get(v);
            f.i32c(10);
            f.i(I::I32DivU);
            f.set(v);
            f.get(n);
            f.get(pos);
            f.i(I::I32Eq);
            f.br_if(done);
            f.br(l);
            f.end();
            f.end();
        };
        // year: sign, zero padding to a width of 4, digits
        f.set_i32(n, 4);
        f.get(y);
        f.i32c(0);
        f.i(I::I32LtS);
        f.if_();
        put(&mut f, i32::from(b'-'));
        f.set_i32(n, 3);
        f.i32c(0);
        f.get(y);
        f.i(I::I32Sub);
        f.set(y);
        f.end();
        // t = number of digits of y
        f.set_i32(t, 1);
        f.get(y);
        f.set(u);
        let dl = f.block();
        let l = f.loop_();
        f.get(u);
        f.i32c(10);
        f.i(I::I32LtU);
        f.br_if(dl);
        f.get(u);
        f.i32c(10);
        f.i(I::I32DivU);
        f.set(u);
        f.inc(t);
        f.br(l);
        f.end();
        f.end();
        // zero padding while n > t
        let pd = f.block();
        let pl = f.loop_();
        f.get(n);
        f.get(t);
        f.i(I::I32LeS);
        f.br_if(pd);
        put(&mut f, i32::from(b'0'));
        f.get(n);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(n);
        f.br(pl);
        f.end();
        f.end();
        // digits right to left into pos + t - 1 .. pos
        f.get(pos);
        f.get(t);
        f.i(I::I32Add);
        f.set(n);
        digits_rtl(&mut f, y);
        f.get(pos);
        f.get(t);
        f.i(I::I32Add);
        f.set(pos);
        put(&mut f, i32::from(b'-'));
        two(&mut f, m);
        put(&mut f, i32::from(b'-'));
        two(&mut f, d);
        f.get(2);
        f.if_();
        // seconds of the day into u, the fraction into frac
        f.get(1);
        f.i64c(1_000_000);
        f.i(I::I64DivU);
        f.i(I::I32WrapI64);
        f.set(u);
        f.get(1);
        f.i64c(1_000_000);
        f.i(I::I64RemU);
        f.i(I::I32WrapI64);
        f.set(frac);
        put(&mut f, i32::from(b' '));
        f.get(u);
        f.i32c(3600);
        f.i(I::I32DivU);
        f.set(t);
        two(&mut f, t);
        put(&mut f, i32::from(b':'));
        f.get(u);
        f.i32c(60);
        f.i(I::I32DivU);
        f.i32c(60);
        f.i(I::I32RemU);
        f.set(t);
        two(&mut f, t);
        put(&mut f, i32::from(b':'));
        f.get(u);
        f.i32c(60);
        f.i(I::I32RemU);
        f.set(t);
        two(&mut f, t);
        f.get(frac);
        f.if_();
        put(&mut f, i32::from(b'.'));
        // six digits, right to left, then drop trailing zeros
        f.get(pos);
        f.i32c(6);
        f.i(I::I32Add);
        f.set(n);
        f.get(frac);
        f.set(u);
        digits_rtl(&mut f, u);
        f.get(pos);
        f.i32c(6);
        f.i(I::I32Add);
        f.set(pos);
        let zd = f.block();
        let zl = f.loop_();
        f.get(pos);
        f.i32c(1);
        f.i(I::I32Sub);
        load8(&mut f);
        f.i32c(i32::from(b'0'));
        f.i(I::I32Ne);
        f.br_if(zd);
        f.get(pos);
        f.i32c(1);
        f.i(I::I32Sub);
        f.set(pos);
        f.br(zl);
        f.end();
        f.end();
        f.end();
        f.end();
        f.get(buf);
        f.get(pos);
        f.get(buf);
        f.i(I::I32Sub);
        f
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    pub(super) fn h_parse_datetime(&mut self) -> Fb {
        // (p l with_time) -> i64. The grammar of the literal parser:
        // [spaces] digits '-' digits '-' digits, then with time: [' ' | 'T']
        // [spaces] digits ':' digits [':' digits ['.' 1 to 6 digits]] [spaces].
        // The date must exist (checked by a round trip through the calendar).
        let civil = self.helper(Helper::Civil);
        let days = self.helper(Helper::Days);
        let mut f = Fb::new(3);
        let i = f.local(ValType::I32);
        let c = f.local(ValType::I32);
        let v = f.local(ValType::I64);
        let k = f.local(ValType::I32);
        let y = f.local(ValType::I32);
        let m = f.local(ValType::I32);
        let d = f.local(ValType::I32);
        let dn = f.local(ValType::I32);
        let micros = f.local(ValType::I64);
        let h = f.local(ValType::I64);
        let bad = |f: &mut Fb| fail_text(f, ErrorCode::InvalidCast, 0, 1);
        // c = byte at i, or -1 past the end (never read)
        let peek = |f: &mut Fb| {
            f.set_i32(c, -1);
            f.get(i);
            f.get(1);
            f.i(I::I32LtU);
            f.if_();
            f.get(0);
            f.get(i);
            f.i(I::I32Add);
            load8(f);
            f.set(c);
            f.end();
        };
        let skip_spaces = |f: &mut Fb| {
            let dn = f.block();
            let l = f.loop_();
            peek(f);
            f.get(c);
            f.i32c(32);
            f.i(I::I32Ne);
            f.br_if(dn);
            f.inc(i);
            f.br(l);
            f.end();
            f.end();
        };
        // v = 1 to `max` digits at i (fails on none); k = how many
        let digits = |f: &mut Fb, max: i32| {
            f.i64c(0);
            f.set(v);
            f.set_i32(k, 0);
            let dn = f.block();
            let l = f.loop_();
            peek(f);
            f.get(c);
            f.i32c(48);
            f.i(I::I32Sub);
            f.i32c(10);
            f.i(I::I32GeU);
            f.br_if(dn);
            f.get(k);
            f.i32c(max);
            f.i(I::I32GeU);
            f.if_();
            fail_text(f, ErrorCode::InvalidCast, 0, 1);
            f.end();
            f.get(v);
            f.i64c(10);
            f.i(I::I64Mul);
            f.get(c);
            f.i32c(48);
            f.i(I::I32Sub);
            f.i(I::I64ExtendI32U);
            f.i(I::I64Add);
            f.set(v);
            f.inc(k);
            f.inc(i);
            f.br(l);
            f.end();
            f.end();
            f.get(k);
            f.i(I::I32Eqz);
            f.if_();
            fail_text(f, ErrorCode::InvalidCast, 0, 1);
            f.end();
        };
        let expect = |f: &mut Fb, byte: u8| {
            peek(f);
            f.get(c);
            f.i32c(i32::from(byte));
            f.i(I::I32Ne);
            f.if_();
            fail_text(f, ErrorCode::InvalidCast, 0, 1);
            f.end();
            f.inc(i);
        };
        f.set_i32(i, 0);
        skip_spaces(&mut f);
        // years up to 7 digits keep the day number inside i32
        digits(&mut f, 7);
        f.get(v);
        f.i(I::I32WrapI64);
        f.set(y);
        f.get(y);
        f.i32c(5_000_000);
        f.i(I::I32GtU);
        f.if_();
        bad(&mut f);
        f.end();
        expect(&mut f, b'-');
        digits(&mut f, 2);
        f.get(v);
        f.i(I::I32WrapI64);
        f.set(m);
        expect(&mut f, b'-');
        digits(&mut f, 2);
        f.get(v);
        f.i(I::I32WrapI64);
        f.set(d);
        // the day exists: 1 <= m <= 12, d >= 1, and the calendar round trip agrees
        f.get(m);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i32c(12);
        f.i(I::I32GeU);
        f.get(d);
        f.i(I::I32Eqz);
        f.i(I::I32Or);
        f.if_();
        bad(&mut f);
        f.end();
        f.get(y);
        f.get(m);
        f.get(d);
        f.i(I::Call(days));
        f.set(dn);
        f.get(dn);
        f.i(I::Call(civil));
        f.get(d);
        f.i(I::I32Ne);
        f.set(k);
        f.get(m);
        f.i(I::I32Ne);
        f.get(k);
        f.i(I::I32Or);
        f.set(k);
        f.get(y);
        f.i(I::I32Ne);
        f.get(k);
        f.i(I::I32Or);
        f.if_();
        bad(&mut f);
        f.end();
        f.i64c(0);
        f.set(micros);
        f.get(2);
        f.if_();
        {
            peek(&mut f);
            // a time follows a space or a T
            f.get(c);
            f.i32c(32);
            f.i(I::I32Eq);
            f.get(c);
            f.i32c(i32::from(b'T'));
            f.i(I::I32Eq);
            f.i(I::I32Or);
            f.if_();
            f.inc(i);
            skip_spaces(&mut f);
            peek(&mut f);
            f.get(c);
            f.i32c(-1);
            f.i(I::I32Ne);
            f.if_();
            digits(&mut f, 2);
            f.get(v);
            f.set(h);
            expect(&mut f, b':');
            digits(&mut f, 2);
            // micros = (h * 60 + min) * 60 s
            f.get(h);
            f.i64c(24);
            f.i(I::I64GeU);
            f.get(v);
            f.i64c(60);
            f.i(I::I64GeU);
            f.i(I::I32Or);
            f.if_();
            bad(&mut f);
            f.end();
            f.get(h);
            f.i64c(60);
            f.i(I::I64Mul);
            f.get(v);
            f.i(I::I64Add);
            f.i64c(60_000_000);
            f.i(I::I64Mul);
            f.set(micros);
            peek(&mut f);
            f.get(c);
            f.i32c(i32::from(b':'));
            f.i(I::I32Eq);
            f.if_();
            f.inc(i);
            digits(&mut f, 2);
            f.get(v);
            f.i64c(60);
            f.i(I::I64GeU);
            f.if_();
            bad(&mut f);
            f.end();
            f.get(micros);
            f.get(v);
            f.i64c(1_000_000);
            f.i(I::I64Mul);
            f.i(I::I64Add);
            f.set(micros);
            peek(&mut f);
            f.get(c);
            f.i32c(i32::from(b'.'));
            f.i(I::I32Eq);
            f.if_();
            f.inc(i);
            digits(&mut f, 6);
            // scale the fraction to six digits
            let sd = f.block();
            let sl = f.loop_();
            f.get(k);
            f.i32c(6);
            f.i(I::I32GeU);
            f.br_if(sd);
            f.get(v);
            f.i64c(10);
            f.i(I::I64Mul);
            f.set(v);
            f.inc(k);
            f.br(sl);
            f.end();
            f.end();
            f.get(micros);
            f.get(v);
            f.i(I::I64Add);
            f.set(micros);
            f.end();
            f.end();
            f.end();
            f.end();
        }
        f.end();
        // only spaces may remain
        skip_spaces(&mut f);
        f.get(i);
        f.get(1);
        f.i(I::I32LtU);
        f.if_();
        bad(&mut f);
        f.end();
        f.get(2);
        f.if_();
        // days * 86400e6 + micros must fit an i64
        f.get(dn);
        f.i32c(106_751_991);
        f.i(I::I32GtS);
        f.get(dn);
        f.i32c(-106_751_991);
        f.i(I::I32LtS);
        f.i(I::I32Or);
        f.if_();
        bad(&mut f);
        f.end();
        f.get(dn);
        f.i(I::I64ExtendI32S);
        f.i64c(86_400_000_000);
        f.i(I::I64Mul);
        f.get(micros);
        f.i(I::I64Add);
        f.set(h);
        f.else_();
        f.get(dn);
        f.i(I::I64ExtendI32S);
        f.set(h);
        f.end();
        f.get(h);
        f
    }
}

pub(super) fn h_civil() -> Fb {
    // days since 1970-01-01 -> (y m d), Howard Hinnant's civil_from_days.
    let mut f = Fb::new(1);
    let z = f.local(ValType::I64);
    let era = f.local(ValType::I64);
    let doe = f.local(ValType::I64);
    let yoe = f.local(ValType::I64);
    let doy = f.local(ValType::I64);
    let mp = f.local(ValType::I64);
    let m = f.local(ValType::I64);
    let y = f.local(ValType::I64);
    f.get(0);
    f.i(I::I64ExtendI32S);
    f.i64c(719_468);
    f.i(I::I64Add);
    f.set(z);
    // era = floor(z / 146097)
    f.get(z);
    f.get(z);
    f.i64c(0);
    f.i(I::I64LtS);
    f.i(I::I64ExtendI32U);
    f.i64c(146_096);
    f.i(I::I64Mul);
    f.i(I::I64Sub);
    f.i64c(146_097);
    f.i(I::I64DivS);
    f.set(era);
    f.get(z);
    f.get(era);
    f.i64c(146_097);
    f.i(I::I64Mul);
    f.i(I::I64Sub);
    f.set(doe);
    // yoe = (doe - doe/1460 + doe/36524 - doe/146096) / 365
    f.get(doe);
    f.get(doe);
    f.i64c(1460);
    f.i(I::I64DivS);
    f.i(I::I64Sub);
    f.get(doe);
    f.i64c(36_524);
    f.i(I::I64DivS);
    f.i(I::I64Add);
    f.get(doe);
    f.i64c(146_096);
    f.i(I::I64DivS);
    f.i(I::I64Sub);
    f.i64c(365);
    f.i(I::I64DivS);
    f.set(yoe);
    // doy = doe - (365*yoe + yoe/4 - yoe/100)
    f.get(doe);
    f.get(yoe);
    f.i64c(365);
    f.i(I::I64Mul);
    f.get(yoe);
    f.i64c(4);
    f.i(I::I64DivS);
    f.i(I::I64Add);
    f.get(yoe);
    f.i64c(100);
    f.i(I::I64DivS);
    f.i(I::I64Sub);
    f.i(I::I64Sub);
    f.set(doy);
    // mp = (5*doy + 2)/153
    f.get(doy);
    f.i64c(5);
    f.i(I::I64Mul);
    f.i64c(2);
    f.i(I::I64Add);
    f.i64c(153);
    f.i(I::I64DivS);
    f.set(mp);
    // m = mp < 10 ? mp + 3 : mp - 9
    f.get(mp);
    f.i64c(3);
    f.i(I::I64Add);
    f.get(mp);
    f.i64c(9);
    f.i(I::I64Sub);
    f.get(mp);
    f.i64c(10);
    f.i(I::I64LtS);
    f.i(I::Select);
    f.set(m);
    // y = yoe + era*400 + (m <= 2)
    f.get(yoe);
    f.get(era);
    f.i64c(400);
    f.i(I::I64Mul);
    f.i(I::I64Add);
    f.get(m);
    f.i64c(2);
    f.i(I::I64LeS);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Add);
    f.set(y);
    f.get(y);
    f.i(I::I32WrapI64);
    f.get(m);
    f.i(I::I32WrapI64);
    // d = doy - (153*mp + 2)/5 + 1
    f.get(doy);
    f.get(mp);
    f.i64c(153);
    f.i(I::I64Mul);
    f.i64c(2);
    f.i(I::I64Add);
    f.i64c(5);
    f.i(I::I64DivS);
    f.i(I::I64Sub);
    f.i64c(1);
    f.i(I::I64Add);
    f.i(I::I32WrapI64);
    f
}

pub(super) fn h_days() -> Fb {
    // (y m d) -> days since 1970-01-01, days_from_civil.
    let mut f = Fb::new(3);
    let y = f.local(ValType::I64);
    let era = f.local(ValType::I64);
    let yoe = f.local(ValType::I64);
    let mp = f.local(ValType::I64);
    let doy = f.local(ValType::I64);
    f.get(0);
    f.i(I::I64ExtendI32S);
    f.get(1);
    f.i32c(2);
    f.i(I::I32LeS);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Sub);
    f.set(y);
    f.get(y);
    f.get(y);
    f.i64c(0);
    f.i(I::I64LtS);
    f.i(I::I64ExtendI32U);
    f.i64c(399);
    f.i(I::I64Mul);
    f.i(I::I64Sub);
    f.i64c(400);
    f.i(I::I64DivS);
    f.set(era);
    f.get(y);
    f.get(era);
    f.i64c(400);
    f.i(I::I64Mul);
    f.i(I::I64Sub);
    f.set(yoe);
    // mp = m > 2 ? m - 3 : m + 9
    f.get(1);
    f.i32c(3);
    f.i(I::I32Sub);
    f.get(1);
    f.i32c(9);
    f.i(I::I32Add);
    f.get(1);
    f.i32c(2);
    f.i(I::I32GtS);
    f.i(I::Select);
    f.i(I::I64ExtendI32S);
    f.set(mp);
    f.get(mp);
    f.i64c(153);
    f.i(I::I64Mul);
    f.i64c(2);
    f.i(I::I64Add);
    f.i64c(5);
    f.i(I::I64DivS);
    f.get(2);
    f.i(I::I64ExtendI32S);
    f.i(I::I64Add);
    f.i64c(1);
    f.i(I::I64Sub);
    f.set(doy);
    // era*146097 + yoe*365 + yoe/4 - yoe/100 + doy - 719468
    f.get(era);
    f.i64c(146_097);
    f.i(I::I64Mul);
    f.get(yoe);
    f.i64c(365);
    f.i(I::I64Mul);
    f.i(I::I64Add);
    f.get(yoe);
    f.i64c(4);
    f.i(I::I64DivS);
    f.i(I::I64Add);
    f.get(yoe);
    f.i64c(100);
    f.i(I::I64DivS);
    f.i(I::I64Sub);
    f.get(doy);
    f.i(I::I64Add);
    f.i64c(719_468);
    f.i(I::I64Sub);
    f.i(I::I32WrapI64);
    f
}
