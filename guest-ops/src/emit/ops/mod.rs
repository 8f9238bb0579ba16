//! The physical operators and the sinks.

use super::expr::cast_types;
use super::fb::{Fb, mem};
use super::rt::{Helper, fail};
use super::{
    EMIT_FN, EmitError, G_TEMP, Gen, INPUT_OPEN_FN, SCAN_KEYS_FN, SCAN_NEXT_FN, SCAN_OPEN_FN, Val,
    WRITE_FN,
};
use crate::abi::ErrorCode;
use crate::plan::{
    AggCall, AggFunc, CmpOp, Expr, Func, JoinKind, Lit, Lookup, Op, Prim, Sink, SortKey, prim_of,
};
use scratchbird_types::batch::{BatchLayout, LAYOUT_VERSION};
use scratchbird_types::{PhysicalType, SqlType};
use wasm_encoder::{Instruction as I, ValType};

mod aggregate;
mod init;
mod join;
use join::MarkSides;
mod recursive;
mod scan;
mod sink;
mod sort;
mod window;

/// Bytes per materialised slot: NULL flag (u32) at 0, value at 8 (Str: pointer at 8,
/// length at 12). An I128 fills the slot: high half at 0, low half at 8, and
/// NULL is a high half of [`I128_NULL`].
const SLOT: u32 = 16;
/// The high half of a NULL I128 slot: no value within 38 digits has it.
const I128_NULL: i64 = i64::MIN;
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

