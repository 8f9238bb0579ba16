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
use crate::plan::{FrameBound, FrameUnits, WinCall, WinFunc};

/// The walk's position, as `i32` locals: the row, its partition `[ps, pe)`,
/// its peer group `[qs, qe)` and the peer group's number in the partition;
/// and the function that tells whether two rows differ in the ORDER BY key
/// (none without one: every row is a peer).
#[derive(Clone, Copy)]
struct Pos {
    cmp: Option<u32>,
    arr: u32,
    i: u32,
    ps: u32,
    pe: u32,
    qs: u32,
    qe: u32,
    dense: u32,
    /// The ORDER BY key's slot and the current row's value of it, when it
    /// has exactly one (a RANGE frame with an offset reads them); set once
    /// the walk has loaded the row.
    key: Option<(usize, Val)>,
}

/// A window call and its walk state: where its RANGE offset bounds (start,
/// end) were last found.
#[derive(Clone, Copy)]
struct Call<'a> {
    c: &'a WinCall,
    last: (u32, u32),
}

/// The register type of a window call's result over input slots `input`.
pub(super) fn win_prim(c: &WinCall, input: &[Prim], inits: &[InitSlot]) -> Result<Prim, EmitError> {
    Ok(match c.func {
        WinFunc::RowNumber | WinFunc::Rank | WinFunc::DenseRank => Prim::I64,
        WinFunc::Ntile(_) => Prim::I32,
        WinFunc::PercentRank | WinFunc::CumeDist => Prim::F64,
        WinFunc::StringAgg => Prim::Str,
        WinFunc::PercentileCont(_) => Prim::F64,
        WinFunc::Shift(_)
        | WinFunc::FirstValue
        | WinFunc::LastValue
        | WinFunc::NthValue(_)
        | WinFunc::PercentileDisc(_)
        | WinFunc::Mode => match &c.arg {
            Some(e) => expr_prim(e, input, inits)?,
            None => {
                return Err(EmitError::Plan(
                    "a window value function without argument".into(),
                ));
            }
        },
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
        self.sort_records((arr, len), &all, &prims);
        let pcmp = (!pkeys.is_empty()).then(|| self.comparator(&pkeys, &prims));
        let ocmp = (!order.is_empty()).then(|| self.comparator(order, &prims));
        let out_prims = calls
            .iter()
            .map(|c| win_prim(c, &prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        for c in calls {
            check_frame(c, order, &prims, &self.inits)?;
        }
        // aggregate states, one slot per call; running ones keep how far
        // they have read
        let state = self.static_alloc(SLOT * calls.len().max(1) as u32, 16);
        let base = self.f.local(ValType::I32);
        let read: Vec<u32> = calls.iter().map(|_| self.f.local(ValType::I32)).collect();
        // the functions computed over a whole frame at once keep their last
        // frame and value: a frame seen again (every row of a partition
        // whose frame is all of it) costs nothing
        let mut cached = Vec::with_capacity(calls.len());
        for (c, prim) in calls.iter().zip(&out_prims) {
            cached.push(if ordered(c.func) {
                let (lfs, lfe) = (self.f.local(ValType::I32), self.f.local(ValType::I32));
                self.f.set_i32(lfs, -1);
                self.f.set_i32(lfe, -1);
                Some((lfs, lfe, self.fresh(*prim, true)))
            } else {
                None
            });
        }
        let p = Pos {
            cmp: ocmp,
            arr,
            i: self.f.local(ValType::I32),
            ps: self.f.local(ValType::I32),
            pe: self.f.local(ValType::I32),
            qs: self.f.local(ValType::I32),
            qe: self.f.local(ValType::I32),
            dense: self.f.local(ValType::I32),
            key: None,
        };
        // where each call's RANGE offset bounds were last found: they only
        // move forward, so finding them costs O(rows) in all
        let lasts: Vec<(u32, u32)> = calls
            .iter()
            .map(|_| (self.f.local(ValType::I32), self.f.local(ValType::I32)))
            .collect();
        // (from the first row each time the window runs: a recursive step
        // runs it again every round)
        for &(s, e) in &lasts {
            self.f.set_i32(s, 0);
            self.f.set_i32(e, 0);
        }
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
        let p = Pos {
            key: match order {
                [k] => Some((k.col, t[k.col])),
                _ => None,
            },
            ..p
        };
        for (k, (c, prim)) in calls.iter().zip(&out_prims).enumerate() {
            let at = Call { c, last: lasts[k] };
            let v = match cached.get(k).copied().flatten() {
                Some(cache) => self.frame_ordered(p, at, *prim, &prims, cache)?,
                None => {
                    self.win_value(p, at, *prim, &t, &prims, (base, SLOT * k as u32), read[k])?
                }
            };
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

    /// For a GROUPS frame, pushes (as an `i64`) where bound `b` (`n`
    /// PRECEDING or FOLLOWING) puts the frame's first row (`end` false) or
    /// the row after its last: the first row of the peer group `n` groups
    /// before or after the current row's, or the end of that group. Fewer
    /// groups than `n` before the current one end the frame before the
    /// partition (empty) and start it at the partition's first row; fewer
    /// after, at its end.
    fn groups_bound(&mut self, p: Pos, b: FrameBound, end: bool) {
        let (n, preceding) = match b {
            FrameBound::Preceding(n) => (n, true),
            FrameBound::Following(n) => (n, false),
            _ => (0, false),
        };
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        let Some(cmp) = p.cmp else {
            // no ORDER BY (refused before this): the partition is one group
            let at = match (preceding, end, n) {
                (true, true, 0) => p.qe,
                (true, _, _) => p.ps,
                (false, false, 0) => p.qs,
                (false, _, _) => p.pe,
            };
            self.f.get(at);
            self.f.i(I::I64ExtendI32U);
            return;
        };
        let at = self.f.local(ValType::I32);
        let k = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        self.f.set_i32(k, n);
        if preceding {
            // at: the first row of the group n groups before the current one
            self.f.get(p.qs);
            self.f.set(at);
            let (j, jm, last) = (
                self.f.local(ValType::I32),
                self.f.local(ValType::I32),
                self.f.local(ValType::I32),
            );
            self.over_groups(k, at, p.ps, I::I32LeU, |g| {
                // the previous group: back from its last row while peers
                g.f.set_less_one(last, at);
                g.f.get(last);
                g.f.set(j);
                let d2 = g.f.block();
                let l2 = g.f.loop_();
                g.f.get(j);
                g.f.get(p.ps);
                g.f.i(I::I32LeU);
                g.f.br_if(d2);
                g.f.set_less_one(jm, j);
                g.record_at(p.arr, jm);
                g.record_at(p.arr, last);
                g.f.i(I::Call(cmp));
                g.f.br_if(d2);
                g.f.get(jm);
                g.f.set(j);
                g.f.br(l2);
                g.f.end();
                g.f.end();
                g.f.get(j);
                g.f.set(at);
            });
            if end {
                // the end of that group; none when there were fewer groups
                self.f.get(k);
                self.f.i(I::I32Eqz);
                self.f.if_();
                self.run_end(p, at, e, p.pe, cmp);
                self.f.else_();
                self.f.get(p.ps);
                self.f.set(e);
                self.f.end();
                self.f.get(e);
            } else {
                self.f.get(at);
            }
        } else {
            // over n groups from the current group's first row (the start)
            // or from the row after it (the end)
            self.f.get(if end { p.qe } else { p.qs });
            self.f.set(at);
            self.over_groups(k, at, p.pe, I::I32GeU, |g| {
                g.run_end(p, at, e, p.pe, cmp);
                g.f.get(e);
                g.f.set(at);
            });
            self.f.get(at);
        }
        self.f.i(I::I64ExtendI32U);
    }

    /// Moves `at` over at most `k` peer groups (counting `k` down), one
    /// `step` each, stopping early once `stop` holds of `at` and `bound` (the
    /// partition's end is reached).
    fn over_groups(
        &mut self,
        k: u32,
        at: u32,
        bound: u32,
        stop: I<'static>,
        step: impl FnOnce(&mut Self),
    ) {
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(k);
        self.f.i(I::I32Eqz);
        self.f.br_if(done);
        self.f.get(at);
        self.f.get(bound);
        self.f.i(stop);
        self.f.br_if(done);
        step(self);
        self.f.set_less_one(k, k);
        self.f.br(lp);
        self.f.end();
        self.f.end();
    }

    /// The frame of the current row as `i32` locals `[fs, fe)`, within the
    /// partition (empty when `fe <= fs`).
    fn frame_bounds(&mut self, p: Pos, at: Call<'_>) -> Result<(u32, u32), EmitError> {
        let fr = at.c.frame;
        let tests = at.c.range.as_ref();
        let bound = |g: &mut Gen, b: FrameBound, end: bool| -> Result<(), EmitError> {
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
                FrameBound::Preceding(_) | FrameBound::Following(_)
                    if fr.units == FrameUnits::Groups =>
                {
                    g.groups_bound(p, b, end);
                }
                FrameBound::Preceding(_) | FrameBound::Following(_)
                    if fr.units == FrameUnits::Range =>
                {
                    let test = tests
                        .and_then(|t| {
                            if end {
                                t.end.as_ref()
                            } else {
                                t.start.as_ref()
                            }
                        })
                        .ok_or_else(|| EmitError::Plan("a RANGE offset without its test".into()))?;
                    let last = if end { at.last.1 } else { at.last.0 };
                    g.range_bound(p, test, end, last)?;
                }
                FrameBound::Preceding(n) => rows_off(g, n, -1),
                FrameBound::Following(n) => rows_off(g, n, 1),
                FrameBound::CurrentRow if fr.units == FrameUnits::Rows => rows_off(g, 0, 1),
                FrameBound::CurrentRow => {
                    g.f.get(if end { p.qe } else { p.qs });
                    g.f.i(I::I64ExtendI32U);
                }
            }
            Ok(())
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
        bound(self, fr.start, false)?;
        clamp(self, fs);
        bound(self, fr.end, true)?;
        clamp(self, fe);
        // an end before the start: empty
        self.f.get(fe);
        self.f.get(fs);
        self.f.get(fe);
        self.f.get(fs);
        self.f.i(I::I32GtU);
        self.f.i(I::Select);
        self.f.set(fe);
        Ok((fs, fe))
    }

    /// For a RANGE frame, pushes (as an `i64`) where the offset bound tested
    /// by `test` puts the frame's first row (`end` false) or the row after
    /// its last. A current row whose key is NULL has its peers (the NULLs)
    /// for its frame. Otherwise the walk goes forward from the partition's
    /// first row, or from where the bound was found for the row before
    /// (`last`: the bound never moves back), past the rows outside the
    /// frame (a start bound) or inside it (an end bound). A NULL key before
    /// the current row is passed (they sort before every value), one after
    /// it ends the walk.
    fn range_bound(&mut self, p: Pos, test: &Expr, end: bool, last: u32) -> Result<(), EmitError> {
        let (col, cur) = p
            .key
            .ok_or_else(|| EmitError::Plan("a RANGE offset without one ORDER BY key".into()))?;
        let off = SLOT * col as u32;
        let at = self.f.local(ValType::I32);
        match cur.null {
            Some(n) => {
                self.f.get(n);
                self.f.if_();
                self.f.get(if end { p.qe } else { p.qs });
                self.f.set(at);
                self.f.else_();
            }
            None => {
                // a block for the else arm's end
                self.f.block();
            }
        }
        // at = max(last, ps)
        self.f.get(last);
        self.f.get(p.ps);
        self.f.get(last);
        self.f.get(p.ps);
        self.f.i(I::I32GtU);
        self.f.i(I::Select);
        self.f.set(at);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(at);
        self.f.get(p.pe);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        let orec = self.f.local(ValType::I32);
        self.record_at(p.arr, at);
        self.f.set(orec);
        let other = self.load_slot(orec, off, cur.prim);
        let step = self.f.block();
        if let Some(n) = other.null {
            // a NULL: passed before the current row, the end after it
            self.f.get(n);
            self.f.if_();
            self.f.get(at);
            self.f.get(p.qs);
            self.f.i(I::I32GeU);
            self.f.br_if(done);
            self.f.br(step);
            self.f.end();
        }
        let t = self.expr(
            test,
            &[
                Val {
                    null: None,
                    ..other
                },
                Val { null: None, ..cur },
            ],
        )?;
        if t.prim != Prim::Bool {
            return Err(EmitError::Plan("a RANGE test that is not a BOOLEAN".into()));
        }
        // in range (and not NULL)
        self.f.get(t.v);
        if let Some(n) = t.null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.i(I::I32And);
        }
        if !end {
            // a start bound stops at the first row in range
            self.f.i(I::I32Eqz);
        }
        self.f.i(I::I32Eqz);
        self.f.br_if(done);
        self.f.end();
        self.f.inc(at);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        self.f.end();
        self.f.get(at);
        self.f.set(last);
        self.f.get(at);
        self.f.i(I::I64ExtendI32U);
        Ok(())
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
        at: Call<'_>,
        prim: Prim,
        cur: &[Val],
        prims: &[Prim],
        (base, off): (u32, u32),
        read: u32,
    ) -> Result<Val, EmitError> {
        let c = at.c;
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
                self.frame_value(p, at, prim, prims)?
            }
            WinFunc::Agg(func) => self.frame_agg(p, at, func, prim, prims, (base, off), read)?,
            WinFunc::StringAgg
            | WinFunc::PercentileCont(_)
            | WinFunc::PercentileDisc(_)
            | WinFunc::Mode => {
                return Err(EmitError::Plan(
                    "a whole-frame function without its cache".into(),
                ));
            }
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
        at: Call<'_>,
        prim: Prim,
        prims: &[Prim],
    ) -> Result<Val, EmitError> {
        let c = at.c;
        let arg = c
            .arg
            .as_ref()
            .ok_or_else(|| EmitError::Plan("a value function without argument".into()))?;
        let out = self.fresh(prim, true);
        let (fs, fe) = self.frame_bounds(p, at)?;
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
        at: Call<'_>,
        func: AggFunc,
        prim: Prim,
        prims: &[Prim],
        (base, off): (u32, u32),
        read: u32,
    ) -> Result<Val, EmitError> {
        let c = at.c;
        let a = AggCall {
            func,
            arg: c.arg.clone(),
        };
        let wide = self.wide64s(std::slice::from_ref(&a), prims)?[0];
        let (fs, fe) = self.frame_bounds(p, at)?;
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

    /// string_agg, the percentiles and mode over the current row's frame,
    /// computed when the frame is not the one computed last.
    fn frame_ordered(
        &mut self,
        p: Pos,
        at: Call<'_>,
        prim: Prim,
        prims: &[Prim],
        (lfs, lfe, out): (u32, u32, Val),
    ) -> Result<Val, EmitError> {
        let c = at.c;
        let arg = c
            .arg
            .as_ref()
            .ok_or_else(|| EmitError::Plan("a whole-frame function without argument".into()))?;
        let (fs, fe) = self.frame_bounds(p, at)?;
        self.f.get(fs);
        self.f.get(lfs);
        self.f.i(I::I32Ne);
        self.f.get(fe);
        self.f.get(lfe);
        self.f.i(I::I32Ne);
        self.f.i(I::I32Or);
        self.f.if_();
        self.f.get(fs);
        self.f.set(lfs);
        self.f.get(fe);
        self.f.set(lfe);
        match c.func {
            WinFunc::StringAgg => {
                self.string_agg(p.arr, (fs, fe), arg, c.default.as_ref(), prims, &out)?
            }
            WinFunc::Mode => self.mode(p.arr, (fs, fe), arg, prim, prims, &out)?,
            f => self.percentile(p.arr, (fs, fe), arg, f, prims, &out)?,
        }
        self.f.end();
        Ok(out)
    }

    /// Calls `body` with each row index of `[from, to)` in an `i32` local,
    /// inside a "next row" block (`br_cont` skips to the next).
    fn for_rows(
        &mut self,
        (from, to): (u32, u32),
        body: &mut dyn FnMut(&mut Gen, u32) -> Result<(), EmitError>,
    ) -> Result<(), EmitError> {
        let j = self.f.local(ValType::I32);
        self.f.get(from);
        self.f.set(j);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(j);
        self.f.get(to);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        let next = self.f.block();
        self.cont.push(next);
        body(self, j)?;
        self.cont.pop();
        self.f.end();
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// `e` over the record `arr[j]`.
    fn expr_of_row(
        &mut self,
        arr: u32,
        j: u32,
        e: &Expr,
        prims: &[Prim],
    ) -> Result<Val, EmitError> {
        let rec = self.f.local(ValType::I32);
        self.record_at(arr, j);
        self.f.set(rec);
        let t = self.load_record(rec, 0, prims);
        self.expr(e, &t)
    }

    /// string_agg over `[fs, fe)` into `out`: one pass for the length, one
    /// to copy.
    fn string_agg(
        &mut self,
        arr: u32,
        frame: (u32, u32),
        arg: &Expr,
        sep: Option<&Expr>,
        prims: &[Prim],
        out: &Val,
    ) -> Result<(), EmitError> {
        let total = self.f.local(ValType::I64);
        let first = self.f.local(ValType::I32);
        let pos = self.f.local(ValType::I32);
        // pass 1 measures, pass 2 copies to `pos`
        for copy in [false, true] {
            if copy {
                self.f.get(total);
                self.f.i64c(i64::from(super::super::rt::STRING_RESULT_MAX));
                self.f.i(I::I64GtS);
                self.f.if_();
                fail(&mut self.f, ErrorCode::StringTooLong);
                self.f.end();
                let alloc = self.helper(Helper::Alloc);
                self.f.get(total);
                self.f.i(I::I32WrapI64);
                self.f.i(I::Call(alloc));
                self.f.set(pos);
                self.f.get(pos);
                self.f.set(out.v);
                self.f.get(total);
                self.f.i(I::I32WrapI64);
                self.f.set(out.len);
            } else {
                self.f.i64c(0);
                self.f.set(total);
            }
            self.f.set_i32(first, 1);
            self.for_rows(frame, &mut |g, j| {
                let x = g.expr_of_row(arr, j, arg, prims)?;
                if x.prim != Prim::Str {
                    return Err(EmitError::Plan("string_agg of a non-string".into()));
                }
                if let Some(n) = x.null {
                    g.f.get(n);
                    g.br_cont()?;
                }
                let piece = |g: &mut Gen, v: &Val| {
                    if copy {
                        g.f.get(pos);
                        g.f.get(v.v);
                        g.f.get(v.len);
                        g.f.i(I::MemoryCopy {
                            src_mem: 0,
                            dst_mem: 0,
                        });
                        g.f.get(pos);
                        g.f.get(v.len);
                        g.f.i(I::I32Add);
                        g.f.set(pos);
                    } else {
                        g.f.get(total);
                        g.f.get(v.len);
                        g.f.i(I::I64ExtendI32U);
                        g.f.i(I::I64Add);
                        g.f.set(total);
                    }
                };
                if let Some(sep) = sep {
                    g.f.get(first);
                    g.f.i(I::I32Eqz);
                    g.f.if_();
                    let s = g.expr_of_row(arr, j, sep, prims)?;
                    if s.prim != Prim::Str {
                        return Err(EmitError::Plan(
                            "a string_agg separator that is not a string".into(),
                        ));
                    }
                    match s.null {
                        Some(n) => {
                            g.f.get(n);
                            g.f.i(I::I32Eqz);
                            g.f.if_();
                            piece(g, &s);
                            g.f.end();
                        }
                        None => piece(g, &s),
                    }
                    g.f.end();
                }
                piece(g, &x);
                g.f.set_i32(first, 0);
                Ok(())
            })?;
            if !copy {
                // no value: NULL, and no second pass
                if let Some(n) = out.null {
                    self.f.get(first);
                    self.f.set(n);
                }
                self.f.get(first);
                self.f.i(I::I32Eqz);
                self.f.if_();
            }
        }
        self.f.end();
        Ok(())
    }

    /// The non-NULL arguments of `[fs, fe)`: how many (`n`), and the index
    /// of the first (`start`; the window sorts by the argument, so they are
    /// together, after the NULLs or before them).
    fn non_nulls(
        &mut self,
        arr: u32,
        (fs, fe): (u32, u32),
        arg: &Expr,
        prims: &[Prim],
    ) -> Result<(u32, u32), EmitError> {
        let n = self.f.local(ValType::I32);
        let start = self.f.local(ValType::I32);
        self.f.set_i32(n, 0);
        self.for_rows((fs, fe), &mut |g, j| {
            let x = g.expr_of_row(arr, j, arg, prims)?;
            if let Some(nl) = x.null {
                g.f.get(nl);
                g.br_cont()?;
            }
            g.f.inc(n);
            Ok(())
        })?;
        self.f.get(fs);
        self.f.set(start);
        self.f.get(n);
        self.f.if_();
        let x = self.expr_of_row(arr, fs, arg, prims)?;
        if let Some(nl) = x.null {
            self.f.get(nl);
            self.f.if_();
            self.f.get(fe);
            self.f.get(n);
            self.f.i(I::I32Sub);
            self.f.set(start);
            self.f.end();
        }
        self.f.end();
        Ok((n, start))
    }

    /// percentile_cont and percentile_disc over `[fs, fe)` into `out`, as
    /// PostgreSQL computes them (orderedsetaggs.c).
    fn percentile(
        &mut self,
        arr: u32,
        frame: (u32, u32),
        arg: &Expr,
        f: WinFunc,
        prims: &[Prim],
        out: &Val,
    ) -> Result<(), EmitError> {
        let (n, start) = self.non_nulls(arr, frame, arg, prims)?;
        if let Some(nl) = out.null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.set(nl);
        }
        self.f.get(n);
        self.f.if_();
        let at = self.f.local(ValType::I32);
        match f {
            WinFunc::PercentileDisc(frac) => {
                // row ceil(f * n), counted from 1; the first for 0
                self.f.i(I::F64Const(frac.into()));
                self.f.get(n);
                self.f.i(I::F64ConvertI32U);
                self.f.i(I::F64Mul);
                self.f.i(I::F64Ceil);
                self.f.i(I::I32TruncSatF64S);
                self.f.i32c(1);
                self.f.i(I::I32Sub);
                self.f.set(at);
                self.clamp_index(at, n);
                self.f.get(start);
                self.f.get(at);
                self.f.i(I::I32Add);
                self.f.set(at);
                let v = self.expr_of_row(arr, at, arg, prims)?;
                self.copy_val(&v, out);
            }
            WinFunc::PercentileCont(frac) => {
                // first = floor(f * (n - 1)), second = ceil(...),
                // lo + (f * (n - 1) - first) * (hi - lo)
                let x = self.f.local(ValType::F64);
                let lo = self.f.local(ValType::I32);
                let hi = self.f.local(ValType::I32);
                self.f.i(I::F64Const(frac.into()));
                self.f.get(n);
                self.f.i32c(1);
                self.f.i(I::I32Sub);
                self.f.i(I::F64ConvertI32U);
                self.f.i(I::F64Mul);
                self.f.set(x);
                for (idx, round) in [(lo, I::F64Floor), (hi, I::F64Ceil)] {
                    self.f.get(x);
                    self.f.i(round);
                    self.f.i(I::I32TruncSatF64S);
                    self.f.set(idx);
                    self.clamp_index(idx, n);
                    self.f.get(start);
                    self.f.get(idx);
                    self.f.i(I::I32Add);
                    self.f.set(idx);
                }
                let a = self.expr_of_row(arr, lo, arg, prims)?;
                if a.prim != Prim::F64 {
                    return Err(EmitError::Plan("percentile_cont of a non-double".into()));
                }
                self.f.get(a.v);
                self.f.set(out.v);
                self.f.get(lo);
                self.f.get(hi);
                self.f.i(I::I32Ne);
                self.f.if_();
                let b = self.expr_of_row(arr, hi, arg, prims)?;
                // lo + (x - floor(x)) * (hi - lo)
                self.f.get(a.v);
                self.f.get(x);
                self.f.get(x);
                self.f.i(I::F64Floor);
                self.f.i(I::F64Sub);
                self.f.get(b.v);
                self.f.get(a.v);
                self.f.i(I::F64Sub);
                self.f.i(I::F64Mul);
                self.f.i(I::F64Add);
                self.f.set(out.v);
                self.f.end();
            }
            _ => return Err(EmitError::Plan("not a percentile".into())),
        }
        self.f.end();
        Ok(())
    }

    /// `idx = min(max(idx, 0), n - 1)` (n > 0).
    fn clamp_index(&mut self, idx: u32, n: u32) {
        self.f.get(idx);
        self.f.i32c(0);
        self.f.get(idx);
        self.f.i32c(0);
        self.f.i(I::I32GtS);
        self.f.i(I::Select);
        self.f.set(idx);
        self.f.get(idx);
        self.f.get(n);
        self.f.i32c(1);
        self.f.i(I::I32Sub);
        self.f.get(idx);
        self.f.get(n);
        self.f.i32c(1);
        self.f.i(I::I32Sub);
        self.f.i(I::I32LtS);
        self.f.i(I::Select);
        self.f.set(idx);
    }

    /// mode over `[fs, fe)` into `out`: the longest run of equal non-NULL
    /// arguments (the window sorts by the argument), the first of equals.
    fn mode(
        &mut self,
        arr: u32,
        frame: (u32, u32),
        arg: &Expr,
        prim: Prim,
        prims: &[Prim],
        out: &Val,
    ) -> Result<(), EmitError> {
        let best = self.f.local(ValType::I32);
        let best_at = self.f.local(ValType::I32);
        let run = self.f.local(ValType::I32);
        let run_at = self.f.local(ValType::I32);
        let prev = self.fresh(prim, false);
        self.f.set_i32(best, 0);
        self.f.set_i32(run, 0);
        self.for_rows(frame, &mut |g, j| {
            let x = g.expr_of_row(arr, j, arg, prims)?;
            if x.prim != prim {
                return Err(EmitError::Plan("mode of another type".into()));
            }
            if let Some(nl) = x.null {
                g.f.get(nl);
                g.br_cont()?;
            }
            let xv = Val { null: None, ..x };
            // the same value as the run's: longer; else a new run
            g.f.get(run);
            g.f.if_with(ValType::I32);
            g.cmp(CmpOp::Eq, prim, &xv, &prev);
            g.f.else_();
            g.f.i32c(0);
            g.f.end();
            g.f.if_();
            g.f.inc(run);
            g.f.else_();
            g.f.set_i32(run, 1);
            g.f.get(j);
            g.f.set(run_at);
            g.copy_val(&xv, &prev);
            g.f.end();
            g.f.get(run);
            g.f.get(best);
            g.f.i(I::I32GtU);
            g.f.if_();
            g.f.get(run);
            g.f.set(best);
            g.f.get(run_at);
            g.f.set(best_at);
            g.f.end();
            Ok(())
        })?;
        if let Some(nl) = out.null {
            self.f.get(best);
            self.f.i(I::I32Eqz);
            self.f.set(nl);
        }
        self.f.get(best);
        self.f.if_();
        let v = self.expr_of_row(arr, best_at, arg, prims)?;
        self.copy_val(&v, out);
        self.f.end();
        Ok(())
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

/// Whether `f` is computed over its whole frame at once (and cached).
fn ordered(f: WinFunc) -> bool {
    matches!(
        f,
        WinFunc::StringAgg
            | WinFunc::PercentileCont(_)
            | WinFunc::PercentileDisc(_)
            | WinFunc::Mode
    )
}

/// Refuses a frame the walk does not compute.
fn check_frame(
    c: &WinCall,
    order: &[SortKey],
    prims: &[Prim],
    inits: &[InitSlot],
) -> Result<(), EmitError> {
    let f = c.frame;
    let offset = |b: FrameBound| matches!(b, FrameBound::Preceding(_) | FrameBound::Following(_));
    if f.units == FrameUnits::Range && (offset(f.start) || offset(f.end)) {
        let [key] = order else {
            return Err(EmitError::Plan(
                "a RANGE frame with an offset needs exactly one ORDER BY key".into(),
            ));
        };
        let t = c
            .range
            .as_ref()
            .ok_or_else(|| EmitError::Plan("a RANGE offset without its tests".into()))?;
        let two = [prims[key.col], prims[key.col]];
        for (has, test) in [(offset(f.start), &t.start), (offset(f.end), &t.end)] {
            match test {
                Some(e) if has && expr_prim(e, &two, inits)? == Prim::Bool => {}
                None if !has => {}
                _ => {
                    return Err(EmitError::Plan(
                        "RANGE tests that do not match the frame's bounds".into(),
                    ));
                }
            }
        }
    } else if c.range.is_some() {
        return Err(EmitError::Plan(
            "RANGE tests for a frame without offsets".into(),
        ));
    }
    if f.start == FrameBound::UnboundedFollowing || f.end == FrameBound::UnboundedPreceding {
        return Err(EmitError::Plan(
            "a frame that starts after everything or ends before it".into(),
        ));
    }
    Ok(())
}
