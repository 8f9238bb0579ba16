//! Sorting: the comparator of a sort key list and a stable merge sort.

use super::*;

impl Gen {
    pub(super) fn sort(
        &mut self,
        input: &Op,
        keys: &[SortKey],
        limit: Option<u64>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let ((arr, _cap, len), prims) = self.materialise(input)?;
        for k in keys {
            if k.col >= prims.len() {
                return Err(EmitError::Plan("sort key out of range".into()));
            }
        }
        self.sort_records((arr, len), keys, &prims);
        self.for_records(arr, len, limit, &prims, consume)
    }

    /// Sorts the record pointers `arr[0..len]` by `keys` (stable; nothing
    /// for no keys), `arr` then naming the sorted array.
    pub(super) fn sort_records(
        &mut self,
        (arr, len): (u32, u32),
        keys: &[SortKey],
        prims: &[Prim],
    ) {
        if keys.is_empty() {
            return;
        }
        let cmp = self.comparator(keys, prims);
        let ms = self.merge_sort(cmp);
        let alloc = self.helper(Helper::Alloc);
        self.f.get(arr);
        self.f.get(len);
        self.f.get(len);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::Call(alloc));
        self.f.i(I::Call(ms));
        self.f.set(arr);
    }

    /// `cmp(a, b) -> i32` over two records for `keys`.
    pub(super) fn comparator(&mut self, keys: &[SortKey], prims: &[Prim]) -> u32 {
        let idx = self.declare(vec![ValType::I32, ValType::I32], vec![ValType::I32]);
        let saved = std::mem::replace(&mut self.f, Fb::new(2));
        let c = self.f.local(ValType::I32);
        for k in keys {
            let p = prims.get(k.col).copied().unwrap_or(Prim::I32);
            let off = SLOT * k.col as u32;
            let a = self.load_slot(0, off, p);
            let b = self.load_slot(1, off, p);
            let (an, bn) = (a.null.unwrap_or(0), b.null.unwrap_or(0));
            // NULL ordering
            self.f.get(an);
            self.f.get(bn);
            self.f.i(I::I32Ne);
            self.f.if_();
            self.f.get(an);
            self.f.if_();
            self.f.i32c(if k.nulls_first { -1 } else { 1 });
            self.f.i(I::Return);
            self.f.end();
            self.f.i32c(if k.nulls_first { 1 } else { -1 });
            self.f.i(I::Return);
            self.f.end();
            self.f.get(an);
            self.f.i(I::I32Eqz);
            self.f.if_();
            let (a, b) = (Val { null: None, ..a }, Val { null: None, ..b });
            if p == Prim::Str {
                let h = self.helper(Helper::StrCmp);
                self.push_val(&a);
                self.push_val(&b);
                self.f.i(I::Call(h));
            } else {
                self.cmp(CmpOp::Gt, p, &a, &b);
                self.cmp(CmpOp::Lt, p, &a, &b);
                self.f.i(I::I32Sub);
            }
            self.f.set(c);
            self.f.get(c);
            self.f.if_();
            if k.desc {
                self.f.i32c(0);
                self.f.get(c);
                self.f.i(I::I32Sub);
            } else {
                self.f.get(c);
            }
            self.f.i(I::Return);
            self.f.end();
            self.f.end();
        }
        self.f.i32c(0);
        let body = std::mem::replace(&mut self.f, saved);
        self.define(idx, body);
        idx
    }

    /// `msort(arr, n, tmp) -> sorted array` (stable bottom-up merge sort).
    pub(super) fn merge_sort(&mut self, cmp: u32) -> u32 {
        let idx = self.declare(vec![ValType::I32; 3], vec![ValType::I32]);
        let mut f = Fb::new(3);
        let (arr, n, tmp) = (0, 1, 2);
        let width = f.local(ValType::I32);
        let i = f.local(ValType::I32);
        let mid = f.local(ValType::I32);
        let hi = f.local(ValType::I32);
        let l = f.local(ValType::I32);
        let r = f.local(ValType::I32);
        let k = f.local(ValType::I32);
        let sw = f.local(ValType::I32);
        let take = f.local(ValType::I32);
        let at = |f: &mut Fb, base: u32, ix: u32| {
            f.get(base);
            f.get(ix);
            f.i32c(2);
            f.i(I::I32Shl);
            f.i(I::I32Add);
        };
        let min_n = |f: &mut Fb, out: u32| {
            // out = min(out, n)
            f.get(out);
            f.get(n);
            f.get(out);
            f.get(n);
            f.i(I::I32LtU);
            f.i(I::Select);
            f.set(out);
        };
        f.set_i32(width, 1);
        let wdone = f.block();
        let wl = f.loop_();
        f.get(width);
        f.get(n);
        f.i(I::I32GeU);
        f.br_if(wdone);
        f.set_i32(i, 0);
        let idone = f.block();
        let il = f.loop_();
        f.get(i);
        f.get(n);
        f.i(I::I32GeU);
        f.br_if(idone);
        f.get(i);
        f.get(width);
        f.i(I::I32Add);
        f.set(mid);
        min_n(&mut f, mid);
        f.get(mid);
        f.get(width);
        f.i(I::I32Add);
        f.set(hi);
        min_n(&mut f, hi);
        f.get(i);
        f.set(l);
        f.get(mid);
        f.set(r);
        f.get(i);
        f.set(k);
        let kdone = f.block();
        let kl = f.loop_();
        f.get(k);
        f.get(hi);
        f.i(I::I32GeU);
        f.br_if(kdone);
        // take left if l < mid and (r >= hi or cmp(arr[l], arr[r]) <= 0)
        f.set_i32(take, 0);
        f.get(l);
        f.get(mid);
        f.i(I::I32LtU);
        f.if_();
        f.get(r);
        f.get(hi);
        f.i(I::I32GeU);
        f.if_();
        f.set_i32(take, 1);
        f.else_();
        at(&mut f, arr, l);
        f.i(I::I32Load(mem(0, 2)));
        at(&mut f, arr, r);
        f.i(I::I32Load(mem(0, 2)));
        f.i(I::Call(cmp));
        f.i32c(0);
        f.i(I::I32LeS);
        f.set(take);
        f.end();
        f.end();
        f.get(take);
        f.if_();
        at(&mut f, arr, l);
        f.i(I::I32Load(mem(0, 2)));
        f.set(sw);
        f.inc(l);
        f.else_();
        at(&mut f, arr, r);
        f.i(I::I32Load(mem(0, 2)));
        f.set(sw);
        f.inc(r);
        f.end();
        at(&mut f, tmp, k);
        f.get(sw);
        f.i(I::I32Store(mem(0, 2)));
        f.inc(k);
        f.br(kl);
        f.end();
        f.end();
        f.get(hi);
        f.set(i);
        f.br(il);
        f.end();
        f.end();
        f.get(arr);
        f.set(sw);
        f.get(tmp);
        f.set(arr);
        f.get(sw);
        f.set(tmp);
        f.get(width);
        f.i32c(1);
        f.i(I::I32Shl);
        f.set(width);
        f.br(wl);
        f.end();
        f.end();
        f.get(arr);
        self.define(idx, f);
        idx
    }

    // ------------------------------------------------------------------- joins
}
