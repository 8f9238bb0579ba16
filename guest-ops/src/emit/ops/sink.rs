//! Sinks: result batches written and flushed to the host, and write batches.

use super::*;

impl Gen {
    pub(super) fn sink_begin(&mut self, sink: &Sink) -> Result<SinkState, EmitError> {
        let (layout, types, call, index) =
            match sink {
                Sink::Output(o) => {
                    let d =
                        self.manifest.outputs.get(*o).ok_or_else(|| {
                            EmitError::Plan(format!("output {o} is not declared"))
                        })?;
                    (
                        d.layout().map_err(|e| EmitError::Plan(e.to_string()))?,
                        d.types.clone(),
                        EMIT_FN,
                        *o,
                    )
                }
                Sink::Write(w) => {
                    let d = self.manifest.writes.get(*w).ok_or_else(|| {
                        EmitError::Plan(format!("write target {w} is not declared"))
                    })?;
                    let l = d.layout().map_err(|e| EmitError::Plan(e.to_string()))?;
                    (l.clone(), l.types(), WRITE_FN, *w)
                }
            };
        self.sink_new(layout, types, call, SinkTo::Declared(index as i32))
    }

    /// A sink of batches in `layout` (columns `types`) handed to host
    /// function `call`: its buffer and its row and heap cursors, cleared.
    fn sink_new(
        &mut self,
        layout: BatchLayout,
        types: Vec<SqlType>,
        call: u32,
        to: SinkTo,
    ) -> Result<SinkState, EmitError> {
        let total = u32::try_from(layout.total_bytes())
            .map_err(|_| EmitError::Limit("output batch too large".into()))?;
        let buf = self.static_alloc(total, 16);
        let row = self.f.local(ValType::I32);
        let heap = self.f.local(ValType::I32);
        self.f.set_i32(row, 0);
        self.f.set_i32(heap, 0);
        let st = SinkState {
            layout,
            types,
            buf,
            total,
            row,
            heap,
            call,
            to,
        };
        self.sink_clear(&st);
        Ok(st)
    }

    /// A sink of lookup keys for scan `scan` (declared
    /// [`crate::abi::ScanRangeDecl::Lookup`]), which it opens: its batches go
    /// to `scan_keys` on the handle it keeps.
    pub(super) fn lookup_begin(&mut self, scan: usize) -> Result<SinkState, EmitError> {
        let d = self
            .manifest
            .scans
            .get(scan)
            .ok_or_else(|| EmitError::Plan(format!("scan {scan} is not declared")))?;
        let layout = d
            .lookup_layout()
            .map_err(|e| EmitError::Plan(e.to_string()))?
            .ok_or_else(|| EmitError::Plan(format!("scan {scan} is not a lookup")))?;
        if self.lookups.contains_key(&scan) {
            return Err(EmitError::Plan(format!("scan {scan} is looked up twice")));
        }
        let handle = self.f.local(ValType::I32);
        self.f.i32c(scan as i32);
        self.f.i(I::Call(SCAN_OPEN_FN));
        self.f.set(handle);
        self.lookups.insert(scan, handle);
        let types = layout.types();
        self.sink_new(layout, types, SCAN_KEYS_FN, SinkTo::Handle(handle))
    }

    pub(super) fn sink_clear(&mut self, st: &SinkState) {
        self.f.i32c(st.buf as i32);
        self.f.i32c(0);
        self.f.i32c(st.layout.heap_range().start as i32);
        self.f.i(I::MemoryFill(0));
    }

    /// Hands the batch to the host when it has rows (or always when `last` is false).
    pub(super) fn sink_flush(&mut self, st: &SinkState, last: bool) {
        if last {
            self.f.get(st.row);
            self.f.if_();
        }
        let b = st.buf as i32;
        let f = &mut self.f;
        f.i32c(b);
        f.get(st.row);
        f.i(I::I32Store(mem(0, 2)));
        f.i32c(b);
        f.i32c(st.types.len() as i32);
        f.i(I::I32Store(mem(4, 2)));
        f.i32c(b);
        f.get(st.heap);
        f.i(I::I32Store(mem(8, 2)));
        f.i32c(b);
        f.i32c(LAYOUT_VERSION as i32);
        f.i(I::I32Store(mem(12, 2)));
        match st.to {
            SinkTo::Declared(i) => f.i32c(i),
            SinkTo::Handle(h) => f.get(h),
        }
        f.i32c(b);
        f.i32c(st.total as i32);
        f.i(I::Call(st.call));
        if st.call == WRITE_FN {
            f.i(I::Drop);
        }
        f.set_i32(st.row, 0);
        f.set_i32(st.heap, 0);
        self.sink_clear(st);
        if last {
            self.f.end();
        }
    }

