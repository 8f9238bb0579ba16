//! The physical operators and the sinks.

use super::expr::cast_types;
use super::fb::{Fb, mem};
use super::rt::{Helper, fail};
use super::{
    EMIT_FN, EmitError, G_TEMP, Gen, INPUT_OPEN_FN, SCAN_NEXT_FN, SCAN_OPEN_FN, Val, WRITE_FN,
};
use crate::abi::ErrorCode;
use crate::plan::{
    AggCall, AggFunc, CmpOp, Expr, Func, JoinKind, Lit, Op, Prim, Sink, SortKey, prim_of,
};
use scratchbird_types::batch::{BatchLayout, LAYOUT_VERSION};
use scratchbird_types::{PhysicalType, SqlType};
use wasm_encoder::{Instruction as I, ValType};

/// Bytes per materialised slot: NULL flag (u32) at 0, value at 8 (Str: pointer at 8,
/// length at 12).
const SLOT: u32 = 16;
/// Bytes before the slots of a hash table entry: hash (i64) at 0, chain link at 8.
const ENTRY_HEAD: u32 = 16;
/// Rows per iteration of the NULL-free scan loop: the loop head (where wasmtime
/// checks the deadline) runs once per this many rows.
const UNROLL: i32 = 2;
/// Initial directory size of hash tables (a power of two).
const DIR_INITIAL: i32 = 1024;

/// A growable array of i32 record pointers: (array, capacity, length) locals.
type PtrVec = (u32, u32, u32);

/// Where an init plan's result lives while the main pipelines run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InitSlot {
    /// A scalar: a 16-byte slot at a static address.
    Scalar { addr: u32, prim: Prim },
    /// EXISTS: an i32 flag at a static address.
    Exists { addr: u32 },
    /// IN (subquery): an open-addressing set of values (locals of `sb_main`) and
    /// whether the subquery produced a NULL.
    Set {
        dir: u32,
        cap: u32,
        count: u32,
        has_null: u32,
        prim: Prim,
    },
}

type Consume<'a> = dyn FnMut(&mut Gen, &[Val]) -> Result<(), EmitError> + 'a;

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

/// The register type of each output slot of `op`.
fn expr_prim(e: &Expr, input: &[Prim], inits: &[InitSlot]) -> Result<Prim, EmitError> {
    Ok(match e {
        Expr::Col(i) => *input
            .get(*i)
            .ok_or_else(|| EmitError::Plan(format!("column slot {i} is out of range")))?,
        Expr::Lit(l) => l.prim(),
        Expr::Arith { prim, .. } | Expr::Neg(prim, _) | Expr::Case { prim, .. } => *prim,
        Expr::Cmp { .. }
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::InSet(..) => Prim::Bool,
        Expr::Cast(c, _) => cast_types(*c).1,
        Expr::Call { func, args } => match func {
            Func::Length
            | Func::Position
            | Func::ExtractDate(_)
            | Func::ExtractTs(_)
            | Func::AddMonths => Prim::I32,
            Func::Like => Prim::Bool,
            Func::Abs => match args.first() {
                Some(a) => expr_prim(a, input, inits)?,
                None => return Err(EmitError::Plan("abs without argument".into())),
            },
            _ => Prim::Str,
        },
        Expr::Init(i) => match inits.get(*i) {
            Some(InitSlot::Scalar { prim, .. }) => *prim,
            Some(InitSlot::Exists { .. }) => Prim::Bool,
            _ => {
                return Err(EmitError::Plan(format!(
                    "init plan {i} is not a value computed before its use"
                )));
            }
        },
    })
}

fn agg_prim(a: &AggCall, input: &[Prim], inits: &[InitSlot]) -> Result<Prim, EmitError> {
    Ok(match a.func {
        AggFunc::CountStar | AggFunc::Count => Prim::I64,
        AggFunc::Sum => match a
            .arg
            .as_ref()
            .map(|e| expr_prim(e, input, inits))
            .transpose()?
        {
            Some(Prim::F64) => Prim::F64,
            Some(Prim::I32 | Prim::I64) => Prim::I64,
            _ => return Err(EmitError::Plan("SUM of a non-number".into())),
        },
        AggFunc::Min | AggFunc::Max => match &a.arg {
            Some(e) => expr_prim(e, input, inits)?,
            None => return Err(EmitError::Plan("MIN/MAX without argument".into())),
        },
    })
}

/// Where a scan loop's batches come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Scan `i` of the manifest (a table).
    Scan(usize),
    /// Input `i` of a merge stage.
    Input(usize),
}

