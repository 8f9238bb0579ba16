//! Scans of a table (batch by batch, NULL-free batches unrolled) and VALUES
//! lists.

use super::*;

impl Gen {
    /// A table scan or a merge stage's input: batches read with `scan_next`.
    pub(super) fn scan(
        &mut self,
        source: Source,
        nullable: &[bool],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let (types, layout, key_layout, open, index) =
            match source {
                Source::Scan(scan) => {
                    let decl =
                        self.manifest.scans.get(scan).cloned().ok_or_else(|| {
                            EmitError::Plan(format!("scan {scan} is not declared"))
                        })?;
                    let layout = decl.layout().map_err(|e| EmitError::Plan(e.to_string()))?;
                    let kl = if decl.with_keys {
                        Some(
                            decl.key_layout()
                                .map_err(|e| EmitError::Plan(e.to_string()))?,
                        )
                    } else {
                        None
                    };
                    let types: Vec<SqlType> = decl.columns.iter().map(|c| c.ty).collect();
                    (types, layout, kl, SCAN_OPEN_FN, scan)
                }
                Source::Input(input) => {
                    let decl =
                        self.manifest.inputs.get(input).cloned().ok_or_else(|| {
                            EmitError::Plan(format!("input {input} is not declared"))
                        })?;
                    let layout = decl.layout().map_err(|e| EmitError::Plan(e.to_string()))?;
                    (decl.types, layout, None, INPUT_OPEN_FN, input)
                }
            };
        if nullable.len() != types.len() {
            return Err(EmitError::Plan(
                "scan nullability does not match its columns".into(),
            ));
        }
        let total = u32::try_from(layout.total_bytes())
            .map_err(|_| EmitError::Limit("scan batch too large".into()))?;
        let buf = self.static_alloc(total, 16);
        let keys = match key_layout {
            Some(kl) => {
                let kt = u32::try_from(kl.total_bytes())
                    .map_err(|_| EmitError::Limit("key batch too large".into()))?;
                let kb = self.static_alloc(kt, 16);
                Some((kl, kb, kt))
            }
            None => None,
        };
        let h = self.f.local(ValType::I32);
        let n = self.f.local(ValType::I32);
        let i = self.f.local(ValType::I32);
        self.scan_handle(source, index, open, h)?;
        let done = self.f.block();
        let batch = self.f.loop_();
        self.f.i32c(self.temp_base as i32);
        self.f.i(I::GlobalSet(G_TEMP));
        self.f.get(h);
        self.f.i32c(buf as i32);
        self.f.i32c(total as i32);
        match &keys {
            Some((_, kb, kt)) => {
                self.f.i32c(*kb as i32);
                self.f.i32c(*kt as i32);
            }
            None => {
                self.f.i32c(0);
                self.f.i32c(0);
            }
        }
        self.f.i(I::Call(SCAN_NEXT_FN));
        self.f.set(n);
        self.f.get(n);
        self.f.i(I::I32Eqz);
        self.f.br_if(done);
        // Per batch: when no nullable column has a NULL in it, run a loop that
        // checks no NULL flags (and handles two rows per iteration, so the
        // deadline check at the loop head is paid once per two rows; four were no
        // faster at 10 M rows and cost a cold query 0.5 ms of compilation).
        let nullable_cols: Vec<usize> = (0..types.len())
            .filter(|c| nullable.get(*c).copied().unwrap_or(true))
            .collect();
        let all_valid = self.f.local(ValType::I32);
        if nullable_cols.is_empty() {
            self.f.set_i32(all_valid, 1);
        } else {
            let h = self.helper(Helper::AllValid);
            self.f.set_i32(all_valid, 1);
            for c in &nullable_cols {
                let vr = layout
                    .validity_range(*c)
                    .ok_or_else(|| EmitError::Plan("batch column out of range".into()))?;
                self.f.get(all_valid);
                self.f.i32c((buf + vr.start as u32) as i32);
                self.f.get(n);
                self.f.i(I::Call(h));
                self.f.i(I::I32And);
                self.f.set(all_valid);
            }
        }
        self.f.set_i32(i, 0);
        self.f.get(all_valid);
        self.f.if_();
        // null-free: UNROLL rows per iteration, then the rest one by one
        {
            let quads = self.f.block();
            let ql = self.f.loop_();
            self.f.get(i);
            self.f.i32c(UNROLL);
            self.f.i(I::I32Add);
            self.f.get(n);
            self.f.i(I::I32GtU);
            self.f.br_if(quads);
            for k in 0..UNROLL {
                self.scan_row(&types, &layout, buf, keys.as_ref(), &[], i, k, consume)?;
            }
            self.f.get(i);
            self.f.i32c(UNROLL);
            self.f.i(I::I32Add);
            self.f.set(i);
            self.f.br(ql);
            self.f.end();
            self.f.end();
        }
        self.f.end();
        // the rest of a NULL-free batch, and every batch with NULLs, one row at a
        // time (one copy of the pipeline less to compile)
        self.scan_rows_one_by_one(
            &types,
            &layout,
            buf,
            keys.as_ref(),
            &nullable_cols,
            i,
            n,
            consume,
        )?;
        self.f.br(batch);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// Sets local `h` to the handle of `source`: opened here with `open`, or
    /// for a lookup scan, opened by its join, which handed it the keys.
    fn scan_handle(
        &mut self,
        source: Source,
        index: usize,
        open: u32,
        h: u32,
    ) -> Result<(), EmitError> {
        let looked_up = match source {
            Source::Scan(s) => self.lookups.remove(&s),
            Source::Input(_) => None,
        };
        if let Some(l) = looked_up {
            self.f.get(l);
            self.f.set(h);
            return Ok(());
        }
        if let Source::Scan(s) = source
            && matches!(
                self.manifest.scans.get(s).map(|d| &d.range),
                Some(crate::abi::ScanRangeDecl::Lookup { .. })
            )
        {
            return Err(EmitError::Plan(format!(
                "lookup scan {s} read outside the probe side of its join"
            )));
        }
        self.f.i32c(index as i32);
        self.f.i(I::Call(open));
        self.f.set(h);
        Ok(())
    }

    /// Rows `i..n` of the batch, one per iteration.
    #[expect(clippy::too_many_arguments, reason = "the scan's batch description")]
    pub(super) fn scan_rows_one_by_one(
        &mut self,
        types: &[SqlType],
        layout: &BatchLayout,
        buf: u32,
        keys: Option<&(BatchLayout, u32, u32)>,
        nullable: &[usize],
        i: u32,
        n: u32,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let rows_done = self.f.block();
        let rowl = self.f.loop_();
        self.f.get(i);
        self.f.get(n);
        self.f.i(I::I32GeU);
        self.f.br_if(rows_done);
        self.scan_row(types, layout, buf, keys, nullable, i, 0, consume)?;
        self.f.inc(i);
        self.f.br(rowl);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// Row `i + k` of the batch: its columns into locals, then the consumer.
    #[expect(clippy::too_many_arguments, reason = "the scan's batch description")]
    pub(super) fn scan_row(
        &mut self,
        types: &[SqlType],
        layout: &BatchLayout,
        buf: u32,
        keys: Option<&(BatchLayout, u32, u32)>,
        nullable: &[usize],
        i: u32,
        k: i32,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let row = if k == 0 {
            i
        } else {
            let r = self.f.local(ValType::I32);
            self.f.get(i);
            self.f.i32c(k);
            self.f.i(I::I32Add);
            self.f.set(r);
            r
        };
        let next = self.f.block();
        let mut t = Vec::with_capacity(types.len() + 1);
        for (c, ty) in types.iter().enumerate() {
            t.push(self.load_batch_col(layout, buf, c, ty, nullable.contains(&c), row)?);
        }
        if let Some((kl, kb, _)) = keys {
            t.push(self.load_batch_col(kl, *kb, 0, &SqlType::Blob, false, row)?);
        }
        self.cont.push(next);
        consume(self, &t)?;
        self.cont.pop();
        self.f.end();
        Ok(())
    }

    /// Loads column `c` of row `i` (a local) of a batch at static address `buf`.
    pub(super) fn load_batch_col(
        &mut self,
        layout: &BatchLayout,
        buf: u32,
        c: usize,
        ty: &SqlType,
        nullable: bool,
        i: u32,
    ) -> Result<Val, EmitError> {
        let prim =
            prim_of(ty).ok_or_else(|| EmitError::Unsupported(format!("columns of type {ty}")))?;
        let vr = layout
            .values_range(c)
            .ok_or_else(|| EmitError::Plan("batch column out of range".into()))?;
        let val = self.fresh(prim, nullable);
        let base = buf + vr.start as u32;
        let f = &mut self.f;
        match ty.physical() {
            PhysicalType::I128 => {
                for (half, local) in [(0, val.v), (8, val.len)] {
                    f.get(i);
                    f.i32c(4);
                    f.i(I::I32Shl);
                    f.i(I::I64Load(mem(base + half, 3)));
                    f.set(local);
                }
            }
            PhysicalType::Bytes => {
                let heap = buf + layout.heap_range().start as u32;
                f.get(i);
                f.i32c(3);
                f.i(I::I32Shl);
                f.i(I::I32Load(mem(base, 2)));
                f.i32c(heap as i32);
                f.i(I::I32Add);
                f.set(val.v);
                f.get(i);
                f.i32c(3);
                f.i(I::I32Shl);
                f.i(I::I32Load(mem(base + 4, 2)));
                f.set(val.len);
            }
            phys => {
                let (w, shift): (u32, i32) = match phys {
                    PhysicalType::Bool => (1, 0),
                    PhysicalType::I16 => (2, 1),
                    PhysicalType::I32 => (4, 2),
                    PhysicalType::I64 | PhysicalType::F64 => (8, 3),
                    _ => return Err(EmitError::Plan(format!("a column of type {ty}"))),
                };
                f.get(i);
                if shift > 0 {
                    f.i32c(shift);
                    f.i(I::I32Shl);
                }
                let m = mem(base, w.trailing_zeros());
                f.i(match phys {
                    PhysicalType::Bool => I::I32Load8U(m),
                    PhysicalType::I16 => I::I32Load16S(m),
                    PhysicalType::I32 => I::I32Load(m),
                    PhysicalType::I64 => I::I64Load(m),
                    _ => I::F64Load(m),
                });
                f.set(val.v);
            }
        }
        if let Some(nl) = val.null {
            let vr = layout
                .validity_range(c)
                .ok_or_else(|| EmitError::Plan("batch column out of range".into()))?;
            let f = &mut self.f;
            f.get(i);
            f.i32c(3);
            f.i(I::I32ShrU);
            f.i(I::I32Load8U(mem(buf + vr.start as u32, 0)));
            f.get(i);
            f.i32c(7);
            f.i(I::I32And);
            f.i(I::I32ShrU);
            f.i32c(1);
            f.i(I::I32And);
            f.i32c(1);
            f.i(I::I32Xor);
            f.set(nl);
        }
        Ok(val)
    }

    pub(super) fn values(
        &mut self,
        prims: &[Prim],
        rows: &[Vec<Lit>],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        // Rows live in a data segment as materialised records; one loop reads them.
        let width = SLOT * prims.len() as u32;
        let mut bytes = Vec::with_capacity(rows.len() * width as usize);
        for r in rows {
            if r.len() != prims.len() {
                return Err(EmitError::Plan("a VALUES row of the wrong width".into()));
            }
            for (l, p) in r.iter().zip(prims) {
                if l.prim() != *p {
                    return Err(EmitError::Plan(format!(
                        "a VALUES literal of type {:?} in a {p:?} column",
                        l.prim()
                    )));
                }
                let mut slot = [0u8; SLOT as usize];
                match l {
                    Lit::Null(Prim::I128) => slot[0..8].copy_from_slice(&I128_NULL.to_le_bytes()),
                    Lit::Null(_) => slot[0] = 1,
                    Lit::I128(x) => {
                        slot[0..8].copy_from_slice(&((*x >> 64) as i64).to_le_bytes());
                        slot[8..16].copy_from_slice(&(*x as i64).to_le_bytes());
                    }
                    Lit::Bool(b) => slot[8] = u8::from(*b),
                    Lit::I32(x) => slot[8..12].copy_from_slice(&x.to_le_bytes()),
                    Lit::I64(x) => slot[8..16].copy_from_slice(&x.to_le_bytes()),
                    Lit::F64(x) => slot[8..16].copy_from_slice(&x.to_le_bytes()),
                    Lit::Str(s) => {
                        let at = self.string(s);
                        slot[8..12].copy_from_slice(&at.to_le_bytes());
                        slot[12..16].copy_from_slice(&(s.len() as u32).to_le_bytes());
                    }
                }
                bytes.extend_from_slice(&slot);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let base = self.static_alloc(bytes.len() as u32, 16);
        self.push_data(base, bytes);
        let j = self.f.local(ValType::I32);
        let rec = self.f.local(ValType::I32);
        self.f.set_i32(j, 0);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(j);
        self.f.i32c(rows.len() as i32);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.f.get(j);
        self.f.i32c(width as i32);
        self.f.i(I::I32Mul);
        self.f.i32c(base as i32);
        self.f.i(I::I32Add);
        self.f.set(rec);
        let t = self.load_record(rec, 0, prims);
        self.row(consume, &t)?;
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    // ---------------------------------------------------------- records & slots
}
