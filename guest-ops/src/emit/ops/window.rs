//! Window functions: the input materialised and sorted by its partition keys
//! then its ORDER BY keys, then walked once. The walk keeps the bounds of the
//! current partition and of the current row's peer group (the rows equal on
//! the ORDER BY keys); each function reads the rows it needs by index.
//!
//! An aggregate whose frame starts at the partition's first row keeps a
//! running state that only grows (every frame end is monotonic), so it costs
//! one update per row; any other frame is aggregated afresh for each row, in
//! time proportional to the frame's length.

use super::*;
use crate::plan::{Frame, FrameBound, WinCall, WinFunc};

/// The walk's position, as `i32` locals: the row, its partition `[ps, pe)`,
/// its peer group `[qs, qe)` and the peer group's number in the partition.
#[derive(Clone, Copy)]
struct Pos {
    arr: u32,
    i: u32,
    ps: u32,
    pe: u32,
    qs: u32,
    qe: u32,
    dense: u32,
}

/// The register type of a window call's result over input slots `input`.
pub(super) fn win_prim(c: &WinCall, input: &[Prim], inits: &[InitSlot]) -> Result<Prim, EmitError> {
    Ok(match c.func {
        WinFunc::RowNumber | WinFunc::Rank | WinFunc::DenseRank => Prim::I64,
        WinFunc::Ntile(_) => Prim::I32,
        WinFunc::PercentRank | WinFunc::CumeDist => Prim::F64,
        WinFunc::Shift(_) | WinFunc::FirstValue | WinFunc::LastValue | WinFunc::NthValue(_) => {
            match &c.arg {
                Some(e) => expr_prim(e, input, inits)?,
                None => {
                    return Err(EmitError::Plan(
                        "a window value function without argument".into(),
                    ));
                }
            }
        }
        WinFunc::Agg(func) => agg_prim(
            &AggCall {
                func,
                arg: c.arg.clone(),
            },
            input,
            inits,
        )?,
    })
}