impl Gen {
    /// The slot types of `op`'s output.
    pub(crate) fn slots(&self, op: &Op) -> Result<Vec<Prim>, EmitError> {
        Ok(match op {
            Op::Scan { scan, .. } => {
                let d = self
                    .manifest
                    .scans
                    .get(*scan)
                    .ok_or_else(|| EmitError::Plan(format!("scan {scan} is not declared")))?;
                let mut v = d
                    .columns
                    .iter()
                    .map(|c| {
                        prim_of(&c.ty).ok_or_else(|| {
                            EmitError::Unsupported(format!("columns of type {}", c.ty))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if d.with_keys {
                    v.push(Prim::Str);
                }
                v
            }
            Op::Input { input, .. } => {
                let d = self
                    .manifest
                    .inputs
                    .get(*input)
                    .ok_or_else(|| EmitError::Plan(format!("input {input} is not declared")))?;
                d.types
                    .iter()
                    .map(|t| {
                        prim_of(t)
                            .ok_or_else(|| EmitError::Unsupported(format!("columns of type {t}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Op::Values { prims, .. } => prims.clone(),
            Op::Filter { input, .. } | Op::Limit { input, .. } | Op::Sort { input, .. } => {
                self.slots(input)?
            }
            Op::Project { input, exprs } => {
                let i = self.slots(input)?;
                exprs
                    .iter()
                    .map(|e| expr_prim(e, &i, &self.inits))
                    .collect::<Result<_, _>>()?
            }
            Op::Aggregate { input, keys, aggs } => {
                let i = self.slots(input)?;
                let mut v = keys
                    .iter()
                    .map(|e| expr_prim(e, &i, &self.inits))
                    .collect::<Result<Vec<_>, _>>()?;
                for a in aggs {
                    v.push(agg_prim(a, &i, &self.inits)?);
                }
                v
            }
            Op::HashJoin { probe, build, .. } => {
                let mut v = self.slots(probe)?;
                v.extend(self.slots(build)?);
                v
            }
            Op::NestedLoop { left, right, .. } => {
                let mut v = self.slots(left)?;
                v.extend(self.slots(right)?);
                v
            }
            Op::UnionAll { inputs } => match inputs.first() {
                Some(i) => self.slots(i)?,
                None => return Err(EmitError::Plan("UNION ALL without inputs".into())),
            },
        })
    }

    /// One pipeline into a sink.
    pub(crate) fn pipeline_to_sink(&mut self, op: &Op, sink: &Sink) -> Result<(), EmitError> {
        let st = self.sink_begin(sink)?;
        let have = self.slots(op)?;
        if have.len() != st.types.len() {
            return Err(EmitError::Plan(format!(
                "the pipeline yields {} columns, its sink takes {}",
                have.len(),
                st.types.len()
            )));
        }
        let exit = self.f.block();
        self.exit.push(exit);
        self.produce(op, &mut |g, t| g.sink_row(&st, t))?;
        self.exit.pop();
        self.f.end();
        self.sink_flush(&st, true);
        Ok(())
    }

    /// Runs `op`'s input as its own pipeline (for breakers).
    fn sub_pipeline(&mut self, op: &Op, consume: &mut Consume<'_>) -> Result<(), EmitError> {
        let exit = self.f.block();
        self.exit.push(exit);
        self.produce(op, consume)?;
        self.exit.pop();
        self.f.end();
        Ok(())
    }

    /// Calls `consume` inside a fresh "next row" block.
    fn row(&mut self, consume: &mut Consume<'_>, t: &[Val]) -> Result<(), EmitError> {
        let next = self.f.block();
        self.cont.push(next);
        consume(self, t)?;
        self.cont.pop();
        self.f.end();
        Ok(())
    }

    fn br_cont(&mut self) -> Result<(), EmitError> {
        let l = *self
            .cont
            .last()
            .ok_or_else(|| EmitError::Plan("no row to skip here".into()))?;
        self.f.br_if(l);
        Ok(())
    }

    pub(crate) fn produce(&mut self, op: &Op, consume: &mut Consume<'_>) -> Result<(), EmitError> {
        match op {
            Op::Scan { scan, nullable } => self.scan(Source::Scan(*scan), nullable, consume),
            Op::Input { input, nullable } => self.scan(Source::Input(*input), nullable, consume),
            Op::Values { prims, rows } => self.values(prims, rows, consume),
            Op::Filter { input, pred } => self.produce(input, &mut |g, t| {
                // a row passes only if every conjunct is TRUE: test them in turn
                let mut conj = Vec::new();
                conjuncts(pred, &mut conj);
                for c in conj {
                    let p = g.expr(c, t)?;
                    if p.prim != Prim::Bool {
                        return Err(EmitError::Plan("a filter that is not boolean".into()));
                    }
                    g.f.get(p.v);
                    g.f.i(I::I32Eqz);
                    if let Some(n) = p.null {
                        g.f.get(n);
                        g.f.i(I::I32Or);
                    }
                    g.br_cont()?;
                }
                consume(g, t)
            }),
            Op::Project { input, exprs } => self.produce(input, &mut |g, t| {
                let mut out = Vec::with_capacity(exprs.len());
                for e in exprs {
                    out.push(g.expr(e, t)?);
                }
                consume(g, &out)
            }),
            Op::Limit {
                input,
                limit,
                offset,
            } => self.limit(input, *limit, *offset, consume),
            Op::Aggregate { input, keys, aggs } => {
                if keys.is_empty() {
                    self.aggregate_all(input, aggs, consume)
                } else {
                    self.aggregate_hash(input, keys, aggs, consume)
                }
            }
            Op::Sort { input, keys, limit } => self.sort(input, keys, *limit, consume),
            Op::HashJoin {
                probe,
                build,
                probe_keys,
                build_keys,
                kind,
                residual,
            } => self.hash_join(
                probe,
                build,
                probe_keys,
                build_keys,
                *kind,
                residual.as_ref(),
                consume,
            ),
            Op::NestedLoop {
                left,
                right,
                kind,
                cond,
            } => self.nested_loop(left, right, *kind, cond.as_ref(), consume),
            Op::UnionAll { inputs } => {
                let first = match inputs.first() {
                    Some(i) => self.slots(i)?,
                    None => return Err(EmitError::Plan("UNION ALL without inputs".into())),
                };
                for i in inputs {
                    if self.slots(i)? != first {
                        return Err(EmitError::Plan(
                            "UNION ALL inputs of different types".into(),
                        ));
                    }
                    self.produce(i, consume)?;
                }
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------------ sources

    /// A table scan or a merge stage's input: batches read with `scan_next`.
    fn scan(
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
        self.f.i32c(index as i32);
        self.f.i(I::Call(open));
        self.f.set(h);
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

    /// Rows `i..n` of the batch, one per iteration.
    #[expect(clippy::too_many_arguments, reason = "the scan's batch description")]
    fn scan_rows_one_by_one(
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
    fn scan_row(
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
    fn load_batch_col(
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
                    _ => {
                        return Err(EmitError::Unsupported(format!(
                            "columns of type {ty} (DECIMAL above 18 digits)"
                        )));
                    }
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

    fn values(
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
                    Lit::Null(_) => slot[0] = 1,
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

    /// Stores `v` as a slot at `base + off` (base a local). With `copy`, a string is
    /// copied into the permanent arena first.
    fn store_slot(&mut self, base: u32, off: u32, v: &Val, copy: bool) {
        self.f.get(base);
        self.push_null(v);
        self.f.i(I::I32Store(mem(off, 2)));
        let store_value = |g: &mut Gen| match v.prim {
            Prim::Bool | Prim::I32 => {
                g.f.get(base);
                g.f.get(v.v);
                g.f.i(I::I32Store(mem(off + 8, 2)));
            }
            Prim::I64 => {
                g.f.get(base);
                g.f.get(v.v);
                g.f.i(I::I64Store(mem(off + 8, 3)));
            }
            Prim::F64 => {
                g.f.get(base);
                g.f.get(v.v);
                g.f.i(I::F64Store(mem(off + 8, 3)));
            }
            Prim::Str => {
                if copy {
                    let alloc = g.helper(Helper::Alloc);
                    let p = g.f.local(ValType::I32);
                    g.f.get(v.len);
                    g.f.i(I::Call(alloc));
                    g.f.set(p);
                    g.f.get(p);
                    g.f.get(v.v);
                    g.f.get(v.len);
                    g.f.i(I::MemoryCopy {
                        src_mem: 0,
                        dst_mem: 0,
                    });
                    g.f.get(base);
                    g.f.get(p);
                    g.f.i(I::I32Store(mem(off + 8, 2)));
                } else {
                    g.f.get(base);
                    g.f.get(v.v);
                    g.f.i(I::I32Store(mem(off + 8, 2)));
                }
                g.f.get(base);
                g.f.get(v.len);
                g.f.i(I::I32Store(mem(off + 12, 2)));
            }
        };
        match v.null {
            Some(n) => {
                self.f.get(n);
                self.f.i(I::I32Eqz);
                self.f.if_();
                store_value(self);
                self.f.end();
            }
            None => store_value(self),
        }
    }

    fn load_slot(&mut self, base: u32, off: u32, prim: Prim) -> Val {
        let v = self.fresh(prim, true);
        let f = &mut self.f;
        f.get(base);
        f.i(I::I32Load(mem(off, 2)));
        if let Some(n) = v.null {
            f.set(n);
        }
        f.get(base);
        match prim {
            Prim::Bool | Prim::I32 | Prim::Str => f.i(I::I32Load(mem(off + 8, 2))),
            Prim::I64 => f.i(I::I64Load(mem(off + 8, 3))),
            Prim::F64 => f.i(I::F64Load(mem(off + 8, 3))),
        }
        f.set(v.v);
        if prim == Prim::Str {
            f.get(base);
            f.i(I::I32Load(mem(off + 12, 2)));
            f.set(v.len);
        }
        v
    }

    fn load_record(&mut self, base: u32, off: u32, prims: &[Prim]) -> Vec<Val> {
        prims
            .iter()
            .enumerate()
            .map(|(k, p)| self.load_slot(base, off + SLOT * k as u32, *p))
            .collect()
    }

    fn null_tuple(&mut self, prims: &[Prim]) -> Vec<Val> {
        prims
            .iter()
            .map(|p| {
                let v = self.fresh(*p, true);
                if let Some(n) = v.null {
                    self.f.set_i32(n, 1);
                }
                v
            })
            .collect()
    }

    fn call_alloc_const(&mut self, size: i32, out: u32) {
        let alloc = self.helper(Helper::Alloc);
        self.f.i32c(size);
        self.f.i(I::Call(alloc));
        self.f.set(out);
    }

    /// A growable array of i32 record pointers: (array, capacity, length) locals.
    fn vec_new(&mut self) -> PtrVec {
        let arr = self.f.local(ValType::I32);
        let cap = self.f.local(ValType::I32);
        let len = self.f.local(ValType::I32);
        self.call_alloc_const(1024 * 4, arr);
        self.f.set_i32(cap, 1024);
        self.f.set_i32(len, 0);
        (arr, cap, len)
    }

    fn vec_push(&mut self, (arr, cap, len): PtrVec, rec: u32) {
        let alloc = self.helper(Helper::Alloc);
        let na = self.f.local(ValType::I32);
        let f = &mut self.f;
        f.get(len);
        f.get(cap);
        f.i(I::I32Eq);
        f.if_();
        f.get(cap);
        f.i32c(3);
        f.i(I::I32Shl);
        f.i(I::Call(alloc));
        f.set(na);
        f.get(na);
        f.get(arr);
        f.get(cap);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        });
        f.get(na);
        f.set(arr);
        f.get(cap);
        f.i32c(1);
        f.i(I::I32Shl);
        f.set(cap);
        f.end();
        f.get(arr);
        f.get(len);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.get(rec);
        f.i(I::I32Store(mem(0, 2)));
        f.inc(len);
    }

    /// Materialises `op`'s rows as records in a pointer array; returns the array
    /// locals and the slot types.
    fn materialise(&mut self, op: &Op) -> Result<(PtrVec, Vec<Prim>), EmitError> {
        let prims = self.slots(op)?;
        let v = self.vec_new();
        let width = SLOT as i32 * prims.len() as i32;
        let rec = self.f.local(ValType::I32);
        self.sub_pipeline(op, &mut |g, t| {
            g.call_alloc_const(width.max(8), rec);
            for (k, val) in t.iter().enumerate() {
                g.store_slot(rec, SLOT * k as u32, val, true);
            }
            g.vec_push(v, rec);
            Ok(())
        })?;
        Ok((v, prims))
    }

    /// Loops over records `arr[0..min(len, limit)]`, handing each to `consume`.
    fn for_records(
        &mut self,
        arr: u32,
        len: u32,
        limit: Option<u64>,
        prims: &[Prim],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let j = self.f.local(ValType::I32);
        let rec = self.f.local(ValType::I32);
        let end = self.f.local(ValType::I32);
        self.f.get(len);
        self.f.set(end);
        if let Some(l) = limit {
            let l = i32::try_from(l).unwrap_or(i32::MAX);
            self.f.i32c(l);
            self.f.get(len);
            self.f.i32c(l);
            self.f.get(len);
            self.f.i(I::I32LtU);
            self.f.i(I::Select);
            self.f.set(end);
        }
        self.f.set_i32(j, 0);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(j);
        self.f.get(end);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.f.get(arr);
        self.f.get(j);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
        self.f.i(I::I32Load(mem(0, 2)));
        self.f.set(rec);
        let t = self.load_record(rec, 0, prims);
        self.row(consume, &t)?;
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    // ------------------------------------------------------------------- limit

    fn limit(
        &mut self,
        input: &Op,
        limit: Option<u64>,
        offset: u64,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        if limit == Some(0) {
            return Ok(());
        }
        let seen = self.f.local(ValType::I64);
        self.f.i64c(0);
        self.f.set(seen);
        let stop = limit.map(|l| offset.saturating_add(l));
        self.produce(input, &mut |g, t| {
            g.f.get(seen);
            g.f.i64c(1);
            g.f.i(I::I64Add);
            g.f.set(seen);
            if offset > 0 {
                g.f.get(seen);
                g.f.i64c(i64::try_from(offset).unwrap_or(i64::MAX));
                g.f.i(I::I64LeU);
                g.br_cont()?;
            }
            consume(g, t)?;
            if let Some(s) = stop {
                let exit = *g
                    .exit
                    .last()
                    .ok_or_else(|| EmitError::Plan("LIMIT outside a pipeline".into()))?;
                g.f.get(seen);
                g.f.i64c(i64::try_from(s).unwrap_or(i64::MAX));
                g.f.i(I::I64GeU);
                g.f.br_if(exit);
            }
            Ok(())
        })
    }

    // -------------------------------------------------------------- aggregates

    /// Initialises the state slot of `a` at `base + off`.
    fn agg_init(&mut self, base: u32, off: u32, a: &AggCall) {
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

    fn agg_update(
        &mut self,
        base: u32,
        off: u32,
        a: &AggCall,
        t: &[Val],
        in_prims: &[Prim],
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
                self.store_slot(base, off, &Val { null: None, ..x }, true);
                self.f.end();
            }
            AggFunc::CountStar => {}
        }
        if x.null.is_some() {
            self.f.end();
        }
        Ok(())
    }

    fn aggregate_all(
        &mut self,
        input: &Op,
        aggs: &[AggCall],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let in_prims = self.slots(input)?;
        let state = self.static_alloc(SLOT * aggs.len().max(1) as u32, 16);
        let base = self.f.local(ValType::I32);
        self.f.set_i32(base, state as i32);
        for (k, a) in aggs.iter().enumerate() {
            self.agg_init(base, SLOT * k as u32, a);
        }
        self.sub_pipeline(input, &mut |g, t| {
            for (k, a) in aggs.iter().enumerate() {
                g.agg_update(base, SLOT * k as u32, a, t, &in_prims)?;
            }
            Ok(())
        })?;
        let prims = aggs
            .iter()
            .map(|a| agg_prim(a, &in_prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        self.f.set_i32(base, state as i32);
        let t = self.load_record(base, 0, &prims);
        self.row(consume, &t)
    }

    /// A 64-bit hash of `vals` into a fresh local (NULL hashes as a constant).
    fn hash_vals(&mut self, vals: &[Val]) -> u32 {
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
    fn keys_equal(&mut self, entry: u32, off: u32, vals: &[Val]) {
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

    fn aggregate_hash(
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
        let nk = keys.len() as u32;
        let entry_bytes = (ENTRY_HEAD + SLOT * (nk + aggs.len() as u32)) as i32;
        let dir = self.f.local(ValType::I32);
        let cap = self.f.local(ValType::I32);
        let count = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let idx = self.f.local(ValType::I32);
        self.dir_new(dir, cap, DIR_INITIAL);
        self.f.set_i32(count, 0);
        self.sub_pipeline(input, &mut |g, t| {
            let kv = keys
                .iter()
                .map(|k| g.expr(k, t))
                .collect::<Result<Vec<_>, _>>()?;
            let h = g.hash_vals(&kv);
            g.f.get(h);
            g.f.i(I::I32WrapI64);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            let found = g.f.block();
            let probe = g.f.loop_();
            g.dir_slot(dir, idx);
            g.f.i(I::I32Load(mem(0, 2)));
            g.f.set(e);
            g.f.get(e);
            g.f.i(I::I32Eqz);
            g.f.if_();
            // new group
            g.call_alloc_const(entry_bytes, e);
            g.f.get(e);
            g.f.get(h);
            g.f.i(I::I64Store(mem(0, 3)));
            for (k, v) in kv.iter().enumerate() {
                g.store_slot(e, ENTRY_HEAD + SLOT * k as u32, v, true);
            }
            for (k, a) in aggs.iter().enumerate() {
                g.agg_init(e, ENTRY_HEAD + SLOT * (nk + k as u32), a);
            }
            g.dir_slot(dir, idx);
            g.f.get(e);
            g.f.i(I::I32Store(mem(0, 2)));
            g.f.inc(count);
            g.f.get(count);
            g.f.i32c(1);
            g.f.i(I::I32Shl);
            g.f.get(cap);
            g.f.i(I::I32GtU);
            g.f.if_();
            g.dir_grow_open(dir, cap);
            g.f.end();
            g.f.br(found);
            g.f.end();
            // same hash and keys?
            g.f.get(e);
            g.f.i(I::I64Load(mem(0, 3)));
            g.f.get(h);
            g.f.i(I::I64Eq);
            g.f.if_();
            g.keys_equal(e, ENTRY_HEAD, &kv);
            g.f.br_if(found);
            g.f.end();
            g.f.get(idx);
            g.f.i32c(1);
            g.f.i(I::I32Add);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            g.f.br(probe);
            g.f.end();
            g.f.end();
            for (k, a) in aggs.iter().enumerate() {
                g.agg_update(e, ENTRY_HEAD + SLOT * (nk + k as u32), a, t, &in_prims)?;
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
        self.row(consume, &t)?;
        self.f.end();
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    fn dir_new(&mut self, dir: u32, cap: u32, size: i32) {
        self.call_alloc_const(size * 4, dir);
        self.f.get(dir);
        self.f.i32c(0);
        self.f.i32c(size * 4);
        self.f.i(I::MemoryFill(0));
        self.f.set_i32(cap, size);
    }

    /// Pushes the address of `dir[idx]`.
    fn dir_slot(&mut self, dir: u32, idx: u32) {
        self.f.get(dir);
        self.f.get(idx);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
    }

    /// Doubles an open-addressing directory, reinserting entries by stored hash.
    fn dir_grow_open(&mut self, dir: u32, cap: u32) {
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

    fn sort(
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
        if !keys.is_empty() {
            let cmp = self.comparator(keys, &prims);
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
        self.for_records(arr, len, limit, &prims, consume)
    }

    /// `cmp(a, b) -> i32` over two records for `keys`.
    fn comparator(&mut self, keys: &[SortKey], prims: &[Prim]) -> u32 {
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
    fn merge_sort(&mut self, cmp: u32) -> u32 {
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

    #[expect(clippy::too_many_arguments, reason = "the fields of Op::HashJoin")]
    fn hash_join(
        &mut self,
        probe: &Op,
        build: &Op,
        probe_keys: &[Expr],
        build_keys: &[Expr],
        kind: JoinKind,
        residual: Option<&Expr>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        if probe_keys.len() != build_keys.len() || probe_keys.is_empty() {
            return Err(EmitError::Plan("join keys do not pair up".into()));
        }
        let build_prims = self.slots(build)?;
        let probe_prims = self.slots(probe)?;
        for (p, b) in probe_keys.iter().zip(build_keys) {
            if expr_prim(p, &probe_prims, &self.inits)? != expr_prim(b, &build_prims, &self.inits)?
            {
                return Err(EmitError::Plan("join keys of different types".into()));
            }
        }
        let nb = build_prims.len() as u32;
        // entry: hash @0, next @8, then build slots, then key slots
        let entry_bytes = (ENTRY_HEAD + SLOT * (nb + build_keys.len() as u32)) as i32;
        let dir = self.f.local(ValType::I32);
        let cap = self.f.local(ValType::I32);
        let count = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        self.dir_new(dir, cap, DIR_INITIAL);
        self.f.set_i32(count, 0);
        self.sub_pipeline(build, &mut |g, t| {
            let kv = build_keys
                .iter()
                .map(|k| g.expr(k, t))
                .collect::<Result<Vec<_>, _>>()?;
            // a NULL key never matches
            if let Some(n) = g.any_null(&kv) {
                g.f.get(n);
                g.br_cont()?;
            }
            let h = g.hash_vals(&kv);
            g.call_alloc_const(entry_bytes, e);
            g.f.get(e);
            g.f.get(h);
            g.f.i(I::I64Store(mem(0, 3)));
            for (k, v) in t.iter().enumerate() {
                g.store_slot(e, ENTRY_HEAD + SLOT * k as u32, v, true);
            }
            for (k, v) in kv.iter().enumerate() {
                g.store_slot(e, ENTRY_HEAD + SLOT * (nb + k as u32), v, true);
            }
            g.chain_insert(dir, cap, e);
            g.f.inc(count);
            g.f.get(count);
            g.f.get(cap);
            g.f.i(I::I32GtU);
            g.f.if_();
            g.dir_grow_chained(dir, cap);
            g.f.end();
            Ok(())
        })?;
        let key_prims = build_keys
            .iter()
            .map(|k| expr_prim(k, &build_prims, &self.inits))
            .collect::<Result<Vec<_>, _>>()?;
        self.produce(probe, &mut |g, t| {
            let kv = probe_keys
                .iter()
                .map(|k| g.expr(k, t))
                .collect::<Result<Vec<_>, _>>()?;
            let matched = g.f.local(ValType::I32);
            g.f.set_i32(matched, 0);
            let null = g.any_null(&kv);
            if let Some(n) = null {
                g.f.get(n);
                g.f.i(I::I32Eqz);
                g.f.if_();
            }
            let h = g.hash_vals(&kv);
            let rec = g.f.local(ValType::I32);
            g.f.get(dir);
            g.f.get(h);
            g.f.i(I::I32WrapI64);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.i32c(2);
            g.f.i(I::I32Shl);
            g.f.i(I::I32Add);
            g.f.i(I::I32Load(mem(0, 2)));
            g.f.set(rec);
            let done = g.f.block();
            let lp = g.f.loop_();
            g.f.get(rec);
            g.f.i(I::I32Eqz);
            g.f.br_if(done);
            let next = g.f.block();
            g.cont.push(next);
            g.f.get(rec);
            g.f.i(I::I64Load(mem(0, 3)));
            g.f.get(h);
            g.f.i(I::I64Ne);
            g.br_cont()?;
            let _ = &key_prims;
            g.keys_equal(rec, ENTRY_HEAD + SLOT * nb, &kv);
            g.f.i(I::I32Eqz);
            g.br_cont()?;
            let bt = g.load_record(rec, ENTRY_HEAD, &build_prims);
            let mut joined = t.to_vec();
            joined.extend(bt);
            if let Some(r) = residual {
                let p = g.expr(r, &joined)?;
                g.f.get(p.v);
                g.f.i(I::I32Eqz);
                if let Some(n) = p.null {
                    g.f.get(n);
                    g.f.i(I::I32Or);
                }
                g.br_cont()?;
            }
            g.f.set_i32(matched, 1);
            consume(g, &joined)?;
            g.cont.pop();
            g.f.end();
            g.f.get(rec);
            g.f.i(I::I32Load(mem(8, 2)));
            g.f.set(rec);
            g.f.br(lp);
            g.f.end();
            g.f.end();
            if null.is_some() {
                g.f.end();
            }
            if kind == JoinKind::Left {
                g.f.get(matched);
                g.f.i(I::I32Eqz);
                g.f.if_();
                let mut joined = t.to_vec();
                let nulls = g.null_tuple(&build_prims);
                joined.extend(nulls);
                g.row_inline(consume, &joined)?;
                g.f.end();
            }
            Ok(())
        })
    }

    /// Like [`Gen::row`] (kept for call sites inside an `if`).
    fn row_inline(&mut self, consume: &mut Consume<'_>, t: &[Val]) -> Result<(), EmitError> {
        self.row(consume, t)
    }

    fn chain_insert(&mut self, dir: u32, cap: u32, e: u32) {
        let slot = self.f.local(ValType::I32);
        let f = &mut self.f;
        f.get(dir);
        f.get(e);
        f.i(I::I64Load(mem(0, 3)));
        f.i(I::I32WrapI64);
        f.get(cap);
        f.i32c(1);
        f.i(I::I32Sub);
        f.i(I::I32And);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.set(slot);
        f.get(e);
        f.get(slot);
        f.i(I::I32Load(mem(0, 2)));
        f.i(I::I32Store(mem(8, 2)));
        f.get(slot);
        f.get(e);
        f.i(I::I32Store(mem(0, 2)));
    }

    fn dir_grow_chained(&mut self, dir: u32, cap: u32) {
        let old = self.f.local(ValType::I32);
        let ocap = self.f.local(ValType::I32);
        let j = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let nx = self.f.local(ValType::I32);
        self.f.get(dir);
        self.f.set(old);
        self.f.get(cap);
        self.f.set(ocap);
        // new directory of twice the size
        let alloc = self.helper(Helper::Alloc);
        let f = &mut self.f;
        f.get(ocap);
        f.i32c(1);
        f.i(I::I32Shl);
        f.set(cap);
        f.get(cap);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::Call(alloc));
        f.set(dir);
        f.get(dir);
        f.i32c(0);
        f.get(cap);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::MemoryFill(0));
        f.set_i32(j, 0);
        let done = f.block();
        let lp = f.loop_();
        f.get(j);
        f.get(ocap);
        f.i(I::I32GeU);
        f.br_if(done);
        f.get(old);
        f.get(j);
        f.i32c(2);
        f.i(I::I32Shl);
        f.i(I::I32Add);
        f.i(I::I32Load(mem(0, 2)));
        f.set(e);
        let cd = f.block();
        let cl = f.loop_();
        f.get(e);
        f.i(I::I32Eqz);
        f.br_if(cd);
        f.get(e);
        f.i(I::I32Load(mem(8, 2)));
        f.set(nx);
        self.chain_insert(dir, cap, e);
        let f = &mut self.f;
        f.get(nx);
        f.set(e);
        f.br(cl);
        f.end();
        f.end();
        f.inc(j);
        f.br(lp);
        f.end();
        f.end();
    }

    fn nested_loop(
        &mut self,
        left: &Op,
        right: &Op,
        kind: JoinKind,
        cond: Option<&Expr>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let ((arr, _cap, len), rprims) = self.materialise(right)?;
        self.produce(left, &mut |g, t| {
            let matched = g.f.local(ValType::I32);
            g.f.set_i32(matched, 0);
            let j = g.f.local(ValType::I32);
            let rec = g.f.local(ValType::I32);
            g.f.set_i32(j, 0);
            let done = g.f.block();
            let lp = g.f.loop_();
            g.f.get(j);
            g.f.get(len);
            g.f.i(I::I32GeU);
            g.f.br_if(done);
            g.f.get(arr);
            g.f.get(j);
            g.f.i32c(2);
            g.f.i(I::I32Shl);
            g.f.i(I::I32Add);
            g.f.i(I::I32Load(mem(0, 2)));
            g.f.set(rec);
            let next = g.f.block();
            g.cont.push(next);
            let rt = g.load_record(rec, 0, &rprims);
            let mut joined = t.to_vec();
            joined.extend(rt);
            if let Some(c) = cond {
                let p = g.expr(c, &joined)?;
                g.f.get(p.v);
                g.f.i(I::I32Eqz);
                if let Some(n) = p.null {
                    g.f.get(n);
                    g.f.i(I::I32Or);
                }
                g.br_cont()?;
            }
            g.f.set_i32(matched, 1);
            consume(g, &joined)?;
            g.cont.pop();
            g.f.end();
            g.f.inc(j);
            g.f.br(lp);
            g.f.end();
            g.f.end();
            if kind == JoinKind::Left {
                g.f.get(matched);
                g.f.i(I::I32Eqz);
                g.f.if_();
                let mut joined = t.to_vec();
                let nulls = g.null_tuple(&rprims);
                joined.extend(nulls);
                g.row(consume, &joined)?;
                g.f.end();
            }
            Ok(())
        })
    }

    // -------------------------------------------------------------- init plans

    /// Runs an init plan before the main pipelines and records where its result is.
    pub(crate) fn init_plan(&mut self, init: &crate::plan::InitPlan) -> Result<(), EmitError> {
        use crate::plan::InitPlan;
        let slot = match init {
            InitPlan::Scalar(op) => {
                let prims = self.slots(op)?;
                let [prim] = prims.as_slice() else {
                    return Err(EmitError::Plan(
                        "a scalar subquery must return one column".into(),
                    ));
                };
                let prim = *prim;
                let addr = self.static_alloc(SLOT, 16);
                let base = self.f.local(ValType::I32);
                let seen = self.f.local(ValType::I32);
                self.f.set_i32(base, addr as i32);
                self.f.get(base);
                self.f.i32c(1);
                self.f.i(I::I32Store(mem(0, 2)));
                self.f.set_i32(seen, 0);
                self.sub_pipeline(op, &mut |g, t| {
                    let v = *t
                        .first()
                        .ok_or_else(|| EmitError::Plan("scalar subquery".into()))?;
                    g.f.get(seen);
                    g.f.if_();
                    fail(&mut g.f, ErrorCode::CardinalityViolation);
                    g.f.end();
                    g.f.set_i32(seen, 1);
                    g.store_slot(base, 0, &v, true);
                    Ok(())
                })?;
                InitSlot::Scalar { addr, prim }
            }
            InitPlan::Exists(op) => {
                let addr = self.static_alloc(4, 4);
                self.f.i32c(addr as i32);
                self.f.i32c(0);
                self.f.i(I::I32Store(mem(0, 2)));
                self.sub_pipeline(op, &mut |g, _t| {
                    g.f.i32c(addr as i32);
                    g.f.i32c(1);
                    g.f.i(I::I32Store(mem(0, 2)));
                    // one row decides it
                    let exit = *g
                        .exit
                        .last()
                        .ok_or_else(|| EmitError::Plan("EXISTS outside a pipeline".into()))?;
                    g.f.br(exit);
                    Ok(())
                })?;
                InitSlot::Exists { addr }
            }
            InitPlan::Set(op) => {
                let prims = self.slots(op)?;
                let [prim] = prims.as_slice() else {
                    return Err(EmitError::Plan(
                        "an IN subquery must return one column".into(),
                    ));
                };
                let prim = *prim;
                let dir = self.f.local(ValType::I32);
                let cap = self.f.local(ValType::I32);
                let count = self.f.local(ValType::I32);
                let has_null = self.f.local(ValType::I32);
                let e = self.f.local(ValType::I32);
                let idx = self.f.local(ValType::I32);
                self.dir_new(dir, cap, DIR_INITIAL);
                self.f.set_i32(count, 0);
                self.f.set_i32(has_null, 0);
                let entry_bytes = (ENTRY_HEAD + SLOT) as i32;
                self.sub_pipeline(op, &mut |g, t| {
                    let v = *t
                        .first()
                        .ok_or_else(|| EmitError::Plan("IN subquery".into()))?;
                    if let Some(n) = v.null {
                        g.f.get(n);
                        g.f.if_();
                        g.f.set_i32(has_null, 1);
                        g.f.end();
                        g.f.get(n);
                        g.br_cont()?;
                    }
                    let v = Val { null: None, ..v };
                    let h = g.hash_vals(&[v]);
                    g.f.get(h);
                    g.f.i(I::I32WrapI64);
                    g.f.get(cap);
                    g.f.i32c(1);
                    g.f.i(I::I32Sub);
                    g.f.i(I::I32And);
                    g.f.set(idx);
                    let done = g.f.block();
                    let probe = g.f.loop_();
                    g.dir_slot(dir, idx);
                    g.f.i(I::I32Load(mem(0, 2)));
                    g.f.set(e);
                    g.f.get(e);
                    g.f.i(I::I32Eqz);
                    g.f.if_();
                    g.call_alloc_const(entry_bytes, e);
                    g.f.get(e);
                    g.f.get(h);
                    g.f.i(I::I64Store(mem(0, 3)));
                    g.store_slot(e, ENTRY_HEAD, &v, true);
                    g.dir_slot(dir, idx);
                    g.f.get(e);
                    g.f.i(I::I32Store(mem(0, 2)));
                    g.f.inc(count);
                    g.f.get(count);
                    g.f.i32c(1);
                    g.f.i(I::I32Shl);
                    g.f.get(cap);
                    g.f.i(I::I32GtU);
                    g.f.if_();
                    g.dir_grow_open(dir, cap);
                    g.f.end();
                    g.f.br(done);
                    g.f.end();
                    g.f.get(e);
                    g.f.i(I::I64Load(mem(0, 3)));
                    g.f.get(h);
                    g.f.i(I::I64Eq);
                    g.f.if_();
                    g.keys_equal(e, ENTRY_HEAD, &[v]);
                    g.f.br_if(done);
                    g.f.end();
                    g.f.get(idx);
                    g.f.i32c(1);
                    g.f.i(I::I32Add);
                    g.f.get(cap);
                    g.f.i32c(1);
                    g.f.i(I::I32Sub);
                    g.f.i(I::I32And);
                    g.f.set(idx);
                    g.f.br(probe);
                    g.f.end();
                    g.f.end();
                    Ok(())
                })?;
                InitSlot::Set {
                    dir,
                    cap,
                    count,
                    has_null,
                    prim,
                }
            }
        };
        self.inits.push(slot);
        Ok(())
    }

    fn init_slot(&self, i: usize) -> Result<InitSlot, EmitError> {
        self.inits
            .get(i)
            .copied()
            .ok_or_else(|| EmitError::Plan(format!("init plan {i} is not computed before its use")))
    }

    /// The value of a scalar or EXISTS init plan.
    pub(crate) fn init_value(&mut self, i: usize) -> Result<Val, EmitError> {
        match self.init_slot(i)? {
            InitSlot::Scalar { addr, prim } => {
                let base = self.f.local(ValType::I32);
                self.f.set_i32(base, addr as i32);
                Ok(self.load_slot(base, 0, prim))
            }
            InitSlot::Exists { addr } => {
                let v = self.fresh(Prim::Bool, false);
                self.f.i32c(addr as i32);
                self.f.i(I::I32Load(mem(0, 2)));
                self.f.set(v.v);
                Ok(v)
            }
            InitSlot::Set { .. } => Err(EmitError::Plan("an IN set used as a value".into())),
        }
    }

    /// `v IN (set i)` with SQL's NULL rules.
    pub(crate) fn in_set(&mut self, v: &Val, i: usize) -> Result<Val, EmitError> {
        let InitSlot::Set {
            dir,
            cap,
            count,
            has_null,
            prim,
        } = self.init_slot(i)?
        else {
            return Err(EmitError::Plan("IN needs a set".into()));
        };
        if prim != v.prim {
            return Err(EmitError::Plan(
                "IN compares values of different types".into(),
            ));
        }
        let out = self.fresh(Prim::Bool, true);
        let on = out.null.unwrap_or(0);
        let found = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
        let idx = self.f.local(ValType::I32);
        self.f.set_i32(found, 0);
        let body = |g: &mut Gen| -> Result<(), EmitError> {
            let nv = Val { null: None, ..*v };
            let h = g.hash_vals(&[nv]);
            g.f.get(h);
            g.f.i(I::I32WrapI64);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            let done = g.f.block();
            let probe = g.f.loop_();
            g.dir_slot(dir, idx);
            g.f.i(I::I32Load(mem(0, 2)));
            g.f.set(e);
            g.f.get(e);
            g.f.i(I::I32Eqz);
            g.f.br_if(done);
            g.f.get(e);
            g.f.i(I::I64Load(mem(0, 3)));
            g.f.get(h);
            g.f.i(I::I64Eq);
            g.f.if_();
            g.keys_equal(e, ENTRY_HEAD, &[nv]);
            g.f.set(found);
            g.f.get(found);
            g.f.br_if(done);
            g.f.end();
            g.f.get(idx);
            g.f.i32c(1);
            g.f.i(I::I32Add);
            g.f.get(cap);
            g.f.i32c(1);
            g.f.i(I::I32Sub);
            g.f.i(I::I32And);
            g.f.set(idx);
            g.f.br(probe);
            g.f.end();
            g.f.end();
            Ok(())
        };
        match v.null {
            Some(n) => {
                self.f.get(n);
                self.f.i(I::I32Eqz);
                self.f.if_();
                body(self)?;
                self.f.end();
            }
            None => body(self)?,
        }
        // TRUE if found; FALSE for an empty set (even when v is NULL); NULL if v is
        // NULL, or not found and the set holds a NULL
        self.f.get(found);
        self.f.set(out.v);
        self.push_null(v);
        self.f.get(count);
        self.f.get(has_null);
        self.f.i(I::I32Or);
        self.f.i32c(0);
        self.f.i(I::I32Ne);
        self.f.i(I::I32And);
        self.f.get(found);
        self.f.i(I::I32Eqz);
        self.f.get(has_null);
        self.f.i(I::I32And);
        self.f.i(I::I32Or);
        self.f.set(on);
        Ok(out)
    }

    // ------------------------------------------------------------------- sinks

    fn sink_begin(&mut self, sink: &Sink) -> Result<SinkState, EmitError> {
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
            index: index as i32,
        };
        self.sink_clear(&st);
        Ok(st)
    }

    fn sink_clear(&mut self, st: &SinkState) {
        self.f.i32c(st.buf as i32);
        self.f.i32c(0);
        self.f.i32c(st.layout.heap_range().start as i32);
        self.f.i(I::MemoryFill(0));
    }

    /// Hands the batch to the host when it has rows (or always when `last` is false).
    fn sink_flush(&mut self, st: &SinkState, last: bool) {
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
        f.i32c(st.index);
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

    fn sink_row(&mut self, st: &SinkState, t: &[Val]) -> Result<(), EmitError> {
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

    fn sink_col(
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
                    f.get(v.v);
                    f.i64c(63);
                    f.i(I::I64ShrS);
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

    pub(crate) fn push_data(&mut self, at: u32, bytes: Vec<u8>) {
        self.data_push(at, bytes);
    }
}

fn vt_of(p: Prim) -> ValType {
    super::expr::vt(p)
}

/// A sink's buffer and cursor.
struct SinkState {
    layout: BatchLayout,
    types: Vec<SqlType>,
    buf: u32,
    total: u32,
    row: u32,
    heap: u32,
    call: u32,
    index: i32,
}
