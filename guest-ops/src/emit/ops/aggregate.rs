//! Aggregation: plain and hash aggregation, the key hash and comparison, and the
//! open-addressing directory it grows.

use super::*;

impl Gen {
    /// Initialises the state slot of `a` at `base + off`.
    /// Initialises the state slot of `a` (of register type `prim`) at
    /// `base + off`. A wide sum of 64-bit values (`wide64`) keeps the narrow
    /// layout's NULL flag, a count of wraps beside it, and its low half: see
    /// [`Gen::sum_wide_64`].
    pub(super) fn agg_init(&mut self, base: u32, off: u32, a: &AggCall, prim: Prim, wide64: bool) {
        if wide64 {
            // NULL flag 1, no wraps, 0
            self.f.get(base);
            self.f.i64c(1);
            self.f.i(I::I64Store(mem(off, 3)));
            self.f.get(base);
            self.f.i64c(0);
            self.f.i(I::I64Store(mem(off + 8, 3)));
            return;
        }
        if prim == Prim::I128 {
            // NULL until a value arrives
            self.f.get(base);
            self.f.i64c(I128_NULL);
            self.f.i(I::I64Store(mem(off, 3)));
            self.f.get(base);
            self.f.i64c(0);
            self.f.i(I::I64Store(mem(off + 8, 3)));
            return;
        }
        let null = i32::from(!matches!(a.func, AggFunc::CountStar | AggFunc::Count));
        self.f.get(base);
        self.f.i32c(null);
        self.f.i(I::I32Store(mem(off, 2)));
        self.f.get(base);
        self.f.i64c(0);
        self.f.i(I::I64Store(mem(off + 8, 3)));
        self.f.get(base);
        self.f.i32c(0);
        self.f.i(I::I32Store(mem(off + 12, 2)));
    }