impl Gen {
    pub(super) fn window(
        &mut self,
        input: &Op,
        partition: &[usize],
        order: &[SortKey],
        calls: &[WinCall],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let ((arr, _cap, len), prims) = self.materialise(input)?;
        if partition.iter().any(|c| *c >= prims.len()) || order.iter().any(|k| k.col >= prims.len())
        {
            return Err(EmitError::Plan("a window key out of range".into()));
        }
        let pkeys: Vec<SortKey> = partition
            .iter()
            .map(|&col| SortKey {
                col,
                desc: false,
                nulls_first: false,
            })
            .collect();
        let mut all = pkeys.clone();
        all.extend_from_slice(order);
        if !all.is_empty() {
            let cmp = self.comparator(&all, &prims);
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
        let pcmp = (!pkeys.is_empty()).then(|| self.comparator(&pkeys, &prims));
        let ocmp = (!order.is_empty()).then(|| self.comparator(order, &prims));
        let out_prims = calls
            .iter()
            .map(|c| win_prim(c, &prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        for c in calls {
            check_frame(c)?;
        }
        // aggregate states, one slot per call; running ones keep how far
        // they have read
        let state = self.static_alloc(SLOT * calls.len().max(1) as u32, 16);
        let base = self.f.local(ValType::I32);
        let read: Vec<u32> = calls.iter().map(|_| self.f.local(ValType::I32)).collect();
        let p = Pos {
            arr,
            i: self.f.local(ValType::I32),
            ps: self.f.local(ValType::I32),
            pe: self.f.local(ValType::I32),
            qs: self.f.local(ValType::I32),
            qe: self.f.local(ValType::I32),
            dense: self.f.local(ValType::I32),
        };
        self.f.set_i32(base, state as i32);
        self.f.set_i32(p.i, 0);
        self.f.set_i32(p.pe, 0);
        self.f.set_i32(p.qe, 0);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(p.i);
        self.f.get(len);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        // a new partition: find its end, start the running aggregates
        self.f.get(p.i);
        self.f.get(p.pe);
        self.f.i(I::I32Eq);
        self.f.if_();
        self.f.get(p.i);
        self.f.set(p.ps);
        match pcmp {
            Some(cmp) => self.run_end(p, p.ps, p.pe, len, cmp),
            None => {
                self.f.get(len);
                self.f.set(p.pe);
            }
        }
        self.f.set_i32(p.dense, 0);
        self.f.get(p.i);
        self.f.set(p.qe);
        for (k, (c, prim)) in calls.iter().zip(&out_prims).enumerate() {
            if let WinFunc::Agg(func) = c.func
                && c.frame.start == FrameBound::UnboundedPreceding
            {
                let a = AggCall {
                    func,
                    arg: c.arg.clone(),
                };
                let wide = self.wide64s(std::slice::from_ref(&a), &prims)?[0];
                self.agg_init(base, SLOT * k as u32, &a, *prim, wide);
                self.f.get(p.ps);
                self.f.set(read[k]);
            }
        }
        self.f.end();
        // a new peer group
        self.f.get(p.i);
        self.f.get(p.qe);
        self.f.i(I::I32Eq);
        self.f.if_();
        self.f.get(p.i);
        self.f.set(p.qs);
        match ocmp {
            Some(cmp) => self.run_end(p, p.qs, p.qe, p.pe, cmp),
            None => {
                self.f.get(p.pe);
                self.f.set(p.qe);
            }
        }
        self.f.inc(p.dense);
        self.f.end();
        let rec = self.f.local(ValType::I32);
        self.record_at(arr, p.i);
        self.f.set(rec);
        let mut t = self.load_record(rec, 0, &prims);
        for (k, (c, prim)) in calls.iter().zip(&out_prims).enumerate() {
            let v = self.win_value(p, c, *prim, &t, &prims, (base, SLOT * k as u32), read[k])?;
            t.push(v);
        }
        self.row(consume, &t)?;
        self.f.inc(p.i);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// Pushes the record pointer `arr[idx]`.
    fn record_at(&mut self, arr: u32, idx: u32) {
        self.f.get(arr);
        self.f.get(idx);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
        self.f.i(I::I32Load(mem(0, 2)));
    }

    /// `end = start + 1`, then past every following row before `limit` that
    /// `cmp` finds equal to the row at `start`.
    fn run_end(&mut self, p: Pos, start: u32, end: u32, limit: u32, cmp: u32) {
        self.f.get(start);
        self.f.i32c(1);
        self.f.i(I::I32Add);
        self.f.set(end);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(end);
        self.f.get(limit);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.record_at(p.arr, start);
        self.record_at(p.arr, end);
        self.f.i(I::Call(cmp));
        self.f.br_if(done);
        self.f.inc(end);
        self.f.br(lp);
        self.f.end();
        self.f.end();
    }

    /// The frame of the current row as `i32` locals `[fs, fe)`, within the
    /// partition (empty when `fe <= fs`).
    fn frame_bounds(&mut self, p: Pos, fr: Frame) -> (u32, u32) {
        let bound = |g: &mut Gen, b: FrameBound, end: bool| {
            // as i64, before clamping to the partition
            let rows_off = |g: &mut Gen, n: u64, sign: i64| {
                let n = i64::try_from(n)
                    .unwrap_or(i64::MAX)
                    .min(i64::from(i32::MAX));
                g.f.get(p.i);
                g.f.i(I::I64ExtendI32U);
                g.f.i64c(sign * n + i64::from(end));
                g.f.i(I::I64Add);
            };
            match b {
                FrameBound::UnboundedPreceding => {
                    g.f.get(p.ps);
                    g.f.i(I::I64ExtendI32U);
                }
                FrameBound::UnboundedFollowing => {
                    g.f.get(p.pe);
                    g.f.i(I::I64ExtendI32U);
                }
                FrameBound::Preceding(n) => rows_off(g, n, -1),
                FrameBound::Following(n) => rows_off(g, n, 1),
                FrameBound::CurrentRow if fr.rows => rows_off(g, 0, 1),
                FrameBound::CurrentRow => {
                    g.f.get(if end { p.qe } else { p.qs });
                    g.f.i(I::I64ExtendI32U);
                }
            }
        };
        let clamp = |g: &mut Gen, out: u32| {
            // out = min(max(x, ps), pe), x an i64 on the stack
            let x = g.f.local(ValType::I64);
            g.f.set(x);
            g.f.get(x);
            g.f.get(p.ps);
            g.f.i(I::I64ExtendI32U);
            g.f.get(x);
            g.f.get(p.ps);
            g.f.i(I::I64ExtendI32U);
            g.f.i(I::I64GtS);
            g.f.i(I::Select);
            g.f.set(x);
            g.f.get(x);
            g.f.get(p.pe);
            g.f.i(I::I64ExtendI32U);
            g.f.get(x);
            g.f.get(p.pe);
            g.f.i(I::I64ExtendI32U);
            g.f.i(I::I64LtS);
            g.f.i(I::Select);
            g.f.i(I::I32WrapI64);
            g.f.set(out);
        };
        let fs = self.f.local(ValType::I32);
        let fe = self.f.local(ValType::I32);
        bound(self, fr.start, false);
        clamp(self, fs);
        bound(self, fr.end, true);
        clamp(self, fe);
        // an end before the start: empty
        self.f.get(fe);
        self.f.get(fs);
        self.f.get(fe);
        self.f.get(fs);
        self.f.i(I::I32GtU);
        self.f.i(I::Select);
        self.f.set(fe);
        (fs, fe)
    }

    /// The value of `arg` at row `idx` (an `i32` local) of the sorted input,
    /// into `out`.
    fn value_at(
        &mut self,
        arr: u32,
        idx: u32,
        arg: &Expr,
        prims: &[Prim],
        out: &Val,
    ) -> Result<(), EmitError> {
        let rec = self.f.local(ValType::I32);
        self.record_at(arr, idx);
        self.f.set(rec);
        let t = self.load_record(rec, 0, prims);
        let v = self.expr(arg, &t)?;
        if v.prim != out.prim {
            return Err(EmitError::Plan("a window value of another type".into()));
        }
        self.copy_val(&v, out);
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the walk's position, the call, and where its state lives"
    )]
    fn win_value(
        &mut self,
        p: Pos,
        c: &WinCall,
        prim: Prim,
        cur: &[Val],
        prims: &[Prim],
        (base, off): (u32, u32),
        read: u32,
    ) -> Result<Val, EmitError> {
        let sub = |g: &mut Gen, a: u32, b: u32| {
            g.f.get(a);
            g.f.get(b);
            g.f.i(I::I32Sub);
        };
        Ok(match c.func {
            WinFunc::RowNumber | WinFunc::Rank | WinFunc::DenseRank => {
                let v = self.fresh(Prim::I64, false);
                match c.func {
                    WinFunc::RowNumber => sub(self, p.i, p.ps),
                    WinFunc::Rank => sub(self, p.qs, p.ps),
                    _ => {
                        self.f.get(p.dense);
                        self.f.i32c(1);
                        self.f.i(I::I32Sub);
                    }
                }
                self.f.i(I::I64ExtendI32U);
                self.f.i64c(1);
                self.f.i(I::I64Add);
                self.f.set(v.v);
                v
            }
            WinFunc::PercentRank => {
                // (qs - ps) / (pe - ps - 1), 0 for a partition of one row
                let v = self.fresh(Prim::F64, false);
                self.f.i(I::F64Const(0.0.into()));
                self.f.set(v.v);
                self.f.get(p.pe);
                self.f.get(p.ps);
                self.f.i(I::I32Sub);
                self.f.i32c(1);
                self.f.i(I::I32GtU);
                self.f.if_();
                sub(self, p.qs, p.ps);
                self.f.i(I::F64ConvertI32U);
                sub(self, p.pe, p.ps);
                self.f.i32c(1);
                self.f.i(I::I32Sub);
                self.f.i(I::F64ConvertI32U);
                self.f.i(I::F64Div);
                self.f.set(v.v);
                self.f.end();
                v
            }
            WinFunc::CumeDist => {
                let v = self.fresh(Prim::F64, false);
                sub(self, p.qe, p.ps);
                self.f.i(I::F64ConvertI32U);
                sub(self, p.pe, p.ps);
                self.f.i(I::F64ConvertI32U);
                self.f.i(I::F64Div);
                self.f.set(v.v);
                v
            }
            WinFunc::Ntile(k) => self.ntile(p, k)?,
            WinFunc::Shift(back) => self.shift_value(p, c, back, prim, cur, prims)?,
            WinFunc::FirstValue | WinFunc::LastValue | WinFunc::NthValue(_) => {
                self.frame_value(p, c, prim, prims)?
            }
            WinFunc::Agg(func) => self.frame_agg(p, c, func, prim, prims, (base, off), read)?,
        })
    }

    /// `lag` / `lead`: the argument `back` rows before the current one in
    /// its partition, else the default.
    fn shift_value(
        &mut self,
        p: Pos,
        c: &WinCall,
        back: i64,
        prim: Prim,
        cur: &[Val],
        prims: &[Prim],
    ) -> Result<Val, EmitError> {
        let arg = c
            .arg
            .as_ref()
            .ok_or_else(|| EmitError::Plan("lag/lead without argument".into()))?;
        let out = self.fresh(prim, true);
        let j = self.f.local(ValType::I64);
        self.f.get(p.i);
        self.f.i(I::I64ExtendI32U);
        self.f
            .i64c(back.clamp(-i64::from(i32::MAX), i64::from(i32::MAX)));
        self.f.i(I::I64Sub);
        self.f.set(j);
        // ps <= j < pe
        self.f.get(j);
        self.f.get(p.ps);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64GeS);
        self.f.get(j);
        self.f.get(p.pe);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64LtS);
        self.f.i(I::I32And);
        self.f.if_();
        let j32 = self.f.local(ValType::I32);
        self.f.get(j);
        self.f.i(I::I32WrapI64);
        self.f.set(j32);
        self.value_at(p.arr, j32, arg, prims, &out)?;
        self.f.else_();
        match &c.default {
            Some(d) => {
                let v = self.expr(d, cur)?;
                if v.prim != prim {
                    return Err(EmitError::Plan("a lag/lead default of another type".into()));
                }
                self.copy_val(&v, &out);
            }
            None => self.set_null(&out),
        }
        self.f.end();
        Ok(out)
    }

    /// `first_value`, `last_value` and `nth_value` of the frame.
    fn frame_value(
        &mut self,
        p: Pos,
        c: &WinCall,
        prim: Prim,
        prims: &[Prim],
    ) -> Result<Val, EmitError> {
        let arg = c
            .arg
            .as_ref()
            .ok_or_else(|| EmitError::Plan("a value function without argument".into()))?;
        let out = self.fresh(prim, true);
        let (fs, fe) = self.frame_bounds(p, c.frame);
        let j = self.f.local(ValType::I64);
        match c.func {
            WinFunc::FirstValue => {
                self.f.get(fs);
                self.f.i(I::I64ExtendI32U);
            }
            WinFunc::LastValue => {
                self.f.get(fe);
                self.f.i(I::I64ExtendI32U);
                self.f.i64c(1);
                self.f.i(I::I64Sub);
            }
            _ => {
                let WinFunc::NthValue(n) = c.func else {
                    return Err(EmitError::Plan("nth_value".into()));
                };
                self.f.get(fs);
                self.f.i(I::I64ExtendI32U);
                self.f.i64c(n.clamp(1, i64::from(i32::MAX)) - 1);
                self.f.i(I::I64Add);
            }
        }
        self.f.set(j);
        // fs <= j < fe
        self.f.get(j);
        self.f.get(fs);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64GeS);
        self.f.get(j);
        self.f.get(fe);
        self.f.i(I::I64ExtendI32U);
        self.f.i(I::I64LtS);
        self.f.i(I::I32And);
        self.f.if_();
        let j32 = self.f.local(ValType::I32);
        self.f.get(j);
        self.f.i(I::I32WrapI64);
        self.f.set(j32);
        self.value_at(p.arr, j32, arg, prims, &out)?;
        self.f.else_();
        self.set_null(&out);
        self.f.end();
        Ok(out)
    }

