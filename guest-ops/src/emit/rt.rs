//! Runtime helpers every module may need, written as WebAssembly functions: the
//! allocators, string comparison and hashing, LIKE, the string functions and the
//! calendar. Each is emitted at most once per module, when first asked for.

use super::fb::{Fb, mem};
use super::{FAIL_FN, G_HEAP, G_TEMP, Gen, TEMP_BYTES};
use crate::abi::ErrorCode;
use wasm_encoder::{BlockType, Instruction as I, ValType};

/// A helper function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Helper {
    /// `(size i32) -> ptr i32`: permanent allocation, 8-byte aligned.
    Alloc,
    /// `(size i32) -> ptr i32`: allocation that lives until the next scan batch.
    TAlloc,
    /// `(p1 l1 p2 l2) -> i32` 1 if equal.
    StrEq,
    /// `(p1 l1 p2 l2) -> i32` -1, 0 or 1 (bytewise).
    StrCmp,
    /// `(p l) -> i64` hash of bytes.
    Hash,
    /// `(sp sl pp pl esc) -> i32` LIKE.
    Like,
    /// `(p l) -> p'` ASCII lower case copy.
    Lower,
    /// `(p l) -> p'` ASCII upper case copy.
    Upper,
    /// `(p l) -> i32` characters.
    CharLen,
    /// `(p l start:i64 count:i64 has_count:i32) -> (p' l')` a view.
    Substr,
    /// `(np nl hp hl) -> i32` 1-based character position, 0 if absent.
    Position,
    /// `(p1 l1 p2 l2) -> p'` concatenation (length l1 + l2).
    Concat,
    /// `(p l cp cl mode) -> (p' l')` trim (mode bit 1: leading, bit 2: trailing).
    Trim,
    /// `(days i32) -> (y m d)`.
    Civil,
    /// `(y m d) -> days i32`.
    Days,
    /// `(v i64, scale i32) -> (p l)` decimal text.
    FmtDec,
    /// `(p l scale i32) -> i64` parse decimal text (fails on bad input).
    ParseDec,
    /// `(validity n) -> i32` 1 if bits 0..n of a validity bitmap are all set.
    AllValid,
    /// `(days i32, micros_of_day i64, with_time i32) -> (p l)`: `YYYY-MM-DD`, and
    /// with time ` HH:MM:SS[.f]` (fraction without trailing zeros).
    FmtDateTime,
    /// `(p l with_time i32) -> i64`: `YYYY-MM-DD` (days), or with time
    /// `YYYY-MM-DD[ |T]HH:MM[:SS[.ffffff]]` (microseconds); fails with InvalidCast.
    ParseDateTime,
}

impl Helper {
    pub(crate) fn sig(self) -> (Vec<ValType>, Vec<ValType>) {
        use ValType::{I32, I64};
        match self {
            Self::Alloc | Self::TAlloc => (vec![I32], vec![I32]),
            Self::StrEq | Self::StrCmp | Self::Position => (vec![I32; 4], vec![I32]),
            Self::Concat => (vec![I32; 4], vec![I32]),
            Self::Hash => (vec![I32, I32], vec![I64]),
            Self::Like => (vec![I32; 5], vec![I32]),
            Self::Lower | Self::Upper | Self::CharLen => (vec![I32, I32], vec![I32]),
            Self::Substr => (vec![I32, I32, I64, I64, I32], vec![I32, I32]),
            Self::Trim => (vec![I32; 5], vec![I32, I32]),
            Self::Civil => (vec![I32], vec![I32, I32, I32]),
            Self::Days => (vec![I32, I32, I32], vec![I32]),
            Self::FmtDec => (vec![I64, I32], vec![I32, I32]),
            Self::ParseDec => (vec![I32, I32, I32], vec![I64]),
            Self::AllValid => (vec![I32, I32], vec![I32]),
            Self::FmtDateTime => (vec![I32, I64, I32], vec![I32, I32]),
            Self::ParseDateTime => (vec![I32, I32, I32], vec![I64]),
        }
    }
}

/// Emits `fail(code, ptr, len)` with the text in locals `ptr` and `len` (the value
/// that could not be read) as the detail, at most 64 bytes of it.
pub(crate) fn fail_text(f: &mut Fb, code: ErrorCode, ptr: u32, len: u32) {
    f.i32c(code as i32);
    f.get(ptr);
    f.i32c(64);
    f.get(len);
    f.get(len);
    f.i32c(64);
    f.i(I::I32GtU);
    f.i(I::Select);
    f.i(I::Call(FAIL_FN));
    f.i(I::Unreachable);
}