/// What is done with each record of a walk (a join's candidate build row):
/// its tuple, and its address in the local given beside it.
type Candidate<'a> = dyn FnMut(&mut Gen, Vec<Val>, u32) -> Result<(), EmitError> + 'a;

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
            Func::DateTrunc(_) => Prim::I64,
            Func::Like => Prim::Bool,
            Func::Math(_) => Prim::F64,
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
        AggFunc::SumWide => match a
            .arg
            .as_ref()
            .map(|e| expr_prim(e, input, inits))
            .transpose()?
        {
            Some(Prim::I32 | Prim::I64 | Prim::I128) => Prim::I128,
            _ => return Err(EmitError::Plan("a wide SUM of a non-integer".into())),
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
            Op::Values { prims, .. } | Op::WorkTable { prims, .. } => prims.clone(),
            Op::Recursive { base, .. } => self.slots(base)?,
            Op::Filter { input, .. }
            | Op::Limit { input, .. }
            | Op::Sort { input, .. }
            | Op::Repeat { input, .. } => self.slots(input)?,
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
            Op::MarkJoin { probe, .. } => {
                let mut v = self.slots(probe)?;
                v.push(Prim::Bool);
                v
            }
            Op::Window { input, calls, .. } => {
                let i = self.slots(input)?;
                let mut v = i.clone();
                for c in calls {
                    v.push(window::win_prim(c, &i, &self.inits)?);
                }
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
            Op::Repeat { input, count } => self.produce(input, &mut |g, t| {
                let n = g.expr(count, t)?;
                if n.prim != Prim::I64 {
                    return Err(EmitError::Plan("a repeat count that is not I64".into()));
                }
                if let Some(nl) = n.null {
                    g.f.get(nl);
                    g.br_cont()?;
                }
                let i = g.f.local(ValType::I64);
                g.f.i64c(0);
                g.f.set(i);
                let done = g.f.block();
                let lp = g.f.loop_();
                g.f.get(i);
                g.f.get(n.v);
                g.f.i(I::I64GeS);
                g.f.br_if(done);
                g.row(consume, t)?;
                g.f.get(i);
                g.f.i64c(1);
                g.f.i(I::I64Add);
                g.f.set(i);
                g.f.br(lp);
                g.f.end();
                g.f.end();
                Ok(())
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
                lookup,
            } => self.hash_join(
                probe,
                build,
                probe_keys,
                build_keys,
                *kind,
                residual.as_ref(),
                lookup.as_ref(),
                consume,
            ),
            Op::NestedLoop {
                left,
                right,
                kind,
                cond,
            } => self.nested_loop(left, right, *kind, cond.as_ref(), consume),
            Op::MarkJoin {
                probe,
                build,
                probe_keys,
                build_keys,
                residual,
                test,
                build_outer,
            } => {
                let j = MarkSides {
                    probe,
                    build,
                    probe_keys,
                    build_keys,
                    residual: residual.as_ref(),
                    test: test.as_ref(),
                };
                if *build_outer {
                    self.mark_join_outer_built(&j, consume)
                } else {
                    self.mark_join(&j, consume)
                }
            }
            Op::Window {
                input,
                partition,
                order,
                calls,
            } => self.window(input, partition, order, calls, consume),
            Op::Recursive {
                base,
                step,
                work,
                distinct,
            } => self.recursive(base, step, *work, *distinct, consume),
            Op::WorkTable { work, prims } => self.work_table(*work, prims, consume),
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

    /// Stores `v` as a slot at `base + off` (base a local). With `copy`, a string is
    /// copied into the permanent arena first.
    fn store_slot(&mut self, base: u32, off: u32, v: &Val, copy: bool) {
        if v.prim == Prim::I128 {
            self.f.get(base);
            self.f.get(v.v);
            self.f.i(I::I64Store(mem(off + 8, 3)));
            self.f.get(base);
            if let Some(n) = v.null {
                // NULL: the marker, whatever the value locals hold
                self.f.i64c(I128_NULL);
                self.f.get(v.len);
                self.f.get(n);
                self.f.i(I::Select);
            } else {
                self.f.get(v.len);
            }
            self.f.i(I::I64Store(mem(off, 3)));
            return;
        }
        self.f.get(base);
        self.push_null(v);
        self.f.i(I::I32Store(mem(off, 2)));
        let store_value = |g: &mut Gen| match v.prim {
            Prim::Bool | Prim::I32 => {
                g.f.get(base);
                g.f.get(v.v);
                g.f.i(I::I32Store(mem(off + 8, 2)));
            }
            Prim::I64 | Prim::I128 => {
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

    /// Marks the slot at `base` NULL (an I128 slot's NULL is its marker).
    fn slot_null(&mut self, base: u32, prim: Prim) {
        self.f.get(base);
        if prim == Prim::I128 {
            self.f.i64c(I128_NULL);
            self.f.i(I::I64Store(mem(0, 3)));
        } else {
            self.f.i32c(1);
            self.f.i(I::I32Store(mem(0, 2)));
        }
    }

    fn load_slot(&mut self, base: u32, off: u32, prim: Prim) -> Val {
        let v = self.fresh(prim, true);
        if prim == Prim::I128 {
            let f = &mut self.f;
            f.get(base);
            f.i(I::I64Load(mem(off + 8, 3)));
            f.set(v.v);
            f.get(base);
            f.i(I::I64Load(mem(off, 3)));
            f.set(v.len);
            if let Some(n) = v.null {
                f.get(v.len);
                f.i64c(I128_NULL);
                f.i(I::I64Eq);
                f.set(n);
            }
            return v;
        }
        let f = &mut self.f;
        f.get(base);
        f.i(I::I32Load(mem(off, 2)));
        if let Some(n) = v.null {
            f.set(n);
        }
        f.get(base);
        match prim {
            Prim::Bool | Prim::I32 | Prim::Str => f.i(I::I32Load(mem(off + 8, 2))),
            Prim::I64 | Prim::I128 => f.i(I::I64Load(mem(off + 8, 3))),
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

    /// Walks the records `arr[0..len]` (each with `prims` from byte `off`),
    /// handing each record's tuple and address to `body` inside a "next
    /// record" block (`br_cont` skips to the next).
    pub(super) fn records_walk(
        &mut self,
        (arr, len): (u32, u32),
        off: u32,
        prims: &[Prim],
        body: &mut Candidate<'_>,
    ) -> Result<(), EmitError> {
        let from = self.f.local(ValType::I32);
        self.f.set_i32(from, 0);
        self.records_walk_range((arr, from, len), off, prims, body)
    }

    /// As [`Gen::records_walk`], over `arr[from..to]` (`arr` is read again
    /// for each record: an array that grows as it is walked may move).
    pub(super) fn records_walk_range(
        &mut self,
        (arr, from, to): (u32, u32, u32),
        off: u32,
        prims: &[Prim],
        body: &mut Candidate<'_>,
    ) -> Result<(), EmitError> {
        let (j, len) = (self.f.local(ValType::I32), to);
        let rec = self.f.local(ValType::I32);
        self.f.get(from);
        self.f.set(j);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(j);
        self.f.get(len);
        self.f.i(I::I32GeU);
        self.f.br_if(done);
        self.f.get(arr);
        self.f.get(j);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
        self.f.i(I::I32Load(mem(0, 2)));
        self.f.set(rec);
        let next = self.f.block();
        self.cont.push(next);
        let t = self.load_record(rec, off, prims);
        body(self, t, rec)?;
        self.cont.pop();
        self.f.end();
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// Hands the records `arr[0..min(len, limit)]` to `consume`.
    fn for_records(
        &mut self,
        arr: u32,
        len: u32,
        limit: Option<u64>,
        prims: &[Prim],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
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
        self.records_walk((arr, end), 0, prims, &mut |g, t, _| consume(g, &t))
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
        // the limit ends its own input, not the whole pipeline: what follows
        // that input in the same pipeline (the next branch of a UNION ALL, a
        // FULL join's unmatched rows) still runs
        let exit = self.f.block();
        self.exit.push(exit);
        let r = self.produce(input, &mut |g, t| {
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
        });
        self.exit.pop();
        self.f.end();
        r
    }

    // -------------------------------------------------------------- aggregates

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
    /// What `call` is handed first.
    to: SinkTo,
}

/// The first argument of a sink's host call.
#[derive(Clone, Copy)]
enum SinkTo {
    /// A declared output or write target, by index.
    Declared(i32),
    /// A scan handle, in this local (a lookup's keys).
    Handle(u32),
}
