//! Joins: hash join over a chained directory, and nested loops.

use super::*;

/// Where an entry of a FULL or RIGHT join's directory records that a probe
/// row matched it, and a mark join holding its outer side the entry's mark
/// (an i32 between the chain link and the slots).
const MATCHED_AT: u32 = 12;

/// The fields of an [`Op::MarkJoin`].
#[derive(Clone, Copy)]
pub(super) struct MarkSides<'a> {
    pub probe: &'a Op,
    pub build: &'a Op,
    pub probe_keys: &'a [Expr],
    pub build_keys: &'a [Expr],
    pub residual: Option<&'a Expr>,
    pub test: Option<&'a Expr>,
}

impl Gen {
    /// Materialises `build` into a chained hash directory on `build_keys` (rows
    /// with a NULL key never match: they are left out, or with `nulls` kept
    /// as entries in that list). Returns the directory and capacity locals
    /// and the build's slot types. An entry is the hash at 0, the chain link
    /// at 8, a matched flag at [`MATCHED_AT`], then the build slots, then the
    /// key slots.
    fn hash_build(
        &mut self,
        probe_prims: &[Prim],
        build: &Op,
        probe_keys: &[Expr],
        build_keys: &[Expr],
        nulls: Option<PtrVec>,
        lookup: Option<(&SinkState, &[usize])>,
    ) -> Result<(u32, u32, Vec<Prim>), EmitError> {
        if probe_keys.len() != build_keys.len() || probe_keys.is_empty() {
            return Err(EmitError::Plan("join keys do not pair up".into()));
        }
        let build_prims = self.slots(build)?;
        for (p, b) in probe_keys.iter().zip(build_keys) {
            if expr_prim(p, probe_prims, &self.inits)? != expr_prim(b, &build_prims, &self.inits)? {
                return Err(EmitError::Plan("join keys of different types".into()));
            }
        }
        let nb = build_prims.len() as u32;
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
                if let Some(list) = nulls {
                    g.f.get(n);
                    g.f.if_();
                    g.call_alloc_const(entry_bytes, e);
                    for (k, v) in t.iter().enumerate() {
                        g.store_slot(e, ENTRY_HEAD + SLOT * k as u32, v, true);
                    }
                    g.vec_push(list, e);
                    g.f.end();
                }
                g.f.get(n);
                g.br_cont()?;
            }
            if let Some((keys, which)) = lookup {
                let row = which
                    .iter()
                    .map(|i| kv.get(*i).copied())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| EmitError::Plan("a lookup key out of range".into()))?;
                g.sink_row(keys, &row)?;
            }
            let h = g.hash_vals(&kv);
            g.call_alloc_const(entry_bytes, e);
            g.f.get(e);
            g.f.get(h);
            g.f.i(I::I64Store(mem(0, 3)));
            g.f.get(e);
            g.f.i32c(0);
            g.f.i(I::I32Store(mem(MATCHED_AT, 2)));
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
        Ok((dir, cap, build_prims))
    }

    /// Walks the chain of the directory entries whose keys equal `kv` (the probe
    /// row's keys, none NULL), handing each entry's build tuple to `body` inside
    /// a "next candidate" block (`br_cont` skips to the next entry). `found`, if
    /// given, is a label `body` may branch to, which lies outside the walk.
    fn chain_walk(
        &mut self,
        dir: u32,
        cap: u32,
        kv: &[Val],
        build_prims: &[Prim],
        body: &mut Candidate<'_>,
    ) -> Result<(), EmitError> {
        let nb = build_prims.len() as u32;
        let h = self.hash_vals(kv);
        let rec = self.f.local(ValType::I32);
        self.f.get(dir);
        self.f.get(h);
        self.f.i(I::I32WrapI64);
        self.f.get(cap);
        self.f.i32c(1);
        self.f.i(I::I32Sub);
        self.f.i(I::I32And);
        self.f.i32c(2);
        self.f.i(I::I32Shl);
        self.f.i(I::I32Add);
        self.f.i(I::I32Load(mem(0, 2)));
        self.f.set(rec);
        let done = self.f.block();
        let lp = self.f.loop_();
        self.f.get(rec);
        self.f.i(I::I32Eqz);
        self.f.br_if(done);
        let next = self.f.block();
        self.cont.push(next);
        self.f.get(rec);
        self.f.i(I::I64Load(mem(0, 3)));
        self.f.get(h);
        self.f.i(I::I64Ne);
        self.br_cont()?;
        self.keys_equal(rec, ENTRY_HEAD + SLOT * nb, kv);
        self.f.i(I::I32Eqz);
        self.br_cont()?;
        let bt = self.load_record(rec, ENTRY_HEAD, build_prims);
        body(self, bt, rec)?;
        self.cont.pop();
        self.f.end();
        self.f.get(rec);
        self.f.i(I::I32Load(mem(8, 2)));
        self.f.set(rec);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// [`Gen::chain_walk`] over the entries whose keys equal `keys` computed
    /// over tuple `t`; none when one of them is NULL (a NULL key matches
    /// nothing).
    fn keyed_walk(
        &mut self,
        keys: &[Expr],
        t: &[Val],
        dir: u32,
        cap: u32,
        prims: &[Prim],
        body: &mut Candidate<'_>,
    ) -> Result<(), EmitError> {
        let kv = keys
            .iter()
            .map(|k| self.expr(k, t))
            .collect::<Result<Vec<_>, _>>()?;
        let null = self.any_null(&kv);
        if let Some(n) = null {
            self.f.get(n);
            self.f.i(I::I32Eqz);
            self.f.if_();
        }
        self.chain_walk(dir, cap, &kv, prims, body)?;
        if null.is_some() {
            self.f.end();
        }
        Ok(())
    }

    /// Skips to the next candidate unless the Bool `p` is TRUE.
    fn unless_true(&mut self, p: &Val) -> Result<(), EmitError> {
        self.f.get(p.v);
        self.f.i(I::I32Eqz);
        if let Some(n) = p.null {
            self.f.get(n);
            self.f.i(I::I32Or);
        }
        self.br_cont()
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of Op::HashJoin")]
    pub(super) fn hash_join(
        &mut self,
        probe: &Op,
        build: &Op,
        probe_keys: &[Expr],
        build_keys: &[Expr],
        kind: JoinKind,
        residual: Option<&Expr>,
        lookup: Option<&Lookup>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let probe_prims = self.slots(probe)?;
        // the build rows that may come out unmatched
        let keeps_build = matches!(kind, JoinKind::Full | JoinKind::Right);
        let nulls = keeps_build.then(|| self.vec_new());
        // a probe row that matches no build row must not come out for a
        // lookup: the scan may skip it
        if lookup.is_some() && matches!(kind, JoinKind::Left | JoinKind::Full) {
            return Err(EmitError::Plan(
                "a lookup on the probe side of a join that keeps unmatched probe rows".into(),
            ));
        }
        let keys = lookup.map(|l| self.lookup_begin(l.scan)).transpose()?;
        let (dir, cap, build_prims) = self.hash_build(
            &probe_prims,
            build,
            probe_keys,
            build_keys,
            nulls,
            keys.as_ref().zip(lookup.map(|l| l.keys.as_slice())),
        )?;
        if let Some(k) = &keys {
            self.sink_flush(k, true);
        }
        self.produce(probe, &mut |g, t| {
            let matched = g.f.local(ValType::I32);
            g.f.set_i32(matched, 0);
            g.keyed_walk(probe_keys, t, dir, cap, &build_prims, &mut |g, bt, rec| {
                let mut joined = t.to_vec();
                joined.extend(bt);
                if let Some(r) = residual {
                    let p = g.expr(r, &joined)?;
                    g.unless_true(&p)?;
                }
                g.f.set_i32(matched, 1);
                if keeps_build {
                    g.f.get(rec);
                    g.f.i32c(1);
                    g.f.i(I::I32Store(mem(MATCHED_AT, 2)));
                }
                consume(g, &joined)
            })?;
            if matches!(kind, JoinKind::Left | JoinKind::Full) {
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
        })?;
        if let Some(list) = nulls {
            self.unmatched_build(dir, cap, list, &probe_prims, &build_prims, consume)?;
        }
        Ok(())
    }

    /// A FULL or RIGHT join's rest, after its probe side: each build row no
    /// probe row matched (in the directory, or with a NULL key in `list`),
    /// with NULLs for the probe side.
    fn unmatched_build(
        &mut self,
        dir: u32,
        cap: u32,
        (arr, _, len): PtrVec,
        probe_prims: &[Prim],
        build_prims: &[Prim],
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        self.dir_entries(dir, cap, &mut |g, e| {
            g.f.get(e);
            g.f.i(I::I32Load(mem(MATCHED_AT, 2)));
            g.f.i(I::I32Eqz);
            g.f.if_();
            let mut row = g.null_tuple(probe_prims);
            row.extend(g.load_record(e, ENTRY_HEAD, build_prims));
            g.row(consume, &row)?;
            g.f.end();
            Ok(())
        })?;
        // the rows with a NULL key
        self.records_walk((arr, len), ENTRY_HEAD, build_prims, &mut |g, bt, _| {
            let mut row = g.null_tuple(probe_prims);
            row.extend(bt);
            consume(g, &row)
        })
    }

    /// Calls `body` with each entry of a chained directory (a local holding
    /// its address), chain by chain.
    fn dir_entries(
        &mut self,
        dir: u32,
        cap: u32,
        body: &mut dyn FnMut(&mut Gen, u32) -> Result<(), EmitError>,
    ) -> Result<(), EmitError> {
        let j = self.f.local(ValType::I32);
        let e = self.f.local(ValType::I32);
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
        let cd = self.f.block();
        let cl = self.f.loop_();
        self.f.get(e);
        self.f.i(I::I32Eqz);
        self.f.br_if(cd);
        body(self, e)?;
        self.f.get(e);
        self.f.i(I::I32Load(mem(8, 2)));
        self.f.set(e);
        self.f.br(cl);
        self.f.end();
        self.f.end();
        self.f.inc(j);
        self.f.br(lp);
        self.f.end();
        self.f.end();
        Ok(())
    }

    /// [`Op::MarkJoin`]: each probe row once, with whether a build row matches it.
    pub(super) fn mark_join(
        &mut self,
        j: &MarkSides<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        let MarkSides {
            probe,
            build,
            probe_keys,
            build_keys,
            residual,
            test,
        } = *j;
        let probe_prims = self.slots(probe)?;
        let keyed = !probe_keys.is_empty() || !build_keys.is_empty();
        let (dir, cap, build_prims, all) = if keyed {
            let (d, c, p) =
                self.hash_build(&probe_prims, build, probe_keys, build_keys, None, None)?;
            (d, c, p, None)
        } else {
            let ((arr, _cap, len), p) = self.materialise(build)?;
            (0, 0, p, Some((arr, len)))
        };
        self.produce(probe, &mut |g, t| {
            let mark = g.f.local(ValType::I32);
            let maybe = g.f.local(ValType::I32);
            g.f.set_i32(mark, 0);
            g.f.set_i32(maybe, 0);
            // `found` is left as soon as one candidate makes the mark TRUE
            let found = g.f.block();
            let mut candidate = |g: &mut Gen, bt: Vec<Val>, _rec: u32| -> Result<(), EmitError> {
                let mut joined = t.to_vec();
                joined.extend(bt);
                if let Some(r) = residual {
                    let p = g.expr(r, &joined)?;
                    g.unless_true(&p)?;
                }
                match test {
                    None => {
                        g.f.set_i32(mark, 1);
                        g.f.br(found);
                    }
                    Some(x) => {
                        let p = g.expr(x, &joined)?;
                        if p.prim != Prim::Bool {
                            return Err(EmitError::Plan("a mark test that is not boolean".into()));
                        }
                        if let Some(n) = p.null {
                            // NULL: remember it, and go on looking for a TRUE
                            g.f.get(n);
                            g.f.if_();
                            g.f.set_i32(maybe, 1);
                            g.f.end();
                            g.f.get(n);
                            g.br_cont()?;
                        }
                        g.f.get(p.v);
                        g.f.if_();
                        g.f.set_i32(mark, 1);
                        g.f.br(found);
                        g.f.end();
                    }
                }
                Ok(())
            };
            match all {
                None => g.keyed_walk(probe_keys, t, dir, cap, &build_prims, &mut candidate)?,
                Some(all) => g.records_walk(all, 0, &build_prims, &mut candidate)?,
            }
            g.f.end();
            let null = test.map(|_| g.f.local(ValType::I32));
            if let Some(n) = null {
                // NULL when nothing made it TRUE but something made it NULL
                g.f.get(maybe);
                g.f.get(mark);
                g.f.i(I::I32Eqz);
                g.f.i(I::I32And);
                g.f.set(n);
            }
            let mut out = t.to_vec();
            out.push(Val {
                prim: Prim::Bool,
                v: mark,
                len: 0,
                null,
            });
            g.row(consume, &out)
        })
    }

    /// [`Op::MarkJoin`] holding its probe (outer) side: the outer rows go
    /// into a directory on their keys, each with a mark state at
    /// [`MATCHED_AT`] (0: no candidate made the test TRUE or NULL, 1: one
    /// made it NULL, 2: one made it TRUE); the build rows stream past them;
    /// then every outer row comes out with its mark, those with a NULL key
    /// (which no row matches) FALSE.
    pub(super) fn mark_join_outer_built(
        &mut self,
        j: &MarkSides<'_>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        if j.probe_keys.is_empty() {
            return Err(EmitError::Plan(
                "a mark join holding its outer side needs keys".into(),
            ));
        }
        let inner_prims = self.slots(j.build)?;
        let list = self.vec_new();
        let (dir, cap, outer_prims) = self.hash_build(
            &inner_prims,
            j.probe,
            j.build_keys,
            j.probe_keys,
            Some(list),
            None,
        )?;
        let (residual, test) = (j.residual, j.test);
        self.produce(j.build, &mut |g, t| {
            g.keyed_walk(
                j.build_keys,
                t,
                dir,
                cap,
                &outer_prims,
                &mut |g, ot, rec| {
                    // already TRUE: nothing more to learn from this row
                    g.f.get(rec);
                    g.f.i(I::I32Load(mem(MATCHED_AT, 2)));
                    g.f.i32c(2);
                    g.f.i(I::I32Eq);
                    g.br_cont()?;
                    let mut joined = ot;
                    joined.extend(t.iter().cloned());
                    if let Some(r) = residual {
                        let p = g.expr(r, &joined)?;
                        g.unless_true(&p)?;
                    }
                    let Some(x) = test else {
                        g.set_mark(rec, 2);
                        return Ok(());
                    };
                    let p = g.expr(x, &joined)?;
                    if p.prim != Prim::Bool {
                        return Err(EmitError::Plan("a mark test that is not boolean".into()));
                    }
                    if let Some(n) = p.null {
                        // NULL: remembered unless a TRUE comes
                        g.f.get(n);
                        g.f.if_();
                        g.set_mark(rec, 1);
                        g.f.end();
                        g.f.get(n);
                        g.br_cont()?;
                    }
                    g.f.get(p.v);
                    g.f.if_();
                    g.set_mark(rec, 2);
                    g.f.end();
                    Ok(())
                },
            )
        })?;
        let null = test.map(|_| self.f.local(ValType::I32));
        self.dir_entries(dir, cap, &mut |g, e| {
            let mark = g.f.local(ValType::I32);
            g.f.get(e);
            g.f.i(I::I32Load(mem(MATCHED_AT, 2)));
            g.f.i32c(2);
            g.f.i(I::I32Eq);
            g.f.set(mark);
            if let Some(n) = null {
                g.f.get(e);
                g.f.i(I::I32Load(mem(MATCHED_AT, 2)));
                g.f.i32c(1);
                g.f.i(I::I32Eq);
                g.f.set(n);
            }
            let mut row = g.load_record(e, ENTRY_HEAD, &outer_prims);
            row.push(Val {
                prim: Prim::Bool,
                v: mark,
                len: 0,
                null,
            });
            g.row(consume, &row)
        })?;
        let (arr, _, len) = list;
        self.records_walk((arr, len), ENTRY_HEAD, &outer_prims, &mut |g, ot, _| {
            let mark = g.f.local(ValType::I32);
            g.f.set_i32(mark, 0);
            if let Some(n) = null {
                g.f.set_i32(n, 0);
            }
            let mut row = ot;
            row.push(Val {
                prim: Prim::Bool,
                v: mark,
                len: 0,
                null,
            });
            consume(g, &row)
        })
    }

    /// Stores mark state `v` in directory entry `rec`.
    fn set_mark(&mut self, rec: u32, v: i32) {
        self.f.get(rec);
        self.f.i32c(v);
        self.f.i(I::I32Store(mem(MATCHED_AT, 2)));
    }

    /// Like [`Gen::row`] (kept for call sites inside an `if`).
    pub(super) fn row_inline(
        &mut self,
        consume: &mut Consume<'_>,
        t: &[Val],
    ) -> Result<(), EmitError> {
        self.row(consume, t)
    }

    pub(super) fn chain_insert(&mut self, dir: u32, cap: u32, e: u32) {
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

    pub(super) fn dir_grow_chained(&mut self, dir: u32, cap: u32) {
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

    pub(super) fn nested_loop(
        &mut self,
        left: &Op,
        right: &Op,
        kind: JoinKind,
        cond: Option<&Expr>,
        consume: &mut Consume<'_>,
    ) -> Result<(), EmitError> {
        if matches!(kind, JoinKind::Full | JoinKind::Right) {
            return Err(EmitError::Unsupported(
                "a FULL or RIGHT join without equality keys".into(),
            ));
        }
        let ((arr, _cap, len), rprims) = self.materialise(right)?;
        self.produce(left, &mut |g, t| {
            let matched = g.f.local(ValType::I32);
            g.f.set_i32(matched, 0);
            g.records_walk((arr, len), 0, &rprims, &mut |g, rt, _| {
                let mut joined = t.to_vec();
                joined.extend(rt);
                if let Some(c) = cond {
                    let p = g.expr(c, &joined)?;
                    g.unless_true(&p)?;
                }
                g.f.set_i32(matched, 1);
                consume(g, &joined)
            })?;
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
}