/// Emits `fail(code, 0, 0)`; the host never returns from it, `unreachable` follows.
pub(crate) fn fail(f: &mut Fb, code: ErrorCode) {
    f.i32c(code as i32);
    f.i32c(0);
    f.i32c(0);
    f.i(I::Call(FAIL_FN));
    f.i(I::Unreachable);
}

fn load8(f: &mut Fb) {
    f.i(I::I32Load8U(mem(0, 0)));
}

impl Gen {
    pub(crate) fn body(&mut self, h: Helper) -> Fb {
        match h {
            Helper::Alloc => self.h_alloc(),
            Helper::TAlloc => self.h_talloc(),
            Helper::StrEq => self.h_streq(),
            Helper::StrCmp => self.h_strcmp(),
            Helper::Hash => h_hash(),
            Helper::Like => h_like(),
            Helper::Lower => self.h_case(true),
            Helper::Upper => self.h_case(false),
            Helper::CharLen => h_charlen(),
            Helper::Substr => h_substr(),
            Helper::Position => self.h_position(),
            Helper::Concat => self.h_concat(),
            Helper::Trim => h_trim(),
            Helper::Civil => h_civil(),
            Helper::Days => h_days(),
            Helper::FmtDec => self.h_fmtdec(),
            Helper::ParseDec => h_parsedec(),
            Helper::AllValid => h_allvalid(),
            Helper::FmtDateTime => self.h_fmt_datetime(),
            Helper::ParseDateTime => self.h_parse_datetime(),
        }
    }

    fn h_alloc(&mut self) -> Fb {
        // params: size(0); locals: top(1) new(2)
        let mut f = Fb::new(1);
        let top = f.local(ValType::I32);
        let new = f.local(ValType::I32);
        f.i(I::GlobalGet(G_HEAP));
        f.set(top);
        // new = top + ((size + 7) & ~7), checked against 4 GiB wrap
        f.get(0);
        f.i32c(0);
        f.i(I::I32LtS);
        f.if_();
        fail(&mut f, ErrorCode::OutOfMemory);
        f.end();
        f.get(top);
        f.i(I::I64ExtendI32U);
        f.get(0);
        f.i(I::I64ExtendI32U);
        f.i64c(7);
        f.i(I::I64Add);
        f.i64c(-8);
        f.i(I::I64And);
        f.i(I::I64Add);
        f.i(I::I64Const(0xFFFF_0000));
        f.i(I::I64GtU);
        f.if_();
        fail(&mut f, ErrorCode::OutOfMemory);
        f.end();
        f.get(top);
        f.get(0);
        f.i32c(7);
        f.i(I::I32Add);
        f.i32c(-8);
        f.i(I::I32And);
        f.i(I::I32Add);
        f.set(new);
        // grow while new > memory.size * 64 KiB
        f.get(new);
        f.i(I::MemorySize(0));
        f.i32c(16);
        f.i(I::I32Shl);
        f.i(I::I32GtU);
        f.if_();
        f.get(new);
        f.i(I::MemorySize(0));
        f.i32c(16);
        f.i(I::I32Shl);
        f.i(I::I32Sub);
        f.i32c(0xFFFF);
        f.i(I::I32Add);
        f.i32c(16);
        f.i(I::I32ShrU);
        // grow at least 16 pages at a time to keep calls rare
        f.i32c(16);
        f.i(I::I32Add);
        f.i(I::MemoryGrow(0));
        f.i32c(-1);
        f.i(I::I32Eq);
        f.if_();
        fail(&mut f, ErrorCode::OutOfMemory);
        f.end();
        f.end();
        f.get(new);
        f.i(I::GlobalSet(G_HEAP));
        f.get(top);
        f
    }

