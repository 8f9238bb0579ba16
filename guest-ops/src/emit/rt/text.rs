//! String helpers: equality, ordering, case, POSITION, concatenation, length,
//! SUBSTRING, TRIM and LIKE.

use super::*;

impl Gen {
    pub(super) fn h_streq(&mut self) -> Fb {
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

    pub(super) fn h_strcmp(&mut self) -> Fb {
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

    pub(super) fn h_case(&mut self, lower: bool) -> Fb {
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

    pub(super) fn h_position(&mut self) -> Fb {
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

    pub(super) fn h_concat(&mut self) -> Fb {
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
}

pub(super) fn h_charlen() -> Fb {
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

pub(super) fn h_substr() -> Fb {
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

pub(super) fn h_trim() -> Fb {
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

pub(super) fn h_like() -> Fb {
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

/// Emits: `fail(StringTooLong)` when the i64 on the stack is above
/// [`STRING_RESULT_MAX`].
fn too_long_if(f: &mut Fb) {
    f.i64c(i64::from(STRING_RESULT_MAX));
    f.i(I::I64GtS);
    f.if_();
    fail(f, ErrorCode::StringTooLong);
    f.end();
}

impl Gen {
    pub(super) fn h_repeat(&mut self) -> Fb {
        // (p l n): n copies, one after another
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(3);
        let out = f.local(ValType::I32);
        let k = f.local(ValType::I64);
        let at = f.local(ValType::I32);
        // n < 1 or an empty string: empty
        f.get(2);
        f.i64c(1);
        f.i(I::I64LtS);
        f.get(1);
        f.i(I::I32Eqz);
        f.i(I::I32Or);
        f.if_();
        f.get(0);
        f.i32c(0);
        f.i(I::Return);
        f.end();
        // l * n within the limit (n at most the limit, so no overflow)
        f.get(2);
        too_long_if(&mut f);
        f.get(1);
        f.i(I::I64ExtendI32U);
        f.get(2);
        f.i(I::I64Mul);
        too_long_if(&mut f);
        f.get(1);
        f.get(2);
        f.i(I::I32WrapI64);
        f.i(I::I32Mul);
        f.i(I::Call(talloc));
        f.set(out);
        f.get(out);
        f.set(at);
        f.get(2);
        f.set(k);
        let done = f.block();
        let lp = f.loop_();
        f.get(k);
        f.i64c(0);
        f.i(I::I64LeS);
        f.br_if(done);
        f.get(at);
        f.get(0);
        f.get(1);
        f.i(I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
        f.get(at);
        f.get(1);
        f.i(I::I32Add);
        f.set(at);
        f.get(k);
        f.i64c(1);
        f.i(I::I64Sub);
        f.set(k);
        f.br(lp);
        f.end();
        f.end();
        f.get(out);
        f.get(1);
        f.get(2);
        f.i(I::I32WrapI64);
        f.i(I::I32Mul);
        f
    }

    pub(super) fn h_reverse(&mut self) -> Fb {
        // (p l): each character's bytes, in order, at the mirrored position
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(2);
        let out = f.local(ValType::I32);
        let i = f.local(ValType::I32);
        let j = f.local(ValType::I32);
        f.get(1);
        f.i(I::Call(talloc));
        f.set(out);
        f.i32c(0);
        f.set(i);
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(done);
        // j: the end of the character starting at i
        f.get(i);
        f.i32c(1);
        f.i(I::I32Add);
        f.set(j);
        let cd = f.block();
        let cl = f.loop_();
        f.get(j);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(cd);
        f.get(0);
        f.get(j);
        f.i(I::I32Add);
        load8(&mut f);
        f.i32c(0xC0);
        f.i(I::I32And);
        f.i32c(0x80);
        f.i(I::I32Ne);
        f.br_if(cd);
        f.inc(j);
        f.br(cl);
        f.end();
        f.end();
        // out[l - j .. l - i] = p[i .. j]
        f.get(out);
        f.get(1);
        f.get(j);
        f.i(I::I32Sub);
        f.i(I::I32Add);
        f.get(0);
        f.get(i);
        f.i(I::I32Add);
        f.get(j);
        f.get(i);
        f.i(I::I32Sub);
        f.i(I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
        f.get(j);
        f.set(i);
        f.br(lp);
        f.end();
        f.end();
        f.get(out);
        f
    }

    pub(super) fn h_replace(&mut self) -> Fb {
        // (sp sl fp fl tp tl): count the matches, then build
        let talloc = self.helper(Helper::TAlloc);
        let streq = self.helper(Helper::StrEq);
        let mut f = Fb::new(6);
        let i = f.local(ValType::I32);
        let n = f.local(ValType::I32);
        let out = f.local(ValType::I32);
        let at = f.local(ValType::I32);
        let start = f.local(ValType::I32);
        let size = f.local(ValType::I64);
        // an empty search string: the string itself
        f.get(3);
        f.i(I::I32Eqz);
        f.if_();
        f.get(0);
        f.get(1);
        f.i(I::Return);
        f.end();
        // walk: at each i where the search string starts, a match (then skip it)
        let walk = |f: &mut Fb, on_match: &dyn Fn(&mut Fb), on_end: &dyn Fn(&mut Fb)| {
            f.i32c(0);
            f.set(i);
            f.i32c(0);
            f.set(start);
            let done = f.block();
            let lp = f.loop_();
            f.get(i);
            f.get(3);
            f.i(I::I32Add);
            f.get(1);
            f.i(I::I32GtU);
            f.br_if(done);
            f.get(0);
            f.get(i);
            f.i(I::I32Add);
            f.get(3);
            f.get(2);
            f.get(3);
            f.i(I::Call(streq));
            f.if_();
            on_match(f);
            f.get(i);
            f.get(3);
            f.i(I::I32Add);
            f.set(i);
            f.get(i);
            f.set(start);
            f.else_();
            f.inc(i);
            f.end();
            f.br(lp);
            f.end();
            f.end();
            on_end(f);
        };
        f.i32c(0);
        f.set(n);
        walk(&mut f, &|f| f.inc(n), &|_| {});
        // size = sl + n * (tl - fl)
        f.get(1);
        f.i(I::I64ExtendI32U);
        f.get(n);
        f.i(I::I64ExtendI32U);
        f.get(5);
        f.i(I::I64ExtendI32U);
        f.get(3);
        f.i(I::I64ExtendI32U);
        f.i(I::I64Sub);
        f.i(I::I64Mul);
        f.i(I::I64Add);
        f.set(size);
        f.get(size);
        too_long_if(&mut f);
        f.get(size);
        f.i(I::I32WrapI64);
        f.i(I::Call(talloc));
        f.set(out);
        f.get(out);
        f.set(at);
        // copy what lies before each match, then the replacement; then the rest
        let copy_gap = |f: &mut Fb, to: &dyn Fn(&mut Fb)| {
            f.get(at);
            f.get(0);
            f.get(start);
            f.i(I::I32Add);
            to(f);
            f.get(start);
            f.i(I::I32Sub);
            f.i(I::MemoryCopy {
                src_mem: 0,
                dst_mem: 0,
            });
            f.get(at);
            to(f);
            f.get(start);
            f.i(I::I32Sub);
            f.i(I::I32Add);
            f.set(at);
        };
        walk(
            &mut f,
            &|f| {
                copy_gap(f, &|f| f.get(i));
                f.get(at);
                f.get(4);
                f.get(5);
                f.i(I::MemoryCopy {
                    src_mem: 0,
                    dst_mem: 0,
                });
                f.get(at);
                f.get(5);
                f.i(I::I32Add);
                f.set(at);
            },
            &|f| copy_gap(f, &|f| f.get(1)),
        );
        f.get(out);
        f.get(size);
        f.i(I::I32WrapI64);
        f
    }

    pub(super) fn h_split_part(&mut self) -> Fb {
        // (sp sl dp dl n)
        let streq = self.helper(Helper::StrEq);
        let mut f = Fb::new(5);
        let i = f.local(ValType::I32);
        let fields = f.local(ValType::I64);
        let field = f.local(ValType::I64);
        let start = f.local(ValType::I32);
        // n = 0: an error
        f.get(4);
        f.i(I::I64Eqz);
        f.if_();
        fail(&mut f, ErrorCode::InvalidArgument);
        f.end();
        // an empty delimiter: one field
        f.get(3);
        f.i(I::I32Eqz);
        f.if_();
        f.get(4);
        f.i64c(1);
        f.i(I::I64Eq);
        f.get(4);
        f.i64c(-1);
        f.i(I::I64Eq);
        f.i(I::I32Or);
        f.if_();
        f.get(0);
        f.get(1);
        f.i(I::Return);
        f.end();
        f.get(0);
        f.i32c(0);
        f.i(I::Return);
        f.end();
        // is there a delimiter at byte i? (leaves 1 or 0)
        let at_delim = |f: &mut Fb| {
            f.get(i);
            f.get(3);
            f.i(I::I32Add);
            f.get(1);
            f.i(I::I32LeU);
            f.if_with(ValType::I32);
            f.get(0);
            f.get(i);
            f.i(I::I32Add);
            f.get(3);
            f.get(2);
            f.get(3);
            f.i(I::Call(streq));
            f.else_();
            f.i32c(0);
            f.end();
        };
        // the fields there are: delimiters + 1
        f.i64c(1);
        f.set(fields);
        f.i32c(0);
        f.set(i);
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(done);
        at_delim(&mut f);
        f.if_();
        f.get(fields);
        f.i64c(1);
        f.i(I::I64Add);
        f.set(fields);
        f.get(i);
        f.get(3);
        f.i(I::I32Add);
        f.set(i);
        f.else_();
        f.inc(i);
        f.end();
        f.br(lp);
        f.end();
        f.end();
        // from the end: field fields + n + 1
        f.get(4);
        f.i64c(0);
        f.i(I::I64LtS);
        f.if_();
        f.get(fields);
        f.get(4);
        f.i(I::I64Add);
        f.i64c(1);
        f.i(I::I64Add);
        f.set(4);
        f.end();
        f.get(4);
        f.i64c(1);
        f.i(I::I64LtS);
        f.get(4);
        f.get(fields);
        f.i(I::I64GtS);
        f.i(I::I32Or);
        f.if_();
        f.get(0);
        f.i32c(0);
        f.i(I::Return);
        f.end();
        // walk to field n: its start, then its end at the next delimiter
        f.i64c(1);
        f.set(field);
        f.i32c(0);
        f.set(i);
        f.i32c(0);
        f.set(start);
        let done = f.block();
        let lp = f.loop_();
        f.get(i);
        f.get(1);
        f.i(I::I32GeU);
        f.br_if(done);
        at_delim(&mut f);
        f.if_();
        f.get(field);
        f.get(4);
        f.i(I::I64Eq);
        f.br_if(done);
        f.get(field);
        f.i64c(1);
        f.i(I::I64Add);
        f.set(field);
        f.get(i);
        f.get(3);
        f.i(I::I32Add);
        f.set(i);
        f.get(i);
        f.set(start);
        f.else_();
        f.inc(i);
        f.end();
        f.br(lp);
        f.end();
        f.end();
        // i is the field's end (a delimiter, or the string's end)
        f.get(i);
        f.get(1);
        f.get(i);
        f.get(1);
        f.i(I::I32LtU);
        f.i(I::Select);
        f.set(i);
        f.get(0);
        f.get(start);
        f.i(I::I32Add);
        f.get(i);
        f.get(start);
        f.i(I::I32Sub);
        f
    }

    pub(super) fn h_initcap(&mut self) -> Fb {
        // (p l): a letter after a letter or digit is lowered, any other raised
        let talloc = self.helper(Helper::TAlloc);
        let mut f = Fb::new(2);
        let out = f.local(ValType::I32);
        let i = f.local(ValType::I32);
        let b = f.local(ValType::I32);
        let word = f.local(ValType::I32);
        let letter = f.local(ValType::I32);
        f.get(1);
        f.i(I::Call(talloc));
        f.set(out);
        f.i32c(0);
        f.set(word);
        f.i32c(0);
        f.set(i);
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
        f.set(b);
        // letter: (b | 0x20) in 'a'..='z'
        f.get(b);
        f.i32c(0x20);
        f.i(I::I32Or);
        f.i32c(i32::from(b'a'));
        f.i(I::I32Sub);
        f.i32c(26);
        f.i(I::I32LtU);
        f.set(letter);
        f.get(letter);
        f.if_();
        f.get(word);
        f.if_with(ValType::I32);
        f.get(b);
        f.i32c(0x20);
        f.i(I::I32Or);
        f.else_();
        f.get(b);
        f.i32c(!0x20);
        f.i(I::I32And);
        f.end();
        f.set(b);
        f.end();
        f.get(out);
        f.get(i);
        f.i(I::I32Add);
        f.get(b);
        f.i(I::I32Store8(mem(0, 0)));
        // in a word after a letter, a digit or a byte from 0x80
        f.get(letter);
        f.get(b);
        f.i32c(i32::from(b'0'));
        f.i(I::I32Sub);
        f.i32c(10);
        f.i(I::I32LtU);
        f.i(I::I32Or);
        f.get(b);
        f.i32c(0x80);
        f.i(I::I32GeU);
        f.i(I::I32Or);
        f.set(word);
        f.inc(i);
        f.br(lp);
        f.end();
        f.end();
        f.get(out);
        f
    }
}