    pub(super) fn agg_update(
        &mut self,
        base: u32,
        off: u32,
        a: &AggCall,
        t: &[Val],
        in_prims: &[Prim],
        copy: bool,
    ) -> Result<(), EmitError> {
        if a.func == AggFunc::CountStar {
            self.f.get(base);
            self.f.get(base);
            self.f.i(I::I64Load(mem(off + 8, 3)));
            self.f.i64c(1);
            self.f.i(I::I64Add);
            self.f.i(I::I64Store(mem(off + 8, 3)));
            return Ok(());
        }
        let arg = a
            .arg
            .as_ref()
            .ok_or_else(|| EmitError::Plan("aggregate without argument".into()))?;
        let x = self.expr(arg, t)?;
        let state_prim = agg_prim(a, in_prims, &self.inits)?;
        if let Some(n) = x.null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.if_();
        }
        match a.func {
            AggFunc::Count => {
                self.f.get(base);
                self.f.get(base);
                self.f.i(I::I64Load(mem(off + 8, 3)));
                self.f.i64c(1);
                self.f.i(I::I64Add);
                self.f.i(I::I64Store(mem(off + 8, 3)));
            }
            AggFunc::Sum => {
                let cur = self.f.local(vt_of(state_prim));
                let add = self.f.local(vt_of(state_prim));
                self.f.get(base);
                self.f.i(if state_prim == Prim::F64 {
                    I::F64Load(mem(off + 8, 3))
                } else {
                    I::I64Load(mem(off + 8, 3))
                });
                self.f.set(cur);
                self.f.get(x.v);
                if x.prim == Prim::I32 {
                    self.f.i(I::I64ExtendI32S);
                }
                self.f.set(add);
                if state_prim == Prim::F64 {
                    self.f.get(cur);
                    self.f.get(add);
                    self.f.i(I::F64Add);
                    self.f.set(cur);
                } else {
                    self.arith_i64(crate::plan::ArithOp::Add, cur, add, cur);
                }
                self.f.get(base);
                self.f.get(cur);
                self.f.i(if state_prim == Prim::F64 {
                    I::F64Store(mem(off + 8, 3))
                } else {
                    I::I64Store(mem(off + 8, 3))
                });
                self.f.get(base);
                self.f.i32c(0);
                self.f.i(I::I32Store(mem(off, 2)));
            }
            AggFunc::SumWide if x.prim == Prim::I128 => {
                // the state's high half is I128_NULL until the first value
                let (lo, hi) = (self.f.local(ValType::I64), self.f.local(ValType::I64));
                self.f.get(base);
                self.f.i(I::I64Load(mem(off + 8, 3)));
                self.f.set(lo);
                self.f.get(base);
                self.f.i(I::I64Load(mem(off, 3)));
                self.f.set(hi);
                self.f.get(hi);
                self.f.i64c(I128_NULL);
                self.f.i(I::I64Eq);
                self.f.if_();
                self.f.i64c(0);
                self.f.set(hi);
                self.f.end();
                let h = self.helper(Helper::Add128);
                self.f.get(lo);
                self.f.get(hi);
                self.push_val(&x);
                self.f.i(I::Call(h));
                self.f.set(hi);
                self.f.set(lo);
                self.f.get(base);
                self.f.get(lo);
                self.f.i(I::I64Store(mem(off + 8, 3)));
                self.f.get(base);
                self.f.get(hi);
                self.f.i(I::I64Store(mem(off, 3)));
            }
            AggFunc::SumWide => self.sum_wide_64(base, off, &x),
            AggFunc::Min | AggFunc::Max => {
                let cur = self.load_slot(base, off, x.prim);
                // replace when the state is NULL or x beats it
                self.push_null(&cur);
                let nonnull = Val { null: None, ..cur };
                self.cmp(
                    if a.func == AggFunc::Min {
                        CmpOp::Lt
                    } else {
                        CmpOp::Gt
                    },
                    x.prim,
                    &Val { null: None, ..x },
                    &nonnull,
                );
                self.f.i(I::I32Or);
                self.f.if_();
                self.store_slot(base, off, &Val { null: None, ..x }, copy);
                self.f.end();
            }
            AggFunc::CountStar => {}
        }
        if x.null.is_some() {
            self.f.end();
        }
        Ok(())
    }

    /// A wide sum of 64-bit values: a NULL flag (i32 at 0, as narrow states
    /// have), a count of wraps (i32 at 4: +1 past i64::MAX, -1 past
    /// i64::MIN) and a wrapping i64 sum (at 8), so that a row costs what a
    /// narrow checked sum costs; the count is touched only when the sum
    /// wraps, and fails with Overflow past i32 (2^32 rows of the largest
    /// values). The value is wraps * 2^64 + the sum read as signed:
    /// [`Gen::finish_wide_sums`] reads it as a two's complement I128.
    fn sum_wide_64(&mut self, base: u32, off: u32, x: &Val) {
        let (lo, w, r) = (
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
        );
        let wraps = self.f.local(ValType::I32);
        self.f.get(x.v);
        if x.prim == Prim::I32 {
            self.f.i(I::I64ExtendI32S);
        }
        self.f.set(w);
        self.f.get(base);
        self.f.i(I::I64Load(mem(off + 8, 3)));
        self.f.set(lo);
        self.f.get(lo);
        self.f.get(w);
        self.f.i(I::I64Add);
        self.f.set(r);
        // wrapped: ((lo ^ r) & (w ^ r)) < 0
        self.f.get(lo);
        self.f.get(r);
        self.f.i(I::I64Xor);
        self.f.get(w);
        self.f.get(r);
        self.f.i(I::I64Xor);
        self.f.i(I::I64And);
        self.f.i64c(0);
        self.f.i(I::I64LtS);
        self.f.if_();
        self.f.get(base);
        self.f.i(I::I32Load(mem(off + 4, 2)));
        self.f.set(wraps);
        // at the i32 limit in the direction of the wrap: overflow
        self.f.get(wraps);
        self.f.i32c(i32::MIN);
        self.f.i32c(i32::MAX);
        self.f.get(w);
        self.f.i64c(0);
        self.f.i(I::I64LtS);
        self.f.i(I::Select);
        self.f.i(I::I32Eq);
        self.overflow_if();
        self.f.get(base);
        self.f.get(wraps);
        self.f.i32c(-1);
        self.f.i32c(1);
        self.f.get(w);
        self.f.i64c(0);
        self.f.i(I::I64LtS);
        self.f.i(I::Select);
        self.f.i(I::I32Add);
        self.f.i(I::I32Store(mem(off + 4, 2)));
        self.f.end();
        self.f.get(base);
        self.f.get(r);
        self.f.i(I::I64Store(mem(off + 8, 3)));
        self.f.get(base);
        self.f.i32c(0);
        self.f.i(I::I32Store(mem(off, 2)));
    }

    /// Whether each of `aggs` is a wide sum of 64-bit values.
    pub(super) fn wide64s(
        &self,
        aggs: &[AggCall],
        in_prims: &[Prim],
    ) -> Result<Vec<bool>, EmitError> {
        aggs.iter()
            .map(|a| {
                Ok(a.func == AggFunc::SumWide
                    && match &a.arg {
                        Some(e) => expr_prim(e, in_prims, &self.inits)? != Prim::I128,
                        None => false,
                    })
            })
            .collect()
    }

    /// Reads the states of wide sums of 64-bit values (`wide64`, one per
    /// aggregate, whose slots start at `base + off`) into `vals` as I128
    /// values (`load_slot` read them with the I128 layout, which they do not
    /// have).
    pub(super) fn finish_wide_sums(&mut self, base: u32, off: u32, wide64: &[bool], vals: &[Val]) {
        for (k, (w, v)) in wide64.iter().zip(vals).enumerate() {
            if !*w {
                continue;
            }
            let at = off + SLOT * k as u32;
            self.f.get(base);
            self.f.i(I::I64Load(mem(at + 8, 3)));
            self.f.set(v.v);
            // high = wraps + (low < 0 ? -1 : 0)
            self.f.get(base);
            self.f.i(I::I32Load(mem(at + 4, 2)));
            self.f.i(I::I64ExtendI32S);
            self.f.get(v.v);
            self.f.i64c(63);
            self.f.i(I::I64ShrS);
            self.f.i(I::I64Add);
            self.f.set(v.len);
            if let Some(n) = v.null {
                self.f.get(base);
                self.f.i(I::I32Load(mem(at, 2)));
                self.f.set(n);
            }
        }
    }

    pub(super) fn aggregate_all(
        &mut self,
        input: &Op,
        aggs: &[AggCall],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let in_prims = self.slots(input)?;
        let state = self.static_alloc(SLOT * aggs.len().max(1) as u32, 16);
        let base = self.f.local(ValType::I32);
        self.f.set_i32(base, state as i32);
        let prims = aggs
            .iter()
            .map(|a| agg_prim(a, &in_prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        let wide64 = self.wide64s(aggs, &in_prims)?;
        for (k, ((a, p), w)) in aggs.iter().zip(&prims).zip(&wide64).enumerate() {
            self.agg_init(base, SLOT * k as u32, a, *p, *w);
        }
        self.sub_pipeline(input, &mut |g, t| {
            for (k, a) in aggs.iter().enumerate() {
                g.agg_update(base, SLOT * k as u32, a, t, &in_prims, true)?;
            }
            Ok(())
        })?;
        self.f.set_i32(base, state as i32);
        let t = self.load_record(base, 0, &prims);
        self.finish_wide_sums(base, 0, &wide64, &t);
        self.row(consume, &t)
    }

    /// A 64-bit hash of `vals` into a fresh local (NULL hashes as a constant).
    pub(super) fn hash_vals(&mut self, vals: &[Val]) -> u32 {
        let h = self.f.local(ValType::I64);
        self.f.i64c(0x9E37_79B9_7F4A_7C15_u64 as i64);
        self.f.set(h);
        for v in vals {
            let hv = self.f.local(ValType::I64);
            self.f.i64c(0x5555_5555);
            self.f.set(hv);
            let body = |g: &mut Gen| match v.prim {
                Prim::Bool | Prim::I32 => {
                    g.f.get(v.v);
                    g.f.i(I::I64ExtendI32S);
                    g.f.set(hv);
                }
                Prim::I64 => {
                    g.f.get(v.v);
                    g.f.set(hv);
                }
                Prim::F64 => {
                    // -0.0 and 0.0 are equal: normalise before taking the bits
                    g.f.get(v.v);
                    g.f.i(I::F64Const(0.0.into()));
                    g.f.i(I::F64Add);
                    g.f.i(I::I64ReinterpretF64);
                    g.f.set(hv);
                }
                Prim::Str => {
                    let hb = g.helper(Helper::Hash);
                    g.push_val(v);
                    g.f.i(I::Call(hb));
                    g.f.set(hv);
                }
                Prim::I128 => {
                    // equal values have equal halves: one representation each
                    g.f.get(v.len);
                    g.f.i64c(0x2545_F491_4F6C_DD1D);
                    g.f.i(I::I64Mul);
                    g.f.get(v.v);
                    g.f.i(I::I64Xor);
                    g.f.set(hv);
                }
            };
            match v.null {
                Some(n) => {
                    self.f.get(n);
                    self.f.i(I::I32Eqz);
                    self.f.if_();
                    body(self);
                    self.f.end();
                }
                None => body(self),
            }
            let f = &mut self.f;
            f.get(h);
            f.get(hv);
            f.i(I::I64Xor);
            f.i64c(0x0000_0100_0000_01b3);
            f.i(I::I64Mul);
            f.set(h);
            f.get(h);
            f.get(h);
            f.i64c(29);
            f.i(I::I64ShrU);
            f.i(I::I64Xor);
            f.set(h);
        }
        h
    }

    /// Pushes 1 if the slots at `entry + off..` equal `vals` (NULL equals NULL).
    pub(super) fn keys_equal(&mut self, entry: u32, off: u32, vals: &[Val]) {
        let eq = self.f.local(ValType::I32);
        self.f.set_i32(eq, 1);
        for (k, v) in vals.iter().enumerate() {
            let s = self.load_slot(entry, off + SLOT * k as u32, v.prim);
            // both NULL -> equal; one NULL -> not; else compare
            self.push_null(&s);
            self.push_null(v);
            self.f.i(I::I32Ne);
            self.f.if_();
            self.f.set_i32(eq, 0);
            self.f.else_();
            self.push_null(v);
            self.f.i(I::I32Eqz);
            self.f.if_();
            self.cmp(
                CmpOp::Eq,
                v.prim,
                &Val { null: None, ..*v },
                &Val { null: None, ..s },
            );
            self.f.get(eq);
            self.f.i(I::I32And);
            self.f.set(eq);
            self.f.end();
            self.f.end();
        }
        self.f.get(eq);
    }

    pub(super) fn aggregate_hash(
        &mut self,
        input: &Op,
        keys: &[Expr],
        aggs: &[AggCall],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let in_prims = self.slots(input)?;
        let key_prims = keys
            .iter()
            .map(|e| expr_prim(e, &in_prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        let agg_prims = aggs
            .iter()
            .map(|a| agg_prim(a, &in_prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        let wide64 = self.wide64s(aggs, &in_prims)?;
        let nk = keys.len() as u32;
        let entry_bytes = (ENTRY_HEAD + SLOT * (nk + aggs.len() as u32)) as i32;
        let dir = self.f.local(ValType::I32);
        let cap = self.f.local(ValType::I32);
        let count = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let idx = self.f.local(ValType::I32);
        let fresh = self.f.local(ValType::I32);
        self.dir_new(dir, cap, DIR_INITIAL);
        self.f.set_i32(count, 0);
        self.sub_pipeline(input, &mut |g, t| {
            let kv = keys
                .iter()
                .map(|k| g.expr(k, t))
                .collect::<Result<Vec<_>, _>>()?;
            let h = g.hash_vals(&kv);
            g.dir_find_or_insert((dir, cap, count), (h, &kv), entry_bytes, (e, idx, fresh));
            // a new group starts its aggregates
            g.f.get(fresh);
            g.f.if_();
            for (k, ((a, p), w)) in aggs.iter().zip(&agg_prims).zip(&wide64).enumerate() {
                g.agg_init(e, ENTRY_HEAD + SLOT * (nk + k as u32), a, *p, *w);
            }
            g.f.end();
            for (k, a) in aggs.iter().enumerate() {
                g.agg_update(
                    e,
                    ENTRY_HEAD + SLOT * (nk + k as u32),
                    a,
                    t,
                    &in_prims,
                    true,
                )?;
            }
            Ok(())
        })?;
        // iterate the directory
        let mut prims = key_prims;
        prims.extend(agg_prims);
        let j = self.f.local(ValType::I32);
        self.f.set_i32(j, 0);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(j);
        self.f.get(cap);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.dir_slot(dir, j);
        self.f.i(I::I32Load(mem(0, 2)));
        self.f.set(e);
        self.f.get(e);
        self.f.if_();
        let t = self.load_record(e, ENTRY_HEAD, &prims);
        self.finish_wide_sums(e, ENTRY_HEAD + SLOT * nk, &wide64, &t[keys.len()..]);
        self.row(consume, &t)?;
        self.f.end();
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// Finds the entry of `vals` (hash `h`) in the open-addressing directory
    /// `(dir, cap, count)`, or makes one of `entry_bytes` (the hash, then
    /// `vals` from [`ENTRY_HEAD`]) and puts it in, growing the directory as it
    /// fills. Leaves the entry in `e`; sets `fresh` to 1 when it is new, 0
    /// when it was there (NULL equal to NULL). `idx` is a scratch local.
    pub(super) fn dir_find_or_insert(
        &mut self,
        (dir, cap, count): (u32, u32, u32),
        (h, vals): (u32, &[Val]),
        entry_bytes: i32,
        (e, idx, fresh): (u32, u32, u32),
    ) {
        self.f.set_i32(fresh, 0);
        self.f.get(h);
        self.f.i(I::I32WrapI64);
        self.f.get(cap);
        self.f.i32c(1);
        self.f.i(I::I32Sub);
        self.f.i(I::I32And);
        self.f.set(idx);
        let found = self.f.block();
        let probe = self.f.loop_();
        self.dir_slot(dir, idx);
        self.f.i(I::I32Load(mem(0, 2)));
        self.f.set(e);
        self.f.get(e);
        self.f.i(I::I32Eqz);
        self.f.if_();
        self.call_alloc_const(entry_bytes, e);
        self.f.get(e);
        self.f.get(h);
        self.f.i(I::I64Store(mem(0, 3)));
        for (k, v) in vals.iter().enumerate() {
            self.store_slot(e, ENTRY_HEAD + SLOT * k as u32, v, true);
        }
        self.dir_slot(dir, idx);
        self.f.get(e);
        self.f.i(I::I32Store(mem(0, 2)));
        self.f.set_i32(fresh, 1);
        self.f.inc(count);
        self.f.get(count);
        self.f.i32c(1);
        self.f.i(I::I32Shl);
        self.f.get(cap);
        self.f.i(I::I32GtU);
        self.f.if_();
        self.dir_grow_open(dir, cap);
        self.f.end();
        self.f.br(found);
        self.f.end();
        self.f.get(e);
        self.f.i(I::I64Load(mem(0, 3)));
        self.f.get(h);
        self.f.i(I::I64Eq);
        self.f.if_();
        self.keys_equal(e, ENTRY_HEAD, vals);
        self.f.br_if(found);
        self.f.end();
        self.f.get(idx);
        self.f.i32c(1);
        self.f.i(I::I32Add);
        self.f.get(cap);
        self.f.i32c(1);
        self.f.i(I::I32Sub);
        self.f.i(I::I32And);
        self.f.set(idx);
        self.f.br(probe);
        self.f.end();
        self.f.end();
    }

    pub(super) fn dir_new(&mut self, dir: u32, cap: u32, size: i32) {
        self.call_alloc_const(size * 4, dir);
        self.f.get(dir);
        self.f.i32c(0);
        self.f.i32c(size * 4);
        self.f.i(I::MemoryFill(0));
        self.f.set_i32(cap, size);
    }

    /// Pushes the address of `dir[idx]`.
    pub(super) fn dir_slot(&mut self, dir: u32, idx: u32) {
        self.f.get(dir);
        self.f.get(idx);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
    }

    /// Doubles an open-addressing directory, reinserting entries by stored hash.
    pub(super) fn dir_grow_open(&mut self, dir: u32, cap: u32) {
        let alloc = self.helper(Helper::Alloc);
        let nd = self.f.local(ValType::I32);
        let ncap = self.f.local(ValType::I32);
        let j = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let k = self.f.local(ValType::I32);
        let f = &mut self.f;
        f.get(cap);
        f.i32c(1);
        f.i(I::I32Shl);
        f.set(ncap);
        f.get(ncap);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::Call(alloc));
        f.set(nd);
        f.get(nd);
        f.i32c(0);
        f.get(ncap);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::MemoryFill(0));
        f.set_i32(j, 0);
        let done = f.block();
        let lp = f.loop_();
        f.get(j);
        f.get(cap);
        f.i(I::I32GeU);
        f.br_if(done);
        f.get(dir);
        f.get(j);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.i(I::I32Load(mem(0, 2)));
        f.set(e);
        f.get(e);
        f.if_();
        f.get(e);
        f.i(I::I64Load(mem(0, 3)));
        f.i(I::I32WrapI64);
        f.get(ncap);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i(I::I32And);
        f.set(k);
        let placed = f.block();
        let probe = f.loop_();
        f.get(nd);
        f.get(k);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.i(I::I32Load(mem(0, 2)));
        f.i(I::I32Eqz);
        f.if_();
        f.get(nd);
        f.get(k);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.get(e);
        f.i(I::I32Store(mem(0, 2)));
        f.br(placed);
        f.end();
        f.get(k);
        f.i32c(1);
        f.i(I::I32Add);
        f.get(ncap);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i(I::I32And);
        f.set(k);
        f.br(probe);
        f.end();
        f.end();
        f.end();
        f.inc(j);
        f.br(lp);
        f.end();
        f.end();
        f.get(nd);
        f.set(dir);
        f.get(ncap);
        f.set(cap);
    }

    // -------------------------------------------------------------------- sort
}