    /// An aggregate over the frame: a running state when the frame starts at
    /// the partition's first row, else computed afresh.
    #[expect(
        clippy::too_many_arguments,
        reason = "the walk's position, the call, and where its state lives"
    )]
    fn frame_agg(
        &mut self,
        p: Pos,
        c: &WinCall,
        func: AggFunc,
        prim: Prim,
        prims: &[Prim],
        (base, off): (u32, u32),
        read: u32,
    ) -> Result<Val, EmitError> {
        let a = AggCall {
            func,
            arg: c.arg.clone(),
        };
        let wide = self.wide64s(std::slice::from_ref(&a), prims)?[0];
        let (fs, fe) = self.frame_bounds(p, c.frame);
        if c.frame.start != FrameBound::UnboundedPreceding {
            // aggregated afresh over [fs, fe)
            self.agg_init(base, off, &a, prim, wide);
            self.f.get(fs);
            self.f.set(read);
        }
        // add the rows from `read` up to the frame's end
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(read);
        self.f.get(fe);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        let rec = self.f.local(ValType::I32);
        self.record_at(p.arr, read);
        self.f.set(rec);
        let t = self.load_record(rec, 0, prims);
        self.agg_update(base, off, &a, &t, prims, false)?;
        self.f.inc(read);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        let v = self.load_slot(base, off, prim);
        if wide {
            self.finish_wide_sums(base, off, &[true], std::slice::from_ref(&v));
        }
        Ok(v)
    }

    /// `ntile(k)`: with n rows, q = n / k and r = n % k, the first r buckets
    /// hold q + 1 rows and the rest q.
    fn ntile(&mut self, p: Pos, k: i64) -> Result<Val, EmitError> {
        if k <= 0 {
            return Err(EmitError::Plan("ntile of a bucket count below one".into()));
        }
        let v = self.fresh(Prim::I32, false);
        let (n, r, q, rem, big) = (
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
            self.f.local(ValType::I64),
        );
        self.f.get(p.pe);
        self.f.get(p.ps);
        self.f.i(I::I32Sub);
        self.f.i(I::I64ExtendI32U);
        self.f.set(n);
        self.f.get(p.i);
        self.f.get(p.ps);
        self.f.i(I::I32Sub);
        self.f.i(I::I64ExtendI32U);
        self.f.set(r);
        self.f.get(n);
        self.f.i64c(k);
        self.f.i(I::I64DivU);
        self.f.set(q);
        self.f.get(n);
        self.f.i64c(k);
        self.f.i(I::I64RemU);
        self.f.set(rem);
        // rows in the larger buckets
        self.f.get(rem);
        self.f.get(q);
        self.f.i64c(1);
        self.f.i(I::I64Add);
        self.f.i(I::I64Mul);
        self.f.set(big);
        self.f.get(r);
        self.f.get(big);
        self.f.i(I::I64LtU);
        self.f.if_with(ValType::I64);
        self.f.get(r);
        self.f.get(q);
        self.f.i64c(1);
        self.f.i(I::I64Add);
        self.f.i(I::I64DivU);
        self.f.else_();
        // here q >= 1: r >= rem * (q + 1) needs n > rem, so q > 0
        self.f.get(rem);
        self.f.get(r);
        self.f.get(big);
        self.f.i(I::I64Sub);
        self.f.get(q);
        self.f.i(I::I64DivU);
        self.f.i(I::I64Add);
        self.f.end();
        self.f.i64c(1);
        self.f.i(I::I64Add);
        self.f.i(I::I32WrapI64);
        self.f.set(v.v);
        Ok(v)
    }

    /// Sets `v` NULL (its value locals keep whatever they held).
    fn set_null(&mut self, v: &Val) {
        if let Some(n) = v.null {
            self.f.set_i32(n, 1);
        }
        if v.prim == Prim::I128 {
            // an I128's NULL is also its high half's marker when stored
            self.f.i64c(I128_NULL);
            self.f.set(v.len);
        }
    }
}

/// Refuses a frame the walk does not compute.
fn check_frame(c: &WinCall) -> Result<(), EmitError> {
    let f = c.frame;
    let offset = |b: FrameBound| matches!(b, FrameBound::Preceding(_) | FrameBound::Following(_));
    if !f.rows && (offset(f.start) || offset(f.end)) {
        return Err(EmitError::Unsupported(
            "RANGE frames with an offset (use ROWS)".into(),
        ));
    }
    if f.start == FrameBound::UnboundedFollowing || f.end == FrameBound::UnboundedPreceding {
        return Err(EmitError::Plan(
            "a frame that starts after everything or ends before it".into(),
        ));
    }
    Ok(())
}
