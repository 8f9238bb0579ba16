//! Runtime helpers every module may need, written as WebAssembly functions: the
//! allocators, string comparison and hashing, LIKE, the string functions and the
//! calendar. Each is emitted at most once per module, when first asked for.
//! Here: the helper list, the allocators and hashing; `text`, `calendar` and
//! `number` hold the rest.

use super::fb::{Fb, mem};
use super::{FAIL_FN, G_HEAP, G_TEMP, Gen, TEMP_BYTES};
use crate::abi::ErrorCode;
use wasm_encoder::{BlockType, Instruction as I, ValType};

mod calendar;
mod number;
mod text;
mod wide;

pub(crate) use wide::{neg128, outside};

use calendar::{h_civil, h_days};
use number::h_parsedec;
use text::{h_charlen, h_like, h_substr, h_trim};

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
    /// `(p l n:i64) -> (p' l')` the string n times (none for n < 1); fails with
    /// StringTooLong beyond [`STRING_RESULT_MAX`] bytes.
    Repeat,
    /// `(p l) -> p'` the characters in reverse order (length l).
    Reverse,
    /// `(sp sl fp fl tp tl) -> (p' l')` every occurrence of the second string
    /// (left to right, not overlapping) replaced by the third; the same string
    /// when the second is empty. Fails with StringTooLong beyond
    /// [`STRING_RESULT_MAX`] bytes.
    Replace,
    /// `(sp sl dp dl n:i64) -> (p' l')` field n of the string split at the
    /// delimiter (from the end for n < 0; empty beyond the fields; an empty
    /// delimiter makes the string one field); n = 0 fails with
    /// InvalidArgument. A view into the string.
    SplitPart,
    /// `(p l) -> p'` each word's first letter upper case and the rest lower
    /// (ASCII letters; a word is a run of letters and digits, any byte from
    /// 0x80 counting as a letter), length l.
    Initcap,
    /// `(a:i64 b:i64) -> (lo hi)` the unsigned 128-bit product.
    MulWideU,
    /// `(alo ahi blo bhi) -> (lo hi)` sum checked against 38 digits.
    Add128,
    /// `(alo ahi blo bhi) -> (lo hi)` product checked against 38 digits.
    Mul128,
    /// `(alo ahi blo bhi) -> (qlo qhi rlo rhi)` truncated quotient and
    /// remainder; fails with DivisionByZero.
    DivMod128,
    /// `(alo ahi blo bhi) -> (lo hi)` quotient rounded half away from zero.
    DivRound128,
    /// `(alo ahi blo bhi k:i32) -> (lo hi)` `a * 10^k / b` rounded half away
    /// from zero, checked against 38 digits (the quotient, not `a * 10^k`).
    DivScaled128,
    /// `(lo hi d:i64) -> (qlo qhi r)` unsigned, `0 < d < 2^32`.
    DivSmall,
    /// `(lo hi scale:i32) -> (p l)` decimal text.
    FmtDec128,
    /// `(p l scale i32) -> (lo hi)` parse decimal text of up to 38 digits.
    ParseDec128,
}

/// Bytes a string function may build (a row's limit).
pub(crate) const STRING_RESULT_MAX: i32 = 4 * 1024 * 1024;

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
            Self::Repeat => (vec![I32, I32, I64], vec![I32, I32]),
            Self::Reverse | Self::Initcap => (vec![I32, I32], vec![I32]),
            Self::Replace => (vec![I32; 6], vec![I32, I32]),
            Self::SplitPart => (vec![I32, I32, I32, I32, I64], vec![I32, I32]),
            Self::MulWideU => (vec![I64, I64], vec![I64, I64]),
            Self::Add128 | Self::Mul128 | Self::DivRound128 => (vec![I64; 4], vec![I64, I64]),
            Self::DivMod128 => (vec![I64; 4], vec![I64; 4]),
            Self::DivScaled128 => (vec![I64, I64, I64, I64, I32], vec![I64, I64]),
            Self::DivSmall => (vec![I64; 3], vec![I64; 3]),
            Self::FmtDec128 => (vec![I64, I64, I32], vec![I32, I32]),
            Self::ParseDec128 => (vec![I32; 3], vec![I64, I64]),
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

/// Emits "if the i32 on the stack is not 0, `fail(code)`".
pub(crate) fn fail_if(f: &mut Fb, code: ErrorCode) {
    f.if_();
    fail(f, code);
    f.end();
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
            Helper::ParseDec => h_parsedec(false),
            Helper::ParseDec128 => h_parsedec(true),
            Helper::AllValid => h_allvalid(),
            Helper::FmtDateTime => self.h_fmt_datetime(),
            Helper::ParseDateTime => self.h_parse_datetime(),
            Helper::Repeat => self.h_repeat(),
            Helper::Reverse => self.h_reverse(),
            Helper::Replace => self.h_replace(),
            Helper::SplitPart => self.h_split_part(),
            Helper::Initcap => self.h_initcap(),
            Helper::MulWideU => Self::h_mulwu(),
            Helper::Add128 => Self::h_add128(),
            Helper::Mul128 => self.h_mul128(),
            Helper::DivMod128 => Self::h_divmod128(),
            Helper::DivRound128 => self.h_divround128(),
            Helper::DivScaled128 => self.h_divscaled128(),
            Helper::DivSmall => Self::h_divsmall(),
            Helper::FmtDec128 => self.h_fmtdec128(),
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