    fn h_talloc(&mut self) -> Fb {
        let alloc = self.helper(Helper::Alloc);
        let end = self.temp_base + TEMP_BYTES;
        let mut f = Fb::new(1);
        let top = f.local(ValType::I32);
        f.i(I::GlobalGet(G_TEMP));
        f.set(top);
        // fits: 0 <= size <= end - top
        f.get(0);
        f.i32c(0);
        f.i(I::I32GeS);
        f.get(0);
        f.i32c(end as i32);
        f.get(top);
        f.i(I::I32Sub);
        f.i(I::I32LeU);
        f.i(I::I32And);
        f.i(I::If(BlockType::Result(ValType::I32)));
        f.get(top);
        f.get(0);
        f.i32c(7);
        f.i(I::I32Add);
        f.i32c(-8);
        f.i(I::I32And);
        f.i(I::I32Add);
        f.i(I::GlobalSet(G_TEMP));
        f.get(top);
        f.i(I::Else);
        f.get(0);
        f.i(I::Call(alloc));
        f.i(I::End);
        f
    }

    fn h_streq(&mut self) -> Fb {
        // (p1 l1 p2 l2): lengths differ -> 0; else compare bytes
        let mut f = Fb::new(4);
        let i = f.local(ValType::I32);
        f.get(1);
        f.get(3);
        f.i(I::I32Ne);
        f.if_();
        f.i32c(0);
        f.i(I::Return);
        f.end();
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(done);
        f.get(0);
        f.get(i);
        f.i(I::I32Add);
        load8(&mut f);
        f.get(2);
        f.get(i);
        f.i(I::I32Add);
        load8(&mut f);
        f.i(I::I32Ne);
        f.if_();
        f.i32c(0);
        f.i(I::Return);
        f.end();
        f.inc(i);
        f.br(lp);
        f.end();
        f.end();
        f.i32c(1);
        f
    }

    fn h_strcmp(&mut self) -> Fb {
        let mut f = Fb::new(4);
        let i = f.local(ValType::I32);
        let n = f.local(ValType::I32);
        let a = f.local(ValType::I32);
        let b = f.local(ValType::I32);
        // n = min(l1, l2)
        f.get(1);
        f.get(3);
        f.get(1);
        f.get(3);
        f.i(I::I32LtU);
        f.i(I::Select);
        f.set(n);
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(n);
        f.i(I::I32GeU);
        f.br_if(done);
        f.get(0);
        f.get(i);
        f.i(I::I32Add);
        load8(&mut f);
        f.set(a);
        f.get(2);
        f.get(i);
        f.i(I::I32Add);
        load8(&mut f);
        f.set(b);
        f.get(a);
        f.get(b);
        f.i(I::I32Ne);
        f.if_();
        f.get(a);
        f.get(b);
        f.i(I::I32GtU);
        f.get(a);
        f.get(b);
        f.i(I::I32LtU);
        f.i(I::I32Sub);
        f.i(I::Return);
        f.end();
        f.inc(i);
        f.br(lp);
        f.end();
        f.end();
        f.get(1);
        f.get(3);
        f.i(I::I32GtU);
        f.get(1);
        f.get(3);
        f.i(I::I32LtU);
        f.i(I::I32Sub);
        f
    }

    fn h_case(&mut self, lower: bool) -> Fb {
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(2);
        let out = f.local(ValType::I32);
        let i = f.local(ValType::I32);
        let c = f.local(ValType::I32);
        f.get(1);
        f.i(I::Call(talloc));
        f.set(out);
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(done);
        f.get(0);
        f.get(i);
        f.i(I::I32Add);
        load8(&mut f);
        f.set(c);
        // c - from < 26 (unsigned) -> flip bit 0x20
        f.get(out);
        f.get(i);
        f.i(I::I32Add);
        f.get(c);
        f.get(c);
        f.i32c(if lower { 0x41 } else { 0x61 });
        f.i(I::I32Sub);
        f.i32c(26);
        f.i(I::I32LtU);
        f.i32c(5);
        f.i(I::I32Shl);
        f.i(I::I32Xor);
        f.i(I::I32Store8(mem(0, 0)));
        f.inc(i);
        f.br(lp);
        f.end();
        f.end();
        f.get(out);
        f
    }