    pub(super) fn sink_row(&mut self, st: &SinkState, t: &[Val]) -> Result<(), EmitError> {
        if t.len() != st.types.len() {
            return Err(EmitError::Plan("row width differs from the sink's".into()));
        }
        // room for this row's strings?
        let strs: Vec<Val> = t.iter().filter(|v| v.prim == Prim::Str).copied().collect();
        if !strs.is_empty() {
            let need = self.f.local(ValType::I32);
            self.f.set_i32(need, 0);
            for s in &strs {
                self.f.get(need);
                self.f.get(s.len);
                if let Some(n) = s.null {
                    self.f.i32c(0);
                    self.f.get(n);
                    self.f.i(I::Select);
                }
                self.f.i(I::I32Add);
                self.f.set(need);
            }
            let cap = st.layout.heap_bytes() as i32;
            self.f.get(need);
            self.f.i32c(cap);
            self.f.get(st.heap);
            self.f.i(I::I32Sub);
            self.f.i(I::I32GtU);
            self.f.if_();
            self.f.get(st.row);
            self.f.if_();
            self.sink_flush(st, false);
            self.f.end();
            self.f.get(need);
            self.f.i32c(cap);
            self.f.i(I::I32GtU);
            self.f.if_();
            fail(&mut self.f, ErrorCode::StringTooLong);
            self.f.end();
            self.f.end();
        }
        for (c, (v, ty)) in t.iter().zip(&st.types).enumerate() {
            self.sink_col(st, c, v, ty)?;
        }
        self.f.get(st.row);
        self.f.i32c(1);
        self.f.i(I::I32Add);
        self.f.set(st.row);
        self.f.get(st.row);
        self.f.i32c(st.layout.rows_max() as i32);
        self.f.i(I::I32Eq);
        self.f.if_();
        self.sink_flush(st, false);
        self.f.end();
        Ok(())
    }

    pub(super) fn sink_col(
        &mut self,
        st: &SinkState,
        c: usize,
        v: &Val,
        ty: &SqlType,
    ) -> Result<(), EmitError> {
        let want =
            prim_of(ty).ok_or_else(|| EmitError::Unsupported(format!("results of type {ty}")))?;
        let phys = ty.physical();
        let wide_decimal = phys == PhysicalType::I128 && v.prim == Prim::I64;
        if want != v.prim && !wide_decimal {
            return Err(EmitError::Plan(format!(
                "column {c} is {ty} but the plan yields {:?}",
                v.prim
            )));
        }
        let vr = st
            .layout
            .values_range(c)
            .ok_or_else(|| EmitError::Plan("sink column out of range".into()))?;
        let vrange = st
            .layout
            .validity_range(c)
            .ok_or_else(|| EmitError::Plan("sink column out of range".into()))?;
        let base = st.buf + vr.start as u32;
        let heap_at = st.buf + st.layout.heap_range().start as u32;
        let write = |g: &mut Gen| -> Result<(), EmitError> {
            let f = &mut g.f;
            // validity bit
            f.get(st.row);
            f.i32c(3);
            f.i(I::I32ShrU);
            f.get(st.row);
            f.i32c(3);
            f.i(I::I32ShrU);
            f.i(I::I32Load8U(mem(st.buf + vrange.start as u32, 0)));
            f.i32c(1);
            f.get(st.row);
            f.i32c(7);
            f.i(I::I32And);
            f.i(I::I32Shl);
            f.i(I::I32Or);
            f.i(I::I32Store8(mem(st.buf + vrange.start as u32, 0)));
            match phys {
                PhysicalType::Bytes => {
                    f.get(st.row);
                    f.i32c(3);
                    f.i(I::I32Shl);
                    f.get(st.heap);
                    f.i(I::I32Store(mem(base, 2)));
                    f.get(st.row);
                    f.i32c(3);
                    f.i(I::I32Shl);
                    f.get(v.len);
                    f.i(I::I32Store(mem(base + 4, 2)));
                    f.get(st.heap);
                    f.i32c(heap_at as i32);
                    f.i(I::I32Add);
                    f.get(v.v);
                    f.get(v.len);
                    f.i(I::MemoryCopy {
                        src_mem: 0,
                        dst_mem: 0,
                    });
                    f.get(st.heap);
                    f.get(v.len);
                    f.i(I::I32Add);
                    f.set(st.heap);
                }
                PhysicalType::I16 => {
                    f.get(v.v);
                    f.get(v.v);
                    f.i(I::I32Extend16S);
                    f.i(I::I32Ne);
                    f.if_();
                    fail(f, ErrorCode::Overflow);
                    f.end();
                    f.get(st.row);
                    f.i32c(1);
                    f.i(I::I32Shl);
                    f.get(v.v);
                    f.i(I::I32Store16(mem(base, 1)));
                }
                PhysicalType::Bool => {
                    f.get(st.row);
                    f.get(v.v);
                    f.i(I::I32Store8(mem(base, 0)));
                }
                PhysicalType::I32 => {
                    f.get(st.row);
                    f.i32c(2);
                    f.i(I::I32Shl);
                    f.get(v.v);
                    f.i(I::I32Store(mem(base, 2)));
                }
                PhysicalType::I64 => {
                    f.get(st.row);
                    f.i32c(3);
                    f.i(I::I32Shl);
                    f.get(v.v);
                    f.i(I::I64Store(mem(base, 3)));
                }
                PhysicalType::F64 => {
                    f.get(st.row);
                    f.i32c(3);
                    f.i(I::I32Shl);
                    f.get(v.v);
                    f.i(I::F64Store(mem(base, 3)));
                }
                PhysicalType::I128 => {
                    f.get(st.row);
                    f.i32c(4);
                    f.i(I::I32Shl);
                    f.get(v.v);
                    f.i(I::I64Store(mem(base, 3)));
                    f.get(st.row);
                    f.i32c(4);
                    f.i(I::I32Shl);
                    if v.prim == Prim::I128 {
                        f.get(v.len);
                    } else {
                        f.get(v.v);
                        f.i64c(63);
                        f.i(I::I64ShrS);
                    }
                    f.i(I::I64Store(mem(base + 8, 3)));
                }
            }
            Ok(())
        };
        match v.null {
            Some(n) => {
                self.f.get(n);
                self.f.i(I::I32Eqz);
                self.f.if_();
                write(self)?;
                self.f.end();
            }
            None => write(self)?,
        }
        Ok(())
    }
}