    fn h_position(&mut self) -> Fb {
        // (np nl hp hl): naive search; result counts characters before the match.
        let streq = self.helper(Helper::StrEq);
        let charlen = self.helper(Helper::CharLen);
        let mut f = Fb::new(4);
        let i = f.local(ValType::I32);
        let found = f.block();
        let lp = f.loop_();
        // i + nl <= hl ?
        f.get(i);
        f.get(1);
        f.i(I::I32Add);
        f.get(3);
        f.i(I::I32GtU);
        f.if_();
        f.i32c(0);
        f.i(I::Return);
        f.end();
        f.get(0);
        f.get(1);
        f.get(2);
        f.get(i);
        f.i(I::I32Add);
        f.get(1);
        f.i(I::Call(streq));
        f.br_if(found);
        f.inc(i);
        f.br(lp);
        f.end();
        f.end();
        f.get(2);
        f.get(i);
        f.i(I::Call(charlen));
        f.i32c(1);
        f.i(I::I32Add);
        f
    }

    fn h_concat(&mut self) -> Fb {
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(4);
        let out = f.local(ValType::I32);
        f.get(1);
        f.get(3);
        f.i(I::I32Add);
        f.i(I::Call(talloc));
        f.set(out);
        f.get(out);
        f.get(0);
        f.get(1);
        f.i(I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
        f.get(out);
        f.get(1);
        f.i(I::I32Add);
        f.get(2);
        f.get(3);
        f.i(I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
        f.get(out);
        f
    }

    #[expect(
        clippy::too_many_lines,
        reason = "longer than 150 lines when the limit came in; split it when next changed"
    )]
    fn h_fmt_datetime(&mut self) -> Fb {
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
    fn h_parse_datetime(&mut self) -> Fb {
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

    fn h_fmtdec(&mut self) -> Fb {
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
        f
    }
}

fn h_allvalid() -> Fb {
    // (p n): whole 64-bit words, then whole bytes, then the last bits
    let mut f = Fb::new(2);
    let j = f.local(ValType::I32);
    let words = f.local(ValType::I32);
    let bytes = f.local(ValType::I32);
    f.get(1);
    f.i32c(6);
    f.i(I::I32ShrU);
    f.set(words);
    let wd = f.block();
    let wl = f.loop_();
    f.get(j);
    f.get(words);
    f.i(I::I32GeU);
    f.br_if(wd);
    f.get(0);
    f.get(j);
    f.i32c(3);
    f.i(I::I32Shl);
    f.i(I::I32Add);
    f.i(I::I64Load(mem(0, 0)));
    f.i64c(-1);
    f.i(I::I64Ne);
    f.if_();
    f.i32c(0);
    f.i(I::Return);
    f.end();
    f.inc(j);
    f.br(wl);
    f.end();
    f.end();
    // whole bytes after the words
    f.get(words);
    f.i32c(3);
    f.i(I::I32Shl);
    f.set(j);
    f.get(1);
    f.i32c(3);
    f.i(I::I32ShrU);
    f.set(bytes);
    let bd = f.block();
    let bl = f.loop_();
    f.get(j);
    f.get(bytes);
    f.i(I::I32GeU);
    f.br_if(bd);
    f.get(0);
    f.get(j);
    f.i(I::I32Add);
    load8(&mut f);
    f.i32c(0xFF);
    f.i(I::I32Ne);
    f.if_();
    f.i32c(0);
    f.i(I::Return);
    f.end();
    f.inc(j);
    f.br(bl);
    f.end();
    f.end();
    // the last bits
    f.get(1);
    f.i32c(7);
    f.i(I::I32And);
    f.if_();
    f.get(0);
    f.get(bytes);
    f.i(I::I32Add);
    load8(&mut f);
    f.i32c(1);
    f.get(1);
    f.i32c(7);
    f.i(I::I32And);
    f.i(I::I32Shl);
    f.i32c(1);
    f.i(I::I32Sub);
    f.i(I::I32And);
    f.i32c(1);
    f.get(1);
    f.i32c(7);
    f.i(I::I32And);
    f.i(I::I32Shl);
    f.i32c(1);
    f.i(I::I32Sub);
    f.i(I::I32Ne);
    f.if_();
    f.i32c(0);
    f.i(I::Return);
    f.end();
    f.end();
    f.i32c(1);
    f
}

fn h_hash() -> Fb {
    // FNV-1a over bytes, 64 bit.
    let mut f = Fb::new(2);
    let h = f.local(ValType::I64);
    let i = f.local(ValType::I32);
    f.i(I::I64Const(0xcbf2_9ce4_8422_2325_u64 as i64));
    f.set(h);
    let done = f.block();
    let lp = f.loop_();
    f.get(i);
    f.get(1);
    f.i(I::I32GeU);
    f.br_if(done);
    f.get(h);
    f.get(0);
    f.get(i);
    f.i(I::I32Add);
    load8(&mut f);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Xor);
    f.i(I::I64Const(0x0000_0100_0000_01b3));
    f.i(I::I64Mul);
    f.set(h);
    f.inc(i);
    f.br(lp);
    f.end();
    f.end();
    f.get(h);
    f
}

fn h_charlen() -> Fb {
    let mut f = Fb::new(2);
    let i = f.local(ValType::I32);
    let n = f.local(ValType::I32);
    let done = f.block();
    let lp = f.loop_();
    f.get(i);
    f.get(1);
    f.i(I::I32GeU);
    f.br_if(done);
    f.get(n);
    f.get(0);
    f.get(i);
    f.i(I::I32Add);
    load8(&mut f);
    f.i32c(0xC0);
    f.i(I::I32And);
    f.i32c(0x80);
    f.i(I::I32Ne);
    f.i(I::I32Add);
    f.set(n);
    f.inc(i);
    f.br(lp);
    f.end();
    f.end();
    f.get(n);
    f
}

/// Emits: advance byte index `i` (a local) over `chars` characters of the string at
/// (p=local 0, l=local 1), stopping at the end.
fn skip_chars(f: &mut Fb, i: u32, chars: u32) {
    let done = f.block();
    let lp = f.loop_();
    f.get(chars);
    f.i64c(0);
    f.i(I::I64LeS);
    f.get(i);
    f.get(1);
    f.i(I::I32GeU);
    f.i(I::I32Or);
    f.br_if(done);
    // i += 1; then skip continuation bytes
    f.inc(i);
    let cd = f.block();
    let cl = f.loop_();
    f.get(i);
    f.get(1);
    f.i(I::I32GeU);
    f.br_if(cd);
    f.get(0);
    f.get(i);
    f.i(I::I32Add);
    load8(f);
    f.i32c(0xC0);
    f.i(I::I32And);
    f.i32c(0x80);
    f.i(I::I32Ne);
    f.br_if(cd);
    f.inc(i);
    f.br(cl);
    f.end();
    f.end();
    f.get(chars);
    f.i64c(1);
    f.i(I::I64Sub);
    f.set(chars);
    f.br(lp);
    f.end();
    f.end();
}

fn h_substr() -> Fb {
    // SQL: characters from `start` (1-based, may be <= 0) for `count`: the window
    // [start, start + count) intersected with [1, len].
    let mut f = Fb::new(5);
    let b = f.local(ValType::I32);
    let e = f.local(ValType::I32);
    let skip = f.local(ValType::I64);
    let take = f.local(ValType::I64);
    // count < 0 -> error
    f.get(4);
    f.get(3);
    f.i64c(0);
    f.i(I::I64LtS);
    f.i(I::I32And);
    f.if_();
    fail(&mut f, ErrorCode::InvalidArgument);
    f.end();
    // skip = max(start - 1, 0)
    f.get(2);
    f.i64c(1);
    f.i(I::I64Sub);
    f.set(skip);
    f.get(skip);
    f.i64c(0);
    f.get(skip);
    f.i64c(0);
    f.i(I::I64GtS);
    f.i(I::Select);
    f.set(skip);
    // take = has_count ? max(start + count - 1 - skip, 0) : huge (saturating)
    f.get(4);
    f.if_();
    f.get(2);
    f.get(3);
    f.i(I::I64Add);
    f.i64c(1);
    f.i(I::I64Sub);
    f.get(skip);
    f.i(I::I64Sub);
    f.set(take);
    f.get(take);
    f.i64c(0);
    f.get(take);
    f.i64c(0);
    f.i(I::I64GtS);
    f.i(I::Select);
    f.set(take);
    f.else_();
    f.i64c(i64::MAX);
    f.set(take);
    f.end();
    skip_chars(&mut f, b, skip);
    f.get(b);
    f.set(e);
    skip_chars(&mut f, e, take);
    f.get(0);
    f.get(b);
    f.i(I::I32Add);
    f.get(e);
    f.get(b);
    f.i(I::I32Sub);
    f
}

fn h_trim() -> Fb {
    // (p l cp cl mode): removes bytes found in the set (cp, cl) from the ends. The
    // set is ASCII in practice; multi-byte characters are matched bytewise.
    let mut f = Fb::new(5);
    let b = f.local(ValType::I32);
    let e = f.local(ValType::I32);
    let j = f.local(ValType::I32);
    let c = f.local(ValType::I32);
    let hit = f.local(ValType::I32);
    f.get(1);
    f.set(e);
    // in_set(c) -> hit
    let in_set = |f: &mut Fb| {
        f.set_i32(hit, 0);
        f.set_i32(j, 0);
        let d = f.block();
        let l = f.loop_();
        f.get(j);
        f.get(3);
        f.i(I::I32GeU);
        f.br_if(d);
        f.get(2);
        f.get(j);
        f.i(I::I32Add);
        load8(f);
        f.get(c);
        f.i(I::I32Eq);
        f.if_();
        f.set_i32(hit, 1);
        f.br(d);
        f.end();
        f.inc(j);
        f.br(l);
        f.end();
        f.end();
    };
    f.get(4);
    f.i32c(1);
    f.i(I::I32And);
    f.if_();
    let d = f.block();
    let l = f.loop_();
    f.get(b);
    f.get(e);
    f.i(I::I32GeU);
    f.br_if(d);
    f.get(0);
    f.get(b);
    f.i(I::I32Add);
    load8(&mut f);
    f.set(c);
    in_set(&mut f);
    f.get(hit);
    f.i(I::I32Eqz);
    f.br_if(d);
    f.inc(b);
    f.br(l);
    f.end();
    f.end();
    f.end();
    f.get(4);
    f.i32c(2);
    f.i(I::I32And);
    f.if_();
    let d = f.block();
    let l = f.loop_();
    f.get(e);
    f.get(b);
    f.i(I::I32LeU);
    f.br_if(d);
    f.get(0);
    f.get(e);
    f.i(I::I32Add);
    f.i32c(1);
    f.i(I::I32Sub);
    load8(&mut f);
    f.set(c);
    in_set(&mut f);
    f.get(hit);
    f.i(I::I32Eqz);
    f.br_if(d);
    f.get(e);
    f.i32c(1);
    f.i(I::I32Sub);
    f.set(e);
    f.br(l);
    f.end();
    f.end();
    f.end();
    f.get(0);
    f.get(b);
    f.i(I::I32Add);
    f.get(e);
    f.get(b);
    f.i(I::I32Sub);
    f
}

fn h_like() -> Fb {
    // (sp sl pp pl esc): iterative matcher with one backtrack point for the last
    // '%'. '_' matches one character (a UTF-8 lead byte and its continuations);
    // other pattern bytes match themselves; `esc` (or -1) quotes the next byte.
    let mut f = Fb::new(5);
    let si = f.local(ValType::I32);
    let pi = f.local(ValType::I32);
    let star_p = f.local(ValType::I32);
    let star_s = f.local(ValType::I32);
    let pc = f.local(ValType::I32);
    let lit = f.local(ValType::I32);
    f.set_i32(star_p, -1);
    let out = f.block();
    let lp = f.loop_();
    // if si >= sl: skip trailing '%' in the pattern; match iff pi == pl
    f.get(si);
    f.get(1);
    f.i(I::I32GeU);
    f.if_();
    let d = f.block();
    let l2 = f.loop_();
    f.get(pi);
    f.get(3);
    f.i(I::I32GeU);
    f.br_if(d);
    f.get(2);
    f.get(pi);
    f.i(I::I32Add);
    load8(&mut f);
    f.i32c(37);
    f.i(I::I32Ne);
    f.br_if(d);
    f.inc(pi);
    f.br(l2);
    f.end();
    f.end();
    f.get(pi);
    f.get(3);
    f.i(I::I32Eq);
    f.i(I::Return);
    f.end();
    // matched one step? (block `step` exits with progress made)
    let mismatch = f.block();
    let step = f.block();
    f.get(pi);
    f.get(3);
    f.i(I::I32GeU);
    f.br_if(mismatch);
    f.get(2);
    f.get(pi);
    f.i(I::I32Add);
    load8(&mut f);
    f.set(pc);
    f.set_i32(lit, 0);
    // escape
    f.get(pc);
    f.get(4);
    f.i(I::I32Eq);
    f.if_();
    f.inc(pi);
    f.get(pi);
    f.get(3);
    f.i(I::I32GeU);
    f.if_();
    fail(&mut f, ErrorCode::InvalidArgument);
    f.end();
    f.get(2);
    f.get(pi);
    f.i(I::I32Add);
    load8(&mut f);
    f.set(pc);
    f.set_i32(lit, 1);
    f.end();
    // '%'
    f.get(lit);
    f.i(I::I32Eqz);
    f.get(pc);
    f.i32c(37);
    f.i(I::I32Eq);
    f.i(I::I32And);
    f.if_();
    f.inc(pi);
    f.get(pi);
    f.set(star_p);
    f.get(si);
    f.set(star_s);
    f.br(lp);
    f.end();
    // '_'
    f.get(lit);
    f.i(I::I32Eqz);
    f.get(pc);
    f.i32c(95);
    f.i(I::I32Eq);
    f.i(I::I32And);
    f.if_();
    f.inc(pi);
    // skip one character of s
    f.inc(si);
    let cd = f.block();
    let cl = f.loop_();
    f.get(si);
    f.get(1);
    f.i(I::I32GeU);
    f.br_if(cd);
    f.get(0);
    f.get(si);
    f.i(I::I32Add);
    load8(&mut f);
    f.i32c(0xC0);
    f.i(I::I32And);
    f.i32c(0x80);
    f.i(I::I32Ne);
    f.br_if(cd);
    f.inc(si);
    f.br(cl);
    f.end();
    f.end();
    f.br(step);
    f.end();
    // literal byte
    f.get(0);
    f.get(si);
    f.i(I::I32Add);
    load8(&mut f);
    f.get(pc);
    f.i(I::I32Ne);
    f.br_if(mismatch);
    f.inc(pi);
    f.inc(si);
    f.end(); // step
    f.br(lp);
    f.end(); // mismatch
    // backtrack to the last '%': it swallows one more byte of s
    f.get(star_p);
    f.i32c(0);
    f.i(I::I32LtS);
    f.br_if(out);
    f.inc(star_s);
    f.get(star_s);
    f.set(si);
    f.get(star_p);
    f.set(pi);
    f.br(lp);
    f.end(); // loop
    f.end(); // out
    f.i32c(0);
    f
}

fn h_civil() -> Fb {
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

fn h_days() -> Fb {
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

#[expect(
    clippy::too_many_lines,
    reason = "longer than 150 lines when the limit came in; split it when next changed"
)]
fn h_parsedec() -> Fb {
    // (p l scale) -> i64: [spaces][+-]digits[.digits][spaces], rounded half away
    // from zero to `scale` digits; anything else fails with InvalidCast.
    let mut f = Fb::new(3);
    let i = f.local(ValType::I32);
    let c = f.local(ValType::I32);
    let neg = f.local(ValType::I32);
    let v = f.local(ValType::I64);
    let frac = f.local(ValType::I32);
    let seen_point = f.local(ValType::I32);
    let digits = f.local(ValType::I32);
    let round = f.local(ValType::I32);
    let bad = |f: &mut Fb| fail_text(f, ErrorCode::InvalidCast, 0, 1);
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
    // v = v * 10 + digit, checked (v stays <= 0x0CCC_CCCC_CCCC_CCCC before the mul)
    f.get(v);
    f.i(I::I64Const(922_337_203_685_477_580));
    f.i(I::I64GtU);
    f.if_();
    bad(&mut f);
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
    f.get(v);
    f.i64c(0);
    f.i(I::I64LtS);
    f.if_();
    bad(&mut f);
    f.end();
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
    f.get(v);
    f.i(I::I64Const(922_337_203_685_477_580));
    f.i(I::I64GtU);
    f.if_();
    bad(&mut f);
    f.end();
    f.get(v);
    f.i64c(10);
    f.i(I::I64Mul);
    f.set(v);
    f.inc(frac);
    f.br(l);
    f.end();
    f.end();
    f.get(v);
    f.get(round);
    f.i(I::I64ExtendI32U);
    f.i(I::I64Add);
    f.set(v);
    f.get(v);
    f.i64c(0);
    f.i(I::I64LtS);
    f.if_();
    bad(&mut f);
    f.end();
    f.i64c(0);
    f.get(v);
    f.i(I::I64Sub);
    f.get(v);
    f.get(neg);
    f.i(I::Select);
    f
}
